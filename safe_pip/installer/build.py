"""Build one sdist into a wheel inside its own sandbox (phase 2 of docs/install.md).

A build runs the package's own code (``setup.py``, the build backend), so it gets the
runtime sandbox with a policy made here, never read from any file: the system, the
interpreter, the uv binary and the sdist to read; a private uv cache, a private
staging directory and the private HOME/TMPDIR to write; the index hosts (through the
proxy) as the only network.  Nothing it writes persists except the one wheel that
passes the checks below, and the whole scratch directory is deleted afterwards.

Checks on the output, because the build controls it:

* exactly one ``*.whl`` in the staging directory, and a regular file (a symlink
  planted by the build could point at a secret the sandbox cannot read but we can);
* its project name and version are the sdist's: a malicious build must not be able
  to hand back a wheel for *another* project and shadow it in a later install.

Runs as its own process (``python -m safe_pip.installer.build``): the supervisor
becomes a child subreaper, zeroes its environment block and handles signals, none
of which belongs in a caller's process.
"""

from __future__ import annotations

import argparse
import json
import os
import stat
import sys

from safe_pip._records import record
from safe_pip.errors import SafePipError
from safe_pip.installer.sandboxed_uv import index_arguments, run_uv_sandboxed
from safe_pip.launcher.scratch import make_private_dir, remove_tree

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

    from safe_pip.credentials.phantom import ArmedCredential

_SDIST_SUFFIXES = (".tar.gz", ".zip")


@record
class BuildResult:
    """The checked wheel (moved into the output directory), or why there is none."""

    wheel: str | None
    problem: str | None
    exit_code: int


def sdist_identity(sdist: str) -> tuple[str, str]:
    """``(canonical project name, version)`` from an sdist file name (PEP 625 style)."""
    from packaging.utils import canonicalize_name

    base = os.path.basename(sdist)
    for suffix in _SDIST_SUFFIXES:
        if base.endswith(suffix):
            stem = base[: -len(suffix)]
            name, dash, version = stem.rpartition("-")
            if dash and name and version:
                return str(canonicalize_name(name)), version
    raise SafePipError(f"{base}: not an sdist file name (expected NAME-VERSION.tar.gz)")


def check_wheel(staging: str, expected: tuple[str, str] | None) -> tuple[str | None, str | None]:
    """(path of the one acceptable wheel in ``staging``, problem) -- one is None.

    ``expected`` is the (name, version) an sdist's file name promises; a local project
    directory promises nothing, but its wheel must still name itself consistently.
    """
    from packaging.utils import InvalidWheelFilename, canonicalize_version, parse_wheel_filename

    entries = sorted(os.listdir(staging))
    wheels = [name for name in entries if name.endswith(".whl")]
    if len(wheels) != 1:
        listed = ", ".join(entries) or "nothing"
        return None, f"the build must produce exactly one wheel, it produced: {listed}"
    path = os.path.join(staging, wheels[0])
    if not stat.S_ISREG(os.lstat(path).st_mode):
        return None, f"{wheels[0]} is not a regular file"
    try:
        name, version, _build, _tags = parse_wheel_filename(wheels[0])
    except InvalidWheelFilename as exc:
        return None, f"{wheels[0]} is not a valid wheel file name ({exc})"
    want_name, want_version = expected or (str(name), str(version))
    if str(name) != want_name or canonicalize_version(version) != canonicalize_version(
        want_version
    ):
        return None, (
            f"the build of {want_name} {want_version} produced a wheel for {name} {version}; "
            "refusing it (a build may only produce its own project)"
        )
    declared = _declared_identity(path)
    if declared is None:
        return None, f"{wheels[0]} has no readable .dist-info/METADATA"
    if declared != (want_name, canonicalize_version(want_version)):
        return None, (
            f"{wheels[0]} declares itself {declared[0]} {declared[1]} in its metadata; "
            "refusing it (a build may only produce its own project)"
        )
    return path, None


def _declared_identity(wheel: str) -> tuple[str, str] | None:
    """(canonical name, canonical version) from the wheel's own METADATA, if readable.

    The file name is what the build chose; the metadata is what an installer will
    believe.  Both must name the project that was built.
    """
    import zipfile
    from email.parser import HeaderParser

    from packaging.utils import canonicalize_name, canonicalize_version

    try:
        with zipfile.ZipFile(wheel) as archive:
            names = [n for n in archive.namelist() if n.count("/") == 1]
            metadata = [n for n in names if n.endswith(".dist-info/METADATA")]
            if len(metadata) != 1:
                return None
            info = archive.read(metadata[0]).decode("utf-8", "replace")
    except (OSError, zipfile.BadZipFile):
        return None
    headers = HeaderParser().parsestr(info)
    name, version = headers.get("Name"), headers.get("Version")
    if not name or not version:
        return None
    return str(canonicalize_name(name)), canonicalize_version(version)


_NOT_SOURCE = (".git", ".hg", ".svn", ".venv", "venv", ".tox", ".nox", "__pycache__", "build")


def _copy_project(project: str, target: str) -> str:
    """A copy of a project tree without links out of it (symlinks stay symlinks)."""
    import shutil

    shutil.copytree(project, target, symlinks=True, ignore=shutil.ignore_patterns(*_NOT_SOURCE))
    return target


def _move_regular_file(source: str, directory: str) -> str:
    """Copy without following links, then delete the source (may cross file systems)."""
    target = os.path.join(directory, os.path.basename(source))
    src = os.open(source, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        dst = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        try:
            while chunk := os.read(src, 1 << 20):
                os.write(dst, chunk)
        finally:
            os.close(dst)
    finally:
        os.close(src)
    os.unlink(source)
    return target


#: Lines of a failed build's log shown on stderr.
LOG_TAIL = 25


def show_failed_build(log: str | None, label: str) -> None:
    """A failed build's last lines on stderr, and a kept copy of its whole log.

    The build ran with its output in ``log`` (inside the build's private directory,
    removed afterwards), so the log is copied to a file of its own in ``$TMPDIR``
    first.  None: the output already went to the terminal (``-v``).
    """
    if log is None or not os.path.isfile(log):
        return
    import tempfile

    from safe_pip.terminal import printable

    with open(log, "rb") as handle:
        data = handle.read()
    import re

    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", label).strip("_")[:40]
    fd, kept = tempfile.mkstemp(prefix=f"safe-pip-build-{stem}-", suffix=".log")
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    lines = data.decode("utf-8", "replace").splitlines()[-LOG_TAIL:]
    sys.stderr.write("".join(f"  {printable(line)}\n" for line in lines))
    sys.stderr.write(f"safe-pip: the full build log of {printable(label)} is in {kept}\n")


def build_in_sandbox(
    sdist: str,
    out_dir: str,
    *,
    python: str,
    index_urls: Sequence[str],
    extra_hosts: Sequence[str] = (),
    extra_reads: Sequence[str] = (),
    allow_degraded: bool = False,
    credentials: Sequence[ArmedCredential] = (),
    uv_flags: Sequence[str] = (),
    verbose: bool = False,
) -> BuildResult:
    """Build ``sdist`` with ``uv build --wheel`` in a fresh sandbox; check the result.

    ``uv_flags``: uv's build settings of the command (``--config-setting``,
    ``--offline``).  The build's output goes to a log; on failure its last lines are
    shown with the log's path (:func:`show_failed_build`); ``verbose`` shows it all.

    ``sdist`` may also be a local project directory: it is copied into the private
    directory first (build backends write into the source tree, and the user's tree
    is only readable), without VCS metadata, virtual environments or build output.
    """
    sdist = os.path.abspath(sdist)
    out_dir = os.path.abspath(out_dir)
    expected = None if os.path.isdir(sdist) else sdist_identity(sdist)
    python = os.path.abspath(python)
    os.makedirs(out_dir, exist_ok=True)
    private_dir = make_private_dir()
    log = os.path.join(private_dir, "build.log")
    try:
        staging = os.path.join(private_dir, "out")
        os.mkdir(staging, 0o700)
        if expected is None:
            sdist = _copy_project(sdist, os.path.join(private_dir, "source"))
        code = run_uv_sandboxed(
            [
                "build",
                "--wheel",
                sdist,
                "--out-dir",
                staging,
                "--python",
                python,
                *index_arguments(index_urls),
                *uv_flags,
            ],
            python=python,
            private_dir=private_dir,
            reads=(sdist, *extra_reads),
            writes=(staging, *([sdist] if expected is None else [])),
            index_urls=index_urls,
            extra_hosts=extra_hosts,
            allow_degraded=allow_degraded,
            credentials=credentials,
            output=None if verbose else log,
        )
        if code != 0:
            show_failed_build(None if verbose else log, os.path.basename(sdist))
            return BuildResult(None, f"the build of {os.path.basename(sdist)} failed", code)
        wheel, problem = check_wheel(staging, expected)
        if wheel is None:
            return BuildResult(None, problem, 1)
        return BuildResult(_move_regular_file(wheel, out_dir), None, 0)
    finally:
        remove_tree(private_dir)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m safe_pip.installer.build",
        description="Build one sdist into a wheel inside the build sandbox.",
    )
    parser.add_argument("sdist")
    parser.add_argument("out_dir")
    parser.add_argument("--index-url", action="append", required=True, dest="index_urls")
    parser.add_argument("--python", default=sys.executable)
    parser.add_argument("--allow-host", action="append", default=[], dest="allow_hosts")
    parser.add_argument("--allow-degraded", action="store_true")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    try:
        result = build_in_sandbox(
            args.sdist,
            args.out_dir,
            python=args.python,
            index_urls=args.index_urls,
            extra_hosts=tuple(args.allow_hosts),
            allow_degraded=args.allow_degraded,
            verbose=True,  # one build on its own: its output is what this tool shows
        )
    except SafePipError as exc:
        result = BuildResult(None, exc.message, exc.exit_code)
    if args.json:
        print(json.dumps({"wheel": result.wheel, "problem": result.problem}))
    elif result.problem is not None:
        print(f"safe-pip: {result.problem}", file=sys.stderr)
    else:
        print(result.wheel)
    return result.exit_code


if __name__ == "__main__":
    sys.exit(main())
