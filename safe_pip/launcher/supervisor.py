"""The supervising process: fork the sandbox, forward signals, reap, map exit codes.

The supervisor stays outside the sandbox for the whole run (the network proxy will
live here too).  It is a child subreaper, so in fallback mode — where there is no pid
namespace to take everything down with it — orphaned descendants come back to us and
are killed once the target has exited.
"""

from __future__ import annotations

import os

from safe_pip._records import field, mutable_record, replace
from safe_pip.errors import EXIT_INTERNAL, SafePipError
from safe_pip.launcher.child import (
    FORWARDED_SIGNALS,
    ChildNetwork,
    exit_code_from_status,
    landlock_rules_for,
    mount_plan,
    preload_broker,
    resume_gc,
    stage1,
)
from safe_pip.launcher.leftovers import children_of, kill_leftovers
from safe_pip.launcher.plan import SandboxPlan
from safe_pip.sandbox import namespaces
from safe_pip.sandbox.environment import scrub_own_environ_block
from safe_pip.sandbox.mounts import MountError, PreparedRoot, prepare_root

TYPE_CHECKING = False
if TYPE_CHECKING:
    from safe_pip.launcher.network import NetworkSetup
    from safe_pip.learn.tracer import Tracer
# ``_signal`` is the C core of ``signal``; the Python wrapper imports ``enum`` (about
# 7 ms here) just to turn numbers into ``Signals`` members we never need.
if TYPE_CHECKING:
    import signal
else:
    import _signal as signal


FALLBACK_NETWORK_WARNING = (
    "safe-run: warning: no user namespaces here, so the network allowlist runs in "
    "fallback mode: the sandbox shares the host's network stack (it can see local "
    "interfaces; unix sockets are refused) and safe-run checks each connect(); "
    "see docs/network.md\n"
)


@mutable_record
class RunReport:
    """What the children told us while setting up."""

    mode: str = "unknown"
    mode_detail: str = ""
    init_pid: int | None = None
    error: tuple[int, str] | None = None
    lines: list[str] = field(default_factory=list)

    def absorb(self, line: str) -> None:
        word, _, rest = line.partition(" ")
        if word == "mode":
            self.mode, _, self.mode_detail = rest.partition(" ")
        elif word == "init":
            self.init_pid = int(rest)
        elif word == "error":
            code, _, message = rest.partition(" ")
            self.error = (int(code), message)
        self.lines.append(line)


def _read_reports(fd: int, report: RunReport) -> None:
    """Read until every writer has exec'd or exited (the pipe is close-on-exec)."""
    buffer = b""
    while True:
        try:
            chunk = os.read(fd, 4096)
        except InterruptedError:  # pragma: no cover - PEP 475 retries for us
            continue
        if not chunk:
            break
        buffer += chunk
        while b"\n" in buffer:
            line, buffer = buffer.split(b"\n", 1)
            report.absorb(line.decode("utf-8", "replace"))
    os.close(fd)


def _prepared_root(plan: SandboxPlan) -> PreparedRoot:
    """The private root's host-side preparation; a grant that cannot be looked up (a
    symlink loop, a name too long) is the user's to fix: one line, exit 125."""
    try:
        return prepare_root(mount_plan(plan))
    except MountError as exc:
        import errno

        why = {errno.ELOOP: "a symlink loop", errno.ENAMETOOLONG: "a name too long"}.get(
            exc.errno or 0, exc.strerror or "an error"
        )
        raise SafePipError(
            f"cannot set up the sandbox: a granted path could not be looked up ({why}): "
            f"{exc.strerror or exc}"
        ) from None


def _kill_children() -> None:
    """SIGKILL every direct child; the learn-mode tracer reaps them."""
    for pid in children_of(os.getpid()):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _start_or_abandon_network(
    network: NetworkSetup, report: RunReport, *, warn_fallback: bool = True
) -> None:
    """Once the children have set up: start the proxy, or close it if setup failed."""
    if report.error is None and report.mode == "fallback" and warn_fallback:
        os.write(2, FALLBACK_NETWORK_WARNING.encode())
    if report.error is None:
        import _thread

        from safe_pip.launcher.network import start_network

        # In a thread: importing the proxy takes longer than a short program runs,
        # and the exit must not wait for it.  Connections wait in the listen backlog
        # (and connect() notifications in the kernel) meanwhile.
        _thread.start_new_thread(start_network, (network, report.mode))
    else:
        from safe_pip.launcher.network import abandon_network

        abandon_network(network)


def run_sandboxed(
    plan: SandboxPlan,
    *,
    verbose: bool = False,
    tracer: Tracer | None = None,
    failure_hint: bool = False,
) -> int:
    """Run the plan's target in the sandbox; return safe-run's exit code.

    With a network allowlist this process is the sandbox's proxy: its sockets are made
    here before the fork, the proxy variables join the plan's environment, the proxy
    starts once the children have finished setting up (see launcher/network.py), and
    the refused destinations (and with ``verbose`` the allowed ones) are reported at
    the end.

    ``failure_hint``: when the program fails, add one line saying whether the sandbox
    refused it anything and pointing at ``--learn`` (``safe-run``'s ordinary runs).

    With a ``tracer`` (learn mode) the main thread traces the sandbox instead of
    waiting for it, and the set-up reports are read in a helper thread: a traced
    child stops at every fork and cannot finish setting up until the tracer runs.
    """
    network: NetworkSetup | None = None
    if plan.network.mode == "allowlist":
        from safe_pip.launcher.network import prepare_network, proxy_environment

        network = prepare_network(plan.network, os.environ)
        extra_env = proxy_environment(network.port)
        if plan.credentials:
            from safe_pip.launcher.credentials import prepare_credentials

            cred_env, network.credentials = prepare_credentials(
                plan.credentials, network.port, plan.private_dir, os.environ
            )
            extra_env.update(cred_env)
        plan = replace(plan, env={**plan.env, **extra_env})
    # Host lookups happen here, before forking: the same work in a fresh fork pays a
    # copy-on-write fault on every page it touches.
    root = _prepared_root(plan) if plan.try_namespaces else None
    ns_rules = landlock_rules_for(plan, "namespace") if root is not None else None
    ns_broker_rules = None
    events_read = events_write = -1
    if plan.broker is not None:
        # Before the fork: in the private root safe-pip's own files may not exist.
        preload_broker()
        if root is not None:
            ns_broker_rules = landlock_rules_for(plan, "namespace", role="broker")
        # The broker's refusals; the program never holds this pipe (it is not
        # close-on-exec only so that it survives into pid 1 through stage 1).
        events_read, events_write = os.pipe2(os.O_CLOEXEC)
    events: list[str] = []
    events_done = None
    scrub_own_environ_block()  # init, inside the sandbox, is a fork of this process
    namespaces.set_child_subreaper()
    read_fd, write_fd = os.pipe2(os.O_CLOEXEC)
    report = RunReport()
    forward_to: list[int] = []
    signalled: list[int] = []  # what was forwarded: a setup it cut short was stopped

    def forward(signum: int, _frame: object) -> None:
        if signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
            signalled.append(signum)
        for pid in forward_to[-1:]:
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass

    previous = {sig: signal.signal(sig, forward) for sig in FORWARDED_SIGNALS}
    try:
        child_net = None
        if network is not None:
            child_net = ChildNetwork(
                port=network.port,
                channel_fd=network.child_channel.fileno(),
                host_listener_fd=network.host_listener.fileno(),
            )
        go_read, go_write = os.pipe2(os.O_CLOEXEC) if tracer is not None else (-1, -1)
        child = os.fork()
        if child == 0:
            os.close(read_fd)
            extra = (events_write if events_write >= 0 else None, ns_broker_rules)
            if events_read >= 0:
                os.close(events_read)
            if tracer is None:
                stage1(plan, write_fd, root, ns_rules, child_net, None, *extra)
            os.close(go_write)
            stage1(plan, write_fd, root, ns_rules, child_net, go_read, *extra)
        resume_gc()  # start-up is over; the proxy and learn mode's tracer run for long
        os.close(write_fd)
        if events_write >= 0:
            os.close(events_write)
            events_done = _thread_read_lines(events_read, events)
        forward_to.append(child)

        def finish_setup() -> None:
            _read_reports(read_fd, report)
            if report.init_pid is not None:
                forward_to.append(report.init_pid)
            if network is not None:
                _start_or_abandon_network(network, report, warn_fallback=not plan.fallback_chosen)

        if tracer is None:
            finish_setup()
            while True:
                pid, status = os.waitpid(child, 0)
                if pid == child:
                    break
        else:
            import _thread

            os.close(go_read)
            try:
                tracer.attach(child)
            except OSError as exc:
                os.kill(child, signal.SIGKILL)  # it must not run with nobody tracing it
                raise SafePipError(
                    f"learn mode cannot trace the sandbox ({exc.strerror or exc})",
                    EXIT_INTERNAL,
                ) from None
            os.write(go_write, b"g")
            os.close(go_write)
            setup_done = _thread.allocate_lock()
            setup_done.acquire()

            def finish_setup_then_release() -> None:
                try:
                    finish_setup()
                finally:
                    setup_done.release()

            _thread.start_new_thread(finish_setup_then_release, ())
            status = tracer.run(child, _kill_children)
            setup_done.acquire()
        code = exit_code_from_status(status)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        kill_leftovers()
    if signalled and (report.error is not None or report.mode == "unknown"):
        # SIGINT/SIGTERM/SIGHUP while the sandbox was being set up: stopped, as the
        # program would have been (128 + the signal), not "could not start".
        return 128 + signalled[0]
    if report.error is not None:
        raise SafePipError(report.error[1], report.error[0])
    if report.mode == "unknown":
        raise SafePipError("the sandbox did not start", EXIT_INTERNAL)
    if events_done is not None:  # every writer is gone (kill_leftovers): it ends soon
        events_done.acquire(True, 10)  # type: ignore[attr-defined]
    if tracer is not None:
        tracer.broker_lines = list(events)
    refused_writes = _broker_report(events, network)
    if network is not None:
        from safe_pip.launcher.network import print_network_report

        print_network_report(network, verbose)
        if tracer is not None and network.log is not None:
            tracer.refused_hosts = network.log.refused_hints()
    if failure_hint and code != 0:
        refused = network.log.refused_count() if network and network.log else 0
        _print_failure_hint(
            code, refused, no_network=plan.network.mode == "none", refused_writes=refused_writes
        )
    return code


def bytecode_noise(text: str) -> bool:
    """Python writing its bytecode cache where it may not (a read-only venv): it
    ignores the failure itself, and listing it would drown what matters."""
    return "/__pycache__" in text or text.endswith((".pyc", ".pyo"))


def _thread_read_lines(fd: int, into: list[str]) -> object:
    """Read ``fd`` to its end in a daemon thread, one decoded line per entry; returns a
    lock that is released once everything is read (every writer has exited)."""
    import _thread

    done = _thread.allocate_lock()
    done.acquire()

    def pump() -> None:
        buffer = b""
        try:
            while chunk := os.read(fd, 65536):
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                into.extend(line.decode("utf-8", "replace") for line in lines)
        except OSError:
            pass
        finally:
            os.close(fd)
            done.release()

    _thread.start_new_thread(pump, ())
    return done


_SHOWN_REFUSALS = 10


def _broker_report(events: list[str], network: NetworkSetup | None) -> int:
    """Print what the filesystem broker refused (and hand fallback mode's refused
    connections to the network report); returns the number of refused writes."""
    refused = []
    for line in list(events):
        word, _, rest = line.partition(" ")
        if word == "refused":
            if not bytecode_noise(rest.partition(": ")[0]):
                refused.append(rest)
        elif word == "failed":
            os.write(
                2,
                f"safe-run: the file broker stopped ({rest}); the program's writes to its "
                "write grants failed from then on\n".encode("utf-8", "replace"),
            )
        elif word == "connect" and network is not None and network.log is not None:
            address, _, port = rest.rpartition(" ")
            # No rule hint: no rule opens a direct connection; clients must use the proxy.
            network.log.record(
                address, int(port), allowed=False, reason="", hint=None, via="direct"
            )
    if not refused:
        return 0
    from safe_pip.terminal import printable

    distinct = list(dict.fromkeys(refused))
    out = ["safe-run: kept out of paths that run or configure things later (see docs/sandbox.md):"]
    out += [f"  {printable(item)}" for item in distinct[:_SHOWN_REFUSALS]]
    if len(distinct) > _SHOWN_REFUSALS:
        out.append(f"  ... and {len(distinct) - _SHOWN_REFUSALS} more")
    os.write(2, ("\n".join(out) + "\n").encode("utf-8", "replace"))
    return len(refused)


def _print_failure_hint(
    code: int, refused_connections: int, *, no_network: bool, refused_writes: int = 0
) -> None:
    """One line after a failed run: what the sandbox refused, and where to look next.

    Refused hosts are known exactly (the proxy saw them, and its lines above name the
    key to add).  Refused files are not: the kernel reports Landlock denials only
    through the audit log, which is off on most machines and closed to ordinary
    users, and tracing every run would cost every run.  So the file half of the hint
    is a pointer to ``--learn`` and is shown only to a person at a terminal.
    """
    if refused_writes and not refused_connections:
        os.write(
            2,
            f"safe-run: the program exited with status {code} after the sandbox kept it "
            "out of the paths listed above; no policy opens them\n".encode(),
        )
    elif refused_connections:
        what = "connection" if refused_connections == 1 else "connections"
        os.write(
            2,
            f"safe-run: the program exited with status {code} after the sandbox refused "
            f"{refused_connections} network {what} (listed above); run it again with "
            "--learn to list every path and host it was refused, with the policy that "
            "allows them\n".encode(),
        )
    elif os.isatty(2):
        needs = "a path the sandbox hides" + (" or the network" if no_network else "")
        os.write(
            2,
            f"safe-run: the program exited with status {code}; if it needed {needs}, "
            "run it again with --learn to see what was refused and the policy that "
            "allows it\n".encode(),
        )
