"""A tiny world for attack tests: a fake HOME full of secrets, a project, a runner.

Every attack test runs the same attacker script twice: once plainly (the attack must
work, proving the test can detect it) and once under ``safe-run`` (it must fail while
the script itself still runs to completion, proving the sandbox started).
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

SAFE_RUN = Path(sys.executable).parent / "safe-run"
MODES = ("namespace", "fallback")
IN_VENV = sys.prefix != sys.base_prefix


def userns_works() -> bool:
    """Whether this user can create the namespaces namespace mode needs."""
    probe = subprocess.run(
        ["unshare", "--user", "--map-current-user", "--mount", "--net", "--pid", "--fork", "true"],
        capture_output=True,
        check=False,
    )
    return probe.returncode == 0


@dataclass
class World:
    """Paths and secrets of one test's fake user account."""

    root: Path
    home: Path
    project: Path
    secret: str

    def env(self, mode: str | None = None, **extra: str) -> dict[str, str]:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.home),
            "LANG": "C.UTF-8",
            "SECRET_TOKEN": self.secret,
            "AWS_SECRET_ACCESS_KEY": self.secret,
        }
        if mode == "fallback":
            env["SAFE_PIP_NO_USERNS"] = "1"
        env.update(extra)
        return env

    def approve(self, project: Path | None = None) -> None:
        """Approve the project's policy as it is now, as ``safe-run allow`` would."""
        approve_policy(project or self.project, self.home)

    def write_script(self, code: str, name: str = "attack.py") -> Path:
        path = self.project / name
        path.write_text(textwrap.dedent(code))
        return path

    def run_plain(
        self, script: Path, *args: str, timeout: float = 60, **kwargs: object
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, str(script), *args],
            cwd=self.project,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            **kwargs,  # type: ignore[call-overload]
        )

    def safe_run_argv(self, *words: str, flags: tuple[str, ...] = ()) -> list[str]:
        venv = ("--venv", sys.prefix) if IN_VENV else ()
        return [str(SAFE_RUN), *venv, *flags, *words]

    def run_safe(
        self,
        mode: str,
        *words: str,
        flags: tuple[str, ...] = (),
        timeout: float = 60,
        env_extra: dict[str, str] | None = None,
        cwd: Path | None = None,
        **kwargs: object,
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.safe_run_argv(*words, flags=flags),
            cwd=cwd or self.project,
            env=self.env(mode, **(env_extra or {})),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            **kwargs,  # type: ignore[call-overload]
        )


DEFAULT_POLICY = """\
[tool.safe-run]
"""


def make_world(tmp_path: Path, policy: str = DEFAULT_POLICY) -> World:
    secret = "sk-" + secrets.token_hex(16)
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "id_rsa").write_text(f"-----BEGIN KEY-----\n{secret}\n")
    (home / ".aws").mkdir()
    (home / ".aws" / "credentials").write_text(f"[default]\naws_secret_access_key={secret}\n")
    (home / ".bashrc").write_text("# bashrc\n")
    project = tmp_path / "project"
    (project / ".git" / "hooks").mkdir(parents=True)
    (project / ".git" / "config").write_text("[core]\n")
    (project / "data").mkdir()
    (project / "data" / "input.txt").write_text("hello data\n")
    (project / "pyproject.toml").write_text(
        '[project]\nname = "victim"\nversion = "0"\n\n' + policy
    )
    # The unprivileged CI user must be able to traverse into pytest's tmp dirs.
    for path in (tmp_path, home, project):
        path.chmod(0o755)
    world = World(root=tmp_path, home=home, project=project, secret=secret)
    world.approve()
    return world


def approve_policy(project: Path, home: Path, env: dict[str, str] | None = None) -> None:
    """Record the approval of ``project``'s ``[tool.safe-run]`` for a user whose home
    is ``home`` (what ``safe-run allow`` stores), so a test's own policy runs."""
    from safe_pip.errors import PolicyError
    from safe_pip.policy.loader import CliOverrides, load_policy
    from safe_pip.policy.trust import ApprovalStore

    # Without cache entries: a test may time or count the run's own first parse.
    variables = {"HOME": str(home), **(env or {}), "SAFE_PIP_NO_CACHE": "1"}
    try:
        policy = load_policy(
            cwd=project, project=project, overrides=CliOverrides(), variables=variables, home=home
        )
    except PolicyError:
        return  # a test of a broken policy: there is nothing to approve
    if policy.approval is not None and not policy.approval.approved:
        ApprovalStore(str(home), variables).approve(policy.approval)


def assert_attack(
    world: World,
    mode: str,
    code: str,
    *args: str,
    leak: str | None = None,
    flags: tuple[str, ...] = (),
) -> None:
    """The attack prints LEAK when it succeeds, BLOCKED when it fails, then DONE."""
    script = world.write_script(code)
    plain = world.run_plain(script, *args)
    assert "LEAK" in plain.stdout, (
        f"attack does not work without the sandbox:\n{plain.stdout}{plain.stderr}"
    )
    if leak is not None:
        assert leak in plain.stdout
    boxed = world.run_safe(mode, str(script), *args, flags=flags)
    assert "DONE" in boxed.stdout, (
        f"script did not run in the sandbox:\n{boxed.stdout}{boxed.stderr}"
    )
    assert "LEAK" not in boxed.stdout, boxed.stdout
    assert "BLOCKED" in boxed.stdout
    if leak is not None:
        assert leak not in boxed.stdout + boxed.stderr
