"""Phantoms: the random stand-ins the sandbox sees instead of real secrets.

A phantom has the **same length** as the value it stands for.  The proxy swaps one
for the other in request heads and swaps the real value back to the phantom in
responses; equal lengths mean no ``Content-Length`` or chunk size ever needs
rewriting, whichever way a value travels.  A short lowercase prefix such as
``sk-``, ``ghp_`` or ``hf_`` is kept, because a few clients check a key's shape
before sending it; everything after it is fresh randomness (``secrets``), so a
phantom says nothing about the value beyond its kind and length.
"""

from __future__ import annotations

from safe_pip.credentials.spec import CredentialSpec

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

_ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
_LOWER = frozenset("abcdefghijklmnopqrstuvwxyz")
#: Shortest random part: below this a phantom could plausibly occur by chance.
MIN_RANDOM = 16
#: Longest prefix kept (``github_pat_`` is 11).
MAX_PREFIX = 12


class ArmedCredential:
    """A credential ready for one run: its definition, real value and phantom.

    Lives only in the supervisor.  ``repr`` never shows the real value, so an
    accidental log line or traceback cannot print it.
    """

    __slots__ = ("phantom", "real", "spec")

    def __init__(self, spec: CredentialSpec, real: str, phantom: str) -> None:
        self.spec = spec
        self.real = real
        self.phantom = phantom

    def __repr__(self) -> str:
        return f"ArmedCredential({self.spec.name!r}, env={self.spec.env!r}, real=<hidden>)"


def kept_prefix(real: str) -> str:
    """The value's kind marker: up to two lowercase words ending in ``-``/``_``
    (``sk-``, ``sk-proj-``, ``ghp_``, ``github_pat_``), or ``""``."""
    end = 0
    for _ in range(2):
        i = end
        while i < len(real) and real[i] in _LOWER:
            i += 1
        if i == end or i >= len(real) or real[i] not in "-_" or i + 1 > MAX_PREFIX:
            break
        end = i + 1
    return real[:end]


def make_phantom(real: str) -> str:
    """A fresh phantom exactly as long as ``real``.

    The prefix is kept only when at least :data:`MIN_RANDOM` random characters
    remain after it; a value shorter than that gets a phantom of the same (short)
    length, all random.
    """
    import secrets

    prefix = kept_prefix(real)
    if len(real) - len(prefix) < MIN_RANDOM:
        prefix = ""
    return prefix + "".join(secrets.choice(_ALPHABET) for _ in range(len(real) - len(prefix)))


def arm(
    specs: Iterable[CredentialSpec], caller_env: Mapping[str, str]
) -> tuple[ArmedCredential, ...]:
    """Read every credential's real value (failing closed) and give each a phantom."""
    from safe_pip.credentials.sources import read_secret

    armed = []
    for spec in specs:
        real = read_secret(spec, caller_env)
        armed.append(ArmedCredential(spec, real, make_phantom(real)))
    return tuple(armed)
