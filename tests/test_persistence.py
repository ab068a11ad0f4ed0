"""Attack tests: nothing the sandbox writes may run, or widen trust, outside it later.

A careful attacker does not break out of the sandbox; it leaves something behind that
a trusted tool runs or obeys after the run: a setuid binary, a git hook, a ``.pth``
file, a policy.  Every test runs the attack plainly first (it must work, or the test
could not tell), then under ``safe-run`` in both modes, where it must fail while the
script itself still runs to the end.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sandbox_harness import SAFE_RUN, World, assert_attack, make_world

pytestmark = [
    pytest.mark.sandbox,
    pytest.mark.skipif(not SAFE_RUN.exists(), reason="safe-run is not installed next to python"),
]


@pytest.fixture
def world(tmp_path: Path) -> World:
    return make_world(tmp_path)


SETUID = """
import os, shutil, stat, sys
out = sys.argv[1]
tag = str(os.getpid())
made = []

def copy_then_chmod(path):
    shutil.copy(shutil.which("id"), path)
    os.chmod(path, 0o4755)

def create_with_mode(path):
    os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o6755))

def fchmod(path):
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o755)
    try:
        os.fchmod(fd, 0o2755)
    finally:
        os.close(fd)

def mknod(path):
    os.mknod(path, stat.S_IFREG | 0o4755)

for attack in (copy_then_chmod, create_with_mode, fchmod, mknod):
    path = os.path.join(out, f"{attack.__name__}-{tag}")
    try:
        attack(path)
    except OSError as exc:
        print("BLOCKED", attack.__name__, exc)
        continue
    bits = os.stat(path).st_mode & 0o6000
    print("LEAK" if bits else "BLOCKED", attack.__name__, oct(bits))
print("DONE")
"""


def test_no_setuid_or_setgid_file_is_left_behind(world: World, mode: str) -> None:
    """With any write grant, a caller's copy of a binary marked setuid would later run
    with the caller's rights for every user who starts it (root's: a root shell)."""
    out = world.project / "out"
    out.mkdir()
    assert_attack(world, mode, SETUID, str(out), flags=("--allow-write", str(out)))


# --- git: hooks, config and the index of every repository the run can write ---------------

GIT = shutil.which("git")
# Under CI a missing git is a failure, not a skip (.ci/run installs it).
needs_git = pytest.mark.skipif(GIT is None and not os.environ.get("CI"), reason="no git")
PROJECT_WRITE = '[tool.safe-run]\nextends = ["project-write"]\n'


def git(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """git with a clean configuration (no user, system or global settings)."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(cwd),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": os.devnull,
        "GIT_AUTHOR_NAME": "t",
        "GIT_AUTHOR_EMAIL": "t@t",
        "GIT_COMMITTER_NAME": "t",
        "GIT_COMMITTER_EMAIL": "t@t",
    }
    return subprocess.run(
        [str(GIT), *args], cwd=cwd, env=env, capture_output=True, text=True, check=False
    )


def git_repo_with_submodule(world: World) -> None:
    """The world's project as a git repository with one submodule, ``sub``."""
    source = world.root / "subsrc"
    source.mkdir()
    assert git("init", "-q", cwd=source).returncode == 0
    assert git("commit", "-q", "--allow-empty", "-m", "s", cwd=source).returncode == 0
    shutil.rmtree(world.project / ".git")
    assert git("init", "-q", cwd=world.project).returncode == 0
    added = git("-c", "protocol.file.allow=always", "submodule", "add", "-q", str(source), "sub",
                cwd=world.project)  # fmt: skip
    assert added.returncode == 0, added.stderr
    assert git("add", "-A", cwd=world.project).returncode == 0
    assert git("commit", "-q", "-m", "init", cwd=world.project).returncode == 0
    for path in (world.project, *world.project.rglob("*")):
        path.chmod(path.stat().st_mode | 0o755 if path.is_dir() else path.stat().st_mode | 0o644)


def fsmonitor_ran(world: World, marker: Path) -> bool:
    """Run a plain ``git status`` in the project, as the user would, and tell whether
    it ran the attacker's ``core.fsmonitor`` (which writes ``marker``)."""
    marker.unlink(missing_ok=True)
    git("status", cwd=world.project)
    return marker.exists()


SUBMODULE_ATTACK = """
import os, sys
marker = sys.argv[1]
line = f'[core]\\n\\tfsmonitor = "touch {marker}; false"\\n'
def attempt(name, action):
    try:
        action()
        print("LEAK", name)
    except OSError as exc:
        print("BLOCKED", name, exc)
def write(path, text, how="a"):
    with open(path, how) as handle:
        handle.write(text)
attempt("submodule config", lambda: write(".git/modules/sub/config", line))
attempt("submodule hook", lambda: write(".git/modules/sub/hooks/post-checkout", "#!/bin/sh", "w"))
attempt("project config", lambda: write(".git/config", line))
attempt("project index", lambda: write(".git/index", ""))
print("DONE")
"""


def submodule_world(root: Path) -> tuple[World, Path]:
    world = make_world(root)
    git_repo_with_submodule(world)
    (world.project / "pyproject.toml").write_text(PROJECT_WRITE)
    git("add", "-A", cwd=world.project)
    git("commit", "-q", "-m", "policy", cwd=world.project)
    world.approve()
    return world, world.write_script(SUBMODULE_ATTACK)


@needs_git
def test_git_submodule_config_and_hooks_are_out_of_reach(tmp_path: Path, mode: str) -> None:
    """project-write: the submodule's git directory lives in .git/modules/sub; a
    core.fsmonitor there runs at the user's next plain ``git status``."""
    # Without the sandbox the attack works, and git obeys what it planted...
    plain_world, script = submodule_world(tmp_path / "plain")
    marker = tmp_path / "fsmonitor-ran"
    plain = plain_world.run_plain(script, str(marker))
    assert plain.stdout.count("LEAK") == 4, plain.stdout + plain.stderr
    assert fsmonitor_ran(plain_world, marker)
    # ...in the sandbox it cannot plant anything, and git runs nothing.
    world, script = submodule_world(tmp_path / "boxed")
    config = world.project / ".git" / "modules" / "sub" / "config"
    original = config.read_text()
    boxed = world.run_safe(mode, str(script), str(marker))
    assert "DONE" in boxed.stdout and "LEAK" not in boxed.stdout, boxed.stdout + boxed.stderr
    assert boxed.stdout.count("BLOCKED") == 4
    assert config.read_text() == original
    assert not fsmonitor_ran(world, marker)


NESTED_ATTACK = """
import os, subprocess, sys
marker = sys.argv[1]
env = dict(os.environ, GIT_CONFIG_NOSYSTEM="1", GIT_AUTHOR_NAME="a", GIT_AUTHOR_EMAIL="a@b",
           GIT_COMMITTER_NAME="a", GIT_COMMITTER_EMAIL="a@b")
def git(*args, cwd="."):
    return subprocess.run(["git", *args], cwd=cwd, env=env, capture_output=True, text=True)
os.makedirs("src", exist_ok=True)
made = git("init", "-q", "src/vendor").returncode == 0
if made:
    git("commit", "-q", "--allow-empty", "-m", "x", cwd="src/vendor")
    with open("src/vendor/.git/config", "a") as f:
        f.write(f'[core]\\n\\tfsmonitor = "touch {marker}; false"\\n')
    sha = git("rev-parse", "HEAD", cwd="src/vendor").stdout.strip()
    linked = git("update-index", "--add", "--cacheinfo", f"160000,{sha},src/vendor")
    print("LEAK gitlink" if linked.returncode == 0 else "BLOCKED gitlink", linked.stderr.strip())
else:
    print("BLOCKED nested repository")
print("DONE")
"""


def plain_repo_world(root: Path) -> World:
    world = make_world(root)
    shutil.rmtree(world.project / ".git")
    (world.project / "src").mkdir()
    (world.project / "src" / "app.py").write_text("")
    assert git("init", "-q", cwd=world.project).returncode == 0
    (world.project / "pyproject.toml").write_text(PROJECT_WRITE)
    assert git("add", "-A", cwd=world.project).returncode == 0
    assert git("commit", "-q", "-m", "init", cwd=world.project).returncode == 0
    world.approve()
    return world


@needs_git
def test_a_nested_repository_cannot_be_linked_into_the_project(tmp_path: Path, mode: str) -> None:
    """``git init src/vendor`` with a core.fsmonitor, plus a gitlink for it in the
    parent's index: the user's next ``git status`` recurses into it and runs it."""
    marker = tmp_path / "fsmonitor-ran"
    plain_world = plain_repo_world(tmp_path / "plain")
    plain = plain_world.run_plain(plain_world.write_script(NESTED_ATTACK), str(marker))
    assert "LEAK gitlink" in plain.stdout, plain.stdout + plain.stderr
    assert fsmonitor_ran(plain_world, marker)

    world = plain_repo_world(tmp_path / "boxed")
    boxed = world.run_safe(mode, str(world.write_script(NESTED_ATTACK)), str(marker))
    assert "DONE" in boxed.stdout and "LEAK" not in boxed.stdout, boxed.stdout + boxed.stderr
    assert not fsmonitor_ran(world, marker)


# --- venvs: nothing new runs at the next start of a venv's Python --------------------------

PTH_ATTACK = """
import glob, os, sys
venv, marker = sys.argv[1], sys.argv[2]
site = glob.glob(venv + "/lib/python3*/site-packages")[0]
code = f"import pathlib; pathlib.Path({marker!r}).write_text('ran')\\n"
def attempt(name, action):
    try:
        action()
        print("LEAK", name)
    except OSError as exc:
        print("BLOCKED", name, exc)
def package(name):
    os.makedirs(os.path.join(site, name))
    open(os.path.join(site, name, "__init__.py"), "w").write(code)
def write(path, text, how="w"):
    with open(path, how) as handle:
        handle.write(text)
attempt("new pth", lambda: write(os.path.join(site, "zz_evil.pth"), code))
attempt("sitecustomize package", lambda: package("sitecustomize"))
attempt("usercustomize module", lambda: write(os.path.join(site, "usercustomize.py"), code))
attempt("existing pth", lambda: write(os.path.join(site, "_virtualenv.pth"), code, "a"))
attempt("bin", lambda: write(os.path.join(venv, "bin", "ls"), "#!/bin/sh"))
print("DONE")
"""


def make_venv(path: Path) -> Path:
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True)
    site = next(path.glob("lib/python3*/site-packages"))
    (site / "_virtualenv.pth").write_text("import os\n")  # what virtualenv leaves
    (site / "requests").mkdir()  # a package already there: still writable
    for item in (path, *path.rglob("*")):
        if item.is_dir() and not item.is_symlink():
            item.chmod(0o755)
    return path


def pth_ran(venv: Path, marker: Path) -> bool:
    """Start the venv's Python plainly, as the user later would."""
    marker.unlink(missing_ok=True)
    subprocess.run([str(venv / "bin" / "python"), "-c", "pass"], check=False, cwd="/")
    return marker.exists()


def clean_site(venv: Path) -> None:
    site = next(venv.glob("lib/python3*/site-packages"))
    for name in ("zz_evil.pth", "usercustomize.py"):
        (site / name).unlink(missing_ok=True)
    shutil.rmtree(site / "sitecustomize", ignore_errors=True)
    (site / "_virtualenv.pth").write_text("import os\n")
    (venv / "bin" / "ls").unlink(missing_ok=True)


@pytest.mark.parametrize(
    "policy",
    ['[tool.safe-run.filesystem]\nwrite = [".venv"]\n', PROJECT_WRITE],
    ids=["venv-writable", "project-writable"],
)
def test_no_new_startup_code_in_a_writable_venv(world: World, mode: str, policy: str) -> None:
    """``write = [".venv"]`` (the venv named for writing: its packages stay writable)
    and project-write (the venv inside the project stays read-only whole)."""
    venv = make_venv(world.project / ".venv")
    (world.project / "pyproject.toml").write_text(policy)
    world.approve()
    marker = world.root / "pth-ran"
    script = world.write_script(PTH_ATTACK)
    plain = world.run_plain(script, str(venv), str(marker))
    assert plain.stdout.count("LEAK") == 5, plain.stdout + plain.stderr
    assert pth_ran(venv, marker)
    clean_site(venv)
    assert not pth_ran(venv, marker)

    boxed = world.run_safe(mode, str(script), str(venv), str(marker))
    assert "DONE" in boxed.stdout and "LEAK" not in boxed.stdout, boxed.stdout + boxed.stderr
    assert not pth_ran(venv, marker)
    if "venv" in policy:  # named for writing: what is already there stays writable
        package = next(venv.glob("lib/python3*/site-packages")) / "requests" / "x.py"
        edit = world.write_script(f"open({str(package)!r}, 'w').write('x')\n", "edit.py")
        edited = world.run_safe(mode, str(edit))
        assert edited.returncode == 0, edited.stderr
        assert package.read_text() == "x"


def test_the_projects_venv_is_kept_when_another_venv_is_active(world: World, mode: str) -> None:
    """project-write while ``VIRTUAL_ENV`` names another venv: the project's own
    ``.venv`` is still a venv the user runs later."""
    venv = make_venv(world.project / ".venv")
    other = make_venv(world.root / "other-venv")
    (world.project / "pyproject.toml").write_text(PROJECT_WRITE)
    world.approve()
    marker = world.root / "pth-ran"
    script = world.write_script(PTH_ATTACK)
    plain = world.run_plain(script, str(venv), str(marker))
    assert "LEAK new pth" in plain.stdout
    clean_site(venv)
    argv = [str(SAFE_RUN), "--venv", str(other), str(script), str(venv), str(marker)]
    env = world.env(mode, VIRTUAL_ENV=str(other))
    boxed = subprocess.run(
        argv, cwd=world.project, env=env, capture_output=True, text=True, check=False, timeout=60
    )
    assert "DONE" in boxed.stdout and "LEAK" not in boxed.stdout, boxed.stdout + boxed.stderr
    assert not pth_ran(venv, marker)


# --- the home directory and PATH ------------------------------------------------------------

HOME_ATTACK = """
import os, sys
home, tools = sys.argv[1], sys.argv[2]
def attempt(name, action):
    try:
        action()
        print("LEAK", name)
    except OSError as exc:
        print("BLOCKED", name, exc)
def write(path, text, how="w"):
    with open(path, how) as handle:
        handle.write(text)
attempt("bashrc", lambda: write(os.path.join(home, ".bashrc"), "echo pwned", "a"))
attempt("gitconfig", lambda: write(os.path.join(home, ".gitconfig"), "[core]", "a"))
attempt("local bin", lambda: write(os.path.join(home, ".local/bin/ls"), "x"))
attempt("user site", lambda: write(os.path.join(home, ".local/lib/x.pth"), "x"))
attempt("systemd unit", lambda: write(os.path.join(home, ".config/systemd/user/x.service"), "x"))
attempt("PATH entry", lambda: write(os.path.join(tools, "git"), "#!/bin/sh"))
print("DONE")
"""


def test_files_that_run_at_login_stay_read_only_under_a_writable_home(
    tmp_path: Path, mode: str
) -> None:
    world = make_world(tmp_path, '[tool.safe-run.filesystem]\nwrite = ["~", "tools"]\n')
    for directory in (".local/bin", ".local/lib", ".config/systemd/user"):
        (world.home / directory).mkdir(parents=True)
    (world.home / ".gitconfig").write_text("[user]\n")
    tools = world.project / "tools"
    tools.mkdir()
    script = world.write_script(HOME_ATTACK)
    plain = world.run_plain(script, str(world.home), str(tools))
    assert plain.stdout.count("LEAK") == 6, plain.stdout + plain.stderr
    for planted in (world.home / ".local" / "bin" / "ls", world.home / ".local" / "lib" / "x.pth",
                    world.home / ".config/systemd/user/x.service", tools / "git"):  # fmt: skip
        planted.unlink()
    (world.home / ".bashrc").write_text("# bashrc\n")
    env = world.env(mode, PATH=f"{tools}:{os.environ.get('PATH', '/usr/bin:/bin')}")
    boxed = subprocess.run(
        world.safe_run_argv(str(script), str(world.home), str(tools)),
        cwd=world.project, env=env, capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert "DONE" in boxed.stdout and "LEAK" not in boxed.stdout, boxed.stdout + boxed.stderr
    assert (world.home / ".bashrc").read_text() == "# bashrc\n"
    assert not (tools / "git").exists()
    # The grant itself works: an ordinary file in the home is writable.  (In a
    # subdirectory: fallback mode cannot add entries directly to a directory that
    # holds protected ones.)
    (world.home / "docs").mkdir()
    notes = world.home / "docs" / "notes.txt"
    script = world.write_script(f"open({str(notes)!r}, 'w').write('ok')\n", "notes.py")
    assert world.run_safe(mode, str(script)).returncode == 0
    assert notes.read_text() == "ok"


# --- the broker's rules, by themselves ------------------------------------------------------


def test_write_rules(tmp_path: Path) -> None:
    from safe_pip.launcher.persistence import WriteRules

    old = make_venv(tmp_path / "old")
    site = str(next(old.glob("lib/python3*/site-packages")))
    tools = tmp_path / "tools"
    tools.mkdir()
    rules = WriteRules(
        protected=[str(tmp_path / "pyproject.toml"), str(tmp_path / "home" / ".bashrc")],
        path_dirs=[str(tools), "relative/ignored"],
        started_ns=time.time_ns(),
    )
    new = make_venv(tmp_path / "new")  # made "during the run": its own output
    new_site = str(next(new.glob("lib/python3*/site-packages")))
    refused = {
        ("create", f"{tmp_path}/src/.git"),
        ("write", f"{tmp_path}/.git/config"),
        ("rename-to", f"{tmp_path}/x/.git"),
        ("create", f"{tmp_path}/pyproject.toml"),
        ("create", f"{tmp_path}/home/.bashrc"),
        ("remove", f"{tmp_path}/home"),  # holds a protected path
        ("create", f"{tools}/ls"),
        ("create", f"{site}/zz.pth"),
        ("write", f"{site}/_virtualenv.pth"),
        ("create", f"{site}/sitecustomize.py"),
        ("create", f"{site}/usercustomize"),
        ("create", f"{old}/bin/git"),
        ("write", f"{old}/pyvenv.cfg"),
        ("create", f"{old}/pip.conf"),
        ("rename-from", str(old)),
        ("remove", str(old)),
    }
    allowed = {
        ("create", f"{tmp_path}/src/app.py"),
        ("create", f"{tmp_path}/x.git"),
        ("create", f"{tmp_path}/home/.bashrc-notes"),
        ("write", f"{site}/requests/__init__.py"),
        ("create", f"{site}/newpkg"),
        ("create", f"{new_site}/editable.pth"),
        ("create", f"{new}/bin/tool"),
        ("create", f"{tools}-not-on-path/ls"),
        ("remove", f"{tmp_path}/src"),
    }
    for op, path in refused:
        assert rules.refuse(op, path) is not None, (op, path)
    for op, path in allowed:
        assert rules.refuse(op, path) is None, (op, path)


COMMIT = r"""
import os, subprocess, sys
marker = sys.argv[1]
env = dict(os.environ, GIT_CONFIG_NOSYSTEM="1", GIT_AUTHOR_NAME="a", GIT_AUTHOR_EMAIL="a@b",
           GIT_COMMITTER_NAME="a", GIT_COMMITTER_EMAIL="a@b")
def git(*args):
    return subprocess.run(["git", *args], env=env, capture_output=True, text=True)
open("src/app.py", "a").write("# changed\n")
committed = git("commit", "-qam", "from the sandbox")
print("COMMITTED" if committed.returncode == 0 else "NOT COMMITTED", committed.stderr.strip()[-80:])
line = f'[core]\n\tfsmonitor = "touch {marker}; false"\n'
def attempt(name, action):
    try:
        action()
        print("LEAK", name)
    except OSError as exc:
        print("BLOCKED", name, exc.errno)
def write(path, text):
    with open(path, "a") as handle:
        handle.write(text)
attempt("config", lambda: write(".git/config", line))
attempt("hook", lambda: write(".git/hooks/pre-commit", "#!/bin/sh\n"))
attempt("info/attributes", lambda: write(".git/info/attributes", "* filter=x\n"))
attempt("nested repository", lambda: os.makedirs("src/vendor/.git"))
print("DONE")
"""


@needs_git
@pytest.mark.parametrize("setting", ["commit", None], ids=["git-commit", "default"])
def test_git_commit_opt_in(tmp_path: Path, mode: str, setting: str | None) -> None:
    """``filesystem.git = "commit"``: a tool that commits can, and still nothing git
    runs or obeys can be written.  Without it the repository is read-only whole."""
    world = plain_repo_world(tmp_path)
    table = PROJECT_WRITE
    if setting is not None:
        table += f'[tool.safe-run.filesystem]\ngit = "{setting}"\n'
    (world.project / "pyproject.toml").write_text(table)
    assert git("commit", "-q", "--allow-empty", "-am", "policy", cwd=world.project).returncode == 0
    world.approve()
    marker = tmp_path / "fsmonitor-ran"
    boxed = world.run_safe(mode, str(world.write_script(COMMIT, "commit.py")), str(marker))
    assert "DONE" in boxed.stdout, boxed.stdout + boxed.stderr
    assert "LEAK" not in boxed.stdout, boxed.stdout
    log = git("log", "--format=%s", cwd=world.project).stdout.split()
    if setting == "commit":
        assert "COMMITTED" in boxed.stdout, boxed.stdout + boxed.stderr
        assert log[0] == "from"
    else:
        assert "NOT COMMITTED" in boxed.stdout
        assert log[0] == "policy"
    assert not fsmonitor_ran(world, marker)
