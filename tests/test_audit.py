"""The post-install audit, the venv rollback, and ``safe-pip list/uninstall/audit``.

Real venvs (``uv venv``), real wheels (built by :func:`net_servers.make_wheel`)
installed by real uv from a local ``--find-links`` directory; setuptools' real wheel
for the known-benign ``distutils-precedence.pth``.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from net_servers import make_wheel
from pkg_index import require_backend_wheels, uv_binary, uv_env

from safe_pip.installer.audit import (
    INERT_STARTUP_ENV,
    KNOWN_BENIGN_PTH,
    Finding,
    audit_venv,
    describe,
    findings_to_json,
    new_findings,
    site_packages_dirs,
    snapshot,
    startup_code,
)
from safe_pip.installer.rollback import BACKUP_PREFIX, VenvBackup

SAFE_PIP = Path(sys.executable).parent / "safe-pip"
BASE_PYTHON = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else sys.executable
needs_cli = pytest.mark.skipif(not SAFE_PIP.exists(), reason="safe-pip is not installed")

HOOK_PTH = "# a comment\nhooky_extra_path\nimport hooky\n"
HOOK_PTH_V2 = "import hooky  # version 2\n"


def _wheel(directory: Path, name: str, version: str, files: dict[str, str], ep: str = "") -> None:
    built = make_wheel(
        name, version, {k: v.encode() for k, v in files.items()}, entry_points=ep or None
    )
    (directory / built.filename).write_bytes(built.data)


@pytest.fixture(scope="module")
def wheels(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A find-links directory of small wheels with every kind of finding."""
    directory = tmp_path_factory.mktemp("wheels")
    scripts = (
        "[console_scripts]\nhooky-run = hooky.cli:main\n[gui_scripts]\nhooky-gui = hooky:gui\n"
    )
    package = {"hooky/__init__.py": "def gui(): pass\n", "hooky/cli.py": "def main(): pass\n"}
    _wheel(directory, "hooky", "1.0", {**package, "hooky_hook.pth": HOOK_PTH}, scripts)
    scripts_v2 = scripts.replace("[gui", "hooky-extra = hooky.cli:extra\n[gui")
    _wheel(directory, "hooky", "2.0", {**package, "hooky_hook.pth": HOOK_PTH_V2}, scripts_v2)
    _wheel(directory, "custom", "1.0", {"sitecustomize.py": "print('custom start')\n"})
    _wheel(directory, "plain", "1.0", {"plain/__init__.py": "", "plain.pth": "plain_extra\n"})
    _wheel(
        directory,
        "addon",
        "1.0",
        {"addon.py": "def main(): pass\n"},
        "[console_scripts]\naddon-run = addon:main [fancy]\n",
    )
    clobber = {"plain/__init__.py": "CLOBBERED = 1\n", "plain.pth": "import clobber\n"}
    _wheel(directory, "clobber", "1.0", {"clobber.py": "", **clobber})
    sneaky = {"sneaky.pth": "sneaky_dir\n", "sneaky_dir/sitecustomize.py": "print('hi')\n"}
    _wheel(directory, "sneaky", "1.0", sneaky)
    return directory


@pytest.fixture(scope="module")
def uv_home(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """uv's environment: a private home and cache, no config, no network use."""
    home = tmp_path_factory.mktemp("home")
    return uv_env(home, home / "uv-cache")


def make_venv(path: Path, env: dict[str, str]) -> Path:
    subprocess.run([uv_binary(), "venv", "-q", "-p", BASE_PYTHON, str(path)], env=env, check=True)
    return path


def uv_install(venv: Path, env: dict[str, str], links: Path, *args: str) -> None:
    argv = [uv_binary(), "pip", "install", "-q", "--python", str(venv / "bin" / "python")]
    argv += ["--no-index", "--find-links", str(links), *args]
    subprocess.run(argv, env=env, check=True)


def site(venv: Path) -> Path:
    (found,) = site_packages_dirs(str(venv))
    return Path(found)


# --- the audit --------------------------------------------------------------------------


def test_site_packages_found_by_listing(tmp_path: Path, uv_home: dict[str, str]) -> None:
    venv = make_venv(tmp_path / "venv", uv_home)
    found = site_packages_dirs(str(venv))
    assert len(found) == 1  # lib64 -> lib is the same directory, listed once
    assert found[0].startswith(str(venv / "lib" / "python")) and found[0].endswith("site-packages")


def test_audit_finds_startup_code_and_scripts_with_owners(
    tmp_path: Path, uv_home: dict[str, str], wheels: Path
) -> None:
    venv = make_venv(tmp_path / "venv", uv_home)
    uv_install(venv, uv_home, wheels, "hooky==1.0", "custom", "plain", "addon")
    findings = audit_venv(str(venv))
    sp = site(venv)
    table = {(f.kind, f.path): f for f in findings}
    assert table["pth-exec", str(sp / "hooky_hook.pth")] == Finding(
        "pth-exec", str(sp / "hooky_hook.pth"), "import hooky", "hooky"
    )
    assert table["sitecustomize", str(sp / "sitecustomize.py")].distribution == "custom"
    assert table["console-script", str(venv / "bin" / "hooky-run")].detail == "hooky.cli:main"
    assert table["gui-script", str(venv / "bin" / "hooky-gui")].distribution == "hooky"
    assert table["console-script", str(venv / "bin" / "addon-run")].detail == "addon:main"
    assert not [f for f in findings if "plain" in f.path]  # a path-only .pth runs nothing
    assert {f.kind for f in startup_code(str(venv))} == {"pth-exec", "sitecustomize"}

    lines = [describe(f) for f in findings]
    assert "console script bin/hooky-run -> hooky.cli:main (hooky)" in lines
    assert (
        "pth file site-packages/hooky_hook.pth runs code at every start: import hooky (hooky)"
        in lines
    )
    assert json.loads(json.dumps(findings_to_json(findings)))[0].keys() == {
        "kind",
        "path",
        "detail",
        "distribution",
    }


def test_sitecustomize_on_a_pth_path_line_is_startup_code(
    tmp_path: Path, uv_home: dict[str, str], wheels: Path
) -> None:
    venv = make_venv(tmp_path / "venv", uv_home)
    uv_install(venv, uv_home, wheels, "sneaky")
    (finding,) = startup_code(str(venv))
    assert finding.kind == "sitecustomize"
    assert finding.path == str(site(venv) / "sneaky_dir" / "sitecustomize.py")
    assert finding.distribution == "sneaky"
    # (Debian's Python ships a sitecustomize in its stdlib directory, which shadows
    # this one; builds without one, such as python.org's or uv's, import it.)


def test_setuptools_pth_is_benign_only_verbatim(tmp_path: Path, uv_home: dict[str, str]) -> None:
    venv = make_venv(tmp_path / "venv", uv_home)
    uv_install(venv, uv_home, require_backend_wheels(), "setuptools")
    pth = site(venv) / "distutils-precedence.pth"
    assert pth.read_text().rstrip() in KNOWN_BENIGN_PTH  # the real wheel's file
    (finding,) = audit_venv(str(venv))
    assert (finding.kind, finding.path, finding.distribution) == (
        "pth-exec",
        str(pth),
        "setuptools",
    )
    assert startup_code(str(venv)) == []

    # The env var keeps it from importing _distutils_hack (package code) at all.
    probe = [
        str(venv / "bin" / "python"),
        "-c",
        "import sys; print('_distutils_hack' in sys.modules)",
    ]
    plain = subprocess.run(probe, capture_output=True, text=True, env=uv_home, check=True)
    inert_env = {**uv_home, **INERT_STARTUP_ENV}
    inert = subprocess.run(probe, capture_output=True, text=True, env=inert_env, check=True)
    assert (plain.stdout, inert.stdout) == ("True\n", "False\n")

    pth.write_text(pth.read_text() + "import os; os.system('true')\n")
    (changed,) = startup_code(str(venv))
    assert changed.path == str(pth)


def test_new_findings_reports_only_what_changed(
    tmp_path: Path, uv_home: dict[str, str], wheels: Path
) -> None:
    venv = make_venv(tmp_path / "venv", uv_home)
    uv_install(venv, uv_home, wheels, "hooky==1.0", "custom")
    before = snapshot(str(venv))
    assert new_findings(str(venv), before) == []
    uv_install(venv, uv_home, wheels, "hooky==2.0", "addon")
    found = {(f.kind, os.path.basename(f.path), f.detail) for f in new_findings(str(venv), before)}
    assert found == {
        ("pth-exec", "hooky_hook.pth", "import hooky  # version 2"),  # same file, new bytes
        ("console-script", "hooky-extra", "hooky.cli:extra"),
        ("console-script", "addon-run", "addon:main"),
    }  # not hooky-run/hooky-gui (same targets), not sitecustomize (unchanged)


# --- rollback ---------------------------------------------------------------------------


def tree_state(root: Path) -> dict[str, tuple[object, ...]]:
    """Every entry: type, mode and bytes (or link target); nothing followed."""
    state: dict[str, tuple[object, ...]] = {}
    for directory, dirs, files in os.walk(root):
        for name in dirs + files:
            path = os.path.join(directory, name)
            info = os.lstat(path)
            key = os.path.relpath(path, root)
            if stat.S_ISLNK(info.st_mode):
                state[key] = ("link", os.readlink(path))
            elif stat.S_ISDIR(info.st_mode):
                state[key] = ("dir", info.st_mode)
            else:
                state[key] = ("file", info.st_mode, Path(path).read_bytes())
    return state


@pytest.mark.parametrize("link_mode", [None, "copy"])
def test_rollback_restores_after_a_real_upgrade(
    tmp_path: Path, uv_home: dict[str, str], wheels: Path, link_mode: str | None
) -> None:
    venv = make_venv(tmp_path / "venv", uv_home)
    mode_args = ("--link-mode", link_mode) if link_mode else ()
    uv_install(venv, uv_home, wheels, "hooky==1.0", "plain", *mode_args)
    readonly = venv / "readonly"  # its copy and the trash must still be removable
    readonly.mkdir()
    (readonly / "file").write_text("x")
    readonly.chmod(0o555)
    before = tree_state(venv)
    backup = VenvBackup.take(str(venv))
    assert Path(backup.directory).parent == tmp_path
    assert Path(backup.directory).name.startswith(BACKUP_PREFIX)
    assert stat.S_IMODE(os.stat(backup.directory).st_mode) == 0o700

    # An upgrade, a new dist, and a file of a dist that stays overwritten by another.
    uv_install(venv, uv_home, wheels, "hooky==2.0", "addon", "clobber", *mode_args)
    assert (site(venv) / "plain.pth").read_text() == "import clobber\n"
    assert tree_state(venv) != before
    backup.restore()
    assert tree_state(venv) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["venv"]
    readonly.chmod(0o755)


def test_rollback_discard_keeps_the_install(tmp_path: Path, uv_home: dict[str, str]) -> None:
    venv = make_venv(tmp_path / "venv", uv_home)
    before = tree_state(venv)
    backup = VenvBackup.take(str(venv))
    backup.discard()
    assert tree_state(venv) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["venv"]


# --- the commands ----------------------------------------------------------------------


def safe_pip(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if k != "VIRTUAL_ENV"}
    return subprocess.run(
        [str(SAFE_PIP), *args],
        cwd=cwd,
        env={**environment, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@pytest.fixture(scope="module")
def full_venv(
    tmp_path_factory: pytest.TempPathFactory, uv_home: dict[str, str], wheels: Path
) -> Path:
    venv = make_venv(tmp_path_factory.mktemp("full") / "venv", uv_home)
    uv_install(venv, uv_home, wheels, "hooky==1.0", "custom", "addon", "plain")
    return venv


@needs_cli
def test_list_reads_metadata(full_venv: Path) -> None:
    result = safe_pip("list", "--venv", str(full_venv), "--json", cwd=full_venv.parent)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == [
        {"name": "addon", "version": "1.0"},
        {"name": "custom", "version": "1.0"},
        {"name": "hooky", "version": "1.0"},
        {"name": "plain", "version": "1.0"},
    ]
    text = safe_pip("list", cwd=full_venv.parent, env={"VIRTUAL_ENV": str(full_venv)})
    rows = [line.split() for line in text.stdout.splitlines()]
    assert rows == [["addon", "1.0"], ["custom", "1.0"], ["hooky", "1.0"], ["plain", "1.0"]]


@needs_cli
def test_audit_command(full_venv: Path) -> None:
    text = safe_pip("audit", cwd=full_venv.parent)  # ./.venv does not exist there
    assert text.returncode == 125
    result = safe_pip("audit", "--venv", str(full_venv), cwd=full_venv.parent)
    assert result.returncode == 0, result.stderr
    assert "console script bin/hooky-run -> hooky.cli:main (hooky)" in result.stdout.splitlines()
    assert "sitecustomize module site-packages/sitecustomize.py" in result.stdout
    as_json = safe_pip("audit", "--venv", str(full_venv), "--json", cwd=full_venv.parent)
    report = json.loads(as_json.stdout)
    assert report["venv"] == str(full_venv)
    assert report["findings"] == findings_to_json(audit_venv(str(full_venv)))


@needs_cli
@pytest.mark.parametrize("command", ["list", "audit", "uninstall"])
def test_missing_venv_is_one_line_exit_125(tmp_path: Path, command: str) -> None:
    args = [command, "--venv", str(tmp_path / "absent")] + (["x"] if command == "uninstall" else [])
    result = safe_pip(*args, cwd=tmp_path)
    assert result.returncode == 125
    assert result.stdout == ""
    assert len(result.stderr.splitlines()) == 1, result.stderr
    assert "absent" in result.stderr and "Traceback" not in result.stderr


def spy_wheel(directory: Path, *markers: Path) -> None:
    """A wheel whose .pth writes each of ``markers`` at every interpreter start, if it can."""
    tries = "".join(
        f"try:\\n open({str(m)!r}, 'w').write('ran')\\nexcept OSError:\\n pass\\n" for m in markers
    )
    _wheel(directory, "pthspy", "1.0", {"pthspy.pth": f'import os; exec("{tries}")\n'})


@pytest.mark.sandbox
@needs_cli
def test_uninstall_runs_uv_in_the_sandbox(
    tmp_path: Path, uv_home: dict[str, str], wheels: Path, mode: str
) -> None:
    links = tmp_path / "links"
    shutil.copytree(wheels, links)
    outside = tmp_path / "outside"
    outside.mkdir()
    marker = outside / "marker"
    venv = tmp_path / "venv"
    inside = venv / "pthspy-ran"  # writable in the sandbox: proves the .pth ran there
    spy_wheel(links, marker, inside)
    make_venv(venv, uv_home)
    uv_install(venv, uv_home, links, "hooky==1.0", "pthspy")
    marker.unlink(missing_ok=True)  # uv's install ran the interpreter (and so the .pth)
    inside.unlink(missing_ok=True)
    os.chmod(tmp_path, 0o755)  # the unprivileged CI user traverses pytest's dirs

    env = {"SAFE_PIP_NO_USERNS": "1"} if mode == "fallback" else {}
    result = safe_pip("uninstall", "--venv", str(venv), "hooky", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert not (venv / "bin" / "hooky-run").exists()
    assert "hooky" not in {f.distribution for f in audit_venv(str(venv))}
    assert inside.read_text() == "ran"  # the .pth ran, inside the sandbox:
    assert not marker.exists()  # no write outside the venv

    # Without the sandbox the same uv command runs that .pth with the user's rights.
    fresh = {**uv_home, "UV_CACHE_DIR": str(tmp_path / "fresh-cache")}
    argv = [uv_binary(), "pip", "uninstall", "--python", str(venv / "bin" / "python"), "pthspy"]
    subprocess.run(argv, env=fresh, check=True, capture_output=True)
    assert marker.read_text() == "ran"
