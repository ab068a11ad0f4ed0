"""How a refusal tells the user what to change, for the command that ran.

The same proxy serves ``safe-run`` (whose allow list is ``[tool.safe-run.network]``
or ``--allow-host``) and ``safe-pip``'s build sandbox (whose allow list comes from
the indexes, ``--allow-host`` and ``allow-hosts`` in its configuration).  A
refusal that names the other command's setting sends the user on a detour that
does not help, so every message is phrased through one :class:`Advice`.
"""

from __future__ import annotations

from safe_pip._records import record

__all__ = ["INSTALL", "RUN", "Advice"]


@record
class Advice:
    """The wording of refusals for one command."""

    command: str  # "safe-run" or "safe-pip"

    @property
    def prefix(self) -> str:
        """The start of every exit-report line."""
        return f"{self.command}: network: "

    def how_to_allow(self, pattern: str) -> str:
        """What to write or pass so that ``pattern`` is allowed next time."""
        if self.command == "safe-pip":
            return (
                f"pass --allow-host {pattern} (or add it to allow-hosts in [tool.safe-pip] "
                "of pyproject.toml, or in ~/.config/safe-pip/config.toml)"
            )
        return f'add "{pattern}" to [tool.safe-run.network] allow (or pass --allow-host {pattern})'


RUN = Advice("safe-run")
INSTALL = Advice("safe-pip")
