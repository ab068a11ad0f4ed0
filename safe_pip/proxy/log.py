"""What the sandbox tried to reach, summarised for the user at the end of a run.

A refused destination is the denial a user most often wants to fix, so each one is
reported once, with a count and the exact pattern that would allow it.  Only the
destination, the verdict and our own reason are kept: request lines, headers and
bodies never enter this log (they can carry credentials).

The program being watched chooses the destinations, so the log is bounded: after
:data:`MAX_ENTRIES` distinct ones, further new destinations are only counted.
Host text is reduced to printable ASCII before it is stored, so a crafted name
cannot write terminal escape sequences to the user's screen.
"""

from __future__ import annotations

import threading

from safe_pip._records import mutable_record
from safe_pip.proxy.addresses import join_host_port
from safe_pip.proxy.advice import RUN, Advice

__all__ = ["MAX_ENTRIES", "DestinationLog"]

#: Distinct (destination, verdict) lines kept; later newcomers are only counted.
MAX_ENTRIES = 2048


@mutable_record
class _Entry:
    """One (via, host, port, verdict) line of the report."""

    count: int
    reason: str
    hint: str | None


class DestinationLog:
    """Thread-safe tally of the proxy's (and the launcher's) network decisions."""

    def __init__(self, advice: Advice = RUN) -> None:
        #: How refusals name the fix: safe-run's policy key or safe-pip's flag.
        self.advice = advice
        self._lock = threading.Lock()
        self._entries: dict[tuple[str, str, int, bool], _Entry] = {}
        self._unlisted = {True: 0, False: 0}  # allowed -> attempts beyond MAX_ENTRIES

    def record(
        self,
        host: str,
        port: int,
        *,
        allowed: bool,
        reason: str,
        hint: str | None,
        via: str = "proxy",
    ) -> None:
        """Count one decision.  ``via="direct"``: a raw connect() the launcher refused;
        ``via="dns"``: a name the program asked the sandbox's DNS for (safe_pip/proxy/dns.py).

        The first reason and hint seen for a destination are the ones reported.
        """
        key = (_printable(via), _printable(host), port, allowed)
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                entry.count += 1
            elif len(self._entries) < MAX_ENTRIES:
                safe_hint = None if hint is None else _printable(hint)
                self._entries[key] = _Entry(1, _printable(reason), safe_hint)
            else:
                self._unlisted[allowed] += 1

    def refused_count(self) -> int:
        """How many connection attempts were refused (not distinct destinations)."""
        with self._lock:
            listed = sum(e.count for (*_, allowed), e in self._entries.items() if not allowed)
            return listed + self._unlisted[False]

    def refused_hints(self) -> list[str]:
        """The allow patterns that would have let each refused destination through."""
        with self._lock:
            hints = [e.hint for (*_, allowed), e in self._entries.items() if not allowed]
        return list(dict.fromkeys(h for h in hints if h is not None))

    def report_lines(self, verbose: bool) -> list[str]:
        """Refused destinations first (in the order first seen), allowed ones if verbose."""
        with self._lock:
            items = [(key, _Entry(e.count, e.reason, e.hint)) for key, e in self._entries.items()]
            unlisted = dict(self._unlisted)
        prefix = self.advice.prefix
        lines = [self._refused_line(*key[:3], entry) for key, entry in items if not key[3]]
        if unlisted[False]:
            lines.append(f"{prefix}refused {_times_phrase(unlisted[False])} to other destinations")
        if verbose:
            lines += [_allowed_line(prefix, *key[:3], entry) for key, entry in items if key[3]]
            if unlisted[True]:
                lines.append(
                    f"{prefix}allowed {_times_phrase(unlisted[True])} to other destinations"
                )
        return lines

    def _refused_line(self, via: str, host: str, port: int, entry: _Entry) -> str:
        destination = join_host_port(host, port)
        prefix = self.advice.prefix
        if via == "dns":
            line = f"{prefix}the program looked up {host} itself{_count(entry.count)}: "
            line += entry.reason
        elif via == "direct":
            line = f"{prefix}refused direct connection to {destination}{_count(entry.count)}"
            if entry.reason:
                line += f": {entry.reason}"
            line += " (use the proxy in HTTPS_PROXY)"
        else:
            line = f"{prefix}refused {destination}{_count(entry.count)}: {entry.reason}"
        if entry.hint is not None:
            line += f"; to allow it {self.advice.how_to_allow(entry.hint)}"
        return line


def _allowed_line(prefix: str, via: str, host: str, port: int, entry: _Entry) -> str:
    what = "direct connection to " if via == "direct" else ""
    return f"{prefix}allowed {what}{join_host_port(host, port)}{_count(entry.count)}"


def _count(count: int) -> str:
    return f" ({count} times)" if count > 1 else ""


def _times_phrase(count: int) -> str:
    return "1 more connection" if count == 1 else f"{count} more connections"


def _printable(text: str) -> str:
    """``text`` with everything but printable ASCII replaced by ``?``."""
    if text.isascii() and text.isprintable():
        return text
    return "".join(c if " " <= c <= "~" else "?" for c in text)
