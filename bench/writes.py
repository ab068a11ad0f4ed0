"""Measure what the broker costs: writes to a persistent grant, metadata changes, reads.

With a write grant that outlives the run (``write = ["."]``, the ``project-write``
profile), every call that can write there stops in a seccomp user notification and
the broker -- the program's parent in the sandbox -- performs it on the program's
behalf (safe_pip/sandbox/fs_broker.py).  Writes to the private TMPDIR stop too (the
filter cannot tell paths apart) and are handed straight back to the kernel.  In
fallback mode the broker also decides every metadata change (chmod, utime, xattrs:
safe_pip/sandbox/attr_broker.py), with or without a write grant.  Reads never stop.
This script measures those cases side by side with bare ``python``, in each sandbox
mode, and how many microseconds each supervised call adds.

Workloads (each a fresh Python process that times its own loop with
``perf_counter``, so interpreter and sandbox start-up are not in the figures):

- **create**: create and write 2000 small files in the project, then remove them;
- **rewrite**: open 2000 existing files with ``"w"`` (O_CREAT|O_TRUNC) and write;
- **tmpdir**: create 2000 files in ``$TMPDIR`` (the sandbox's scratch space);
- **read**: read 2000 existing files;
- **scratch**: create 2000 files in ``$TMPDIR`` under a policy without write grants
  (nothing stops in either mode: the common case);
- **chmod**: ``chmod`` 2000 files in ``$TMPDIR`` under that policy (one broker round
  trip each in fallback mode, none in namespace mode).

Usage (from a venv where safe-pip is installed, e.g. ``nox -s bench_writes``)::

    python bench/writes.py [--rounds 9] [--files 2000] [--modes namespace,fallback] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from startup import MODE_ENV, NO_USERNS_VAR, add_target_arguments, comma_list, write_project

WORKLOADS = ("create", "rewrite", "tmpdir", "read", "scratch", "chmod")
#: Workloads run in a project without write grants (no [tool.safe-run] table).
PLAIN_WORKLOADS = ("scratch", "chmod")
PYPROJECT = """\
[project]
name = "safe-run-writes-bench"
version = "0"

[tool.safe-run]
extends = ["project-write"]
"""
#: The workload: one process, its own timer, the elapsed seconds on stdout.
SCRIPT = """\
import os, sys, time
kind, count, where = sys.argv[1], int(sys.argv[2]), sys.argv[3]
if kind in ("tmpdir", "scratch", "chmod"):
    where = os.environ.get("TMPDIR", "/tmp")
names = [os.path.join(where, f"f{i:05d}") for i in range(count)]
if kind == "chmod":
    for name in names:
        open(name, "w").close()
start = time.perf_counter()
if kind == "chmod":
    for name in names:
        os.chmod(name, 0o600)
    elapsed = time.perf_counter() - start
    for name in names:
        os.unlink(name)
elif kind in ("create", "tmpdir", "scratch"):
    for name in names:
        with open(name, "w") as handle:
            handle.write("x" * 64)
    elapsed = time.perf_counter() - start
    for name in names:
        os.unlink(name)
elif kind == "rewrite":
    for name in names:
        with open(name, "w") as handle:
            handle.write("y" * 64)
    elapsed = time.perf_counter() - start
else:
    for name in names:
        with open(name) as handle:
            handle.read()
    elapsed = time.perf_counter() - start
print(elapsed)
"""


def run_once(argv: list[str], cwd: Path, env: dict[str, str]) -> float:
    result = subprocess.run(
        argv, cwd=cwd, env=env, capture_output=True, text=True, check=False, timeout=600
    )
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(argv[:3])}...: {result.stderr.strip()[-300:]}")
    return float(result.stdout.strip().splitlines()[-1])


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=9, help="measured rounds (9)")
    parser.add_argument("--files", type=int, default=2000, help="files per workload (2000)")
    parser.add_argument("--modes", default="namespace,fallback", help="sandbox modes")
    parser.add_argument("--workloads", default=",".join(WORKLOADS), help="which workloads")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    add_target_arguments(parser)
    args = parser.parse_args(argv)
    args.modes = comma_list(args.modes)
    args.workloads = comma_list(args.workloads)
    if set(args.modes) - set(MODE_ENV) or set(args.workloads) - set(WORKLOADS):
        parser.error("unknown mode or workload")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    python = Path(sys.executable)
    base_env = {k: v for k, v in os.environ.items() if k != NO_USERNS_VAR}
    samples: dict[tuple[str, str], list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="safe-run-writes-bench-") as tmp:
        project = Path(tmp)
        write_project(project, PYPROJECT, args.safe_run)
        (project / "work.py").write_text(SCRIPT, encoding="utf-8")
        data = project / "data"
        data.mkdir()
        for i in range(args.files):
            (data / f"f{i:05d}").write_text("z" * 64)
        scratch = project / "scratch"
        scratch.mkdir()
        plain = project / "plain"  # no [tool.safe-run]: the default policy, no write grant
        plain.mkdir()
        (plain / "pyproject.toml").write_text('[project]\nname = "plain"\nversion = "0"\n')
        (plain / "work.py").write_text(SCRIPT, encoding="utf-8")
        venv = ["--venv", str(args.venv)] if args.venv else []
        commands: list[tuple[str, str, list[str], dict[str, str], Path]] = []
        for workload in args.workloads:
            where = str(data if workload in ("rewrite", "read") else scratch)
            words = ["work.py", workload, str(args.files), where]
            cwd = plain if workload in PLAIN_WORKLOADS else project
            bare_env = {**base_env, "TMPDIR": tmp}
            commands.append((workload, "bare", [str(python), *words], bare_env, cwd))
            for mode in args.modes:
                env = {**base_env, **MODE_ENV[mode]}
                argv = [str(args.safe_run), *venv, *words]
                commands.append((workload, mode, argv, env, cwd))
        for round_index in range(args.rounds + 1):  # the first round warms caches
            order = (
                commands[round_index % len(commands) :] + commands[: round_index % len(commands)]
            )
            for workload, side, argv_, env, cwd in order:
                elapsed = run_once(argv_, cwd, env)
                if round_index:
                    samples.setdefault((workload, side), []).append(elapsed)
    rows: list[dict[str, Any]] = []
    for workload in args.workloads:
        bare = statistics.median(samples[(workload, "bare")])
        row: dict[str, Any] = {"workload": workload, "bare_ms": round(bare * 1000, 1)}
        for mode in args.modes:
            value = statistics.median(samples[(workload, mode)])
            row[f"{mode}_ms"] = round(value * 1000, 1)
            row[f"{mode}_ratio"] = round(value / bare, 2)
            row[f"{mode}_us_per_call"] = round((value - bare) / args.files * 1e6, 1)
        if {"namespace", "fallback"} <= set(args.modes):
            row["fallback_vs_namespace"] = round(row["fallback_ms"] / row["namespace_ms"], 2)
        rows.append(row)
    meta = {
        "rounds": args.rounds,
        "files": args.files,
        "python": platform.python_version(),
        "kernel": platform.release(),
        "euid": os.geteuid(),
    }
    if args.json:
        json.dump({**meta, "results": rows}, sys.stdout, indent=2)
        print()
        return 0
    print(
        f"filesystem broker: {args.files} files per workload, median of {args.rounds} "
        f"interleaved rounds; Python {meta['python']}, kernel {meta['kernel']}, "
        f"euid {meta['euid']}"
    )
    both = {"namespace", "fallback"} <= set(args.modes)
    header = f"{'workload':<9} {'bare':>8}"
    for mode in args.modes:
        header += f" {mode:>10} {'ratio':>6} {'+us/call':>8}"
    if both:
        header += f" {'fb/ns':>6}"
    print(header)
    print("-" * len(header))
    for row in rows:
        line = f"{row['workload']:<9} {row['bare_ms']:>7.1f}m"
        for mode in args.modes:
            line += (
                f" {row[f'{mode}_ms']:>9.1f}m {row[f'{mode}_ratio']:>5.2f}x"
                f" {row[f'{mode}_us_per_call']:>8.1f}"
            )
        if both:
            line += f" {row['fallback_vs_namespace']:>5.2f}x"
        print(line)
    print(
        "(ms for the workload's loop alone; +us/call: added per file operation; "
        "fb/ns: fallback mode over namespace mode)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
