"""Compare `safe-pip install` with bare `uv pip install` of the same packages.

safe-pip runs uv in a sandbox, in phases (resolve, build, install); the promise is that
this costs little more than running uv yourself, above all when the cache is warm,
which is the install a user does most often.  This script is how that promise is
checked.  Three tools are measured:

- **uv**: bare ``uv pip install`` with its defaults (hard links from its cache on
  Linux), what a user would otherwise run: safe-pip/uv is the goal's ratio;
- **uv-copy**: the same with ``--link-mode copy``, the link mode safe-pip installs
  from its shared cache with (a hard-linked venv file *is* the cache file, so a venv
  written to could poison every later install): safe-pip/uv-copy is what the sandbox,
  the phases and the checks add at equal link mode;
- **safe-pip**: ``safe-pip install``.

One run measures four cells, each with all three tools:

- **local / warm**: a PEP 503 index on 127.0.0.1 (no network noise), caches pre-warmed;
- **local / cold**: the same index, an empty cache for every repetition;
- **pypi / warm** and **pypi / cold**: the real index, pypi.org.

Every measurement installs the same pinned set of real wheels (:data:`PINS`, 20+
projects with all their dependencies) into a fresh venv made outside the timed region.
uv and uv-copy each get their own ``UV_CACHE_DIR``; safe-pip gets ``XDG_CACHE_HOME``,
under which it keeps its shared uv cache (``$XDG_CACHE_HOME/safe-pip/uv``).
Repetitions of the three tools are interleaved, the order rotating round by round (and
so are the cells) so that machine and network drift lands on all of them.  After every
install, outside the timer, the venv is checked for exactly the expected distributions,
so a failed install cannot pass for a fast one.

Usage (from a venv where safe-pip is installed, e.g. ``nox -s bench_install``)::

    python bench/install.py [--reps N] [--quick] [--only local|pypi]
                            [--python /usr/bin/python3] [--json]
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import platform
import shutil
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# The package index and uv lookup of the install tests (tests/pkg_index.py), so the
# benchmark and the tests serve and run the same way (importing it loads pytest, for
# its fixtures' helpers, but registers nothing); the other benchmarks' proxy variables
# and statistics, so all three report alike.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from network import PROXY_VARS
from pkg_index import LocalIndex, normalize, project_of, uv_binary
from startup import percentile

#: The packages installed in every measurement: real, popular, pure-Python or
#: manylinux wheels, closed under their dependencies for CPython 3.11 on x86_64 Linux
#: (``uv pip compile`` of the 25 names plus ``tzdata``, which python-dateutil needs).
#: Exact pins keep runs comparable over time; bump them all at once, never one.
PINS: dict[str, str] = {
    "anyio": "4.16.0",
    "attrs": "26.1.0",
    "certifi": "2026.10.18",
    "charset-normalizer": "3.5.2",
    "click": "8.5.1",
    "h11": "0.16.0",
    "idna": "3.20",
    "iniconfig": "2.3.1",
    "jinja2": "3.1.6",
    "markdown-it-py": "4.3.0",
    "markupsafe": "3.0.4",
    "mdurl": "0.1.2",
    "packaging": "26.3",
    "pluggy": "1.7.0",
    "pygments": "2.21.0",
    "pytest": "9.2.0",
    "python-dateutil": "4.0.0",
    "pyyaml": "6.0.3",
    "requests": "2.34.2",
    "rich": "15.0.0",
    "six": "1.17.0",
    "sniffio": "1.3.1",
    "tomli-w": "1.2.0",
    "typing-extensions": "4.16.0",
    "tzdata": "2026.6",
    "urllib3": "2.8.0",
}

PYPI_URL = "https://pypi.org/simple"
#: The hosts a PyPI install talks to: the index pages and the files.
PYPI_HOSTS = ("pypi.org", "files.pythonhosted.org")
#: The trust store of this kind of machine; uv needs it named when a TLS-intercepting
#: gateway's CA is only in the system bundle.
SYSTEM_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
#: Where downloaded wheels are kept between runs (gitignored).
CACHE_DIR = Path(__file__).resolve().parent / ".cache"

INDEXES = ("local", "pypi")
CACHES = ("warm", "cold")
#: The tools, in the order of the first round (later rounds rotate it): bare uv,
#: bare uv with safe-pip's link mode, safe-pip.
TOOLS = ("uv", "uv-copy", "safe-pip")
#: Bare uv tools: the same command, uv-copy with these extra arguments.
UV_EXTRA_ARGS = {"uv": [], "uv-copy": ["--link-mode", "copy"]}
DEFAULT_REPS = {"warm": 5, "cold": 3}
QUICK_REPS = {"warm": 2, "cold": 1}
#: The goal this benchmark tracks (warm cells only: a cold install is dominated by
#: downloads, which all the tools make alike).
GOAL_WARM_RATIO = 1.10

#: Seconds before one install counts as hung.
RUN_TIMEOUT = 900.0


class BenchError(Exception):
    """A measurement that cannot be trusted: the run stops and says why."""


@dataclass
class Cell:
    """One index x cache combination, measured with every tool."""

    index: str
    cache: str
    url: str
    reps: int
    extra_safe_pip_args: list[str] = field(default_factory=list)
    samples: dict[str, list[float]] = field(default_factory=lambda: {tool: [] for tool in TOOLS})
    skipped: str | None = None


@dataclass
class Bench:
    """Everything a measurement needs: the programs, the base environment, the scratch."""

    python: str
    uv: str
    safe_pip: str
    env: dict[str, str]
    scratch: Path
    counter: int = 0

    def fresh_dir(self, label: str) -> Path:
        """A new, empty directory in the scratch area (same file system for all, so
        every tool could hard-link from its cache into the venvs)."""
        self.counter += 1
        path = self.scratch / f"{self.counter:04d}-{label}"
        path.mkdir()
        return path


# --- wheels and the local index ---------------------------------------------------------


def python_tag(python: str) -> tuple[str, str]:
    """``("3.11", "3.11.2")`` for the target interpreter: the wheels must fit *it*."""
    done = subprocess.run(
        [
            python,
            "-c",
            "import platform, sys; print('%d.%d' % sys.version_info[:2]); "
            "print(platform.python_version())",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise BenchError(f"cannot run {python}: {done.stderr.strip()}")
    short, full = done.stdout.split()
    return short, full


def missing_files(directory: Path, pins: Mapping[str, str], *, sdist: bool = False) -> list[str]:
    """The pins without a file in ``directory`` (``name==version``): a wheel, or with
    ``sdist`` a source distribution (``.tar.gz`` or ``.zip``)."""
    have = set()
    for path in directory.iterdir() if directory.is_dir() else []:
        project = project_of(path.name)
        if project is None or path.name.endswith(".whl") == sdist:
            continue
        if sdist:
            version = path.name.removesuffix(".tar.gz").removesuffix(".zip").rsplit("-", 1)[1]
        else:
            version = path.name.split("-")[1]
        have.add((project, version))
    return [f"{name}=={version}" for name, version in pins.items() if (name, version) not in have]


def ensure_wheels(
    directory: Path, short_version: str, uv: str, pins: Mapping[str, str] = PINS
) -> None:
    """Download the pinned wheels for ``short_version`` once; later runs reuse them.

    ``--no-deps`` because the pins are already closed under dependencies, and
    ``--python-version`` so the wheels fit the target interpreter, not this one.  pip
    from this interpreter if it has one, else pip run by uv (a nox venv has no pip).
    """
    missing = missing_files(directory, pins)
    if not missing:
        return
    print(f"downloading {len(missing)} wheels into {directory} (once)", file=sys.stderr)
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix="download-", dir=directory.parent))
    pip_args = ["download", "--only-binary", ":all:", "--no-deps", "--quiet"]
    pip_args += ["--python-version", short_version, "--implementation", "cp"]
    pip_args += ["--dest", str(staging), *missing]
    commands = [
        [sys.executable, "-m", "pip", *pip_args],
        [uv, "tool", "run", "--from", "pip", "pip", *pip_args],
    ]
    errors = []
    try:
        for command in commands:
            done = subprocess.run(command, capture_output=True, text=True, check=False)
            if done.returncode == 0:
                directory.mkdir(exist_ok=True)
                for wheel in staging.glob("*.whl"):
                    wheel.replace(directory / wheel.name)
                break
            errors.append(f"{' '.join(command[:4])}: {done.stderr.strip()[-800:]}")
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    still = missing_files(directory, pins)
    if still:
        raise BenchError(f"wheels missing for {', '.join(still)}:\n" + "\n".join(errors))


# --- the real index -------------------------------------------------------------------


def pypi_allow_args() -> list[str]:
    """``--allow-host IP:443`` for every PyPI address that is not global.

    Behind some gateways pypi.org resolves to an internal address, and safe-pip's
    proxy refuses internal addresses unless one is allowed by IP literal
    (docs/network.md); on an ordinary machine this returns nothing, and safe-pip
    runs exactly as a user would run it.
    """
    args: list[str] = []
    for host in PYPI_HOSTS:
        for info in socket.getaddrinfo(host, 443, type=socket.SOCK_STREAM):
            address = str(info[4][0])
            if not ipaddress.ip_address(address).is_global:
                rule = f"[{address}]:443" if ":" in address else f"{address}:443"
                if rule not in args:
                    args += ["--allow-host", rule]
    return args


def direct_opener(env: Mapping[str, str]) -> urllib.request.OpenerDirector:
    """An HTTPS opener that connects as the tools will: directly (no proxy from this
    process's environment), trusting ``SSL_CERT_FILE`` of ``env`` when it is set."""
    context = ssl.create_default_context(cafile=env.get("SSL_CERT_FILE") or None)
    return urllib.request.build_opener(
        urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=context)
    )


def pypi_problem(env: dict[str, str]) -> str | None:
    """Why pypi.org cannot be used from here, or None when it answers."""
    try:
        opener = direct_opener(env)
        with opener.open(f"{PYPI_URL}/six/", timeout=15) as reply:
            reply.read()
    except (OSError, ValueError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


# --- one measurement ------------------------------------------------------------------


def make_venv(bench: Bench) -> Path:
    """A fresh empty venv for one install (untimed).  Its own throw-away uv cache, so
    making it never warms or touches a cache being measured."""
    venv = bench.fresh_dir("venv") / "venv"
    cache = bench.fresh_dir("venv-cache")
    done = subprocess.run(
        [bench.uv, "venv", "--quiet", "--python", bench.python, str(venv)],
        env={**bench.env, "UV_CACHE_DIR": str(cache)},
        capture_output=True,
        text=True,
        check=False,
    )
    shutil.rmtree(cache, ignore_errors=True)
    if done.returncode != 0:
        raise BenchError(f"uv venv failed: {done.stderr.strip()}")
    return venv


def install_command(bench: Bench, tool: str, cell: Cell, venv: Path) -> list[str]:
    """The same request for every tool: the pins, from the same index."""
    pins = [f"{name}=={version}" for name, version in PINS.items()]
    if tool in UV_EXTRA_ARGS:
        return uv_install_argv(bench, venv, cell.url, [*UV_EXTRA_ARGS[tool], *pins])
    return safe_pip_install_argv(bench, venv, cell.url, [*cell.extra_safe_pip_args, *pins])


def uv_install_argv(bench: Bench, venv: Path, url: str, args: Sequence[str]) -> list[str]:
    """Bare ``uv pip install ARGS`` into ``venv`` from the index at ``url``."""
    python = str(venv / "bin" / "python")
    return [bench.uv, "pip", "install", "--python", python, "--default-index", url, *args]


def safe_pip_install_argv(bench: Bench, venv: Path, url: str, args: Sequence[str]) -> list[str]:
    """``safe-pip install ARGS`` into ``venv`` from the index at ``url``."""
    return [
        bench.safe_pip,
        "install",
        "--venv",
        str(venv),
        "--python",
        bench.python,
        "-i",
        url,
        *args,
    ]


def cache_env(bench: Bench, tool: str, cache: Path) -> dict[str, str]:
    """Point each tool at its own cache: uv and uv-copy by ``UV_CACHE_DIR``, safe-pip by
    ``XDG_CACHE_HOME`` (where it keeps its shared uv cache and its policy cache)."""
    if tool in UV_EXTRA_ARGS:
        return {**bench.env, "UV_CACHE_DIR": str(cache)}
    return {**bench.env, "XDG_CACHE_HOME": str(cache)}


def installed(venv: Path) -> set[tuple[str, str]]:
    """``(project, version)`` of every ``*.dist-info`` in the venv's site-packages."""
    found = set()
    for dist_info in venv.glob("lib/python*/site-packages/*.dist-info"):
        name, _, version = dist_info.name.removesuffix(".dist-info").partition("-")
        found.add((normalize(name), version))
    return found


def run_checked(
    argv: Sequence[str],
    env: dict[str, str],
    cwd: Path,
    venv: Path,
    expected: set[tuple[str, str]],
    what: str,
) -> float:
    """Run one install command; return its seconds of wall clock.

    Only the command is timed.  Afterwards the venv must hold exactly ``expected``
    (``(project, version)`` pairs); anything else raises :class:`BenchError` with the
    tool's output, because a broken install would otherwise be recorded as a fast one.
    """
    start = time.perf_counter_ns()
    try:
        done = subprocess.run(
            argv,
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"{what} hung for {exc.timeout}s") from exc
    elapsed = (time.perf_counter_ns() - start) / 1e9
    got = installed(venv)
    if done.returncode != 0 or got != expected:
        problem = f"exit {done.returncode}"
        if done.returncode == 0:
            problem = (
                f"exit 0 but {len(got)} distributions (expected {len(expected)}); "
                f"missing {sorted(expected - got)}, unexpected {sorted(got - expected)}"
            )
        raise BenchError(
            f"{what} failed: {problem}\n"
            f"command: {' '.join(argv)}\n"
            f"--- stdout ---\n{done.stdout.strip()}\n--- stderr ---\n{done.stderr.strip()}"
        )
    return elapsed


def install_once(bench: Bench, tool: str, cell: Cell, cache: Path) -> float:
    """Install the pins into a fresh venv with ``tool``; return the seconds it took.

    The venv is made before the timer starts and removed after the check.
    """
    venv = make_venv(bench)
    try:
        return run_checked(
            install_command(bench, tool, cell, venv),
            cache_env(bench, tool, cache),
            venv.parent,
            venv,
            set(PINS.items()),
            f"{tool} install ({cell.index} index, {cell.cache} cache)",
        )
    finally:
        shutil.rmtree(venv.parent, ignore_errors=True)


# --- the run --------------------------------------------------------------------------


def prewarm(bench: Bench, cell: Cell) -> dict[str, Path]:
    """The warm caches of a warm cell: one untimed install per tool fills each."""
    caches = {}
    for tool in TOOLS:
        caches[tool] = bench.fresh_dir(f"{cell.index}-warm-{tool}-cache")
        seconds = install_once(bench, tool, cell, caches[tool])
        print(f"  pre-warm {cell.index:<5} {tool:<8} {seconds:7.2f} s", file=sys.stderr)
    return caches


def measure(bench: Bench, cells: list[Cell]) -> None:
    """Interleave: each round runs every cell that still has repetitions, and within a
    cell every tool, the order rotated by one each round (so over len(TOOLS) rounds each
    tool runs once in each position).  Cold repetitions get fresh, empty caches; warm
    ones reuse the caches :func:`prewarm` filled."""
    warm = {id(cell): prewarm(bench, cell) for cell in cells if cell.cache == "warm"}
    for round_index in range(max((cell.reps for cell in cells), default=0)):
        for cell in cells:
            if round_index >= cell.reps:
                continue
            shift = round_index % len(TOOLS)
            tools = [*TOOLS[shift:], *TOOLS[:shift]]
            line = []
            for tool in tools:
                if cell.cache == "warm":
                    cache = warm[id(cell)][tool]
                else:
                    cache = bench.fresh_dir(f"{cell.index}-cold-{tool}-cache")
                seconds = install_once(bench, tool, cell, cache)
                if cell.cache == "cold":
                    shutil.rmtree(cache, ignore_errors=True)
                cell.samples[tool].append(seconds)
                line.append(f"{tool} {seconds:6.2f} s")
            print(
                f"  round {round_index + 1}/{cell.reps} {cell.index:<5} {cell.cache:<4} "
                + ", ".join(line),
                file=sys.stderr,
            )


def summarize(cell: Cell) -> dict[str, Any]:
    """Per-cell statistics in seconds (the JSON shape; the table prints from it)."""
    row: dict[str, Any] = {"index": cell.index, "cache": cell.cache, "skipped": cell.skipped}
    if cell.skipped is not None:
        return row
    for tool in TOOLS:
        samples = cell.samples[tool]
        row[tool] = {
            "median_s": round(statistics.median(samples), 3),
            "p90_s": round(percentile(samples, 0.9), 3),
            "samples_s": [round(seconds, 3) for seconds in samples],
        }
    # Against bare uv (the goal) and against uv at safe-pip's link mode (what the
    # sandbox, the phases and the checks add).
    safe_median = row["safe-pip"]["median_s"]
    for base, suffix in (("uv", ""), ("uv-copy", "_vs_uv_copy")):
        base_median = row[base]["median_s"]
        row[f"added{suffix}_s"] = round(safe_median - base_median, 3)
        row[f"ratio{suffix}"] = round(safe_median / base_median, 3) if base_median else None
    return row


def print_table(rows: list[dict[str, Any]], meta: dict[str, Any]) -> None:
    """Human-readable report: one row per cell, then the goal and what the second
    ratio means."""
    print(
        f"safe-pip install vs uv pip install: {meta['packages']} packages, "
        f"Python {meta['python_version']} ({meta['python']}), {meta['uv_version']}; "
        f"tools interleaved, fresh venv per install"
    )
    print("uv: default link mode; uv-copy: --link-mode copy, as safe-pip installs from its cache")
    columns = (
        f"{'index':<6} {'cache':<5} {'reps':>4} {'uv med':>7} {'uv p90':>7} "
        f"{'copy med':>8} {'copy p90':>8} {'safe med':>8} {'safe p90':>8} "
        f"{'vs uv':>7} {'safe/uv':>7} {'vs copy':>7} {'safe/copy':>9}"
    )
    print(columns)
    print("-" * len(columns))

    def ratio(value: float | None) -> str:
        return f"{value:.2f}x" if value is not None else "-"

    for row in rows:
        if row["skipped"] is not None:
            print(f"{row['index']:<6} {row['cache']:<5} skipped: {row['skipped']}")
            continue
        uv, copy, safe = row["uv"], row["uv-copy"], row["safe-pip"]
        print(
            f"{row['index']:<6} {row['cache']:<5} {len(uv['samples_s']):>4} "
            f"{uv['median_s']:>7.2f} {uv['p90_s']:>7.2f} "
            f"{copy['median_s']:>8.2f} {copy['p90_s']:>8.2f} "
            f"{safe['median_s']:>8.2f} {safe['p90_s']:>8.2f} "
            f"{row['added_s']:>+7.2f} {ratio(row['ratio']):>7} "
            f"{row['added_vs_uv_copy_s']:>+7.2f} {ratio(row['ratio_vs_uv_copy']):>9}"
        )
    print(
        "(times in s; 'vs uv', 'safe/uv': safe-pip's median minus, divided by uv's; "
        "'vs copy', 'safe/copy': the same against uv-copy's)"
    )
    verdicts = [
        f"{row['index']} {row['ratio']:.2f} "
        + ("met" if row["ratio"] <= GOAL_WARM_RATIO else "not met")
        for row in rows
        if row["cache"] == "warm" and row["skipped"] is None and row["ratio"] is not None
    ]
    print(f"goal: warm safe/uv <= {GOAL_WARM_RATIO:.2f}" + (f" ({'; '.join(verdicts)})"))
    print(
        "safe/copy: against uv at the same link mode, i.e. what safe-pip's sandbox, "
        "phases and audit add\n(safe/uv adds to that the cost of copying files instead "
        "of hard-linking them)"
    )


def base_env() -> dict[str, str]:
    """The environment all three tools run with.

    Not the caller's venv (``VIRTUAL_ENV``), no uv settings or config files of the
    caller's (``UV_*``, ``UV_NO_CONFIG``) that could add an index or change the cache,
    no Python downloads, and no proxy variables: safe-pip's sandbox reaches the
    network only through its own proxy, so uv must connect directly too.  The system
    trust store is named when it exists, as uv needs it behind an intercepting gateway.
    """
    env = {
        key: value
        for key, value in os.environ.items()
        if key != "VIRTUAL_ENV"
        and not key.startswith("UV_")
        and key != "XDG_CACHE_HOME"
        and key.upper() not in PROXY_VARS
    }
    env.update(UV_NO_CONFIG="1", UV_PYTHON_DOWNLOADS="never", UV_NO_PROGRESS="1")
    if "SSL_CERT_FILE" not in env and os.path.isfile(SYSTEM_BUNDLE):
        env["SSL_CERT_FILE"] = SYSTEM_BUNDLE
    return env


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command-line options; defaults measure the safe-pip next to this interpreter."""
    here = Path(sys.executable)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--reps", type=int, help="timed installs per tool and cell (default 5 warm, 3 cold)"
    )
    parser.add_argument(
        "--quick", action="store_true", help="2 warm and 1 cold repetition: a smoke run"
    )
    parser.add_argument("--only", choices=INDEXES, help="measure one index only")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument(
        "--python", default="/usr/bin/python3", help="interpreter of the venvs (/usr/bin/python3)"
    )
    parser.add_argument(
        "--safe-pip",
        type=Path,
        default=here.parent / "safe-pip",
        help="safe-pip to measure (default: the one next to this interpreter)",
    )
    parser.add_argument(
        "--uv", help="uv to compare with (default: the uv package's, as safe-pip uses)"
    )
    parser.add_argument(
        "--cache-dir",
        type=Path,
        default=CACHE_DIR,
        help=f"where downloaded wheels are kept between runs ({CACHE_DIR})",
    )
    args = parser.parse_args(argv)
    if args.reps is not None and args.reps < 1:
        parser.error("--reps must be at least 1")
    if args.reps is not None and args.quick:
        parser.error("--reps and --quick exclude each other")
    if args.reps is not None:
        args.rep_counts = dict.fromkeys(CACHES, args.reps)
    else:
        args.rep_counts = QUICK_REPS if args.quick else DEFAULT_REPS
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; exit 1 if a measurement failed, 2 on bad setup."""
    args = parse_args(argv)
    started = time.monotonic()
    safe_pip: Path = args.safe_pip
    if not (safe_pip.is_file() and os.access(safe_pip, os.X_OK)):
        print(f"install.py: no executable safe-pip at {safe_pip}", file=sys.stderr)
        return 2
    try:
        uv = args.uv or uv_binary()
        short_version, full_version = python_tag(args.python)
        wheels = args.cache_dir / f"wheels-cp{short_version.replace('.', '')}"
        ensure_wheels(wheels, short_version, uv)
    except (BenchError, OSError) as exc:
        print(f"install.py: {exc}", file=sys.stderr)
        return 2
    env = base_env()
    indexes = [args.only] if args.only else list(INDEXES)
    uv_version = subprocess.run(
        [uv, "--version"], capture_output=True, text=True, check=False
    ).stdout.strip()
    meta: dict[str, Any] = {
        "packages": len(PINS),
        "reps": args.rep_counts,
        "python": args.python,
        "python_version": full_version,
        "uv": uv,
        "uv_version": uv_version,
        "safe_pip": str(safe_pip),
        "kernel": platform.release(),
        "euid": os.geteuid(),
        "cpus": os.cpu_count(),
    }
    with (
        LocalIndex(wheels) as index,
        tempfile.TemporaryDirectory(prefix="safe-pip-install-bench-") as tmp,
    ):
        cells = []
        for name in indexes:
            url, extra, skipped = index.url, [], None
            if name == "pypi":
                url = PYPI_URL
                skipped = pypi_problem(env)
                if skipped is None:
                    try:
                        extra = pypi_allow_args()
                    except OSError as exc:
                        skipped = f"cannot resolve PyPI: {exc}"
                if skipped is not None:
                    print(f"pypi.org unreachable ({skipped}): skipping its cells", file=sys.stderr)
            for cache in CACHES:
                cells.append(Cell(name, cache, url, args.rep_counts[cache], extra, skipped=skipped))
        meta["pypi_allow_hosts"] = next(
            (cell.extra_safe_pip_args[1::2] for cell in cells if cell.index == "pypi"), []
        )
        bench = Bench(args.python, uv, str(safe_pip), env, Path(tmp))
        try:
            measure(bench, [cell for cell in cells if cell.skipped is None])
        except BenchError as exc:
            print(f"install.py: {exc}", file=sys.stderr)
            return 1
    meta["total_seconds"] = round(time.monotonic() - started, 1)
    rows = [summarize(cell) for cell in cells]
    if args.json:
        json.dump({"meta": meta, "results": rows}, sys.stdout, indent=2)
        print()
    else:
        print_table(rows, meta)
        print(f"(whole run: {meta['total_seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
