"""``safe-run --learn``: traced runs, until the program needs nothing more; then what
was refused and the table to paste (or, with ``--write``, to write).

Each run is an ordinary sandboxed run under the current policy, with two
differences: the supervisor traces the program (safe_pip/learn/tracer.py), and a
policy without network gets the proxy anyway, allowing nothing, so that every host
the program asks for is named instead of failing anonymously.  A program usually
fails at its first refusal, so one run shows only the first of what it needs: learn
runs it again with everything proposed so far granted, up to :data:`MAX_ROUNDS`
times, until a run adds nothing new.
"""

from __future__ import annotations

import os
import sys

from safe_pip._records import replace
from safe_pip.learn.proposal import Limits, Proposal, policy_spelling, propose
from safe_pip.policy.model import NetworkPolicy
from safe_pip.terminal import printable, reset_attributes

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from safe_pip.launcher.plan import SandboxPlan
    from safe_pip.learn.findings import Denial
    from safe_pip.learn.pyproject_edit import PolicyAdditions
    from safe_pip.learn.tracer import Attempt
    from safe_pip.policy.model import Policy

_PREFIX = "safe-run: learn: "
#: Runs at most, the first included: each adds what the previous one's refusals asked for.
MAX_ROUNDS = 5
#: Exit codes of a run stopped from outside (SIGHUP, SIGINT, SIGTERM): no next run.
_STOPPED = (128 + 1, 128 + 2, 128 + 15)


def learned_run(
    plan: SandboxPlan, *, verbose: bool, home: str, project_dir: str, watch_env: bool = False
) -> tuple[int, Proposal]:
    """Run ``plan`` traced; return the program's exit code and the proposal.

    ``watch_env``: also record the environment variables a Python program looked
    for (safe_pip/learn/env_lookups.py); only ``safe-run`` can act on them.
    """
    from safe_pip.launcher.supervisor import run_sandboxed
    from safe_pip.learn.findings import judge
    from safe_pip.learn.foresight import Foresight
    from safe_pip.learn.syscalls import fd_only_flags, traced_calls
    from safe_pip.learn.tracer import Tracer

    try:
        calls = traced_calls(os.uname().machine)
    except KeyError:
        from safe_pip.errors import SafePipError

        raise SafePipError(
            f"learn mode does not know the system calls of {os.uname().machine} yet"
        ) from None
    tracer = Tracer(calls, Foresight(plan.grants, plan.private_dir))
    plan = replace(
        plan,
        trace_syscalls=tuple(sorted(calls)),
        trace_fd_only=tuple(sorted(fd_only_flags(calls).items())),
    )
    if plan.network.mode == "none":
        plan = replace(plan, network=NetworkPolicy("allowlist", ()))
    sandbox_env = plan.env
    record = None
    if watch_env:
        from safe_pip.learn import env_lookups

        hook_dir, record = env_lookups.install_hook(os.path.join(plan.private_dir, "tmp"))
        plan = replace(plan, env=env_lookups.with_hook(plan.env, hook_dir))
    code = run_sandboxed(plan, verbose=verbose, tracer=tracer)
    attempts, kept = broker_findings(tracer.broker_lines)
    attempts += list(tracer.attempts.values())
    denials = judge(attempts, plan.grants, private_dir=plan.private_dir) + kept
    limits = Limits(
        home=home,
        project_dir=project_dir,
        deny=plan.grants.deny,
        path_dirs=tuple(d for d in os.environ.get("PATH", "").split(":") if d.startswith("/")),
    )
    hosts = with_internal_addresses(tracer.refused_hosts)
    proposal = propose(denials, hosts, home=home, project_dir=project_dir, limits=limits)
    if record is not None:
        looked_for = env_lookups.read_lookups(record)
        to_pass, secret = env_lookups.wanted_variables(looked_for, os.environ, sandbox_env)
        proposal = replace(proposal, env_pass=tuple(to_pass), env_kept=tuple(secret))
    return code, proposal


def with_internal_addresses(
    hints: Iterable[str], resolver: Callable[[str, int], list[tuple[int, str]]] | None = None
) -> list[str]:
    """Host patterns, each name followed by the internal addresses it resolves to
    that the name alone does not open.

    A name listed exactly may lead to a site-range address (a gateway, a private
    index; see safe_pip.proxy.rules), but never to loopback or link-local: those need
    the address as an IP rule too.  Proposing both at once saves a round, and the
    report shows the address for what it is.
    """
    from safe_pip.proxy.addresses import (
        canonical_ip,
        is_internal,
        is_site_address,
        join_host_port,
        resolve,
    )
    from safe_pip.proxy.rules import DEFAULT_PORTS, HostRule

    out: list[str] = []
    for hint in hints:
        out.append(hint)
        try:
            rule = HostRule.parse(hint)
        except ValueError:
            continue
        if rule.is_ip or rule.wildcard or rule.host == "localhost":
            continue  # the proxy lets a localhost rule reach loopback by itself
        for port in rule.ports[:1]:
            try:
                addresses = (resolver or resolve)(rule.host, port)
            except (OSError, UnicodeError):
                continue
            for _family, ip in addresses:
                address = canonical_ip(ip) or ip
                if is_internal(address) and not is_site_address(address):
                    pattern = address if port in DEFAULT_PORTS else join_host_port(address, port)
                    out.append(pattern)
    return list(dict.fromkeys(out))


def broker_findings(lines: list[str]) -> tuple[list[Attempt], list[Denial]]:
    """The filesystem broker's report as the tracer's attempts (writes it left to the
    kernel outside every write grant) and kept denials (what its rules refused)."""
    from safe_pip.launcher.supervisor import bytecode_noise
    from safe_pip.learn.findings import Denial
    from safe_pip.learn.tracer import Attempt

    attempts, kept = [], []
    for line in lines:
        word, _, rest = line.partition(" ")
        if word == "outside":
            access, call, path = [*rest.split(" ", 2), "", ""][:3]
            if path.startswith("/"):
                attempts.append(Attempt(path, access, 13, call))
        elif word == "refused":
            op_path, _, reason = rest.partition(": ")
            _op, _, path = op_path.partition(" ")
            if path.startswith("/") and not bytecode_noise(path):
                kept.append(Denial(path, "write", path, "write", reason, "files that run later"))
    return attempts, kept


def additions_for(proposal: Proposal, *, home: str, project_dir: str) -> PolicyAdditions:
    """The proposal in the spelling a pyproject next to ``project_dir`` would use."""
    from safe_pip.learn.pyproject_edit import PolicyAdditions

    def spell(paths: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(policy_spelling(p, home=home, project_dir=project_dir) for p in paths)

    return PolicyAdditions(
        read=spell(proposal.read),
        write=spell(proposal.write),
        hosts=proposal.hosts,
        env_pass=proposal.env_pass,
    )


def report_lines(proposal: Proposal, *, home: str, project_dir: str) -> list[str]:
    """What was refused, one line per proposed entry, then what stays denied."""
    lines: list[str] = []

    def spell(path: str) -> str:
        return policy_spelling(path, home=home, project_dir=project_dir)

    for path in proposal.read:
        lines.append(f"{_PREFIX}needs read access to {spell(path)}")
    for path in proposal.write:
        lines.append(f"{_PREFIX}needs write access to {spell(path)}")
    for host in proposal.hosts:
        lines.append(f"{_PREFIX}needs the network host {host}")
    for name in proposal.env_pass:
        lines.append(
            f"{_PREFIX}looked for the environment variable {name}, which you have and the "
            "sandbox does not pass"
        )
    for path, why, entry in proposal.kept:
        lines.append(f"{_PREFIX}kept denied: {spell(path)} ({why}: {spell(entry)}); not proposed")
    for kind, path, why in proposal.refused:
        lines.append(f"{_PREFIX}not proposed: {kind} access to {spell(path)}: {why}")
    for name in proposal.env_kept:
        lines.append(
            f"{_PREFIX}kept out: the environment variable {name} looks like a secret; not "
            f"proposed: use credentials instead ({_credential_advice(name)})"
        )
    return lines


def _credential_advice(name: str) -> str:
    """Point at the built-in credential that uses ``name``, if one does."""
    from safe_pip.credentials.builtin import BUILTIN_CREDENTIALS

    for credential, table in BUILTIN_CREDENTIALS.items():
        if table.get("env") == name:
            return f'credentials = ["{credential}"] gives the program a stand-in for it'
    return "a [tool.safe-run.credentials] entry gives the program a stand-in for it"


def learn_run(
    plan: SandboxPlan,
    policy: Policy,
    *,
    verbose: bool,
    write: bool,
    home: str,
    rebuild: Callable[[Policy], SandboxPlan] | None = None,
    yes: bool = False,
) -> int:
    """``safe-run --learn [--write]``: run until nothing new is needed, report, propose
    (and with ``write`` apply, after asking at a terminal or with ``yes``).

    ``rebuild`` makes the plan for a policy with the additions so far; without it
    there is one round.  Returns the last run's exit code: the program's, under
    everything learned.
    """
    project_dir = policy.project_dir
    out = sys.stderr
    total = Proposal()
    code = 0
    for round_number in range(1, MAX_ROUNDS + 1):
        code, proposal = learned_run(
            plan, verbose=verbose, home=home, project_dir=project_dir, watch_env=True
        )
        new = proposal.new_in(total)
        total = total.merged(proposal)
        if new.is_empty() or rebuild is None or code in _STOPPED:
            break  # nothing more to learn, or the user stopped it (Ctrl-C, kill)
        if round_number == MAX_ROUNDS:
            reset_attributes(2)
            out.write(
                f"{_PREFIX}stopped after {MAX_ROUNDS} runs; the program may need more "
                "(run --learn again once this is applied)\n"
            )
            break
        reset_attributes(2)
        for line in _round_lines(new, home=home, project_dir=project_dir, number=round_number):
            out.write(printable(line) + "\n")
        policy = with_additions(policy, new)
        plan = rebuild(policy)
    reset_attributes(2)  # whatever the program left on the terminal (ESC[8m ...) ends here
    for line in report_lines(total, home=home, project_dir=project_dir):
        out.write(printable(line) + "\n")
    if total.is_empty():
        out.write(f"{_PREFIX}the sandbox refused nothing a policy should grant\n")
        return code
    return _propose_or_write(total, policy, home=home, write=write, yes=yes) or code


def _round_lines(new: Proposal, *, home: str, project_dir: str, number: int) -> list[str]:
    """What one round adds, said before the program runs again with it."""

    def spell(path: str) -> str:
        return policy_spelling(path, home=home, project_dir=project_dir)

    parts = [f"read {spell(p)}" for p in new.read]
    parts += [f"write {spell(p)}" for p in new.write]
    parts += [f"host {h}" for h in new.hosts]
    parts += [f"env {n}" for n in new.env_pass]
    return [f"{_PREFIX}run {number} asked for {', '.join(parts)}; running again with it"]


def with_additions(policy: Policy, additions: Proposal) -> Policy:
    """``policy`` with the proposal's grants added (absolute paths, host patterns)."""
    from safe_pip.policy.model import EnvPolicy, FilesystemPolicy

    fs = policy.filesystem
    filesystem: FilesystemPolicy = replace(
        fs,
        read=tuple(dict.fromkeys([*fs.read, *additions.read])),
        write=tuple(dict.fromkeys([*fs.write, *additions.write])),
    )
    network = policy.network
    if additions.hosts:
        network = NetworkPolicy(
            "allowlist", tuple(dict.fromkeys([*network.allow, *additions.hosts]))
        )
    env: EnvPolicy = replace(
        policy.env, pass_names=tuple(dict.fromkeys([*policy.env.pass_names, *additions.env_pass]))
    )
    return replace(policy, filesystem=filesystem, network=network, env=env)


def _propose_or_write(
    total: Proposal, policy: Policy, *, home: str, write: bool, yes: bool
) -> int | None:
    """Print the table to paste, or write it (shown as a diff and confirmed first).
    Returns an exit code that must win over the program's, or None."""
    # Only now: tomlkit takes about 35 ms to import, for runs that have something to say.
    from safe_pip.learn.pyproject_edit import apply_additions, merged_table, write_additions

    out = sys.stderr
    project_dir = policy.project_dir
    additions = additions_for(total, home=home, project_dir=project_dir)
    pyproject = policy.pyproject or os.path.join(project_dir, "pyproject.toml")
    try:
        with open(pyproject, encoding="utf-8") as handle:
            text = handle.read()
    except FileNotFoundError:
        text = ""
    if write and not text:
        out.write(f"{_PREFIX}no {pyproject} to write to; paste the table below into one\n")
    elif write:
        new_text, _changes = apply_additions(text, additions)
        if not _confirmed(text, new_text, pyproject, yes=yes):
            return None
        for change in write_additions(pyproject, additions):
            out.write(printable(f"{_PREFIX}{os.path.basename(pyproject)}: {change}") + "\n")
        from safe_pip.cli.approve import approve_policy_of

        approval = approve_policy_of(os.path.dirname(pyproject))
        if approval is not None:
            line = f"{_PREFIX}approved the policy as written ({approval.summary()})"
            out.write(printable(line) + "\n")
        return None
    out.write(
        f"{_PREFIX}suggested policy for {pyproject} (it replaces the file's "
        "[tool.safe-run] tables; --write applies it and keeps your comments):\n\n"
    )
    out.write(printable(merged_table(text, additions), keep_newlines=True) + "\n")
    return None


def _confirmed(old: str, new: str, pyproject: str, *, yes: bool) -> bool:
    """Show what ``--write`` changes; at a terminal ask, elsewhere require ``--yes``."""
    import difflib

    out = sys.stderr
    name = os.path.basename(pyproject)
    diff = difflib.unified_diff(
        old.splitlines(keepends=True), new.splitlines(keepends=True), name, name + " (new)"
    )
    out.write(f"{_PREFIX}--write changes {pyproject}:\n")
    out.write(printable("".join(diff), keep_newlines=True))
    if yes:
        return True
    if not (os.isatty(0) and os.isatty(2)):
        out.write(f"{_PREFIX}not written: without a terminal to ask at, --write needs --yes\n")
        return False
    reset_attributes(2)
    out.write(f"{_PREFIX}write these changes? [y/N] ")
    out.flush()
    try:
        answer = input()
    except EOFError:
        answer = ""
    if answer.strip().lower() in ("y", "yes"):
        return True
    out.write(f"{_PREFIX}not written\n")
    return False
