"""``safe-run --explain``: the effective policy as TOML plus the layers in force.

It prints the grants the launcher would really apply (policy paths *and* the ones the
launcher adds: interpreter, venv, private HOME/TMPDIR), so what you read is what the
child enforces.
"""

from __future__ import annotations

from safe_pip._records import replace
from safe_pip.launcher.plan import SandboxPlan
from safe_pip.policy.model import FilesystemPolicy, Policy
from safe_pip.policy.render import render_toml
from safe_pip.sandbox.probe import probe_layers


def explain(policy: Policy, plan: SandboxPlan) -> str:
    grants = plan.grants
    effective = replace(
        policy,
        filesystem=FilesystemPolicy(
            read=grants.read,
            write=grants.write,
            deny=grants.deny,
            protected=grants.protected,
        ),
    )
    userns = None
    if not plan.try_namespaces:
        userns = (False, "disabled by SAFE_PIP_NO_USERNS")
    mode, layers = probe_layers(userns=userns)
    layer_rows = [
        (layer.name, ("in force: " if layer.in_force else "NOT in force: ") + layer.detail)
        for layer in layers
    ]
    lines = [render_toml(effective, layers=layer_rows).rstrip("\n"), ""]
    lines += _approval_lines(policy)
    lines.append(f"# mode: {mode}")
    if policy.network.mode == "allowlist":
        how = (
            "own network namespace; the proxy's socket is the only way out"
            if mode == "namespace"
            else "host network; every connect() is checked by the supervisor and only "
            "the proxy is reachable (fallback)"
        )
        lines.append(f"# network: allowlist through the proxy at 127.0.0.1 ({how})")
        import os

        from safe_pip.proxy.upstream_proxy import UpstreamProxy

        upstream = UpstreamProxy.from_environment(os.environ)
        if isinstance(upstream, UpstreamProxy):
            lines.append(f"# network: allowed connections go through your proxy {upstream.where}")
        elif isinstance(upstream, str):
            lines.append(f"# network: {upstream}; connections are made directly")
    else:
        lines.append("# network: none")
    if plan.target is not None:
        lines.append(f"# target: {' '.join(plan.target.argv)}")
        lines.append(f"# executable: {plan.target.executable}")
    names = set(plan.env)
    if policy.network.mode == "allowlist":
        from safe_pip.launcher.network import proxy_environment

        names.update(proxy_environment(0))  # added by the supervisor at run time
    lines.append(f"# environment passed: {', '.join(sorted(names))}")
    return "\n".join(lines) + "\n"


def _approval_lines(policy: Policy) -> list[str]:
    """Whether the project's own table may run, and what changed since it was approved."""
    from safe_pip.cli.approve import details

    approval = policy.approval
    if approval is None:
        return ["# approval: not needed (the table grants nothing beyond the defaults)"]
    if approval.approved:
        return ["# approval: approved"]
    state = "new" if approval.state == "new" else "changed since the last approval"
    lines = [f"# approval: NOT approved ({state}); 'safe-run allow' approves it. It grants:"]
    return lines + ["#" + line for line in details(approval)]
