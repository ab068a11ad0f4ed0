"""The performance issue's benchmark in one run: installs, start-up, the proxy.

``nox -s bench`` runs this.  It prints, side by side in one run:

1. **install**: safe-pip against bare uv on the issue's workloads (bench/workloads.py),
   from a local index of real artifacts and from pypi.org, warm caches, fresh venvs,
   medians of interleaved rounds, each row with its goal's limit and PASS or MISS;
2. **startup**: ``safe-run`` against a bare ``python`` start, in namespace and
   fallback mode, and bubblewrap (``bwrap`` with every namespace) as the yardstick
   of a sandbox start that is only namespaces (bench/startup.py's cases);
3. **network**: the proxy's throughput, time to first byte and start-up cost
   (bench/network.py, with shorter settings than its own defaults).

At the end, every goal of the issue's "done when" with its verdicts.  The whole run
takes several minutes; ``--quick`` (fewer rounds) about a third of that, and
``--parts`` / ``--index`` / ``--workloads`` select what runs.

Usage (from a venv where safe-pip is installed, e.g. ``nox -s bench``)::

    python bench/perf.py [--quick] [--parts install,startup,network]
                         [--index local,pypi] [--workloads requests,sync,...] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import network
import startup
import workloads
from install import (
    CACHE_DIR,
    PYPI_URL,
    Bench,
    BenchError,
    base_env,
    pypi_allow_args,
    pypi_problem,
    python_tag,
)
from pkg_index import LocalIndex, uv_binary

PARTS = ("install", "startup", "network")

#: Rounds and runs: (full run, --quick).
INSTALL_ROUNDS = (5, 2)
STARTUP_RUNS = (30, 10)
STARTUP_WARMUP = (2, 1)
#: bench/network.py's options for the proxy figures: shorter than its defaults (1 GiB,
#: 3 rounds, 50 requests, 20 start-ups), which measure the proxy alone for docs/.
NETWORK_ARGS = (
    ["--size-mib", "256", "--rounds", "3", "--ttfb-requests", "30", "--startup-runs", "10"],
    ["--size-mib", "64", "--rounds", "1", "--ttfb-requests", "10", "--startup-runs", "5"],
)

#: Goal (4): what safe-run may add to a bare ``python -c pass`` in namespace mode.
STARTUP_GOAL_MS = 15.0
STARTUP_GOAL_CASE = "python -c pass"


# --- install ------------------------------------------------------------------------------


def install_rows(
    bench: Bench, local_url: str, indexes: Sequence[str], selected: Sequence[workloads.Workload]
) -> list[workloads.Row]:
    """Every selected workload against every selected index.  pypi.org is probed
    first: when it does not answer, its rows are skipped with the reason; behind a
    gateway that resolves it to internal addresses safe-pip gets ``--allow-host`` for
    them, as bench/install.py does."""
    rows = []
    for index in indexes:
        url, extra, skipped = local_url, [], None
        if index == "pypi":
            url = PYPI_URL
            skipped = pypi_problem(bench.env)
            if skipped is None:
                try:
                    extra = pypi_allow_args()
                except OSError as exc:
                    skipped = f"cannot resolve PyPI: {exc}"
        for workload in selected:
            row = workloads.Row(workload, index, url, extra)
            row.skipped = skipped
            rows.append(row)
    return rows


def run_install(args: argparse.Namespace) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Part 1: the install table's rows (JSON shape) and what they were measured with."""
    uv = args.uv or uv_binary()
    short_version, full_version = python_tag(args.python)
    files = args.cache_dir / f"perf-cp{short_version.replace('.', '')}"
    env = base_env()
    if "local" in args.index:
        workloads.ensure_index_files(files, short_version, uv, env)
    files.mkdir(parents=True, exist_ok=True)
    uv_version = subprocess.run(
        [uv, "--version"], capture_output=True, text=True, check=False
    ).stdout.strip()
    selected = [w for w in workloads.WORKLOADS if w.key in args.workloads]
    with (
        LocalIndex(files) as index,
        tempfile.TemporaryDirectory(prefix="safe-pip-perf-") as tmp,
    ):
        bench = Bench(args.python, uv, str(args.safe_pip), env, Path(tmp))
        rows = install_rows(bench, index.url, args.index, selected)
        caches = {tool: bench.fresh_dir(f"{tool}-cache") for tool in workloads.TOOLS}
        workloads.measure(bench, rows, args.install_rounds, caches)
    meta = {
        "rounds": args.install_rounds,
        "python": args.python,
        "python_version": full_version,
        "uv": uv,
        "uv_version": uv_version,
        "safe_pip": str(args.safe_pip),
        "pypi_allow_hosts": next(
            (row.safe_pip_args[1::2] for row in rows if row.index == "pypi"), []
        ),
    }
    return [workloads.summarize(row) for row in rows], meta


# --- start-up -----------------------------------------------------------------------------


def bwrap_prefix(bwrap: str, project: Path) -> list[str]:
    """bubblewrap with every namespace (user, mount, pid, network, ipc, uts, cgroup), the
    host's root read-only, its own /dev, /proc and /tmp, and the project bound in:
    about what a namespace sandbox must do at the least, without Landlock, seccomp,
    a policy or a second interpreter."""
    return [
        bwrap,
        "--unshare-all",
        "--die-with-parent",
        *("--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp"),
        *("--bind", str(project), str(project), "--chdir", str(project)),
        "--",
    ]


def startup_cases(
    args: argparse.Namespace, python: Path, project: Path, script: Path
) -> list[startup.Case]:
    """bench/startup.py's cases in both modes, then the same two commands under bwrap
    (mode ``bwrap``), all measured against the same bare commands."""
    cases = startup.build_cases(["namespace", "fallback"], python, args.safe_run, args.venv, script)
    bwrap = shutil.which("bwrap")
    if bwrap is None:
        return cases
    env = {key: value for key, value in os.environ.items() if key != startup.NO_USERNS_VAR}
    prefix = bwrap_prefix(bwrap, project)
    for case in cases[:2]:
        cases.append(startup.Case("bwrap", case.name, case.bare, [*prefix, *case.bare], env))
    return cases


def run_startup(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Part 2: start-up rows in milliseconds (bench/startup.py's shape), each with
    ``vs_bwrap_ms`` (its sandboxed median minus bwrap's on the same command) and the
    goal's verdict on the namespace ``python -c pass`` row."""
    python = Path(sys.executable)
    with tempfile.TemporaryDirectory(prefix="safe-run-perf-") as tmp:
        project = Path(tmp)
        startup.write_project(project, startup.PYPROJECT, args.safe_run)
        script = project / "tiny.py"
        script.write_text(startup.SCRIPT, encoding="utf-8")
        cases = startup_cases(args, python, project, script)
        startup.measure(cases, args.startup_runs, args.startup_warmup, project)
    rows = [startup.summarize(case) for case in cases]
    bwrap = {row["case"]: row for row in rows if row["mode"] == "bwrap" and row["error"] is None}
    for row in rows:
        if row["error"] is not None:
            continue
        other = bwrap.get(row["case"])
        if other is not None and row["mode"] != "bwrap":
            row["vs_bwrap_ms"] = round(
                row["safe_run"]["median_ms"] - other["safe_run"]["median_ms"], 3
            )
        if row["mode"] == "namespace" and row["case"] == STARTUP_GOAL_CASE:
            row["goal"] = f"bare+{STARTUP_GOAL_MS:g} ms"
            row["verdict"] = "PASS" if row["added_ms"] <= STARTUP_GOAL_MS else "MISS"
    return rows


def print_startup(rows: list[dict[str, Any]], runs: int, have_bwrap: bool) -> None:
    """The start-up table: safe-run in both modes and bwrap against bare python."""
    print(
        f"\nstart-up: {runs} runs per side, interleaved, medians; Python "
        f"{platform.python_version()} ({sys.executable}), kernel {platform.release()}, "
        f"euid {os.geteuid()}"
    )
    columns = (
        f"{'sandbox':<19} {'case':<16} {'bare':>7} {'sandboxed':>9} {'added':>7} "
        f"{'ratio':>6} {'vs bwrap':>8} {'goal':<12}"
    )
    print(columns)
    print("-" * len(columns))
    for row in rows:
        sandbox = "bwrap --unshare-all" if row["mode"] == "bwrap" else f"safe-run {row['mode']}"
        if row["error"] is not None:
            print(f"{sandbox:<19} {row['case']:<16} FAILED  {row['error']}")
            continue
        vs_bwrap = f"{row['vs_bwrap_ms']:+.1f}" if "vs_bwrap_ms" in row else "-"
        goal = f"{row['goal']} {row['verdict']}" if "goal" in row else ""
        print(
            f"{sandbox:<19} {row['case']:<16} {row['bare']['median_ms']:>7.1f} "
            f"{row['safe_run']['median_ms']:>9.1f} {row['added_ms']:>+7.1f} "
            f"{row['ratio']:>5.2f}x {vs_bwrap:>8} {goal:<12}"
        )
    print("(ms; 'added': sandboxed minus bare; 'vs bwrap': safe-run minus bwrap, same command)")
    if not have_bwrap:
        print("(no bwrap row: bubblewrap is not installed; apt-get install bubblewrap)")


# --- network ------------------------------------------------------------------------------


def run_network(args: argparse.Namespace) -> tuple[dict[str, Any], bool]:
    """Part 3: bench/network.py's figures with :data:`NETWORK_ARGS`, both modes."""
    argv = [*NETWORK_ARGS[1 if args.quick else 0], "--safe-run", str(args.safe_run)]
    if args.venv is not None:
        argv += ["--venv", str(args.venv)]
    return network.collect(network.parse_args(argv))


# --- the whole run ------------------------------------------------------------------------


def goal_lines(results: dict[str, Any]) -> list[str]:
    """Every goal of the issue's "done when" and each measured row's verdict."""
    lines = []
    titles = {
        "wheels": "(1) wheels-only install",
        "sdist": "(2) sdist reinstall",
        "sync": "(3) safe-pip sync",
    }
    for kind, title in titles.items():
        goal = workloads.GOALS[kind]
        lines.append(f"{title} <= {goal.text()} s")
        rows = [row for row in results.get("install", []) if row["kind"] == kind]
        if not rows:
            lines.append("    (not measured in this run)")
        for row in rows:
            where = f"{row['index']:<5} {row['work']}"
            if "verdict" not in row:
                why = row["error"] or f"skipped: {row['skipped']}"
                lines.append(f"    ----  {where}: {why}")
                continue
            lines.append(
                f"    {row['verdict']}  {where}: {row['safe-pip']['median_s']:.2f} s "
                f"(limit {row['limit_s']:.2f} s)"
            )
    lines.append(f"(4) safe-run start-up <= bare python -c pass + {STARTUP_GOAL_MS:g} ms")
    rows = [row for row in results.get("startup", []) if "verdict" in row]
    if not rows:
        lines.append("    (not measured in this run)")
    for row in rows:
        lines.append(
            f"    {row['verdict']}  namespace: +{row['added_ms']:.1f} ms "
            f"({row['safe_run']['median_ms']:.1f} vs {row['bare']['median_ms']:.1f} ms)"
        )
    return lines


def compile_bytecode(safe_run: Path) -> None:
    """Compile the measured safe-pip's modules to bytecode first.  uv installs without
    it, and with ``PYTHONDONTWRITEBYTECODE`` set nothing ever writes it, so every
    ``safe-run`` would compile its modules again: that doubled start-up here (81 vs
    41 ms), which no user with a normal install pays."""
    python = safe_run.parent / "python"
    code = (
        "import compileall, os, safe_pip; "
        "compileall.compile_dir(os.path.dirname(safe_pip.__file__), quiet=1, workers=0)"
    )
    # -I: the installed package, not a source tree in the working directory.
    done = subprocess.run(
        [str(python), "-I", "-c", code], capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        print(f"perf.py: could not compile safe_pip: {done.stderr.strip()}", file=sys.stderr)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command-line options; defaults measure the safe-pip next to this interpreter."""
    here = Path(sys.executable)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="fewer rounds: a smoke run")
    parser.add_argument("--parts", default=",".join(PARTS), help="install,startup,network")
    parser.add_argument("--index", default=",".join(workloads.INDEXES), help="local,pypi")
    keys = ",".join(workload.key for workload in workloads.WORKLOADS)
    parser.add_argument("--workloads", default=keys, help=f"install rows ({keys})")
    parser.add_argument("--rounds", type=int, help="install rounds (default 5, --quick 2)")
    parser.add_argument("--runs", type=int, help="start-up runs per side (30, --quick 10)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    parser.add_argument(
        "--python", default="/usr/bin/python3", help="interpreter of the venvs (/usr/bin/python3)"
    )
    parser.add_argument(
        "--safe-pip", type=Path, default=here.parent / "safe-pip", help="safe-pip to measure"
    )
    parser.add_argument("--uv", help="bare uv (default: the uv package's, which safe-pip runs)")
    parser.add_argument(
        "--cache-dir", type=Path, default=CACHE_DIR, help=f"downloaded artifacts ({CACHE_DIR})"
    )
    startup.add_target_arguments(parser)
    args = parser.parse_args(argv)
    for name, allowed in (
        ("parts", PARTS),
        ("index", workloads.INDEXES),
        ("workloads", [workload.key for workload in workloads.WORKLOADS]),
    ):
        chosen = startup.comma_list(getattr(args, name))
        if not chosen or set(chosen) - set(allowed):
            parser.error(f"--{name}: a comma-separated subset of {', '.join(allowed)}")
        setattr(args, name, chosen)
    if min(args.rounds or 1, args.runs or 1) < 1:
        parser.error("--rounds and --runs must be at least 1")
    args.install_rounds = args.rounds or INSTALL_ROUNDS[args.quick]
    args.startup_runs = args.runs or STARTUP_RUNS[args.quick]
    args.startup_warmup = STARTUP_WARMUP[args.quick]
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the selected parts; exit 1 if anything could not be measured, 2 on bad
    setup.  A goal that is missed is a result, not a failure."""
    args = parse_args(argv)
    for program in (args.safe_pip, args.safe_run):
        if not (program.is_file() and os.access(program, os.X_OK)):
            print(f"perf.py: no executable {program.name} at {program}", file=sys.stderr)
            return 2
    started = time.monotonic()
    compile_bytecode(args.safe_run)
    results: dict[str, Any] = {"meta": {"quick": args.quick, "cpus": os.cpu_count()}}
    failed = False
    show = not args.json
    if "install" in args.parts:
        print("install: safe-pip vs bare uv", file=sys.stderr)
        try:
            results["install"], results["meta"]["install"] = run_install(args)
        except (BenchError, OSError) as exc:
            print(f"perf.py: {exc}", file=sys.stderr)
            return 2
        failed |= any(row["error"] is not None for row in results["install"])
        if show:
            meta = results["meta"]["install"]
            workloads.print_table(
                results["install"],
                f"install: safe-pip vs bare uv ({meta['uv_version']}, default link mode), "
                f"Python {meta['python_version']} ({meta['python']}), "
                f"{meta['rounds']} interleaved rounds",
            )
    if "startup" in args.parts:
        print("start-up: safe-run and bwrap vs bare python", file=sys.stderr)
        results["startup"] = run_startup(args)
        failed |= any(row["error"] for row in results["startup"])
        if show:
            print_startup(results["startup"], args.startup_runs, shutil.which("bwrap") is not None)
    if "network" in args.parts:
        print("network: the proxy", file=sys.stderr)
        results["network"], network_failed = run_network(args)
        failed |= network_failed
        if show:
            print()
            network.print_report(results["network"])
    results["goals"] = goal_lines(results)
    results["meta"]["total_seconds"] = round(time.monotonic() - started, 1)
    if args.json:
        json.dump(results, sys.stdout, indent=2)
        print()
    else:
        print("\ngoals (the performance issue's 'done when'):")
        print("\n".join(results["goals"]))
        print(f"(whole run: {results['meta']['total_seconds']:.0f} s)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
