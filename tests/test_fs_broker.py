"""The filesystem broker against the real kernel: writes to a persistent grant behave
exactly as without the sandbox, and the names that run later are kept out.

The broker performs every write to a persistent grant on the program's behalf
(safe_pip/sandbox/fs_broker.py).  That is only acceptable if programs cannot tell:
:data:`WORKLOAD` runs a long list of ordinary file operations -- every ``open`` mode,
``O_EXCL``, umask, links, renames, ``O_TMPFILE``, fd numbers and ``O_CLOEXEC``,
sqlite, subprocesses, threads, the errors -- and prints what it observed.  The same
script runs once plainly and once under ``safe-run`` in a writable project; the two
transcripts must be identical.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from sandbox_harness import SAFE_RUN, World, make_world

pytestmark = [
    pytest.mark.sandbox,
    pytest.mark.skipif(not SAFE_RUN.exists(), reason="safe-run is not installed next to python"),
]

PROJECT_WRITE = '[tool.safe-run]\nextends = ["project-write"]\n'

WORKLOAD = r"""
import errno, fcntl, os, shutil, sqlite3, stat, subprocess, sys, tempfile, threading

out = []
def note(*items):
    out.append(" ".join(str(i) for i in items))
def attempt(label, action):
    try:
        note(label, "ok", action())
    except OSError as exc:
        note(label, "error", errno.errorcode.get(exc.errno, exc.errno))

os.umask(0o027)
def mode(path):
    return oct(stat.S_IMODE(os.lstat(path).st_mode))

# open() in every mode
attempt("w new", lambda: open("f.txt", "w").write("one"))
attempt("read", lambda: open("f.txt").read())
attempt("a", lambda: open("f.txt", "a").write("two"))
def update():
    with open("f.txt", "r+") as f:
        f.seek(1)
        f.write("X")
attempt("r+", update)
attempt("read2", lambda: open("f.txt").read())
attempt("x existing", lambda: open("f.txt", "x"))
attempt("x new", lambda: open("g.txt", "x").write("g"))
attempt("mode f", lambda: mode("f.txt"))
EXCL = os.O_WRONLY | os.O_CREAT | os.O_EXCL
attempt("os.open 0640", lambda: os.close(os.open("h.txt", EXCL, 0o640)))
attempt("mode h", lambda: mode("h.txt"))
attempt("trunc", lambda: os.close(os.open("f.txt", os.O_WRONLY | os.O_TRUNC)))
attempt("size after trunc", lambda: os.path.getsize("f.txt"))
attempt("w in missing dir", lambda: open("nodir/x", "w"))
attempt("w on a directory", lambda: (os.mkdir("adir"), open("adir", "w")))
attempt("mkdir existing", lambda: os.mkdir("adir"))
attempt("makedirs exist_ok", lambda: os.makedirs("adir/b/c", exist_ok=True))
attempt("makedirs exist_ok again", lambda: os.makedirs("adir/b/c", exist_ok=True))
attempt("mode dir", lambda: mode("adir/b"))
attempt("rmdir non-empty", lambda: os.rmdir("adir"))
attempt("mkdir under file", lambda: os.mkdir("f.txt/sub"))
attempt("rmdir leaf", lambda: os.rmdir("adir/b/c"))
attempt("unlink missing", lambda: os.unlink("nothere"))
attempt("unlink", lambda: os.unlink("g.txt"))
attempt("exists after unlink", lambda: os.path.exists("g.txt"))

# renames, links, symlinks
attempt("rename", lambda: os.rename("h.txt", "adir/h2.txt"))
attempt("replace over", lambda: (open("r1", "w").write("new"), open("r2", "w").write("old"),
                                 os.replace("r1", "r2"), open("r2").read())[-1])
attempt("rename dir", lambda: os.rename("adir/b", "bdir"))
attempt("listing", lambda: sorted(os.listdir(".")))
attempt("symlink", lambda: os.symlink("f.txt", "link"))
attempt("readlink", lambda: os.readlink("link"))
attempt("write through link", lambda: open("link", "w").write("via link"))
attempt("target", lambda: open("f.txt").read())
attempt("dangling symlink", lambda: os.symlink("made-by-link", "dangling"))
attempt("create through dangling", lambda: open("dangling", "w").write("d"))
attempt("made", lambda: open("made-by-link").read())
attempt("O_NOFOLLOW on link", lambda: os.open("link", os.O_WRONLY | os.O_NOFOLLOW))
attempt("O_EXCL on link", lambda: os.open("link", os.O_WRONLY | os.O_CREAT | os.O_EXCL))
attempt("hard link", lambda: os.link("f.txt", "hard"))
attempt("nlink", lambda: os.stat("f.txt").st_nlink)
attempt("link existing", lambda: os.link("f.txt", "hard"))
attempt("truncate", lambda: os.truncate("f.txt", 3))
attempt("after truncate", lambda: open("f.txt").read())
attempt("dotdot", lambda: open("bdir/../dd.txt", "w").write("dd"))
def dirfd_open():
    fd = os.open("bdir", os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.close(os.open("in-bdir", os.O_WRONLY | os.O_CREAT, 0o600, dir_fd=fd))
        os.mkdir("sub-bdir", dir_fd=fd)
        os.rename("in-bdir", "sub-bdir/moved", src_dir_fd=fd, dst_dir_fd=fd)
        return sorted(os.listdir("bdir/sub-bdir"))
    finally:
        os.close(fd)
attempt("dir_fd ops", dirfd_open)
attempt("fifo", lambda: (os.mkfifo("fifo"), stat.S_ISFIFO(os.stat("fifo").st_mode))[1])

# descriptors: lowest free number, close-on-exec as asked
def fds():
    a = os.open("fd1", os.O_WRONLY | os.O_CREAT)
    b = os.open("fd2", os.O_WRONLY | os.O_CREAT | os.O_CLOEXEC)
    os.close(a)
    c = os.open("fd3", os.O_WRONLY | os.O_CREAT)
    flags = [bool(fcntl.fcntl(x, fcntl.F_GETFD) & fcntl.FD_CLOEXEC) for x in (b, c)]
    os.close(b); os.close(c)
    return a == c, flags
attempt("fd numbers", fds)
def dup_and_inherit():
    fd = os.open("inherit.txt", os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
    os.set_inheritable(fd, True)
    child = f"import os; os.write({fd}, b'from child')"
    subprocess.run([sys.executable, "-c", child], close_fds=False)
    os.close(fd)
    return open("inherit.txt").read()
attempt("fd inherited by a child", dup_and_inherit)

# the things programs really do
def mkstemp():
    fd, path = tempfile.mkstemp(dir=".", prefix="tmp-")
    os.close(fd)
    return os.path.dirname(os.path.abspath(path)) == os.getcwd()
attempt("mkstemp", mkstemp)
def named_temporary():
    with tempfile.NamedTemporaryFile("w", dir=".", delete=True) as t:
        t.write("x")
        t.flush()
        return os.path.exists(t.name)
attempt("NamedTemporaryFile", named_temporary)
def copy_move():
    shutil.copytree("bdir", "tree")
    shutil.move("tree", "tree2")
    shutil.rmtree("tree2")
    return os.path.exists("tree2")
attempt("copytree/move/rmtree", copy_move)
def sqlite():
    db = sqlite3.connect("db.sqlite")
    db.execute("create table t (x)")
    for i in range(20):
        with db:
            db.execute("insert into t values (?)", (i,))
    value = db.execute("select sum(x) from t").fetchone()[0]
    db.close()
    return value
attempt("sqlite", sqlite)
def tmpfile():
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    fd = os.open(".", os.O_TMPFILE | os.O_WRONLY, 0o600)
    os.write(fd, b"anonymous")
    source = f"/proc/self/fd/{fd}".encode()
    at_fdcwd, at_symlink_follow = -100, 0x400
    if libc.linkat(at_fdcwd, source, at_fdcwd, b"named-tmpfile", at_symlink_follow) != 0:
        raise OSError(ctypes.get_errno(), "linkat")
    os.close(fd)
    return open("named-tmpfile").read()
attempt("O_TMPFILE + link", tmpfile)
def executable():
    with open("tool.sh", "w") as f:
        f.write("#!/bin/sh\necho tool ran\n")
    os.chmod("tool.sh", 0o755)
    return subprocess.run(["./tool.sh"], capture_output=True, text=True).stdout.strip()
attempt("chmod and run", executable)
def threads():
    def work(i):
        for j in range(20):
            with open(f"th-{i}-{j}", "w") as f:
                f.write(str(j))
    ts = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    [t.start() for t in ts]
    [t.join() for t in ts]
    return len([n for n in os.listdir(".") if n.startswith("th-")])
attempt("threads", threads)
CHILD = "open('from-child', 'w').write('c'); print(open('from-child').read())"
attempt("child process", lambda: subprocess.run(
    [sys.executable, "-c", CHILD], capture_output=True, text=True).stdout.strip())
attempt("/dev/null", lambda: open("/dev/null", "w").write("x"))
SHELL = "echo hi > redirected; cat redirected; echo x > /dev/stderr"
attempt("shell redirect", lambda: subprocess.run(
    ["sh", "-c", SHELL], capture_output=True, text=True).stdout.strip())
print("\n".join(out))
"""


def transcript(result: subprocess.CompletedProcess[str]) -> list[str]:
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout.splitlines()


@pytest.fixture
def world(tmp_path: Path) -> World:
    return make_world(tmp_path, PROJECT_WRITE)


def test_writes_in_a_persistent_grant_behave_as_without_the_sandbox(
    tmp_path: Path, mode: str
) -> None:
    plain_world = make_world(tmp_path / "plain", PROJECT_WRITE)
    work = plain_world.project / "work"
    work.mkdir()
    script = plain_world.write_script(WORKLOAD, "workload.py")
    plain = subprocess.run(
        [sys.executable, str(script)], cwd=work, capture_output=True, text=True, check=False,
        env=plain_world.env(), timeout=120,
    )  # fmt: skip
    expected = transcript(plain)

    world = make_world(tmp_path / "boxed", PROJECT_WRITE)
    work = world.project / "work"
    work.mkdir()
    script = world.write_script(WORKLOAD, "workload.py")
    boxed = world.run_safe(mode, str(script), cwd=work, timeout=120)
    assert transcript(boxed) == expected
    assert "kept out" not in boxed.stderr


def test_reads_are_not_brokered(world: World, mode: str) -> None:
    """A program that only reads never stops in the broker (the filter leaves every
    read-only open on the fast path): its run succeeds with the listener gone."""
    (world.project / "data.txt").write_text("data")
    script = world.write_script("print(open('data.txt').read())\n", "reader.py")
    out = world.run_safe(mode, str(script))
    assert out.returncode == 0 and out.stdout.strip() == "data", out.stderr


MAKE_REPO_AND_VENV = r"""
import os, subprocess, sys, venv
results = []
def attempt(label, action):
    try:
        action()
        results.append(f"LEAK {label}")
    except OSError as exc:
        results.append(f"BLOCKED {label} {exc.errno}")
env = dict(os.environ, GIT_CONFIG_NOSYSTEM="1")
git = subprocess.run(["git", "init", "-q", "src/vendor"], env=env, capture_output=True)
results.append("LEAK git init" if git.returncode == 0 else "BLOCKED git init")
for name in ("a", "b", "c"):
    os.makedirs(os.path.join("src", name))
attempt("gitdir file", lambda: open("src/a/.git", "w").write("gitdir: ../elsewhere\n"))
attempt("gitdir by rename", lambda: (os.makedirs("src/fake"), os.rename("src/fake", "src/b/.git")))
attempt("gitdir by symlink", lambda: os.symlink("/tmp", "src/c/.git"))
site = sys.argv[1]
attempt("new pth in old venv", lambda: open(os.path.join(site, "zz.pth"), "w").write("import os\n"))
VERSION = f"python{sys.version_info.major}.{sys.version_info.minor}"
def new_venv():
    venv.create("newvenv", with_pip=False)
    with open(os.path.join("newvenv", "lib", VERSION, "site-packages", "mine.pth"), "w") as f:
        f.write("\n")
attempt("new venv pth", new_venv)
old_venv = os.path.dirname(os.path.dirname(os.path.dirname(site)))
attempt("replace old venv", lambda: os.rename(old_venv, "moved-venv"))
print("\n".join(results))
print("DONE")
"""


def test_what_runs_later_cannot_be_created_during_the_run(world: World, mode: str) -> None:
    """Names that no existing path covers: a repository made with ``git init`` (or a
    ``.git`` file, rename or link), a ``.pth`` in a venv that was there before, and
    moving that venv away to put another in its place.  A venv the run makes is its
    own output and works as usual."""
    (world.project / "src").mkdir()
    old = world.project / "oldvenv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(old)], check=True)
    site = next(old.glob("lib/python3*/site-packages"))
    script = world.write_script(MAKE_REPO_AND_VENV, "plant.py")
    boxed = world.run_safe(mode, str(script), str(site), timeout=120)
    assert "DONE" in boxed.stdout, boxed.stdout + boxed.stderr
    lines = boxed.stdout.splitlines()
    assert "LEAK new venv pth" in lines, boxed.stdout
    assert [line for line in lines if line.startswith("LEAK")] == ["LEAK new venv pth"], lines
    for planted in ("vendor", "a", "b", "c"):
        assert not os.path.lexists(world.project / "src" / planted / ".git"), planted
    assert not (site / "zz.pth").exists()
    assert old.is_dir()
    assert "kept out of paths that run or configure things later" in boxed.stderr
    # Control: plainly, each of these works.
    plain_world = make_world(world.root / "plain", PROJECT_WRITE)
    (plain_world.project / "src").mkdir()
    old = plain_world.project / "oldvenv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(old)], check=True)
    site = next(old.glob("lib/python3*/site-packages"))
    plain = plain_world.run_plain(
        plain_world.write_script(MAKE_REPO_AND_VENV, "plant.py"), str(site), timeout=120
    )
    leaks = [line for line in plain.stdout.splitlines() if line.startswith("LEAK")]
    assert len(leaks) == 7, plain.stdout + plain.stderr


def test_files_the_sandbox_writes_in_the_project_root_in_both_modes(
    world: World, mode: str
) -> None:
    """The project root holds protected entries (pyproject.toml, .git): fallback mode
    used to refuse every new file there; now only the protected names are refused."""
    script = world.write_script(
        "open('output.txt', 'w').write('result')\n"
        "try:\n    open('pyproject.toml', 'a').write('#')\n    print('LEAK')\n"
        "except OSError as exc:\n    print('BLOCKED', exc.errno)\n",
        "writer.py",
    )
    out = world.run_safe(mode, str(script))
    assert out.returncode == 0, out.stderr
    assert (world.project / "output.txt").read_text() == "result"
    assert "BLOCKED" in out.stdout
    assert os.stat(world.project / "pyproject.toml").st_size > 0


def test_learn_sees_the_writes_the_broker_decides(world: World, mode: str) -> None:
    """Calls that stop for the broker never reach learn mode's tracer; the broker's
    report stands in: a write outside every grant is proposed, a kept one is not."""
    results = world.root / "results"
    results.mkdir()
    results.chmod(0o777)
    script = world.write_script(
        "import sys\n"
        "for path in (sys.argv[1] + '/out.txt', '.git/config'):\n"
        "    try:\n        open(path, 'a').write('x')\n"
        "    except OSError as exc:\n        print('refused', path, exc.errno)\n",
        "writer.py",
    )
    out = world.run_safe(mode, str(script), str(results), flags=("--learn",))
    assert out.stdout.count("refused .git/config") == 2, out.stdout + out.stderr  # two runs
    assert out.stdout.count(f"refused {results}") == 1, out.stdout  # the second had it
    assert f"needs write access to {results}" in out.stderr, out.stderr
    assert "kept denied: .git/config" in out.stderr, out.stderr
    proposed = out.stderr.split("suggested policy")[-1].split("\n", 1)[-1]
    assert ".git" not in proposed, proposed


FIFO = r"""
import os, threading, time
os.mkfifo("pipe")
got = []
start = time.monotonic()
def reader():
    time.sleep(2)  # the writer's open waits for this end meanwhile
    with open("pipe") as handle:
        got.append(handle.read())
thread = threading.Thread(target=reader)
thread.start()
def writer():
    with open("pipe", "w") as handle:  # blocks until the reader opens
        handle.write("through the fifo")
other = threading.Thread(target=writer)
other.start()
time.sleep(0.1)
open("meanwhile.txt", "w").write("not stuck")  # the broker still answers others
waited = time.monotonic() - start
other.join()
thread.join()
print(got[0], open("meanwhile.txt").read(), "early" if waited < 2 else f"late {waited:.1f}")
"""


def test_a_fifo_that_blocks_does_not_stall_the_broker(world: World, mode: str) -> None:
    out = world.run_safe(mode, str(world.write_script(FIFO, "fifo.py")), timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "through the fifo not stuck early"
