"""Real networks: gateways, company CAs, the user's own proxy, programs that resolve.

Where bare uv, pip and requests work on a user's network, safe-pip and safe-run must
work too, with no extra flags and without opening what the sandbox keeps closed
(docs/network.md, "Internal addresses" and "Your own proxy").  Everything here is
real: a company-like network in namespaces of the test's own (gateway_world.py: the
real resolver answering from a bind-mounted hosts file, an HTTPS index on a
documentation-range address with its own CA), an HTTP CONNECT proxy process on
loopback that wants a password, and real sandboxes in both modes.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import socket
import socketserver
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from net_servers import HttpOrigin
from sandbox_harness import SAFE_RUN, World, make_world
from tls_servers import FakeApi, TestCA

HERE = Path(__file__).parent
SAFE_PIP = Path(sys.executable).with_name("safe-pip")

pytestmark = [
    pytest.mark.sandbox,
    pytest.mark.skipif(not SAFE_RUN.exists(), reason="safe-run is not installed next to python"),
]


def _own_namespaces_work() -> bool:
    from gateway_world import ip_command

    ip = ip_command()
    if ip is None or shutil.which("unshare") is None:
        return False
    probe = subprocess.run(
        ["unshare", "--user", "--map-root-user", "--net", "--mount", "--", ip, "link", "set",
         "lo", "up"],
        capture_output=True,
        check=False,
    )  # fmt: skip
    return probe.returncode == 0


needs_own_network = pytest.mark.skipif(
    not _own_namespaces_work(), reason="cannot make a network namespace of our own here"
)


# --- the gateway world -----------------------------------------------------------------


def run_in_gateway_world(
    tmp_path: Path, commands: list[dict[str, object]], dists: Path
) -> tuple[dict[str, str], list[dict[str, object]]]:
    """Run ``commands`` in gateway_world.py's network; (placeholder values, results)."""
    config = {
        "dists": str(dists),
        "ca": str(tmp_path / "gateway-ca.pem"),
        "uid": os.getuid(),
        "gid": os.getgid(),
        "out": str(tmp_path / "gateway-out.json"),
        "commands": commands,
    }
    path = tmp_path / "gateway-config.json"
    path.write_text(json.dumps(config))
    done = subprocess.run(
        ["unshare", "--user", "--map-root-user", "--net", "--mount", "--",
         sys.executable, str(HERE / "gateway_world.py"), str(path)],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    out = json.loads(Path(config["out"]).read_text())
    return out["values"], out["results"]


@pytest.fixture
def dists(tmp_path: Path) -> Path:
    from pkg_index import build_fixture_packages

    directory = tmp_path / "dists"
    directory.mkdir()
    build_fixture_packages(directory)
    return directory


def _env(world: World, mode: str, **extra: str) -> dict[str, str]:
    return {**world.env(mode), "UV_PYTHON_DOWNLOADS": "never", **extra}


@needs_own_network
def test_install_and_run_through_a_gateway_with_a_company_ca(
    tmp_path: Path, mode: str, dists: Path
) -> None:
    """pypi-like names answered with 203.0.113.80, TLS from a CA only the user's
    SSL_CERT_FILE holds: bare uv works, so safe-pip must, with no flag; safe-run
    with the name alone reaches it."""
    from pkg_index import uv_binary

    world = make_world(tmp_path)
    ca = str(tmp_path / "gateway-ca.pem")
    env = _env(world, mode, SSL_CERT_FILE=ca)
    fetch = (
        "import sys, urllib.request\n"
        "with urllib.request.urlopen(sys.argv[1], timeout=30) as r:\n"
        "    print('FETCHED', r.status)\n"
    )
    script = world.write_script(fetch, "fetch.py")
    commands: list[dict[str, object]] = [
        # The control: bare uv, same network, same trust.
        {"argv": [str(uv_binary()), "pip", "install", "--python", sys.executable, "--dry-run",
                  "--no-config", "--index-url", "{index_url}", "benign-wheel"], "env": env},
        {"argv": [str(SAFE_PIP), "install", "--venv", str(tmp_path / "v"), "--index-url",
                  "{index_url}", "benign-wheel"], "env": env},
        {"argv": [*world.safe_run_argv(str(script), "{index_url}benign-wheel/",
                  flags=("--allow-host", "pypi.gateway.test:{index_port}"))],
         "env": env, "cwd": str(world.project)},
    ]  # fmt: skip
    _values, (bare, install, run) = run_in_gateway_world(tmp_path, commands, dists)
    assert bare["returncode"] == 0, bare["stderr"]
    assert install["returncode"] == 0, install["stderr"]
    assert "installed 1 packages" in str(install["stdout"])
    assert any("benign_wheel-0.1.0-py3-none-any.whl" in p for p in install["index"])  # type: ignore[union-attr]
    assert (tmp_path / "v" / "bin" / "benign-hello").exists()
    assert run["returncode"] == 0, run["stderr"]
    assert "FETCHED 200" in str(run["stdout"])


ATTEMPTS = """\
import sys, urllib.request
for host, port in (("intranet.gateway.test", sys.argv[1]),
                   ("metadata.gateway.test", sys.argv[2])):
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/hello", timeout=10) as r:
            print(host, "REACHED", r.status)
    except Exception as exc:
        print(host, "BLOCKED", exc)
"""


def _hints(stderr: str) -> list[str]:
    return re.findall(r'to allow it add "([^"]+)" to \[tool\.safe-run\.network\] allow', stderr)


@needs_own_network
def test_names_the_user_did_not_choose_never_lead_inside(
    tmp_path: Path, mode: str, dists: Path
) -> None:
    """A wildcard-matched name resolving to a private address, and a name listed
    exactly that resolves to the metadata service, stay refused; the refusal names
    the one rule that fixes it, and that rule, applied, works."""
    world = make_world(tmp_path)
    script = world.write_script(ATTEMPTS)
    ports = ("{intranet_port}", "{metadata_port}")
    env = _env(world, mode)
    wildcard = ("--allow-host", "*.gateway.test:{intranet_port}",
                "--allow-host", "metadata.gateway.test:{metadata_port}")  # fmt: skip
    # What the refusals should advise, and a run with that advice applied.
    advice = ("intranet.gateway.test:{intranet_port}", "169.254.169.254:{metadata_port}")
    fixed = (*wildcard, "--allow-host", advice[0], "--allow-host", advice[1])
    commands: list[dict[str, object]] = [
        {"argv": [sys.executable, str(script), *ports], "env": env, "cwd": str(world.project)},
        {"argv": world.safe_run_argv(str(script), *ports, flags=wildcard), "env": env,
         "cwd": str(world.project)},
        {"argv": world.safe_run_argv(str(script), *ports, flags=fixed), "env": env,
         "cwd": str(world.project)},
    ]  # fmt: skip
    values, (plain, refused, applied) = run_in_gateway_world(tmp_path, commands, dists)
    # The control: without the sandbox both services answer.
    assert str(plain["stdout"]).count("REACHED 200") == 2, plain
    assert plain["intranet"] == ["/hello"] and plain["metadata"] == ["/hello"]
    # Sandboxed: neither is reached.
    assert refused["returncode"] == 0, refused["stderr"]
    assert str(refused["stdout"]).count("BLOCKED") == 2, refused
    assert refused["intranet"] == [] and refused["metadata"] == []
    stderr = str(refused["stderr"])
    assert "it resolves to 10.77.0.1 (a private address), which only a host named exactly" in stderr
    assert "it resolves to 169.254.169.254 (a link-local address" in stderr
    assert _hints(stderr) == [a.format(**values) for a in advice], stderr
    # The advice, applied, is enough: one retry.
    assert str(applied["stdout"]).count("REACHED 200") == 2, applied
    assert applied["intranet"] == ["/hello"] and applied["metadata"] == ["/hello"]


# --- the trust store inside ------------------------------------------------------------


TRUST_PROBE = """\
import os, ssl, urllib.request, sys
print("VARS", sorted(n for n in os.environ if n in (
    "SSL_CERT_FILE", "REQUESTS_CA_BUNDLE", "UV_SYSTEM_CERTS", "PIP_CERT")))
try:
    with urllib.request.urlopen(sys.argv[1], timeout=10) as response:
        print("TLS-OK", response.status)
except Exception as exc:
    print("TLS-FAILED", exc)
try:
    print("KEY", open(sys.argv[2]).read().strip())
except OSError as exc:
    print("KEY-DENIED", exc.errno)
"""


def test_trust_store_variables_and_their_files_reach_the_program(tmp_path: Path, mode: str) -> None:
    """A company CA in ~/corp/ca.pem named by SSL_CERT_FILE and REQUESTS_CA_BUNDLE:
    the program inside verifies the server with it, as it does outside."""
    world = make_world(tmp_path, "[tool.safe-run]\n")
    ca = TestCA("company CA")
    bundle = world.home / "corp" / "ca.pem"
    bundle.parent.mkdir()
    ca.write_bundle(bundle)
    bundle.parent.chmod(0o755)
    bundle.chmod(0o644)
    key = str(world.home / ".ssh" / "id_rsa")
    with FakeApi(ca, "not-used") as api:
        url = api.base_url + "/models"
        script = world.write_script(TRUST_PROBE, "trust.py")
        extra = {"SSL_CERT_FILE": str(bundle), "REQUESTS_CA_BUNDLE": str(bundle)}
        plain = subprocess.run(
            [sys.executable, str(script), url, key],
            env={**world.env(), **extra},
            capture_output=True,
            text=True,
            check=False,
        )
        assert "TLS-OK" in plain.stdout or "401" in plain.stdout, plain.stdout
        sandboxed = world.run_safe(
            mode, str(script), url, key,
            flags=("--allow-host", api.authority), env_extra=extra,
        )  # fmt: skip
    assert sandboxed.returncode == 0, sandboxed.stderr
    out = sandboxed.stdout
    assert "VARS ['REQUESTS_CA_BUNDLE', 'SSL_CERT_FILE']" in out, out
    # The fake API answers 401 without its key: a verified TLS connection.
    assert "TLS-OK" in out or "HTTP Error 401" in out, out
    assert "CERTIFICATE_VERIFY_FAILED" not in out
    assert "KEY-DENIED" in out


def test_a_trust_variable_is_no_way_to_a_denied_file(tmp_path: Path, mode: str) -> None:
    """SSL_CERT_FILE naming ~/.ssh/id_rsa: outside, the file is readable (the
    control); inside, neither the variable nor the file is there."""
    world = make_world(tmp_path, "[tool.safe-run]\n")
    key = str(world.home / ".ssh" / "id_rsa")
    script = world.write_script(
        "import os\nname = os.environ.get('SSL_CERT_FILE')\nprint('VAR', name)\n"
        "try:\n    print('READ', open(name or " + repr(key) + ").read())\n"
        "except OSError as exc:\n    print('DENIED', exc.errno)\n",
        "probe.py",
    )
    plain = subprocess.run(
        [sys.executable, str(script)],
        env={**world.env(), "SSL_CERT_FILE": key},
        capture_output=True,
        text=True,
        check=False,
    )
    assert world.secret in plain.stdout
    sandboxed = world.run_safe(mode, str(script), env_extra={"SSL_CERT_FILE": key})
    assert sandboxed.returncode == 0, sandboxed.stderr
    assert "VAR None" in sandboxed.stdout and "DENIED" in sandboxed.stdout
    assert world.secret not in sandboxed.stdout + sandboxed.stderr


# --- the user's own proxy ---------------------------------------------------------------


class CompanyProxy:
    """An HTTP proxy on 127.0.0.1 wanting Basic ``user:password``: CONNECT tunnels and
    absolute-form requests.  It resolves ``*.test`` names itself (``names``), as a
    company proxy resolves what the machine cannot, and records what it was asked."""

    def __init__(self, names: dict[str, str], user: str, password: str) -> None:
        self.names = names
        self.expected = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
        self.seen: list[tuple[str, str, bool]] = []  # (method, target, authorised)
        proxy = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                proxy._handle(self.connection, self.rfile)

        self._server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True

    def __enter__(self) -> CompanyProxy:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def url(self, user: str, password: str) -> str:
        return f"http://{user}:{password}@127.0.0.1:{self.port}"

    def _handle(self, conn: socket.socket, rfile: object) -> None:
        head = b""
        while not head.endswith(b"\r\n\r\n"):
            byte = conn.recv(1)
            if not byte:
                return
            head += byte
        lines = head.decode("latin-1").split("\r\n")
        method, target, _ = lines[0].split(" ", 2)
        headers = {
            k.lower(): v.strip() for k, _, v in (ln.partition(":") for ln in lines[1:] if ln)
        }
        authorised = headers.get("proxy-authorization") == self.expected
        self.seen.append((method, target, authorised))
        if not authorised:
            conn.sendall(b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n")
            return
        if method == "CONNECT":
            host, _, port = target.rpartition(":")
        else:
            rest = target.removeprefix("http://")
            authority, _, path = rest.partition("/")
            host, _, port = authority.rpartition(":")
        upstream = socket.create_connection((self.names.get(host, host), int(port or 80)))
        if method == "CONNECT":
            conn.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
        else:
            kept = [ln for ln in lines[1:] if ln and not ln.lower().startswith("proxy-")]
            request = f"{method} /{path} HTTP/1.1\r\n" + "\r\n".join(kept) + "\r\n\r\n"
            upstream.sendall(request.encode("latin-1"))
        _pipe(conn, upstream)


def _pipe(a: socket.socket, b: socket.socket) -> None:
    def copy(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            try:
                dst.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    other = threading.Thread(target=copy, args=(b, a), daemon=True)
    other.start()
    copy(a, b)
    other.join(timeout=30)
    a.close()
    b.close()


PROXY_PROBE = """\
import os, sys, urllib.request
print("ENV", " ".join(f"{k}={v}" for k, v in sorted(os.environ.items())))
for url in sys.argv[1:]:
    try:
        with urllib.request.urlopen(url, timeout=20) as response:
            print("GOT", url, response.status, response.read().decode().strip())
    except Exception as exc:
        print("FAILED", url, exc)
"""


@pytest.fixture
def company_origin() -> Iterator[HttpOrigin]:
    with HttpOrigin() as origin:
        yield origin


def test_allowed_traffic_goes_through_the_users_proxy(
    tmp_path: Path, mode: str, company_origin: HttpOrigin
) -> None:
    """HTTPS_PROXY/HTTP_PROXY with a password: the sandbox's proxy decides and then
    tunnels through it; the password never enters the sandbox; a refused host never
    reaches the user's proxy."""
    world = make_world(tmp_path, "[tool.safe-run]\n")
    password = "pr0xy-" + os.urandom(6).hex()
    port = company_origin.port
    allowed = f"http://origin.test:{port}/hello"
    refused = f"http://evil.test:{port}/leak"
    script = world.write_script(PROXY_PROBE, "probe.py")
    with CompanyProxy({"origin.test": "127.0.0.1", "evil.test": "127.0.0.1"}, "me", password) as up:
        user_env = {"HTTP_PROXY": up.url("me", password), "HTTPS_PROXY": up.url("me", password)}
        # The control: outside, the user's proxy is how origin.test is reached.
        plain = subprocess.run(
            [sys.executable, str(script), allowed],
            env={**world.env(), **user_env},
            capture_output=True,
            text=True,
            check=False,
        )
        assert f"GOT {allowed} 200" in plain.stdout, plain.stdout + plain.stderr
        up.seen.clear()
        company_origin.reset()
        sandboxed = world.run_safe(
            mode, str(script), allowed, refused,
            flags=("--allow-host", f"origin.test:{port}"), env_extra=user_env,
        )  # fmt: skip
    assert sandboxed.returncode == 0, sandboxed.stderr
    assert f"GOT {allowed} 200" in sandboxed.stdout, sandboxed.stdout + sandboxed.stderr
    assert f"FAILED {refused}" in sandboxed.stdout
    assert ("CONNECT", f"origin.test:{port}", True) in up.seen
    assert not any("evil.test" in target for _m, target, _a in up.seen)
    assert company_origin.saw("/hello") and not company_origin.saw("/leak")
    assert password not in sandboxed.stdout + sandboxed.stderr


def test_upstream_proxy_settings_are_read_as_curl_does() -> None:
    from safe_pip.proxy.upstream_proxy import UpstreamProxy

    found = UpstreamProxy.from_environment(
        {
            "HTTPS_PROXY": "http://me:p%40ss@proxy.corp:3128",
            "NO_PROXY": "localhost,.corp,10.0.0.0/8",
        }
    )
    assert isinstance(found, UpstreamProxy)
    assert (found.host, found.port) == ("proxy.corp", 3128)
    assert found.authorization == "Basic " + base64.b64encode(b"me:p@ss").decode()
    assert found.bypasses("localhost") and found.bypasses("git.corp") and found.bypasses("corp")
    assert found.bypasses("10.1.2.3") and not found.bypasses("pypi.org")
    assert not found.bypasses("notcorp")
    assert UpstreamProxy.from_environment({}) is None
    socks = UpstreamProxy.from_environment({"ALL_PROXY": "socks5://127.0.0.1:1080"})
    assert isinstance(socks, str) and "only http:// proxies" in socks
    lower_first = UpstreamProxy.from_environment(
        {"https_proxy": "http://a:1", "HTTPS_PROXY": "http://b:2"}
    )
    assert isinstance(lower_first, UpstreamProxy) and lower_first.host == "a"
    assert isinstance(
        everything := UpstreamProxy.from_environment({"HTTP_PROXY": "proxy:8080", "NO_PROXY": "*"}),
        UpstreamProxy,
    ) and everything.bypasses("anything.example")


# --- names the program resolves itself ---------------------------------------------------


def test_names_the_program_resolves_itself_are_reported(tmp_path: Path) -> None:
    """No DNS in the sandbox: a program that looks a name up itself is told nothing
    useful by its resolver; the exit report (stderr not a terminal) says which name
    and what to add."""
    from safe_pip.sandbox.namespaces import userns_available

    if not userns_available()[0]:
        pytest.skip("namespace mode unavailable")
    world = make_world(tmp_path, "[tool.safe-run]\n")
    script = world.write_script(
        "import socket\nfor name in ('evil.example', 'pypi.org'):\n"
        "    try:\n        socket.getaddrinfo(name, 443)\n        print(name, 'RESOLVED')\n"
        "    except OSError as exc:\n        print(name, 'NO-DNS', exc.errno)\n",
        "lookup.py",
    )
    result = world.run_safe("namespace", str(script), flags=("--allow-host", "pypi.org"))
    assert result.returncode == 0, result.stderr
    assert "RESOLVED" not in result.stdout
    lines = [ln for ln in result.stderr.splitlines() if "looked up" in ln]
    assert any(
        ln.startswith("safe-run: network: the program looked up evil.example itself")
        and 'add "evil.example" to [tool.safe-run.network] allow' in ln
        for ln in lines
    ), result.stderr
    assert any(
        "looked up pypi.org itself" in ln and "only through the proxy in HTTPS_PROXY" in ln
        for ln in lines
    ), result.stderr


def test_dns_questions_are_parsed_strictly_and_answered_refused() -> None:
    from safe_pip.proxy.dns import parse_question, refused_answer

    query = bytes.fromhex("abcd01000001000000000000") + b"\x04evil\x07example\x00\x00\x01\x00\x01"
    parsed = parse_question(query)
    assert parsed == ("evil.example", 1, len(query))
    answer = refused_answer(query, parsed[2])
    assert answer[:2] == b"\xab\xcd" and answer[3] & 0x0F == 5 and answer[2] & 0x80
    assert answer[12:] == query[12:]
    assert parse_question(query[:-1]) is None
    assert parse_question(query[:12] + b"\xc0\x0c\x00\x01\x00\x01") is None  # a pointer
    response = bytearray(query)
    response[2] |= 0x80
    assert parse_question(bytes(response)) is None
