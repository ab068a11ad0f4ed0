"""Utility tests: ordinary programs keep working inside the sandbox, in both modes."""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sandbox_harness import SAFE_RUN, World, make_world

pytestmark = [
    pytest.mark.sandbox,
    pytest.mark.skipif(not SAFE_RUN.exists(), reason="safe-run is not installed next to python"),
]


@pytest.fixture
def world(tmp_path: Path) -> World:
    return make_world(tmp_path, '[tool.safe-run.filesystem]\nwrite = ["out"]\n')


def run_code(world: World, mode: str, code: str, *args: str) -> subprocess.CompletedProcess[str]:
    script = world.write_script(code, "job.py")
    return world.run_safe(mode, str(script), *args)


def test_reads_project_data_and_writes_granted_output(world: World, mode: str) -> None:
    (world.project / "out").mkdir()
    out = run_code(
        world,
        mode,
        """
import pathlib
text = pathlib.Path("data/input.txt").read_text()
pathlib.Path("out/result.txt").write_text(text.upper())
try:
    pathlib.Path("data/input.txt").write_text("overwritten")
    print("project writable?!")
except OSError:
    print("project read-only")
""",
    )
    assert out.returncode == 0, out.stderr
    assert "project read-only" in out.stdout
    assert (world.project / "out" / "result.txt").read_text() == "HELLO DATA\n"
    assert (world.project / "data" / "input.txt").read_text() == "hello data\n"


def test_subprocesses_and_shell(world: World, mode: str) -> None:
    out = run_code(
        world,
        mode,
        """
import subprocess, sys
def run(*args, **kwargs):
    return subprocess.run(*args, capture_output=True, text=True, **kwargs).stdout.strip()
print(run([sys.executable, "-c", "print(6*7)"]))
print(run("echo from-sh | tr a-z A-Z", shell=True))
""",
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["42", "FROM-SH"]


@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_multiprocessing(world: World, mode: str, method: str) -> None:
    out = run_code(
        world,
        mode,
        f"""
import multiprocessing as mp
def square(x):
    return x * x
if __name__ == "__main__":
    with mp.get_context("{method}").Pool(2) as pool:
        print(sum(pool.map(square, range(10))))
""",
    )
    if mode == "fallback" and method == "forkserver":
        # forkserver talks over an AF_UNIX socket; fallback mode refuses socket()
        # because Landlock before ABI 9 cannot filter connect() to unix sockets.
        assert out.returncode != 0
        return
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "285"


def test_tempfile_and_private_home(world: World, mode: str) -> None:
    out = run_code(
        world,
        mode,
        """
import os, sys, tempfile, pathlib
with tempfile.NamedTemporaryFile("w+") as f:
    f.write("ok"); f.flush(); f.seek(0); print(f.read())
home = pathlib.Path.home()
(home / ".cache").mkdir()
(home / ".cache" / "x").write_text("cached")
print(home != pathlib.Path(sys.argv[1]))
print(sorted(p.name for p in home.iterdir()))
""",
        str(world.home),
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:2] == ["ok", "True"]


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("raise SystemExit(3)", 3),
        ("import os, signal; os.kill(os.getpid(), signal.SIGTERM)", 128 + signal.SIGTERM),
        ("raise RuntimeError('boom')", 1),
    ],
)
def test_exit_codes(world: World, mode: str, code: str, expected: int) -> None:
    assert run_code(world, mode, code).returncode == expected


def test_missing_script_is_127(world: World, mode: str) -> None:
    out = world.run_safe(mode, "nope.py")
    assert out.returncode == 127
    assert "not found" in out.stderr and "Traceback" not in out.stderr


def test_missing_command_is_127(world: World, mode: str) -> None:
    out = world.run_safe(mode, "--", "no-such-command-xyz")
    assert out.returncode == 127 and "Traceback" not in out.stderr


def test_not_executable_is_126(world: World, mode: str) -> None:
    tool = world.project / "tool"
    tool.write_text("#!/bin/sh\necho hi\n")
    tool.chmod(stat.S_IRUSR | stat.S_IWUSR | stat.S_IRGRP | stat.S_IROTH)
    out = world.run_safe(mode, "--", "./tool")
    assert out.returncode == 126, out.stderr


def test_bad_policy_is_125_one_line(tmp_path: Path, mode: str) -> None:
    world = make_world(tmp_path, '[tool.safe-run.filesystem]\nreed = ["x"]\n')
    out = world.run_safe(mode, "--", "true")
    assert out.returncode == 125
    assert "reed" in out.stderr and "pyproject.toml" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def test_module_and_command_targets(world: World, mode: str) -> None:
    out = world.run_safe(mode, "-m", "json.tool", "--help")
    assert out.returncode == 0 and "usage" in out.stdout.lower()
    out = world.run_safe(mode, "--", "sh", "-c", "echo $HOME; exit 4")
    assert out.returncode == 4
    assert out.stdout.strip() != str(world.home)


def test_entry_point_target(tmp_path: Path, mode: str) -> None:
    world = make_world(tmp_path)
    venv = world.project / ".venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    entry = venv / "bin" / "hello-tool"
    entry.write_text(f"#!{venv}/bin/python\nimport sys\nprint('hello', *sys.argv[1:])\n")
    entry.chmod(0o755)
    out = subprocess.run(
        [str(SAFE_RUN), "--venv", str(venv), "hello-tool", "a", "b"],
        cwd=world.project,
        env=world.env(mode),
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "hello a b"
    out = subprocess.run(
        [str(SAFE_RUN), "--venv", str(venv), "not-a-tool"],
        cwd=world.project,
        env=world.env(mode),
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert out.returncode == 127 and "safe-run -- not-a-tool" in out.stderr


# The handler writes with os.write: the signal may arrive while print("ready") is
# still inside the buffered writer's flush (the test reads the line before the write
# call returns), and a second print() there raises "reentrant call".
SIGNAL_SCRIPT = """
import os, signal, sys, time
def bye(signum, frame):
    os.write(1, f"got {signum}\\n".encode())
    sys.exit(7)
signal.signal(signal.SIGTERM, bye)
try:
    print("ready", flush=True)
    time.sleep(30)
except KeyboardInterrupt:
    os.write(1, b"interrupted\\n")
    raise SystemExit(9)
"""


@pytest.mark.parametrize(
    ("sig", "code", "said"),
    [(signal.SIGTERM, 7, "got 15"), (signal.SIGINT, 9, "interrupted")],
)
def test_signals_reach_target(world: World, mode: str, sig: int, code: int, said: str) -> None:
    script = world.write_script(SIGNAL_SCRIPT, "sleeper.py")
    proc = subprocess.Popen(
        world.safe_run_argv(str(script)),
        cwd=world.project,
        env=world.env(mode),
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    proc.send_signal(sig)
    assert proc.wait(timeout=20) == code
    assert said in proc.stdout.read()


def test_explain_runs_nothing(world: World, mode: str) -> None:
    marker = world.project / "ran"
    script = world.write_script(f"open({str(marker)!r}, 'w').close()", "job.py")
    out = world.run_safe(mode, str(script), flags=("--explain",))
    assert out.returncode == 0, out.stderr
    assert "[tool.safe-run" in out.stdout
    assert "mode: " + mode in out.stdout
    assert not marker.exists()


DAEMON_BEAT = """
import os, sys, time
if os.fork() == 0:  # a daemon: its own session, re-parented away from the target
    os.setsid()
    if os.fork() == 0:
        beat = open(sys.argv[1], "a", buffering=1)  # opened once, while it may
        while True:
            beat.write(".\\n")
            time.sleep(0.05)
    os._exit(0)
time.sleep(60)
"""


def _kill_when_beating(argv: list[str], cwd: Path, env: dict[str, str], beat: Path) -> None:
    """Start ``argv``, wait for its daemon's first beat, SIGKILL the process started."""
    proc = subprocess.Popen(argv, cwd=cwd, env=env)
    try:
        deadline = time.time() + 20
        while not (beat.exists() and beat.stat().st_size) and time.time() < deadline:
            time.sleep(0.05)
        assert beat.exists(), "the daemon never started"
    finally:
        proc.kill()
        proc.wait()


def _growing(beat: Path) -> bool:
    size = beat.stat().st_size
    time.sleep(0.5)  # ten beats
    return beat.stat().st_size != size


def test_supervisor_killed_takes_every_descendant_down(world: World, mode: str) -> None:
    """SIGKILL safe-run itself: nothing it started may live on, not even a daemon in a
    session of its own (namespace mode: the pid namespace; fallback mode: the broker,
    a subreaper, kills every descendant when its parent dies)."""
    script = world.write_script(DAEMON_BEAT, "daemon.py")
    control = world.root / "control-beat"
    try:  # control: the same daemon started by a plain python outlives its parent
        argv = [sys.executable, str(script), str(control)]
        _kill_when_beating(argv, world.project, world.env(mode), control)
        assert _growing(control)
    finally:
        subprocess.run(["pkill", "-KILL", "-f", str(control)], check=False)
    out = world.root / "out"  # not world.root: fallback mode cannot add files beside ~/.ssh
    out.mkdir()
    beat = out / "beat"
    argv = world.safe_run_argv(str(script), str(beat), flags=("--allow-write", str(out)))
    try:
        _kill_when_beating(argv, world.project, world.env(mode), beat)
        deadline = time.time() + 20  # a loaded machine may take a moment to kill it
        while _growing(beat) and time.time() < deadline:
            pass
        assert not _growing(beat)
    finally:
        subprocess.run(["pkill", "-KILL", "-f", str(beat)], check=False)


def test_command_outside_the_grants_is_refused_with_a_hint(world: World, mode: str) -> None:
    tools = world.root / "tools"
    tools.mkdir()
    tool = tools / "tool.sh"
    tool.write_text("#!/bin/sh\necho tool-ran\n")
    tool.chmod(0o755)
    tools.chmod(0o755)
    out = world.run_safe(mode, "--", str(tool))
    # Namespace mode: the file does not exist in the private root (127); fallback
    # mode: Landlock refuses to execute it (126).  Either way: one line, a hint.
    assert out.returncode == (127 if mode == "namespace" else 126), out.stderr
    assert "inside the sandbox" in out.stderr and "Traceback" not in out.stderr
    granted = world.run_safe(mode, "--", str(tool), flags=("--allow-read", str(tools)))
    assert granted.returncode == 0 and granted.stdout.strip() == "tool-ran", granted.stderr


def test_a_killed_runs_private_directory_is_removed_by_the_next_run(tmp_path: Path) -> None:
    """SIGKILL leaves safe-run no chance to clean up; the next run of the same user
    removes the leftover, and never a live run's directory."""
    world = make_world(tmp_path)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    scratch.chmod(0o755)
    env = world.env(TMPDIR=str(scratch))
    slow = subprocess.Popen(
        world.safe_run_argv("--", "/bin/sleep", "60"), cwd=world.project, env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while not list(scratch.glob("safe-run-*")) and time.monotonic() < deadline:
        time.sleep(0.05)
    (left,) = list(scratch.glob("safe-run-*"))
    live = subprocess.Popen(
        world.safe_run_argv("--", "/bin/sleep", "60"), cwd=world.project, env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        while len(list(scratch.glob("safe-run-*"))) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        (other,) = [p for p in scratch.glob("safe-run-*") if p != left]
        slow.send_signal(signal.SIGKILL)
        slow.wait(timeout=10)
        time.sleep(0.5)  # the sandbox's processes die with it (kill switch)
        assert left.exists(), "SIGKILL leaves it behind: the case this is about"
        # Sweeping is rate-limited per user (a stamp in the state dir): make it due.
        stamp = world.home / ".local" / "state" / "safe-pip" / "last-sweep"
        if stamp.exists():
            os.utime(stamp, (0, 0))
        quick = subprocess.run(
            world.safe_run_argv("--", "/bin/true"), cwd=world.project, env=env,
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
        assert quick.returncode == 0, quick.stderr
        assert not left.exists(), "the dead run's directory is swept"
        assert other.exists(), "a live run's directory is kept"
    finally:
        live.kill()
        live.wait(timeout=10)
        slow.kill()
