"""``safe-pip``: the installer command (click): ``install``, ``sync`` and ``doctor``
here; ``list``, ``uninstall`` and ``audit`` in :mod:`safe_pip.cli.pip_venv`.

The commands only turn flags into an :class:`~safe_pip.installer.install.InstallRequest`
and report the outcome; what runs where is decided in :mod:`safe_pip.installer`.
"""

from __future__ import annotations

import sys

import click

from safe_pip import __version__
from safe_pip.cli.pip_venv import target_venv
from safe_pip.cli.uv_words import (
    UvCommand,
    choices_from,
    no_wait_option,
    repeatable_path,
    uv_install_options,
    uv_shared_options,
)
from safe_pip.errors import SafePipError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable

    from safe_pip.credentials.phantom import ArmedCredential
    from safe_pip.installer.install import InstallOutcome, InstallRequest


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="safe-pip")
def cli() -> None:
    """Install and run untrusted Python code inside a Linux sandbox."""


@cli.command()
def doctor() -> None:
    """Report every sandbox layer and whether it is in force for this user."""
    from safe_pip.sandbox import namespaces
    from safe_pip.sandbox.probe import format_layers, namespace_advice, probe_layers, running_as

    userns = namespaces.userns_available()
    mode, layers = probe_layers(userns=userns)
    click.echo(f"safe-run sandbox on this machine ({running_as()}), mode: {mode}")
    for row in format_layers(layers):
        click.echo("  " + row)
    if mode == "fallback":
        click.echo(f"namespace mode is off: {userns[1]}")
        for line in namespace_advice(userns[1]):
            click.echo("  " + line)
    missing = [layer.name for layer in layers if not layer.in_force]
    if any(name == "landlock-filesystem" for name in missing):
        click.echo("safe-run will refuse to run (exit 125) unless --allow-degraded is given.")
        sys.exit(1)


def _split_local(packages: tuple[str, ...]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(requirement specifiers, local paths): an argument naming an existing file or
    directory (``./proj``, ``dist/x-1.0.tar.gz``, ``x.whl``) is a local source."""
    import os

    specifiers, local = [], []
    for item in packages:
        looks_local = item.startswith((".", "/", "~")) or os.sep in item
        looks_local = looks_local or item.endswith((".whl", ".tar.gz", ".zip"))
        if looks_local and "://" not in item:
            path = os.path.abspath(os.path.expanduser(item))
            if not os.path.exists(path):
                raise SafePipError(f"{item}: no such file or directory")
            local.append(path)
        else:
            specifiers.append(item)
    return tuple(specifiers), tuple(local)


def _local_or_url(value: str) -> str:
    import os

    return value if "://" in value else os.path.abspath(os.path.expanduser(value))


def _indexes(
    index_url: str | None, extra: tuple[str, ...], find_links: tuple[str, ...], project: str | None
) -> tuple[tuple[str, ...], tuple[str, ...], tuple[ArmedCredential, ...]]:
    """uv's indexes, passwords swapped for phantoms; the real ones also leave our
    own ``/proc/PID/cmdline``, which sandboxed code could otherwise read."""
    import os

    from safe_pip.cli.approve import require_approval
    from safe_pip.installer.indexes import (
        configured_indexes,
        project_index_approval,
        uv_trust_environment,
    )
    from safe_pip.sandbox.environment import scrub_own_argv

    home = os.path.expanduser("~")
    approval = project_index_approval(project, home, os.environ)
    require_approval(approval, home=home, variables=os.environ, program="safe-pip")
    # uv.toml's TLS settings as variables: uv runs with UV_NO_CONFIG, the trust
    # variables pass into every sandbox, and the trusted fetch reads them too.
    os.environ.update(uv_trust_environment(project, os.environ))
    urls, links, credentials = configured_indexes(index_url, extra, find_links, project)
    if credentials:
        from urllib.parse import quote

        reals = [credential.real for credential in credentials]
        scrub_own_argv([*reals, *(quote(real, safe="") for real in reals)])
    return urls, links, credentials


def _check_files(
    requirements: tuple[str, ...], constraints: tuple[str, ...], editables: tuple[str, ...]
) -> None:
    """-r and -c name regular files of sane size (uv reads them; a FIFO or /dev/zero
    would hang it or eat memory); -e names a directory."""
    import os

    from safe_pip.bounded import UnreadableInput, check_input_file

    for path in (*requirements, *constraints):
        try:
            check_input_file(path)
        except UnreadableInput as exc:
            raise SafePipError(str(exc)) from None
    for path in editables:
        if not os.path.isdir(path):
            raise SafePipError(f"-e {path}: not a project directory")


def _configured_hosts(project: str | None) -> tuple[str, ...]:
    """Extra build hosts from the user's config and the project's approved
    ``[tool.safe-pip]`` (installer/settings.py)."""
    import os

    from safe_pip.cli.approve import require_approval
    from safe_pip.installer.settings import project_hosts, user_hosts

    home = os.path.expanduser("~")
    hosts, approval = project_hosts(project, home, os.environ)
    require_approval(approval, home=home, variables=os.environ, program="safe-pip")
    return (*user_hosts(os.environ, home), *hosts)


def _project_dir() -> str | None:
    """The directory of the nearest pyproject.toml (uv reads its ``[tool.uv]``)."""
    import os

    from safe_pip.policy.loader import find_pyproject

    found = find_pyproject(os.getcwd())
    return None if found is None else os.path.dirname(found)


def report_outcome(outcome: InstallOutcome, venv: str, as_json: bool, quiet: bool = False) -> None:
    """The one summary line (or JSON), the audit findings, and the exit code."""
    import json

    from safe_pip.terminal import printable, reset_attributes

    # uv and the builds printed before us: whatever they left set (conceal, say) must
    # not hide what follows.
    reset_attributes(2)
    for line in outcome.finding_lines:
        click.echo(f"safe-pip: audit: {line}", err=True)
    if outcome.wrapped:
        names = ", ".join(printable(name) for name in outcome.wrapped)
        click.echo(
            f"safe-pip: wrapped {names}: they run under safe-run (this venv wraps every "
            "script an install adds; --wrap-scripts)",
            err=True,
        )
    if as_json:
        click.echo(
            json.dumps(
                {
                    "venv": venv,
                    "installed": outcome.installed,
                    "removed": outcome.removed,
                    "built": outcome.built,
                    "reused_builds": outcome.reused_builds,
                    "route": outcome.route,
                    "shared_cache": outcome.shared_cache,
                    "created_venv": outcome.created_venv,
                    "findings": outcome.findings,
                    "wrapped_scripts": outcome.wrapped,
                    "problem": outcome.problem,
                    "detail": outcome.detail,
                    "would_install": outcome.would_install,
                    "would_build": outcome.would_build,
                }
            )
        )
    elif outcome.problem is None and outcome.dry_run:
        for name in outcome.would_install:
            click.echo(f"would install {name}")
        for name in outcome.would_build:
            click.echo(f"would build {printable(name)} from source, in a sandbox")
        click.echo("dry run: nothing was installed")
    elif outcome.problem is None and quiet:
        pass
    elif outcome.problem is None:
        built = f" ({len(outcome.built)} built from source in sandboxes)" if outcome.built else ""
        if outcome.reused_builds:
            built += f" ({len(outcome.reused_builds)} from earlier builds)"
        click.echo(f"installed {len(outcome.installed)} packages into {venv}{built}")
    if outcome.problem is not None:
        click.echo(f"safe-pip: {printable(outcome.problem)}", err=True)
        sys.exit(outcome.exit_code or 1)


def _build_sandbox_options(command: Callable[..., None]) -> Callable[..., None]:
    """The options ``install`` and ``sync`` share: the venv's interpreter, how much
    build code may run and what it may reach, and the output format."""
    options = [
        click.option("-p", "--python", help="Interpreter for a venv this command creates."),
        click.option(
            "--no-build", is_flag=True, help="Refuse sdists: no package code runs at all."
        ),
        click.option(
            "--allow-host", multiple=True, help="Also reachable during builds (host[:port])."
        ),
        click.option(
            "--allow-read", multiple=True, type=click.Path(), help="Also readable by builds."
        ),
        click.option(
            "--allow-degraded", is_flag=True, help="Run even if a sandbox layer is missing."
        ),
        click.option("--json", "as_json", is_flag=True, help="Print the outcome as JSON."),
        no_wait_option,
        click.option(
            "--learn",
            is_flag=True,
            help="Trace the build sandboxes; report what they refused and the flags to allow it.",
        ),
    ]
    for option in reversed(options):
        command = option(command)
    return command


@cli.command(cls=UvCommand)
@click.argument("packages", nargs=-1)
@repeatable_path(
    "-r",
    "--requirement",
    "requirement_files",
    "Install the packages listed in this file (requirements.txt, pyproject.toml ...).",
)
@repeatable_path(
    "-c", "--constraint", "constraint_files", "Constrain versions using this requirements file."
)
@repeatable_path("-e", "--editable", "editables", "A local project, installed editable.")
@click.option(
    "--venv",
    type=click.Path(),
    help="Target venv (default: $VIRTUAL_ENV, else the nearest .venv here or above).",
)
@click.option("-i", "--index-url", help="The default index (default: PyPI).")
@click.option("--extra-index-url", multiple=True, help="More indexes (repeatable).")
@click.option("-f", "--find-links", multiple=True, help="A folder or URL of distributions.")
@click.option(
    "--strict", is_flag=True, help="Fail, and undo, if the install adds code that runs later."
)
@click.option(
    "--wrap-scripts", is_flag=True, help="Make the new console scripts run under safe-run."
)
@_build_sandbox_options
@uv_install_options
def install(
    packages: tuple[str, ...],
    requirement_files: tuple[str, ...],
    constraint_files: tuple[str, ...],
    editables: tuple[str, ...],
    venv: str | None,
    python: str | None,
    index_url: str | None,
    extra_index_url: tuple[str, ...],
    find_links: tuple[str, ...],
    no_build: bool,
    strict: bool,
    wrap_scripts: bool,
    allow_host: tuple[str, ...],
    allow_read: tuple[str, ...],
    allow_degraded: bool,
    as_json: bool,
    no_wait: bool,
    learn: bool,
    quiet: bool,
    verbose: bool,
    **uv_flags: object,
) -> None:
    """Install packages with uv; every build and resolution step runs sandboxed.

    uv pip's flags mean what they mean for uv (docs/install.md has the table)."""
    import os

    from safe_pip.installer.install import InstallRequest
    from safe_pip.installer.settings import default_exclude_newer

    if not packages and not requirement_files and not editables:
        raise click.UsageError("name at least one package, -r file or -e project")
    _check_files(requirement_files, constraint_files, editables)
    specifiers, local = _split_local(packages)
    project = _project_dir()
    choices = choices_from(uv_flags, default_exclude_newer(project, os.environ))
    urls, links, credentials = _indexes(index_url, extra_index_url, find_links, project)
    links = tuple(_local_or_url(f) for f in links)
    request = InstallRequest(
        packages=specifiers,
        requirement_files=tuple(os.path.abspath(p) for p in requirement_files),
        constraint_files=tuple(os.path.abspath(p) for p in constraint_files),
        editables=tuple(os.path.abspath(p) for p in editables),
        local_sources=local,
        find_links=links,
        venv=target_venv(venv),
        python=python,
        index_urls=urls,
        credentials=credentials,
        no_build=no_build,
        strict=strict,
        wrap_scripts=wrap_scripts,
        extra_hosts=(*allow_host, *_configured_hosts(project)),
        extra_reads=tuple(os.path.abspath(p) for p in allow_read),
        allow_degraded=allow_degraded,
        uv=choices,
        quiet=quiet,
        verbose=verbose,
        wait_for_lock=not no_wait,
    )
    report_outcome(_install_maybe_learning(request, learn), request.venv, as_json, quiet)


@cli.command(cls=UvCommand)
@click.option(
    "--venv", type=click.Path(), help="Target venv (default: $VIRTUAL_ENV, else PROJECT/.venv)."
)
@click.option(
    "--strict", is_flag=True, help="Fail, and undo, if the sync adds code that runs later."
)
@click.option(
    "--locked", is_flag=True, help="Assert that uv.lock is up to date (checked in the sandbox)."
)
@click.option("--frozen", is_flag=True, help="Install uv.lock as it is, without checking it.")
@click.option("--extra", "extras", multiple=True, help="Include this optional dependency group.")
@click.option("--all-extras", is_flag=True, help="Include all optional dependencies.")
@click.option("--group", "groups", multiple=True, help="Include this dependency group.")
@click.option("--no-dev", is_flag=True, help="Leave out the dev dependency group.")
@_build_sandbox_options
@uv_shared_options
def sync(
    venv: str | None,
    locked: bool,
    frozen: bool,
    extras: tuple[str, ...],
    all_extras: bool,
    groups: tuple[str, ...],
    no_dev: bool,
    python: str | None,
    no_build: bool,
    strict: bool,
    allow_host: tuple[str, ...],
    allow_read: tuple[str, ...],
    allow_degraded: bool,
    as_json: bool,
    no_wait: bool,
    learn: bool,
    quiet: bool,
    verbose: bool,
    **uv_flags: object,
) -> None:
    """Install the project around the working directory from its uv.lock, locking it
    first (in the sandbox) as uv sync does; --locked checks the lock, --frozen takes it
    as it is."""
    import os

    from safe_pip.installer import sync as syncing
    from safe_pip.installer.install import InstallRequest
    from safe_pip.launcher.scratch import make_private_dir, remove_tree

    if locked and frozen:
        raise click.UsageError("--locked and --frozen contradict each other; pick one")
    project_dir = _project_dir()
    if project_dir is None:
        raise SafePipError("no pyproject.toml here or above; run sync inside a project")
    data = syncing.load_pyproject(project_dir)
    urls, links, credentials = _indexes(None, (), (), project_dir)
    hosts = (*allow_host, *_configured_hosts(project_dir))
    target = target_venv(venv, os.path.join(project_dir, ".venv"))
    choices = choices_from(uv_flags)
    if not frozen:
        _lock(project_dir, target, urls, credentials, hosts, allow_degraded, check=locked,
              uv_flags=choices.everywhere_flags(), quiet=quiet)  # fmt: skip
    elif not os.path.isfile(os.path.join(project_dir, "uv.lock")):
        raise SafePipError(f"--frozen: {project_dir} has no uv.lock; run 'safe-pip lock' first")
    work = make_private_dir()
    try:
        lock_exists = os.path.isfile(os.path.join(project_dir, "uv.lock"))
        files: tuple[str, ...] = ()
        specifiers: tuple[str, ...] = ()
        editables: list[str] = []
        local: list[str] = []
        if lock_exists:
            exported = os.path.join(work, "uv-lock.txt")
            selection = [*(f"--extra={e}" for e in extras), *(f"--group={g}" for g in groups)]
            selection += ["--all-extras"] if all_extras else []
            selection += ["--no-dev"] if no_dev else []
            syncing.export_lock(project_dir, exported, selection)
            editables, local = syncing.split_local_lines(exported, project_dir)
            files = (exported,)
        else:
            specifiers = tuple(syncing.declared_requirements(data))
        if syncing.is_packaged(data):
            editables.insert(0, project_dir)
        request = InstallRequest(
            packages=specifiers,
            requirement_files=files,
            editables=tuple(editables),
            local_sources=tuple(local),
            find_links=tuple(_local_or_url(f) for f in links),
            venv=target,
            python=python,
            index_urls=urls,
            credentials=credentials,
            no_build=no_build,
            strict=strict,
            exact=lock_exists,
            extra_hosts=hosts,
            extra_reads=tuple(os.path.abspath(p) for p in allow_read),
            allow_degraded=allow_degraded,
            uv=choices,
            quiet=quiet,
            verbose=verbose,
            wait_for_lock=not no_wait,
        )
        if not (specifiers or files or editables or local):
            from safe_pip.installer.install import ensure_venv

            ensure_venv(target, python)
            click.echo(f"nothing to install: {project_dir} declares no dependencies")
            return
        report_outcome(_install_maybe_learning(request, learn), target, as_json, quiet)
    finally:
        remove_tree(work)


def _lock(
    project_dir: str,
    venv: str,
    urls: tuple[str, ...],
    credentials: tuple[ArmedCredential, ...],
    hosts: tuple[str, ...],
    allow_degraded: bool,
    *,
    check: bool = False,
    uv_flags: tuple[str, ...] | list[str] = (),
    quiet: bool = False,
) -> None:
    """Lock (or check the lock of) ``project_dir`` in the sandbox: safe_pip/installer/project.py."""
    import os

    from safe_pip.installer.project import lock_project

    python = os.path.join(venv, "bin", "python")
    if not os.path.isfile(os.path.join(venv, "pyvenv.cfg")) or not os.path.exists(python):
        python = sys.executable
    lock_project(
        project_dir,
        python=python,
        index_urls=urls,
        credentials=credentials,
        extra_hosts=hosts,
        allow_degraded=allow_degraded,
        check=check,
        uv_flags=uv_flags,
        quiet=quiet,
    )


def _install_maybe_learning(request: InstallRequest, learn: bool) -> InstallOutcome:
    """Run the install; with ``learn``, trace its sandboxes and report what they refused."""
    from safe_pip.installer.install import install as run_install

    if not learn:
        return run_install(request)
    import os

    from safe_pip.installer.learning import learning

    with learning(os.path.expanduser("~"), request.venv) as collected:
        outcome = run_install(request)
    for line in collected.report_lines():
        click.echo(line, err=True)
    return outcome


def _register_venv_commands() -> None:
    from safe_pip.cli.pip_project import COMMANDS as PROJECT_COMMANDS
    from safe_pip.cli.pip_venv import COMMANDS

    for command in (*COMMANDS, *PROJECT_COMMANDS):
        cli.add_command(command)


_register_venv_commands()


def _check_arguments_are_text(argv: list[str]) -> None:
    """Package names, paths and URLs go into files uv reads as UTF-8: an argument that
    is not valid UTF-8 is refused here, by name, not deep inside as an encoding error."""
    for word in argv:
        try:
            word.encode("utf-8")
        except UnicodeEncodeError:
            shown = word.encode("utf-8", "surrogateescape").decode("ascii", "backslashreplace")
            raise SafePipError(f"the argument {shown!r} is not valid UTF-8") from None


def main() -> None:
    import os

    from safe_pip.interrupts import install_handlers

    # SIGTERM and SIGHUP end a run like Ctrl-C: through the same unwinding, so an
    # install puts the venv back before safe-pip exits.
    install_handlers()
    code = _main()
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except OSError:
            pass
    # No interpreter teardown: it puts the default SIGTERM action back first, and a
    # signal in that window would kill us with a meaningless status.
    os._exit(code)


def _main() -> int:
    """Run the command line; the exit code (every error handled here: one line)."""
    try:
        from safe_pip.errors import require_working_directory

        require_working_directory()
        _check_arguments_are_text(sys.argv[1:])
        # Not click's standalone mode: it turns Ctrl-C into "Aborted!" and exit 1.
        try:
            cli.main(standalone_mode=False)
        finally:
            from safe_pip.launcher.scratch import sweep_if_due

            sweep_if_due()  # private directories of this user's killed runs
    except SystemExit as exc:
        if isinstance(exc.code, str):
            click.echo(exc.code, err=True)
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except (KeyboardInterrupt, click.Abort):
        click.echo("\nsafe-pip: interrupted", err=True)
        return 130
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except click.exceptions.Exit as exc:
        return exc.exit_code
    except SafePipError as exc:
        from safe_pip.terminal import printable

        click.echo(f"safe-pip: {printable(exc.message)}", err=True)
        return exc.exit_code
    except Exception as exc:  # one line and 125, never a traceback (errors.py)
        from safe_pip.errors import report_unexpected

        return report_unexpected("safe-pip", exc)
    return 0
