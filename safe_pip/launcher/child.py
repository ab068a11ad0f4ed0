"""Code that runs in the forked children: apply the plan's layers, then ``execve``.

Everything here runs after ``fork()`` in a copy of the supervisor.  It never returns
to the caller: each entry point ends in ``execve`` or ``os._exit``.  Failures are
reported to the supervisor as one line on the report pipe (``error CODE MESSAGE``)
so that the user sees one readable sentence, never a traceback from a child.

Layer order in the target process (last process before ``execve``), and why:
1. ``chdir`` into the working directory while it is still reachable;
2. capabilities dropped (a root caller keeps uid 0, but no capability);
3. Landlock (also sets no_new_privs) — path rules are resolved now, after the
   private root exists, so they name the inodes the program will really see;
4. seccomp last, because it forbids ``mount``/``unshare`` that earlier steps use.
"""

from __future__ import annotations

import gc
import os
import sys

from safe_pip._records import record
from safe_pip.errors import (
    EXIT_INTERNAL,
    EXIT_NOT_EXECUTABLE,
    EXIT_NOT_FOUND,
    SandboxUnavailable,
)
from safe_pip.launcher.plan import PRIVATE_TMPFS, SandboxPlan
from safe_pip.sandbox import landlock, namespaces
from safe_pip.sandbox.fs_rules import FsGrants, Rule, landlock_rules, protected_in_reach
from safe_pip.sandbox.mounts import MountPlan, PreparedRoot, enter_private_root
from safe_pip.sandbox.seccomp import SeccompOptions, build_filter, install_filter

TYPE_CHECKING = False  # avoid importing typing at start-up
if TYPE_CHECKING:
    from typing import NoReturn

# ``_signal`` is the C core of ``signal``; the Python wrapper imports ``enum`` (about
# 7 ms here) just to turn numbers into ``Signals`` members we never need.
if TYPE_CHECKING:
    import signal
else:
    import _signal as signal


#: Signals the supervisor (and our pid-1 init) forward to the target.
FORWARDED_SIGNALS: tuple[int, ...] = (
    signal.SIGINT,
    signal.SIGTERM,
    signal.SIGHUP,
    signal.SIGQUIT,
    signal.SIGUSR1,
    signal.SIGUSR2,
    signal.SIGWINCH,
)
# Address families, from <sys/socket.h> (the same on every Linux architecture);
# written out so the start-up path does not import the socket module.
AF_UNIX, AF_INET, AF_INET6, AF_NETLINK = 1, 2, 10, 16
NAMESPACE_FLAGS = (
    namespaces.CLONE_NEWUSER
    | namespaces.CLONE_NEWNS
    | namespaces.CLONE_NEWPID
    | namespaces.CLONE_NEWNET
    | namespaces.CLONE_NEWIPC
    | namespaces.CLONE_NEWUTS
)


@record
class ChildNetwork:
    """The pre-fork sockets of a network allowlist, as fd numbers (launcher/network.py).

    ``port``: the proxy's port, on 127.0.0.1 both outside and inside the namespace.
    ``channel_fd``: where to send the namespace listener or the seccomp notify fd.
    ``host_listener_fd``: the supervisor's host-side listener; no child keeps it.
    """

    port: int
    channel_fd: int
    host_listener_fd: int


def resume_gc() -> None:
    """Turn cyclic garbage collection back on once start-up is over, if the launcher
    (scripts/safe-run) turned it off; for processes that then live as long as the
    program (the supervisor with its proxy, the broker).

    Everything allocated so far (modules, classes, the plan) lives to the end anyway:
    it is frozen first, so no collection walks it again -- a walk writes to every
    object and would copy each page shared with the children.
    """
    if not gc.isenabled():
        gc.freeze()
        gc.enable()


def report(fd: int, line: str) -> None:
    """One line to the supervisor; best effort (it may already be gone)."""
    try:
        os.write(fd, (line.replace("\n", " ") + "\n").encode("utf-8", "replace"))
    except OSError:
        pass


def fail(fd: int, code: int, message: str) -> NoReturn:
    report(fd, f"error {code} {message}")
    os._exit(code)


def exit_code_from_status(status: int) -> int:
    """Shell convention: the child's code, or 128+N when it died of signal N."""
    if os.WIFSIGNALED(status):
        return 128 + os.WTERMSIG(status)
    return os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else EXIT_INTERNAL


def stage1(
    plan: SandboxPlan,
    report_fd: int,
    root: PreparedRoot | None,
    ns_rules: list[Rule] | None = None,
    net: ChildNetwork | None = None,
    go_fd: int | None = None,
    events_fd: int | None = None,
    ns_broker_rules: list[Rule] | None = None,
) -> NoReturn:
    """First child: new session, then namespaces (or fallback), then the next stage.

    ``root`` is the private root prepared by the supervisor before forking (host
    lookups are cheaper there than after a fork); None means fallback mode only.
    ``ns_rules`` are the namespace-mode Landlock rules, precomputed for the same reason.
    ``net`` is set for a network allowlist: in namespace mode this process (inside the
    new network namespace) makes the proxy's listening socket and sends it out.
    ``go_fd`` (learn mode): wait for one byte on it, sent once the supervisor has
    attached as our tracer, so that no descendant and no filter comes before it.
    ``events_fd`` (with a broker plan): where the filesystem broker reports refusals;
    ``ns_broker_rules`` are its namespace-mode Landlock rules.
    """
    try:
        if go_fd is not None:
            os.read(go_fd, 1)
            os.close(go_fd)
        for sig in FORWARDED_SIGNALS:
            signal.signal(sig, signal.SIG_DFL)
        os.setsid()  # no controlling terminal: TIOCSTI and tty signals cannot reach us
        namespaces.set_pdeathsig(signal.SIGKILL)
        mode = "fallback"
        why = "disabled by SAFE_PIP_NO_USERNS"
        if plan.try_namespaces and root is not None:
            try:
                namespaces.unshare(NAMESPACE_FLAGS)
                namespaces.map_ids(plan.uid, plan.gid)
                mode = "namespace"
            except OSError as exc:
                why = f"user namespaces unavailable ({exc.strerror or exc})"
        report(report_fd, f"mode {mode} {why if mode == 'fallback' else ''}".rstrip())
        if mode == "namespace":
            namespaces.bring_up_loopback()
            if net is not None:
                from safe_pip.launcher.network import (
                    TAG_DNS,
                    TAG_LISTENER,
                    dns_socket_here,
                    listen_here,
                    send_fd,
                )

                os.close(net.host_listener_fd)  # a host-side socket has no place in here
                listener = listen_here(net.port)
                send_fd(net.channel_fd, TAG_LISTENER, listener)
                os.close(listener)
                dns = dns_socket_here()  # lookups the program makes itself, for the report
                if dns is not None:
                    send_fd(net.channel_fd, TAG_DNS, dns)
                    os.close(dns)
                os.close(net.channel_fd)
                net = None
        if mode == "fallback":
            if landlock.abi_version() < 6 and not plan.allow_degraded:
                fail(
                    report_fd,
                    EXIT_INTERNAL,
                    "without user namespaces the sandbox needs Landlock scopes (ABI 6+) to "
                    "isolate signals; refusing (pass --allow-degraded to run anyway)",
                )
            # Always a broker here: what Landlock does not mediate goes through it.
            parent_of_target(plan, mode, report_fd, None, None, net, events_fd)
        init_pid = os.fork()
        if init_pid == 0:
            assert root is not None
            init(plan, report_fd, root, ns_rules, ns_broker_rules, events_fd)
        report(report_fd, f"init {init_pid}")
        os.close(report_fd)
        while True:
            pid, status = os.waitpid(init_pid, 0)
            if pid == init_pid:
                os._exit(exit_code_from_status(status))
    except Exception as exc:
        fail(report_fd, EXIT_INTERNAL, f"sandbox setup failed: {exc}")


def init(
    plan: SandboxPlan,
    report_fd: int,
    root: PreparedRoot,
    ns_rules: list[Rule] | None,
    ns_broker_rules: list[Rule] | None = None,
    events_fd: int | None = None,
) -> NoReturn:
    """Pid 1 of the new pid namespace: private root, then run and reap the target.

    When this process exits the kernel kills every other process in the namespace,
    which is how no daemon outlives the run.
    """
    try:
        namespaces.set_pdeathsig(signal.SIGKILL)
        enter_private_root(root)
        parent_of_target(plan, "namespace", report_fd, ns_rules, ns_broker_rules, None, events_fd)
    except Exception as exc:
        fail(report_fd, EXIT_INTERNAL, f"sandbox setup failed: {exc}")


def parent_of_target(
    plan: SandboxPlan,
    mode: str,
    report_fd: int,
    rules: list[Rule] | None,
    broker_rules: list[Rule] | None,
    net: ChildNetwork | None,
    events_fd: int | None,
) -> NoReturn:
    """Fork the program and stay its parent: forward signals, reap, exit with its status.

    Pid 1 must forward signals because it ignores those it has no handler for.  With
    a broker plan, and always in fallback mode, this process is also the broker
    (:mod:`safe_pip.sandbox.fs_broker`, :mod:`safe_pip.sandbox.attr_broker`): it
    takes the Landlock domain that may write the persistent grants, without
    capabilities, *before* forking, so the program's own (read-only there) domain is
    nested inside it; the program sends it the seccomp listener over a socket pair,
    and a thread answers the notifications.  In fallback mode the same listener
    carries metadata changes, inotify watches, datagram socketpairs and, with a
    network allowlist, ``connect()``; and this process is the run's kill switch
    (:func:`_guard_leftovers`).
    """
    try:
        channel = broker_end = None
        proxy_port = net.port if net is not None else None
        if mode == "fallback":
            _guard_leftovers()
        if plan.broker is not None or mode == "fallback":
            if mode == "namespace" or os.geteuid() == 0:
                namespaces.drop_capabilities()  # the program's DAC rights, no more
            if broker_rules is None:
                broker_rules = landlock_rules_for(plan, mode, role="broker")
            if rules is None and plan.broker is None:
                rules = broker_rules  # no persistent grant: both domains are the same
            if mode == "fallback":
                # The broker's own code is imported after the fork, in its thread,
                # while the program starts (namespace mode imported it before: in the
                # private root safe-pip's files may not exist).
                broker_rules = [*broker_rules, *_own_code_rules()]
            apply_landlock(plan, mode, broker_rules, proxy_port)
            import _socket

            channel, broker_end = _socket.socketpair(
                _socket.AF_UNIX, _socket.SOCK_SEQPACKET | _socket.SOCK_CLOEXEC
            )
        target_pid = os.fork()
        if target_pid == 0:
            if channel is not None and broker_end is not None:
                channel.close()
                exec_target(plan, mode, report_fd, rules, net, broker_fd=broker_end.fileno())
            exec_target(plan, mode, report_fd, rules, net)
        resume_gc()  # with a broker, this process lives as long as the program
        os.close(report_fd)
        if net is not None:
            os.close(net.channel_fd)
            os.close(net.host_listener_fd)

        def forward(signum: int, _frame: object) -> None:
            try:
                os.kill(target_pid, signum)
            except ProcessLookupError:
                pass

        for sig in FORWARDED_SIGNALS:
            signal.signal(sig, forward)
        if channel is not None and broker_end is not None:
            broker_end.close()
            guard_port = proxy_port if mode == "fallback" else None
            _start_broker(plan, mode, channel, events_fd, guard_port)
        while True:
            pid, status = os.wait()
            if pid == target_pid:
                os._exit(exit_code_from_status(status))
    except Exception as exc:
        fail(report_fd, EXIT_INTERNAL, f"sandbox setup failed: {exc}")


#: The highest descriptor number Linux allows (INT_MAX): closerange's upper bound.
_MAX_FD = 2**31 - 1


def _int32(value: int) -> bytes:
    return value.to_bytes(4, sys.byteorder, signed=True)


def _own_code_rules() -> list[Rule]:
    """Read access to safe-pip's package and its interpreter's standard library, for the
    broker's domain only (the program's may not include them)."""
    import _ctypes

    package = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))
    stdlib = os.path.dirname(os.path.realpath(os.__file__))
    dynload = os.path.dirname(os.path.realpath(_ctypes.__file__))
    return [(path, landlock.READ) for path in dict.fromkeys((package, stdlib, dynload))]


def preload_broker() -> None:
    """Import what the broker needs while safe-pip's own files are still readable: in
    namespace mode's private root they may not exist (an editable install, a venv
    outside the grants, safe-run's own interpreter when the venv has another one)."""
    import _socket  # noqa: F401  (the broker's channel to the program)
    import select  # noqa: F401  (the listener's orphan check)

    import safe_pip.launcher.leftovers
    import safe_pip.launcher.persistence
    import safe_pip.sandbox.attr_broker
    import safe_pip.sandbox.connect_guard
    import safe_pip.sandbox.fs_broker  # noqa: F401


#: The broker's death signal in fallback mode: catchable (unlike SIGKILL), and not one
#: the broker forwards to the program.
_ORPHAN_SIGNAL = signal.SIGRTMIN


def _guard_leftovers() -> None:
    """Fallback mode's kill switch for when ``safe-run`` itself is killed.

    Without a pid namespace nothing would stop a daemonised descendant when the
    supervisor dies without cleaning up (SIGKILL, the OOM killer).  So the broker, which
    no sandboxed process can signal (Landlock scopes), becomes a child subreaper --
    every orphan of the run is re-parented to it -- and asks for a catchable signal
    when its parent dies; then it kills every descendant and exits.
    """
    from safe_pip.launcher.leftovers import kill_leftovers

    supervisor = os.getppid()

    def orphaned(_signum: int, _frame: object) -> None:
        if os.getppid() == supervisor:
            return  # not our parent's death: someone else's signal
        kill_leftovers()
        os._exit(EXIT_INTERNAL)

    namespaces.set_child_subreaper()
    signal.signal(_ORPHAN_SIGNAL, orphaned)
    namespaces.set_pdeathsig(_ORPHAN_SIGNAL)
    if os.getppid() != supervisor:  # it died before the death signal was armed
        orphaned(_ORPHAN_SIGNAL, None)


def _start_broker(
    plan: SandboxPlan, mode: str, channel: object, events_fd: int | None, proxy_port: int | None
) -> None:
    """Receive the program's seccomp listener and answer it from a daemon thread.

    If the program failed before sending it (a set-up error it reports itself), there
    is nothing to serve.
    """
    import _socket
    import _thread

    assert isinstance(channel, _socket.socket)
    listener = None
    try:
        _data, ancillary, _flags, _addr = channel.recvmsg(16, _socket.CMSG_SPACE(4))
        for level, kind, payload in ancillary:
            if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
                listener = int.from_bytes(payload[:4], "little")
    except OSError:
        listener = None
    finally:
        channel.close()
    if listener is None:
        return
    # The kill switch's signal must reach the main thread, which waits in os.wait():
    # a process-directed signal the kernel hands to the broker thread instead leaves
    # that wait uninterrupted, and the handler would not run until a child exits
    # (seen: a daemon outlived a SIGKILLed safe-run).  New threads inherit the mask.
    signal.pthread_sigmask(signal.SIG_BLOCK, {_ORPHAN_SIGNAL})
    try:
        _thread.start_new_thread(_serve_broker, (plan, mode, listener, events_fd, proxy_port))
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {_ORPHAN_SIGNAL})


def _serve_broker(
    plan: SandboxPlan, mode: str, listener: int, events_fd: int | None, proxy_port: int | None
) -> None:
    """The broker thread: filesystem writes (and, in fallback mode with an allowlist,
    ``connect()``) until no process of the sandbox is left."""
    from safe_pip.launcher.persistence import WriteRules
    from safe_pip.sandbox.fs_broker import FsBroker
    from safe_pip.sandbox.notify import Notifications

    events = EventWriter(events_fd)
    try:
        notifications = Notifications(listener)
        broker_plan = plan.broker
        persistent: tuple[str, ...] = ()
        rules = WriteRules((), (), 0)
        if broker_plan is not None:
            persistent = broker_plan.persistent
            protected, path_dirs = broker_plan.protected, broker_plan.path_dirs
            rules = WriteRules(protected, path_dirs, broker_plan.started_ns, broker_plan.git)
        scratch = None
        if plan.trace_syscalls:  # learn mode: report the writes the kernel will refuse
            scratch = [w for w in plan.grants.write if w not in set(persistent)]
            scratch += PRIVATE_TMPFS if mode == "namespace" else ("/dev/shm",)
            scratch += plan.grants.devices_rw  # /dev/null and the like: the kernel allows them
        broker = FsBroker(notifications, persistent, rules, events.write, scratch)
        handlers = broker.handlers() if broker_plan is not None else {}
        if mode == "fallback":
            from safe_pip.sandbox.attr_broker import Areas, AttrBroker

            grants = grants_for_mode(plan.grants, mode)
            areas = Areas((*grants.read, *grants.devices_rw), grants.write, grants.deny)
            handlers.update(AttrBroker(broker, areas).handlers())
        if proxy_port is not None:
            from safe_pip.sandbox.connect_guard import ConnectGuard
            from safe_pip.sandbox.seccomp import syscall_number

            def refused(address: str, port: int) -> None:
                events.write(f"connect {address} {port}")

            guard = ConnectGuard(notifications, ("127.0.0.1", proxy_port), refused)
            handlers[syscall_number("connect")] = guard.handle
        notifications.serve(handlers)
    except Exception as exc:  # a bug of ours: say so once, and fail closed
        events.write(f"failed {type(exc).__name__}: {exc}")
    finally:
        os.close(listener)  # any call still waiting fails (ENOSYS): closed, not open


class EventWriter:
    """One line per event to the supervisor; never blocks the broker (a full pipe
    drops the line and counts it: ``dropped N`` is written once there is room)."""

    __slots__ = ("_dropped", "_fd")

    def __init__(self, fd: int | None) -> None:
        self._fd = fd
        self._dropped = 0
        if fd is not None:
            os.set_blocking(fd, False)

    def write(self, line: str) -> None:
        if self._fd is None:
            return
        data = (line.replace("\n", " ") + "\n").encode("utf-8", "surrogateescape")
        if self._dropped:
            data = f"dropped {self._dropped}\n".encode() + data
        try:
            os.write(self._fd, data)
            self._dropped = 0
        except OSError:
            self._dropped += 1


def mount_plan(plan: SandboxPlan) -> MountPlan:
    """The private root for namespace mode, built from the same grants as Landlock."""
    grants = plan.grants
    return MountPlan(
        read=tuple(p for p in grants.read if p != "/proc"),
        write=grants.write,
        deny=grants.deny,
        protected=tuple(protected_in_reach(grants)),
        tmpfs=PRIVATE_TMPFS,
        proc=True,
        dev=True,
        workdir=plan.cwd,
    )


def grants_for_mode(grants: FsGrants, mode: str) -> FsGrants:
    """The Landlock view of the grants in each mode.

    Namespace mode: denied paths are already empty read-only tmpfs mounts and
    protected paths read-only binds, so Landlock grants whole trees (carving would
    forbid creating files next to a denied path for no gain); /tmp and /dev/shm are
    private tmpfs mounts.  Fallback mode: Landlock alone enforces deny and protected
    paths by carving, and the host's /dev/shm is shared (multiprocessing needs it).
    """
    if mode == "namespace":
        return FsGrants(
            read=grants.read,
            write=(*grants.write, *PRIVATE_TMPFS),
            deny=(),
            protected=(),
            devices_rw=grants.devices_rw,
            sealed=grants.sealed,
        )
    return FsGrants(
        read=grants.read,
        write=(*grants.write, "/dev/shm"),
        deny=grants.deny,
        protected=grants.protected,
        devices_rw=grants.devices_rw,
        sealed=grants.sealed,
    )


def landlock_rules_for(plan: SandboxPlan, mode: str, role: str = "target") -> list[Rule]:
    """Rules for one mode; namespace-mode rules name the same paths as the host's.

    With a broker plan there are two domains (see :func:`parent_of_target`): the
    ``broker``'s may write every write grant; the ``target``'s, nested inside it, may
    write only the scratch space and reads the persistent grants.  Neither carves
    protected paths or seals directories: the broker's rules keep those out of reach
    by name, and carving would cost the project root its new files in fallback mode.
    """
    abi = landlock.abi_version()
    grants = grants_for_mode(plan.grants, mode)
    if plan.broker is None:
        return landlock_rules(grants, abi, carve_protected=mode == "fallback")
    write = grants.write
    read = grants.read
    if role == "target":
        persistent = set(plan.broker.persistent)
        write = tuple(path for path in grants.write if path not in persistent)
        read = (*grants.read, *plan.broker.persistent)
    split = FsGrants(read=read, write=write, deny=grants.deny, devices_rw=grants.devices_rw)
    return landlock_rules(split, abi, carve_protected=False)


def apply_landlock(
    plan: SandboxPlan, mode: str, rules: list[Rule] | None, proxy_port: int | None = None
) -> None:
    """File rules, scopes and, in fallback mode, TCP: no bind, connect to the proxy only.

    In namespace mode TCP needs no Landlock rule: the namespace has nothing but its
    own loopback.
    """
    abi = landlock.abi_version()
    if abi == 0:
        if plan.allow_degraded:
            return
        raise RuntimeError("Landlock is not available")  # the supervisor checked earlier
    handled_net = landlock.AccessNet(0)
    if mode == "fallback":
        handled_net = landlock.net_access_for_abi(abi)
    if rules is None:
        rules = landlock_rules_for(plan, mode)
    with landlock.Ruleset(
        abi=abi, handled_net=handled_net, scopes=landlock.scopes_for_abi(abi)
    ) as rs:
        for path, access in rules:
            rs.add_path(path, access)
        if handled_net and proxy_port is not None:
            rs.add_port(proxy_port, landlock.AccessNet.CONNECT_TCP)
        rs.restrict_self(no_new_privs=True)


def seccomp_options(plan: SandboxPlan, mode: str) -> SeccompOptions:
    """Socket families: namespaced code may use its own loopback; fallback code may not
    create AF_UNIX sockets (``socketpair`` still works), because Landlock before ABI 9
    cannot stop ``connect()`` to a pathname unix socket such as the session bus.

    Fallback with a network allowlist: TCP sockets only (no UDP, raw, packet, netlink,
    vsock, MPTCP), every ``connect()`` decided by the supervisor, and no TCP Fast Open
    (which connects from ``sendto``/``sendmsg``)."""
    writes = plan.broker is not None
    if mode == "namespace":
        families = frozenset({AF_UNIX, AF_INET, AF_INET6, AF_NETLINK})
        return SeccompOptions(
            socket_families=families, inet_stream_only=False, notify_writes=writes
        )
    # Fallback mode shares the host's kernel objects: what Landlock does not mediate
    # goes to the broker or is refused (sandbox/attr_broker.py).
    shared_host = {
        "supervise_metadata": True,
        "deny_host_ipc": True,
        "deny_listen": True,
        "notify_dgram_pairs": True,
        "own_tasks_only": True,
        "notify_writes": writes,
    }
    if plan.network.mode == "allowlist":
        return SeccompOptions(
            socket_families=frozenset({AF_INET, AF_INET6}),
            inet_stream_only=True,
            notify_connect=True,
            deny_fastopen=True,
            **shared_host,
        )
    return SeccompOptions(socket_families=frozenset(), inet_stream_only=True, **shared_host)


def exec_target(
    plan: SandboxPlan,
    mode: str,
    report_fd: int,
    rules: list[Rule] | None = None,
    net: ChildNetwork | None = None,
    broker_fd: int | None = None,
) -> NoReturn:
    """Last process before the program: lock everything down, then ``execve``.

    ``net`` is only ever set in fallback mode: the seccomp notification fd goes to the
    supervisor over ``net.channel_fd`` (see launcher/network.py) -- or, with a broker
    (``broker_fd``, a socket to the parent), to the broker, which then answers the
    ``connect()`` notifications too.
    """
    target = plan.target
    assert target is not None, "exec_target needs a resolved target"
    try:
        namespaces.set_pdeathsig(signal.SIGKILL)
        try:
            os.chdir(plan.cwd)
        except OSError as exc:
            fail(
                report_fd,
                EXIT_INTERNAL,
                f"the working directory {plan.cwd} is not visible in the sandbox "
                f"({exc.strerror}); add it to filesystem.read or run from the project",
            )
        # In a user namespace we hold every capability until exec; a root caller
        # keeps CAP_SYS_PTRACE, CAP_DAC_OVERRIDE ... in fallback mode too (and Landlock
        # lets a CAP_SYS_PTRACE holder read other processes' environ).  An ordinary
        # user in fallback mode has none to drop (and may not touch the bounding set);
        # no_new_privs already stops file capabilities from granting any at exec.
        if mode == "namespace" or os.geteuid() == 0:
            namespaces.drop_capabilities()
        keep = sorted(
            {
                report_fd,
                *((net.channel_fd,) if net is not None else ()),
                *((broker_fd,) if broker_fd is not None else ()),
            }
        )
        # No upper bound: a descriptor above 65535 (a raised RLIMIT_NOFILE) must not
        # leak in either.  CPython's closerange is close_range(2) here (Linux 5.9;
        # Landlock already needs 5.13), one system call however high the bound.
        low = 3
        for fd in keep:
            os.closerange(low, fd)
            low = fd + 1
        os.closerange(low, _MAX_FD)
        options = seccomp_options(plan, mode)
        apply_landlock(plan, mode, rules, net.port if net is not None else None)
        if plan.trace_syscalls:  # learn mode: the supervisor is already our tracer
            from safe_pip.sandbox.seccomp import build_trace_filter

            program = build_trace_filter(
                plan.trace_syscalls, fd_only_flags=dict(plan.trace_fd_only)
            )
            install_filter(program)
        if options.needs_listener and broker_fd is None:  # nobody would answer: calls hang
            raise RuntimeError("a supervised call without its broker")
        try:
            notify_fd = install_filter(build_filter(options), new_listener=options.needs_listener)
        except SandboxUnavailable as exc:
            if not options.needs_listener:
                raise
            raise SandboxUnavailable(
                "write grants and (without user namespaces) network allowlists need "
                f"seccomp user notification (Linux 5.9+), which failed here ({exc.message})"
            ) from exc
        if notify_fd is not None and broker_fd is not None:
            import _socket

            channel = _socket.socket(fileno=broker_fd)
            channel.sendmsg(
                [b"notify"], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, _int32(notify_fd))]
            )
            channel.close()
            os.close(notify_fd)
        if net is not None:
            os.close(net.channel_fd)
        for sig in (signal.SIGPIPE, signal.SIGXFSZ, *FORWARDED_SIGNALS):
            signal.signal(sig, signal.SIG_DFL)  # Python ignores SIGPIPE; exec keeps SIG_IGN
    except Exception as exc:
        fail(report_fd, EXIT_INTERNAL, f"sandbox setup failed: {exc}")
    try:
        os.execve(target.executable, list(target.argv), plan.env)
    except FileNotFoundError:
        fail(report_fd, EXIT_NOT_FOUND, f"not found inside the sandbox: {target.executable}")
    except PermissionError:
        fail(
            report_fd,
            EXIT_NOT_EXECUTABLE,
            f"cannot execute {target.executable} inside the sandbox; grant its directory "
            "with filesystem.read (or --allow-read)",
        )
    except OSError as exc:
        fail(report_fd, EXIT_NOT_EXECUTABLE, f"cannot execute {target.executable}: {exc}")
    sys.exit(EXIT_INTERNAL)  # unreachable: keeps type checkers honest
