"""Fail closed: without Landlock, safe-run refuses (125) unless --allow-degraded.

The kernel here has Landlock, so the test takes it away for real: a wrapper process
installs a seccomp filter that answers ENOSYS to the three Landlock syscalls (what a
kernel without Landlock answers) and then execs safe-run, which inherits the filter.
"""

from __future__ import annotations

import platform
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from sandbox_harness import SAFE_RUN, World, make_world

pytestmark = [
    pytest.mark.sandbox,
    pytest.mark.skipif(not SAFE_RUN.exists(), reason="safe-run is not installed next to python"),
    pytest.mark.skipif(
        platform.machine() not in ("x86_64", "aarch64"),
        reason="the wrapper's filter uses the unified syscall numbers 444-446",
    ),
]

#: Python source of the wrapper: a raw BPF program (load nr; 444..446 -> ENOSYS).
WRAPPER = textwrap.dedent(
    """
    import ctypes, os, struct, sys
    ENOSYS = 38
    RET_ALLOW, RET_ERRNO = 0x7FFF0000, 0x00050000
    def stmt(code, k):
        return struct.pack("HBBI", code, 0, 0, k)
    def jump(code, k, jt, jf):
        return struct.pack("HBBI", code, jt, jf, k)
    LD_W_ABS, JEQ_K, JGE_K, RET_K = 0x20, 0x15, 0x35, 0x06
    prog = b"".join([
        stmt(LD_W_ABS, 0),                 # seccomp_data.nr
        jump(JGE_K, 444, 0, 3),            # nr < 444 -> allow
        jump(JGE_K, 447, 2, 0),            # nr >= 447 -> allow
        stmt(RET_K, RET_ERRNO | ENOSYS),   # 444, 445, 446
        stmt(RET_K, RET_ALLOW),
        stmt(RET_K, RET_ALLOW),
        stmt(RET_K, RET_ALLOW),
    ])
    libc = ctypes.CDLL(None, use_errno=True)
    buf = ctypes.create_string_buffer(prog)
    class Fprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]
    fprog = Fprog(len(prog) // 8, ctypes.addressof(buf))
    assert libc.prctl(38, 1, 0, 0, 0) == 0            # PR_SET_NO_NEW_PRIVS
    assert libc.prctl(22, 2, ctypes.byref(fprog), 0, 0) == 0  # PR_SET_SECCOMP, FILTER
    os.execv(sys.argv[1], sys.argv[1:])
    """
)


def run_without_landlock(
    world: World, *args: str, mode: str = "namespace"
) -> subprocess.CompletedProcess[str]:
    wrapper = world.root / "no_landlock.py"
    wrapper.write_text(WRAPPER)
    return subprocess.run(
        [sys.executable, str(wrapper), *world.safe_run_argv(*args)],
        cwd=world.project,
        env=world.env(mode),
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


@pytest.fixture
def world(tmp_path: Path) -> World:
    return make_world(tmp_path)


@pytest.mark.parametrize("mode", ["namespace", "fallback"])
def test_refuses_without_landlock(world: World, mode: str) -> None:
    script = world.write_script("print('RAN')", "job.py")
    # Control: the same script runs under safe-run when Landlock is there.
    assert "RAN" in world.run_safe(mode, str(script)).stdout
    out = run_without_landlock(world, str(script), mode=mode)
    assert out.returncode == 125, out.stdout + out.stderr
    assert "RAN" not in out.stdout
    assert "Landlock" in out.stderr and "--allow-degraded" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.stderr


def test_allow_degraded_runs_with_remaining_layers(world: World) -> None:
    code = """
import os
print("RAN")
print("secret visible:", "SECRET_TOKEN" in os.environ)
"""
    script = world.write_script(code, "job.py")
    out = run_without_landlock(world, "--allow-degraded", str(script))
    assert out.returncode == 0, out.stderr
    assert "RAN" in out.stdout
    assert "secret visible: False" in out.stdout  # the environment layer still holds


def test_explain_reports_landlock_missing(world: World) -> None:
    out = run_without_landlock(world, "--explain")
    assert out.returncode == 0, out.stderr
    assert "landlock-filesystem: NOT in force" in out.stdout
    doctor = subprocess.run(
        [
            sys.executable,
            str(world.root / "no_landlock.py"),
            str(SAFE_RUN.parent / "safe-pip"),
            "doctor",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
        env=world.env(),
    )
    assert doctor.returncode == 1
    assert "landlock-filesystem  NO" in doctor.stdout
