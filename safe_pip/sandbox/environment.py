"""The environment the sandboxed program sees: an allowlist, never the caller's whole env.

Secrets most often leak through environment variables (``OPENAI_API_KEY``,
``GITHUB_TOKEN``, ``AWS_*``), so nothing passes unless it is on this list or the
policy's ``env.pass``.  Everything here is harmless presentation state: locale,
terminal, time zone, colour preferences -- and the caller's TLS trust settings (the
variables that point at CA certificates; below), whose files become readable.
"""

from __future__ import annotations

import os

from safe_pip._records import record
from safe_pip.policy.model import is_within

TYPE_CHECKING = False  # avoid importing typing at start-up
if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

#: Names passed from the caller by default (plus every ``LC_*``).
DEFAULT_PASS: tuple[str, ...] = (
    "LANG",
    "LANGUAGE",
    "TERM",
    "COLORTERM",
    "TZ",
    "NO_COLOR",
    "FORCE_COLOR",
    "CLICOLOR",
    "CLICOLOR_FORCE",
    "COLUMNS",
    "LINES",
    "USER",
    "LOGNAME",
)


def build_environment(
    caller: Mapping[str, str],
    *,
    pass_names: Iterable[str],
    set_values: Iterable[tuple[str, str]],
    home: str,
    tmpdir: str,
    path_dirs: Iterable[str],
    venv: str | None,
) -> dict[str, str]:
    """Return the child's environment.

    Order matters: allowlisted caller values first, then the sandbox's own facts
    (HOME, TMPDIR, PATH, VIRTUAL_ENV), then the policy's ``env.set``, which has the
    last word because the user wrote it on purpose.
    """
    allowed = set(DEFAULT_PASS)
    allowed.update(pass_names)
    env = {
        name: value for name, value in caller.items() if name in allowed or name.startswith("LC_")
    }
    env["HOME"] = home
    env["TMPDIR"] = tmpdir
    env["PATH"] = ":".join(dict.fromkeys(path_dirs))
    env["SAFE_RUN"] = "1"
    if venv is not None:
        env["VIRTUAL_ENV"] = venv
    for name, value in set_values:
        env[name] = value
    return env


def _own_block(first_field: int) -> tuple[int, int] | None:
    """(start, end) addresses of this process's argument (45) or environment (47)
    block, from ``/proc/self/stat`` (fields 48-51 in proc(5), counted from 1)."""
    try:
        with open("/proc/self/stat", "rb") as handle:
            stat = handle.read()
    except OSError:
        return None
    # Fields after the parenthesised command name start at field 3.
    fields = stat[stat.rfind(b")") + 2 :].split()
    if len(fields) < first_field + 2:
        return None
    start, end = int(fields[first_field]), int(fields[first_field + 1])
    return (start, end) if 0 < start < end else None


def scrub_own_argv(secrets: Iterable[str]) -> bool:
    """Overwrite ``secrets`` with ``*`` in this process's argument block.

    ``/proc/PID/cmdline`` is readable without any ptrace check, and in namespace
    mode the sandbox's pid 1 is a fork of this process: an index password typed on
    the command line (``-i https://user:pw@host/simple``) would be one ``open()``
    away from the build code it is being kept from.  Python keeps its own copy in
    ``sys.argv``, so nothing of ours needs the original.
    """
    block = _own_block(45)
    if block is None:
        return False
    import ctypes

    start, end = block
    data = ctypes.string_at(start, end - start)
    for secret in secrets:
        raw = secret.encode()
        at = data.find(raw) if raw else -1
        while at >= 0:
            ctypes.memset(start + at, ord("*"), len(raw))
            at = data.find(raw, at + len(raw))
    return True


def scrub_own_environ_block() -> bool:
    """Zero this process's original environment block (what ``/proc/PID/environ`` shows).

    The supervisor is forked to become the sandbox's pid-1 init, so without this the
    caller's whole environment — tokens included — would sit in the memory of a
    process *inside* the sandbox's pid namespace.  Landlock's ptrace rules already
    keep ``/proc/1/environ`` unreadable from the sandbox; zeroing the block means a
    future hole there finds nothing.  Python copied the environment into
    ``os.environ`` at start-up, and the sandboxed program gets its environment from
    ``execve``, so nothing of ours needs the original block.  Returns False where
    ``/proc`` does not tell us where the block is.
    """
    block = _own_block(47)
    if block is None:
        return False
    import ctypes

    ctypes.memset(block[0], 0, block[1] - block[0])
    return True


# --- the caller's TLS trust settings ----------------------------------------------------
#
# The caller's TLS trust settings, carried into every sandbox.
#
# Behind a TLS-inspecting proxy or a gateway, the certificate a server presents is
# issued by a company CA that is in the system store or in a file the user points at
# with ``SSL_CERT_FILE``, ``REQUESTS_CA_BUNDLE`` and the like.  A sandbox that drops
# those variables, or cannot read the files, breaks every HTTPS client inside with a
# bare "certificate verify failed", and the user learns the fix one variable at a time.
#
# These variables only *point* at public certificates, or switch a client to the
# system store: they carry no secret.  So they pass by default, and the files and
# directories they name become readable, with two limits:
#
# * a path on the policy's deny list (or under it) is neither granted nor passed; a
#   variable is not a way to read ``~/.ssh``;
# * a path that does not exist is not granted, and its variable still passes (the
#   program's own error is the truthful one).
#
# Client-certificate settings (``PIP_CLIENT_CERT``, ``SSL_CLIENT_CERT`` ...) are not
# here: those files hold private keys.


#: Variables naming one CA bundle file, and who reads them.
CA_FILE_VARIABLES = (
    "SSL_CERT_FILE",  # OpenSSL: Python's ssl, urllib, httpx, aiohttp; uv; curl
    "REQUESTS_CA_BUNDLE",  # requests, pip's vendored copy
    "CURL_CA_BUNDLE",  # curl, requests as a fallback
    "PIP_CERT",  # pip --cert
    "UV_CERT",  # uv's --cert, where a uv release reads it from the environment
    "NODE_EXTRA_CA_CERTS",  # Node.js
    "GIT_SSL_CAINFO",  # git over HTTPS
    "AWS_CA_BUNDLE",  # botocore, the AWS CLI
    "HTTPLIB2_CA_CERTS",  # httplib2 (Google's older clients)
    "GRPC_DEFAULT_SSL_ROOTS_FILE_PATH",  # gRPC
    "CLOUDSDK_CORE_CUSTOM_CA_CERTS_FILE",  # gcloud
    "NIX_SSL_CERT_FILE",  # Nix-built programs
)
#: Variables naming directories of hashed certificates (``:``-separated lists).
CA_DIR_VARIABLES = ("SSL_CERT_DIR", "GIT_SSL_CAPATH")
#: Switches to the system store: no path, passed as they are.
SWITCHES = ("UV_NATIVE_TLS", "UV_SYSTEM_CERTS")
TRUST_VARIABLES = (*CA_FILE_VARIABLES, *CA_DIR_VARIABLES, *SWITCHES)


@record
class TrustStore:
    """What of the caller's trust settings a sandbox gets."""

    names: tuple[str, ...]  # variables passed
    reads: tuple[str, ...]  # files and directories made readable
    ca_files: tuple[str, ...]  # the existing bundle files, for the proxy's own trust


def caller_trust(caller_env: Mapping[str, str], deny: Iterable[str] = ()) -> TrustStore:
    """The trust variables set in ``caller_env``, minus those naming denied paths."""
    denied = tuple(deny)
    names: list[str] = []
    reads: list[str] = []
    ca_files: list[str] = []
    # Most of these variables name the same bundle: look each path up once.
    kinds: dict[str, str | None] = {}  # path -> "file", "dir", "missing"; None: denied
    for name in TRUST_VARIABLES:
        value = caller_env.get(name)
        if not value:
            continue
        if name in SWITCHES:
            names.append(name)
            continue
        paths = value.split(":") if name in CA_DIR_VARIABLES else [value]
        paths = [p if p.startswith("/") else os.path.abspath(p) for p in paths if p]
        for path in paths:
            if path not in kinds:
                kinds[path] = None if _denied(path, denied) else _kind(path)
        if any(kinds[path] is None for path in paths):
            continue
        names.append(name)
        for path in paths:
            if kinds[path] != "missing":
                reads.append(path)
                if name in CA_FILE_VARIABLES and kinds[path] == "file":
                    ca_files.append(path)
    return TrustStore(tuple(names), tuple(dict.fromkeys(reads)), tuple(dict.fromkeys(ca_files)))


def _kind(path: str) -> str:
    import stat

    try:
        mode = os.stat(path).st_mode
    except (OSError, ValueError):
        return "missing"
    return "file" if stat.S_ISREG(mode) else "dir" if stat.S_ISDIR(mode) else "other"


def _denied(path: str, deny: tuple[str, ...]) -> bool:
    """Whether ``path`` (or what it resolves to) lies on or under a denied path."""
    real = os.path.realpath(path)
    return any(is_within(path, d) or is_within(real, d) for d in deny)
