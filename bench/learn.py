"""Measure what ``safe-run --learn`` costs over a normal sandboxed run.

In learn mode the supervisor traces the program with ptrace, and a seccomp filter
returns ``SECCOMP_RET_TRACE`` only for the path-taking system calls listed in
safe_pip/learn/syscalls.py: each of those costs two tracer stops, everything else runs
at full speed.  The goal is that learn mode costs little on CPU-bound code; this
script is how that is checked and how the figures in docs/performance.md are produced.

Side by side in one run, for each workload: bare ``python`` (no sandbox),
``safe-run`` and ``safe-run --learn``, the latter two in each sandbox mode.  Workloads:

- **start**: an empty script, for learn mode's fixed cost (tracer set-up, the proxy it
  always starts, the report) and the calls every Python start makes;
- **cpu**: a pure-Python loop (sum of squares) of about 0.7 s, almost no system calls;
- **imports**: importing a large package tree from the venv (``openai`` and ``httpx``
  with their dependencies, plus a few big stdlib packages), bytecode caches warm;
- **files**: walking and reading 2000 small files in a directory granted with
  ``--allow-read``.

Every run is timed from start to exit (wall clock, like bench/startup.py), so the
numbers include sandbox start-up; learn mode's report on stderr is discarded.  All
commands of a round run one after the other, the order rotated each round, so machine
noise lands on all of them alike.  With ``strace`` on PATH, each workload is also run
once bare under ``strace -f -c`` restricted to the watched calls, which gives the
number of calls that stop the tracer; the cost per call is what learn mode adds beyond
its cost on the empty script, divided by the calls beyond the empty script's.

Usage (from a venv where safe-pip and openai are installed, e.g. ``nox -s bench_learn``)::

    python bench/learn.py [--rounds 15] [--warmup 1] [--modes namespace,fallback]
                          [--workloads start,cpu,imports,files] [--no-strace] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# The start-up benchmark's modes, project and statistics, so all benchmarks report alike.
from startup import (
    MODE_ENV,
    NO_USERNS_VAR,
    PYPROJECT,
    add_target_arguments,
    comma_list,
    percentile,
    time_once,
    write_project,
)

from safe_pip.learn.syscalls import traced_calls

WORKLOADS = ("start", "cpu", "imports", "files")
#: The three ways each workload runs; "safe" and "learn" once per sandbox mode.
SIDES = ("bare", "safe", "learn")

#: Packages the imports workload loads: a large third-party tree (openai pulls in
#: httpx, httpcore, anyio, pydantic, pydantic_core, typing_extensions, ...) and big
#: stdlib packages it does not already import.
IMPORT_MODULES = (
    "openai",
    "httpx",
    "asyncio",
    "email.mime.multipart",
    "xml.etree.ElementTree",
    "unittest.mock",
    "multiprocessing.pool",
    "concurrent.futures.process",
    "logging.handlers",
    "sqlite3",
    "decimal",
    "argparse",
    "tomllib",
)

#: The files workload's tree: DIRS directories of FILES_PER_DIR files of FILE_SIZE bytes.
DIRS, FILES_PER_DIR, FILE_SIZE = 20, 100, 1024

START_SCRIPT = "pass\n"

CPU_SCRIPT = """\
import sys

total = 0
for i in range(int(sys.argv[1])):
    total += i * i
print(total)
"""

IMPORTS_SCRIPT = """\
import importlib, sys

for name in sys.argv[1].split(","):
    importlib.import_module(name)
print(len(sys.modules))
"""

#: Fails unless it read every file: in a sandbox without the grant, os.walk would
#: silently find nothing and the run would look fast.
FILES_SCRIPT = """\
import os, sys

root, expected = sys.argv[1], int(sys.argv[2])
count = size = 0
for directory, _, names in os.walk(root):
    for name in names:
        with open(os.path.join(directory, name), "rb") as handle:
            size += len(handle.read())
        count += 1
if count != expected:
    sys.exit(f"files.py: read {count} files under {root}, expected {expected}")
print(count, size)
"""

#: Fewer extra calls than this and run-to-run noise would swamp a per-call cost.
MIN_CALLS_PER_COST = 1000

#: Seconds before a single run counts as hung.
RUN_TIMEOUT = 300.0


@dataclass
class Series:
    """One workload run one way (bare, or safe-run with or without --learn, in a mode)."""

    workload: str
    mode: str | None
    side: str
    argv: list[str]
    env: dict[str, str]
    samples_ns: list[int] = field(default_factory=list)
    error: str | None = None


def make_data(root: Path) -> int:
    """The files workload's tree; returns the number of files."""
    payload = b"x" * FILE_SIZE
    for index in range(DIRS):
        directory = root / f"d{index:02}"
        directory.mkdir(parents=True)
        for number in range(FILES_PER_DIR):
            (directory / f"f{number:03}.txt").write_bytes(payload)
    return DIRS * FILES_PER_DIR


def workload_args(workload: str, args: argparse.Namespace, data: Path, files: int) -> list[str]:
    """The script and its arguments for one workload (run in the project directory)."""
    if workload == "start":
        return ["start.py"]
    if workload == "cpu":
        return ["cpu.py", str(args.cpu_loops)]
    if workload == "imports":
        return ["imports.py", ",".join(args.import_modules)]
    return ["files.py", str(data), str(files)]


def build_series(
    args: argparse.Namespace, python: Path, safe_run: Path, data: Path, files: int
) -> list[Series]:
    """For every workload: bare once, then safe-run and safe-run --learn in every mode."""
    base_env = {key: value for key, value in os.environ.items() if key != NO_USERNS_VAR}
    prefix = [str(safe_run), *(["--venv", str(args.venv)] if args.venv else [])]
    series: list[Series] = []
    for workload in args.workloads:
        script = workload_args(workload, args, data, files)
        grant = ["--allow-read", str(data)] if workload == "files" else []
        series.append(Series(workload, None, "bare", [str(python), *script], base_env))
        for mode in args.modes:
            env = {**base_env, **MODE_ENV[mode]}
            safe = [*prefix, *grant, "--", str(python), *script]
            learn = [*prefix, "--learn", *grant, "--", str(python), *script]
            series.append(Series(workload, mode, "safe", safe, env))
            series.append(Series(workload, mode, "learn", learn, env))
    return series


def measure(series: list[Series], rounds: int, warmup: int, cwd: Path) -> None:
    """Every round runs every series once, the order rotated by one each round.

    Warm-up rounds are discarded.  A series that fails is dropped from later rounds,
    its error kept for the report, so one broken mode hides nothing else.
    """
    for round_index in range(warmup + rounds):
        shift = round_index % len(series)
        for item in series[shift:] + series[:shift]:
            if item.error is not None:
                continue
            elapsed, error = time_once(item.argv, cwd, item.env)
            if error is not None:
                item.error = error
            elif round_index >= warmup:
                item.samples_ns.append(elapsed)
        print(f"learn.py: round {round_index + 1}/{warmup + rounds}", file=sys.stderr)


def count_traced_calls(
    strace: str, names: Sequence[str], argv: Sequence[str], cwd: Path, env: dict[str, str]
) -> int | None:
    """How many of the watched calls `argv` makes, bare, by ``strace -f -c``; None if unknown."""
    with tempfile.NamedTemporaryFile(prefix="learn-strace-", suffix=".txt") as out:
        command = [strace, "-f", "-c", "-o", out.name, "-e", f"trace={','.join(names)}", *argv]
        _, error = time_once(command, cwd, env)
        if error is not None:
            return None
        for line in Path(out.name).read_text(encoding="utf-8").splitlines():
            fields = line.split()
            # "% time  seconds  usecs/call  calls  [errors]  syscall": calls is the 4th.
            if fields and fields[-1] == "total" and len(fields) >= 5:
                return int(fields[3])
    return None


def stats(samples_ns: Sequence[int]) -> dict[str, Any]:
    """Median, p90 and every sample, in milliseconds."""
    samples_ms = [ns / 1e6 for ns in samples_ns]
    return {
        "median_ms": round(statistics.median(samples_ms), 3),
        "p90_ms": round(percentile(samples_ms, 0.9), 3),
        "samples_ms": [round(ms, 3) for ms in samples_ms],
    }


def summarize(series: list[Series], calls: dict[str, int | None]) -> list[dict[str, Any]]:
    """One row per workload and mode: bare, safe and learn, and what learn adds to safe."""
    bare = {item.workload: item for item in series if item.side == "bare"}
    rows: list[dict[str, Any]] = []
    for item in series:
        if item.side != "safe":
            continue
        learn = next(
            other
            for other in series
            if other.side == "learn" and (other.workload, other.mode) == (item.workload, item.mode)
        )
        sides = {"bare": bare[item.workload], "safe": item, "learn": learn}
        errors = [f"{side}: {s.error}" for side, s in sides.items() if s.error is not None]
        row: dict[str, Any] = {
            "workload": item.workload,
            "mode": item.mode,
            "traced_calls": calls.get(item.workload),
            "error": "; ".join(errors) or None,
        }
        if row["error"] is None and all(s.samples_ns for s in sides.values()):
            for side, s in sides.items():
                row[side] = stats(s.samples_ns)
            safe_ms, learn_ms = row["safe"]["median_ms"], row["learn"]["median_ms"]
            row["safe_added_ms"] = round(safe_ms - row["bare"]["median_ms"], 3)
            row["learn_added_ms"] = round(learn_ms - safe_ms, 3)
            row["learn_ratio"] = round(learn_ms / safe_ms, 3)
        rows.append(row)
    start = {row["mode"]: row for row in rows if row["workload"] == "start"}
    for row in rows:
        base = start.get(row["mode"])
        if row is base or base is None or "learn_added_ms" not in base or "learn_ratio" not in row:
            continue
        if row["traced_calls"] and base["traced_calls"]:
            extra_calls = row["traced_calls"] - base["traced_calls"]
            extra_ms = row["learn_added_ms"] - base["learn_added_ms"]
            if extra_calls >= MIN_CALLS_PER_COST:
                row["us_per_call"] = round(extra_ms * 1e3 / extra_calls, 1)
    return rows


def print_table(rows: list[dict[str, Any]], header: str) -> None:
    """Human-readable report: one row per workload and mode."""
    print(header)
    columns = (
        f"{'workload':<8} {'mode':<10} {'bare med':>9} {'safe med':>9} {'safe p90':>9} "
        f"{'learn med':>10} {'learn p90':>10} {'learn +':>9} {'ratio':>7} {'calls':>7} "
        f"{'us/call':>8}"
    )
    print(columns)
    print("-" * len(columns))
    for row in rows:
        if row["error"] is not None:
            print(f"{row['workload']:<8} {row['mode']:<10} FAILED  {row['error']}")
            continue
        calls = row["traced_calls"]
        per_call = row.get("us_per_call")
        print(
            f"{row['workload']:<8} {row['mode']:<10} {row['bare']['median_ms']:>9.1f} "
            f"{row['safe']['median_ms']:>9.1f} {row['safe']['p90_ms']:>9.1f} "
            f"{row['learn']['median_ms']:>10.1f} {row['learn']['p90_ms']:>10.1f} "
            f"{row['learn_added_ms']:>+9.1f} {row['learn_ratio']:>6.2f}x "
            f"{calls if calls is not None else '-':>7} "
            f"{per_call if per_call is not None else '-':>8}"
        )
    print(
        "(times in ms; 'learn +' is learn's median minus safe-run's, 'ratio' learn/safe-run;\n"
        " 'calls' the watched system calls one bare run makes (strace); 'us/call' is\n"
        " 'learn +' minus start's 'learn +', divided by the calls beyond start's, where\n"
        f" there are at least {MIN_CALLS_PER_COST} of them)"
    )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command-line options; defaults measure the venv this script runs in."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=15, help="measured rounds (15)")
    parser.add_argument("--warmup", type=int, default=1, help="discarded rounds first (1)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--modes", default="namespace,fallback", help="namespace,fallback")
    parser.add_argument("--workloads", default=",".join(WORKLOADS), help=",".join(WORKLOADS))
    parser.add_argument(
        "--cpu-loops", type=int, default=6_000_000, help="iterations of the cpu loop (6000000)"
    )
    parser.add_argument(
        "--import-modules",
        default=",".join(IMPORT_MODULES),
        help="comma-separated modules the imports workload loads",
    )
    parser.add_argument("--no-strace", action="store_true", help="do not count calls")
    add_target_arguments(parser)
    args = parser.parse_args(argv)
    args.modes = comma_list(args.modes)
    args.workloads = comma_list(args.workloads)
    args.import_modules = comma_list(args.import_modules)
    if not args.modes or set(args.modes) - set(MODE_ENV):
        parser.error("--modes: a comma-separated subset of namespace, fallback")
    if not args.workloads or set(args.workloads) - set(WORKLOADS):
        parser.error(f"--workloads: a comma-separated subset of {', '.join(WORKLOADS)}")
    if args.rounds < 1 or args.warmup < 0 or args.cpu_loops < 1 or not args.import_modules:
        parser.error("--rounds and --cpu-loops must be at least 1, --warmup at least 0")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; exit 1 if any case could not be measured, 2 on bad setup."""
    args = parse_args(argv)
    python = Path(sys.executable)
    safe_run: Path = args.safe_run
    if not (safe_run.is_file() and os.access(safe_run, os.X_OK)):
        print(f"learn.py: no executable safe-run at {safe_run}", file=sys.stderr)
        return 2
    strace = None if args.no_strace else shutil.which("strace")
    names: list[str] = []
    try:
        names = sorted({call.name for call in traced_calls(os.uname().machine).values()})
    except KeyError:  # an architecture learn mode has no table for: nothing to count
        strace = None
    with tempfile.TemporaryDirectory(prefix="safe-run-learn-bench-") as tmp:
        project = Path(tmp) / "project"
        project.mkdir()
        write_project(project, PYPROJECT, args.safe_run)
        for name, text in (
            ("start.py", START_SCRIPT),
            ("cpu.py", CPU_SCRIPT),
            ("imports.py", IMPORTS_SCRIPT),
            ("files.py", FILES_SCRIPT),
        ):
            (project / name).write_text(text, encoding="utf-8")
        data = Path(tmp) / "data"
        files = make_data(data)
        series = build_series(args, python, safe_run, data, files)
        # Bytecode caches must exist before anything is timed: the sandbox cannot write
        # them into the venv, so a cold cache would be compiled again on every run.
        warm_env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
        for item in series:
            if item.side == "bare":
                _, error = time_once(item.argv, project, warm_env)
                if error is not None:
                    item.error = error
        measure(series, args.rounds, args.warmup, project)
        calls: dict[str, int | None] = {}
        if strace is not None:
            for item in series:
                if item.side == "bare" and item.error is None:
                    calls[item.workload] = count_traced_calls(
                        strace, names, item.argv, project, item.env
                    )
    rows = summarize(series, calls)
    meta = {
        "rounds": args.rounds,
        "warmup": args.warmup,
        "cpu_loops": args.cpu_loops,
        "import_modules": args.import_modules,
        "files": files,
        "python": str(python),
        "python_version": platform.python_version(),
        "safe_run": str(safe_run),
        "kernel": platform.release(),
        "euid": os.geteuid(),
        "cpus": os.cpu_count(),
    }
    if args.json:
        json.dump({**meta, "results": rows}, sys.stdout, indent=2)
        print()
    else:
        print_table(
            rows,
            f"safe-run --learn: {args.rounds} rounds, interleaved; Python "
            f"{meta['python_version']}, kernel {meta['kernel']}, euid {meta['euid']}",
        )
    return 1 if any(row["error"] is not None for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
