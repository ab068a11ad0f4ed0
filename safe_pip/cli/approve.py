"""``safe-run allow`` and the approval gate: project configuration runs only once approved.

The gate (:func:`require_approval`) stands between loading a policy and running
anything: an approved file passes silently; otherwise, at a terminal, the user sees
what the file would grant (or what changed since the last approval) and is asked;
anywhere else the command stops with exit 125 and one line naming the grants and the
two commands that help (``safe-run --explain`` to read the policy, ``safe-run allow``
to approve it).  ``safe-run allow`` approves without asking, for scripts and CI.

What is approved and where it is kept: :mod:`safe_pip.policy.trust`.
"""

from __future__ import annotations

import os
import sys

from safe_pip.errors import EXIT_INTERNAL, SafePipError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

    from safe_pip.policy.trust import Approval

USAGE = """\
usage: safe-run allow [--project DIR]

Approve the configuration of the project here (or in DIR): its [tool.safe-run]
policy, and for safe-pip the package indexes its uv.toml or [tool.uv] names and the
build hosts of its [tool.safe-pip].  Until
approved, a policy that grants more than the defaults does not run, and safe-pip does
not use a project's own index settings; a changed file needs approving again.
"""

_WHAT = {
    "policy": "[tool.safe-run] policy",
    "install": "package index settings",
    "install-hosts": "[tool.safe-pip] build hosts",
}
_NEXT_STEP = {
    "policy": "review it with 'safe-run --explain', then approve it with 'safe-run allow'",
    "install": "if you trust it, approve it with 'safe-run allow' in the project",
    "install-hosts": "if you trust it, approve it with 'safe-run allow' in the project",
}


def _one_line(text: str) -> str:
    from safe_pip.policy.render import _comment

    return _comment(text)


def _state_words(approval: Approval) -> str:
    plural = approval.kind in ("install", "install-hosts")  # "settings are"
    if approval.state == "new":
        return "are not approved yet" if plural else "is not approved yet"
    return "changed since you approved them" if plural else "changed since you approved it"


def refusal(approval: Approval) -> str:
    """The one line of a refused run: what the file would grant and what to do."""
    what = _WHAT.get(approval.kind, approval.kind)
    return (
        f"the {what} in {_one_line(approval.source)} {_state_words(approval)}; it would "
        f"grant {_one_line(approval.summary())}; {_NEXT_STEP.get(approval.kind, '')}"
    )


def details(approval: Approval) -> list[str]:
    """The grants, then (for a changed file) the lines that changed."""
    lines = [f"  {_one_line(grant)}" for grant in approval.grants]
    changes = approval.changes()
    if changes:
        lines.append("  changed since the last approval:")
        lines += [f"    {_one_line(change)}" for change in changes]
    return lines


def require_approval(
    approval: Approval | None, *, home: str, variables: Mapping[str, str], program: str
) -> None:
    """Return when ``approval`` is None, approved, or approved now at the prompt.

    Raises :class:`SafePipError` (exit 125) otherwise.  The prompt appears only when
    stdin and stderr are both terminals: a script never blocks on a question.
    """
    if approval is None or approval.approved:
        return
    if not (_isatty(0) and _isatty(2)):
        raise SafePipError(refusal(approval), EXIT_INTERNAL)
    what = _WHAT.get(approval.kind, approval.kind)
    out = [
        f"{program}: the {what} in {_one_line(approval.source)} {_state_words(approval)}.",
        "It grants:",
        *details(approval),
    ]
    sys.stderr.write("\n".join(out) + "\nApprove it? [y/N] ")
    sys.stderr.flush()
    answer = sys.stdin.readline().strip().lower()
    if answer not in ("y", "yes"):
        raise SafePipError(f"not approved; nothing was run ({_NEXT_STEP[approval.kind]})")
    store_approval(approval, home=home, variables=variables)


def store_approval(approval: Approval, *, home: str, variables: Mapping[str, str]) -> None:
    from safe_pip.policy.trust import ApprovalStore

    try:
        ApprovalStore(home, variables).approve(approval)
    except OSError as exc:
        raise SafePipError(f"cannot record the approval: {exc}") from None


def _isatty(fd: int) -> bool:
    try:
        return os.isatty(fd)
    except OSError:
        return False


def main_allow(args: list[str]) -> int:
    """``safe-run allow [--project DIR]``: approve the project's configuration as it is."""
    project: str | None = None
    i = 0
    while i < len(args):
        arg = args[i]
        if arg in ("-h", "--help"):
            sys.stdout.write(USAGE)
            return 0
        name, eq, value = arg.partition("=")
        if name == "--project":
            if not eq:
                if i + 1 >= len(args):
                    raise SafePipError("--project needs a value", 2)
                i += 1
                value = args[i]
            if not value:
                raise SafePipError("--project needs a value", 2)
            project = value
        else:
            sys.stderr.write(USAGE)
            return 2
        i += 1
    return allow_project(project)


def approve_policy_of(project_dir: str) -> Approval | None:
    """Approve the ``[tool.safe-run]`` table of ``project_dir`` as it is now.

    For ``safe-run --learn --write``: the user asked for exactly this content to be
    written, so it runs next time without a second question.
    """
    from safe_pip.cli.run import caller_home
    from safe_pip.policy.loader import CliOverrides, load_policy

    home = caller_home()
    variables = dict(os.environ)
    policy = load_policy(
        cwd=project_dir,
        project=project_dir,
        overrides=CliOverrides(),
        variables=variables,
        home=home,
    )
    if policy.approval is not None and not policy.approval.approved:
        store_approval(policy.approval, home=home, variables=variables)
    return policy.approval


def allow_project(project: str | None) -> int:
    """Approve the policy and the index settings of the project at ``project`` or here."""
    from safe_pip.cli.run import caller_home
    from safe_pip.installer.indexes import project_index_approval
    from safe_pip.installer.settings import project_hosts
    from safe_pip.policy.loader import CliOverrides, load_policy

    home = caller_home()
    variables = dict(os.environ)
    policy = load_policy(
        cwd=os.getcwd(), project=project, overrides=CliOverrides(), variables=variables, home=home
    )
    found = [
        policy.approval,
        project_index_approval(policy.project_dir, home, variables),
        project_hosts(policy.project_dir, home, variables)[1],
    ]
    approvals = [approval for approval in found if approval is not None]
    if not approvals:
        where = policy.pyproject or os.path.join(policy.project_dir, "pyproject.toml")
        print(
            f"safe-run: nothing to approve: {_one_line(where)} grants nothing beyond the "
            "defaults and names no package index"
        )
        return 0
    for approval in approvals:
        what = _WHAT.get(approval.kind, approval.kind)
        if approval.approved:
            print(f"safe-run: the {what} in {_one_line(approval.source)} is already approved")
            continue
        store_approval(approval, home=home, variables=variables)
        print(f"safe-run: approved the {what} in {_one_line(approval.source)}:")
        for line in details(approval):
            print(line)
    return 0
