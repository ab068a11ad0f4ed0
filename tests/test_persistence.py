"""Attack tests: nothing the sandbox writes may run, or widen trust, outside it later.

A careful attacker does not break out of the sandbox; it leaves something behind that
a trusted tool runs or obeys after the run: a setuid binary, a git hook, a ``.pth``
file, a policy.  Every test runs the attack plainly first (it must work, or the test
could not tell), then under ``safe-run`` in both modes, where it must fail while the
script itself still runs to the end.
"""

from __future__ import annotations

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
