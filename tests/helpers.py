"""Plain helpers shared by the integration tests: find and run `safe-run`, build projects.

These are functions rather than fixtures so a test can call them with its own arguments
(several projects, a second run with another environment).  The fixtures in
`conftest.py` are thin wrappers around them.  Tests import them as
``from helpers import run_safe`` (pytest puts `tests/` on `sys.path` because `tests/`
is not a package).

Two rules keep the tests honest:

* The child environment is built from scratch (`base_env`), never copied from the
  test process, so a secret that happens to be in the developer's shell or CI's
  environment cannot make a test pass or fail by accident, and a stray
  `SAFE_PIP_NO_USERNS` cannot silently turn namespace-mode tests into fallback tests.
* `run_bare` runs the very same command without the sandbox, so a test can first show
  the attack working and then show `run_safe` stopping it (DESIGN.md: a test that would
  pass against an empty sandbox proves nothing).
"""

from __future__ import annotations

import ctypes
import os
import secrets
import stat
import subprocess
import sys
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

#: True when the tests run as root.  Root bypasses file permissions and may hold
#: capabilities an attacker would not have, so some attacks only show their real
#: behaviour as an ordinary user; CI therefore runs the sandbox tests both ways.
IS_ROOT = os.geteuid() == 0

#: The environment variable that forces safe-run's fallback (Landlock-only) mode.
NO_USERNS_VAR = "SAFE_PIP_NO_USERNS"

#: Default wall-clock limit for one sandboxed command.  Generous on purpose: a hung
#: sandbox should fail the test with a timeout, not stall the whole CI run.
DEFAULT_TIMEOUT = 60.0

# Flags from <linux/sched.h>; duplicated here so the probe does not depend on the
# code under test.
_CLONE_NEWNS = 0x00020000
_CLONE_NEWUSER = 0x10000000
_CLONE_NEWNET = 0x40000000


def venv_bin_dir() -> Path:
    """The `bin/` directory of the interpreter running the tests (not resolved).

    `sys.executable` in a venv is a symlink to the base interpreter; resolving it would
    point outside the venv, where `safe-run` is not installed.
    """
    return Path(sys.executable).parent


def find_safe_run() -> Path | None:
    """The `safe-run` console script installed next to the test interpreter, if any."""
    candidate = venv_bin_dir() / "safe-run"
    return candidate if candidate.is_file() and os.access(candidate, os.X_OK) else None


def running_in_venv() -> bool:
    """Whether the tests run inside a virtual environment (as under nox)."""
    return sys.prefix != sys.base_prefix


def userns_available() -> bool:
    """Whether this user may create a user namespace and use it to make more namespaces.

    Probed in a fresh interpreter (unshare needs a single-threaded process, and the
    test process must not end up inside the namespace).  The second unshare matters:
    some kernels (Ubuntu's AppArmor restriction) let the user namespace be created but
    give it no capabilities, so only creating a mount/network namespace inside it shows
    whether safe-run's namespace mode can work.
    """
    code = textwrap.dedent(
        f"""
        import ctypes, sys
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.unshare({_CLONE_NEWUSER}) != 0:
            sys.exit(1)
        if libc.unshare({_CLONE_NEWNS | _CLONE_NEWNET}) != 0:
            sys.exit(2)
        """
    )
    try:
        result = subprocess.run(
            [sys.executable, "-c", code],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return result.returncode == 0


def landlock_abi() -> int:
    """The kernel's Landlock ABI version, 0 when Landlock is missing or disabled.

    Independent of safe_pip.sandbox.landlock so tests can decide what to expect without
    trusting the code they test.
    """
    if os.uname().machine not in ("x86_64", "aarch64"):
        return 0
    # landlock_create_ruleset(NULL, 0, LANDLOCK_CREATE_RULESET_VERSION) returns the ABI.
    landlock_create_ruleset_nr = 444  # the same number on both architectures
    libc = ctypes.CDLL(None, use_errno=True)
    abi = libc.syscall(landlock_create_ruleset_nr, None, ctypes.c_size_t(0), 1)
    return max(int(abi), 0)


@dataclass(frozen=True)
class SandboxMode:
    """One way safe-run can build its sandbox, as selected through the environment."""

    name: str
    env: Mapping[str, str] = field(default_factory=dict)


NAMESPACE_MODE = SandboxMode("namespace")
FALLBACK_MODE = SandboxMode("fallback", {NO_USERNS_VAR: "1"})
MODES = (NAMESPACE_MODE, FALLBACK_MODE)


def base_env(home: Path | None = None) -> dict[str, str]:
    """A minimal, predictable environment for a child process.

    PATH starts with the test venv's `bin/` so `python` means the interpreter under
    test.  VIRTUAL_ENV names that venv because safe-run takes its venv from there (as
    for a user with an activated venv); pass ``VIRTUAL_ENV=None`` in `env` to test the
    `./.venv` default instead.
    """
    env = {
        "PATH": os.pathsep.join([str(venv_bin_dir()), "/usr/local/bin", "/usr/bin", "/bin"]),
        "HOME": str(home) if home is not None else os.environ.get("HOME", "/"),
        "LANG": "C.UTF-8",
    }
    if running_in_venv():
        env["VIRTUAL_ENV"] = sys.prefix
    return env


def merged_env(
    env: Mapping[str, str | None] | None = None,
    *,
    home: Path | None = None,
    mode: SandboxMode | None = None,
) -> dict[str, str]:
    """`base_env` plus the mode's variables plus `env`; a value of None removes a key."""
    result = base_env(home)
    if mode is not None:
        result.update(mode.env)
    for key, value in (env or {}).items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = value
    return result


def _run(
    argv: Sequence[str | os.PathLike[str]],
    *,
    cwd: Path,
    env: dict[str, str],
    timeout: float,
    input_text: str | None,
) -> subprocess.CompletedProcess[str]:
    """Run `argv` capturing text output; stdin is empty unless `input_text` is given."""
    return subprocess.run(
        [os.fspath(arg) for arg in argv],
        cwd=cwd,
        env=env,
        input=input_text,
        stdin=subprocess.DEVNULL if input_text is None else None,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def run_safe(
    args: Sequence[str | os.PathLike[str]],
    *,
    cwd: Path,
    env: Mapping[str, str | None] | None = None,
    home: Path | None = None,
    mode: SandboxMode | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    input_text: str | None = None,
    safe_run: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run ``safe-run ARGS...`` in `cwd` and return its result (never raises on exit code).

    `home` becomes HOME (safe-run resolves `~` from HOME, so a fake home is how tests
    give the sandbox secrets to steal).  `mode` adds the variables selecting namespace
    or fallback mode.  `env` is applied last, on top of `base_env`.
    """
    binary = safe_run if safe_run is not None else find_safe_run()
    if binary is None:
        raise FileNotFoundError(f"safe-run is not installed next to {sys.executable}")
    return _run(
        [binary, *args],
        cwd=cwd,
        env=merged_env(env, home=home, mode=mode),
        timeout=timeout,
        input_text=input_text,
    )


def run_bare(
    args: Sequence[str | os.PathLike[str]],
    *,
    cwd: Path,
    env: Mapping[str, str | None] | None = None,
    home: Path | None = None,
    timeout: float = DEFAULT_TIMEOUT,
    input_text: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run the same command without safe-run, with the same environment as `run_safe`.

    This is the control half of every attack test: it must show the attack working.
    """
    return _run(
        args,
        cwd=cwd,
        env=merged_env(env, home=home),
        timeout=timeout,
        input_text=input_text,
    )


def pyproject_text(policy_toml: str = "", *, name: str = "sandbox-test-project") -> str:
    """A pyproject.toml with a minimal `[project]` table followed by `policy_toml`.

    `policy_toml` may start with bare keys (``extends = [...]``); they are then placed
    under a ``[tool.safe-run]`` header.  Text that starts with a table header is used
    as it is.  An empty policy still gets an empty ``[tool.safe-run]`` table, because
    "a project with a safe-run table but no rules" is the baseline most tests want.
    """
    body = textwrap.dedent(policy_toml).strip()
    first = next(
        (line.strip() for line in body.splitlines() if line.strip() and not line.startswith("#")),
        "",
    )
    if not first.startswith("["):
        body = f"[tool.safe-run]\n{body}".rstrip()
    return f'[project]\nname = "{name}"\nversion = "0"\n\n{body}\n'


def make_project(
    root: Path,
    policy_toml: str = "",
    *,
    files: Mapping[str, str] | None = None,
) -> Path:
    """Create `root` holding a pyproject.toml (see `pyproject_text`) and `files`.

    `files` maps relative paths to text contents; parent directories are created.
    Returns `root` so calls can be chained.
    """
    root.mkdir(parents=True, exist_ok=True)
    (root / "pyproject.toml").write_text(pyproject_text(policy_toml), encoding="utf-8")
    for relative, content in (files or {}).items():
        target = root / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(content, encoding="utf-8")
    return root


@dataclass(frozen=True)
class FakeHome:
    """A throw-away HOME full of secrets, and the means to tell whether any escaped.

    Each secret is random per test, so finding one in a sandboxed process's output or
    in a file it wrote can only mean the sandbox let it through.
    """

    path: Path
    #: label -> secret value, e.g. ``{"ssh": "...", "aws": "...", "netrc": "..."}``.
    secrets: Mapping[str, str]
    #: label -> the file holding that secret.
    files: Mapping[str, Path]
    #: the original ~/.bashrc text, to detect persistence attempts.
    bashrc_text: str

    @property
    def ssh_key(self) -> Path:
        """~/.ssh/id_rsa."""
        return self.files["ssh"]

    @property
    def bashrc(self) -> Path:
        """~/.bashrc."""
        return self.path / ".bashrc"

    def leaked_in(self, text: str) -> list[str]:
        """Labels of the secrets that appear in `text` (empty list: nothing leaked)."""
        return [label for label, value in self.secrets.items() if value in text]

    def bashrc_changed(self) -> bool:
        """Whether ~/.bashrc differs from what the fixture wrote (or is gone)."""
        try:
            return self.bashrc.read_text(encoding="utf-8") != self.bashrc_text
        except OSError:
            return True


def make_fake_home(root: Path) -> FakeHome:
    """Create a home directory at `root` with the files attackers go after first.

    Permissions match a real home (0700 ~/.ssh, 0600 key and credentials) so that the
    unprivileged CI run exercises the same access checks a user's account would.
    """
    token = secrets.token_hex(16)
    values = {
        "ssh": f"ssh-secret-{token}",
        "aws": f"aws-secret-{secrets.token_hex(16)}",
        "netrc": f"netrc-secret-{secrets.token_hex(16)}",
    }
    contents = {
        "ssh": (
            ".ssh/id_rsa",
            "-----BEGIN OPENSSH PRIVATE KEY-----\n"
            f"{values['ssh']}\n"
            "-----END OPENSSH PRIVATE KEY-----\n",
        ),
        "aws": (
            ".aws/credentials",
            "[default]\n"
            "aws_access_key_id = AKIAFAKEFAKEFAKEFAKE\n"
            f"aws_secret_access_key = {values['aws']}\n",
        ),
        "netrc": (
            ".netrc",
            f"machine example.invalid login demo password {values['netrc']}\n",
        ),
    }
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(stat.S_IRWXU)
    files: dict[str, Path] = {}
    for label, (relative, text) in contents.items():
        target = root / relative
        if target.parent != root:
            target.parent.mkdir(mode=stat.S_IRWXU, exist_ok=True)
        target.write_text(text, encoding="utf-8")
        target.chmod(stat.S_IRUSR | stat.S_IWUSR)
        files[label] = target
    bashrc_text = "# fake ~/.bashrc written by the safe-pip tests\nexport SAFE_PIP_TEST=1\n"
    (root / ".bashrc").write_text(bashrc_text, encoding="utf-8")
    return FakeHome(path=root, secrets=values, files=files, bashrc_text=bashrc_text)
