"""The per-run certificate authority of the credential proxy's TLS mode.

In ``tls`` mode the sandboxed program talks HTTPS to the real API host name as usual
(no SDK setting to change), and the supervisor's proxy terminates that TLS itself so
that it can see the request and swap the phantom for the real value.  For that the
sandbox must trust a certificate the proxy can issue: :class:`RunCA` is a CA made
fresh for one run, held only in the supervisor's memory, and trusted only inside the
sandbox (:func:`trust_bundle`).  The proxy terminates TLS only for the credential's
own hosts; every other host is tunnelled and presents its real certificate.

The CA certificate carries a NameConstraints extension listing those hosts, so the
CA cannot vouch for any other name even if its key leaked (OpenSSL and every modern
TLS stack enforce the constraints on the chain).  One limit of X.509 itself: a DNS
name constraint ``api.example.com`` also permits its subdomains
(``x.api.example.com``); :meth:`RunCA.server_context` itself issues only for the
exact hosts.

This module is imported only when a ``tls``-mode credential is configured, and the
``cryptography`` imports are inside the functions: importing ``cryptography.x509``
costs tens of milliseconds that no other run should pay.
"""

from __future__ import annotations

import os
import ssl
import threading

TYPE_CHECKING = False
if TYPE_CHECKING:
    import datetime
    import ipaddress
    from collections.abc import Iterable, Mapping, Sequence

    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec

    Address = ipaddress.IPv4Address | ipaddress.IPv6Address

#: The subject common name of every per-run CA certificate.
CA_COMMON_NAME = "safe-run per-run CA"
#: The only application protocol the proxy speaks on a terminated connection: it
#: parses HTTP/1.1 requests to find the credential, so HTTP/2 must not be negotiated.
ALPN_PROTOCOLS = ("http/1.1",)
#: Certificates are valid from an hour ago (clocks in a guest or container may lag the
#: supervisor's a little) to two days from now (no run needs longer; a short life
#: limits what a leaked certificate is worth).
_BACKDATE_SECONDS = 3600
_LIFETIME_SECONDS = 2 * 24 * 3600


def split_host(host: str) -> str:
    """The host of ``host``, ``host:port``, ``[v6]`` or ``[v6]:port``, normalised.

    Names are lower-cased without a trailing dot; IP literals are in their canonical
    (compressed) form, so ``[0:0::1]:443`` and ``::1`` are the same host.  A bare IPv6
    literal (more than one colon, no brackets) is accepted as it is.
    """
    import ipaddress

    text = host.strip()
    if text.startswith("["):
        end = text.find("]")
        rest = text[end + 1 :]
        if end < 0 or (rest and not rest.startswith(":")):
            raise ValueError(f"malformed host: {host!r}")
        text = text[1:end]
    elif text.count(":") == 1:
        text = text.split(":", 1)[0]
    if not text:
        raise ValueError(f"empty host: {host!r}")
    try:
        return ipaddress.ip_address(text).compressed
    except ValueError:
        pass
    name = text.lower().rstrip(".")
    if not name or not name.isascii() or any(c.isspace() or c in "/@[]" for c in name):
        # Internationalised names must arrive as A-labels (xn--...), as they do in a
        # TLS server name indication.
        raise ValueError(f"not a host name or IP address: {host!r}")
    return name


def _parse_address(host: str) -> Address | None:
    """The IP address ``host`` (already normalised) spells, None for a DNS name."""
    import ipaddress

    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


def _validity() -> tuple[datetime.datetime, datetime.datetime]:
    import datetime

    now = datetime.datetime.now(datetime.timezone.utc)
    return (
        now - datetime.timedelta(seconds=_BACKDATE_SECONDS),
        now + datetime.timedelta(seconds=_LIFETIME_SECONDS),
    )


def _general_name(host: str) -> x509.GeneralName:
    """``host`` as a SubjectAlternativeName entry: DNSName or IPAddress."""
    from cryptography import x509

    address = _parse_address(host)
    if address is None:
        return x509.DNSName(host)
    return x509.IPAddress(address)


def _name_constraints(hosts: Iterable[str]) -> x509.NameConstraints:
    """Permit exactly ``hosts`` (DNS names and single-address IP networks).

    A permitted subtree restricts only names of its own type: with DNS names alone, a
    certificate for an IP address would be unconstrained (RFC 5280, 4.2.1.10), and
    vice versa.  So a type with no permitted host is excluded outright (all IPv4 and
    IPv6 networks; the empty DNS name, which matches every name).
    """
    import ipaddress

    from cryptography import x509

    permitted: list[x509.GeneralName] = []
    have_dns = have_ip = False
    for host in hosts:
        address = _parse_address(host)
        if address is None:
            permitted.append(x509.DNSName(host))
            have_dns = True
        else:
            permitted.append(x509.IPAddress(ipaddress.ip_network(address)))
            have_ip = True
    excluded: list[x509.GeneralName] = []
    if not have_dns:
        excluded.append(x509.DNSName(""))
    if not have_ip:
        excluded.append(x509.IPAddress(ipaddress.ip_network("0.0.0.0/0")))
        excluded.append(x509.IPAddress(ipaddress.ip_network("::/0")))
    return x509.NameConstraints(permitted_subtrees=permitted, excluded_subtrees=excluded or None)


class RunCA:
    """A certificate authority for one run, constrained to the credential hosts.

    Make one with :meth:`create`.  The CA key lives only in this object (never on
    disk, never in the sandbox); the sandbox gets :attr:`cert_pem` to trust.
    :meth:`server_context` gives the proxy a TLS server context per host, issuing
    the leaf certificate on first use.
    """

    def __init__(
        self,
        key: ec.EllipticCurvePrivateKey,
        cert: x509.Certificate,
        hosts: frozenset[str],
    ) -> None:
        """Use :meth:`create`; this only holds what it made."""
        self._ca_key = key
        self._ca_cert = cert
        self._hosts = hosts
        self._lock = threading.Lock()
        self._contexts: dict[str, ssl.SSLContext] = {}

    @classmethod
    def create(cls, hosts: Iterable[str]) -> RunCA:
        """A fresh EC P-256 CA whose NameConstraints permit only ``hosts``.

        ``hosts`` may carry ports (``host:port``, ``[v6]:port``); the port is not
        part of a certificate and is dropped.  At least one host is required: an
        unconstrained CA is exactly what this class exists to avoid.
        """
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        normalised = sorted({split_host(host) for host in hosts})
        if not normalised:
            raise ValueError("a per-run CA needs at least one host to be constrained to")
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, CA_COMMON_NAME)])
        not_before, not_after = _validity()
        public_key = key.public_key()
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
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
            .add_extension(_name_constraints(normalised), critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
            .sign(key, hashes.SHA256())
        )
        return cls(key, cert, frozenset(normalised))

    @property
    def hosts(self) -> frozenset[str]:
        """The normalised hosts (no ports) this CA may issue for."""
        return self._hosts

    @property
    def cert_pem(self) -> bytes:
        """The CA certificate in PEM, for the sandbox's trust store."""
        from cryptography.hazmat.primitives import serialization

        return self._ca_cert.public_bytes(serialization.Encoding.PEM)

    def server_context(self, host: str) -> ssl.SSLContext:
        """A TLS server context presenting a leaf certificate for ``host``.

        The leaf is issued on first use and the context cached, so each host costs
        one key generation per run.  ``host`` may carry a port.  A host outside the
        CA's constraints is refused (ValueError): the proxy must never terminate TLS
        for a host the credential does not belong to, and a client would reject the
        certificate anyway.
        """
        normalised = split_host(host)
        if normalised not in self._hosts:
            raise ValueError(f"{host!r} is not a host of this per-run CA")
        with self._lock:
            context = self._contexts.get(normalised)
            if context is None:
                context = self._make_context(normalised)
                self._contexts[normalised] = context
            return context

    def _issue(self, host: str) -> tuple[bytes, bytes]:
        """A fresh leaf key and certificate for ``host``: (key PEM, chain PEM)."""
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

        key = ec.generate_private_key(ec.SECP256R1())
        # Clients match the SubjectAlternativeName; a common name is only a label,
        # set for DNS names that fit (64 characters at most).  Never for an IP
        # literal: OpenSSL checks a host-like CN against the DNS name constraints.
        attributes = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, "safe-run")]
        if _parse_address(host) is None and len(host) <= 64:
            attributes.append(x509.NameAttribute(NameOID.COMMON_NAME, host))
        not_before, not_after = _validity()
        ski = self._ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier)
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name(attributes))
            .issuer_name(self._ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
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
            .add_extension(x509.SubjectAlternativeName([_general_name(host)]), critical=False)
            .add_extension(
                x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski.value),
                critical=False,
            )
            .sign(self._ca_key, hashes.SHA256())
        )
        key_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        chain_pem = cert.public_bytes(serialization.Encoding.PEM) + self.cert_pem
        return key_pem, chain_pem

    def _make_context(self, host: str) -> ssl.SSLContext:
        """Issue a leaf for ``host`` and load it into a new server context.

        ``SSLContext.load_cert_chain`` reads only files, so the leaf key and chain go
        into a fresh private directory (0700, files 0600) for as long as loading
        takes and are removed at once.  Only the leaf key is written; the CA key
        never leaves memory.
        """
        import tempfile

        key_pem, chain_pem = self._issue(host)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.set_alpn_protocols(list(ALPN_PROTOCOLS))
        directory = tempfile.mkdtemp(prefix="safe-run-tls-")
        key_path = os.path.join(directory, "key.pem")
        chain_path = os.path.join(directory, "chain.pem")
        try:
            os.chmod(directory, 0o700)
            _write_private(key_path, key_pem)
            _write_private(chain_path, chain_pem)
            context.load_cert_chain(chain_path, key_path)
        finally:
            for path in (key_path, chain_path):
                try:
                    os.unlink(path)
                except FileNotFoundError:
                    pass
            os.rmdir(directory)
        return context


def _write_private(path: str, data: bytes) -> None:
    """Write ``data`` to a new file readable by its owner only."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)


def _default_cafile() -> str | None:
    """The CA bundle file OpenSSL would use by default, if it exists."""
    paths = ssl.get_default_verify_paths()
    for candidate in (paths.cafile, paths.openssl_cafile):
        if candidate and os.path.isfile(candidate):
            return candidate
    return None


def trust_bundle(
    ca_pem: bytes, base_cafile: str | None, extra_cafiles: Sequence[str] = ()
) -> bytes:
    """The CA bundle the sandbox should trust: the usual roots plus the per-run CA.

    Why both: the proxy terminates TLS only for the credential hosts; every other
    allowed host is tunnelled and presents its real certificate, which the sandbox
    must still be able to verify.  ``base_cafile`` is the caller's ``SSL_CERT_FILE``
    when set (so a caller with a corporate root keeps it); None means OpenSSL's
    default bundle file.  With no bundle file at all, the result is the per-run CA
    alone (a hashed ``SSL_CERT_DIR`` cannot be concatenated; it keeps working for
    clients that read it).  ``extra_cafiles`` are the caller's other bundles
    (``REQUESTS_CA_BUNDLE`` ...): the variables that named them now all name this
    bundle, so it must hold what each of them held.
    """
    ca = ca_pem if ca_pem.endswith(b"\n") else ca_pem + b"\n"
    path = base_cafile if base_cafile else _default_cafile()
    parts: list[bytes] = []
    for candidate in dict.fromkeys([*([path] if path else []), *extra_cafiles]):
        try:
            with open(candidate, "rb") as bundle:
                data = bundle.read()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError, PermissionError):
            continue
        if data and data not in parts:
            parts.append(data if data.endswith(b"\n") else data + b"\n")
    return b"".join(parts) + ca


def upstream_context(caller_env: Mapping[str, str]) -> ssl.SSLContext:
    """The client context for the proxy's own TLS connection to the real API host.

    It verifies as the caller's programs would: ``SSL_CERT_FILE``/``SSL_CERT_DIR``
    from the caller's environment when set, else OpenSSL's defaults (the system
    store); plus every other bundle a trust variable names (``REQUESTS_CA_BUNDLE``,
    ``PIP_CERT`` ...; safe_pip/sandbox/environment.py), since a program inside would have
    trusted those.  They are read
    from ``caller_env`` explicitly because the supervisor scrubs its own environment,
    so OpenSSL's getenv would not see them.  As in OpenSSL, a variable that is unset
    keeps the default for its half (file or directory).  ALPN offers only HTTP/1.1,
    the protocol the proxy forwards.  A missing file or directory raises OSError.
    """
    cafile = caller_env.get("SSL_CERT_FILE") or None
    capath = caller_env.get("SSL_CERT_DIR") or None
    if cafile is None and capath is None:
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    else:
        paths = ssl.get_default_verify_paths()
        if cafile is None and paths.openssl_cafile and os.path.isfile(paths.openssl_cafile):
            cafile = paths.openssl_cafile
        if capath is None and paths.openssl_capath and os.path.isdir(paths.openssl_capath):
            capath = paths.openssl_capath
        context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH, cafile=cafile, capath=capath)
    from safe_pip.sandbox.environment import caller_trust

    for extra in caller_trust(caller_env).ca_files:
        if extra != cafile:
            try:
                context.load_verify_locations(cafile=extra)
            except (OSError, ssl.SSLError):
                pass  # not a bundle after all: the others still verify
    context.set_alpn_protocols(list(ALPN_PROTOCOLS))
    return context
