"""The per-run CA of the credential proxy's TLS mode, and the HTTPS test servers.

No sandbox and no proxy here: these are the building blocks the credential
integration tests stand on.  :class:`safe_pip.credentials.tls.RunCA` must issue
leaves that a stock ``ssl`` client accepts for the credential hosts and for nothing
else, even when someone holding the CA key tries (OpenSSL enforces the CA's
NameConstraints).  The servers of tls_servers.py must behave like what they stand in
for, or a passing integration test proves nothing: the official ``openai`` client
must work against :class:`FakeApi`, streaming must really stream, and the Basic-auth
index must refuse a request without credentials.
"""

from __future__ import annotations

import base64
import ipaddress
import json
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import httpx
import openai
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import NameOID
from net_servers import HOST_V4
from pkg_index import BENIGN_WHEEL, benign_wheel
from tls_servers import BasicAuthIndex, FakeApi, TestCA, load_server_context

from safe_pip.credentials import tls
from safe_pip.credentials.tls import RunCA, split_host, trust_bundle, upstream_context

API_HOST = "api.example.test"
API_KEY = "sk-test-real-0123456789"

# X509_V_ERR_PERMITTED_VIOLATION / X509_V_ERR_EXCLUDED_VIOLATION
PERMITTED_VIOLATION = 47
EXCLUDED_VIOLATION = 48


# --- helpers ---------------------------------------------------------------------------


class Handshake(NamedTuple):
    """What the client saw of a completed handshake."""

    alpn: str | None
    version: str | None
    peer_der: bytes


def handshake(server: ssl.SSLContext, client: ssl.SSLContext, server_hostname: str) -> Handshake:
    """A real TLS handshake over a socket pair: what the client saw, or its error.

    The server side runs in a thread; its own failure (the alert the client sends
    when it rejects the certificate) is swallowed.
    """
    server_sock, client_sock = socket.socketpair()
    server_sock.settimeout(5)
    client_sock.settimeout(5)

    def serve() -> None:
        try:
            with server.wrap_socket(server_sock, server_side=True) as tls_sock:
                tls_sock.sendall(b"ok")
                tls_sock.recv(1)
        except (OSError, ssl.SSLError):
            server_sock.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        with client.wrap_socket(client_sock, server_hostname=server_hostname) as wrapped:
            assert wrapped.recv(2) == b"ok"
            seen = Handshake(
                wrapped.selected_alpn_protocol(),
                wrapped.version(),
                wrapped.getpeercert(binary_form=True) or b"",
            )
    finally:
        client_sock.close()
        thread.join(5)
    return seen


def trusting(pem: bytes) -> ssl.SSLContext:
    """A client context (ALPN h2 + http/1.1 offered) trusting ``pem`` only."""
    context = ssl.create_default_context(cadata=pem.decode("ascii"))
    context.set_alpn_protocols(["h2", "http/1.1"])
    return context


def forged_context(ca: RunCA, host: str) -> ssl.SSLContext:
    """A server context for ``host`` signed with the CA's key, bypassing its refusal."""
    key_pem, chain_pem = ca._issue(split_host(host))
    return load_server_context(chain_pem, key_pem)


def reject_reason(ca: RunCA, host: str) -> ssl.SSLCertVerificationError:
    with pytest.raises(ssl.SSLCertVerificationError) as caught:
        handshake(forged_context(ca, host), trusting(ca.cert_pem), split_host(host))
    return caught.value


@pytest.fixture(scope="module")
def test_ca() -> TestCA:
    return TestCA()


@pytest.fixture
def fake_api(test_ca: TestCA) -> Iterator[FakeApi]:
    with FakeApi(test_ca, API_KEY) as api:
        yield api


def openai_client(api: FakeApi, ca: TestCA, key: str = API_KEY) -> openai.OpenAI:
    return openai.OpenAI(
        api_key=key,
        base_url=api.base_url,
        http_client=httpx.Client(verify=ca.client_context()),
        max_retries=0,
    )


MESSAGES: list[openai.types.chat.ChatCompletionMessageParam] = [{"role": "user", "content": "hi"}]


# --- RunCA -----------------------------------------------------------------------------


def test_split_host_strips_ports_and_normalises() -> None:
    assert split_host("API.Example.Test:443") == "api.example.test"
    assert split_host("api.example.test.") == "api.example.test"
    assert split_host("127.0.0.1:8443") == "127.0.0.1"
    assert split_host("[0:0::1]:443") == "::1"
    assert split_host("[::1]") == "::1"
    assert split_host("::1") == "::1"
    for bad in ("", ":443", "[::1", "[::1]x", "a b", "user@host"):
        with pytest.raises(ValueError):
            split_host(bad)


def test_ca_certificate_is_a_constrained_ca() -> None:
    ca = RunCA.create([f"{API_HOST}:443", "127.0.0.1:8443", "[::1]:1"])
    cert = x509.load_pem_x509_certificate(ca.cert_pem)
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == (
        "safe-run per-run CA"
    )
    basic = cert.extensions.get_extension_for_class(x509.BasicConstraints)
    assert basic.critical and basic.value.ca and basic.value.path_length == 0
    usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    assert usage.key_cert_sign and usage.crl_sign and not usage.digital_signature
    constraints = cert.extensions.get_extension_for_class(x509.NameConstraints)
    assert constraints.critical
    assert set(constraints.value.permitted_subtrees or ()) == {
        x509.DNSName(API_HOST),
        x509.IPAddress(ipaddress.ip_network("127.0.0.1/32")),
        x509.IPAddress(ipaddress.ip_network("::1/128")),
    }
    assert not constraints.value.excluded_subtrees
    lifetime = cert.not_valid_after_utc - cert.not_valid_before_utc
    assert abs(lifetime.total_seconds() - (2 * 24 + 1) * 3600) < 5
    assert ca.hosts == {API_HOST, "127.0.0.1", "::1"}


def test_ca_needs_a_host() -> None:
    with pytest.raises(ValueError):
        RunCA.create([])


def test_leaf_is_accepted_for_a_constrained_host() -> None:
    ca = RunCA.create([f"{API_HOST}:443", "127.0.0.1:8443"])
    client = trusting(ca.cert_pem)
    for host in (API_HOST, "127.0.0.1"):
        seen = handshake(ca.server_context(host), client, host)
        assert seen.alpn == "http/1.1"
        assert seen.version in ("TLSv1.2", "TLSv1.3")
        leaf = x509.load_der_x509_certificate(seen.peer_der)
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert list(san) == [tls._general_name(host)]
        eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        assert list(eku) == [x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]
        assert not leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def test_leaf_is_rejected_by_a_client_that_does_not_trust_the_ca(test_ca: TestCA) -> None:
    ca = RunCA.create([API_HOST])
    with pytest.raises(ssl.SSLCertVerificationError):
        handshake(ca.server_context(API_HOST), test_ca.client_context(), API_HOST)


def test_server_context_is_cached_per_host_and_thread_safe() -> None:
    ca = RunCA.create([API_HOST, "127.0.0.1"])
    results: list[ssl.SSLContext] = []
    lock = threading.Lock()

    def get() -> None:
        context = ca.server_context(f"{API_HOST}:443")
        with lock:
            results.append(context)

    threads = [threading.Thread(target=get) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 8 and all(context is results[0] for context in results)
    assert ca.server_context(API_HOST.upper()) is results[0]
    assert ca.server_context("127.0.0.1") is not results[0]
    assert results[0].minimum_version == ssl.TLSVersion.TLSv1_2


@pytest.mark.parametrize(
    "host", ["other.example.test", "example.test", "127.0.0.2", "::1", "evil.test"]
)
def test_no_leaf_for_another_host(host: str) -> None:
    ca = RunCA.create([API_HOST, "127.0.0.1"])
    with pytest.raises(ValueError, match="not a host of this per-run CA"):
        ca.server_context(host)


def test_key_material_leaves_no_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The leaf key touches disk only in a 0700 directory, 0600 file, removed at once."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    modes: list[tuple[int, int]] = []
    written: list[bytes] = []
    write = tls._write_private

    def spy(path: str, data: bytes) -> None:
        write(path, data)
        modes.append((os.stat(os.path.dirname(path)).st_mode & 0o777, os.stat(path).st_mode))
        written.append(data)

    monkeypatch.setattr(tls, "_write_private", spy)
    ca = RunCA.create([API_HOST])
    ca.server_context(API_HOST)
    assert len(modes) == 2 and all(d == 0o700 and f & 0o077 == 0 for d, f in modes)
    ca_key = ca._ca_key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    for data in written:
        for block in data.split(b"-----")[2::4]:  # the base64 body of each PEM block
            assert base64.b64decode(block) != ca_key
    assert list(tmp_path.iterdir()) == []


def test_forged_leaf_for_another_name_is_rejected_by_name_constraints() -> None:
    """Even with the CA key, a leaf for a name outside the constraints fails to verify."""
    ca = RunCA.create([API_HOST, "127.0.0.1"])
    for host, code in [
        ("evil.test", PERMITTED_VIOLATION),
        ("example.test", PERMITTED_VIOLATION),
        ("10.0.0.1", PERMITTED_VIOLATION),
        ("::1", PERMITTED_VIOLATION),
    ]:
        error = reject_reason(ca, host)
        assert error.verify_code == code, (host, error.verify_message)
    # The genuine article still passes, so the failures above are the constraints.
    handshake(forged_context(ca, API_HOST), trusting(ca.cert_pem), API_HOST)


def test_name_types_without_a_host_are_excluded() -> None:
    """With only DNS hosts no IP leaf verifies, and vice versa (RFC 5280 per-type rule)."""
    dns_only = RunCA.create([API_HOST])
    for host in ("127.0.0.1", "::1"):
        assert reject_reason(dns_only, host).verify_code == EXCLUDED_VIOLATION
    ip_only = RunCA.create(["127.0.0.1"])
    assert reject_reason(ip_only, API_HOST).verify_code == EXCLUDED_VIOLATION
    handshake(ip_only.server_context("127.0.0.1"), trusting(ip_only.cert_pem), "127.0.0.1")


def test_name_constraints_cover_subdomains() -> None:
    """X.509 semantics, documented in tls.py: a DNS constraint includes subdomains.

    So ``server_context`` must (and does) refuse them itself.
    """
    ca = RunCA.create([API_HOST])
    handshake(forged_context(ca, f"x.{API_HOST}"), trusting(ca.cert_pem), f"x.{API_HOST}")
    with pytest.raises(ValueError):
        ca.server_context(f"x.{API_HOST}")


# --- trust_bundle ----------------------------------------------------------------------


def test_trust_bundle_appends_the_ca_to_the_base(tmp_path: Path) -> None:
    ca = RunCA.create([API_HOST])
    other = TestCA()
    base = tmp_path / "base.pem"
    base.write_bytes(other.cert_pem.rstrip(b"\n"))  # no final newline
    bundle = trust_bundle(ca.cert_pem, str(base))
    assert bundle == other.cert_pem + ca.cert_pem
    # Both verify from the one bundle: tunnelled hosts and terminated ones.
    client = trusting(bundle)
    handshake(ca.server_context(API_HOST), client, API_HOST)
    handshake(other.server_context(["localhost"]), client, "localhost")


def test_trust_bundle_without_a_base_file(tmp_path: Path) -> None:
    ca = RunCA.create([API_HOST])
    assert trust_bundle(ca.cert_pem, str(tmp_path / "missing.pem")) == ca.cert_pem
    assert trust_bundle(ca.cert_pem.rstrip(b"\n"), str(tmp_path)) == ca.cert_pem


def test_trust_bundle_defaults_to_the_system_bundle() -> None:
    ca = RunCA.create([API_HOST])
    bundle = trust_bundle(ca.cert_pem, None)
    assert bundle.endswith(ca.cert_pem)
    default = tls._default_cafile()
    if default is None:
        assert bundle == ca.cert_pem
    else:
        system = Path(default).read_bytes()
        assert bundle.startswith(system) and len(bundle) > len(ca.cert_pem) + len(system) - 1


# --- upstream_context ------------------------------------------------------------------


def connect(context: ssl.SSLContext, api: FakeApi) -> ssl.SSLSocket:
    sock = socket.create_connection((HOST_V4, api.port), timeout=5)
    try:
        return context.wrap_socket(sock, server_hostname=HOST_V4)
    except BaseException:
        sock.close()
        raise


def test_upstream_context_uses_the_callers_bundle(
    tmp_path: Path, test_ca: TestCA, fake_api: FakeApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    bundle = test_ca.bundle_with_system(tmp_path / "bundle.pem")
    with connect(upstream_context({"SSL_CERT_FILE": str(bundle)}), fake_api) as conn:
        assert conn.selected_alpn_protocol() == "http/1.1"
    with pytest.raises(ssl.SSLCertVerificationError):
        connect(upstream_context({}), fake_api)


def test_upstream_context_uses_the_callers_directory(
    tmp_path: Path, test_ca: TestCA, fake_api: FakeApi
) -> None:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("no openssl command to compute the subject hash")
    pem = test_ca.write_bundle(tmp_path / "ca.pem")
    subject_hash = subprocess.run(
        [openssl, "x509", "-hash", "-noout", "-in", str(pem)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    directory = tmp_path / "certs"
    directory.mkdir()
    shutil.copy(pem, directory / f"{subject_hash}.0")
    with connect(upstream_context({"SSL_CERT_DIR": str(directory)}), fake_api):
        pass


# --- FakeApi ---------------------------------------------------------------------------


def test_fake_api_with_the_openai_client(test_ca: TestCA, fake_api: FakeApi) -> None:
    client = openai_client(fake_api, test_ca)
    assert [model.id for model in client.models.list()] == ["fake-model"]
    reply = client.chat.completions.create(model="fake-model", messages=MESSAGES)
    assert reply.choices[0].message.content == FakeApi.REPLY
    assert reply.choices[0].finish_reason == "stop"
    posted = [r for r in fake_api.requests if r.method == "POST"]
    assert posted[0].path == "/v1/chat/completions"
    assert posted[0].headers["authorization"] == f"Bearer {API_KEY}"
    assert json.loads(posted[0].body)["messages"] == MESSAGES


def test_fake_api_streams_incrementally(test_ca: TestCA, fake_api: FakeApi) -> None:
    client = openai_client(fake_api, test_ca)
    start = time.monotonic()
    arrivals: list[float] = []
    contents: list[str] = []
    stream = client.chat.completions.create(model="fake-model", messages=MESSAGES, stream=True)
    for chunk in stream:
        arrivals.append(time.monotonic() - start)
        contents.append(chunk.choices[0].delta.content or "")
        assert chunk.object == "chat.completion.chunk"
    total = time.monotonic() - start
    assert contents == [f"chunk-{i} " for i in range(fake_api.stream_chunks)]
    assert arrivals[0] < total - fake_api.stream_delay, (arrivals, total)
    assert total >= (fake_api.stream_chunks - 1) * fake_api.stream_delay


def test_fake_api_with_ssl_cert_file(
    tmp_path: Path, test_ca: TestCA, fake_api: FakeApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The default client of the SDK (httpx, trust_env) honours SSL_CERT_FILE."""
    monkeypatch.setenv("SSL_CERT_FILE", str(test_ca.bundle_with_system(tmp_path / "b.pem")))
    client = openai.OpenAI(api_key=API_KEY, base_url=fake_api.base_url, max_retries=0)
    reply = client.chat.completions.create(model="fake-model", messages=MESSAGES)
    assert reply.choices[0].message.content == FakeApi.REPLY
    text = "".join(
        chunk.choices[0].delta.content or ""
        for chunk in client.chat.completions.create(
            model="fake-model", messages=MESSAGES, stream=True
        )
    )
    assert text == "".join(f"chunk-{i} " for i in range(fake_api.stream_chunks))


def test_fake_api_wants_the_real_key(test_ca: TestCA, fake_api: FakeApi) -> None:
    with pytest.raises(openai.AuthenticationError, match="Incorrect API key provided"):
        openai_client(fake_api, test_ca, key="sk-phantom").models.list()
    with httpx.Client(verify=test_ca.client_context()) as http:
        url = f"https://{fake_api.authority}"
        missing = http.get(f"{url}/v1/models")
        assert missing.status_code == 401
        assert missing.json()["error"]["type"] == "invalid_request_error"
        for header in ("x-api-key", "x-goog-api-key"):
            assert http.get(f"{url}/v1/models", headers={header: API_KEY}).status_code == 200
            assert http.get(f"{url}/v1/models", headers={header: "nope"}).status_code == 401
        echoed = http.get(
            f"{url}/echo-headers", headers={"Authorization": f"Bearer {API_KEY}", "X-Probe": "1"}
        )
        assert echoed.status_code == 200
        assert echoed.json()["authorization"] == f"Bearer {API_KEY}"
        assert echoed.json()["x-probe"] == "1"
        assert http.get(f"{url}/nowhere").status_code == 404


def test_fake_api_is_not_blocked_by_a_silent_client(test_ca: TestCA, fake_api: FakeApi) -> None:
    """A connection that never handshakes must not hold up the next one."""
    with socket.create_connection((HOST_V4, fake_api.port)):
        start = time.monotonic()
        assert [m.id for m in openai_client(fake_api, test_ca).models.list()] == ["fake-model"]
        assert time.monotonic() - start < 2


# --- BasicAuthIndex --------------------------------------------------------------------


def test_basic_auth_index(tmp_path: Path, test_ca: TestCA) -> None:
    wheel = benign_wheel(tmp_path / "dists")
    with (
        BasicAuthIndex(tmp_path / "dists", test_ca, "alice", "s3cret") as index,
        httpx.Client(verify=test_ca.client_context()) as http,
    ):
        assert index.url == f"https://127.0.0.1:{index.port}/simple/"
        refused = http.get(index.url)
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"] == 'Basic realm="test"'
        assert http.get(index.url, auth=("alice", "wrong")).status_code == 401
        assert http.get(index.url, headers={"Authorization": "Basic !!"}).status_code == 401
        page = http.get(index.url, auth=("alice", "s3cret"))
        assert page.status_code == 200
        assert f'href="/simple/{BENIGN_WHEEL}/"' in page.text
        data = http.get(f"https://{index.authority}/files/{wheel.name}", auth=("alice", "s3cret"))
        assert data.status_code == 200 and data.content == wheel.read_bytes()
        sent = [r.headers.get("authorization") for r in index.requests]
        good = "Basic " + base64.b64encode(b"alice:s3cret").decode()
        assert sent[0] is None and sent[-1] == good and sent.count(good) == 2
        assert index.downloaded() == [wheel.name]
