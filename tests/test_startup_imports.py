"""``safe-run`` start-up: the run path imports nothing heavy.

Every module the supervisor loads is paid for on each sandboxed start, so the run path
avoids ``pathlib`` (which drags in ``re``, ``fnmatch``, ``urllib.parse`` and
``ipaddress``), ``typing``, ``dataclasses`` and friends.  Each check runs a fresh
interpreter with ``-S`` (no ``site``, so nothing is preloaded that could hide an
import) and lists which of those modules ended up in ``sys.modules``.

The last section checks that the pathlib-free helpers that replaced ``Path`` spell
and find paths exactly as pathlib did.
"""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import textwrap
from pathlib import Path, PurePosixPath

import pytest
from sandbox_harness import approve_policy

import safe_pip
from safe_pip.launcher.persistence import venv_protected_paths
from safe_pip.policy.model import pure_path

#: Modules the run path must never import (each costs milliseconds, or drags in ``re``).
HEAVY = (
    "enum",  # ~7 ms: comes with the `signal` wrapper and with IntFlag
    "signal",
    "pathlib",
    "re",
    "typing",
    "dataclasses",
    "inspect",
    "shutil",
    "socket",
    "tempfile",
    "urllib.parse",
    "ipaddress",
    "glob",
    "fnmatch",
    "tomllib",
    "tomli",
    "subprocess",
    "argparse",
    "difflib",
    "json",
    "hashlib",  # ~7 ms (OpenSSL): the policy cache uses the builtin _blake2 instead
    "ast",
    "dis",
    "click",
)
RUN_PATH_MODULES = (
    "safe_pip.cli.run",
    "safe_pip.launcher.supervisor",
    "safe_pip.launcher.plan",
    "safe_pip.policy.loader",
    "safe_pip.policy.profiles",
)
#: The directory that holds the ``safe_pip`` package under test.
PACKAGE_PARENT = os.path.dirname(os.path.dirname(os.path.abspath(safe_pip.__file__)))

#: Prints which HEAVY modules are loaded, as one line (appended to every snippet; it
#: must not import anything itself: even ``json`` would bring in ``re``).
REPORT = f"""
import sys as _sys
print("loaded:" + ",".join(sorted(m for m in {HEAVY!r} if m in _sys.modules)))
"""


def heavy_imports(code: str, cwd: Path | None = None, **env: str) -> list[str]:
    """The HEAVY modules loaded after running ``code`` in a fresh ``python -S``."""
    variables = {**os.environ, **env, "PYTHONPATH": PACKAGE_PARENT}
    result = subprocess.run(
        [sys.executable, "-S", "-c", textwrap.dedent(code) + REPORT],
        env=variables,
        cwd=cwd,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    last = result.stdout.splitlines()[-1]
    assert last.startswith("loaded:"), result.stdout
    return [name for name in last[len("loaded:") :].split(",") if name]


def make_project(directory: Path, table: str | None) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    text = '[project]\nname = "demo"\nversion = "1"\n'
    if table is not None:
        text += "\n[tool.safe-run]\n" + table
    (directory / "pyproject.toml").write_text(text, encoding="utf-8")
    return directory


# -- imports ------------------------------------------------------------------------------


def test_the_interpreter_alone_loads_none_of_them() -> None:
    """The baseline: otherwise the checks below could not see an import."""
    assert heavy_imports("pass") == []


def test_importing_the_run_path_loads_nothing_heavy() -> None:
    assert heavy_imports("import " + ", ".join(RUN_PATH_MODULES)) == []


def test_loading_a_policy_without_a_table_loads_nothing_heavy(tmp_path: Path) -> None:
    project = make_project(tmp_path / "p", None)
    code = f"""
        from safe_pip.policy.loader import CliOverrides, load_policy
        policy = load_policy(cwd={str(project)!r}, project=None, overrides=CliOverrides(),
                             variables={{}}, home="/home/x")
        assert policy.sources == ("profile:base",), policy.sources
        assert policy.pyproject is None and policy.project_dir == {str(project)!r}
    """
    assert heavy_imports(code) == []


def test_a_safe_run_table_is_parsed_with_tomllib(tmp_path: Path) -> None:
    """The counterpart: the check above does see tomllib (which brings ``re`` and
    ``typing`` along: hence parsing only pyprojects that mention safe-run)."""
    project = make_project(tmp_path / "p", 'network = "none"\n')
    code = f"""
        from safe_pip.policy.loader import CliOverrides, load_policy
        load_policy(cwd={str(project)!r}, project=None, overrides=CliOverrides(),
                    variables={{}}, home="/home/x")
    """
    loaded = heavy_imports(code)
    assert "tomllib" in loaded or "tomli" in loaded
    assert "pathlib" not in loaded


def test_a_cached_safe_run_table_is_not_parsed_again(tmp_path: Path) -> None:
    """The policy cache: the first load parses and writes an entry, a fresh process
    then gets the table from the entry, without tomllib (nor re, nor typing)."""
    project = make_project(tmp_path / "p", 'network = "none"\nfilesystem.read = ["data"]\n')
    home = tmp_path / "home"
    home.mkdir()
    code = f"""
        from safe_pip.policy.loader import CliOverrides, load_policy
        policy = load_policy(cwd={str(project)!r}, project=None, overrides=CliOverrides(),
                             variables={{}}, home={str(home)!r})
        assert {str(project / "data")!r} in policy.filesystem.read
    """
    assert "tomllib" in heavy_imports(code)
    assert heavy_imports(code) == []
    assert heavy_imports(code, SAFE_PIP_NO_CACHE="1") == []  # variables={}: still cached
    opted_out = code.replace("variables={}", 'variables={"SAFE_PIP_NO_CACHE": "1"}')
    assert "tomllib" in heavy_imports(opted_out)


@pytest.mark.parametrize("table", [None, 'filesystem.read = ["data"]\n'])
def test_a_whole_run_up_to_the_fork_loads_nothing_heavy(tmp_path: Path, table: str | None) -> None:
    """``safe-run -- python -c pass`` stopped at the fork, in a project without a table
    or with one (then the first run parses it and the second gets it from the cache).

    ``run_sandboxed`` is replaced by a stand-in that does the supervisor's pre-fork
    work (private root, Landlock rules) and the child's computations (fallback rules,
    seccomp filter), so everything but the kernel calls runs in this process.
    """
    project = make_project(tmp_path / "p", table)
    home = tmp_path / "home"
    home.mkdir()
    code = f"""
        import sys
        from safe_pip.cli import run
        from safe_pip.launcher import child, supervisor
        from safe_pip.sandbox.mounts import prepare_root
        from safe_pip.sandbox.seccomp import build_filter

        seen = []

        def stand_in(plan, **_options):
            prepare_root(child.mount_plan(plan))
            for mode in ("namespace", "fallback"):
                child.landlock_rules_for(plan, mode)
                build_filter(child.seccomp_options(plan, mode))
            seen.append(plan)
            return 0

        supervisor.run_sandboxed = stand_in
        argv = ["--allow-degraded", "--", {sys.executable!r}, "-c", "pass"]
        assert run.run(run.parse_args(argv)) == 0
        assert len(seen) == 1 and seen[0].cwd == {str(project)!r}
    """
    env = {"HOME": str(home), "TMPDIR": str(tmp_path), "XDG_CACHE_HOME": str(tmp_path / "xdg")}
    if table is not None:
        approve_policy(project, home, env)  # the approved path is the one timed here
        assert "tomllib" in heavy_imports(code, cwd=project, **env)
    assert heavy_imports(code, cwd=project, **env) == []


# -- the pathlib-free replacements behave like pathlib -----------------------------------


def test_pure_path_spells_paths_as_pathlib_does() -> None:
    pieces = ("/", "a", ".", "..", "b/")
    for length in range(7):
        for parts in itertools.product(pieces, repeat=length):
            path = "".join(parts)
            assert pure_path(path) == str(PurePosixPath(path)), path


def _glob_reference(venv: Path) -> list[str]:
    """What ``venv_protected_paths`` computed with pathlib before it went without."""
    protected = [venv / "bin", venv / "pyvenv.cfg", venv / "pip.conf", venv / "safe-pip.cfg"]
    for site in venv.glob("lib*/python*/site-packages"):
        protected.extend(sorted(site.glob("*.pth")))
        protected.extend(site / name for name in ("sitecustomize.py", "usercustomize.py"))
    return [str(path) for path in protected]


@pytest.fixture
def odd_venv(tmp_path: Path) -> Path:
    """A venv with the corner cases of glob matching: links, hidden and odd names."""
    venv = tmp_path / "venv"
    site = venv / "lib" / "python3.11" / "site-packages"
    site.mkdir(parents=True)
    (venv / "lib" / "python3.12" / "site-packages").mkdir(parents=True)
    (venv / "lib" / "python-no-site").mkdir()
    (venv / "lib" / "pythonfile").touch()
    (venv / "lib64").symlink_to("lib")  # usual on Debian-style venvs
    (venv / "libbroken").symlink_to(tmp_path / "nowhere")
    (venv / "libfile").touch()
    (venv / ".lib").mkdir()
    (venv / "bin").mkdir()
    (venv / "pyvenv.cfg").touch()
    for name in ("b.pth", "a.pth", ".hidden.pth", ".pth", "UPPER.PTH", "x.pthx", "pth"):
        (site / name).touch()
    (site / "dir.pth").mkdir()
    (site / "dangling.pth").symlink_to(tmp_path / "nowhere")
    return venv


def test_venv_protected_paths_match_the_glob_they_replace(odd_venv: Path) -> None:
    found = venv_protected_paths(str(odd_venv))
    assert found == _glob_reference(odd_venv)
    site = f"{odd_venv}/lib64/python3.11/site-packages"
    assert f"{site}/a.pth" in found and f"{site}/.hidden.pth" in found
    assert f"{site}/UPPER.PTH" not in found


def test_venv_protected_paths_of_a_missing_venv(tmp_path: Path) -> None:
    missing = tmp_path / "missing"
    assert venv_protected_paths(str(missing)) == _glob_reference(missing)
    assert venv_protected_paths(str(missing)) == [
        f"{missing}/bin",
        f"{missing}/pyvenv.cfg",
        f"{missing}/pip.conf",
        f"{missing}/safe-pip.cfg",
    ]


def test_venv_protected_paths_of_this_interpreter() -> None:
    venv = Path(sys.prefix)
    assert venv_protected_paths(sys.prefix) == _glob_reference(venv)


def test_installed_safe_run_launcher_stays_lean(tmp_path: Path) -> None:
    """The installed ``safe-run`` script itself (not an installer-generated wrapper,
    which may ``import re``) loads none of the heavy modules up to its exit."""
    launcher = Path(sys.executable).parent / "safe-run"
    if not launcher.exists():
        pytest.skip("safe-run is not installed next to this python")
    first_line = launcher.read_text(encoding="utf-8").splitlines()[0]
    assert first_line.startswith("#!") and "python" in first_line
    result = subprocess.run(
        [sys.executable, "-X", "importtime", str(launcher), "--version"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    imported = {line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines()}
    assert "safe_pip.cli.run" in imported
    assert not imported & set(HEAVY), sorted(imported & set(HEAVY))


# -- garbage collection during start-up ---------------------------------------------------


def test_the_launcher_starts_without_cyclic_gc() -> None:
    """scripts/safe-run turns collection off before its first import (start-up
    allocates enough to run about a dozen collections)."""
    launcher = Path(PACKAGE_PARENT) / "scripts" / "safe-run"
    if not launcher.exists():
        pytest.skip("not a source checkout")
    code = launcher.read_text(encoding="utf-8")
    assert code.index("gc.disable()") < code.index("from safe_pip")


def test_resume_gc_freezes_then_enables_only_when_it_was_off() -> None:
    import gc

    from safe_pip.launcher.child import resume_gc

    was_enabled = gc.isenabled()
    try:
        gc.enable()
        frozen = gc.get_freeze_count()
        resume_gc()  # on already (safe-pip, tests): nothing to do
        assert gc.isenabled() and gc.get_freeze_count() == frozen
        gc.disable()
        resume_gc()
        assert gc.isenabled() and gc.get_freeze_count() > frozen
    finally:
        gc.unfreeze()
        if not was_enabled:
            gc.disable()
