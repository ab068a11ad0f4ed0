"""Shared by the namespace and private-root tests: the real user-namespace probe and
the errno-name reporter used inside sandboxed children."""

from __future__ import annotations

import errno
import os
from collections.abc import Callable

import pytest

from safe_pip.sandbox import namespaces as ns


def _probe_userns() -> tuple[bool, str]:
    """Probe for real, ignoring SAFE_PIP_NO_USERNS (these tests exercise namespaces)."""
    saved = os.environ.pop(ns.NO_USERNS_ENV, None)
    try:
        return ns.userns_available()
    finally:
        if saved is not None:
            os.environ[ns.NO_USERNS_ENV] = saved


USERNS_OK, USERNS_WHY = _probe_userns()
needs_userns = pytest.mark.skipif(
    not USERNS_OK, reason=f"user namespaces unavailable: {USERNS_WHY}"
)


def outcome(action: Callable[[], object]) -> str:
    """ "ok" or the errno name the action failed with: what a probe reports."""
    try:
        action()
    except OSError as exc:
        return errno.errorcode.get(exc.errno or 0, str(exc))
    return "ok"
