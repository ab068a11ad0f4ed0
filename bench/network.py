"""Measure what safe-run's network proxy costs: throughput, first byte, start-up.

With ``[tool.safe-run.network] allow`` every byte a sandboxed program exchanges goes
through the filtering proxy in the supervisor.  DESIGN.md asks for real mechanisms
that stay fast; this script is how "fast" is checked and how the figures in docs/ are
produced.  It measures, side by side in one run:

(a) **throughput** of one large download over loopback from a local origin: a bare
    Python client fetching directly, against the same client under
    ``safe-run --allow-host 127.0.0.1:PORT`` fetching through the proxy, both as an
    absolute-URI request to ``HTTP_PROXY`` and through a ``CONNECT`` tunnel;
(b) **time to first byte** of a small request, each on a fresh connection (the proxy
    opens one upstream connection per request), median over many requests made
    inside one client process;
(c) **start-up**: a trivial script under ``safe-run`` with an allowed host (which
    starts the proxy) against ``safe-run`` without one and bare ``python``.

In (a) and (b) the client times itself and prints the result, so sandbox start-up is
not part of those numbers.  Every side of every case is interleaved round by round
(and the order alternates), so machine noise lands on all sides alike; start-up is
reported as medians because it has a long right tail.

Usage (from a venv where safe-pip is installed, e.g. ``nox -s bench_network``)::

    python bench/network.py [--size-mib 1024] [--rounds 3] [--ttfb-requests 50]
                            [--startup-runs 20] [--modes namespace,fallback]
                            [--parts transfer,ttfb,startup] [--json]
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
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# The local origin is the one the network tests use (tests/net_servers.py), so the
# benchmark and the tests exercise the same server.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from net_servers import HttpOrigin, pattern_sha256

# The start-up benchmark's modes, project and statistics, so both report alike.
from startup import (
    MODE_ENV,
    NO_USERNS_VAR,
    PYPROJECT,
    add_target_arguments,
    comma_list,
    percentile,
    write_project,
)

#: Variables that would send the *bare* client through some proxy of the caller's.
PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")
PARTS = ("transfer", "ttfb", "startup")
#: How the client reaches the origin: directly, or through safe-run's proxy.
VIAS = ("direct", "http-proxy", "connect")

#: The client, run bare (``direct``) and under safe-run (the proxied vias).  It uses
#: http.client for every via, so the three differ only in the path the bytes take,
#: and reads into one preallocated buffer so the client is not the bottleneck.
CLIENT = """\
import http.client, json, os, sys, time, urllib.parse

via, kind, port, amount = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
ORIGIN = "127.0.0.1"
if via != "direct" and not os.environ.get("HTTP_PROXY"):
    sys.exit("client: no HTTP_PROXY inside the sandbox: is the network allowlist in place?")
proxy = urllib.parse.urlsplit(os.environ.get("HTTP_PROXY", ""))


def get(path):
    if via == "direct":
        connection = http.client.HTTPConnection(ORIGIN, port, timeout=300)
        target = path
    else:
        connection = http.client.HTTPConnection(proxy.hostname, proxy.port, timeout=300)
        if via == "connect":
            connection.set_tunnel(ORIGIN, port)
            target = path
        else:
            target = f"http://{ORIGIN}:{port}{path}"
    connection.request("GET", target)
    response = connection.getresponse()
    if response.status != 200:
        sys.exit(f"client: {via} GET {path}: HTTP {response.status} {response.reason}")
    return connection, response


if kind == "transfer":
    view = memoryview(bytearray(1 << 20))
    start = time.perf_counter()
    connection, response = get(f"/bytes/{amount}")
    total = 0
    while count := response.readinto(view):
        total += count
    elapsed = time.perf_counter() - start
    connection.close()
    print(json.dumps({"bytes": total, "seconds": elapsed}))
else:
    samples = []
    for index in range(amount + 2):  # two warm-up requests: imports, first resolution
        start = time.perf_counter()
        connection, response = get("/hello")
        response.read(1)
        elapsed = time.perf_counter() - start
        response.read()
        connection.close()
        if index >= 2:
            samples.append(elapsed)
    print(json.dumps({"seconds": samples}))
"""

TRIVIAL = "pass\n"

#: Seconds before one client or start-up run counts as hung.
RUN_TIMEOUT = 600.0


@dataclass
class Series:
    """One measured thing (a via in one mode, or a start-up command) and its samples."""

    part: str
    mode: str | None
    name: str
    argv: list[str]
    env: dict[str, str]
    samples: list[float] = field(default_factory=list)
    error: str | None = None


def run(argv: Sequence[str], cwd: Path, env: dict[str, str]) -> tuple[str, str | None]:
    """Run once; stdout and an error text (the last stderr line) if it failed."""
    try:
        result = subprocess.run(
            argv,
            cwd=cwd,
            env=env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return "", f"{type(exc).__name__}: {exc}"
    if result.returncode != 0:
        lines = result.stderr.strip().splitlines()
        return result.stdout, f"exit {result.returncode}: {lines[-1] if lines else '(no stderr)'}"
    return result.stdout, None


def client_series(
    part: str,
    modes: Sequence[str],
    python: Path,
    safe_run_prefix: list[str],
    base_env: dict[str, str],
    port: int,
    amount: int,
) -> list[Series]:
    """The direct client once, then each proxied via in each mode."""
    client_args = [str(port), str(amount)]
    series = [
        Series(
            part,
            None,
            "direct",
            [str(python), "client.py", "direct", part, *client_args],
            base_env,
        )
    ]
    for mode in modes:
        for via in VIAS[1:]:
            argv = [
                *safe_run_prefix,
                "--allow-host",
                f"127.0.0.1:{port}",
                "client.py",
                via,
                part,
                *client_args,
            ]
            series.append(Series(part, mode, via, argv, {**base_env, **MODE_ENV[mode]}))
    return series


def startup_series(
    modes: Sequence[str], python: Path, safe_run_prefix: list[str], base_env: dict[str, str]
) -> list[Series]:
    """Bare python, then safe-run without and with an allowed host, in each mode.

    ``127.0.0.1:1`` is never contacted: the allowed host only makes safe-run start the
    proxy, which is the cost being measured.
    """
    series = [Series("startup", None, "python", [str(python), "trivial.py"], base_env)]
    for mode in modes:
        env = {**base_env, **MODE_ENV[mode]}
        series.append(Series("startup", mode, "safe-run", [*safe_run_prefix, "trivial.py"], env))
        with_host = [*safe_run_prefix, "--allow-host", "127.0.0.1:1", "trivial.py"]
        series.append(Series("startup", mode, "safe-run --allow-host", with_host, env))
    return series


def measure_once(item: Series, project: Path, expected_bytes: int) -> None:
    """One run of one series: append its samples, or record why it failed."""
    if item.part == "startup":
        start = time.perf_counter()
        _, error = run(item.argv, project, item.env)
        elapsed = time.perf_counter() - start
        if error is None:
            item.samples.append(elapsed)
        item.error = error
        return
    stdout, error = run(item.argv, project, item.env)
    if error is not None:
        if item.mode is not None:
            error += " (the proxied cases need safe-run's network allowlist)"
        item.error = error
        return
    try:
        report = json.loads(stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        item.error = f"unreadable client output: {stdout[-200:]!r}"
        return
    if item.part == "transfer":
        if report["bytes"] != expected_bytes:
            item.error = f"received {report['bytes']} bytes, expected {expected_bytes}"
            return
        item.samples.append(float(report["seconds"]))
    else:
        item.samples.extend(float(value) for value in report["seconds"])


def measure(series: list[Series], rounds: int, project: Path, expected_bytes: int) -> None:
    """Interleave: every round runs every series once, in alternating order.

    A series that fails is dropped from later rounds, its error kept for the report,
    so one broken mode (or a safe-run without the allowlist) hides nothing else.
    """
    for round_index in range(rounds):
        order = series if round_index % 2 == 0 else list(reversed(series))
        for item in order:
            if item.error is None:
                measure_once(item, project, expected_bytes)


def summarize_transfer(series: list[Series], size: int) -> list[dict[str, Any]]:
    """MB/s per series (median of rounds) and the ratio to the direct client."""
    rows: list[dict[str, Any]] = []
    direct: float | None = None
    for item in series:
        row: dict[str, Any] = {"mode": item.mode, "via": item.name, "error": item.error}
        if item.error is None and item.samples:
            rates = [size / seconds / 1e6 for seconds in item.samples]
            row["mb_per_s"] = round(statistics.median(rates), 1)
            row["samples_mb_per_s"] = [round(rate, 1) for rate in rates]
            if item.mode is None:
                direct = row["mb_per_s"]
        rows.append(row)
    for row in rows:
        if direct and "mb_per_s" in row:
            row["ratio_to_direct"] = round(row["mb_per_s"] / direct, 3)
    return rows


def summarize_ms(series: list[Series], reference: str) -> list[dict[str, Any]]:
    """Median and p90 in ms per series; ``added_ms`` over the series named reference."""
    rows: list[dict[str, Any]] = []
    base: float | None = None
    for item in series:
        row: dict[str, Any] = {"mode": item.mode, "case": item.name, "error": item.error}
        if item.error is None and item.samples:
            samples_ms = [seconds * 1e3 for seconds in item.samples]
            row["median_ms"] = round(statistics.median(samples_ms), 3)
            row["p90_ms"] = round(percentile(samples_ms, 0.9), 3)
            row["samples"] = len(samples_ms)
            if item.name == reference and item.mode is None:
                base = row["median_ms"]
        rows.append(row)
    for row in rows:
        if base and "median_ms" in row:
            row["added_ms"] = round(row["median_ms"] - base, 3)
            row["ratio"] = round(row["median_ms"] / base, 3)
    return rows


def add_proxy_cost(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Start-up rows with ``--allow-host`` get ``proxy_added_ms``: what starting the
    proxy adds to a safe-run of the same mode without hosts (the question users ask)."""
    plain = {row["mode"]: row.get("median_ms") for row in rows if row["case"] == "safe-run"}
    for row in rows:
        base = plain.get(row["mode"])
        if row["case"] == "safe-run --allow-host" and base and "median_ms" in row:
            row["proxy_added_ms"] = round(row["median_ms"] - base, 3)
    return rows


def print_report(results: dict[str, Any]) -> None:
    """Human-readable tables from the JSON-shaped results."""
    meta = results["meta"]
    print(
        f"safe-run network: Python {meta['python_version']}, kernel {meta['kernel']}, "
        f"euid {meta['euid']}"
    )
    if "transfer" in results:
        print(f"\n(a) throughput: {meta['size_mib']} MiB over loopback, {meta['rounds']} rounds")
        print(f"{'mode':<10} {'via':<12} {'MB/s':>9} {'vs direct':>10}")
        for row in results["transfer"]:
            mode = row["mode"] or "-"
            if row["error"] is not None:
                print(f"{mode:<10} {row['via']:<12} FAILED  {row['error']}")
                continue
            ratio = row.get("ratio_to_direct")
            ratio_text = f"{ratio:.2f}x" if ratio is not None else "-"
            print(f"{mode:<10} {row['via']:<12} {row['mb_per_s']:>9.1f} {ratio_text:>10}")
    for part, title in (
        ("ttfb", f"(b) time to first byte: {meta['ttfb_requests']} requests x rounds"),
        ("startup", f"(c) start-up of a trivial script: {meta['startup_runs']} runs each"),
    ):
        if part not in results:
            continue
        print(f"\n{title}")
        print(f"{'mode':<10} {'case':<22} {'median':>9} {'p90':>9} {'added':>9} {'ratio':>7}")
        for row in results[part]:
            mode = row["mode"] or "-"
            if row["error"] is not None:
                print(f"{mode:<10} {row['case']:<22} FAILED  {row['error']}")
                continue
            added = f"{row['added_ms']:+.2f}" if "added_ms" in row else "-"
            ratio = f"{row['ratio']:.2f}x" if "ratio" in row else "-"
            print(
                f"{mode:<10} {row['case']:<22} {row['median_ms']:>9.2f} "
                f"{row['p90_ms']:>9.2f} {added:>9} {ratio:>7}"
            )
    for row in results.get("startup", []):
        if "proxy_added_ms" in row:
            print(
                f"{row['mode']}: --allow-host (starting the proxy) adds "
                f"{row['proxy_added_ms']:+.2f} ms to safe-run's start-up"
            )
    print("\n(times in ms; 'added' and 'ratio' compare medians with the direct/bare row)")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command-line options; defaults measure the venv this script runs in."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--size-mib", type=int, default=1024, help="transfer size (1024)")
    parser.add_argument("--rounds", type=int, default=3, help="transfer/TTFB rounds (3)")
    parser.add_argument("--ttfb-requests", type=int, default=50, help="per client (50)")
    parser.add_argument("--startup-runs", type=int, default=20, help="runs per side (20)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    parser.add_argument("--modes", default="namespace,fallback", help="namespace,fallback")
    parser.add_argument("--parts", default=",".join(PARTS), help="transfer,ttfb,startup")
    add_target_arguments(parser)
    args = parser.parse_args(argv)
    args.modes = comma_list(args.modes)
    args.parts = comma_list(args.parts)
    if not args.modes or set(args.modes) - set(MODE_ENV):
        parser.error("--modes: a comma-separated subset of namespace, fallback")
    if not args.parts or set(args.parts) - set(PARTS):
        parser.error(f"--parts: a comma-separated subset of {', '.join(PARTS)}")
    if min(args.size_mib, args.rounds, args.ttfb_requests, args.startup_runs) < 1:
        parser.error("sizes and counts must be at least 1")
    return args


def collect(args: argparse.Namespace) -> tuple[dict[str, Any], bool]:
    """Measure the parts ``args`` asks for: the JSON-shaped results, and whether any
    case failed.  bench/perf.py calls this with its own short settings."""
    python = Path(sys.executable)
    safe_run: Path = args.safe_run
    prefix = [str(safe_run), *(["--venv", str(args.venv)] if args.venv else [])]
    base_env = {
        key: value
        for key, value in os.environ.items()
        if key != NO_USERNS_VAR and key.upper() not in PROXY_VARS
    }
    size = args.size_mib << 20
    results: dict[str, Any] = {
        "meta": {
            "size_mib": args.size_mib,
            "rounds": args.rounds,
            "ttfb_requests": args.ttfb_requests,
            "startup_runs": args.startup_runs,
            "modes": args.modes,
            "python": str(python),
            "python_version": platform.python_version(),
            "safe_run": str(safe_run),
            "kernel": platform.release(),
            "euid": os.geteuid(),
        }
    }
    failed = False
    with tempfile.TemporaryDirectory(prefix="safe-run-net-bench-") as tmp:
        project = Path(tmp)
        write_project(project, PYPROJECT, args.safe_run)
        (project / "client.py").write_text(CLIENT, encoding="utf-8")
        (project / "trivial.py").write_text(TRIVIAL, encoding="utf-8")
        with HttpOrigin() as origin:
            if "transfer" in args.parts:
                pattern_sha256(size)  # the origin's X-Sha256, computed before timing
                series = client_series(
                    "transfer", args.modes, python, prefix, base_env, origin.port, size
                )
                measure(series, args.rounds, project, size)
                results["transfer"] = summarize_transfer(series, size)
                failed |= any(item.error for item in series)
            if "ttfb" in args.parts:
                series = client_series(
                    "ttfb", args.modes, python, prefix, base_env, origin.port, args.ttfb_requests
                )
                measure(series, args.rounds, project, 0)
                results["ttfb"] = summarize_ms(series, "direct")
                failed |= any(item.error for item in series)
        if "startup" in args.parts:
            series = startup_series(args.modes, python, prefix, base_env)
            measure(series, 1, project, 0)  # warm-up: cold page cache, first policy parse
            for item in series:
                item.samples.clear()
            measure(series, args.startup_runs, project, 0)
            results["startup"] = add_proxy_cost(summarize_ms(series, "python"))
            failed |= any(item.error for item in series)
    return results, failed


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; exit 1 if any case could not be measured, 2 on bad setup."""
    args = parse_args(argv)
    safe_run: Path = args.safe_run
    if not (safe_run.is_file() and os.access(safe_run, os.X_OK)):
        print(f"network.py: no executable safe-run at {safe_run}", file=sys.stderr)
        return 2
    results, failed = collect(args)
    if args.json:
        json.dump(results, sys.stdout, indent=2)
        print()
    else:
        print_report(results)
    if failed:
        print(
            "network.py: some cases could not be measured (see FAILED above); the proxied "
            "cases need a safe-run whose --allow-host works",
            file=sys.stderr,
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
