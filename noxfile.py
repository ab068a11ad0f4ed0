"""Nox sessions: the single description of how safe-pip is linted, typed, tested and timed.

CI (``.ci/run``) and developers run exactly these sessions, so "works on my machine"
and "works in CI" mean the same thing.  Every session installs into its own
throw-away virtual environment; uv does the installing when it is available because it
turns a cold session install from tens of seconds into about one.

    nox -s lint typecheck        # static checks
    nox -s tests                 # the test suite (posargs go to pytest)
    nox -s tests -- -m sandbox   # only the tests that start real sandboxes
    nox -s bench                 # the performance issue's benchmark (posargs go to bench/perf.py)
    nox -s bench_startup         # start-up alone (posargs go to bench/startup.py)
    nox -s bench_network         # network proxy benchmark (posargs go to bench/network.py)
    nox -s bench_install         # safe-pip install vs uv (posargs go to bench/install.py)
    nox -s bench_credentials     # phantom-token routes (posargs go to bench/credentials.py)
    nox -s bench_learn           # safe-run --learn vs a normal run (posargs go to bench/learn.py)
    nox -s bench_writes          # the file broker's cost per write (posargs go to bench/writes.py)
"""

from __future__ import annotations

import nox

# The "uv|virtualenv" fallback syntax below needs nox 2024.3 or newer.
nox.needs_version = ">=2024.3"

# uv when nox can find it (as a program or as the `uv` package beside nox), virtualenv
# otherwise, so a bare `pip install nox` still works.
nox.options.default_venv_backend = "uv|virtualenv"
# `nox` with no -s runs what CI gates on; `bench` is opt-in because it is slow and its
# numbers only mean something on a quiet machine.
nox.options.sessions = ["lint", "typecheck", "tests"]

#: Everything ruff looks at.  examples/ is shipped to users as code to read, so it is
#: held to the same standard as the package.
LINT_PATHS = ("safe_pip", "tests", "bench", "examples", "noxfile.py")

#: Support code that is typed to the same strict standard as the package but lives
#: outside `safe_pip/` (which is what `[tool.mypy] files` in pyproject.toml covers).
#: Checked in a second mypy run because naming files on the command line replaces the
#: configured `files` instead of adding to them.
TYPED_SUPPORT_PATHS = (
    "noxfile.py",
    "bench/startup.py",
    "bench/network.py",
    "bench/install.py",
    "bench/workloads.py",
    "bench/perf.py",
    "bench/credentials.py",
    "bench/learn.py",
    "bench/writes.py",
    "tests/conftest.py",
    "tests/net_servers.py",
    "examples/untrusted-script/steal.py",
)


@nox.session
def tests(session: nox.Session) -> None:
    """Install the project as a user would (a real wheel, not the source tree) and run pytest.

    A non-editable install is deliberate: it proves that the wheel carries what the
    sandbox needs at run time (the `policies/` profiles, the JSON schema, the console
    scripts `safe-run` and `safe-pip` that the integration tests execute).
    """
    session.install(".[test]")
    session.run("pytest", "-q", *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    """Ruff lint rules and formatting, configured in pyproject.toml; changes nothing."""
    session.install("ruff")
    session.run("ruff", "check", *LINT_PATHS)
    session.run("ruff", "format", "--check", *LINT_PATHS)


@nox.session
def typecheck(session: nox.Session) -> None:
    """Strict mypy over the package, then over the typed support code.

    The project is installed editable with its `dev`, `keyring` and `test` extras so
    mypy sees the real dependencies (click, packaging, pytest, nox, keyring, the HTTP
    clients the benchmarks drive) with their own type information rather than
    treating them as `Any`.
    """
    session.install("-e", ".[dev,keyring,test]")
    session.run("mypy", *session.posargs)
    if not session.posargs:
        session.run("mypy", *TYPED_SUPPORT_PATHS)


@nox.session
def bench(session: nox.Session) -> None:
    """The performance issue's benchmark in one run (bench/perf.py; bench/README.md).

    safe-pip against bare uv on the issue's install workloads (a local index and
    pypi.org), `safe-run` start-up against bare python and bubblewrap, and the proxy
    figures, each with its goal's verdict.  Several minutes; `-- --quick` for fewer
    rounds.  pytest is installed because the local index is tests/pkg_index.py's.
    """
    session.install(".", "pytest")
    session.run("python", "bench/perf.py", *session.posargs)


@nox.session
def bench_startup(session: nox.Session) -> None:
    """Only `safe-run` against a bare interpreter start, with more options (bench/startup.py)."""
    session.install(".")
    session.run("python", "bench/startup.py", *session.posargs)


@nox.session
def bench_network(session: nox.Session) -> None:
    """Time safe-run's network proxy against direct loopback transfers (bench/network.py).

    `bench` runs a shorter version of it; this one moves gigabytes through the proxy,
    takes a minute or more and has all of network.py's options.
    """
    session.install(".")
    session.run("python", "bench/network.py", *session.posargs)


@nox.session
def bench_install(session: nox.Session) -> None:
    """Time `safe-pip install` against bare `uv pip install` (bench/install.py).

    Beside `bench`'s install rows: this one also measures cold caches and uv with
    safe-pip's link mode (`--link-mode copy`).  pytest is installed because the
    benchmark serves its index with tests/pkg_index.py.
    """
    session.install(".", "pytest")
    session.run("python", "bench/install.py", *session.posargs)


@nox.session
def bench_credentials(session: nox.Session) -> None:
    """Time the phantom-token credential routes against direct requests (bench/credentials.py).

    A session of its own rather than part of `bench`: it starts an HTTPS fake API and
    needs the official `openai` client (in the sandbox and outside it); pytest is
    installed because the fake API lives in tests/tls_servers.py, which imports the
    test index (tests/pkg_index.py).
    """
    session.install(".", "openai", "httpx", "pytest")
    session.run("python", "bench/credentials.py", *session.posargs)


@nox.session
def bench_learn(session: nox.Session) -> None:
    """Time `safe-run --learn` against a normal sandboxed run (bench/learn.py).

    A session of its own rather than part of `bench`: it runs CPU-bound and file-heavy
    workloads for a few minutes, and its imports workload needs the `openai` client
    (with httpx and pydantic) installed in the venv.
    """
    session.install(".", "openai", "httpx")
    session.run("python", "bench/learn.py", *session.posargs)


@nox.session
def bench_writes(session: nox.Session) -> None:
    """Time writes to a persistent grant, which the file broker performs (bench/writes.py).

    A session of its own rather than part of `bench`: it creates and removes tens of
    thousands of files, and its figures depend on the filesystem the temporary
    directory is on (set TMPDIR to choose where the project is made).
    """
    session.install(".")
    session.run("python", "bench/writes.py", *session.posargs)
