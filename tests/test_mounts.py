"""The private root (safe_pip.sandbox.mounts) against the real kernel, no mocks.

Each test forks a child that does what the launcher does — unshare user, mount, pid,
net, ipc and uts namespaces, map its ids, fork pid 1 — and pid 1 enters a private root
built from a plan over ``tmp_path`` directories, drops its capabilities and then tries
an attack or a use.  The outcome comes back as JSON through a pipe.  Every attack is
also shown to work without the protection (the host, or the same sandbox with that
one plan entry removed), so that an empty or broken sandbox cannot pass.

Run these as root and as an unprivileged user: root maps to uid 0 inside, which is a
different case for ownership-based permissions.
"""

from __future__ import annotations

import ctypes
import errno
import json
import os
import signal
import socket
import statistics
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from ns_harness import needs_userns, outcome

from safe_pip.sandbox import mounts
from safe_pip.sandbox import namespaces as ns
from safe_pip.sandbox.mounts import MountError, MountPlan, enter_private_root, prepare_root

SANDBOX_FLAGS = (
    ns.CLONE_NEWUSER
    | ns.CLONE_NEWNS
    | ns.CLONE_NEWPID
    | ns.CLONE_NEWNET
    | ns.CLONE_NEWIPC
    | ns.CLONE_NEWUTS
)
#: What a sandboxed /usr/bin/python3 needs, in its usual spelling (/lib64 and friends
#: are symlinks on merged-/usr systems: the plan recreates them).
SYSTEM_READ = ("/usr", "/bin", "/sbin", "/lib", "/lib64", "/etc/ld.so.cache", "/etc/alternatives")

_libc = ctypes.CDLL(None, use_errno=True)
_libc.umount2.argtypes = (ctypes.c_char_p, ctypes.c_int)


def paths(*items: str | Path) -> tuple[str, ...]:
    """Plan paths as MountPlan holds them: plain strings."""
    return tuple(map(str, items))


def read_bytes(path: str | Path) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def write_text(path: str | Path, text: str, mode: str = "w") -> None:
    with open(path, mode) as f:
        f.write(text)


def run_sandboxed(
    plan: MountPlan | mounts.PreparedRoot | None,
    probe: Callable[[], Any],
    *,
    before: Callable[[], None] | None = None,
    drop_caps: bool = True,
    loopback: bool = True,
) -> Any:
    """Run ``probe`` as pid 1 of a fresh sandbox and return what it returned.

    ``before`` runs in pid 1 ahead of the private root (to stage mounts the way a host
    might have them).  Everything the probe needs must be imported already: after the
    pivot the interpreter's own files may be absent.
    """
    uid, gid = os.getuid(), os.getgid()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # stage-1 child
        code = 70
        try:
            os.close(read_end)
            ns.set_pdeathsig(signal.SIGKILL)
            ns.unshare(SANDBOX_FLAGS)
            ns.map_ids(uid, gid)
            init = os.fork()
            if init == 0:  # pid 1
                try:
                    if before is not None:
                        before()
                    if plan is not None:
                        enter_private_root(plan)
                    if loopback:
                        ns.bring_up_loopback()
                    if drop_caps:
                        ns.drop_capabilities()
                    reply = {"value": probe()}
                except BaseException:
                    reply = {"error": traceback.format_exc()}
                os.write(write_end, json.dumps(reply).encode())
                os._exit(0)
            code = os.waitstatus_to_exitcode(os.waitpid(init, 0)[1])
        except BaseException:
            os.write(write_end, json.dumps({"error": traceback.format_exc()}).encode())
        finally:
            os._exit(code)
    os.close(write_end)
    chunks = []
    while chunk := os.read(read_end, 65536):
        chunks.append(chunk)
    os.close(read_end)
    os.waitpid(pid, 0)
    if not chunks:
        pytest.fail("the sandboxed child died without a reply")
    reply = json.loads(b"".join(chunks))
    if "error" in reply:
        pytest.fail("sandboxed child failed:\n" + reply["error"])
    return reply["value"]


def run_command(argv: list[str]) -> tuple[int, str]:
    """fork + execv inside the sandbox (no subprocess: its imports may be absent)."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.dup2(write_end, 1)
            os.dup2(write_end, 2)
            os.execv(argv[0], argv)
        finally:
            os._exit(127)
    os.close(write_end)
    chunks = []
    while chunk := os.read(read_end, 65536):
        chunks.append(chunk)
    os.close(read_end)
    status = os.waitpid(pid, 0)[1]
    return os.waitstatus_to_exitcode(status), b"".join(chunks).decode(errors="replace")


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A writable project with the things attackers go for."""
    proj = tmp_path / "proj"
    (proj / ".git" / "hooks").mkdir(parents=True)
    (proj / ".git" / "config").write_text("[core]\n")
    (proj / ".git" / "hooks" / "pre-commit.sample").write_text("#!/bin/sh\n")
    (proj / "pyproject.toml").write_text("[tool.safe-run]\n")
    (proj / "secrets").mkdir()
    (proj / "secrets" / "key").write_text("TOP-SECRET-KEY")
    (proj / ".env").write_text("TOKEN=secret-token")
    (proj / "src").mkdir()
    (proj / "src" / "main.py").write_text("print('hi')\n")
    return proj


# ----------------------------------------------------------------- planning (no kernel)


def test_relative_paths_are_rejected() -> None:
    with pytest.raises(MountError) as info:
        prepare_root(MountPlan(read=paths("relative/dir")))
    assert info.value.errno == errno.EINVAL
    assert "relative/dir" in str(info.value)


def test_order_is_deterministic_and_parents_come_first(project: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    forward = MountPlan(
        read=paths("/usr", data),
        write=paths(project),
        protected=paths(project / "pyproject.toml", project / ".git" / "hooks"),
        deny=paths(project / "secrets"),
        tmpfs=paths("/tmp"),
    )
    backward = MountPlan(
        read=tuple(reversed(forward.read)),
        write=forward.write,
        protected=tuple(reversed(forward.protected)),
        deny=forward.deny,
        tmpfs=forward.tmpfs,
    )

    def listing(plan: MountPlan) -> list[tuple[str, str, int]]:
        return [(op.action, op.dest, op.rank) for op in prepare_root(plan).ops]

    ops = listing(forward)
    assert ops == listing(backward)
    dests = [dest for _action, dest, _rank in ops]
    assert dests.index("/tmp") < dests.index(str(project))  # tmpfs before binds in it
    assert dests.index(str(project)) < dests.index(str(project / "secrets"))
    # .git is pinned (a mount point) so it cannot be renamed away from its hooks.
    assert ("bind", str(project / ".git"), mounts._PIN) in ops


def test_one_fresh_file_system_per_path() -> None:
    prepared = prepare_root(MountPlan(tmpfs=paths("/tmp", "/tmp/", "/dev/shm")))
    fresh = [(op.action, op.dest) for op in prepared.ops if op.rank == mounts._FRESH]
    assert fresh.count(("tmpfs", "/tmp")) == 1
    assert [action for action, dest in fresh if dest == "/dev/shm"] == ["shm"]


def test_missing_paths_are_skipped(tmp_path: Path) -> None:
    ghost = tmp_path / "does-not-exist"
    prepared = prepare_root(
        MountPlan(
            read=paths(ghost), write=paths(ghost / "w"), deny=paths(ghost), protected=paths(ghost)
        )
    )
    assert all(str(ghost) not in op.dest for op in prepared.ops)


# ----------------------------------------------------------------- confidentiality


@pytest.mark.sandbox
@needs_userns
def test_file_outside_the_plan_is_absent(tmp_path: Path) -> None:
    granted = tmp_path / "granted"
    granted.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    secret = outside / "secret.txt"
    secret.write_text("s3cr3t")

    def attack() -> dict[str, str]:
        return {
            "stat": outcome(lambda: os.stat(secret)),
            "read": outcome(lambda: read_bytes(secret)),
            "parent": outcome(lambda: os.listdir(outside)),
        }

    # Without the sandbox (and with the directory granted) the attack works.
    assert attack() == {"stat": "ok", "read": "ok", "parent": "ok"}
    assert run_sandboxed(MountPlan(read=paths(granted, outside)), attack)["read"] == "ok"
    # With it, the file is not forbidden but absent: ENOENT, not EACCES.
    assert run_sandboxed(MountPlan(read=paths(granted)), attack) == {
        "stat": "ENOENT",
        "read": "ENOENT",
        "parent": "ENOENT",
    }


@pytest.mark.sandbox
@needs_userns
def test_denied_directory_under_a_bind_is_empty(project: Path) -> None:
    secrets_dir = project / "secrets"

    def attack() -> dict[str, Any]:
        return {
            "list": sorted(os.listdir(secrets_dir)),
            "read": outcome(lambda: read_bytes(secrets_dir / "key")),
            "create": outcome(lambda: write_text(secrets_dir / "new", "x")),
            "rmdir": outcome(lambda: os.rmdir(secrets_dir)),
            "rename": outcome(lambda: os.rename(secrets_dir, project / "moved")),
        }

    without = run_sandboxed(MountPlan(write=paths(project)), lambda: os.listdir(secrets_dir))
    assert without == ["key"]
    assert run_sandboxed(MountPlan(write=paths(project), deny=paths(secrets_dir)), attack) == {
        "list": [],
        "read": "ENOENT",
        "create": "EROFS",
        "rmdir": "EBUSY",
        "rename": "EBUSY",
    }
    assert (secrets_dir / "key").read_text() == "TOP-SECRET-KEY"
    assert not (secrets_dir / "new").exists()


@pytest.mark.sandbox
@needs_userns
def test_denied_file_under_a_bind_reads_empty(project: Path) -> None:
    env_file = project / ".env"

    def attack() -> dict[str, Any]:
        return {
            "read": read_bytes(env_file).decode(),
            "write": outcome(lambda: write_text(env_file, "TOKEN=evil")),
            "unlink": outcome(lambda: os.unlink(env_file)),
        }

    assert run_sandboxed(MountPlan(read=paths(project)), lambda: read_bytes(env_file).decode()) == (
        "TOKEN=secret-token"
    )
    assert run_sandboxed(MountPlan(write=paths(project), deny=paths(env_file)), attack) == {
        "read": "",
        "write": "EROFS",
        "unlink": "EBUSY",
    }
    assert env_file.read_text() == "TOKEN=secret-token"


@pytest.mark.sandbox
@needs_userns
def test_deny_wins_over_grants_beneath_it(project: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "inner").mkdir(parents=True)
    (elsewhere / "inner" / "f").write_text("hidden")
    plan = MountPlan(
        read=paths(project / "secrets" / "key", elsewhere / "inner"),
        write=paths(project),
        deny=paths(project / "secrets", elsewhere),
    )

    def attack() -> dict[str, str]:
        return {
            "nested-grant": outcome(lambda: read_bytes(project / "secrets" / "key")),
            "outside-binds": outcome(lambda: read_bytes(elsewhere / "inner" / "f")),
        }

    assert run_sandboxed(plan, attack) == {"nested-grant": "ENOENT", "outside-binds": "ENOENT"}


@pytest.mark.sandbox
@needs_userns
def test_overlays_hold_only_because_capabilities_are_dropped(project: Path) -> None:
    """Documented limit: CAP_SYS_ADMIN in the sandbox's userns could unmount a deny
    overlay; the launcher drops all capabilities (and seccomp forbids umount)."""
    secrets_dir = project / "secrets"

    def attack() -> dict[str, Any]:
        err = 0
        if _libc.umount2(os.fsencode(secrets_dir), 0) != 0:
            err = ctypes.get_errno()
        return {"umount": errno.errorcode.get(err, "ok"), "list": os.listdir(secrets_dir)}

    plan = MountPlan(write=paths(project), deny=paths(secrets_dir))
    assert run_sandboxed(plan, attack, drop_caps=False) == {"umount": "ok", "list": ["key"]}
    assert run_sandboxed(plan, attack) == {"umount": "EPERM", "list": []}


# ----------------------------------------------------------------- integrity


@pytest.mark.sandbox
@needs_userns
def test_protected_file_under_a_writable_bind(project: Path) -> None:
    policy = project / "pyproject.toml"

    def attack() -> dict[str, str]:
        return {
            "write": outcome(lambda: write_text(policy, "[tool.safe-run]\nwrite=['/']\n")),
            "append": outcome(lambda: write_text(policy, "x = 1\n", "a")),
            "rename": outcome(lambda: os.rename(policy, project / "old.toml")),
            "replace": outcome(lambda: os.rename(project / "src" / "main.py", policy)),
            "unlink": outcome(lambda: os.unlink(policy)),
            "chmod": outcome(lambda: os.chmod(policy, 0o666)),
            "sibling": outcome(lambda: write_text(project / "src" / "new.py", "ok")),
        }

    def tamper() -> str:
        return outcome(lambda: write_text(policy, "x = 1\n", "a"))

    unprotected = run_sandboxed(MountPlan(write=paths(project)), tamper)
    assert unprotected == "ok"
    assert policy.read_text().endswith("x = 1\n")  # the attack did land on the host
    policy.write_text("[tool.safe-run]\n")

    plan = MountPlan(write=paths(project), protected=paths(policy))
    assert run_sandboxed(plan, attack) == {
        "write": "EROFS",
        "append": "EROFS",
        "rename": "EBUSY",
        "replace": "EBUSY",
        "unlink": "EBUSY",
        "chmod": "EROFS",
        "sibling": "ok",
    }
    assert policy.read_text() == "[tool.safe-run]\n"
    assert (project / "src" / "new.py").read_text() == "ok"  # the rest stays writable


@pytest.mark.sandbox
@needs_userns
def test_no_new_file_in_a_protected_directory(project: Path) -> None:
    hooks = project / ".git" / "hooks"

    def plant_hook() -> str:
        return outcome(lambda: write_text(hooks / "post-checkout", "#!/bin/sh\ncurl evil\n"))

    def move_git_away() -> str:
        # Renaming an ancestor would carry the read-only mount along and let a fresh,
        # writable .git/hooks be created at the path git reads.
        return outcome(lambda: os.rename(project / ".git", project / "git-old"))

    assert run_sandboxed(MountPlan(write=paths(project)), plant_hook) == "ok"
    (hooks / "post-checkout").unlink()

    plan = MountPlan(write=paths(project), protected=paths(hooks))
    assert run_sandboxed(plan, plant_hook) == "EROFS"
    assert run_sandboxed(plan, move_git_away) == "EBUSY"
    assert sorted(p.name for p in hooks.iterdir()) == ["pre-commit.sample"]
    assert (project / ".git").is_dir()


@pytest.mark.sandbox
@needs_userns
def test_denied_path_cannot_be_replanted_by_renaming_its_parent(tmp_path: Path) -> None:
    """With ``write = ["~"]`` and ``~/.config/gh`` denied, moving ``~/.config`` away and
    recreating ``~/.config/gh`` would hand host tools forged config."""
    home = tmp_path / "home"
    gh = home / ".config" / "gh"
    gh.mkdir(parents=True)
    (gh / "hosts.yml").write_text("token: real\n")

    def replant() -> str:
        def attack() -> None:
            os.rename(home / ".config", home / "config-old")
            (home / ".config" / "gh").mkdir(parents=True)
            write_text(home / ".config" / "gh" / "hosts.yml", "token: forged\n")

        return outcome(attack)

    # Without the deny entry the rename works (the attack is real) ...
    assert run_sandboxed(MountPlan(write=paths(home)), replant) == "ok"
    assert (gh / "hosts.yml").read_text() == "token: forged\n"
    (home / ".config").rename(tmp_path / "forged")  # put the real tree back
    (home / "config-old").rename(home / ".config")
    # ... with it, the parent is pinned: EBUSY, and the host file is untouched.
    plan = MountPlan(write=paths(home), deny=paths(gh))
    assert run_sandboxed(plan, replant) == "EBUSY"
    assert (gh / "hosts.yml").read_text() == "token: real\n"


@pytest.mark.sandbox
@needs_userns
def test_read_only_bind_covers_submounts(tmp_path: Path) -> None:
    """A recursive bind brings submounts along; they must turn read-only too."""
    tree = tmp_path / "tree"
    (tree / "sub").mkdir(parents=True)

    def stage_submount() -> None:
        assert _mount_tmpfs(tree / "sub") == 0

    def attack() -> str:
        return outcome(lambda: write_text(tree / "sub" / "f", "x"))

    assert run_sandboxed(MountPlan(write=paths(tree)), attack, before=stage_submount) == "ok"
    assert run_sandboxed(MountPlan(read=paths(tree)), attack, before=stage_submount) == "EROFS"


def _mount_tmpfs(where: Path, flags: int = 0) -> int:
    _libc.mount.argtypes = (
        ctypes.c_char_p,
        ctypes.c_char_p,
        ctypes.c_char_p,
        ctypes.c_ulong,
        ctypes.c_char_p,
    )
    ms_rec_private = 0x4000 | 0x40000
    if _libc.mount(None, b"/", None, ms_rec_private, None) != 0:
        return ctypes.get_errno()
    if _libc.mount(b"tmpfs", os.fsencode(where), b"tmpfs", flags, b"mode=0777") != 0:
        return ctypes.get_errno()
    return 0


@pytest.mark.sandbox
@needs_userns
@pytest.mark.parametrize("legacy", [False, True], ids=["mount_setattr", "remount"])
def test_locked_mount_flags_survive_the_read_only_remount(tmp_path: Path, legacy: bool) -> None:
    """Host mounts seen from a user namespace have nosuid/nodev/noexec locked.

    A plain ``MS_REMOUNT|MS_BIND|MS_RDONLY`` would clear them and fails with EPERM; the
    builder must carry them over (legacy path) or change only the read-only bit
    (mount_setattr).  Reproduced by mounting in one user namespace and building the
    root from a nested one, which locks the flags exactly as the host's are locked.
    """
    tree = tmp_path / "locked"
    (tree / "sub").mkdir(parents=True)
    ms_nosuid_nodev_noexec = 0x2 | 0x4 | 0x8
    uid, gid = os.getuid(), os.getgid()

    def stage_locked_mounts() -> None:
        assert _mount_tmpfs(tree, ms_nosuid_nodev_noexec) == 0
        os.mkdir(tree / "sub")
        assert _mount_tmpfs(tree / "sub", ms_nosuid_nodev_noexec) == 0
        ns.unshare(ns.CLONE_NEWUSER | ns.CLONE_NEWNS)
        ns.map_ids(uid, gid)
        if legacy:
            mounts._have_mount_setattr = False

    def attack() -> dict[str, Any]:
        naive = 0
        # What a naive remount would do: it must be refused, or this test proves nothing.
        flags = 0x20 | 0x1000 | 0x1  # MS_REMOUNT | MS_BIND | MS_RDONLY
        if _libc.mount(None, os.fsencode(tree), None, flags, None) != 0:
            naive = ctypes.get_errno()
        vfs = os.statvfs(tree)
        sub = os.statvfs(tree / "sub")
        return {
            "naive": errno.errorcode.get(naive, "ok"),
            "write": outcome(lambda: write_text(tree / "f", "x")),
            "write-sub": outcome(lambda: write_text(tree / "sub" / "f", "x")),
            "flags": [bool(vfs.f_flag & f) for f in (os.ST_RDONLY, os.ST_NOSUID, os.ST_NOEXEC)],
            "sub-flags": [bool(sub.f_flag & f) for f in (os.ST_RDONLY, os.ST_NOSUID)],
        }

    plan = MountPlan(read=paths(tree), proc=False)  # a nested userns may not mount proc
    result = run_sandboxed(
        plan, attack, before=stage_locked_mounts, drop_caps=False, loopback=False
    )
    assert result == {
        "naive": "EPERM",
        "write": "EROFS",
        "write-sub": "EROFS",
        "flags": [True, True, True],
        "sub-flags": [True, True],
    }


# ----------------------------------------------------------------- escape routes


@pytest.mark.sandbox
@needs_userns
def test_pathname_unix_socket_outside_the_plan_is_unreachable(tmp_path: Path) -> None:
    outside = tmp_path / "run"
    outside.mkdir()
    path = outside / "agent.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(8)

    def attack() -> str:
        def connect() -> None:
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
                client.connect(str(path))

        return outcome(connect)

    try:
        assert attack() == "ok"  # from the host
        # Pathname sockets cross network namespaces, and a read-only bind does not stop
        # connect(): only leaving the directory out of the plan does.
        assert run_sandboxed(MountPlan(read=paths(outside)), attack) == "ok"
        assert run_sandboxed(MountPlan(read=paths(tmp_path / "nothing")), attack) == "ENOENT"
    finally:
        server.close()


@pytest.mark.sandbox
@needs_userns
def test_proc_shows_only_the_sandbox(tmp_path: Path) -> None:
    me = os.getpid()

    def look() -> dict[str, Any]:
        return {
            "pids": sorted(name for name in os.listdir("/proc") if name.isdigit()),
            "parent-visible": os.path.exists(f"/proc/{me}"),
            "self": os.readlink("/proc/self"),
            "sys-readonly": bool(os.statvfs("/proc/sys").f_flag & os.ST_RDONLY),
        }

    assert os.path.exists(f"/proc/{me}")  # the host's /proc shows the test process
    result = run_sandboxed(MountPlan(), look)
    assert result["pids"] == ["1"]
    assert result["parent-visible"] is False
    assert result["self"] == "1"
    # uid 0 could write many sysctls by owner permission: those are read-only for it.
    assert result["sys-readonly"] is (os.geteuid() == 0)


# ----------------------------------------------------------------- utility


@pytest.mark.sandbox
@needs_userns
def test_writes_under_a_write_bind_reach_the_host(project: Path) -> None:
    def build() -> str:
        os.makedirs(project / "build" / "lib")
        write_text(project / "build" / "lib" / "out.txt", "built")
        return os.getcwd()

    cwd = run_sandboxed(MountPlan(write=paths(project), workdir=str(project)), build)
    assert cwd == str(project)
    assert (project / "build" / "lib" / "out.txt").read_text() == "built"


@pytest.mark.sandbox
@needs_userns
@pytest.mark.parametrize("legacy", [False, True], ids=["mount_setattr", "remount"])
def test_every_bind_is_nosuid(project: Path, legacy: bool) -> None:
    """A setuid file in a grant does not run setuid through the sandbox's mounts (the
    second wall behind seccomp, which refuses to set the bit at all)."""
    if os.statvfs(project).f_flag & os.ST_NOSUID:
        pytest.skip("the host already mounts the test directory nosuid")
    (project / "data").mkdir()

    def use_legacy_path() -> None:
        mounts._have_mount_setattr = False

    def probe() -> list[bool]:
        return [bool(os.statvfs(p).f_flag & os.ST_NOSUID) for p in (project, project / "data")]

    plan = MountPlan(write=paths(project), read=paths(project / "data"), workdir=str(project))
    before = use_legacy_path if legacy else None
    assert run_sandboxed(plan, probe, before=before) == [True, True]


@pytest.mark.sandbox
@needs_userns
def test_minimal_dev(tmp_path: Path) -> None:
    def use_dev() -> dict[str, Any]:
        with open("/dev/null", "w") as null:
            null.write("discarded")
        primary, secondary = os.openpty()
        pty_name = os.ttyname(secondary)
        os.close(primary)
        os.close(secondary)
        return {
            "listing": sorted(os.listdir("/dev")),
            "zero": read_bytes_n("/dev/zero", 4).hex(),
            "urandom": len(read_bytes_n("/dev/urandom", 16)),
            "fd-link": os.readlink("/dev/fd"),
            "create": outcome(lambda: write_text("/dev/evil", "x")),
            "pty": pty_name,
            "shm": outcome(lambda: write_text("/dev/shm/segment", "x")),
        }

    result = run_sandboxed(MountPlan(), use_dev)
    assert result["listing"] == sorted(
        [
            *("fd", "full", "null", "ptmx", "pts", "random", "shm"),
            *("stderr", "stdin", "stdout", "tty", "urandom", "zero"),
        ]
    )
    assert result["zero"] == "00000000"
    assert result["urandom"] == 16
    assert result["fd-link"] == "/proc/self/fd"
    assert result["create"] == "EROFS"
    assert result["pty"] == "/dev/pts/0"  # a private devpts instance: numbering starts over
    assert result["shm"] == "ok"


def read_bytes_n(path: str, size: int) -> bytes:
    with open(path, "rb") as f:
        return f.read(size)


@pytest.mark.sandbox
@needs_userns
def test_tmp_is_private_writable_and_empty(tmp_path: Path) -> None:
    scratch = Path("/tmp", f"safe-pip-test-{tmp_path.name}-{os.getpid()}")

    def use_tmp() -> dict[str, Any]:
        before = sorted(os.listdir("/tmp"))
        write_text(scratch, "mine")
        return {"before": before, "root-create": outcome(lambda: write_text("/evil", "x"))}

    assert os.listdir("/tmp")  # the host's /tmp is not empty (it holds tmp_path)
    result = run_sandboxed(MountPlan(read=paths("/usr"), tmpfs=paths("/tmp")), use_tmp)
    assert result == {"before": [], "root-create": "EROFS"}
    assert not scratch.exists()


@pytest.mark.sandbox
@needs_userns
@pytest.mark.skipif(not os.access("/usr/bin/python3", os.X_OK), reason="no /usr/bin/python3")
def test_python_runs_inside(project: Path) -> None:
    plan = MountPlan(
        read=SYSTEM_READ,
        write=paths(project),
        tmpfs=paths("/tmp"),
        workdir=str(project),
    )
    code = "import json, os, sys; print(json.dumps([sys.version_info[0], os.getcwd()]))"

    def run_python() -> list[Any]:
        return list(run_command(["/usr/bin/python3", "-I", "-c", code]))

    status, output = run_sandboxed(plan, run_python)
    assert status == 0, output
    assert json.loads(output) == [3, str(project)]


@pytest.mark.sandbox
@needs_userns
def test_symlinked_grants_are_recreated(tmp_path: Path) -> None:
    real = tmp_path / "store" / "v1"
    real.mkdir(parents=True)
    (real / "data.txt").write_text("payload")
    (tmp_path / "store" / "sibling.txt").write_text("not granted")
    (tmp_path / "current").symlink_to("store/v1")  # relative link
    (tmp_path / "abs").symlink_to(tmp_path / "current")  # absolute link to a link

    def look() -> dict[str, Any]:
        return {
            "via-abs": read_bytes(tmp_path / "abs" / "data.txt").decode(),
            "current": os.readlink(tmp_path / "current"),
            "abs": os.readlink(tmp_path / "abs"),
            "sibling": outcome(lambda: read_bytes(tmp_path / "store" / "sibling.txt")),
        }

    assert run_sandboxed(MountPlan(read=paths(tmp_path / "abs")), look) == {
        "via-abs": "payload",
        "current": "store/v1",
        "abs": str(tmp_path / "current"),
        "sibling": "ENOENT",
    }


@pytest.mark.sandbox
@needs_userns
@pytest.mark.skipif(not os.path.islink("/lib64"), reason="/lib64 is not a symlink here")
def test_system_symlink_becomes_a_link_not_a_second_bind() -> None:
    def look() -> dict[str, Any]:
        with open("/proc/self/mountinfo") as f:
            points = [line.split()[4] for line in f]
        return {"link": os.readlink("/lib64"), "points": points}

    result = run_sandboxed(MountPlan(read=SYSTEM_READ), look)
    assert result["link"] == os.readlink("/lib64")
    assert "/lib64" not in result["points"]
    assert "/usr" in result["points"]


@pytest.mark.sandbox
@needs_userns
def test_missing_workdir_is_an_error(tmp_path: Path) -> None:
    def enter() -> str:
        try:
            enter_private_root(MountPlan(workdir=str(tmp_path / "nowhere"), proc=False, dev=False))
        except MountError as exc:
            return str(exc)
        return "entered"

    message = run_sandboxed(None, enter, drop_caps=False)
    assert "nowhere" in message
    assert "No such file" in message


# ----------------------------------------------------------------- speed


@pytest.mark.sandbox
@needs_userns
def test_setup_time(tmp_path: Path, project: Path) -> None:
    """Namespaces + a typical root of about 30 mounts, measured in the child.

    The budget asserted here is loose (CI machines are noisy); the number is printed
    for the benchmark notes (``pytest -s``).
    """
    etc_files = [
        Path("/etc", name)
        for name in (
            "ld.so.cache",
            "hosts",
            "resolv.conf",
            "nsswitch.conf",
            "localtime",
            "passwd",
            "group",
            "mime.types",
            "debian_version",
            "os-release",
        )
    ]
    plan = MountPlan(
        read=paths(*SYSTEM_READ, *etc_files, "/etc/ssl", sys.prefix),
        write=paths(project),
        deny=paths(project / "secrets", project / ".env"),
        protected=paths(project / "pyproject.toml", project / ".git" / "hooks"),
        tmpfs=paths("/tmp", "/var/tmp"),
        workdir=str(project),
    )
    prepared = prepare_root(plan)
    uid, gid = os.getuid(), os.getgid()
    samples: list[tuple[float, float, int]] = []
    for _ in range(7):
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                start = time.perf_counter()
                ns.unshare(SANDBOX_FLAGS)
                ns.map_ids(uid, gid)
                spawned = time.perf_counter()
                init = os.fork()
                if init == 0:
                    resumed = time.perf_counter()
                    ns.bring_up_loopback()
                    enter_private_root(prepared)
                    done = time.perf_counter()
                    with open("/proc/self/mountinfo") as f:
                        count = sum(1 for _ in f)
                    sample = ((spawned - start) * 1e3, (done - resumed) * 1e3, count)
                    os.write(write_end, json.dumps(sample).encode())
                    os._exit(0)
                os.waitpid(init, 0)
            finally:
                os._exit(0)
        os.close(write_end)
        payload = os.read(read_end, 4096)
        os.close(read_end)
        os.waitpid(pid, 0)
        samples.append(tuple(json.loads(payload)))
    namespaces_ms = statistics.median(s[0] for s in samples)
    root_ms = statistics.median(s[1] for s in samples)
    print(
        f"\nsetup: namespaces {namespaces_ms:.2f} ms, lo + private root "
        f"({samples[0][2]} mounts) {root_ms:.2f} ms, total {namespaces_ms + root_ms:.2f} ms"
    )
    # Only a blow-up fails here (about 5 ms on a quiet machine; bench/startup.py has
    # the real figure); the margin holds on a loaded one.
    assert namespaces_ms + root_ms < 500
