"""``safe-pip``: the installer command.  Only ``doctor`` exists so far.

``install``/``sync``/``uninstall``/``list``/``audit`` arrive with the build-time
sandbox; until then they are absent rather than half-working.
"""

from __future__ import annotations

import sys

import click

from safe_pip import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="safe-pip")
def cli() -> None:
    """Install and run untrusted Python code inside a Linux sandbox."""


@cli.command()
def doctor() -> None:
    """Report every sandbox layer and whether it is in force for this user."""
    from safe_pip.sandbox.probe import format_layers, probe_layers, running_as

    mode, layers = probe_layers()
    click.echo(f"safe-run sandbox on this machine ({running_as()}), mode: {mode}")
    for row in format_layers(layers):
        click.echo("  " + row)
    if mode == "fallback":
        click.echo(
            "  weaker in fallback mode: denied paths can still be stat()ed, pathname unix "
            "sockets are reachable only by refusing socket() entirely, and descendants "
            "survive if safe-run itself is killed."
        )
    missing = [layer.name for layer in layers if not layer.in_force]
    if any(name == "landlock-filesystem" for name in missing):
        click.echo("safe-run will refuse to run (exit 125) unless --allow-degraded is given.")
        sys.exit(1)


def main() -> None:
    cli()
