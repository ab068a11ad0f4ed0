"""Run one uv command inside the build sandbox, with a policy made from code only.

Every install phase that runs uv goes through here, so they share one definition of
"the build sandbox": the base profile (system paths, the secrets deny list) plus the
interpreter, the uv binary and the paths the phase names; a private uv cache and the
private HOME/TMPDIR; the index hosts through the proxy and nothing else; an
environment with nothing of the caller's but locale and terminal settings.  No
pyproject or uv.toml is consulted (``UV_NO_CONFIG``): a file in the working tree must
not be able to widen what a build may do.
"""

from __future__ import annotations

import os

from safe_pip._records import replace
from safe_pip.installer.built_wheels import SUBDIR as BUILT_WHEELS
from safe_pip.installer.indexes import allowed_hosts
from safe_pip.installer.uv_binary import find_uv
from safe_pip.policy.model import EnvPolicy, FilesystemPolicy

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from safe_pip.credentials.phantom import ArmedCredential
    from safe_pip.launcher.plan import SandboxPlan


#: Exit codes of a sandbox whose program died of SIGINT or SIGTERM (128 + N).
INTERRUPTED = (130, 143)


def index_arguments(index_urls: Sequence[str]) -> list[str]:
    """uv's flags for the default index and the extra ones, in order."""
    argv = ["--default-index", index_urls[0]]
    for url in index_urls[1:]:
        argv += ["--index", url]
    return argv


def run_uv_sandboxed(
    uv_args: Sequence[str],
    *,
    python: str,
    private_dir: str,
    reads: Sequence[str] = (),
    writes: Sequence[str] = (),
    index_urls: Sequence[str],
    extra_hosts: Sequence[str] = (),
    allow_degraded: bool = False,
    shared_cache: str | None = None,
    output: str | None = None,
    extra_env: Mapping[str, str] | None = None,
    credentials: Sequence[ArmedCredential] = (),
    mount_namespace: bool = True,
) -> int:
    """Run ``uv UV_ARGS`` sandboxed; see :func:`run_in_build_sandbox`."""
    return run_in_build_sandbox(
        [find_uv(), *uv_args],
        python=python,
        private_dir=private_dir,
        reads=reads,
        writes=writes,
        index_urls=index_urls,
        extra_hosts=extra_hosts,
        allow_degraded=allow_degraded,
        shared_cache=shared_cache,
        output=output,
        extra_env=extra_env,
        credentials=credentials,
        mount_namespace=mount_namespace,
    )


def run_in_build_sandbox(
    argv: Sequence[str],
    *,
    python: str,
    private_dir: str,
    reads: Sequence[str] = (),
    writes: Sequence[str] = (),
    index_urls: Sequence[str],
    extra_hosts: Sequence[str] = (),
    allow_degraded: bool = False,
    shared_cache: str | None = None,
    output: str | None = None,
    extra_env: Mapping[str, str] | None = None,
    protected: Sequence[str] = (),
    credentials: Sequence[ArmedCredential] = (),
    guard_persistence: bool = False,
    mount_namespace: bool = True,
) -> int:
    """Run ARGV in the build sandbox; returns its exit code (safe-run's conventions).

    ``mount_namespace=False`` runs it in fallback mode (Landlock and seccomp, no
    namespaces): for the installs that hard-link from the shared cache, which runs no
    package code.  In namespace mode the cache and the venv are two bind mounts, and
    ``link(2)`` between mounts fails (EXDEV) even on one filesystem, so uv would
    silently copy every file (installer/link_mode.py).

    ``guard_persistence``: the writes outside the private directory go through
    safe-run's persistence guard and file broker (launcher/persistence.py): for an
    editable build, which writes into the user's project, where a venv, ``.git`` and
    the project's own definition must stay as they are.

    ``private_dir`` (from :func:`~safe_pip.launcher.scratch.make_private_dir`) holds
    the sandbox's HOME, TMPDIR and, unless ``shared_cache`` names the persistent
    cache (only for runs that cannot execute package code, see
    :mod:`safe_pip.installer.cache`), a ``uv-cache`` created here; the caller removes
    it.  ``output`` is a file that receives stdout and stderr (default: our stderr).
    """
    from safe_pip.launcher.plan import build_plan
    from safe_pip.policy.loader import CliOverrides, load_policy

    uv = find_uv()
    # The caller's TLS trust settings (SSL_CERT_FILE, UV_SYSTEM_CERTS ...) pass, their
    # files readable: build_plan does that for every sandbox (safe_pip/sandbox/environment.py).
    cache = shared_cache or os.path.join(private_dir, "uv-cache")
    os.makedirs(cache, mode=0o700, exist_ok=True)
    overrides = CliOverrides(
        allow_read=(uv, *reads),
        allow_write=(cache, *writes),
        allow_host=(*allowed_hosts(list(index_urls)), *extra_hosts),
    )
    variables = {**os.environ, "TMPDIR": os.path.join(private_dir, "tmp")}
    policy = load_policy(
        cwd=private_dir,
        project=None,
        overrides=overrides,
        variables=variables,
        home=os.path.expanduser("~"),
        builtin_only=True,
    )
    uv_settings = (
        ("UV_CACHE_DIR", cache),
        ("UV_NO_CONFIG", "1"),
        ("UV_PYTHON_DOWNLOADS", "never"),
        ("UV_NO_PROGRESS", "1"),
        *(extra_env or {}).items(),
    )
    policy = replace(
        policy,
        network=replace(policy.network, reported_as="safe-pip"),
        filesystem=_with_cache(policy.filesystem, shared_cache, protected),
        env=EnvPolicy(
            pass_names=policy.env.pass_names,
            set_values=(*policy.env.set_values, *uv_settings),
        ),
    )
    plan = build_plan(
        policy,
        "command",
        list(argv),
        python=python,
        venv=None,
        private_dir=private_dir,
        caller_env=os.environ,
        cwd=private_dir,
        allow_degraded=allow_degraded,
        guard_persistence=guard_persistence,
    )
    # Index passwords: phantoms in uv's URLs, the real values for the proxy only.
    plan = replace(plan, credentials=tuple(credentials))
    if not mount_namespace:
        plan = replace(plan, try_namespaces=False, fallback_chosen=True)
    code = _run_quietly(plan, output)
    if code in INTERRUPTED:
        # Ctrl-C reached the sandbox too (same process group): the user stopped the
        # install, which is not "uv failed" and not "the sandbox could not start".
        raise KeyboardInterrupt
    return code


def _with_cache(
    filesystem: FilesystemPolicy, shared_cache: str | None, protected: Sequence[str]
) -> FilesystemPolicy:
    """Add ``protected``; lift the deny and protection of the shared cache for the
    runs that may write it (they run no package code, see safe_pip.installer.cache),
    and the deny of the built-wheel cache beside it, which they may read where a
    ``reads`` grant says so (installer/built_wheels.py)."""
    if shared_cache is None:
        return replace(filesystem, protected=(*filesystem.protected, *protected))
    root = os.path.dirname(shared_cache)
    lifted = (shared_cache, os.path.join(root, BUILT_WHEELS))
    return replace(
        filesystem,
        deny=tuple(path for path in filesystem.deny if path not in lifted),
        protected=(*(path for path in filesystem.protected if path != root), *protected),
    )


def _run_quietly(plan: SandboxPlan, output: str | None) -> int:
    """Run with stdin on /dev/null and stdout on our stderr (or both on ``output``):
    uv's and the build's output are diagnostics, and the caller's stdout carries
    results (``--json``)."""
    from safe_pip.installer import learning
    from safe_pip.launcher.supervisor import run_sandboxed

    saved = [os.dup(0), os.dup(1), os.dup(2)]
    null = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
    sink = None
    if output is not None:
        sink = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o600)
    try:
        os.dup2(null, 0)
        if sink is None:
            os.dup2(2, 1)
        else:
            os.dup2(sink, 1)
            os.dup2(sink, 2)
        collector = learning.active()
        if collector is None:
            return run_sandboxed(plan)
        from safe_pip.learn.session import learned_run

        code, proposal = learned_run(
            plan, verbose=False, home=collector.home, project_dir=plan.private_dir
        )
        collector.add(proposal)
        return code
    finally:
        for fd, original in enumerate(saved):
            os.dup2(original, fd)
        for fd in (*saved, null, *([sink] if sink is not None else [])):
            os.close(fd)
