"""Policy trust: a project's configuration takes effect only once its user approved it.

The attacks: a cloned repository's ``[tool.safe-run]`` that grants itself the home
directory; a policy that a sandboxed run plants in a subdirectory for the user's next
``safe-run`` there; a ``uv.toml`` planted for the next ``safe-pip install``; a granted
directory swapped for a symlink.  Each is shown to work once approved (so the test can
see it) and to be refused while it is not.
"""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from sandbox_harness import SAFE_RUN, World, approve_policy, make_world

from safe_pip.policy.loader import CliOverrides, load_policy
from safe_pip.policy.trust import ApprovalStore, canonical_lines, state_root


def sandboxed(test: Callable[..., None]) -> Callable[..., None]:
    """A test that runs real sandboxes (CI runs it as root and as an ordinary user)."""
    skip = pytest.mark.skipif(not SAFE_RUN.exists(), reason="safe-run is not installed")
    marked: Callable[..., None] = pytest.mark.sandbox(skip(test))
    return marked


PROJECT_WRITE = '[tool.safe-run]\nextends = ["project-write"]\n'
WRITE_OUT = '[tool.safe-run.filesystem]\nwrite = ["out"]\n'
MARK = """
import pathlib, sys
pathlib.Path(sys.argv[1]).write_text("ran")
print("ran")
"""


def set_policy(world: World, table: str, directory: Path | None = None) -> Path:
    directory = directory or world.project
    directory.mkdir(parents=True, exist_ok=True)
    pyproject = directory / "pyproject.toml"
    pyproject.write_text('[project]\nname = "p"\nversion = "0"\n\n' + table)
    return pyproject


def safe_run(world: World, *words: str) -> subprocess.CompletedProcess[str]:
    """``safe-run WORDS`` in the project; ``allow`` stays the first word (a subcommand)."""
    argv = [str(SAFE_RUN), *words] if words[:1] == ("allow",) else world.safe_run_argv(*words)
    return subprocess.run(
        argv,
        cwd=world.project,
        env=world.env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        stdin=subprocess.DEVNULL,
    )


def load(project: Path, home: Path) -> object:
    return load_policy(
        cwd=project,
        project=project,
        overrides=CliOverrides(),
        variables={"HOME": str(home), "SAFE_PIP_NO_CACHE": "1"},
        home=home,
    )


# --- the store and the canonical form (no sandbox) ----------------------------------------


def test_canonical_lines_ignore_layout_but_not_values() -> None:
    one = {"filesystem": {"write": ["out"], "read": ["a"]}, "extends": ["python-runtime"]}
    two = {"extends": ["python-runtime"], "filesystem": {"read": ["a"], "write": ["out"]}}
    assert canonical_lines(one) == canonical_lines(two)
    assert canonical_lines(one) == [
        'extends = ["python-runtime"]',
        'filesystem.read = ["a"]',
        'filesystem.write = ["out"]',
    ]
    wider = {"extends": ["python-runtime"], "filesystem": {"read": ["a"], "write": ["~"]}}
    assert canonical_lines(wider) != canonical_lines(one)
    # A value cannot smuggle a second line in.
    [line] = canonical_lines({"x": 'a"\nfilesystem.write = ["~"]'})
    assert "\n" not in line and line.startswith('x = "a\\"')


def test_only_a_table_that_grants_more_needs_approval(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    narrowing = '[tool.safe-run]\nnetwork = "none"\n[tool.safe-run.filesystem]\ndeny = ["x"]\n'
    for table, needed in (
        ("[tool.safe-run]\n", False),
        (narrowing, False),
        ('[tool.safe-run]\nextends = ["python-runtime"]\n', True),
        ('[tool.safe-run.filesystem]\nread = ["data"]\n', True),
        ('[tool.safe-run.network]\nallow = ["example.com"]\n', True),
        ('[tool.safe-run.env]\nset = { A = "1" }\n', True),
    ):
        project = tmp_path / f"p{abs(hash(table))}"
        project.mkdir()
        (project / "pyproject.toml").write_text(table)
        approval = load(project, home).approval  # type: ignore[attr-defined]
        assert (approval is not None) == needed, table
        if needed:
            assert approval.state == "new" and approval.grants


def test_approval_is_per_file_and_survives_reformatting(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    table = '[tool.safe-run.filesystem]\nread = ["data"]\nwrite = ["out"]\n'
    first, second = tmp_path / "first", tmp_path / "second"
    for project in (first, second):
        project.mkdir()
        (project / "pyproject.toml").write_text(table)
    approve_policy(first, home)
    assert load(first, home).approval.approved  # type: ignore[attr-defined]
    assert not load(second, home).approval.approved  # type: ignore[attr-defined]
    (first / "pyproject.toml").write_text(
        '# a comment\n[tool.safe-run.filesystem]\nwrite = [ "out" ]\nread = ["data"]\n'
    )
    assert load(first, home).approval.approved  # type: ignore[attr-defined]
    (first / "pyproject.toml").write_text(table.replace('"out"', '"out", "~"'))
    changed = load(first, home).approval  # type: ignore[attr-defined]
    assert changed.state == "changed"
    assert any(line.startswith("+ filesystem.write") for line in changed.changes())


def test_a_store_entry_that_is_not_ours_is_ignored(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    project = tmp_path / "p"
    project.mkdir()
    (project / "pyproject.toml").write_text('[tool.safe-run.filesystem]\nwrite = ["~"]\n')
    approve_policy(project, home)
    store = ApprovalStore(str(home), {})
    assert store.directory is not None
    [entry] = Path(store.directory).iterdir()
    entry.chmod(0o666)  # writable by others: anyone could have written it
    assert not load(project, home).approval.approved  # type: ignore[attr-defined]
    entry.chmod(0o600)
    assert load(project, home).approval.approved  # type: ignore[attr-defined]
    target = entry.with_name("elsewhere")
    entry.rename(target)
    entry.symlink_to(target)  # a link is never followed
    assert not load(project, home).approval.approved  # type: ignore[attr-defined]


def test_a_granted_path_swapped_for_a_symlink_needs_approval_again(tmp_path: Path) -> None:
    home = tmp_path / "home"
    (home / "private").mkdir(parents=True)
    project = tmp_path / "p"
    (project / "data").mkdir(parents=True)
    (project / "pyproject.toml").write_text('[tool.safe-run.filesystem]\nread = ["data"]\n')
    approve_policy(project, home)
    assert load(project, home).approval.approved  # type: ignore[attr-defined]
    # What a sandbox that may write the project could do: the table reads the same.
    (project / "data").rmdir()
    (project / "data").symlink_to(home)
    approval = load(project, home).approval  # type: ignore[attr-defined]
    assert approval.state == "changed"
    assert any(str(home) in line for line in approval.changes())


# --- the gate, end to end -----------------------------------------------------------------


@sandboxed
def test_unapproved_policy_is_refused_until_approved(tmp_path: Path) -> None:
    world = make_world(tmp_path)
    set_policy(world, PROJECT_WRITE + WRITE_OUT)
    marker = world.project / "marker"
    script = world.write_script(MARK, "job.py")
    refused = safe_run(world, str(script), str(marker))
    assert refused.returncode == 125
    assert not marker.exists()
    [line] = refused.stderr.splitlines()
    assert "not approved yet" in line and "write: ., ./out" in line
    assert "safe-run allow" in line and "safe-run --explain" in line
    explained = safe_run(world, "--explain", str(script))
    assert explained.returncode == 0
    assert "# approval: NOT approved (new)" in explained.stdout

    allowed = safe_run(world, "allow")
    assert allowed.returncode == 0 and "approved the [tool.safe-run] policy" in allowed.stdout
    ran = safe_run(world, str(script), str(marker))
    assert ran.returncode == 0, ran.stderr
    assert marker.read_text() == "ran"
    assert "# approval: approved" in safe_run(world, "--explain", str(script)).stdout

    # A change, even one line, needs approving again; --explain shows the difference.
    set_policy(world, PROJECT_WRITE + WRITE_OUT.replace('"out"', '"out", "~"'))
    marker.unlink()
    changed = safe_run(world, str(script), str(marker))
    assert changed.returncode == 125 and "changed since you approved it" in changed.stderr
    assert not marker.exists()
    explained = safe_run(world, "--explain", str(script))
    assert '#    + filesystem.write = ["out", "~"]' in explained.stdout
    assert '#    - filesystem.write = ["out"]' in explained.stdout


def _run_at_terminal(world: World, answer: bytes, *words: str) -> tuple[int, str]:
    """Run safe-run with its stdin and stderr on a terminal; answer its question."""
    master, slave = pty.openpty()
    process = subprocess.Popen(
        world.safe_run_argv(*words),
        cwd=world.project,
        env=world.env(),
        stdin=slave,
        stdout=subprocess.PIPE,
        stderr=slave,
    )
    os.close(slave)
    seen = b""
    deadline = time.monotonic() + 30
    answered = False
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                chunk = os.read(master, 4096)
            except OSError:
                break
            if not chunk:
                break
            seen += chunk
        if not answered and b"[y/N]" in seen:
            os.write(master, answer)
            answered = True
        if process.poll() is not None and not ready:
            break
    code = process.wait(timeout=30)
    assert process.stdout is not None
    out = process.stdout.read().decode()
    process.stdout.close()
    os.close(master)
    return code, seen.decode(errors="replace") + out


@sandboxed
def test_at_a_terminal_safe_run_asks(tmp_path: Path) -> None:
    world = make_world(tmp_path)
    set_policy(world, WRITE_OUT)
    (world.project / "out").mkdir()
    marker = world.project / "out" / "marker"
    script = world.write_script(MARK, "job.py")
    code, text = _run_at_terminal(world, b"n\n", str(script), str(marker))
    assert code == 125 and "write: ./out" in text and "not approved; nothing was run" in text
    assert not marker.exists()
    code, text = _run_at_terminal(world, b"y\n", str(script), str(marker))
    assert code == 0, text
    assert marker.read_text() == "ran"
    # Remembered: no question the next time, at a terminal or not.
    marker.unlink()
    assert safe_run(world, str(script), str(marker)).returncode == 0
    assert marker.exists()


PLANT = """
import os, sys
os.makedirs("scripts", exist_ok=True)
with open("scripts/pyproject.toml", "w") as f:
    f.write('[tool.safe-run]\\n[tool.safe-run.filesystem]\\nwrite = ["~"]\\n')
with open("scripts/job.py", "w") as f:
    f.write("import sys\\nopen(sys.argv[1], 'a').write('PLANTED-POLICY-ESCAPE')\\n")
print("planted")
"""


@sandboxed
def test_a_planted_policy_in_a_subdirectory_is_refused(tmp_path: Path, mode: str) -> None:
    """A run that may write the project plants ``scripts/pyproject.toml`` granting the
    home; the user's next ``cd scripts && safe-run job.py`` must not obey it."""
    world = make_world(tmp_path)
    set_policy(world, PROJECT_WRITE)
    world.approve()
    victim = world.home / "notes.txt"
    victim.write_text("mine\n")
    planter = world.write_script(PLANT, "plant.py")
    planted = world.run_safe(mode, str(planter))
    if "planted" not in planted.stdout:
        # The sandbox could not create scripts/ here (fallback mode's carving keeps new
        # entries out of the project root); the policy must be refused however it came.
        assert mode == "fallback", planted.stdout + planted.stderr
        world.run_plain(planter)
    scripts = world.project / "scripts"
    assert (scripts / "pyproject.toml").exists()

    later = world.run_safe(mode, "job.py", str(victim), cwd=scripts)
    assert later.returncode == 125, later.stdout + later.stderr
    assert "not approved yet" in later.stderr and "write: ~" in later.stderr
    assert "PLANTED" not in victim.read_text()
    # Control: the planted policy is what would have let it through.
    approve_policy(scripts, world.home)
    obeyed = world.run_safe(mode, "job.py", str(victim), cwd=scripts)
    assert obeyed.returncode == 0, obeyed.stderr
    assert "PLANTED-POLICY-ESCAPE" in victim.read_text()


APPROVAL_ATTACK = """
import os, sys
root, name = sys.argv[1], sys.argv[2]
approved = os.path.join(root, "approved")

def attempt(label, action):
    try:
        action()
        print(label, "done")
    except OSError as exc:
        print(label, "blocked", exc.errno)

def plant():
    with open(os.path.join(approved, name), "w") as f:
        f.write("forged")

def move_root():
    os.rename(root, root + "-moved")
    os.makedirs(approved)
    plant()

attempt("read", lambda: open(os.path.join(approved, name), "rb").read())
attempt("plant", plant)
attempt("move-root", move_root)
attempt("move-state", lambda: os.rename(os.path.dirname(root), os.path.dirname(root) + "-x"))
print("DONE")
"""


@sandboxed
def test_the_sandbox_cannot_approve_anything_even_with_write_home(
    tmp_path: Path, mode: str
) -> None:
    world = make_world(tmp_path, '[tool.safe-run.filesystem]\nwrite = ["~"]\n')
    root = state_root(str(world.home), {})
    assert root is not None and os.path.isdir(root)
    name = next(iter(os.listdir(os.path.join(root, "approved"))))
    script = world.write_script(APPROVAL_ATTACK)
    plain = world.run_plain(script, root, name)
    assert plain.stdout.splitlines()[:4] == [
        "read done",
        "plant done",
        "move-root done",
        "move-state done",
    ], plain.stdout + plain.stderr

    world = make_world(tmp_path / "boxed", '[tool.safe-run.filesystem]\nwrite = ["~"]\n')
    root = state_root(str(world.home), {})
    assert root is not None
    name = next(iter(os.listdir(os.path.join(root, "approved"))))
    script = world.write_script(APPROVAL_ATTACK)
    boxed = world.run_safe(mode, str(script), root, name)
    lines = boxed.stdout.splitlines()
    assert lines[-1] == "DONE", boxed.stdout + boxed.stderr
    for line in lines[:-1]:
        assert " blocked " in line, boxed.stdout
    assert os.listdir(os.path.join(root, "approved")) == [name]
    assert b"forged" not in (Path(root) / "approved" / name).read_bytes()


INDEX_PLANT = """
with open("uv.toml", "w") as f:
    f.write('[pip]\\nindex-url = "http://127.0.0.1:9/simple/"\\n')
print("planted")
"""


@sandboxed
def test_a_planted_uv_toml_is_not_used_by_the_next_install(tmp_path: Path, mode: str) -> None:
    world = make_world(tmp_path)
    set_policy(world, PROJECT_WRITE)
    world.approve()
    planter = world.write_script(INDEX_PLANT, "plant.py")
    planted = world.run_safe(mode, str(planter))
    if "planted" not in planted.stdout:  # as above: fallback mode's carving
        assert mode == "fallback", planted.stdout + planted.stderr
        world.run_plain(planter)
    assert (world.project / "uv.toml").exists()
    env = world.env()
    env.pop("VIRTUAL_ENV", None)
    install = subprocess.run(
        [str(SAFE_RUN.parent / "safe-pip"), "install", "--python", sys.executable, "six"],
        cwd=world.project, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert install.returncode == 125, install.stdout + install.stderr
    assert "http://127.0.0.1:9/simple/" in install.stderr and "not approved" in install.stderr
    assert not (world.project / ".venv").exists()


def test_a_projects_safe_pip_hosts_count_only_once_approved(tmp_path: Path) -> None:
    """``[tool.safe-pip] allow-hosts`` comes with the project: a cloned repository
    must not widen what the next install's builds reach without a word."""
    world = make_world(tmp_path)
    pyproject = world.project / "pyproject.toml"
    pyproject.write_text(
        pyproject.read_text() + '\n[tool.safe-pip]\nallow-hosts = ["exfil.example"]\n'
    )
    env = world.env()
    env.pop("VIRTUAL_ENV", None)
    argv = [str(SAFE_RUN.parent / "safe-pip"), "install", "--python", sys.executable, "six"]
    refused = subprocess.run(
        argv, cwd=world.project, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert refused.returncode == 125, refused.stdout + refused.stderr
    assert "[tool.safe-pip] build hosts" in refused.stderr
    assert "exfil.example" in refused.stderr and "safe-run allow" in refused.stderr
    assert not (world.project / ".venv").exists()
    approved = subprocess.run(
        [str(SAFE_RUN), "allow"], cwd=world.project, env=env, capture_output=True, text=True,
        check=False,
    )  # fmt: skip
    assert approved.returncode == 0, approved.stderr
    assert "approved the [tool.safe-pip] build hosts" in approved.stdout
