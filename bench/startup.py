"""Measure what `safe-run` adds to starting Python, in both sandbox modes.

DESIGN.md promises that `safe-run` adds little to a bare `python` start; this script
is how that promise is checked and how the ratios in docs/ are produced.

Every sandboxed run is paired with a bare run of the same command, and all pairs are
interleaved (bare, sandboxed, bare, sandboxed, ... across all cases and modes) so that
machine noise — another process, CPU frequency changes, a cold page cache — lands on
both sides instead of skewing one.  Medians are reported because start-up times have
a long right tail; p90 shows how long that tail is.

Usage (from a venv where safe-pip is installed, e.g. ``nox -s bench``)::

    python bench/startup.py [--runs 30] [--json] [--modes namespace,fallback]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: Setting this variable makes safe-run skip user namespaces (Landlock-only fallback).
NO_USERNS_VAR = "SAFE_PIP_NO_USERNS"

#: Extra environment per mode.  Namespace mode must not inherit the fallback switch.
MODE_ENV: dict[str, dict[str, str]] = {
    "namespace": {},
    "fallback": {NO_USERNS_VAR: "1"},
}

#: The benchmark project's pyproject.toml: the same profile the shipped example uses,
#: so the numbers describe a realistic policy rather than an empty one.
PYPROJECT = """\
[project]
name = "safe-run-bench"
version = "0"

[tool.safe-run]
extends = ["python-runtime"]
"""

#: The "tiny script": does a little real work (imports, a write to stdout) so the
#: measurement covers reading a file from the project, not just interpreter start.
SCRIPT = """\
import json
import sys

json.dump({"argv": sys.argv[1:], "ok": True}, sys.stdout)
"""

#: Seconds before a single run counts as hung.
RUN_TIMEOUT = 60.0


@dataclass
class Case:
    """One command measured bare and under safe-run, in one mode."""

    mode: str
    name: str
    bare: list[str]
    safe: list[str]
    env: dict[str, str]
    bare_ns: list[int] = field(default_factory=list)
    safe_ns: list[int] = field(default_factory=list)
    error: str | None = None


def write_project(directory: Path, pyproject: str, safe_run: Path) -> None:
    """Write the benchmark project's pyproject.toml and approve its policy, as a user
    would with ``safe-run allow`` (a policy that grants anything runs only then)."""
    (directory / "pyproject.toml").write_text(pyproject, encoding="utf-8")
    subprocess.run(
        [str(safe_run), "allow", "--project", str(directory)],
        check=True,
        stdout=subprocess.DEVNULL,
    )


def percentile(samples: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile: an observed value, no interpolation between samples."""
    ordered = sorted(samples)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[rank - 1]


def time_once(argv: Sequence[str], cwd: Path, env: dict[str, str]) -> tuple[int, str | None]:
    """Run `argv` once; return elapsed nanoseconds and an error text if it failed.

    Output goes to a pipe that is drained, not to the terminal, so terminal speed does
    not enter the measurement; stderr is kept to explain failures.
    """
    start = time.perf_counter_ns()
    try:
        result = subprocess.run(
            argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            timeout=RUN_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return time.perf_counter_ns() - start, f"{type(exc).__name__}: {exc}"
    elapsed = time.perf_counter_ns() - start
    if result.returncode != 0:
        lines = result.stderr.decode(errors="replace").strip().splitlines()
        detail = lines[-1] if lines else "(no stderr)"
        return elapsed, f"exit {result.returncode}: {detail}"
    return elapsed, None


def build_cases(
    modes: Sequence[str], python: Path, safe_run: Path, venv: Path | None, script: Path
) -> list[Case]:
    """The matrix: every mode x {interpreter start, small script}."""
    venv_args = ["--venv", str(venv)] if venv is not None else []
    base_env = {key: value for key, value in os.environ.items() if key != NO_USERNS_VAR}
    cases = []
    for mode in modes:
        env = {**base_env, **MODE_ENV[mode]}
        cases.append(
            Case(
                mode=mode,
                name="python -c pass",
                bare=[str(python), "-c", "pass"],
                safe=[str(safe_run), *venv_args, "--", str(python), "-c", "pass"],
                env=env,
            )
        )
        cases.append(
            Case(
                mode=mode,
                name=f"script ({script.name})",
                bare=[str(python), script.name],
                safe=[str(safe_run), *venv_args, script.name],
                env=env,
            )
        )
    return cases


def measure(cases: list[Case], runs: int, warmup: int, cwd: Path) -> None:
    """Fill in samples for every case, interleaving all cases and both sides.

    The order of bare and sandboxed alternates between rounds so neither side always
    runs right after the other.  Warm-up rounds are discarded: they pay for cold disk
    caches.  A case whose sandboxed command fails is dropped from later rounds, with
    the error kept for the report, so one broken mode does not hide the other.
    """
    for round_index in range(warmup + runs):
        for case in cases:
            if case.error is not None:
                continue
            sides = [("bare", case.bare), ("safe", case.safe)]
            if round_index % 2:
                sides.reverse()
            for side, argv in sides:
                elapsed, error = time_once(argv, cwd, case.env)
                if error is not None:
                    case.error = f"{side}: {error}"
                    break
                if round_index >= warmup:
                    (case.bare_ns if side == "bare" else case.safe_ns).append(elapsed)


def summarize(case: Case) -> dict[str, Any]:
    """Per-case statistics in milliseconds (the JSON shape; the table prints from it)."""
    summary: dict[str, Any] = {"mode": case.mode, "case": case.name, "error": case.error}
    if case.error is not None or not case.bare_ns or not case.safe_ns:
        return summary
    for side, samples_ns in (("bare", case.bare_ns), ("safe_run", case.safe_ns)):
        samples_ms = [ns / 1e6 for ns in samples_ns]
        summary[side] = {
            "median_ms": round(statistics.median(samples_ms), 3),
            "p90_ms": round(percentile(samples_ms, 0.9), 3),
            "samples_ms": [round(ms, 3) for ms in samples_ms],
        }
    bare_median = summary["bare"]["median_ms"]
    safe_median = summary["safe_run"]["median_ms"]
    summary["added_ms"] = round(safe_median - bare_median, 3)
    summary["ratio"] = round(safe_median / bare_median, 3) if bare_median else None
    return summary


def print_table(results: list[dict[str, Any]], header: str) -> None:
    """Human-readable report: one row per mode and case."""
    print(header)
    columns = (
        f"{'mode':<10} {'case':<22} {'bare med':>9} {'bare p90':>9} "
        f"{'safe med':>9} {'safe p90':>9} {'added':>8} {'ratio':>7}"
    )
    print(columns)
    print("-" * len(columns))
    for row in results:
        if row["error"] is not None:
            print(f"{row['mode']:<10} {row['case']:<22} FAILED  {row['error']}")
            continue
        bare, safe = row["bare"], row["safe_run"]
        ratio = f"{row['ratio']:.2f}x" if row["ratio"] is not None else "-"
        print(
            f"{row['mode']:<10} {row['case']:<22} {bare['median_ms']:>9.1f} "
            f"{bare['p90_ms']:>9.1f} {safe['median_ms']:>9.1f} {safe['p90_ms']:>9.1f} "
            f"{row['added_ms']:>+8.1f} {ratio:>7}"
        )
    print("(times in ms; 'added' and 'ratio' compare medians)")


def add_target_arguments(parser: argparse.ArgumentParser) -> None:
    """``--safe-run`` and ``--venv``, shared by every benchmark that runs safe-run."""
    here = Path(sys.executable)
    parser.add_argument(
        "--safe-run",
        type=Path,
        default=here.parent / "safe-run",
        help="safe-run to measure (default: the one next to this interpreter)",
    )
    parser.add_argument(
        "--venv",
        type=Path,
        default=Path(sys.prefix) if sys.prefix != sys.base_prefix else None,
        help="venv passed to safe-run as --venv (default: this interpreter's venv)",
    )


def comma_list(text: str) -> list[str]:
    """``"a, b,"`` -> ``["a", "b"]``: how the benchmarks take lists on the command line."""
    return [item.strip() for item in text.split(",") if item.strip()]


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command-line options; defaults measure the venv this script runs in."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=30, help="measured runs per side (30)")
    parser.add_argument("--warmup", type=int, default=2, help="discarded runs first (2)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument(
        "--modes",
        default="namespace,fallback",
        help="comma-separated subset of: namespace, fallback (default: both)",
    )
    add_target_arguments(parser)
    args = parser.parse_args(argv)
    modes = comma_list(args.modes)
    unknown = sorted(set(modes) - set(MODE_ENV))
    if unknown or not modes:
        parser.error(f"--modes: unknown mode(s) {', '.join(unknown) or '(none given)'}")
    if args.runs < 1 or args.warmup < 0:
        parser.error("--runs must be at least 1 and --warmup at least 0")
    args.modes = modes
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; exit 1 if any case could not be measured, 2 on bad setup."""
    args = parse_args(argv)
    # The interpreter is measured by its venv path, unresolved: that is what users run.
    python = Path(sys.executable)
    safe_run: Path = args.safe_run
    if not (safe_run.is_file() and os.access(safe_run, os.X_OK)):
        print(f"startup.py: no executable safe-run at {safe_run}", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="safe-run-bench-") as tmp:
        project = Path(tmp)
        write_project(project, PYPROJECT, safe_run)
        script = project / "tiny.py"
        script.write_text(SCRIPT, encoding="utf-8")
        cases = build_cases(args.modes, python, safe_run, args.venv, script)
        measure(cases, args.runs, args.warmup, project)
    results = [summarize(case) for case in cases]
    meta = {
        "runs": args.runs,
        "warmup": args.warmup,
        "python": str(python),
        "python_version": platform.python_version(),
        "safe_run": str(safe_run),
        "kernel": platform.release(),
        "euid": os.geteuid(),
    }
    if args.json:
        json.dump({**meta, "results": results}, sys.stdout, indent=2)
        print()
    else:
        print_table(
            results,
            f"safe-run start-up: {args.runs} runs per side, interleaved; "
            f"Python {meta['python_version']}, kernel {meta['kernel']}, euid {meta['euid']}",
        )
    return 1 if any(row["error"] is not None for row in results) else 0


if __name__ == "__main__":
    sys.exit(main())
