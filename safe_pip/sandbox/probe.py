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
            else f"not available: {ns_why}; denied paths are kept by Landlock carving "
            "(their names can still be listed and stat()ed), protected ones by the broker",
        ),
        Layer(
            "supervised-calls",
            True,
            "not needed: the namespaces keep metadata read-only and IPC private"
            if ns_ok
            else "mode/owner/time/xattr changes and inotify watches decided by the broker "
            "against the grants; priority, scheduling and limits of the sandbox's own "
            "processes only; datagram socketpairs cannot address outside sockets; "
            "SysV IPC, POSIX message queues, fanotify and listen() refused",
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
            "broker (only the proxy at 127.0.0.1), listen() refused"
            + ("; Landlock TCP: no bind, connect only to the proxy's port" if abi >= 4 else ""),
        ),
        Layer(
            "network-proxy",
            True,
            "network.allow: hosts filtered by safe-run's proxy (HTTP CONNECT, plain HTTP, "
            "SOCKS5), names resolved outside the sandbox, internal addresses only where "
            "named (an IP rule; a private or gateway address for a host listed exactly), "
            "never loopback or link-local through a name",
        ),
        Layer(
            "process-lifetime",
            True,
            "pid namespace: every descendant dies with the target"
            if ns_ok
            else "the broker is a child subreaper: descendants are killed when the "
            "target exits and when safe-run itself dies (SIGKILL included); only if the "
            "broker and safe-run are both killed can a daemon survive",
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


def namespace_advice(why: str) -> list[str]:
    """What a user can do about namespace mode being off, given ``why`` it is, in the
    supported way for that cause; nothing here changes the machine."""
    if "SAFE_PIP_NO_USERNS" in why:
        return ["unset SAFE_PIP_NO_USERNS to use namespace mode"]
    if "AppArmor" in why:
        return [
            "Ubuntu restricts unprivileged user namespaces to programs whose AppArmor "
            "profile allows them (kernel.apparmor_restrict_unprivileged_userns=1).",
            "The supported way is a profile granting `userns,` to one dedicated "
            "executable. safe-run creates its namespaces from the Python interpreter, "
            f"and a profile for that ({_interpreter()}) would open user namespaces to "
            "every Python program on the machine: safe-pip does not recommend it, and "
            "ships no dedicated helper yet.",
            "Turning the restriction off machine-wide (sysctl "
            "kernel.apparmor_restrict_unprivileged_userns=0) is an administrator's "
            "decision about every program, not safe-pip's.",
            "Fallback mode holds the same guarantees with the differences listed in "
            'docs/sandbox.md ("What fallback mode still does differently").',
        ]
    if "unprivileged_userns_clone" in why or "max_user_namespaces" in why:
        return [
            "User namespaces are switched off for this machine by a sysctl; enabling "
            "them is an administrator's decision for every program.",
            "Fallback mode holds the same guarantees with the differences listed in "
            "docs/sandbox.md.",
        ]
    if "EPERM" in why or "refused" in why:
        return [
            "In a container, the runtime's seccomp profile refuses unshare (Docker's "
            "default does); a profile that allows CLONE_NEWUSER for this container "
            "gives namespace mode back.",
            "Fallback mode holds the same guarantees with the differences listed in "
            "docs/sandbox.md.",
        ]
    return [
        "Fallback mode holds the same guarantees with the differences listed in docs/sandbox.md."
    ]


def _interpreter() -> str:
    import sys

    return os.path.realpath(sys.executable)
