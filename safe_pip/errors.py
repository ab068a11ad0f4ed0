"""Errors that end a command with one readable line instead of a traceback."""

from __future__ import annotations

#: Exit code when safe-pip or safe-run itself failed (bad policy, sandbox unavailable).
EXIT_INTERNAL = 125
#: Exit code when the target exists but cannot be executed.
EXIT_NOT_EXECUTABLE = 126
#: Exit code when the target does not exist.
EXIT_NOT_FOUND = 127


class SafePipError(Exception):
    """A failure the user can act on: printed as one line, exit code attached."""

    def __init__(self, message: str, exit_code: int = EXIT_INTERNAL) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


class PolicyError(SafePipError):
    """The policy is malformed; the message names the file and the key."""

    def __init__(self, source: str, key: str, problem: str) -> None:
        super().__init__(f"{source}: {key}: {problem}")
        self.source = source
        self.key = key
        self.problem = problem


class SandboxUnavailable(SafePipError):
    """A layer the policy needs is missing on this kernel/user (fail closed)."""


def require_working_directory() -> None:
    """A working directory that was deleted under the shell is the user's to fix."""
    import os

    try:
        os.getcwd()
    except FileNotFoundError:
        raise SafePipError(
            "the working directory no longer exists (deleted while the shell was in it); "
            "cd to a directory that does"
        ) from None


def report_unexpected(program: str, exc: BaseException) -> int:
    """One line for an error nobody planned for, and exit 125; the traceback only with
    ``SAFE_PIP_DEBUG=1`` (a traceback is noise to a user and leaks paths into logs).
    Used by both commands' ``main``: no input may end in a traceback."""
    import os
    import sys

    if os.environ.get("SAFE_PIP_DEBUG") == "1":
        import traceback

        traceback.print_exception(exc)
    from safe_pip.terminal import printable

    what = printable(f"{type(exc).__name__}: {exc}")[:300]
    try:
        sys.stderr.write(
            f"{program}: internal error ({what}); SAFE_PIP_DEBUG=1 shows where; please report it\n"
        )
    except (AttributeError, OSError):  # no stderr at all: the exit code must do
        pass
    return EXIT_INTERNAL
