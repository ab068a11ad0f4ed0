"""Reading a file the user named, with a type and a size limit.

``extends = ["/dev/zero"]`` grew memory without bound, a FIFO as a policy file or as
``-r`` hung forever.  Everything safe-pip and safe-run read on the user's say-so --
policy files, profiles, uv and safe-pip settings, requirement files -- must be a
regular file below a size limit; anything else is one clear sentence.  The open is
non-blocking (a FIFO would otherwise block in ``open`` itself), and the read stops
one byte past the limit, so a file that grows while it is read is caught too.
"""

from __future__ import annotations

import os
import stat

__all__ = [
    "REQUIREMENTS_LIMIT",
    "TOML_LIMIT",
    "UnreadableInput",
    "check_input_file",
    "read_regular_file",
]

#: Settings files: a pyproject.toml of several MiB is already absurd.
TOML_LIMIT = 4 << 20
#: Requirement and constraint files (hashes make them long).
REQUIREMENTS_LIMIT = 32 << 20


class UnreadableInput(OSError):
    """The file is not one safe-pip will read; ``str()`` is the reason, one clause."""


def _kind(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "a directory"
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def read_regular_file(path: str, limit: int = TOML_LIMIT, *, follow_links: bool = True) -> bytes:
    """The contents of ``path``; :class:`UnreadableInput` when it is not a regular
    file or is larger than ``limit`` bytes (FileNotFoundError passes through).
    ``follow_links=False`` for a file a sandbox wrote: a symlink there is refused
    (ELOOP), never followed."""
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC
    fd = os.open(path, flags if follow_links else flags | os.O_NOFOLLOW)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise UnreadableInput(f"{path} is {_kind(info.st_mode)}, not a regular file")
        if info.st_size > limit:
            raise UnreadableInput(f"{path} is larger than {limit >> 20} MiB")
        chunks = []
        remaining = limit + 1
        while remaining > 0:
            chunk = os.read(fd, min(remaining, 1 << 20))
            if not chunk:
                break
            chunks.append(chunk)
            remaining -= len(chunk)
        if remaining <= 0:
            raise UnreadableInput(f"{path} is larger than {limit >> 20} MiB")
        return b"".join(chunks)
    finally:
        os.close(fd)


def check_input_file(path: str, limit: int = REQUIREMENTS_LIMIT) -> None:
    """That ``path`` is a regular file no larger than ``limit`` (for files another
    process reads: uv reads ``-r`` and ``-c`` files)."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        raise UnreadableInput(f"{path} does not exist") from None
    except OSError as exc:
        raise UnreadableInput(f"{path}: {exc.strerror}") from None
    if not stat.S_ISREG(info.st_mode):
        raise UnreadableInput(f"{path} is {_kind(info.st_mode)}, not a regular file")
    if info.st_size > limit:
        raise UnreadableInput(f"{path} is larger than {limit >> 20} MiB")
