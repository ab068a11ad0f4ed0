"""What an install leaves in a venv that runs later: every executable is seen.

Real uv, real wheels from a local index.  The attacks: a wheel that drops ``ls`` and
``git`` into ``bin/`` through its ``.data`` directories (no console script declared),
so that they shadow the real commands in an activated venv; a ``.pth`` line carrying
terminal escapes that would erase the audit's own warning; a wrapped tool that an
upgrade silently replaces with an unwrapped one.
"""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

import pytest
from net_servers import make_wheel
from pkg_index import LocalIndex, uv_binary, uv_env
from sandbox_harness import World, make_world
from test_install_cli import SAFE_PIP, outcome, safe_pip

pytestmark = [
    pytest.mark.sandbox,
    pytest.mark.skipif(not SAFE_PIP.exists(), reason="safe-pip is not installed next to python"),
]

EVIL_LS = b"#!/bin/sh\necho EVIL-LS-RAN\n"
EVIL_GIT = b"#!/bin/sh\necho EVIL-GIT-RAN\n"
ESCAPES = "\x1b[1G\x1b[2K\x1b[8m"


@pytest.fixture
def world(tmp_path: Path) -> World:
    return make_world(tmp_path)


@pytest.fixture(scope="module")
def wheels(index: LocalIndex) -> LocalIndex:
    """The module's index, plus this file's wheels."""
    for wheel in (
        make_wheel(
            "shadowy",
            "1.0",
            {
                "shadowy/__init__.py": b"",
                "shadowy-1.0.data/scripts/ls": EVIL_LS,
                "shadowy-1.0.data/data/bin/git": EVIL_GIT,
            },
        ),
        make_wheel("escapy", "1.0", {"zz_escapy.pth": f"import os  # {ESCAPES}\n".encode()}),
        *(
            make_wheel(
                "toolx",
                version,
                {"toolx.py": f"def main():\n    print('toolx {version}')\n".encode()},
                entry_points="[console_scripts]\ntoolx = toolx:main\n",
            )
            for version in ("1.0", "2.0")
        ),
    ):
        (index.directory / wheel.filename).write_bytes(wheel.data)
    return index


def plain_uv_install(venv: Path, home: Path, index: LocalIndex, *packages: str) -> None:
    env = uv_env(home, home / "uv-cache")
    subprocess.run(
        [uv_binary(), "venv", "-q", "-p", sys.executable, str(venv)], env=env, check=True
    )
    argv = [uv_binary(), "pip", "install", "-q", "--python", str(venv / "bin" / "python")]
    subprocess.run([*argv, "-i", index.url, *packages], env=env, check=True)


def activated(venv: Path, command: str) -> str:
    """``command`` run the way a user runs it: in a shell with the venv activated."""
    shell = f". {venv}/bin/activate && {command}"
    ran = subprocess.run(["bash", "-c", shell], capture_output=True, text=True, check=False)
    return ran.stdout + ran.stderr


def test_executables_dropped_into_bin_are_reported_and_refused(
    world: World, wheels: LocalIndex
) -> None:
    # Control: installed plainly, the wheel's ls runs instead of the real one.
    plain = world.root / "plain"
    plain_uv_install(plain, world.home, wheels, "shadowy")
    assert "EVIL-LS-RAN" in activated(plain, "ls")

    venv = world.root / "venv"
    result = safe_pip(world, "namespace", "--venv", str(venv), "-i", wheels.url, "shadowy")
    assert result.returncode == 0, result.stderr
    findings = outcome(result)["findings"]
    assert isinstance(findings, list)
    kinds = [(f["kind"], Path(f["path"]).name) for f in findings]
    # The most severe first: a name that shadows a command on PATH.
    assert kinds[0] == ("shadows-command", "ls"), kinds
    assert ("executable", "ls") in kinds and ("executable", "git") in kinds
    assert all(f["distribution"] == "shadowy" for f in findings)
    assert "bin/ls shadows the command" in result.stderr

    audit = subprocess.run(
        [str(SAFE_PIP), "audit", "--json", "--venv", str(venv)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    audited = json.loads(audit.stdout)["findings"]
    assert ("shadows-command", "ls") in [(f["kind"], Path(f["path"]).name) for f in audited]

    strict = world.root / "strict"
    subprocess.run([uv_binary(), "venv", "-q", "-p", sys.executable, str(strict)], check=True)
    refused = safe_pip(
        world, "namespace", "--venv", str(strict), "-i", wheels.url, "--strict", "shadowy"
    )
    assert refused.returncode == 1 and "--strict" in refused.stderr
    assert not (strict / "bin" / "ls").exists() and not (strict / "bin" / "git").exists()
    assert "EVIL-LS-RAN" not in activated(strict, "ls /")


def test_wrap_scripts_wraps_dropped_executables_too(world: World, wheels: LocalIndex) -> None:
    venv = world.root / "venv"
    result = safe_pip(
        world, "namespace", "--venv", str(venv), "-i", wheels.url, "--wrap-scripts", "shadowy"
    )
    assert result.returncode == 0, result.stderr
    assert outcome(result)["wrapped_scripts"] == ["ls"]
    assert b"safe-pip: wrapped" in (venv / "bin" / "ls").read_bytes()


def test_package_text_never_reaches_the_terminal_raw(world: World, wheels: LocalIndex) -> None:
    venv = world.root / "venv"
    result = safe_pip(world, "namespace", "--venv", str(venv), "-i", wheels.url, "escapy")
    assert result.returncode == 0, result.stderr
    [line] = [line for line in result.stderr.splitlines() if "zz_escapy.pth" in line]
    assert "\x1b" not in line and "?[1G?[2K?[8m" in line
    assert outcome(result)["findings"][0]["detail"].endswith(ESCAPES)  # type: ignore[index]

    # At a terminal, the attributes a build may have left (conceal) are reset first.
    master, slave = pty.openpty()
    env = world.env("namespace")
    env.pop("VIRTUAL_ENV", None)
    again = world.root / "again"
    argv = [str(SAFE_PIP), "install", "--python", sys.executable, "--venv", str(again)]
    process = subprocess.Popen(
        [*argv, "-i", wheels.url, "escapy"],
        cwd=world.project, env=env, stdin=subprocess.DEVNULL, stdout=slave, stderr=slave,
    )  # fmt: skip
    os.close(slave)
    seen = b""
    deadline = time.monotonic() + 120
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
        elif process.poll() is not None:
            break
    process.wait(timeout=30)
    os.close(master)
    before_audit = seen.split(b"safe-pip: audit:")[0]
    assert b"\x1b[0m" in before_audit, seen
    assert ESCAPES.encode() not in seen


def test_wrapping_is_a_property_of_the_venv(world: World, wheels: LocalIndex) -> None:
    venv = world.root / "venv"
    bin_dir = venv / "bin"
    first = safe_pip(
        world, "namespace", "--venv", str(venv), "-i", wheels.url, "--wrap-scripts", "toolx==1.0"
    )
    assert first.returncode == 0, first.stderr
    assert outcome(first)["wrapped_scripts"] == ["toolx"]
    # A plain upgrade later: the new script is wrapped again, and the output says so.
    upgrade = safe_pip(world, "namespace", "--venv", str(venv), "-i", wheels.url, "toolx==2.0")
    assert upgrade.returncode == 0, upgrade.stderr
    assert outcome(upgrade)["installed"] == ["toolx==2.0"]
    assert outcome(upgrade)["wrapped_scripts"] == ["toolx"]
    assert "safe-pip: wrapped toolx" in upgrade.stderr
    assert b"safe-pip: wrapped" in (bin_dir / "toolx").read_bytes()
    original = bin_dir / ".safe-pip-wrapped" / "toolx"
    ran = subprocess.run([str(original)], capture_output=True, text=True, check=False)
    assert "toolx 2.0" in ran.stdout
    audit = subprocess.run(
        [str(SAFE_PIP), "audit", "--json", "--venv", str(venv)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert "not-wrapped" not in audit.stdout

    # A script that should be wrapped and is not is reported.
    (bin_dir / "toolx").write_text("#!/bin/sh\necho unwrapped\n")
    audit = subprocess.run(
        [str(SAFE_PIP), "audit", "--venv", str(venv)], capture_output=True, text=True, check=False
    )
    assert "bin/toolx is not wrapped although this venv wraps its scripts" in audit.stdout

    # uninstall leaves no wrapper record behind.
    env = world.env()
    env.pop("VIRTUAL_ENV", None)
    gone = subprocess.run(
        [str(SAFE_PIP), "uninstall", "--venv", str(venv), "toolx"],
        env=env, capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    assert gone.returncode == 0, gone.stderr
    assert not (bin_dir / "toolx").exists()
    assert not original.exists()
