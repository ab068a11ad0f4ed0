"""Wiring phantom-token credentials into one run: sandbox variables and proxy vault.

Called by the supervisor before it forks, once the proxy's port is known:

* every credential's variable gets its phantom; a ``base-url`` credential's SDK
  variable gets its loopback route on the proxy (proxy/credentials.py);
* with ``tls``-mode credentials a per-run CA is made (credentials/tls.py) and the
  trust bundle — the caller's trust store plus that CA — is written into the
  sandbox's private directory; the usual CA variables point at it, so clients that
  honour them (OpenSSL, requests, curl, git, uv, Node) accept the proxy's
  certificates for exactly the credential hosts (the CA is name-constrained).

The vault itself is built after the fork, with the proxy (:func:`make_vault`).
"""

from __future__ import annotations

import os

from safe_pip._records import mutable_record

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

    from safe_pip.credentials.phantom import ArmedCredential
    from safe_pip.credentials.tls import RunCA
    from safe_pip.proxy.credentials import Vault
    from safe_pip.proxy.log import DestinationLog
    from safe_pip.proxy.upstream_proxy import UpstreamProxy

#: Variables naming a CA bundle, set to the per-run bundle for ``tls``-mode credentials.
CA_VARIABLES = (
    "SSL_CERT_FILE",  # OpenSSL (Python's ssl, urllib, aiohttp, httpx), uv
    "REQUESTS_CA_BUNDLE",  # requests (and pip's vendored copy)
    "CURL_CA_BUNDLE",  # curl, and requests as a fallback
    "PIP_CERT",  # pip's --cert
    "GIT_SSL_CAINFO",  # git over HTTPS
    "NODE_EXTRA_CA_CERTS",  # Node adds these to its own store
)
BUNDLE_NAME = "safe-run-ca-bundle.pem"


@mutable_record
class CredentialSetup:
    """What the proxy needs after the fork."""

    armed: tuple[ArmedCredential, ...]
    run_ca: RunCA | None
    #: The caller's own trust settings, for the proxy's connections to real hosts.
    trust_env: dict[str, str]


def prepare_credentials(
    armed: tuple[ArmedCredential, ...],
    port: int,
    private_dir: str,
    caller_env: Mapping[str, str],
) -> tuple[dict[str, str], CredentialSetup]:
    """The sandbox variables for ``armed`` and the setup for the proxy."""
    from safe_pip.proxy.credentials import route_url

    env: dict[str, str] = {}
    for credential in armed:
        spec = credential.spec
        if spec.env:  # index passwords have no variable: they sit in uv's URLs
            env[spec.env] = credential.phantom
        if spec.mode == "base-url" and spec.base_url and spec.base_url_env:
            env[spec.base_url_env] = route_url(port, spec.name, spec.base_url)
    from safe_pip.sandbox.environment import TRUST_VARIABLES, caller_trust

    trust_env = {name: caller_env[name] for name in TRUST_VARIABLES if name in caller_env}
    tls_hosts = [host for c in armed if c.spec.mode == "tls" for host in c.spec.hosts]
    run_ca = None
    if tls_hosts:
        from safe_pip.credentials.tls import RunCA, trust_bundle

        run_ca = RunCA.create(tls_hosts)
        bundle = os.path.join(private_dir, BUNDLE_NAME)
        with open(bundle, "wb") as handle:
            extra = caller_trust(trust_env).ca_files
            handle.write(trust_bundle(run_ca.cert_pem, trust_env.get("SSL_CERT_FILE"), extra))
        env.update(dict.fromkeys(CA_VARIABLES, bundle))
    return env, CredentialSetup(armed, run_ca, trust_env)


def make_vault(
    setup: CredentialSetup, log: DestinationLog, port: int, upstream: UpstreamProxy | None
) -> Vault:
    """The proxy's vault (in the supervisor, after the fork)."""
    from safe_pip.credentials.tls import upstream_context
    from safe_pip.proxy.credentials import Vault

    trust_env = setup.trust_env
    return Vault(
        setup.armed,
        log,
        proxy_port=port,
        upstream_context=lambda: upstream_context(trust_env),
        run_ca=setup.run_ca,
        upstream=upstream,
    )
