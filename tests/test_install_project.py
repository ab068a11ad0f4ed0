"""uv's project workflow through safe-pip: ``add``, ``lock``, ``sync --locked/--frozen``,
``remove``, from the project root and from a subdirectory of a ``uv init``-style
project (uv_build backend), against a real local index.

The attack: ``uv lock`` (and ``uv add``, which locks) builds the metadata of an
sdist dependency by running its ``setup.py``.  Bare, that code appends to the
user's ``~/.bashrc`` (the control); through ``safe-pip lock`` it runs confined and
the file stays as it was, while the lock is still written.
"""

from __future__ import annotations

import secrets
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from pkg_index import (
    ATTACK_BASHRC,
    BENIGN_WHEEL,
    LocalIndex,
    build_fixture_packages,
    malicious_sdist,
    render_attack,
    require_backend_wheels,
    seed_build_backends,
    uv_binary,
)
from sandbox_harness import World, make_world
from test_install_cli import SAFE_PIP

pytestmark = [
    pytest.mark.sandbox,
    pytest.mark.skipif(not SAFE_PIP.exists(), reason="safe-pip is not installed next to python"),
]

MARKER = "safe-pip-lock-attack-" + secrets.token_hex(4)


@pytest.fixture(scope="module")
def project_index(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalIndex]:
    directory = tmp_path_factory.mktemp("project-index")
    build_fixture_packages(directory)
    seed_build_backends(directory, require_backend_wheels())
    for path in (directory, *directory.iterdir()):
        path.chmod(0o755 if path.is_dir() else 0o644)
    with LocalIndex(directory) as index:
        yield index


@pytest.fixture
def world(tmp_path: Path) -> World:
    return make_world(tmp_path)


def uv_init_project(root: Path, name: str = "app") -> Path:
    """What ``uv init --package`` makes, written out (uv_build backend in our uv's
    own version range, src layout, a console script)."""
    from importlib.metadata import version

    ours = version("uv")
    major, minor = (int(part) for part in ours.split(".")[:2])
    project = root / name
    (project / "src" / name).mkdir(parents=True)
    (project / "pyproject.toml").write_text(
        textwrap.dedent(f"""\
        [project]
        name = "{name}"
        version = "0.1.0"
        description = "Add your description here"
        requires-python = ">=3.9"
        dependencies = []

        [project.scripts]
        {name} = "{name}:main"

        [build-system]
        requires = ["uv_build>={ours},<{major}.{minor + 1}.0"]
        build-backend = "uv_build"
        """)
    )
    (project / "src" / name / "__init__.py").write_text("def main():\n    print('hello')\n")
    for path in (project, *project.rglob("*")):
        path.chmod(0o755 if path.is_dir() else 0o644)
    return project


def safe_pip(
    world: World, mode: str, cwd: Path, index: LocalIndex, *args: str
) -> subprocess.CompletedProcess[str]:
    env = world.env(mode, UV_DEFAULT_INDEX=index.url, UV_PYTHON_DOWNLOADS="never")
    env.pop("VIRTUAL_ENV", None)
    return subprocess.run(
        [str(SAFE_PIP), *args], cwd=cwd, env=env, capture_output=True, text=True,
        timeout=300, check=False,
    )  # fmt: skip


def dependencies(project: Path) -> list[str]:
    import tomllib

    data = tomllib.loads((project / "pyproject.toml").read_text())
    found = data["project"]["dependencies"]
    assert isinstance(found, list)
    return found


def venv_names(venv: Path) -> set[str]:
    return {
        info.name.split("-")[0].lower().replace("_", "-")
        for info in (venv / "lib").glob("python*/site-packages/*.dist-info")
    }


def test_add_lock_sync_remove_from_the_root_and_a_subdirectory(
    world: World, mode: str, project_index: LocalIndex
) -> None:
    project = uv_init_project(world.root)
    added = safe_pip(world, mode, project, project_index, "add", BENIGN_WHEEL)
    assert added.returncode == 0, added.stdout + added.stderr
    assert dependencies(project) == [f"{BENIGN_WHEEL}>=0.1.0"], "uv's lower bound"
    assert BENIGN_WHEEL in (project / "uv.lock").read_text()
    venv = project / ".venv"
    assert {BENIGN_WHEEL, "app"} <= venv_names(venv)
    ran = subprocess.run([str(venv / "bin" / "app")], capture_output=True, text=True, check=False)
    assert ran.stdout.strip() == "hello"

    sub = project / "src" / "app"
    locked = safe_pip(world, mode, sub, project_index, "sync", "--locked")
    assert locked.returncode == 0, locked.stdout + locked.stderr
    assert not (sub / ".venv").exists()

    # A hand edit makes the lock stale: --locked refuses, --frozen installs it as it is.
    text = (project / "pyproject.toml").read_text()
    (project / "pyproject.toml").write_text(
        text.replace(f'"{BENIGN_WHEEL}>=0.1.0"', f'"{BENIGN_WHEEL}>=0.1.0", "benign-sdist"')
    )
    stale = safe_pip(world, mode, sub, project_index, "sync", "--locked")
    assert stale.returncode == 125, stale.stdout + stale.stderr
    assert "is not up to date" in stale.stderr and "safe-pip lock" in stale.stderr
    frozen = safe_pip(world, mode, sub, project_index, "sync", "--frozen")
    assert frozen.returncode == 0, frozen.stderr
    assert "benign-sdist" not in venv_names(venv)
    relocked = safe_pip(world, mode, sub, project_index, "lock")
    assert relocked.returncode == 0, relocked.stderr
    assert "benign-sdist" in (project / "uv.lock").read_text()

    removed = safe_pip(world, mode, sub, project_index, "remove", BENIGN_WHEEL)
    assert removed.returncode == 0, removed.stdout + removed.stderr
    assert dependencies(project) == ["benign-sdist"]
    assert BENIGN_WHEEL not in venv_names(venv) and "benign-sdist" in venv_names(venv)


def test_path_and_url_requirements_are_refused_by_add(
    world: World, project_index: LocalIndex
) -> None:
    project = uv_init_project(world.root)
    before = (project / "pyproject.toml").read_text()
    for requirement in ("./elsewhere", "pkg @ https://example.org/pkg.whl"):
        result = safe_pip(world, "namespace", project, project_index, "add", requirement)
        assert result.returncode == 125, result.stderr
        assert "takes requirements from an index" in result.stderr
    assert (project / "pyproject.toml").read_text() == before


def test_locking_runs_metadata_builds_confined(
    world: World, mode: str, project_index: LocalIndex, tmp_path: Path
) -> None:
    attack = render_attack(ATTACK_BASHRC, home=str(world.home), marker=MARKER)
    evil = tmp_path / "evil-index"
    evil.mkdir()
    malicious_sdist(evil, "lock-time-evil", attack)
    for wheel in project_index.directory.iterdir():
        if wheel.name.startswith(("setuptools", "wheel")):
            (evil / wheel.name).write_bytes(wheel.read_bytes())
    for path in (evil, *evil.iterdir()):
        path.chmod(0o755 if path.is_dir() else 0o644)
    bashrc = world.home / ".bashrc"
    with LocalIndex(evil) as index:
        # The control: bare uv lock runs setup.py with the user's rights.
        control = uv_init_project(tmp_path / "control")
        text = (control / "pyproject.toml").read_text()
        (control / "pyproject.toml").write_text(
            text.replace("dependencies = []", 'dependencies = ["lock-time-evil"]')
        )
        env = {**world.env(), "UV_NO_CONFIG": "1", "UV_CACHE_DIR": str(tmp_path / "uv-cache")}
        bare = subprocess.run(
            [str(uv_binary()), "lock", "--default-index", index.url, "--project", str(control),
             "--python", sys.executable],
            env=env, capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert bare.returncode == 0, bare.stderr
        assert MARKER in bashrc.read_text(), "the attack must work without the sandbox"
        bashrc.write_text("# bashrc\n")

        project = uv_init_project(world.root)
        text = (project / "pyproject.toml").read_text()
        (project / "pyproject.toml").write_text(
            text.replace("dependencies = []", 'dependencies = ["lock-time-evil"]')
        )
        pyproject = (project / "pyproject.toml").read_bytes()
        locked = safe_pip(world, mode, project, index, "lock")
    assert locked.returncode == 0, locked.stdout + locked.stderr
    assert "lock-time-evil" in (project / "uv.lock").read_text()
    assert MARKER not in bashrc.read_text()
    assert (project / "pyproject.toml").read_bytes() == pyproject


def test_an_edit_outside_the_dependency_list_is_not_taken() -> None:
    from safe_pip.errors import SafePipError
    from safe_pip.installer.project import _check_edit

    before = b'[project]\nname = "app"\ndependencies = []\n'
    good = b'[project]\nname = "app"\ndependencies = ["six>=1"]\n'
    _check_edit(before, good, ("project", "dependencies"), "add", ["six"], ["six"])
    planted = good + b'\n[tool.safe-run.filesystem]\nwrite = ["~"]\n'
    with pytest.raises(SafePipError, match=r"outside project\.dependencies"):
        _check_edit(before, planted, ("project", "dependencies"), "add", ["six"], ["six"])
    extra = b'[project]\nname = "app"\ndependencies = ["six>=1", "evil"]\n'
    with pytest.raises(SafePipError, match=r"not change project\.dependencies as asked"):
        _check_edit(before, extra, ("project", "dependencies"), "add", ["six"], ["six"])


PLANT_PTH = """\
import glob, os
here = os.path.dirname(os.path.abspath(__file__))
for site in glob.glob(os.path.join(here, ".venv", "lib", "python*", "site-packages")):
    try:
        with open(os.path.join(site, "zz_planted.pth"), "w") as out:
            out.write("import os; os.environ['PLANTED'] = '1'\\n")
    except OSError:
        pass
"""


def test_an_editable_build_cannot_plant_code_in_the_projects_venv(
    world: World, mode: str, project_index: LocalIndex
) -> None:
    """The editable build may write the project (egg-info, build dirs), not the
    project's own .venv: a .pth there would run at its next start, unsandboxed."""
    project = world.root / "planter"
    (project / "planter").mkdir(parents=True)
    (project / "planter" / "__init__.py").write_text("")
    (project / "pyproject.toml").write_text(
        '[build-system]\nrequires = ["setuptools>=61"]\nbuild-backend = "setuptools.build_meta"\n'
        '\n[project]\nname = "planter"\nversion = "1.0"\n'
    )
    (project / "setup.py").write_text(PLANT_PTH + "from setuptools import setup\nsetup()\n")
    for path in (project, *project.rglob("*")):
        path.chmod(0o755 if path.is_dir() else 0o644)
    env = {**world.env(), "UV_NO_CONFIG": "1", "UV_CACHE_DIR": str(world.root / "uv-cache")}
    venv = project / ".venv"
    subprocess.run([str(uv_binary()), "venv", "-q", "--python", sys.executable, str(venv)],
                   env=env, check=True)  # fmt: skip
    planted = list(venv.glob("lib/python*/site-packages/zz_planted.pth"))
    assert planted == []
    # The control: bare uv runs the build with the user's rights, and the plant lands.
    bare = subprocess.run(
        [str(uv_binary()), "pip", "install", "--python", str(venv / "bin" / "python"),
         "--index-url", project_index.url, "-e", str(project)],
        env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert bare.returncode == 0, bare.stderr
    assert list(venv.glob("lib/python*/site-packages/zz_planted.pth")), "the attack works bare"
    for pth in venv.glob("lib/python*/site-packages/zz_planted.pth"):
        pth.unlink()
    result = safe_pip(world, mode, project, project_index, "install", "-e", ".")
    assert result.returncode == 0, result.stdout + result.stderr
    assert list(venv.glob("lib/python*/site-packages/zz_planted.pth")) == []
    ran = subprocess.run([str(venv / "bin" / "python"), "-c", "import planter, os; "
                          "print(os.environ.get('PLANTED'))"], capture_output=True, text=True,
                         check=False)  # fmt: skip
    assert ran.stdout.strip() == "None", ran.stdout + ran.stderr


def test_sync_locks_again_whenever_the_project_changed(
    world: World, project_index: LocalIndex
) -> None:
    """A sync right after a lock skips the sandboxed ``uv lock`` (nothing it reads has
    changed: installer/fresh_locks.py), but one byte changed in ``pyproject.toml`` or
    ``uv.lock`` means locking again: a dependency added by hand is installed."""
    project = uv_init_project(world.root)
    first = safe_pip(world, "namespace", project, project_index, "add", BENIGN_WHEEL)
    assert first.returncode == 0, first.stdout + first.stderr
    again = safe_pip(world, "namespace", project, project_index, "sync")
    assert again.returncode == 0, again.stdout + again.stderr
    text = (project / "pyproject.toml").read_text()
    (project / "pyproject.toml").write_text(
        text.replace(f'"{BENIGN_WHEEL}>=0.1.0"', f'"{BENIGN_WHEEL}>=0.1.0", "benign-sdist"')
    )
    edited = safe_pip(world, "namespace", project, project_index, "sync")
    assert edited.returncode == 0, edited.stdout + edited.stderr
    assert "benign-sdist" in (project / "uv.lock").read_text()
    assert "benign-sdist" in venv_names(project / ".venv")
    # The lock itself edited by hand (an old copy put back): locked again too.
    (project / "uv.lock").write_text((project / "uv.lock").read_text() + "\n")
    relocked = safe_pip(world, "namespace", project, project_index, "sync", "--locked")
    assert relocked.returncode == 0, relocked.stdout + relocked.stderr
