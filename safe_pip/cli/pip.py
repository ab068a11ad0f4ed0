"""``safe-pip``: the installer command: ``install`` and ``doctor`` so far.

``sync``/``uninstall``/``list``/``audit`` are not written yet; they are absent
rather than half-working.
"""

from __future__ import annotations

import sys

import click

from safe_pip import __version__
from safe_pip.errors import SafePipError


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


def _index_urls(index_url: str | None, extra: tuple[str, ...]) -> tuple[str, ...]:
    """Command line first, then uv's and pip's environment variables, then PyPI."""
    import os

    from safe_pip.installer.install import DEFAULT_INDEX

    default = index_url
    for name in ("UV_DEFAULT_INDEX", "UV_INDEX_URL", "PIP_INDEX_URL"):
        default = default or os.environ.get(name) or None
    extras = list(extra)
    for name in ("UV_INDEX", "UV_EXTRA_INDEX_URL", "PIP_EXTRA_INDEX_URL"):
        extras += os.environ.get(name, "").split()
    urls = tuple(dict.fromkeys([default or DEFAULT_INDEX, *extras]))
    from urllib.parse import urlsplit

    for url in urls:
        parts = urlsplit(url)
        if parts.username is not None or parts.password is not None:
            raise SafePipError(
                f"{parts.hostname}: index URLs with credentials are not supported yet "
                "(build code would see them); use an index without a password"
            )
    return urls


@cli.command()
@click.argument("packages", nargs=-1)
@click.option("-r", "--requirement", "requirement_files", multiple=True, type=click.Path())
@click.option(
    "--venv", type=click.Path(), help="Target venv (default: $VIRTUAL_ENV, else ./.venv)."
)
@click.option("--python", help="Interpreter for a venv this command creates.")
@click.option("-i", "--index-url", help="The default index (default: PyPI).")
@click.option("--extra-index-url", multiple=True, help="More indexes (repeatable).")
@click.option("--no-build", is_flag=True, help="Refuse sdists: no package code runs at all.")
@click.option("--allow-host", multiple=True, help="Also reachable during builds (host[:port]).")
@click.option("--allow-read", multiple=True, type=click.Path(), help="Also readable by builds.")
@click.option("--allow-degraded", is_flag=True, help="Run even if a sandbox layer is missing.")
@click.option("--json", "as_json", is_flag=True, help="Print the outcome as JSON.")
def install(
    packages: tuple[str, ...],
    requirement_files: tuple[str, ...],
    venv: str | None,
    python: str | None,
    index_url: str | None,
    extra_index_url: tuple[str, ...],
    no_build: bool,
    allow_host: tuple[str, ...],
    allow_read: tuple[str, ...],
    allow_degraded: bool,
    as_json: bool,
) -> None:
    """Install packages with uv; every build and resolution step runs sandboxed."""
    import json
    import os

    from safe_pip.installer.install import InstallRequest
    from safe_pip.installer.install import install as run_install

    if not packages and not requirement_files:
        raise click.UsageError("name at least one package or -r file")
    target = venv or os.environ.get("VIRTUAL_ENV") or ".venv"
    request = InstallRequest(
        packages=packages,
        requirement_files=tuple(os.path.abspath(p) for p in requirement_files),
        venv=os.path.abspath(target),
        python=python,
        index_urls=_index_urls(index_url, extra_index_url),
        no_build=no_build,
        extra_hosts=allow_host,
        extra_reads=tuple(os.path.abspath(p) for p in allow_read),
        allow_degraded=allow_degraded,
    )
    outcome = run_install(request)
    if as_json:
        click.echo(
            json.dumps(
                {
                    "venv": request.venv,
                    "installed": outcome.installed,
                    "built": outcome.built,
                    "created_venv": outcome.created_venv,
                    "problem": outcome.problem,
                }
            )
        )
    elif outcome.problem is None:
        built = f" ({len(outcome.built)} built from source in sandboxes)" if outcome.built else ""
        click.echo(f"installed {len(outcome.installed)} packages into {request.venv}{built}")
    if outcome.problem is not None:
        click.echo(f"safe-pip: {outcome.problem}", err=True)
        sys.exit(outcome.exit_code or 1)


def main() -> None:
    try:
        cli()
    except SafePipError as exc:
        click.echo(f"safe-pip: {exc.message}", err=True)
        sys.exit(exc.exit_code)
