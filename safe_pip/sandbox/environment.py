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
    try:
        with open("/proc/self/stat", "rb") as handle:
            stat = handle.read()
    except OSError:
        return False
    # Fields after the parenthesised command name start at field 3; env_start and
    # env_end are fields 50 and 51 (proc(5)).
    fields = stat[stat.rfind(b")") + 2 :].split()
    if len(fields) < 49:
        return False
    start, end = int(fields[47]), int(fields[48])
    if not 0 < start < end:
        return False
    import ctypes

    ctypes.memset(start, 0, end - start)
    return True
