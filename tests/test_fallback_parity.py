"""Attack tests: fallback mode holds the guarantees of namespace mode.

Fallback mode (no user namespaces: Ubuntu 24.04's default, Docker's seccomp profile)
shares the host's kernel objects, and Landlock up to ABI 7 does not mediate a file's
metadata, inotify, SysV IPC, unix datagram addresses or an auto-bound ``listen()``.
The broker decides or performs those calls instead (safe_pip/sandbox/attr_broker.py),
or the filter refuses them.  Every attack runs plainly first -- it must work, or the
test could not tell -- then under ``safe-run`` in both modes, and its effect is checked
from outside the sandbox, not only by what the script says.
"""

from __future__ import annotations

import ctypes
import os
import socket
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from sandbox_harness import SAFE_RUN, World, make_world

pytestmark = [
    pytest.mark.sandbox,
    pytest.mark.skipif(not SAFE_RUN.exists(), reason="safe-run is not installed next to python"),
]

LIBC = ctypes.CDLL(None, use_errno=True)


@pytest.fixture
def world(tmp_path: Path) -> World:
    return make_world(tmp_path)


# --- mode, owner, times, extended attributes, inode flags ---------------------------------

METADATA = """
import ctypes, fcntl, os, sys
libc = ctypes.CDLL(None, use_errno=True)
FS_IOC_GETFLAGS, FS_IOC_SETFLAGS, FS_NODUMP_FL = 0x80086601, 0x40086602, 0x40

def chattr(path):
    fd = os.open(path, os.O_RDONLY)
    try:
        flags = ctypes.c_int()
        fcntl.ioctl(fd, FS_IOC_GETFLAGS, flags)
        fcntl.ioctl(fd, FS_IOC_SETFLAGS, ctypes.c_int(flags.value | FS_NODUMP_FL))
    finally:
        os.close(fd)

def on_fd(change):
    def attack(path):
        fd = os.open(path, os.O_RDONLY)
        try:
            change(fd)
        finally:
            os.close(fd)
    return attack

ATTACKS = {
    "chmod": lambda p: os.chmod(p, 0o666),
    "fchmod": on_fd(lambda fd: os.fchmod(fd, 0o666)),
    "chown": lambda p: os.chown(p, os.getuid(), os.getgid()),
    "fchown": on_fd(lambda fd: os.fchown(fd, os.getuid(), os.getgid())),
    "utime": lambda p: os.utime(p, (1, 1)),
    "futimens": on_fd(lambda fd: os.utime(fd, (1, 1))),
    "setxattr": lambda p: os.setxattr(p, "user.planted", b"1"),
    "fsetxattr": on_fd(lambda fd: os.setxattr(fd, "user.planted", b"1")),
    "removexattr": lambda p: os.removexattr(p, "user.kept"),
    "chattr": chattr,
}
for path in sys.argv[2:]:
    attack = ATTACKS[sys.argv[1]]
    try:
        attack(path)
    except OSError as exc:
        print("BLOCKED", sys.argv[1], path, exc.strerror)
    else:
        print("LEAK", sys.argv[1], path)
print("DONE")
"""

METADATA_ATTACKS = (
    "chmod", "fchmod", "chown", "fchown", "utime", "futimens",
    "setxattr", "fsetxattr", "removexattr", "chattr",
)  # fmt: skip


def _file_flags(path: Path) -> int:
    """The inode flags (``lsattr``), or -1 where the filesystem has none."""
    import fcntl

    fd = os.open(path, os.O_RDONLY)
    try:
        flags = ctypes.c_int()
        try:
            fcntl.ioctl(fd, 0x80086601, flags)
        except OSError:
            return -1
        return flags.value
    finally:
        os.close(fd)


def _metadata(path: Path) -> tuple[object, ...]:
    """Everything an attack on ``path`` could change, seen from outside."""
    info = path.stat()
    xattrs = {name: os.getxattr(path, name) for name in os.listxattr(path)}
    return (stat.S_IMODE(info.st_mode), info.st_uid, info.st_gid, info.st_mtime_ns,
            sorted(xattrs.items()), _file_flags(path))  # fmt: skip


def _victims(world: World) -> list[Path]:
    """A denied secret and a file the default policy only lets the program read."""
    victims = [world.home / ".ssh" / "id_rsa", world.project / "data" / "input.txt"]
    for victim in victims:
        victim.chmod(0o644)
        os.setxattr(victim, "user.kept", b"1")
    return victims


@pytest.mark.parametrize("attack", METADATA_ATTACKS)
def test_metadata_of_files_outside_the_write_grants_stays(
    world: World, mode: str, attack: str
) -> None:
    """Mode, owner, times, extended attributes and inode flags of a denied file and of a
    read-only one: what a read-only mount (namespace mode) keeps, fallback mode keeps."""
    try:
        victims = _victims(world)
    except OSError as exc:
        pytest.skip(f"this filesystem has no user extended attributes ({exc.strerror})")
    script = world.write_script(METADATA)
    before = [_metadata(v) for v in victims]
    plain = world.run_plain(script, attack, *map(str, victims))
    changed = [_metadata(v) != b for v, b in zip(victims, before, strict=True)]
    if attack == "chattr" and not all(changed):
        pytest.skip(f"the control could not set inode flags here: {plain.stdout}")
    if attack in ("chown", "fchown"):
        # Giving a file to its own owner changes nothing visible but ctime: the script's
        # own word is the control, and the sandboxed run must be refused outright.
        assert plain.stdout.count("LEAK") == len(victims), plain.stdout + plain.stderr
    else:
        assert all(changed), f"the attack does not work without the sandbox: {plain.stdout}"
    _victims(world)  # undo the control's changes
    os.utime(victims[0], (1000, 1000))
    os.utime(victims[1], (1000, 1000))
    for victim in victims:
        if attack == "removexattr":
            os.setxattr(victim, "user.kept", b"1")
        elif "xattr" in attack:
            try:
                os.removexattr(victim, "user.planted")
            except OSError:
                pass
    import fcntl

    for victim in victims:  # chattr: clear what the control set
        flags = _file_flags(victim)
        if flags > 0:
            fd = os.open(victim, os.O_RDONLY)
            try:
                fcntl.ioctl(fd, 0x40086602, ctypes.c_int(flags & ~0x40))
            except OSError:
                pass
            finally:
                os.close(fd)
    before = [_metadata(v) for v in victims]
    boxed = world.run_safe(mode, str(script), attack, *map(str, victims))
    assert "DONE" in boxed.stdout, boxed.stdout + boxed.stderr
    assert "LEAK" not in boxed.stdout, boxed.stdout
    assert [_metadata(v) for v in victims] == before


OWN_METADATA = """
import os, sys, tempfile
results = []
for base in (sys.argv[1], tempfile.mkdtemp()):  # a write grant, then TMPDIR
    path = os.path.join(base, "mine.txt")
    with open(path, "w") as handle:
        handle.write("x")
    os.chmod(path, 0o600)
    fd = os.open(path, os.O_RDONLY)
    os.fchmod(fd, 0o640)
    os.utime(fd, (5, 5))
    os.close(fd)
    os.utime(path, (7, 8))
    os.setxattr(path, "user.mine", b"yes")
    value = os.getxattr(path, "user.mine")
    os.removexattr(path, "user.mine")
    info = os.stat(path)
    results.append((oct(info.st_mode & 0o777), info.st_atime, info.st_mtime, value))
    os.chmod(base, os.stat(base).st_mode & 0o777)  # the directory itself, by name
print(results)
"""


def test_metadata_of_the_programs_own_files_changes_as_usual(world: World, mode: str) -> None:
    """In a write grant and in the private TMPDIR, chmod, utime and xattrs work in both
    modes alike (through the broker in fallback mode)."""
    out = world.root / "out"
    out.mkdir()
    try:
        os.setxattr(out, "user.probe", b"1")
    except OSError as exc:
        pytest.skip(f"this filesystem has no user extended attributes ({exc.strerror})")
    script = world.write_script(OWN_METADATA, "own.py")
    plain = world.run_plain(script, str(out))
    boxed = world.run_safe(mode, str(script), str(out), flags=("--allow-write", str(out)))
    assert boxed.returncode == 0, boxed.stderr
    expected = "('0o640', 7.0, 8.0, b'yes')"
    assert plain.stdout.count(expected) == 2, plain.stdout + plain.stderr
    assert boxed.stdout == plain.stdout


# --- inotify ------------------------------------------------------------------------------

INOTIFY = """
import ctypes, os, select, sys
libc = ctypes.CDLL(None, use_errno=True)
fd = libc.inotify_init1(os.O_NONBLOCK)
watched = []
for path in sys.argv[1:]:
    wd = libc.inotify_add_watch(fd, path.encode(), 0x20 | 0x01)  # IN_OPEN | IN_ACCESS
    if wd < 0:
        print("BLOCKED watch", path, os.strerror(ctypes.get_errno()))
    else:
        watched.append(path)
print("READY", len(watched), flush=True)
events = b""
if watched and select.select([fd], [], [], 3)[0]:
    events = os.read(fd, 4096)
print("LEAK" if b"id_rsa" in events else "BLOCKED events", flush=True)
print("DONE")
"""


def _interact(
    argv: list[str], cwd: Path, env: dict[str, str], ready: str, act: Callable[[str], None]
) -> str:
    """Run ``argv`` until it prints a line starting with ``ready``, call ``act`` with
    that line, then let it finish; everything it printed, stderr last."""
    proc = subprocess.Popen(
        argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stderr is not None
    lines = []
    while line := proc.stdout.readline():
        lines.append(line)
        if line.startswith(ready):
            act(line)
            break
    lines.append(proc.stdout.read())
    lines.append(proc.stderr.read())
    proc.wait(timeout=60)
    return "".join(lines)


def _watch(argv: list[str], cwd: Path, env: dict[str, str], secret: Path) -> str:
    """Run the watcher; once it is ready, read ``secret`` as the user would."""

    def open_the_key(_line: str) -> None:
        time.sleep(0.2)
        secret.read_bytes()

    return _interact(argv, cwd, env, "READY", open_the_key)


def test_no_inotify_watch_on_a_denied_directory(world: World, mode: str) -> None:
    """A watch on ~/.ssh would tell the program when, and which key, the user opens;
    one on a directory it may read (the project's data/) still works."""
    script = world.write_script(INOTIFY, "watch.py")
    ssh = world.home / ".ssh"
    key = ssh / "id_rsa"
    plain = _watch([sys.executable, str(script), str(ssh)], world.project, world.env(), key)
    assert "LEAK" in plain, plain
    argv = world.safe_run_argv(str(script), str(ssh))
    boxed = _watch(argv, world.project, world.env(mode), key)
    assert "DONE" in boxed and "LEAK" not in boxed, boxed
    assert "READY 0" in boxed, boxed
    readable = world.project / "data"
    argv = world.safe_run_argv(str(script), str(readable))
    allowed = _watch(argv, world.project, world.env(mode), readable / "input.txt")
    assert "READY 1" in allowed, allowed


# --- SysV IPC and POSIX message queues -----------------------------------------------------

SYSV = """
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.shmat.restype = ctypes.c_void_p
key = int(sys.argv[1])
shm = libc.shmget(key, 0, 0)
if shm < 0:
    print("BLOCKED shmget", os.strerror(ctypes.get_errno()))
else:
    address = libc.shmat(shm, None, 0)
    if address in (None, ctypes.c_void_p(-1).value):
        print("BLOCKED shmat", os.strerror(ctypes.get_errno()))
    else:
        print("LEAK shm", ctypes.string_at(address, 16))
        ctypes.memmove(address, b"OVERWRITTEN", 11)
queue = libc.msgget(key, 0)
if queue < 0:
    print("BLOCKED msgget", os.strerror(ctypes.get_errno()))
else:
    buffer = ctypes.create_string_buffer(64)
    got = libc.msgrcv(queue, buffer, 56, 0, 0o4000)  # IPC_NOWAIT
    print("LEAK msg" if got > 0 else "BLOCKED msgrcv", buffer.raw[8:8 + max(got, 0)])
mq = libc.mq_open(sys.argv[2].encode(), os.O_RDONLY | os.O_NONBLOCK)
if mq < 0:
    print("BLOCKED mq_open", os.strerror(ctypes.get_errno()))
else:
    buffer = ctypes.create_string_buffer(8192)
    got = libc.mq_receive(mq, buffer, 8192, None)
    print("LEAK mq" if got > 0 else "BLOCKED mq_receive", buffer.raw[: max(got, 0)])
print("DONE")
"""

SHM_SECRET = b"SYSV-SHM-SECRET"
MSG_SECRET = b"SYSV-MSG-SECRET"
MQ_SECRET = b"POSIX-MQ-SECRET"


class _HostIpc:
    """A same-user process's 0600 SysV segment and queue, and a POSIX message queue."""

    def __init__(self) -> None:
        self.key = 0x5AFE0000 + os.getpid() % 0xFFFF
        self.mq_name = f"/safe-run-test-{os.getpid()}"
        LIBC.shmat.restype = ctypes.c_void_p
        self.shm = LIBC.shmget(self.key, 4096, 0o1000 | 0o2000 | 0o600)  # IPC_CREAT|IPC_EXCL
        if self.shm < 0:
            pytest.skip(f"no SysV shared memory here: {os.strerror(ctypes.get_errno())}")
        self.address = LIBC.shmat(self.shm, None, 0)
        ctypes.memmove(self.address, SHM_SECRET, len(SHM_SECRET))
        self.queue = LIBC.msgget(self.key, 0o1000 | 0o2000 | 0o600)
        message = ctypes.create_string_buffer(8 + len(MSG_SECRET))
        ctypes.memmove(message, (1).to_bytes(8, "little") + MSG_SECRET, 8 + len(MSG_SECRET))
        LIBC.msgsnd(self.queue, message, len(MSG_SECRET), 0)
        self.mq = LIBC.mq_open(self.mq_name.encode(), os.O_CREAT | os.O_RDWR, 0o600, None)
        if self.mq >= 0:
            LIBC.mq_send(self.mq, MQ_SECRET, len(MQ_SECRET), 0)

    def shm_text(self) -> bytes:
        return ctypes.string_at(self.address, len(SHM_SECRET))

    def close(self) -> None:
        LIBC.shmdt(ctypes.c_void_p(self.address))
        LIBC.shmctl(self.shm, 0, None)  # IPC_RMID
        LIBC.msgctl(self.queue, 0, None)
        if self.mq >= 0:
            LIBC.mq_close(self.mq)
            LIBC.mq_unlink(self.mq_name.encode())


def test_host_sysv_ipc_and_message_queues_are_out_of_reach(world: World, mode: str) -> None:
    """Another process's 0600 shared-memory segment, SysV message queue and POSIX
    message queue: readable and writable plainly, out of reach in both modes."""
    ipc = _HostIpc()
    try:
        script = world.write_script(SYSV, "ipc.py")
        boxed = world.run_safe(mode, str(script), str(ipc.key), ipc.mq_name)
        assert "DONE" in boxed.stdout, boxed.stdout + boxed.stderr
        assert "LEAK" not in boxed.stdout, boxed.stdout
        assert ipc.shm_text() == SHM_SECRET
        plain = world.run_plain(script, str(ipc.key), ipc.mq_name)  # control: last, it eats
        assert "LEAK shm" in plain.stdout and "LEAK msg" in plain.stdout, plain.stdout
        if ipc.mq >= 0:
            assert "LEAK mq" in plain.stdout, plain.stdout
        assert ipc.shm_text() != SHM_SECRET
    finally:
        ipc.close()


# --- unix datagrams -------------------------------------------------------------------------

DGRAM = """
import array, os, socket, sys
outside = sys.argv[1]
a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
a.send(b"one"); a.send(b"two")
assert (b.recv(10), b.recv(10)) == (b"one", b"two"), "message boundaries"
for how in ("sendto", "connect", "scm_rights"):
    try:
        if how == "sendto":
            a.sendto(b"via-sendto", outside)
        elif how == "connect":
            a.connect(outside)
            a.send(b"via-connect")
        else:
            r, w = os.pipe()
            fds = array.array("i", [r])
            a.sendmsg([b"fd-pass"], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds)], 0, outside)
    except OSError as exc:
        print("BLOCKED", how, exc.strerror)
    else:
        print("SENT", how)
print("DONE")
"""


def test_no_datagram_reaches_a_socket_outside(world: World, mode: str) -> None:
    """A pathname datagram socket of the host (journald, NOTIFY_SOCKET ...) receives
    nothing from the sandbox: not by sendto, not after connect, no descriptor."""
    where = world.root / "outside"
    where.mkdir()
    where.chmod(0o777)
    path = where / "listener.sock"
    received: list[bytes] = []
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(str(path))
    path.chmod(0o777)
    listener.settimeout(0.2)
    stop = threading.Event()

    def drain() -> None:
        while not stop.is_set():
            try:
                received.append(listener.recv(64))
            except TimeoutError:
                continue

    thread = threading.Thread(target=drain, daemon=True)
    thread.start()
    try:
        script = world.write_script(DGRAM, "dgram.py")
        plain = world.run_plain(script, str(path))
        assert plain.stdout.count("SENT") == 3, plain.stdout + plain.stderr
        deadline = time.time() + 5
        while len(received) < 3 and time.time() < deadline:
            time.sleep(0.05)
        assert len(received) == 3, received
        received.clear()
        boxed = world.run_safe(mode, str(script), str(path))
        assert "DONE" in boxed.stdout, boxed.stdout + boxed.stderr
        time.sleep(0.5)
        assert received == [], received
    finally:
        stop.set()
        thread.join()
        listener.close()


# --- listen() -------------------------------------------------------------------------------

LISTEN = """
import socket
server = socket.socket()
try:
    server.listen()
except OSError as exc:
    print("BLOCKED listen", exc.strerror, flush=True)
    print("PORT 0", flush=True)
else:
    print("PORT", server.getsockname()[1], flush=True)
    server.settimeout(3)
    try:
        peer, _ = server.accept()
        peer.sendall(b"data for an inbound peer")
        print("LEAK accepted", flush=True)
    except OSError:
        print("BLOCKED nobody came", flush=True)
print("DONE", flush=True)
"""


def _serve_and_knock(argv: list[str], cwd: Path, env: dict[str, str]) -> tuple[str, bytes]:
    got: list[bytes] = []

    def knock(line: str) -> None:
        port = int(line.split()[1])
        if not port:
            return
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as peer:
                got.append(peer.recv(64))
        except OSError:
            pass

    output = _interact(argv, cwd, env, "PORT", knock)
    return output, b"".join(got)


def test_nothing_outside_connects_in(world: World, mode: str) -> None:
    """``listen()`` on an unbound socket binds an ephemeral port on every address,
    without asking Landlock: anyone who can reach the machine could connect in."""
    script = world.write_script(LISTEN, "serve.py")
    plain, got = _serve_and_knock([sys.executable, str(script)], world.project, world.env())
    assert got == b"data for an inbound peer", plain
    argv = world.safe_run_argv(str(script), flags=("--allow-host", "example.invalid"))
    boxed, got = _serve_and_knock(argv, world.project, world.env(mode))
    assert "DONE" in boxed, boxed
    assert got == b"" and "LEAK" not in boxed, boxed


# --- other processes of the user: priority, scheduling, limits ------------------------------

TASKS = """
import os, resource, sys
victim = int(sys.argv[1])
attacks = {
    "renice": lambda: os.setpriority(os.PRIO_PROCESS, victim, 19),
    "pin": lambda: os.sched_setaffinity(victim, {0}),
    "limit": lambda: resource.prlimit(victim, resource.RLIMIT_CORE, (0, 0)),
}
for name, attack in attacks.items():
    try:
        attack()
    except OSError as exc:
        print("BLOCKED", name, exc.strerror)
    else:
        print("LEAK", name)
# Its own processes stay its own: itself by pid, a child by pid.
os.setpriority(os.PRIO_PROCESS, os.getpid(), 1)
child = os.fork()
if child == 0:
    __import__("time").sleep(5)
    os._exit(0)
os.setpriority(os.PRIO_PROCESS, child, 3)
os.sched_setaffinity(child, os.sched_getaffinity(0))
resource.prlimit(child, resource.RLIMIT_CORE, (0, 0))
print("OWN", os.getpriority(os.PRIO_PROCESS, child))
os.kill(child, 9)
print("DONE")
"""


def _task_state(pid: int) -> tuple[int, frozenset[int], tuple[int, int]]:
    import resource

    return (
        os.getpriority(os.PRIO_PROCESS, pid),
        frozenset(os.sched_getaffinity(pid)),
        resource.prlimit(pid, resource.RLIMIT_CORE),
    )


def test_other_processes_of_the_user_cannot_be_reniced_pinned_or_limited(
    world: World, mode: str
) -> None:
    """Without a pid namespace every process of the user is a target for setpriority,
    sched_setaffinity and prlimit; the program may still change its own."""
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("pinning needs two CPUs to show")
    script = world.write_script(TASKS, "tasks.py")
    victim = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        before = _task_state(victim.pid)
        plain = world.run_plain(script, str(victim.pid))
        assert plain.stdout.count("LEAK") == 3, plain.stdout + plain.stderr
        assert _task_state(victim.pid) != before
    finally:
        victim.kill()
        victim.wait()
    victim = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        before = _task_state(victim.pid)
        boxed = world.run_safe(mode, str(script), str(victim.pid))
        assert "DONE" in boxed.stdout, boxed.stdout + boxed.stderr
        assert "LEAK" not in boxed.stdout and "OWN 3" in boxed.stdout, boxed.stdout
        assert _task_state(victim.pid) == before
    finally:
        victim.kill()
        victim.wait()


# --- what ordinary programs read ----------------------------------------------------------

CPU_QUOTA = """
import os
for path in ("/sys/fs/cgroup/cpu.max", "/sys/fs/cgroup/cpu/cpu.cfs_quota_us"):
    try:
        with open(path) as handle:
            print("read", path, handle.read().strip())
    except FileNotFoundError:
        print("absent", path)
    except PermissionError:
        print("REFUSED", path)
print("DONE")
"""


def test_cpu_quota_files_read_or_absent_never_refused(world: World, mode: str) -> None:
    """joblib/loky checks that the cgroup CPU quota file exists, then opens it: an
    EACCES there (Landlock) crashes every Parallel() in fallback mode."""
    script = world.write_script(CPU_QUOTA, "quota.py")
    out = world.run_safe(mode, str(script))
    assert "DONE" in out.stdout, out.stdout + out.stderr
    assert "REFUSED" not in out.stdout, out.stdout
