"""``safe-run secret``: put a credential's real value in the system keyring, or remove it.

A credential with ``source = "keyring"`` is read from service ``safe-run``, user
``NAME`` (see :mod:`safe_pip.credentials.sources`).  This subcommand is the supported
way to put it there: the value is read without echo from the terminal, or as one line
from stdin so scripts can pipe it in; it is never taken from the command line, where
it would land in shell history and in ``/proc/PID/cmdline`` for every local user.
"""

from __future__ import annotations

import sys

from safe_pip.credentials.spec import KEYRING_SERVICE
from safe_pip.errors import SafePipError

USAGE = """\
usage: safe-run secret set NAME
       safe-run secret delete NAME

Store a credential's real value in the system keyring (service "safe-run"), for
credentials with source = "keyring" in [tool.safe-run.credentials.NAME], or delete it.
`set` reads the value without echo from the terminal, or one line from stdin when
stdin is not a terminal (printf '%s\\n' "$TOKEN" | safe-run secret set NAME).

NAME: 1-64 characters of A-Z a-z 0-9 _ . -
"""

_NAME_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-")


def valid_name(name: str) -> bool:
    """``[A-Za-z0-9_.-]{1,64}``: safe in a TOML table name, a message and a keyring."""
    return 1 <= len(name) <= 64 and all(c in _NAME_CHARS for c in name)


def read_value(name: str) -> str:
    """The value to store: typed without echo on a terminal, else one line of stdin.

    Only the line terminator is removed (``\\n``, and a ``\\r`` before it from a
    Windows-style pipe), never other whitespace: a secret is stored exactly as given.
    """
    if sys.stdin is not None and sys.stdin.isatty():
        import getpass

        try:
            return getpass.getpass(f"value for {name} (not echoed): ")
        except EOFError:  # Ctrl-D at the prompt: treated as an empty value
            return ""
    if sys.stdin is None:
        raise SafePipError("no stdin to read the value from; pipe it in or use a terminal")
    line = sys.stdin.readline()
    if line.endswith("\n"):
        line = line[:-1]
    if line.endswith("\r"):
        line = line[:-1]
    return line


def _usage_error(problem: str) -> int:
    sys.stderr.write(f"safe-run secret: {problem}\n{USAGE}")
    return 2


def main_secret(argv: list[str]) -> int:
    """Run ``safe-run secret ARGV``; return the exit code.

    0 on success; 1 when ``delete`` found nothing to delete; 2 for usage errors;
    125 (:class:`SafePipError`) when the keyring is missing or fails, or the value is
    unusable — printed as one ``safe-run: ...`` line, no traceback.
    """
    if argv[:1] in (["-h"], ["--help"]):
        sys.stdout.write(USAGE)
        return 0
    if len(argv) != 2 or argv[0] not in ("set", "delete"):
        return _usage_error("expected 'set NAME' or 'delete NAME'")
    action, name = argv
    if not valid_name(name):
        return _usage_error(f"invalid NAME {name[:80]!r}")
    from safe_pip.credentials import sources

    try:
        if action == "set":
            value = read_value(name)
            if not value:
                raise SafePipError(f"refusing to store an empty value for {name}")
            sources.store_secret(name, value)
            print(
                f'safe-run: stored {name} in the keyring (service "{KEYRING_SERVICE}")',
                file=sys.stderr,
            )
            return 0
        if sources.delete_secret(name):
            print(
                f'safe-run: deleted {name} from the keyring (service "{KEYRING_SERVICE}")',
                file=sys.stderr,
            )
            return 0
        print(
            f'safe-run: {name} is not in the keyring (service "{KEYRING_SERVICE}")', file=sys.stderr
        )
        return 1
    except SafePipError as exc:
        print(f"safe-run: {exc.message}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:  # Ctrl-C at the prompt
        print("\nsafe-run: nothing stored", file=sys.stderr)
        return 130
