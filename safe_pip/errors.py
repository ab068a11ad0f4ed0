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
