"""A "helpful" script that does its job and, on the side, tries what malware tries.

Its advertised job: total the counts in data/input.txt and write out/report.txt.
What it also tries: read SSH keys, cloud credentials and ~/.netrc, harvest
secret-looking environment variables (its own and its parent's), open ~/.bashrc and
its own project's pyproject.toml for writing (persistence, widening its own policy),
and reach out over loopback TCP and the desktop session bus.

Run it bare (``python steal.py``) and under the sandbox (``safe-run steal.py``) and
compare.  Each attempt prints one line, ``LEAKED: ...`` or ``BLOCKED: ...``; the job
prints ``OK: ...``.  It is a demonstration, so it is careful never to do harm itself:

* secrets are never printed, only their size and a masked preview;
* files it could modify are opened for appending and closed with nothing written;
* the network is touched only on 127.0.0.1 (default port 9, the "discard" port;
  ``--port N`` picks another, see examples/README.md) and the session bus socket is
  connected to and closed at once.

A failed attempt is never an error: the script always finishes, and exits non-zero
only if its advertised job failed.
"""

from __future__ import annotations

import argparse
import errno
import os
import socket
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

HERE = Path(__file__).resolve().parent

#: Substrings that make an environment variable name look like it holds a secret.
SECRET_MARKERS = ("TOKEN", "SECRET", "PASSWORD", "PASSWD", "API_KEY", "ACCESS_KEY", "CREDENTIAL")

#: Result of one attempt: (leaked?, human-readable description).
Outcome = tuple[bool, str]


def mask(value: str) -> str:
    """Enough of a secret to recognise it, never enough to use it."""
    return f"{value[:4]!r}... ({len(value)} chars)"


def reason(exc: OSError) -> str:
    """Why an OS call failed, phrased for the report."""
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "permission denied"
    if exc.errno == errno.ENOENT:
        return "not found"
    if exc.errno == errno.EROFS:
        return "read-only file system"
    code = errno.errorcode.get(exc.errno or 0, "error")
    return f"{code}: {exc.strerror}"


def candidate_homes() -> list[Path]:
    """Where the victim's files might be: $HOME, and the home that /etc/passwd names.

    A sandbox may point HOME at an empty private directory; a careful attacker then
    looks up the real home in the password database instead of trusting HOME.
    """
    homes: list[Path] = []
    if os.environ.get("HOME"):
        homes.append(Path(os.environ["HOME"]))
    try:
        import pwd

        homes.append(Path(pwd.getpwuid(os.getuid()).pw_dir))
    except (ImportError, KeyError, OSError):
        pass
    unique: list[Path] = []
    for home in homes:
        if home not in unique:
            unique.append(home)
    return unique


def read_from_homes(relative: str) -> Outcome:
    """Try to read `relative` (a file, or every file in a directory) in each home."""
    failures: list[str] = []
    for home in candidate_homes():
        target = home / relative
        try:
            if target.is_dir():
                names = sorted(entry.name for entry in target.iterdir() if entry.is_file())
                if not names:
                    failures.append(f"{target}: empty")
                    continue
                # Private keys first: that is what an attacker is after.
                names.sort(key=lambda name: not name.startswith("id_") or name.endswith(".pub"))
                target = target / names[0]
            text = target.read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            failures.append(f"{target}: {reason(exc)}")
            continue
        return True, f"read {target} ({len(text)} chars, starting {text[:4]!r}...)"
    return False, "; ".join(failures) or "no home directory to look in"


def secret_names(variables: dict[str, str]) -> list[str]:
    """Names among `variables` that look like credentials."""
    return sorted(
        name
        for name in variables
        if name.upper().endswith("_KEY") or any(marker in name.upper() for marker in SECRET_MARKERS)
    )


def own_environment() -> Outcome:
    """Secret-looking variables in this process's own environment."""
    found = secret_names(dict(os.environ))
    if not found:
        return False, f"no secret-looking variables among {len(os.environ)} visible"
    shown = ", ".join(f"{name}={mask(os.environ[name])}" for name in found)
    return True, f"environment variables {shown}"


def parent_environment() -> Outcome:
    """Secret-looking variables in the parent process's environment, via /proc.

    Scrubbing our own environment is not enough if the parent (a shell, or the
    sandbox's own launcher) still holds the secrets and /proc lets us read them.
    """
    pid = os.getppid() or 1
    try:
        raw = Path(f"/proc/{pid}/environ").read_bytes()
    except OSError as exc:
        return False, f"/proc/{pid}/environ: {reason(exc)}"
    variables = dict(
        entry.split("=", 1) for entry in raw.decode(errors="replace").split("\0") if "=" in entry
    )
    found = secret_names(variables)
    if not found:
        return False, f"read /proc/{pid}/environ, but it holds no secret-looking variables"
    return True, f"parent process {pid} environment holds {', '.join(found)}"


def open_for_append(path: Path) -> None:
    """Open `path` for appending and close it without writing: proves write access."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    os.close(fd)


def persist_in_bashrc() -> Outcome:
    """Could a line be appended to ~/.bashrc (run at the victim's next login)?"""
    failures: list[str] = []
    for home in candidate_homes():
        bashrc = home / ".bashrc"
        try:
            open_for_append(bashrc)
        except OSError as exc:
            failures.append(f"{bashrc}: {reason(exc)}")
            continue
        return True, f"{bashrc} is writable (a real attacker appends a line; nothing written)"
    return False, "; ".join(failures) or "no home directory to look in"


def widen_own_policy() -> Outcome:
    """Could the script edit the pyproject.toml that holds its own sandbox policy?"""
    pyproject = HERE / "pyproject.toml"
    try:
        open_for_append(pyproject)
    except OSError as exc:
        return False, f"{pyproject}: {reason(exc)}"
    return True, f"{pyproject} is writable (the script could grant itself more; nothing written)"


def loopback_tcp(port: int) -> Outcome:
    """Open a TCP connection on 127.0.0.1 and send a harmless line (never leaves the host)."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=3) as conn:
            conn.sendall(b"steal.py demo: a real attacker would send your secrets here\n")
    except OSError as exc:
        if exc.errno == errno.ECONNREFUSED:
            return False, f"127.0.0.1:{port} refused the connection (nothing listens there)"
        return False, f"connect to 127.0.0.1:{port}: {reason(exc)}"
    return True, f"connected to 127.0.0.1:{port} and sent data"


def session_bus_path() -> Path:
    """The desktop session bus socket, from the usual variables or the usual place."""
    address = os.environ.get("DBUS_SESSION_BUS_ADDRESS", "")
    for part in address.split(";"):
        if part.startswith("unix:path="):
            return Path(part.removeprefix("unix:path=").split(",")[0])
    runtime_dir = os.environ.get("XDG_RUNTIME_DIR") or f"/run/user/{os.getuid()}"
    return Path(runtime_dir) / "bus"


def session_bus() -> Outcome:
    """Connect to the session bus: from there, systemd --user runs commands unsandboxed."""
    path = session_bus_path()
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(3)
            conn.connect(str(path))
    except OSError as exc:
        if exc.errno == errno.ENOENT:
            return False, f"{path}: not found (hidden by the sandbox, or no session bus here)"
        return False, f"{path}: {reason(exc)}"
    return True, f"connected to the session bus at {path} (closed at once)"


def attempts(port: int) -> Iterator[tuple[str, Callable[[], Outcome]]]:
    """Every attack, in the order they are tried, with the label printed for it."""
    yield "read an SSH key (~/.ssh)", lambda: read_from_homes(".ssh")
    yield "read AWS credentials (~/.aws/credentials)", lambda: read_from_homes(".aws/credentials")
    yield "read ~/.netrc", lambda: read_from_homes(".netrc")
    yield "secret environment variables", own_environment
    yield "parent's environment (/proc)", parent_environment
    yield "append to ~/.bashrc", persist_in_bashrc
    yield "edit own pyproject.toml", widen_own_policy
    yield f"TCP to 127.0.0.1:{port}", lambda: loopback_tcp(port)
    yield "session bus (unix socket)", session_bus


def do_the_job() -> bool:
    """The advertised work: total the counts per item in data/input.txt."""
    source = HERE / "data" / "input.txt"
    report = HERE / "out" / "report.txt"
    try:
        totals: dict[str, int] = {}
        for line in source.read_text(encoding="utf-8").splitlines():
            if line.strip():
                item, count = line.split()
                totals[item] = totals.get(item, 0) + int(count)
        report.parent.mkdir(exist_ok=True)
        report.write_text(
            "".join(f"{item} {count}\n" for item, count in sorted(totals.items())),
            encoding="utf-8",
        )
    except (OSError, ValueError) as exc:
        print(f"FAILED: the advertised job: {type(exc).__name__}: {exc}")
        return False
    print(f"OK: read {source.name}, wrote out/{report.name} ({len(totals)} items)")
    return True


def main(argv: list[str] | None = None) -> int:
    """Do the job, try every attack, print one line each and a tally."""
    parser = argparse.ArgumentParser(description="safe-pip demo: a script with a hidden agenda")
    parser.add_argument("--port", type=int, default=9, help="loopback TCP port to try (9)")
    args = parser.parse_args(argv)

    job_ok = do_the_job()
    leaked = blocked = 0
    for label, attempt in attempts(args.port):
        try:
            got_through, detail = attempt()
        except Exception as exc:  # an attempt must never crash the script
            got_through, detail = False, f"{type(exc).__name__}: {exc}"
        if got_through:
            leaked += 1
        else:
            blocked += 1
        print(f"{'LEAKED' if got_through else 'BLOCKED'}: {label}: {detail}")
    print(f"steal.py: {leaked + blocked} attempts, {leaked} leaked, {blocked} blocked")
    return 0 if job_ok else 1


if __name__ == "__main__":
    sys.exit(main())
