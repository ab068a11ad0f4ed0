"""The install rows of the performance issue: safe-pip against bare uv, workload by workload.

Each row is one piece of work a user does, timed with ``safe-pip`` and with the uv they
would otherwise run, side by side in one run:

- wheels only: ``requests``; ``numpy`` + ``pandas``; ``requests`` + ``rich`` + ``numpy``;
  ``jupyterlab`` (91 packages);
- a reinstall of an sdist-only package (fresh venv, warm caches, i.e. the second time
  the same sdist is installed): markupsafe 2.0.1 (a C extension; it has no wheel for
  CPython 3.11, so both tools build it) and docopt 0.6.2 (only ever released as an
  sdist);
- ``sync`` of a ``uv init`` app with four dependencies (requests, rich, click, attrs),
  from its ``uv.lock``, into a fresh ``.venv``.

Every row runs against two indexes: a local one on 127.0.0.1 serving the same real
artifacts, downloaded from PyPI once (no network noise), and pypi.org itself.  Caches
are warm (one untimed run per tool and row first), every install goes into a fresh venv
made outside the timer (``uv venv`` with the same interpreter; ``sync`` removes the
project's ``.venv`` instead and times the command that recreates it, for both tools),
the two tools alternate which goes first, and every row of a round runs before the next
round starts, so drift lands on both tools alike.  After every run the venv must hold
exactly the expected distributions: a failed install must not count as a fast one.

Bare uv runs with its defaults (its default link mode) and ``UV_CACHE_DIR``; safe-pip
with ``XDG_CACHE_HOME`` (it keeps its caches under ``$XDG_CACHE_HOME/safe-pip``).  The
environment is bench/install.py's (:func:`install.base_env`).  The goal of each kind
of row is in :data:`GOALS`; bench/perf.py runs this and prints the table.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import statistics
import subprocess
import sys
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from install import (
    PYPI_URL,
    Bench,
    BenchError,
    direct_opener,
    ensure_wheels,
    make_venv,
    missing_files,
    run_checked,
    safe_pip_install_argv,
    uv_install_argv,
)
from pkg_index import normalize, project_of
from startup import percentile

#: The jupyterlab row: ``uv pip compile`` of ``jupyterlab`` for CPython 3.11 on x86_64
#: Linux, wheels only.  The exact pins of every row keep runs comparable over time and
#: let one local index serve them all; bump them all at once, never one.
JUPYTERLAB: dict[str, str] = {
    "anyio": "4.16.0",
    "argon2-cffi": "25.1.0",
    "argon2-cffi-bindings": "26.2.0",
    "arrow": "1.4.0",
    "asttokens": "3.0.2",
    "async-lru": "2.4.0",
    "attrs": "26.1.0",
    "babel": "2.19.0",
    "beautifulsoup4": "4.15.0",
    "bleach": "6.4.0",
    "certifi": "2026.10.19.post1",
    "cffi": "2.1.1",
    "charset-normalizer": "3.5.3",
    "comm": "0.2.3",
    "debugpy": "1.8.22",
    "defusedxml": "0.7.1",
    "executing": "2.3.0",
    "fastjsonschema": "2.22.3",
    "fqdn": "1.6.0",
    "h11": "0.16.0",
    "httpcore": "1.0.9",
    "httpx": "0.29.0",
    "idna": "3.21",
    "ipykernel": "7.4.0",
    "ipython": "9.19.1",
    "ipython-pygments-lexers": "1.1.1",
    "isoduration": "20.11.0",
    "jedi": "0.20.1",
    "jinja2": "3.1.6",
    "json5": "0.17.3",
    "jsonpointer": "3.12",
    "jsonschema": "4.26.0",
    "jsonschema-specifications": "2025.9.1",
    "jupyter-builder": "1.3.1",
    "jupyter-client": "8.10.0",
    "jupyter-core": "5.9.1",
    "jupyter-events": "0.12.1",
    "jupyter-lsp": "2.3.1",
    "jupyter-server": "2.21.1",
    "jupyter-server-terminals": "0.5.4",
    "jupyterlab": "4.6.6",
    "jupyterlab-pygments": "0.3.0",
    "jupyterlab-server": "2.28.1",
    "lark": "1.3.1",
    "markupsafe": "3.0.4",
    "matplotlib-inline": "0.2.2",
    "mistune": "3.4.0",
    "nbclient": "0.11.0",
    "nbconvert": "7.17.2",
    "nbformat": "5.11.1",
    "nest-asyncio2": "1.7.4",
    "notebook-shim": "0.2.4",
    "overrides": "7.7.0",
    "packaging": "26.4",
    "pandocfilters": "1.5.1",
    "parso": "0.8.7",
    "pexpect": "4.9.0",
    "platformdirs": "4.14.9",
    "prometheus-client": "0.26.0",
    "prompt-toolkit": "3.0.53",
    "psutil": "7.2.2",
    "ptyprocess": "0.7.0",
    "pure-eval": "0.2.4",
    "pycparser": "3.12",
    "pygments": "2.21.0",
    "python-dateutil": "4.0.0",
    "python-json-logger": "4.2.0",
    "pyyaml": "6.0.4",
    "pyzmq": "27.3.0",
    "referencing": "0.37.0",
    "requests": "2.34.2",
    "rfc3339-validator": "0.1.4",
    "rfc3986-validator": "0.1.1",
    "rfc3987-syntax": "1.1.0",
    "rpds-py": "2026.9.1",
    "send2trash": "2.2.0",
    "six": "1.17.0",
    "soupsieve": "2.10",
    "stack-data": "0.6.3",
    "terminado": "0.18.1",
    "tinycss2": "1.5.1",
    "tornado": "6.6.1",
    "traitlets": "5.16.1",
    "typing-extensions": "4.16.0",
    "tzdata": "2026.6",
    "uri-template": "1.3.0",
    "urllib3": "2.8.0",
    "wcwidth": "0.9.5",
    "webcolors": "25.10.0",
    "webencodings": "0.6.1",
    "websocket-client": "1.9.2",
}

#: The other wheels the rows install, resolved the same day as :data:`JUPYTERLAB`.
OTHERS: dict[str, str] = {
    "click": "8.5.1",
    "markdown-it-py": "4.3.0",
    "mdurl": "0.1.2",
    "numpy": "2.4.6",
    "pandas": "3.1.1",
    "rich": "15.0.0",
}

#: What building the sdists takes from the index: they have no ``pyproject.toml``, so
#: both tools use setuptools' legacy backend (and ``wheel``, for front-ends that ask).
BUILD_REQUIREMENTS: dict[str, str] = {"setuptools": "84.2.1", "wheel": "0.48.0"}

#: Every wheel the local index serves.
WHEELS: dict[str, str] = {**JUPYTERLAB, **OTHERS, **BUILD_REQUIREMENTS}

#: The sdists the reinstall rows build: markupsafe 2.0.1 has wheels only up to
#: CPython 3.9 and no pure-Python one, docopt 0.6.2 never had a wheel; so on 3.11 both
#: tools build them from source without being told (safe-pip's ``--no-binary`` does not
#: combine with its wheels-only first attempt, see bench/README.md).
SDISTS: dict[str, str] = {"markupsafe": "2.0.1", "docopt": "0.6.2"}

#: The app the ``sync`` row syncs: ``uv init``, then these four dependencies.
APP_DEPENDENCIES = ("attrs", "click", "requests", "rich")

INDEXES = ("local", "pypi")
#: The two tools, in the order of the first round (each next round reverses it).
TOOLS = ("uv", "safe-pip")


@dataclass(frozen=True)
class Goal:
    """The most safe-pip may take for one kind of work: ``factor`` x bare uv + ``slack_s``."""

    factor: float
    slack_s: float

    def limit(self, uv_seconds: float) -> float:
        """The limit for a bare-uv median of ``uv_seconds``."""
        return self.factor * uv_seconds + self.slack_s

    def text(self) -> str:
        """``1.2*uv+0.10``: how the table names the goal."""
        return f"{self.factor:g}*uv+{self.slack_s:.2f}"


#: The performance issue's "done when", by kind of work.
GOALS: dict[str, Goal] = {
    "wheels": Goal(1.2, 0.10),
    "sdist": Goal(1.3, 0.20),
    "sync": Goal(1.3, 0.10),
}


@dataclass(frozen=True)
class Workload:
    """One row: what is asked for (``requirements``) and what must end up installed
    (``closure``, names in :data:`WHEELS` or :data:`SDISTS`)."""

    key: str
    title: str
    kind: str
    requirements: tuple[str, ...]
    closure: tuple[str, ...]

    def pins(self) -> dict[str, str]:
        """``{project: version}`` of everything the row installs."""
        source = SDISTS if self.kind == "sdist" else WHEELS
        return {name: source[name] for name in self.closure}

    def specifiers(self) -> list[str]:
        """The requirements as ``name==version``, the way they are asked for."""
        pins = self.pins()
        return [f"{name}=={pins[name]}" for name in self.requirements]


#: requests with its dependencies, and rich with its (the last name is the project).
_REQUESTS = ("certifi", "charset-normalizer", "idna", "urllib3", "requests")
_RICH = ("markdown-it-py", "mdurl", "pygments", "rich")

WORKLOADS: tuple[Workload, ...] = (
    Workload("requests", "requests", "wheels", ("requests",), _REQUESTS),
    Workload(
        "numpy-pandas",
        "numpy + pandas",
        "wheels",
        ("numpy", "pandas"),
        ("numpy", "pandas", "python-dateutil", "tzdata"),
    ),
    Workload(
        "jupyterlab",
        f"jupyterlab ({len(JUPYTERLAB)} packages)",
        "wheels",
        ("jupyterlab",),
        tuple(JUPYTERLAB),
    ),
    Workload(
        "requests-rich-numpy",
        "requests + rich + numpy",
        "wheels",
        ("requests", "rich", "numpy"),
        (*_REQUESTS, *_RICH, "numpy"),
    ),
    Workload(
        "markupsafe-sdist",
        "markupsafe 2.0.1 from sdist (C extension), reinstall",
        "sdist",
        ("markupsafe",),
        ("markupsafe",),
    ),
    Workload(
        "docopt-sdist",
        "docopt 0.6.2 (sdist only), reinstall",
        "sdist",
        ("docopt",),
        ("docopt",),
    ),
    Workload(
        "sync",
        f"`sync` of a {len(APP_DEPENDENCIES)}-dependency app",
        "sync",
        APP_DEPENDENCIES,
        (*APP_DEPENDENCIES, *_REQUESTS[:-1], *_RICH[:-1]),
    ),
)


@dataclass
class Row:
    """One workload against one index: its samples per tool, or why it has none."""

    workload: Workload
    index: str
    url: str
    safe_pip_args: list[str]
    constraints: Path | None = None
    projects: dict[str, Path] = field(default_factory=dict)
    expected: set[tuple[str, str]] = field(default_factory=set)
    samples: dict[str, list[float]] = field(default_factory=lambda: {tool: [] for tool in TOOLS})
    error: str | None = None
    skipped: str | None = None

    def active(self) -> bool:
        """Still measured: neither skipped nor failed."""
        return self.error is None and self.skipped is None


# --- the local index's files ------------------------------------------------------------


def sdist_version(filename: str) -> str | None:
    """``0.6.2`` of ``docopt-0.6.2.tar.gz``; None for anything but an sdist."""
    for suffix in (".tar.gz", ".zip"):
        if filename.endswith(suffix) and "-" in filename:
            return filename.removesuffix(suffix).rsplit("-", 1)[1]
    return None


def ensure_sdists(directory: Path, pins: Mapping[str, str], env: Mapping[str, str]) -> None:
    """Download the pinned sdists from PyPI once, checked against the sha256 its index
    page gives; later runs reuse them.  The simple API's JSON form (PEP 691), which uv
    reads too: some gateways serve only the index, not PyPI's JSON API."""
    missing = missing_files(directory, pins, sdist=True)
    if not missing:
        return
    print(f"downloading {len(missing)} sdists into {directory} (once)", file=sys.stderr)
    directory.mkdir(parents=True, exist_ok=True)
    opener = direct_opener(env)
    for pin in missing:
        name, _, version = pin.partition("==")
        page = urllib.request.Request(
            f"{PYPI_URL}/{name}/", headers={"Accept": "application/vnd.pypi.simple.v1+json"}
        )
        try:
            with opener.open(page, timeout=60) as reply:
                files = json.load(reply)["files"]
            sdist = next(
                entry
                for entry in files
                if project_of(entry["filename"]) == name
                and sdist_version(entry["filename"]) == version
            )
            with opener.open(sdist["url"], timeout=300) as reply:
                data = reply.read()
        except (OSError, ValueError, KeyError, StopIteration) as exc:
            raise BenchError(f"cannot download the sdist of {pin}: {exc!r}") from exc
        if hashlib.sha256(data).hexdigest() != sdist["hashes"]["sha256"]:
            raise BenchError(f"the sdist of {pin} does not match its index's sha256")
        (directory / sdist["filename"]).write_bytes(data)


def ensure_index_files(
    directory: Path, short_version: str, uv: str, env: Mapping[str, str]
) -> None:
    """Everything the local index serves: :data:`WHEELS` and :data:`SDISTS`."""
    ensure_wheels(directory, short_version, uv, WHEELS)
    ensure_sdists(directory, SDISTS, env)


# --- setting rows up ----------------------------------------------------------------------


def tool_env(bench: Bench, tool: str, caches: Mapping[str, Path], row: Row) -> dict[str, str]:
    """The environment of one run: each tool's own cache; for ``sync`` the index is
    given by ``UV_DEFAULT_INDEX``, which both read (neither takes an index option)."""
    env = dict(bench.env)
    if tool == "uv":
        env["UV_CACHE_DIR"] = str(caches[tool])
    else:
        env["XDG_CACHE_HOME"] = str(caches[tool])
    if row.workload.kind == "sync":
        env["UV_DEFAULT_INDEX"] = row.url
    return env


def run_uv(bench: Bench, argv: Sequence[str], cwd: Path, index_url: str | None = None) -> None:
    """An untimed helper run of bare uv (``init``, ``add``, ``lock``), with a
    throw-away cache so it warms nothing that is measured."""
    cache = bench.fresh_dir("helper-cache")
    env = {**bench.env, "UV_CACHE_DIR": str(cache)}
    if index_url is not None:
        env["UV_DEFAULT_INDEX"] = index_url
    try:
        done = subprocess.run(
            [bench.uv, *argv], cwd=cwd, env=env, capture_output=True, text=True, check=False
        )
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    if done.returncode != 0:
        raise BenchError(f"uv {' '.join(argv)} failed: {done.stderr.strip()[-1500:]}")


def locked_packages(lock: Path) -> set[tuple[str, str]]:
    """``(project, version)`` of every package ``uv.lock`` takes from an index (the
    app itself is a virtual project and is not installed)."""
    import tomllib  # Python 3.11+, as the benchmarks' interpreter; ruff targets 3.10

    data = tomllib.loads(lock.read_text(encoding="utf-8"))
    return {
        (normalize(package["name"]), package["version"])
        for package in data.get("package", [])
        if "registry" in package.get("source", {})
    }


def make_app(bench: Bench, row: Row) -> None:
    """The ``sync`` row's project: ``uv init`` (an app without a build system, uv's
    default), the dependencies added, locked once by bare uv, then one identical copy
    per tool so neither sees what the other left behind."""
    base = bench.fresh_dir(f"{row.index}-app")
    app = base / "bench-app"
    run_uv(
        bench,
        [
            *("init", "--quiet", "--app", "--no-package", "--no-workspace", "--vcs", "none"),
            *("--no-readme", "--name", "bench-app", "--python", bench.python, str(app)),
        ],
        base,
    )
    # No index for `uv add`: it would write one given by UV_DEFAULT_INDEX into the
    # pyproject, which safe-pip rightly wants approved; both tools get it from
    # the variable instead.
    run_uv(bench, ["add", "--quiet", "--frozen", *row.workload.specifiers()], app)
    run_uv(bench, ["lock", "--quiet", "--python", bench.python], app, row.url)
    row.expected = locked_packages(app / "uv.lock")
    if {name for name, _ in row.expected} != set(row.workload.closure):
        raise BenchError(f"the app's lock has {sorted(row.expected)}, not the expected projects")
    for tool in TOOLS:
        row.projects[tool] = base / tool
        shutil.copytree(app, row.projects[tool])


def prepare(bench: Bench, row: Row) -> None:
    """The untimed set-up of one row: its constraints file or its app."""
    if row.workload.kind == "sync":
        make_app(bench, row)
        return
    row.expected = set(row.workload.pins().items())
    row.constraints = bench.fresh_dir(f"{row.index}-{row.workload.key}") / "constraints.txt"
    lines = [f"{name}=={version}" for name, version in row.workload.pins().items()]
    row.constraints.write_text("\n".join(lines) + "\n", encoding="utf-8")


# --- one run ------------------------------------------------------------------------------


def command(bench: Bench, tool: str, row: Row, venv: Path) -> list[str]:
    """The same request for both tools, from the same index."""
    if row.workload.kind == "sync":
        if tool == "uv":
            return [bench.uv, "sync", "--python", bench.python]
        return [bench.safe_pip, "sync", "--python", bench.python, *row.safe_pip_args]
    assert row.constraints is not None
    request = ["-c", str(row.constraints), *row.workload.specifiers()]
    if tool == "uv":
        return uv_install_argv(bench, venv, row.url, request)
    return safe_pip_install_argv(bench, venv, row.url, [*row.safe_pip_args, *request])


def run_once(bench: Bench, tool: str, row: Row, caches: Mapping[str, Path]) -> float:
    """One timed, checked run of ``tool`` on ``row``; the seconds it took.

    The fresh venv (or, for ``sync``, the removal of the old ``.venv``) is not timed.
    """
    what = f"{tool} {row.workload.key} ({row.index} index)"
    env = tool_env(bench, tool, caches, row)
    if row.workload.kind == "sync":
        project = row.projects[tool]
        venv = project / ".venv"
        shutil.rmtree(venv, ignore_errors=True)
        return run_checked(command(bench, tool, row, venv), env, project, venv, row.expected, what)
    venv = make_venv(bench)
    try:
        argv = command(bench, tool, row, venv)
        return run_checked(argv, env, venv.parent, venv, row.expected, what)
    finally:
        shutil.rmtree(venv.parent, ignore_errors=True)


# --- the run ------------------------------------------------------------------------------


def fail(row: Row, exc: BenchError) -> None:
    """Take ``row`` out of the run with its error (the whole text to stderr, its first
    line to the table); the other rows go on."""
    row.error = str(exc).splitlines()[0]
    print(f"  FAILED {row.index} {row.workload.key}: {exc}", file=sys.stderr)


def measure(bench: Bench, rows: list[Row], rounds: int, caches: Mapping[str, Path]) -> None:
    """Set every row up and warm it (one untimed run per tool, which also fills the
    caches and, for the sdist rows, does the first build), then ``rounds`` rounds of
    every row with both tools, the order alternating by round and by row."""
    for row in rows:
        if not row.active():
            continue
        try:
            prepare(bench, row)
            for tool in TOOLS:
                seconds = run_once(bench, tool, row, caches)
                print(
                    f"  warm-up {row.index:<5} {row.workload.key:<20} {tool:<8} {seconds:6.2f} s",
                    file=sys.stderr,
                )
        except BenchError as exc:
            fail(row, exc)
    for round_index in range(rounds):
        for position, row in enumerate(rows):
            if not row.active():
                continue
            tools = TOOLS if (round_index + position) % 2 == 0 else tuple(reversed(TOOLS))
            line = []
            try:
                for tool in tools:
                    seconds = run_once(bench, tool, row, caches)
                    row.samples[tool].append(seconds)
                    line.append(f"{tool} {seconds:6.2f} s")
            except BenchError as exc:
                fail(row, exc)
                continue
            print(
                f"  round {round_index + 1}/{rounds} {row.index:<5} {row.workload.key:<20} "
                + ", ".join(line),
                file=sys.stderr,
            )


def summarize(row: Row) -> dict[str, Any]:
    """One row in seconds, with the goal's limit and verdict (the JSON shape)."""
    goal = GOALS[row.workload.kind]
    result: dict[str, Any] = {
        "work": row.workload.title,
        "key": row.workload.key,
        "kind": row.workload.kind,
        "index": row.index,
        "goal": goal.text(),
        "error": row.error,
        "skipped": row.skipped,
    }
    if not row.active():
        return result
    for tool in TOOLS:
        samples = row.samples[tool]
        result[tool] = {
            "median_s": round(statistics.median(samples), 3),
            "p90_s": round(percentile(samples, 0.9), 3),
            "samples_s": [round(seconds, 3) for seconds in samples],
        }
    uv, safe = result["uv"]["median_s"], result["safe-pip"]["median_s"]
    result["ratio"] = round(safe / uv, 2) if uv else None
    result["limit_s"] = round(goal.limit(uv), 3)
    result["verdict"] = "PASS" if safe <= goal.limit(uv) else "MISS"
    return result


def print_table(results: list[dict[str, Any]], header: str) -> None:
    """The issue's table, one block per index."""
    print(header)
    columns = (
        f"{'work':<52} {'n':>2} {'safe-pip':>8} {'bare uv':>8} {'ratio':>7} "
        f"{'limit':>6} {'goal':<12} {'':<4}"
    )
    for index in INDEXES:
        block = [row for row in results if row["index"] == index]
        if not block:
            continue
        title = "local index (127.0.0.1, real artifacts)" if index == "local" else PYPI_URL
        print(f"\n{title}")
        print(columns)
        print("-" * len(columns))
        for row in block:
            if row["skipped"] is not None:
                print(f"{row['work']:<52} skipped: {row['skipped']}")
                continue
            if row["error"] is not None:
                print(f"{row['work']:<52} FAILED  {row['error']}")
                continue
            ratio = f"{row['ratio']:.2f}x" if row["ratio"] is not None else "-"
            print(
                f"{row['work']:<52} {len(row['uv']['samples_s']):>2} "
                f"{row['safe-pip']['median_s']:>8.2f} {row['uv']['median_s']:>8.2f} "
                f"{ratio:>7} {row['limit_s']:>6.2f} {row['goal']:<12} {row['verdict']:<4}"
            )
    print(
        "(seconds, medians of n interleaved rounds, warm caches, fresh venvs; "
        "ratio = safe-pip / bare uv; PASS when safe-pip <= limit)"
    )
