"""Text from untrusted code on its way to the user's terminal.

Package names, paths, ``.pth`` lines, build logs and the sandboxed program's own
output can all carry terminal control sequences: ``ESC[2K`` erases the warning that
was just printed, ``ESC[8m`` conceals everything that follows, a bidi override
reverses what a line appears to say.  Every line safe-pip and safe-run print that
holds such text goes through :func:`printable`; and before a report that must be
read (the audit after a build, learn's proposal after the program ran), the
terminal's attributes are reset with :func:`reset_attributes`, since whatever ran
before may have left them concealed.
"""

from __future__ import annotations

import os

#: SGR 0 (all attributes off, which ends "conceal"), then "show the cursor".
_RESET = b"\x1b[0m\x1b[?25h"


def printable(text: str, *, keep_newlines: bool = False) -> str:
    """``text`` with every character that is not printable (controls, escapes, bidi
    and other format characters) replaced by ``?``."""
    allowed_controls = "\n" if keep_newlines else ""
    return "".join(c if c.isprintable() or c in allowed_controls else "?" for c in text)


def reset_attributes(fd: int = 2) -> None:
    """Undo what a program may have left set on the terminal behind ``fd``, if any.

    Only at a terminal: a log file or a pipe gets nothing extra.
    """
    try:
        if os.isatty(fd):
            os.write(fd, _RESET)
    except OSError:
        pass
