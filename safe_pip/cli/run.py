"""``safe-run``: run a script, module, console script or command inside the sandbox.

The argument parser is written by hand on purpose: ``safe-run``'s grammar is
Python's own (options, then a target that swallows every later word), which neither
click nor argparse expresses cleanly, and importing either would add several
milliseconds to every sandboxed start.
"""

from __future__ import annotations

import os
import sys

from safe_pip._records import field, mutable_record
from safe_pip.errors import SafePipError
from safe_pip.launcher.scratch import make_private_dir, remove_tree

TYPE_CHECKING = False  # avoid importing typing at start-up
if TYPE_CHECKING:
    from typing import Literal, NoReturn

    from safe_pip.launcher.plan import SandboxPlan
    from safe_pip.policy.model import Policy

USAGE = """\
usage: safe-run [OPTIONS] script.py [ARGS ...]
       safe-run [OPTIONS] -m MODULE [ARGS ...]
       safe-run [OPTIONS] ENTRY_POINT [ARGS ...]
       safe-run [OPTIONS] -- COMMAND [ARGS ...]
       safe-run allow [--project DIR]
       safe-run secret set|delete NAME

Run a program inside a sandbox configured by [tool.safe-run] in the nearest
pyproject.toml (default: project read-only, private HOME and TMPDIR, no network).
A policy that grants more than that runs only once you approved its exact content:
at a terminal safe-run asks, elsewhere `safe-run allow` approves it.
`safe-run secret` stores or deletes a credential's value in the system keyring; to
run a console script that is itself named `secret` or `allow`, use `safe-run -- NAME`.

options:
  --project DIR        use DIR/pyproject.toml instead of searching upward
  --venv PATH          the virtual environment (default: $VIRTUAL_ENV, else the
                       nearest .venv in this directory or above)
  --profile NAME       add a built-in or file profile (repeatable)
  --allow-read PATH    grant read access (repeatable)
  --allow-write PATH   grant write access (repeatable)
  --allow-host HOST    allow a network host[:port] (repeatable)
  --allow-env NAME     pass an environment variable through (repeatable)
  --credential NAME    give the program a built-in credential (openai, anthropic,
                       gemini, github, huggingface) as a phantom token (repeatable)
  --no-network         no network at all (the default unless the policy allows hosts)
  -v, --verbose        at exit, list allowed network destinations too (refused ones
                       are always listed)
  --learn              watch the run and report every path and host the sandbox
                       refused, with the [tool.safe-run] table that would allow them;
                       the program runs again with what it asked for (up to 5 runs)
                       until it asks for nothing new
  --write              with --learn: add that table to the pyproject.toml itself
                       (the change is shown; at a terminal safe-run asks first)
  --yes                with --learn --write: write without asking (no terminal)
  --explain            print the effective policy and layers; run nothing
  --allow-degraded     run even when a layer the policy needs is missing
  -h, --help           show this help
  --version            print the version

exit codes: the program's own; 128+N if it died of signal N; 125 safe-run failed;
126 target not executable; 127 target not found.
"""

_VALUE_OPTIONS = {
    "--project": "project",
    "--venv": "venv",
    "--profile": "profiles",
    "--allow-read": "allow_read",
    "--allow-write": "allow_write",
    "--allow-host": "allow_host",
    "--allow-env": "allow_env",
    "--credential": "credentials",
}
_FLAG_OPTIONS = {
    "--no-network": "no_network",
    "--explain": "explain",
    "--allow-degraded": "allow_degraded",
    "--verbose": "verbose",
    "-v": "verbose",
    "--learn": "learn",
    "--write": "write",
    "--yes": "yes",
}


@mutable_record
class RunOptions:
    """Parsed command line of ``safe-run``."""

    project: str | None = None
    venv: str | None = None
    profiles: list[str] = field(default_factory=list)
    allow_read: list[str] = field(default_factory=list)
    allow_write: list[str] = field(default_factory=list)
    allow_host: list[str] = field(default_factory=list)
    allow_env: list[str] = field(default_factory=list)
    credentials: list[str] = field(default_factory=list)
    no_network: bool = False
    explain: bool = False
    allow_degraded: bool = False
    verbose: bool = False
    learn: bool = False
    write: bool = False
    yes: bool = False
    show_help: bool = False
    show_version: bool = False
    kind: Literal["auto", "module", "command"] = "auto"
    words: list[str] = field(default_factory=list)


def parse_args(argv: list[str]) -> RunOptions:
    """Options first; the first non-option word (or ``-m``/``--``) starts the target."""
    opts = RunOptions()
    i = 0
    while i < len(argv):
        arg = argv[i]
        name, eq, inline = arg.partition("=")
        if arg == "--":
            opts.kind, opts.words = "command", argv[i + 1 :]
            return opts
        if arg == "-m" or (arg.startswith("-m") and len(arg) > 2):
            module = arg[2:] or (argv[i + 1] if i + 1 < len(argv) else "")
            if not module:
                raise SafePipError("-m needs a module name", 2)
            rest = argv[i + 1 :] if arg[2:] else argv[i + 2 :]
            opts.kind, opts.words = "module", [module, *rest]
            return opts
        if arg in ("-h", "--help"):
            opts.show_help = True
        elif arg == "--version":
            opts.show_version = True
        elif name in _VALUE_OPTIONS:
            if eq:
                value = inline
            elif i + 1 < len(argv):
                i += 1
                value = argv[i]
            else:
                raise SafePipError(f"{name} needs a value", 2)
            if not value:  # "--project=" must not quietly mean "no --project"
                raise SafePipError(f"{name} needs a value (it was empty)", 2)
            attr = _VALUE_OPTIONS[name]
            current = getattr(opts, attr)
            if isinstance(current, list):
                current.append(value)
            else:
                setattr(opts, attr, value)
        elif arg in _FLAG_OPTIONS:
            setattr(opts, _FLAG_OPTIONS[arg], True)
        elif arg.startswith("-") and arg != "-":
            raise SafePipError(f"unknown option {arg}; see 'safe-run --help'", 2)
        else:
            opts.words = argv[i:]
            return opts
        i += 1
    return opts


def find_venv(opts: RunOptions, cwd: str, project_dir: str) -> str | None:
    """``--venv``, else ``$VIRTUAL_ENV``, else the nearest ``.venv`` in ``cwd`` or
    above (uv's rule, shared with safe-pip: safe_pip/runner/target.py)."""
    from safe_pip.policy.model import pure_path
    from safe_pip.runner.target import discover_venv

    if opts.venv:
        venv = os.path.abspath(opts.venv)
        if not os.path.isfile(os.path.join(venv, "pyvenv.cfg")):
            raise SafePipError(f"--venv {opts.venv}: not a virtual environment (no pyvenv.cfg)")
        return venv
    found = discover_venv(cwd, os.environ)
    if found is None and os.path.isfile(os.path.join(project_dir, ".venv", "pyvenv.cfg")):
        found = os.path.join(project_dir, ".venv")  # --project DIR elsewhere
    return None if found is None else pure_path(found)


def caller_home() -> str:
    from safe_pip.policy.model import pure_path

    home = os.environ.get("HOME")
    if home:
        return pure_path(home)
    import pwd

    return pure_path(pwd.getpwuid(os.getuid()).pw_dir)


def run(opts: RunOptions) -> int:
    from safe_pip.policy.loader import CliOverrides, load_policy
    from safe_pip.sandbox import landlock

    cwd = os.getcwd()
    private_dir = "/tmp/safe-run-XXXXXXXXXXXX" if opts.explain else make_private_dir()
    try:
        overrides = CliOverrides(
            allow_read=tuple(opts.allow_read),
            allow_write=tuple(opts.allow_write),
            allow_env=tuple(opts.allow_env),
            allow_host=tuple(opts.allow_host),
            profiles=tuple(opts.profiles),
            no_network=opts.no_network,
            credentials=tuple(opts.credentials),
        )
        variables = dict(os.environ)
        variables["TMPDIR"] = os.path.join(private_dir, "tmp")
        policy = load_policy(
            cwd=cwd,
            project=opts.project or None,
            overrides=overrides,
            variables=variables,
            home=caller_home(),
        )
        if policy.approval is not None and not opts.explain:
            from safe_pip.cli.approve import require_approval

            require_approval(
                policy.approval, home=caller_home(), variables=os.environ, program="safe-run"
            )
        venv = find_venv(opts, cwd, policy.project_dir)
        from safe_pip.launcher.plan import build_plan, default_python

        plan = build_plan(
            policy,
            opts.kind,
            opts.words,
            python=default_python(venv),
            venv=venv,
            private_dir=private_dir,
            caller_env=os.environ,
            cwd=cwd,
            allow_degraded=opts.allow_degraded,
        )
        if opts.write and not opts.learn:
            raise SafePipError("--write only works together with --learn", 2)
        if opts.yes and not opts.write:
            raise SafePipError("--yes only works together with --learn --write", 2)
        if opts.explain:
            from safe_pip.cli.explain import explain

            sys.stdout.write(explain(policy, plan))
            return 0
        if policy.credentials:
            from safe_pip._records import replace
            from safe_pip.credentials.phantom import arm

            plan = replace(plan, credentials=arm(policy.credentials, os.environ))
        if landlock.abi_version() == 0 and not opts.allow_degraded:
            raise SafePipError(
                "Landlock is not available on this kernel, so files cannot be protected; "
                "refusing to run (pass --allow-degraded to run with the remaining layers)"
            )
        from safe_pip.launcher.plan import cwd_is_visible
        from safe_pip.launcher.supervisor import run_sandboxed

        if not cwd_is_visible(plan):
            raise SafePipError(
                f"the working directory {cwd} is not visible in the sandbox; run from a "
                "project (a directory with a pyproject.toml) or grant it with --allow-read"
            )
        if opts.learn:
            from safe_pip.learn.session import learn_run

            first = plan

            def rebuild(learned: Policy) -> SandboxPlan:
                """The next round's plan: the same run under the policy learned so far."""
                from safe_pip._records import replace

                again = build_plan(
                    learned,
                    opts.kind,
                    opts.words,
                    python=default_python(venv),
                    venv=venv,
                    private_dir=private_dir,
                    caller_env=os.environ,
                    cwd=cwd,
                    allow_degraded=opts.allow_degraded,
                )
                return replace(again, credentials=first.credentials)

            return learn_run(
                plan,
                policy,
                verbose=opts.verbose,
                write=opts.write,
                home=caller_home(),
                rebuild=rebuild,
                yes=opts.yes,
            )
        return run_sandboxed(plan, verbose=opts.verbose, failure_hint=True)
    finally:
        if not opts.explain:
            remove_tree(private_dir)  # we made it, we remove it: after any outcome
            from safe_pip.launcher.scratch import sweep_if_due

            sweep_if_due()  # and those of runs that were killed (their lock is free)


def main(argv: list[str] | None = None) -> NoReturn:
    try:
        args = sys.argv[1:] if argv is None else argv
        from safe_pip.errors import require_working_directory

        require_working_directory()
        if args[:1] == ["secret"]:  # a subcommand, not a target: see USAGE
            from safe_pip.cli.secret import main_secret

            code = main_secret(args[1:])
        elif args[:1] == ["allow"]:
            from safe_pip.cli.approve import main_allow

            code = main_allow(args[1:])
        elif (opts := parse_args(args)).show_help:
            sys.stdout.write(USAGE)
            code = 0
        elif opts.show_version:
            from safe_pip import __version__

            print(f"safe-run {__version__}")
            code = 0
        elif not opts.words and not opts.explain:
            sys.stderr.write(USAGE)
            code = 2
        else:
            code = run(opts)
    except SafePipError as exc:
        from safe_pip.terminal import printable

        # Messages name paths and packages that untrusted code may have chosen.
        print(f"safe-run: {printable(exc.message)}", file=sys.stderr)
        code = exc.exit_code
    except KeyboardInterrupt:
        code = 130
    except Exception as exc:  # one line and 125, never a traceback (errors.py)
        from safe_pip.errors import report_unexpected

        code = report_unexpected("safe-run", exc)
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:  # None: the descriptor was closed when we started
                stream.flush()
        except OSError:  # a closed pipe must not turn the child's exit code into 120
            pass
    # Skip interpreter teardown (a few ms of freeing modules nobody will use again);
    # nothing of ours needs atexit handlers.
    os._exit(code)
