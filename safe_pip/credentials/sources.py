"""Reading a credential's real value, in the trusted supervisor (outside the sandbox).

The value is read once per run, before the sandbox starts, from one of three sources:
the caller's environment, a dotenv file, or the system keyring (service
:data:`~safe_pip.credentials.spec.KEYRING_SERVICE`, user = the credential's name).  It
then lives only in the supervisor's proxy, which swaps it in for the phantom.

Two rules hold everywhere in this module:

* **No value in any message.**  Errors name the credential, the variable or file it
  was looked up in, and how to provide it; never the value, not even a prefix, since
  error lines end up in terminals, CI logs and bug reports.
* **Import-light.**  This module is imported on ``safe-run``'s start path whenever a
  credential is configured, so it imports nothing beyond :mod:`os` at the top (no
  ``re``, no ``typing``); ``keyring``, which is slow to import and optional
  (``pip install 'safe-pip[keyring]'``), is imported only when a keyring is used.
"""

from __future__ import annotations

import os

from safe_pip.credentials.spec import KEYRING_SERVICE
from safe_pip.errors import SafePipError

TYPE_CHECKING = False  # importing typing costs more than this whole module
if TYPE_CHECKING:
    from collections.abc import Mapping
    from types import ModuleType

    from safe_pip.credentials.spec import CredentialSpec

#: Escapes decoded inside double quotes: the ones python-dotenv and shells agree on.
#: Any other backslash is kept literally, so Windows paths and regexes survive.
_DQ_ESCAPES = {"n": "\n", "t": "\t", '"': '"', "\\": "\\"}

#: Characters that cannot appear in an HTTP header value (CR/LF would let a value
#: inject headers; NUL is refused by every HTTP stack).
_FORBIDDEN = {"\r": "a carriage return", "\n": "a line break", "\0": "a NUL character"}

_INSTALL_HINT = "install it with: pip install 'safe-pip[keyring]'"


# --- dotenv --------------------------------------------------------------------------


def _is_name(word: str) -> bool:
    """A shell-style variable name (``[A-Za-z_][A-Za-z0-9_]*``), without importing re."""
    if not word or word[0].isdigit():
        return False
    return all(c == "_" or (c.isascii() and c.isalnum()) for c in word)


def _decode_double_quoted(text: str, start: int) -> tuple[str, int] | None:
    """Decode a double-quoted value whose opening quote is at ``start - 1``.

    Returns the value and the index just past the closing quote, or ``None`` when the
    quote is never closed (the line is then ignored, as python-dotenv does, rather
    than swallowing the rest of the file).
    """
    out: list[str] = []
    i, end = start, len(text)
    while i < end:
        char = text[i]
        if char == '"':
            return "".join(out), i + 1
        if char == "\\" and i + 1 < end and text[i + 1] in _DQ_ESCAPES:
            out.append(_DQ_ESCAPES[text[i + 1]])
            i += 2
            continue
        out.append(char)
        i += 1
    return None


def _parse_assignment(text: str, start: int, line_end: int) -> tuple[str, str, int] | None:
    """Parse the assignment starting on the line ``text[start:line_end]``.

    Returns ``(key, value, next)`` where ``next`` is where the following line starts
    (past a multi-line quoted value), or ``None`` for a blank, comment or invalid line.
    """
    line = text[start:line_end].lstrip(" \t")
    if not line or line.startswith("#"):
        return None
    if line.startswith("export") and line[6:7] in (" ", "\t"):
        line = line[7:].lstrip(" \t")
    key, eq, rest = line.partition("=")
    key = key.strip(" \t")
    if not eq or not _is_name(key):
        return None
    rest = rest.lstrip(" \t")
    value_start = line_end - len(rest)  # rest is a suffix of the line
    quote = rest[:1]
    if quote not in ("'", '"'):
        # Unquoted: a comment starts at a '#' preceded by whitespace (so `a#b` is a
        # value, `a #b` is `a`), as in python-dotenv.
        for index, char in enumerate(rest):
            if char == "#" and index and rest[index - 1] in " \t":
                rest = rest[:index]
                break
        return key, rest.strip(" \t"), line_end + 1
    if quote == "'":
        close = text.find("'", value_start + 1)
        if close < 0:
            return None
        value, after = text[value_start + 1 : close], close + 1
    else:
        decoded = _decode_double_quoted(text, value_start + 1)
        if decoded is None:
            return None
        value, after = decoded
    # After the closing quote only whitespace and a comment may follow.
    tail_end = text.find("\n", after)
    if tail_end < 0:
        tail_end = len(text)
    tail = text[after:tail_end].lstrip(" \t")
    if tail and not tail.startswith("#"):
        return None
    return key, value, tail_end + 1


def parse_dotenv(text: str) -> dict[str, str]:
    """Parse a dotenv file: the subset Docker ``--env-file`` and python-dotenv share.

    * Blank lines and full-line ``#`` comments are skipped; ``export`` is optional.
    * ``KEY=value`` with ``KEY`` a shell-style name; whitespace around ``KEY`` and
      ``=`` is tolerated.  Lines without ``=`` or with an invalid name are ignored
      (python-dotenv warns and moves on; refusing the whole file would hide every
      other credential in it behind one typo).
    * ``'single quoted'`` values are literal; ``"double quoted"`` values decode
      ``\\n``, ``\\t``, ``\\"`` and ``\\\\`` and may span lines; a quote never closed
      makes its line invalid.
    * Unquoted values are stripped, and an inline comment (whitespace then ``#``)
      is removed.
    * Later duplicates win.  CRLF line endings are accepted.

    There is deliberately no ``${VAR}`` interpolation: the file is data, not a script.
    Expanding variables would make a secret's value depend on whichever environment
    the supervisor happens to run in, and could splice *another* secret from that
    environment into a value bound for this credential's hosts.
    """
    text = text.replace("\r\n", "\n")
    values: dict[str, str] = {}
    pos, end = 0, len(text)
    while pos < end:
        line_end = text.find("\n", pos)
        if line_end < 0:
            line_end = end
        parsed = _parse_assignment(text, pos, line_end)
        if parsed is None:
            pos = line_end + 1
            continue
        key, value, pos = parsed
        values[key] = value
    return values


# --- reading a secret ----------------------------------------------------------------


def _check_value(spec: CredentialSpec, value: str, where: str) -> str:
    """Refuse values that cannot travel in an HTTP header; name only the character."""
    for char, what in _FORBIDDEN.items():
        if char in value:
            raise SafePipError(
                f'credential "{spec.name}": the value from {where} contains {what}, '
                "which cannot be sent in an HTTP header; store it without one"
            )
    return value


def _store_hint(name: str) -> str:
    return (
        f"store it with: safe-run secret set {name} "
        f'(and set source = "keyring" in [tool.safe-run.credentials.{name}])'
    )


def _read_env(spec: CredentialSpec, caller_env: Mapping[str, str]) -> str:
    var = spec.lookup_name
    value = caller_env.get(var)
    if value is None:
        raise SafePipError(
            f'credential "{spec.name}": {var} is not set in the environment; '
            f"export it, or {_store_hint(spec.name)}"
        )
    if not value:
        raise SafePipError(
            f'credential "{spec.name}": {var} is empty in the environment; '
            f"export its value, or {_store_hint(spec.name)}"
        )
    return _check_value(spec, value, f"the environment variable {var}")


def _read_dotenv(spec: CredentialSpec) -> str:
    key, path = spec.lookup_name, spec.file
    if not path:
        raise SafePipError(
            f'credential "{spec.name}": source = "dotenv" needs a file; '
            f"set file in [tool.safe-run.credentials.{spec.name}]"
        )
    try:
        # utf-8-sig: editors on Windows like to start files with a BOM, which would
        # otherwise glue itself to the first key and hide it.
        with open(path, encoding="utf-8-sig") as file:
            text = file.read()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise SafePipError(
            f'credential "{spec.name}": cannot read the dotenv file {path} ({reason}); '
            f"create it with a line {key}=... or fix its permissions"
        ) from None
    except UnicodeDecodeError:
        # Not `from exc`: the exception carries the raw bytes around the bad one.
        raise SafePipError(
            f'credential "{spec.name}": the dotenv file {path} is not valid UTF-8; save it as UTF-8'
        ) from None
    value = parse_dotenv(text).get(key)
    if value is None:
        raise SafePipError(
            f'credential "{spec.name}": {key} is not set in the dotenv file {path}; '
            f"add a line {key}=... to it"
        )
    if not value:
        raise SafePipError(
            f'credential "{spec.name}": {key} is empty in the dotenv file {path}; '
            f"put its value after {key}= in that file"
        )
    return _check_value(spec, value, f"{key} in {path}")


def _import_keyring(purpose: str) -> ModuleType:
    """Import :mod:`keyring` on first use, turning its absence into one clear line."""
    try:
        import keyring
    except ModuleNotFoundError as exc:
        if exc.name != "keyring":
            raise SafePipError(
                f"{purpose} needs the keyring package, which failed to import "
                f"(missing module {exc.name}); reinstall it with: "
                "pip install --force-reinstall 'safe-pip[keyring]'"
            ) from None
        raise SafePipError(
            f"{purpose} needs the keyring package, which is not installed; {_INSTALL_HINT}"
        ) from None
    except ImportError as exc:
        raise SafePipError(
            f"{purpose} needs the keyring package, which failed to import ({exc}); "
            "reinstall it with: pip install --force-reinstall 'safe-pip[keyring]'"
        ) from None
    return keyring


def _backend_failure(purpose: str, exc: Exception, secret: str | None = None) -> SafePipError:
    """One line for a keyring backend failure, with the backend's own reason.

    Backends are third-party code: their message is redacted of ``secret`` (when we
    know it) in case one echoes what it was asked to store.
    """
    detail = str(exc) or "no details"
    if secret:
        detail = detail.replace(secret, "***")
    name = type(exc).__name__
    if name == "NoKeyringError":
        hint = (
            "no keyring backend is available here; install one (for example "
            "keyrings.alt on a machine without a desktop keyring) or select one with "
            "PYTHON_KEYRING_BACKEND"
        )
        return SafePipError(f"{purpose} failed: {hint}")
    if name == "KeyringLocked":
        return SafePipError(f"{purpose} failed: the keyring is locked ({detail}); unlock it")
    return SafePipError(f"{purpose} failed: the keyring backend said {name}: {detail}")


def _read_keyring(spec: CredentialSpec) -> str:
    purpose = f'reading credential "{spec.name}" from the keyring'
    keyring = _import_keyring(purpose)
    try:
        value = keyring.get_password(KEYRING_SERVICE, spec.name)
    except Exception as exc:  # any backend failure: one line, exit 125
        raise _backend_failure(purpose, exc) from None
    if value is None or value == "":
        state = "is not in" if value is None else "is empty in"
        raise SafePipError(
            f'credential "{spec.name}" {state} the keyring (service "{KEYRING_SERVICE}"); '
            f"store it with: safe-run secret set {spec.name}"
        )
    if not isinstance(value, str):  # a misbehaving backend; never show what it returned
        raise SafePipError(
            f'credential "{spec.name}": the keyring backend returned a non-string value'
        )
    return _check_value(spec, value, "the keyring")


def read_secret(spec: CredentialSpec, caller_env: Mapping[str, str]) -> str:
    """Return the real value of ``spec`` from its source, in the supervisor.

    ``caller_env`` is the environment ``safe-run`` was started with (before
    scrubbing).  Raises :class:`SafePipError` (exit 125) with one sentence naming the
    credential and how to provide it when the value is missing or empty, the file or
    keyring cannot be read, or the value contains CR, LF or NUL (it would break, or
    inject into, the HTTP header it is sent in).  The value itself never appears in
    a message.
    """
    if spec.source == "env":
        return _read_env(spec, caller_env)
    if spec.source == "dotenv":
        return _read_dotenv(spec)
    if spec.source == "keyring":
        return _read_keyring(spec)
    raise SafePipError(f'credential "{spec.name}": unknown source "{spec.source}"')


# --- the keyring's own files -----------------------------------------------------------


def keyring_store_paths(home: str, variables: Mapping[str, str]) -> list[str]:
    """Files and directories where common keyring backends keep secrets on Linux.

    The sandbox must not read the keyring behind ``safe-run``'s back, so these are
    denied to it.  ``policies/base.toml`` already denies the default locations; this
    adds wherever ``$XDG_DATA_HOME`` / ``$XDG_CONFIG_HOME`` move them (resolved the way
    keyring's own ``platform_`` does: an empty variable means the default).  Covered:
    keyring / keyrings.alt file backends (``python_keyring`` under data and config),
    GNOME Keyring (``keyrings``) and KWallet (``kwalletd``).  Cheap: no keyring import.
    """
    data = variables.get("XDG_DATA_HOME") or os.path.join(home, ".local", "share")
    config = variables.get("XDG_CONFIG_HOME") or os.path.join(home, ".config")
    paths: list[str] = []
    for base, leaf in (
        (data, "python_keyring"),
        (data, "keyrings"),
        (data, "kwalletd"),
        (config, "python_keyring"),
    ):
        path = os.path.abspath(os.path.join(base, leaf))
        if path not in paths:
            paths.append(path)
    return paths


# --- `safe-run secret` ------------------------------------------------------------------


def _check_storable(name: str, value: str) -> None:
    if not value:
        raise SafePipError(f"refusing to store an empty value for {name}")
    for char, what in _FORBIDDEN.items():
        if char in value:
            raise SafePipError(
                f"refusing to store {name}: the value contains {what}, which cannot be "
                "sent in an HTTP header"
            )


def store_secret(name: str, value: str) -> None:
    """Store ``value`` in the keyring as credential ``name`` (service ``safe-run``).

    Refuses values a credential could never use (empty, CR, LF, NUL) so the mistake
    shows up now rather than at the next ``safe-run``.
    """
    _check_storable(name, value)
    purpose = f"storing {name} in the keyring"
    keyring = _import_keyring(purpose)
    try:
        keyring.set_password(KEYRING_SERVICE, name, value)
    except Exception as exc:  # any backend failure: one line, exit 125
        raise _backend_failure(purpose, exc, value) from None


def delete_secret(name: str) -> bool:
    """Delete credential ``name`` from the keyring; ``False`` when it was not there.

    keyring reports "not found" and real failures with the same exception
    (``PasswordDeleteError``), so the presence is checked first: a locked or broken
    keyring must not be reported as "nothing to delete".
    """
    purpose = f"deleting {name} from the keyring"
    keyring = _import_keyring(purpose)
    try:
        if keyring.get_password(KEYRING_SERVICE, name) is None:
            return False
        keyring.delete_password(KEYRING_SERVICE, name)
    except Exception as exc:  # any backend failure: one line, exit 125
        raise _backend_failure(purpose, exc) from None
    return True
