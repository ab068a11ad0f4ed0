"""Measure what safe-run's phantom-token credential routes add to an API request.

With ``[tool.safe-run.credentials.NAME]`` the sandbox holds a phantom and the proxy in
the supervisor swaps it for the real key on the way to the API (docs/credentials.md).
Every request then takes a detour through the proxy, which opens its own TLS
connection upstream.  This script measures what that detour costs, side by side in one
run, against a local HTTPS stand-in for the OpenAI API (tests/tls_servers.py):

(a) **request latency** of a small non-streamed ``POST /v1/chat/completions`` made
    with ``http.client`` from one long-running process (so start-up is excluded),
    each request on a fresh connection: direct to the API over TLS, outside any
    sandbox; inside ``safe-run`` through the **base-URL route** (plain HTTP to
    ``http://127.0.0.1:PORT/.safe-run/NAME/...`` on the proxy); inside ``safe-run``
    through the **TLS route** (``CONNECT`` via ``HTTPS_PROXY``, the proxy answering the
    handshake with the per-run CA found through ``SSL_CERT_FILE``).  The proxy carries
    one request per connection, so the fair baseline is a fresh connection per request;
    "direct, keep-alive" (one connection for all requests) is reported as well.
(b) **streaming** with the official ``openai`` client: time to the first chunk
    (from just before ``create(...)``) and to the end of the stream, the API sending
    ``--stream-chunks`` chunks ``--stream-delay`` seconds apart.  "direct" uses an
    httpx pool without keep-alive, "direct, keep-alive" the SDK's defaults; inside
    the sandbox the SDK runs with its defaults (the proxy closes every connection).
    (The synchronous SDK closes a stream's response at ``[DONE]`` without reading the
    end of the chunked body, so httpx never reuses that connection: with the SDK's
    defaults, every streamed request opens a fresh connection anyway.)

The client times itself and prints JSON; each configuration is one client process
making ``--requests`` (or ``--streams``) timed requests after two warm-up ones.  Every
configuration runs once per round and the order alternates, so machine noise lands on
all of them alike.  Medians and p90 over all rounds' requests are reported.

Usage (from a venv where safe-pip, openai and cryptography are installed, e.g.
``nox -s bench_credentials``)::

    python bench/credentials.py [--rounds 3] [--requests 50] [--streams 8]
                                [--stream-chunks 5] [--stream-delay 0.05]
                                [--modes namespace] [--parts request,stream] [--json]
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# The sandbox modes and statistics of the other benchmarks, so all report alike; the
# HTTPS fake API and its CA are the credential tests' own (tests/tls_servers.py), so
# the benchmark and the tests exercise the same server.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from startup import (
    MODE_ENV,
    NO_USERNS_VAR,
    add_target_arguments,
    comma_list,
    percentile,
    write_project,
)
from tls_servers import FakeApi, TestCA

#: Variables that would send the *direct* client through some proxy of the caller's.
PROXY_VARS = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")
PARTS = ("request", "stream")
#: How the client reaches the API; the first two run outside the sandbox.
VIAS = ("direct", "direct-keepalive", "base-url", "tls")
LABELS = {
    "direct": "direct",
    "direct-keepalive": "direct, keep-alive",
    "base-url": "base-URL route",
    "tls": "TLS route",
}
#: In (b) "keep-alive" would promise too much: the SDK does not reuse a connection
#: after a stream (see the module docstring), so that row is the SDK's defaults.
STREAM_LABELS = {**LABELS, "direct-keepalive": "direct, SDK defaults"}
#: The real key the fake API wants; the sandbox only ever sees a phantom of it.
REAL_KEY = "sk-proj-BENCHREALKEYBENCHREALKEY0123456789"
#: The variable naming the API's https:// base URL (passed into the sandbox).
API_VAR = "BENCH_API"
#: The credential's name in both projects (the route is /.safe-run/NAME/...).
CREDENTIAL = "bench"

#: The client, run bare (direct vias) and under safe-run (routes).  Both parts check
#: every answer (a phantom the proxy failed to swap gets a 401 from the fake API).
CLIENT = """\
import http.client, json, os, ssl, sys, time, urllib.parse

part, via, count, chunks = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
WARMUP = 2  # imports, the first TLS context use, the first name resolution
API = urllib.parse.urlsplit(os.environ["BENCH_API"])
MESSAGES = [{"role": "user", "content": "hi"}]
if via == "base-url" and not os.environ.get("OPENAI_BASE_URL", "").startswith("http://"):
    sys.exit("client: no base-URL route in OPENAI_BASE_URL: is the credential configured?")
if via == "tls" and not os.environ.get("HTTPS_PROXY"):
    sys.exit("client: no HTTPS_PROXY inside the sandbox: is the credential configured?")


def request_part():
    # Honours SSL_CERT_FILE: the test CA outside, the per-run bundle in the sandbox.
    context = ssl.create_default_context()
    body = json.dumps({"model": "fake-model", "messages": MESSAGES}).encode()
    headers = {
        "Authorization": "Bearer " + os.environ["OPENAI_API_KEY"],
        "Content-Type": "application/json",
    }
    path = API.path + "/chat/completions"
    if via == "base-url":
        route = urllib.parse.urlsplit(os.environ["OPENAI_BASE_URL"])
        path = route.path + "/chat/completions"

        def connect():
            return http.client.HTTPConnection(route.hostname, route.port, timeout=60)

    elif via == "tls":
        proxy = urllib.parse.urlsplit(os.environ["HTTPS_PROXY"])

        def connect():
            connection = http.client.HTTPSConnection(
                proxy.hostname, proxy.port, context=context, timeout=60
            )
            connection.set_tunnel(API.hostname, API.port)
            return connection

    else:

        def connect():
            return http.client.HTTPSConnection(
                API.hostname, API.port, context=context, timeout=60
            )

    kept = connect() if via == "direct-keepalive" else None
    samples = []
    for index in range(count + WARMUP):
        start = time.perf_counter()
        connection = kept or connect()
        connection.request("POST", path, body, headers)
        response = connection.getresponse()
        data = response.read()
        elapsed = time.perf_counter() - start
        if kept is None:
            connection.close()
        if response.status != 200 or b"hello from the fake api" not in data:
            sys.exit(f"client: {via}: HTTP {response.status}: {data[:200]!r}")
        if index >= WARMUP:
            samples.append(elapsed)
    return {"seconds": samples}


def stream_part():
    import httpx
    import openai

    options = {}
    if via != "base-url":  # the route comes from OPENAI_BASE_URL, as the SDK reads it
        options["base_url"] = os.environ["BENCH_API"]
    if via == "direct":  # a fresh connection per request, like the proxied routes
        limits = httpx.Limits(max_connections=10, max_keepalive_connections=0)
        options["http_client"] = openai.DefaultHttpxClient(limits=limits)
    client = openai.OpenAI(max_retries=0, **options)
    first_samples, total_samples = [], []
    for index in range(count + WARMUP):
        first = None
        received = 0
        start = time.perf_counter()
        stream = client.chat.completions.create(
            model="fake-model", messages=MESSAGES, stream=True
        )
        for chunk in stream:
            if first is None:
                first = time.perf_counter() - start
            received += 1
        total = time.perf_counter() - start
        if received != chunks:
            sys.exit(f"client: {via}: {received} chunks, expected {chunks}")
        if index >= WARMUP:
            first_samples.append(first)
            total_samples.append(total)
    client.close()
    return {"first": first_samples, "total": total_samples}


print(json.dumps(request_part() if part == "request" else stream_part()))
"""

#: The projects' pyproject.toml: the python-runtime profile plus one credential.
PYPROJECT = """\
[project]
name = "safe-run-credentials-bench"
version = "0"

[tool.safe-run]
extends = ["python-runtime"]

[tool.safe-run.credentials.{name}]
env = "OPENAI_API_KEY"
hosts = ["{authority}"]
{extra}"""

#: Seconds before one client run counts as hung.
RUN_TIMEOUT = 300.0


@dataclass
class Series:
    """One configuration (a via, in one sandbox mode) and its samples per metric."""

    part: str
    mode: str | None
    via: str
    argv: list[str]
    env: dict[str, str]
    cwd: Path
    samples: dict[str, list[float]] = field(default_factory=dict)
    error: str | None = None


def write_projects(root: Path, api: FakeApi, safe_run: Path) -> dict[str, Path]:
    """A project directory per via kind: ``direct`` (no credential), ``base-url``
    and ``tls`` (the credential in that mode), each with the client in it."""
    projects = {
        "direct": "",
        "base-url": f'base-url = "{api.base_url}"\nbase-url-env = "OPENAI_BASE_URL"\n',
        "tls": 'mode = "tls"\n',
    }
    paths: dict[str, Path] = {}
    for kind, extra in projects.items():
        project = root / kind
        project.mkdir()
        if kind != "direct":
            text = PYPROJECT.format(name=CREDENTIAL, authority=api.authority, extra=extra)
            write_project(project, text, safe_run)
        (project / "client.py").write_text(CLIENT, encoding="utf-8")
        paths[kind] = project
    return paths


def make_series(
    part: str,
    modes: Sequence[str],
    python: Path,
    safe_run_prefix: list[str],
    base_env: dict[str, str],
    projects: dict[str, Path],
    count: int,
    chunks: int,
) -> list[Series]:
    """Both direct vias once, then each route in each sandbox mode."""
    client_args = [str(count), str(chunks)]
    series = [
        Series(
            part,
            None,
            via,
            [str(python), "client.py", part, via, *client_args],
            base_env,
            projects["direct"],
        )
        for via in VIAS[:2]
    ]
    for mode in modes:
        for via in VIAS[2:]:
            argv = [
                *safe_run_prefix,
                "--allow-env",
                API_VAR,
                "client.py",
                part,
                via,
                *client_args,
            ]
            env = {**base_env, **MODE_ENV[mode]}
            series.append(Series(part, mode, via, argv, env, projects[via]))
    return series


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


def measure_once(item: Series) -> None:
    """One client run: append its samples, or record why it failed."""
    stdout, error = run(item.argv, item.cwd, item.env)
    if error is not None:
        item.error = error
        return
    try:
        report = json.loads(stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        item.error = f"unreadable client output: {stdout[-200:]!r}"
        return
    for metric, values in report.items():
        item.samples.setdefault(metric, []).extend(float(value) for value in values)


def measure(series: list[Series], rounds: int) -> None:
    """Interleave: every round runs every series once, in alternating order.

    A series that fails is dropped from later rounds, its error kept for the report.
    """
    for round_index in range(rounds):
        order = series if round_index % 2 == 0 else list(reversed(series))
        for item in order:
            if item.error is None:
                measure_once(item)


def summarize(series: list[Series]) -> list[dict[str, Any]]:
    """Per series and metric: median and p90 in ms, and ``added_ms``/``ratio`` of the
    median over the ``direct`` (fresh connection) series."""
    rows: list[dict[str, Any]] = []
    base: dict[str, float] = {}
    for item in series:
        row: dict[str, Any] = {
            "mode": item.mode,
            "via": item.via,
            "label": (STREAM_LABELS if item.part == "stream" else LABELS)[item.via],
            "error": item.error,
        }
        if item.error is None:
            for metric, values in item.samples.items():
                samples_ms = [seconds * 1e3 for seconds in values]
                stats = {
                    "median_ms": round(statistics.median(samples_ms), 3),
                    "p90_ms": round(percentile(samples_ms, 0.9), 3),
                    "samples": len(samples_ms),
                }
                row[metric] = stats
                if item.via == "direct":
                    base[metric] = stats["median_ms"]
        rows.append(row)
    for row in rows:
        for metric, reference in base.items():
            entry = row.get(metric)
            if entry is not None and reference:
                entry["added_ms"] = round(entry["median_ms"] - reference, 3)
                entry["ratio"] = round(entry["median_ms"] / reference, 3)
    return rows


def _cells(stats: dict[str, Any], reference: bool) -> list[str]:
    """Median, p90, added and ratio cells; the reference row has no "added"."""
    added = "—" if reference or "added_ms" not in stats else f"{stats['added_ms']:+.2f} ms"
    ratio = f"{stats['ratio']:.2f}x" if "ratio" in stats else "—"
    return [f"{stats['median_ms']:.2f} ms", f"{stats['p90_ms']:.2f} ms", added, ratio]


def print_report(results: dict[str, Any]) -> None:
    """Markdown tables from the JSON-shaped results."""
    meta = results["meta"]
    print(
        f"safe-run credentials: Python {meta['python_version']}, kernel {meta['kernel']}, "
        f"euid {meta['euid']}, {meta['rounds']} rounds"
    )
    if "request" in results:
        print(
            f"\n**(a) Non-streamed request** (`POST /v1/chat/completions`, http.client; "
            f"{meta['requests']} requests x {meta['rounds']} rounds per row)\n"
        )
        print("| mode | via | median | p90 | added | ratio |")
        print("|---|---|---|---|---|---|")
        for row in results["request"]:
            head = f"| {row['mode'] or '—'} | {row['label']} |"
            if row["error"] is not None:
                print(f"{head} FAILED: {row['error']} | | | |")
                continue
            print(f"{head} {' | '.join(_cells(row['seconds'], row['via'] == 'direct'))} |")
    if "stream" in results:
        print(
            f"\n**(b) Streamed response** (official openai client; {meta['stream_chunks']} "
            f"chunks {meta['stream_delay'] * 1e3:.0f} ms apart; {meta['streams']} streams "
            f"x {meta['rounds']} rounds per row)\n"
        )
        print(
            "| mode | via | first chunk | p90 | added | total | p90 | added |\n"
            "|---|---|---|---|---|---|---|---|"
        )
        for row in results["stream"]:
            head = f"| {row['mode'] or '—'} | {row['label']} |"
            if row["error"] is not None:
                print(f"{head} FAILED: {row['error']} | | | | | |")
                continue
            reference = row["via"] == "direct"
            first = _cells(row["first"], reference)
            total = _cells(row["total"], reference)
            print(f"{head} {' | '.join(first[:3])} | {' | '.join(total[:3])} |")
    print(
        "\n('added' and 'ratio' compare medians with the direct row: a fresh TLS "
        "connection per request, outside the sandbox)"
    )


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """Command-line options; defaults measure the venv this script runs in."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=3, help="client runs per case (3)")
    parser.add_argument("--requests", type=int, default=50, help="(a) per client run (50)")
    parser.add_argument("--streams", type=int, default=8, help="(b) per client run (8)")
    parser.add_argument("--stream-chunks", type=int, default=5, help="chunks per stream (5)")
    parser.add_argument(
        "--stream-delay", type=float, default=0.05, help="seconds between chunks (0.05)"
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of tables")
    parser.add_argument("--modes", default="namespace", help="namespace,fallback (namespace)")
    parser.add_argument("--parts", default=",".join(PARTS), help="request,stream")
    add_target_arguments(parser)
    args = parser.parse_args(argv)
    args.modes = comma_list(args.modes)
    args.parts = comma_list(args.parts)
    if not args.modes or set(args.modes) - set(MODE_ENV):
        parser.error("--modes: a comma-separated subset of namespace, fallback")
    if not args.parts or set(args.parts) - set(PARTS):
        parser.error(f"--parts: a comma-separated subset of {', '.join(PARTS)}")
    if min(args.rounds, args.requests, args.streams, args.stream_chunks) < 1:
        parser.error("counts must be at least 1")
    if args.stream_delay < 0:
        parser.error("--stream-delay must not be negative")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark; exit 1 if any case could not be measured, 2 on bad setup."""
    args = parse_args(argv)
    python = Path(sys.executable)
    safe_run: Path = args.safe_run
    if not (safe_run.is_file() and os.access(safe_run, os.X_OK)):
        print(f"credentials.py: no executable safe-run at {safe_run}", file=sys.stderr)
        return 2
    if "stream" in args.parts:
        try:
            import openai  # noqa: F401  (the client needs it in this venv)
        except ImportError:
            print("credentials.py: the stream part needs `openai` installed", file=sys.stderr)
            return 2
    prefix = [str(safe_run), *(["--venv", str(args.venv)] if args.venv else [])]
    results: dict[str, Any] = {
        "meta": {
            "rounds": args.rounds,
            "requests": args.requests,
            "streams": args.streams,
            "stream_chunks": args.stream_chunks,
            "stream_delay": args.stream_delay,
            "modes": args.modes,
            "python": str(python),
            "python_version": platform.python_version(),
            "safe_run": str(safe_run),
            "kernel": platform.release(),
            "euid": os.geteuid(),
        }
    }
    failed = False
    ca = TestCA("safe-run credentials bench CA")
    with tempfile.TemporaryDirectory(prefix="safe-run-cred-bench-") as tmp:
        root = Path(tmp)
        # The direct client and the supervisor (the proxy's upstream side) must trust
        # the fake API's CA; the sandbox gets the per-run bundle in its place.
        bundle = ca.bundle_with_system(root / "ca-bundle.pem")
        base_env = {
            key: value
            for key, value in os.environ.items()
            if key != NO_USERNS_VAR and key.upper() not in PROXY_VARS and key != "SSL_CERT_DIR"
        }
        with FakeApi(
            ca, REAL_KEY, stream_chunks=args.stream_chunks, stream_delay=args.stream_delay
        ) as api:
            base_env.update(
                {"SSL_CERT_FILE": str(bundle), "OPENAI_API_KEY": REAL_KEY, API_VAR: api.base_url}
            )
            base_env.pop("OPENAI_BASE_URL", None)
            projects = write_projects(root, api, args.safe_run)
            for part in args.parts:
                count = args.requests if part == "request" else args.streams
                series = make_series(
                    part,
                    args.modes,
                    python,
                    prefix,
                    base_env,
                    projects,
                    count,
                    args.stream_chunks,
                )
                measure(series, args.rounds)
                results[part] = summarize(series)
                failed |= any(item.error for item in series)
    if args.json:
        json.dump(results, sys.stdout, indent=2)
        print()
    else:
        print_report(results)
    if failed:
        print(
            "credentials.py: some cases could not be measured (see FAILED above)",
            file=sys.stderr,
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
