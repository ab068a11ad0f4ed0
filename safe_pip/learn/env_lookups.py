"""Which environment variables a Python program looked for and did not find.

``getenv`` is a library call, not a system call, so no tracer outside the process
can see it.  Python programs are the exception worth having: for a learn run the
launcher puts a ``sitecustomize`` module first on ``PYTHONPATH`` that wraps
``os.environ``'s item lookup (which ``os.getenv``, ``os.environ.get`` and ``in``
all go through), records the names that were missing, and appends them to a file
in the run's private temporary directory at exit.  It then takes itself off
``sys.path`` and runs the interpreter's own ``sitecustomize`` (Debian ships one),
so the program sees the usual start-up.  Python subprocesses inherit the variable
and report too.  Programs in other languages, and Python started with ``-E``,
``-I`` or ``-S``, are not seen.

The file is written from inside the sandbox, so it is treated as untrusted: only
well-formed names are read, at most :data:`MAX_NAMES` of them.

What a lookup means for the policy: a name the caller's environment has but the
sandbox did not pass is a candidate for ``env.pass`` -- unless it looks like a
secret, which is never proposed for passing; the report points at credentials
instead (docs/credentials.md).
"""

from __future__ import annotations

import os
import stat

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

MAX_NAMES = 1000
#: Words that mark a variable as a secret in the usual naming conventions
#: (``DB_PASS``, ``GITHUB_PAT``, ``SENTRY_DSN``).
SECRET_WORDS = (
    "KEY", "KEYS", "TOKEN", "TOKENS", "SECRET", "SECRETS", "PASSWORD", "PASSWD", "PASS",
    "PWD", "PAT", "CREDENTIAL", "CREDENTIALS", "CREDS", "AUTH", "COOKIE", "SESSION",
    "PRIVATE", "SIGNATURE", "DSN", "WEBHOOK", "SALT", "OTP",
)  # fmt: skip
#: Parts that mark a secret anywhere in a name, joined to other words or not
#: (``PGPASSWORD``, ``OPENAI_APIKEY``, ``MYSECRETS``, ``SLACKWEBHOOK``).
SECRET_PARTS = (
    "PASSWORD", "PASSWD", "SECRET", "TOKEN", "APIKEY", "CREDENTIAL", "WEBHOOK",
    "PRIVATEKEY", "ACCESSKEY", "AUTHKEY",
)  # fmt: skip
#: Whole prefixes of cloud credentials.
SECRET_PREFIXES = ("AWS_", "AZURE_", "GOOGLE_APPLICATION_CREDENTIALS", "GCP_", "DOCKER_AUTH")
#: Values that are secrets whatever their variable is called: a URL with a password
#: (``postgres://app:pw@db/prod``), the shapes of common tokens, a private key.
_SECRET_VALUE_PATTERNS = (
    r"[A-Za-z][A-Za-z0-9+.-]*://[^/\s:@]*:[^/\s@]+@",
    r"^(ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{20,}",
    r"^github_pat_\w{20,}",
    r"^glpat-[\w-]{16,}",
    r"^xox[abposr]-[\w-]{10,}",
    r"^(sk|rk|pk)[-_](live_|test_|proj-|ant-)?[\w-]{16,}",
    r"^(AKIA|ASIA)[0-9A-Z]{16}$",
    r"^AIza[\w-]{30,}",
    r"^hf_[A-Za-z0-9]{20,}",
    r"^eyJ[\w-]{8,}\.eyJ[\w-]{8,}\.",
    r"-----BEGIN [A-Z ]*PRIVATE KEY-----",
)

_HOOK = '''\
"""safe-run --learn: record the environment variables this program looked for."""
import os as _os
import sys as _sys


def _safe_run_learn_env(record):
    environ_type = type(_os.environ)
    original = environ_type.__getitem__
    missing = set()

    def __getitem__(self, key):
        try:
            return original(self, key)
        except KeyError:
            if isinstance(key, str) and len(missing) < {max_names}:
                missing.add(key)
            raise

    environ_type.__getitem__ = __getitem__

    def flush():
        if not missing:
            return
        try:
            fd = _os.open(record, _os.O_WRONLY | _os.O_APPEND | _os.O_CREAT, 0o600)
            try:
                _os.write(fd, "".join(name + "\\n" for name in missing).encode("utf-8", "replace"))
            finally:
                _os.close(fd)
        except OSError:
            pass

    import atexit

    atexit.register(flush)


def _safe_run_chain():
    here = _os.path.dirname(_os.path.abspath(__file__))
    _sys.path[:] = [p for p in _sys.path if _os.path.abspath(p or ".") != here]
    import importlib.machinery
    import importlib.util

    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", _sys.path)
    if spec is None or spec.loader is None:
        return
    module = importlib.util.module_from_spec(spec)
    _sys.modules["sitecustomize"] = module
    spec.loader.exec_module(module)


try:
    _safe_run_learn_env({record!r})
finally:
    _safe_run_chain()
'''


def install_hook(directory: str) -> tuple[str, str]:
    """Write the hook into ``directory``; return (PYTHONPATH entry, record file)."""
    hook_dir = os.path.join(directory, "safe-run-learn-env")
    os.makedirs(hook_dir, mode=0o700, exist_ok=True)
    record = os.path.join(hook_dir, "lookups")
    with open(os.path.join(hook_dir, "sitecustomize.py"), "w", encoding="utf-8") as handle:
        handle.write(_HOOK.format(record=record, max_names=MAX_NAMES))
    return hook_dir, record


def with_hook(env: Mapping[str, str], hook_dir: str) -> dict[str, str]:
    """``env`` with the hook first on ``PYTHONPATH``."""
    current = env.get("PYTHONPATH")
    return {**env, "PYTHONPATH": hook_dir + (":" + current if current else "")}


def read_lookups(record: str) -> list[str]:
    """The well-formed names in the record file, once each, at most MAX_NAMES."""
    data = _read_untrusted(record, MAX_NAMES * 256)
    names: dict[str, None] = {}
    for raw in data.split(b"\n"):
        name = raw.decode("ascii", "replace")
        if _well_formed(name):
            names[name] = None
        if len(names) >= MAX_NAMES:
            break
    return list(names)


def _read_untrusted(record: str, limit: int) -> bytes:
    """Up to ``limit`` bytes of ``record``, which the sandbox could have replaced.

    The hook's directory and file lie in the sandbox's writable TMPDIR, so either may
    have become a symlink to one of the user's files, or a FIFO that never ends: the
    supervisor reads them without following symlinks and only as a regular file.
    The directory above them (the private dir's ``tmp``) cannot be renamed from
    inside.
    """
    hook_dir, name = os.path.split(record)
    tmp_dir, hook_name = os.path.split(hook_dir)
    nofollow = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC
    fds: list[int] = []
    try:
        fds.append(os.open(tmp_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC))
        fds.append(os.open(hook_name, nofollow | os.O_DIRECTORY, dir_fd=fds[-1]))
        fds.append(os.open(name, nofollow | os.O_NONBLOCK, dir_fd=fds[-1]))
        if not stat.S_ISREG(os.fstat(fds[-1]).st_mode):
            return b""
        return os.read(fds[-1], limit)
    except OSError:
        return b""
    finally:
        for fd in fds:
            os.close(fd)


def _well_formed(name: str) -> bool:
    if not name or len(name) > 128 or not name.isascii():
        return False
    if not (name[0].isalpha() or name[0] == "_"):
        return False
    return all(c.isalnum() or c == "_" for c in name)


def looks_secret(name: str, value: str | None = None) -> bool:
    """Whether a variable holds a credential, by its name (``OPENAI_API_KEY``,
    ``PGPASSWORD``, ``GITHUB_PAT``, ``AWS_*``) or, when given, its value (a URL with a
    password, a token's shape, a private key).  Errs on the side of "secret": a
    variable kept out costs the user one line; one passed hands over a credential."""
    upper = name.upper()
    if upper.startswith(SECRET_PREFIXES):
        return True
    words = upper.replace("-", "_").split("_")
    if any(word in SECRET_WORDS for word in words):
        return True
    squeezed = upper.replace("_", "").replace("-", "")
    if any(part in squeezed for part in SECRET_PARTS):
        return True
    return value is not None and secret_value(value)


def secret_value(value: str) -> bool:
    """Whether ``value`` looks like a credential whatever its variable's name."""
    import re

    return any(re.search(pattern, value) for pattern in _SECRET_VALUE_PATTERNS)


def wanted_variables(
    looked_for: list[str], caller: Mapping[str, str], sandbox: Mapping[str, str]
) -> tuple[list[str], list[str]]:
    """(names to pass, secret names kept out): looked for, absent inside, set outside."""
    candidates = [n for n in looked_for if n not in sandbox and n in caller]
    secret = [n for n in candidates if looks_secret(n, caller[n])]
    return [n for n in candidates if n not in secret], secret
