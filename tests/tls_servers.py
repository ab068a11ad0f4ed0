"""HTTPS servers on loopback, and the CA behind them, for the credential tests.

The phantom-token tests need real TLS on both sides of the proxy: an API that only
answers to the *real* key (so a request that arrives with the phantom fails loudly),
and a private package index behind HTTP Basic auth.  Both present certificates from a
CA the tests make (:class:`TestCA`), never from the proxy's per-run CA, so a test can
tell "the proxy verified the upstream" from "the proxy trusted itself".

- :class:`TestCA` — a throw-away CA: issues server certificates, writes CA bundles
  (alone, or appended to the system bundle so an ``SSL_CERT_FILE`` pointing at it
  still trusts real hosts), and makes client/server ``ssl`` contexts.
- :class:`FakeApi` — an HTTPS stand-in for the OpenAI API (``/v1/models``,
  ``/v1/chat/completions`` with and without streaming, ``/echo-headers``), checking
  the API key as OpenAI, Anthropic and Google send it.  The official ``openai``
  client works against it.
- :class:`BasicAuthIndex` — :class:`pkg_index.LocalIndex` over HTTPS, requiring HTTP
  Basic auth on every request.

The servers do the TLS handshake in the per-connection thread, not in ``accept``: a
client that connects and never speaks (or a slow proxy) must not stall everyone else.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import hmac
import ipaddress
import json
import os
import shutil
import socket
import ssl
import tempfile
import time
from collections.abc import Iterable
from email.message import Message
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from net_servers import HOST_V4, QuietHttpServer, RecordedRequest, RecordingHttpService
from pkg_index import LocalIndex, _IndexServer

#: The system CA bundle (Debian/Ubuntu path); :meth:`TestCA.bundle_with_system` uses it.
SYSTEM_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")

#: How long a connecting client has to finish the TLS handshake.
HANDSHAKE_TIMEOUT = 10.0


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _san(host: str) -> x509.GeneralName:
    try:
        return x509.IPAddress(ipaddress.ip_address(host))
    except ValueError:
        return x509.DNSName(host)


def load_server_context(cert_pem: bytes, key_pem: bytes) -> ssl.SSLContext:
    """A TLS server context (1.2+, ALPN http/1.1) presenting ``cert_pem``/``key_pem``.

    ``load_cert_chain`` takes files only; they live in a private temporary directory
    for the duration of the call.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.set_alpn_protocols(["http/1.1"])
    directory = tempfile.mkdtemp(prefix="tls-servers-")
    try:
        cert_path = os.path.join(directory, "cert.pem")
        key_path = os.path.join(directory, "key.pem")
        Path(cert_path).write_bytes(cert_pem)
        Path(key_path).write_bytes(key_pem)
        context.load_cert_chain(cert_path, key_path)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    return context


class TestCA:
    """A CA for the test servers (EC P-256), with helpers to trust it.

    Certificates follow what strict verifiers (Python 3.13's ``VERIFY_X509_STRICT``)
    demand: critical basicConstraints, key identifiers, keyUsage, SANs.
    """

    __test__ = False  # not a pytest test class, despite the name

    def __init__(self, name: str = "safe-pip test CA") -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        public_key = self.key.public_key()
        self.cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=False,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
            .sign(self.key, hashes.SHA256())
        )

    @property
    def cert_pem(self) -> bytes:
        return _pem(self.cert)

    def issue(self, hosts: Iterable[str] = (HOST_V4, "localhost")) -> tuple[bytes, bytes]:
        """A server certificate for ``hosts`` (names or IP literals): (cert PEM, key PEM)."""
        hosts = list(hosts)
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.timezone.utc)
        ca_ski = self.cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.SubjectAlternativeName([_san(h) for h in hosts]), critical=False)
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ca_ski.value),
                critical=False,
            )
            .sign(self.key, hashes.SHA256())
        )
        key_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        return _pem(cert), key_pem

    def server_context(self, hosts: Iterable[str] = (HOST_V4, "localhost")) -> ssl.SSLContext:
        """A server context with a fresh certificate for ``hosts``."""
        return load_server_context(*self.issue(hosts))

    def client_context(self) -> ssl.SSLContext:
        """A client context that trusts this CA and nothing else."""
        return ssl.create_default_context(cadata=self.cert_pem.decode("ascii"))

    def write_bundle(self, path: Path) -> Path:
        """Write the CA certificate alone to ``path``."""
        path.write_bytes(self.cert_pem)
        return path

    def bundle_with_system(self, path: Path) -> Path:
        """Write the system bundle (if any) followed by this CA to ``path``.

        For ``SSL_CERT_FILE``: it replaces the default bundle, so a client given only
        the test CA could no longer verify real hosts.
        """
        system = SYSTEM_BUNDLE.read_bytes() if SYSTEM_BUNDLE.is_file() else b""
        if system and not system.endswith(b"\n"):
            system += b"\n"
        path.write_bytes(system + self.cert_pem)
        return path


# --- HTTPS servers ---------------------------------------------------------------------


class TlsHttpServer(QuietHttpServer):
    """A :class:`QuietHttpServer` that speaks TLS, handshaking in the handler thread.

    ``accept`` returns the plain socket; :meth:`finish_request` (run by ThreadingMixIn
    in the connection's own thread) wraps it, so a client that never completes its
    handshake holds up nobody but itself (and gives up after HANDSHAKE_TIMEOUT).
    """

    request_queue_size = 128
    ssl_context: ssl.SSLContext

    def finish_request(self, request: Any, client_address: Any) -> None:
        request.settimeout(HANDSHAKE_TIMEOUT)
        try:
            tls = self.ssl_context.wrap_socket(request, server_side=True)
        except (OSError, ssl.SSLError):
            request.close()
            return
        try:
            tls.settimeout(None)  # the handler sets its own idle timeout
            self.RequestHandlerClass(tls, client_address, self)
        finally:
            try:
                tls.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            tls.close()


_OK_MODELS = {
    "object": "list",
    "data": [{"id": "fake-model", "object": "model", "created": 0, "owned_by": "test"}],
}
_BAD_KEY = {"error": {"message": "Incorrect API key provided", "type": "invalid_request_error"}}


class _FakeApiServer(TlsHttpServer):
    api: FakeApi

    def __init__(self, api: FakeApi) -> None:
        self.api = api
        self.ssl_context = api.ca.server_context((api.host, "localhost"))
        super().__init__(api.host, _FakeApiHandler)


class _PlainFakeApiServer(QuietHttpServer):
    api: FakeApi

    def __init__(self, api: FakeApi) -> None:
        self.api = api
        super().__init__(api.host, _FakeApiHandler)


class _FakeApiHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    #: Idle keep-alive connections are closed after this many seconds.
    timeout = 60
    server: _FakeApiServer

    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""

    def do_GET(self) -> None:
        self._serve(b"")

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        self._serve(self.rfile.read(length) if length > 0 else b"")

    def _serve(self, body: bytes) -> None:
        split = urlsplit(self.path)
        host, port = self.client_address[:2]
        headers = {key.lower(): value for key, value in self.headers.items()}
        api = self.server.api
        api.record(
            RecordedRequest(
                method=self.command,
                path=split.path + (f"?{split.query}" if split.query else ""),
                target=self.path,
                client=(str(host), int(port)),
                headers=headers,
                body=body,
            )
        )
        route = (self.command, split.path.rstrip("/"))
        if split.path.startswith("/v1/echo-forms/") and api.authorised(self.headers):
            self._echo_form(split.path.removeprefix("/v1/echo-forms/"))
            return
        if route not in _ROUTES:
            self._json(404, {"error": {"message": "not found", "type": "invalid_request_error"}})
            return
        if not api.authorised(self.headers):
            self._json(401, _BAD_KEY)
            return
        if route == ("GET", "/v1/models"):
            self._json(200, _OK_MODELS)
        elif route == ("GET", "/echo-headers"):
            self._json(200, headers)
        else:
            self._chat(body)

    def _echo_form(self, form: str) -> None:
        """The key this request carried, sent back in ``form`` (see ECHO_FORMS): a
        server echoing a credential in the ways the proxy must see through."""
        key = self.server.api.api_key.encode()
        body = {
            "raw": key,
            "basic": base64.b64encode(b"user:" + key),
            "b64": base64.b64encode(b"xy" + key),
            "urlsafe": base64.urlsafe_b64encode(b"z" + key),
            "percent": "".join(f"%{b:02X}" for b in key).encode(),
            "json-u": "".join(f"\\u{b:04x}" for b in key).encode(),
            "hex": key.hex().encode(),
        }.get(form)
        if form == "chunked":  # the key split over two chunks
            half = len(key) // 2
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for part in (b"your key is " + key[:half], key[half:], b" (end)"):
                self._chunk(part)
            self.wfile.write(b"0\r\n\r\n")
            return
        if form == "gzip":
            import gzip

            packed = gzip.compress(b"your key is " + key)
            self.send_response(200)
            self.send_header("Content-Encoding", "gzip")
            self.send_header("Content-Length", str(len(packed)))
            self.end_headers()
            self.wfile.write(packed)
            return
        if body is None:
            self._json(404, {"error": {"message": "no such form"}})
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _chat(self, body: bytes) -> None:
        try:
            request = json.loads(body or b"{}")
        except ValueError:
            request = None
        if not isinstance(request, dict):
            self._json(400, {"error": {"message": "bad JSON", "type": "invalid_request_error"}})
            return
        model = str(request.get("model") or "fake-model")
        if request.get("stream"):
            self._stream(model)
            return
        self._json(
            200,
            {
                "id": "chatcmpl-fake",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": model,
                "choices": [
                    {
                        "index": 0,
                        "message": {
                            "role": "assistant",
                            "content": FakeApi.REPLY,
                            "refusal": None,
                        },
                        "logprobs": None,
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 1, "completion_tokens": 5, "total_tokens": 6},
            },
        )

    def _stream(self, model: str) -> None:
        """Server-sent events, one chunk per ``stream_delay``, chunked encoding."""
        api = self.server.api
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        created = int(time.time())
        try:
            for index in range(api.stream_chunks):
                if index:
                    time.sleep(api.stream_delay)
                delta: dict[str, str] = {"content": f"chunk-{index} "}
                if index == 0:
                    delta = {"role": "assistant", **delta}
                last = index == api.stream_chunks - 1
                event = {
                    "id": "chatcmpl-fake-stream",
                    "object": "chat.completion.chunk",
                    "created": created,
                    "model": model,
                    "choices": [
                        {
                            "index": 0,
                            "delta": delta,
                            "logprobs": None,
                            "finish_reason": "stop" if last else None,
                        }
                    ],
                }
                self._chunk(f"data: {json.dumps(event)}\n\n".encode())
            self._chunk(b"data: [DONE]\n\n")
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except OSError:
            self.close_connection = True  # the client went away mid-stream

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _json(self, status: int, payload: object) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


#: The forms of ``GET /v1/echo-forms/<form>`` (an authorised request's key, echoed).
ECHO_FORMS = ("raw", "basic", "b64", "urlsafe", "percent", "json-u", "hex", "chunked", "gzip")

_ROUTES = {
    ("GET", "/v1/models"),
    ("POST", "/v1/chat/completions"),
    ("GET", "/echo-headers"),
}


def _key_matches(offered: str | None, expected: str) -> bool:
    return offered is not None and hmac.compare_digest(offered.encode(), expected.encode())


class FakeApi(RecordingHttpService):
    """An HTTPS stand-in for the OpenAI API on 127.0.0.1 that wants ``api_key``.

    Routes (all need the key as ``Authorization: Bearer``, ``x-api-key`` or
    ``x-goog-api-key``; otherwise 401 with OpenAI's error JSON):

    - ``GET /v1/models`` — one model, ``fake-model``.
    - ``POST /v1/chat/completions`` — a chat.completion saying :attr:`REPLY`; with
      ``"stream": true`` an SSE stream of :attr:`stream_chunks` chunks
      (``chunk-0 ``, ``chunk-1 ``, ...) ``stream_delay`` seconds apart, then
      ``[DONE]``, each flushed as soon as it is made.
    - ``GET /echo-headers`` — the request headers as JSON (lower-cased names), to
      test that the proxy scrubs a real key echoed back.

    Every request is recorded (:attr:`requests`).  Use as a context manager.
    """

    REPLY = "hello from the fake api"

    def __init__(
        self,
        ca: TestCA,
        api_key: str,
        *,
        stream_chunks: int = 5,
        stream_delay: float = 0.2,
        host: str = HOST_V4,
        tls: bool = True,
    ) -> None:
        super().__init__(host)
        self.ca = ca
        self.api_key = api_key
        self.stream_chunks = stream_chunks
        self.stream_delay = stream_delay
        #: False: plain HTTP, as a local gateway (LiteLLM, a model server) speaks.
        self.tls = tls

    def _make_server(self) -> QuietHttpServer:
        return _FakeApiServer(self) if self.tls else _PlainFakeApiServer(self)

    @property
    def base_url(self) -> str:
        """``https://127.0.0.1:PORT/v1`` (``http://`` without TLS), what
        ``OpenAI(base_url=...)`` takes."""
        return f"{'https' if self.tls else 'http'}://{self.authority}/v1"

    def authorised(self, headers: Message) -> bool:
        """Whether a request's headers carry the real key, in any of the usual forms."""
        bearer = headers.get("Authorization") or ""
        scheme, _, token = bearer.partition(" ")
        return (
            (scheme.lower() == "bearer" and _key_matches(token.strip(), self.api_key))
            or _key_matches(headers.get("x-api-key"), self.api_key)
            or _key_matches(headers.get("x-goog-api-key"), self.api_key)
        )


# --- the private index -----------------------------------------------------------------


class _TlsIndexServer(TlsHttpServer, _IndexServer):
    def __init__(self, index: BasicAuthIndex) -> None:
        self.ssl_context = index.ca.server_context((index.host, "localhost"))
        _IndexServer.__init__(self, index)


class BasicAuthIndex(LocalIndex):
    """:class:`pkg_index.LocalIndex` over HTTPS, wanting ``username:password`` (Basic).

    Same routes and content as the plain index; a request without the right
    ``Authorization`` gets 401 with ``WWW-Authenticate: Basic realm="test"`` (and is
    recorded, headers included, like every request).  :attr:`url` is the index root.
    """

    REALM = "test"
    _REFUSAL: ClassVar[tuple[int, bytes, str, dict[str, str]]] = (
        401,
        b"authentication required\n",
        "text/plain; charset=utf-8",
        {"WWW-Authenticate": f'Basic realm="{REALM}"'},
    )

    def __init__(
        self,
        directory: Path,
        ca: TestCA,
        username: str,
        password: str,
        host: str = HOST_V4,
        *,
        serve_metadata: bool = True,
    ) -> None:
        super().__init__(directory, host, serve_metadata=serve_metadata)
        self.ca = ca
        self.username = username
        self.password = password

    def _make_server(self) -> QuietHttpServer:
        return _TlsIndexServer(self)

    @property
    def url(self) -> str:
        """``https://127.0.0.1:PORT/simple/``."""
        return f"https://{self.authority}/simple/"

    def parts(self, path: str, headers: Message) -> list[bytes] | None:
        """``/echo/basic``: the Authorization header as received (base64 of
        ``user:password``); ``/echo/chunked``: the password split over two chunks --
        an index that echoes what it got, for the proxy's scrubbing to face."""
        authorization = (headers.get("Authorization") or "").encode()
        password = self.password.encode()
        if path == "/echo/basic":
            return [b"you sent " + authorization]
        if path == "/echo/chunked":
            half = len(password) // 2
            return [b"your password is " + password[:half], password[half:]]
        return None

    def refuse(self, headers: Message) -> tuple[int, bytes, str, dict[str, str]] | None:
        scheme, _, encoded = (headers.get("Authorization") or "").partition(" ")
        if scheme.lower() == "basic":
            try:
                offered = base64.b64decode(encoded.strip(), validate=True)
            except (binascii.Error, ValueError):
                return self._REFUSAL
            expected = f"{self.username}:{self.password}".encode()
            if hmac.compare_digest(offered, expected):
                return None
        return self._REFUSAL
