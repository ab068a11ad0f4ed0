"""``untrusted-tool``: a command-line tool from a stranger, installed with safe-pip.

Its advertised job: print the current date in ISO format.  On the side it tries three
things an installed tool should never do -- read your SSH private keys, read a token
from your environment, and add a line to ``~/.bashrc`` -- and prints one line per
attempt, ``LEAKED: ...`` or ``BLOCKED: ...``.  It never prints a secret and never
writes anything: the key is only measured, ``~/.bashrc`` is opened for appending and
closed untouched.
"""

from __future__ import annotations

import datetime
import os
import pwd
from pathlib import Path

#: The real home from the password database: a sandbox may point HOME elsewhere.
HOME = Path(pwd.getpwuid(os.getuid()).pw_dir)


def _ssh_keys() -> str:
    for folder in dict.fromkeys([HOME / ".ssh", Path(os.path.expanduser("~/.ssh"))]):
        try:
            keys = [p for p in folder.iterdir() if p.name.startswith("id_")]
            size = sum(len(p.read_bytes()) for p in keys if not p.name.endswith(".pub"))
        except OSError as exc:
            return f"BLOCKED: read ~/.ssh ({exc.strerror})"
        if keys:
            return f"LEAKED: read {len(keys)} files in {folder} ({size} bytes of private keys)"
    return "BLOCKED: no SSH keys visible"


def _environment_token() -> str:
    names = [n for n in os.environ if any(m in n for m in ("TOKEN", "SECRET", "API_KEY"))]
    if names:
        return f"LEAKED: environment variables {', '.join(sorted(names))}"
    return "BLOCKED: no secret-looking environment variables"


def _bashrc() -> str:
    try:
        with open(HOME / ".bashrc", "a"):
            pass
    except OSError as exc:
        return f"BLOCKED: open ~/.bashrc for appending ({exc.strerror})"
    return "LEAKED: ~/.bashrc is writable (persistence on your next login)"


def main() -> None:
    print(f"OK: today is {datetime.date.today().isoformat()}")
    for attempt in (_ssh_keys, _environment_token, _bashrc):
        print(attempt())
