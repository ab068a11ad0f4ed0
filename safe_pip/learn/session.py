"""``safe-run --learn``: one traced run, then what was refused and the table to paste.

The run itself is an ordinary sandboxed run under the current policy, with two
differences: the supervisor traces the program (safe_pip/learn/tracer.py), and a
policy without network gets the proxy anyway, allowing nothing, so that every host
the program asks for is named instead of failing anonymously.
"""

from __future__ import annotations

import os
import sys

from safe_pip._records import replace
from safe_pip.learn.proposal import Proposal, policy_spelling, propose
from safe_pip.policy.model import NetworkPolicy
from safe_pip.terminal import printable

TYPE_CHECKING = False
if TYPE_CHECKING:
    from safe_pip.launcher.plan import SandboxPlan
    from safe_pip.learn.findings import Denial
    from safe_pip.learn.pyproject_edit import PolicyAdditions
    from safe_pip.learn.tracer import Attempt
    from safe_pip.policy.model import Policy

_PREFIX = "safe-run: learn: "


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
    proposal = propose(denials, tracer.refused_hosts, home=home, project_dir=project_dir)
    if record is not None:
        looked_for = env_lookups.read_lookups(record)
        to_pass, secret = env_lookups.wanted_variables(looked_for, os.environ, sandbox_env)
        proposal = replace(proposal, env_pass=tuple(to_pass), env_kept=tuple(secret))
    return code, proposal


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
    for name in proposal.env_kept:
        lines.append(
            f"{_PREFIX}kept out: the environment variable {name} looks like a secret; not "
            f"proposed ({_credential_advice(name)})"
        )
    return lines


def _credential_advice(name: str) -> str:
    """Point at the built-in credential that uses ``name``, if one does."""
    from safe_pip.credentials.builtin import BUILTIN_CREDENTIALS

    for credential, table in BUILTIN_CREDENTIALS.items():
        if table.get("env") == name:
            return f'credentials = ["{credential}"] gives the program a stand-in for it'
    return "a [tool.safe-run.credentials] entry gives the program a stand-in for it"


def learn_run(plan: SandboxPlan, policy: Policy, *, verbose: bool, write: bool, home: str) -> int:
    """``safe-run --learn [--write]``: run, report, propose (and with ``write`` apply)."""
    project_dir = policy.project_dir
    code, proposal = learned_run(
        plan, verbose=verbose, home=home, project_dir=project_dir, watch_env=True
    )
    out = sys.stderr
    for line in report_lines(proposal, home=home, project_dir=project_dir):
        out.write(printable(line) + "\n")
    if proposal.is_empty():
        out.write(f"{_PREFIX}the sandbox refused nothing a policy should grant\n")
        return code
    # Only now: tomlkit takes about 35 ms to import, for runs that have something to say.
    from safe_pip.learn.pyproject_edit import merged_table, write_additions

    additions = additions_for(proposal, home=home, project_dir=project_dir)
    pyproject = policy.pyproject or os.path.join(project_dir, "pyproject.toml")
    try:
        with open(pyproject, encoding="utf-8") as handle:
            text = handle.read()
    except FileNotFoundError:
        text = ""
    if write:
        if not text:
            out.write(f"{_PREFIX}no {pyproject} to write to; paste the table below into one\n")
        else:
            for change in write_additions(pyproject, additions):
                out.write(printable(f"{_PREFIX}{os.path.basename(pyproject)}: {change}") + "\n")
            from safe_pip.cli.approve import approve_policy_of

            approval = approve_policy_of(os.path.dirname(pyproject))
            if approval is not None:
                line = f"{_PREFIX}approved the policy as written ({approval.summary()})"
                out.write(printable(line) + "\n")
            return code
    out.write(
        f"{_PREFIX}suggested policy for {pyproject} (it replaces the file's "
        "[tool.safe-run] tables; --write applies it and keeps your comments):\n\n"
    )
    out.write(printable(merged_table(text, additions), keep_newlines=True) + "\n")
    return code
