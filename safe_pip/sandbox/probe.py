"""Which sandbox layers this kernel offers to this user, in words a user can act on.

Used by ``safe-pip doctor`` and ``safe-run --explain``; both must tell the truth, so
every answer here comes from trying the real mechanism (a Landlock ABI query, a real
``unshare`` in a throwaway child, a real ``prctl``), never from a version table.
"""

from __future__ import annotations

import ctypes
import os

from safe_pip._records import record
from safe_pip.sandbox import landlock, namespaces

PR_GET_SECCOMP = 21


@record
class Layer:
    """One protection layer: is it in force, and what that means."""

    name: str
    in_force: bool
    detail: str


def seccomp_available() -> bool:
    """``PR_GET_SECCOMP`` fails with EINVAL on kernels built without seccomp."""
    libc = ctypes.CDLL(None, use_errno=True)
    return int(libc.prctl(PR_GET_SECCOMP, 0, 0, 0, 0)) >= 0


def probe_layers(*, userns: tuple[bool, str] | None = None) -> tuple[str, list[Layer]]:
    """Return the mode safe-run would use ("namespace" or "fallback") and the layers."""
    abi = landlock.abi_version()
    if userns is None:
        userns = namespaces.userns_available()
    ns_ok, ns_why = userns
    mode = "namespace" if ns_ok else "fallback"
    layers = [
        Layer("environment", True, "allowlist only; HOME and TMPDIR are private"),
        Layer(
            "landlock-filesystem",
            abi > 0,
            f"Landlock ABI {abi}: default-deny file access" if abi else "Landlock missing",
        ),
        Layer(
            "mount-namespace",
            ns_ok,
            "private root: only granted paths exist; denied paths are empty; "
            "protected paths are read-only binds; private /tmp and /dev/shm"
            if ns_ok
            else f"not available: {ns_why}; deny/protected paths are enforced by "
            "Landlock carving only (stat() still sees hidden paths, new files cannot be "
            "created directly in a directory that contains a protected path)",
        ),
        Layer(
            "network-isolation",
            ns_ok or abi >= 4,
            "own network namespace (loopback only); with network.allow the proxy's "
            "listening socket, passed out of the namespace, is the only way out"
            if ns_ok
            else "host network stack; network none: seccomp refuses socket() "
            "(socketpair allowed); network.allow: TCP sockets only (no UDP, raw, "
            "netlink, vsock, MPTCP, TCP Fast Open), every connect() decided by the "
            "supervisor (only the proxy at 127.0.0.1)"
            + ("; Landlock TCP: no bind, connect only to the proxy's port" if abi >= 4 else ""),
        ),
        Layer(
            "network-proxy",
            True,
            "network.allow: hosts filtered by safe-run's proxy (HTTP CONNECT, plain HTTP, "
            "SOCKS5), names resolved outside the sandbox, internal addresses refused "
            "unless allowed as IP literals",
        ),
        Layer(
            "process-lifetime",
            True,
            "pid namespace: every descendant dies with the target"
            if ns_ok
            else "child subreaper: leftover descendants are killed after the target "
            "exits (they survive if safe-run itself is SIGKILLed)",
        ),
        Layer("seccomp", seccomp_available(), "ptrace, TIOCSTI, keyctl, bpf, mount, ... refused"),
        Layer(
            "landlock-scopes",
            abi >= 6,
            "signals and abstract unix sockets stay inside the sandbox"
            if abi >= 6
            else f"needs Landlock ABI 6 (have {abi})",
        ),
        Layer("no-new-privs", True, "setuid binaries cannot raise privileges"),
    ]
    return mode, layers


def format_layers(layers: list[Layer]) -> list[str]:
    width = max(len(layer.name) for layer in layers)
    return [
        f"{layer.name.ljust(width)}  {'yes' if layer.in_force else 'NO '}  {layer.detail}"
        for layer in layers
    ]


def running_as() -> str:
    return f"uid {os.getuid()}" + (" (root)" if os.getuid() == 0 else "")
