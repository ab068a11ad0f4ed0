"""The environment the sandboxed program sees: an allowlist, never the caller's whole env.

Secrets most often leak through environment variables (``OPENAI_API_KEY``,
``GITHUB_TOKEN``, ``AWS_*``), so nothing passes unless it is on this list or the
policy's ``env.pass``.  Everything here is harmless presentation state: locale,
terminal, time zone, colour preferences.
"""

from __future__ import annotations

TYPE_CHECKING = False  # avoid importing typing at start-up
if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

#: Names passed from the caller by default (plus every ``LC_*``).
DEFAULT_PASS: tuple[str, ...] = (
    "LANG",
    "LANGUAGE",
    "TERM",
    "COLORTERM",
    "TZ",
    "NO_COLOR",
    "FORCE_COLOR",
    "CLICOLOR",
    "CLICOLOR_FORCE",
    "COLUMNS",
    "LINES",
    "USER",
    "LOGNAME",
)


def build_environment(
    caller: Mapping[str, str],
    *,
    pass_names: Iterable[str],
    set_values: Iterable[tuple[str, str]],
    home: str,
    tmpdir: str,
    path_dirs: Iterable[str],
    venv: str | None,
) -> dict[str, str]:
    """Return the child's environment.

    Order matters: allowlisted caller values first, then the sandbox's own facts
    (HOME, TMPDIR, PATH, VIRTUAL_ENV), then the policy's ``env.set``, which has the
    last word because the user wrote it on purpose.
    """
    allowed = set(DEFAULT_PASS)
    allowed.update(pass_names)
    env = {
        name: value for name, value in caller.items() if name in allowed or name.startswith("LC_")
    }
    env["HOME"] = home
    env["TMPDIR"] = tmpdir
    env["PATH"] = ":".join(dict.fromkeys(path_dirs))
    env["SAFE_RUN"] = "1"
    if venv is not None:
        env["VIRTUAL_ENV"] = venv
    for name, value in set_values:
        env[name] = value
    return env


def _own_block(first_field: int) -> tuple[int, int] | None:
    """(start, end) addresses of this process's argument (45) or environment (47)
    block, from ``/proc/self/stat`` (fields 48-51 in proc(5), counted from 1)."""
    try:
        with open("/proc/self/stat", "rb") as handle:
            stat = handle.read()
    except OSError:
        return None
    # Fields after the parenthesised command name start at field 3.
    fields = stat[stat.rfind(b")") + 2 :].split()
    if len(fields) < first_field + 2:
        return None
    start, end = int(fields[first_field]), int(fields[first_field + 1])
    return (start, end) if 0 < start < end else None


def scrub_own_argv(secrets: Iterable[str]) -> bool:
    """Overwrite ``secrets`` with ``*`` in this process's argument block.

    ``/proc/PID/cmdline`` is readable without any ptrace check, and in namespace
    mode the sandbox's pid 1 is a fork of this process: an index password typed on
    the command line (``-i https://user:pw@host/simple``) would be one ``open()``
    away from the build code it is being kept from.  Python keeps its own copy in
    ``sys.argv``, so nothing of ours needs the original.
    """
    block = _own_block(45)
    if block is None:
        return False
    import ctypes

    start, end = block
    data = ctypes.string_at(start, end - start)
    for secret in secrets:
        raw = secret.encode()
        at = data.find(raw) if raw else -1
        while at >= 0:
            ctypes.memset(start + at, ord("*"), len(raw))
            at = data.find(raw, at + len(raw))
    return True


def scrub_own_environ_block() -> bool:
    """Zero this process's original environment block (what ``/proc/PID/environ`` shows).

    The supervisor is forked to become the sandbox's pid-1 init, so without this the
    caller's whole environment — tokens included — would sit in the memory of a
    process *inside* the sandbox's pid namespace.  Landlock's ptrace rules already
    keep ``/proc/1/environ`` unreadable from the sandbox; zeroing the block means a
    future hole there finds nothing.  Python copied the environment into
    ``os.environ`` at start-up, and the sandboxed program gets its environment from
    ``execve``, so nothing of ours needs the original block.  Returns False where
    ``/proc`` does not tell us where the block is.
    """
    block = _own_block(47)
    if block is None:
        return False
    import ctypes

    ctypes.memset(block[0], 0, block[1] - block[0])
    return True
