"""Build the editable wheel of a local project (``-e PATH``) inside the build sandbox.

``uv build`` makes no editable wheels and ``uv pip install -e`` would run the build
backend with the venv writable, so safe-pip drives PEP 660 itself: inside the sandbox
a small stdlib-only driver makes a throw-away build environment with uv, installs the
backend there, and calls ``get_requires_for_build_editable`` and ``build_editable``.
Only the checked wheel comes out; installing it (phase 3) runs no package code.

The project directory is writable during the build -- setuptools writes its
``*.egg-info`` into the source tree, and an editable install is by definition about
that tree -- except its ``pyproject.toml`` and ``.git/hooks``/``.git/config``, which
stay read-only, as in ``safe-run``.
"""

from __future__ import annotations

import json
import os
import sys

from safe_pip.errors import SafePipError
from safe_pip.installer.build import BuildResult, _move_regular_file, check_wheel
from safe_pip.installer.sandboxed_uv import index_arguments, run_in_build_sandbox
from safe_pip.installer.uv_binary import find_uv
from safe_pip.launcher.scratch import make_private_dir, remove_tree

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from safe_pip.credentials.phantom import ArmedCredential

#: PEP 517's fallback when a project names no backend.
_LEGACY_BACKEND = "setuptools.build_meta:__legacy__"
_LEGACY_REQUIRES = ["setuptools>=40.8.0"]

#: Runs in the sandbox with ``python -I -S``: stdlib only.  argv[1] is a JSON spec.
_DRIVER = r"""
import json, os, subprocess, sys
spec = json.loads(sys.argv[1])
env_dir = os.path.join(os.environ["TMPDIR"], "build-env")
uv = spec["uv"]
subprocess.run([uv, "venv", "--quiet", env_dir, "--python", sys.executable], check=True)
env_python = os.path.join(env_dir, "bin", "python")

def install(requirements):
    if requirements:
        subprocess.run([uv, "pip", "install", "--quiet", "--python", env_python,
                        *spec["index_args"], *spec["uv_flags"], *requirements], check=True)

HOOK = '''
import importlib, json, sys
spec = json.loads(sys.argv[1])
sys.path[:0] = spec["backend_path"]
module, _, attribute = spec["backend"].partition(":")
backend = importlib.import_module(module)
for part in filter(None, attribute.split(".")):
    backend = getattr(backend, part)
hook = getattr(backend, spec["hook"], None)
result = None if hook is None else hook(*spec["args"])
with open(spec["result"], "w") as out:
    json.dump({"missing": hook is None, "result": result}, out)
'''

def call(hook, *args):
    result_file = os.path.join(os.environ["TMPDIR"], "hook-result.json")
    payload = {"backend": spec["backend"], "backend_path": spec["backend_path"],
               "hook": hook, "args": list(args), "result": result_file}
    subprocess.run([env_python, "-c", HOOK, json.dumps(payload)], cwd=spec["project"],
                   check=True)
    with open(result_file) as handle:
        return json.load(handle)

if spec["uv_backend"]:
    # uv_build, in a version range this uv satisfies: uv is that backend itself (as
    # bare ``uv sync`` does), so nothing is installed and no Python hook runs.
    subprocess.run([uv, "build-backend", "build-editable", spec["out"]], cwd=spec["project"],
                   check=True, stdout=subprocess.DEVNULL)  # it prints the wheel's name
    sys.exit(0)
install(spec["requires"])
extra = call("get_requires_for_build_editable", spec["config_settings"])
install([] if extra["missing"] else extra["result"])
built = call("build_editable", spec["out"], spec["config_settings"], None)
if built["missing"]:
    sys.exit("the build backend cannot build editable wheels (PEP 660)")
"""


def build_system(project: str) -> tuple[list[str], str, list[str]]:
    """(requires, backend, backend-path) of a project, with PEP 517's defaults."""
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - exercised on 3.10 only
        import tomli as tomllib

    pyproject = os.path.join(project, "pyproject.toml")
    table: dict[str, object] = {}
    if os.path.isfile(pyproject):
        try:
            with open(pyproject, "rb") as handle:
                table = tomllib.load(handle).get("build-system", {})
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise SafePipError(f"{pyproject}: cannot read [build-system] ({exc})") from None
    requires = table.get("requires", _LEGACY_REQUIRES)
    backend = table.get("build-backend", _LEGACY_BACKEND)
    backend_path = table.get("backend-path", [])
    if (
        not isinstance(requires, list)
        or not isinstance(backend, str)
        or not isinstance(backend_path, list)
    ):
        raise SafePipError(f"{pyproject}: [build-system] has the wrong shape")
    paths = [os.path.join(project, str(p)) for p in backend_path]
    return [str(r) for r in requires], backend, paths


def uv_is_the_backend(requires: Sequence[str], backend: str) -> bool:
    """Whether the project's backend is ``uv_build`` in a range our own uv satisfies,
    so that ``uv build-backend`` builds it as bare uv would (the index may not even
    carry that uv_build release yet: uv writes ``uv_build>=ITS_VERSION`` into the
    projects ``uv init`` makes)."""
    if backend != "uv_build" or len(requires) != 1:
        return False
    from packaging.requirements import InvalidRequirement, Requirement
    from packaging.utils import canonicalize_name

    from safe_pip.installer.uv_binary import uv_version

    ours = uv_version()
    try:
        requirement = Requirement(requires[0])
    except InvalidRequirement:
        return False
    if ours is None:
        return False
    if canonicalize_name(requirement.name) != "uv-build" or requirement.marker is not None:
        return False
    return requirement.specifier.contains(ours, prereleases=True)


def _uv_build_editable(
    project: str,
    staging: str,
    python: str,
    private_dir: str,
    extra_reads: Sequence[str],
    log: str,
) -> int:
    """``uv build-backend build-editable`` run directly in the sandbox: uv_build is
    declarative (no hook, no build environment, no network), so the project is only
    read and the sandbox needs no proxy, no file broker and no Python driver."""
    uv = find_uv()
    return run_in_build_sandbox(
        [uv, "--directory", project, "build-backend", "build-editable", staging],
        python=python,
        private_dir=private_dir,
        reads=(project, *extra_reads),
        writes=(staging,),
        index_urls=(),
        output=log,
    )


def build_editable_in_sandbox(
    project: str,
    out_dir: str,
    *,
    python: str,
    index_urls: Sequence[str],
    extra_hosts: Sequence[str] = (),
    extra_reads: Sequence[str] = (),
    allow_degraded: bool = False,
    credentials: Sequence[ArmedCredential] = (),
    uv_flags: Sequence[str] = (),
    config_settings: Mapping[str, str | list[str]] | None = None,
    verbose: bool = False,
) -> BuildResult:
    """The editable wheel of ``project``, built in a fresh sandbox and checked.

    ``uv_flags`` go to the uv that fills the build environment (``--offline``);
    ``config_settings`` to the backend's hooks (``-C``).  Output as for
    :func:`~safe_pip.installer.build.build_in_sandbox`."""
    from safe_pip.installer.build import show_failed_build

    project = os.path.abspath(project)
    requires, backend, backend_path = build_system(project)
    private_dir = make_private_dir()
    try:
        staging = os.path.join(private_dir, "out")
        os.mkdir(staging, 0o700)
        spec = {
            "uv": find_uv(),
            "index_args": index_arguments(index_urls),
            "requires": requires,
            "backend": backend,
            "backend_path": backend_path,
            "project": project,
            "out": staging,
            "uv_backend": uv_is_the_backend(requires, backend),
            "uv_flags": list(uv_flags),
            "config_settings": dict(config_settings or {}),
        }
        log = os.path.join(private_dir, "build.log")
        if spec["uv_backend"]:
            code = _uv_build_editable(project, staging, python, private_dir, extra_reads, log)
        else:
            code = run_in_build_sandbox(
                [python, "-I", "-S", "-c", _DRIVER, json.dumps(spec)],
                python=python,
                private_dir=private_dir,
                reads=(project, *extra_reads),
                writes=(staging, project),
                protected=(
                    os.path.join(project, "pyproject.toml"),
                    os.path.join(project, ".git", "hooks"),
                    os.path.join(project, ".git", "config"),
                ),
                index_urls=index_urls,
                extra_hosts=extra_hosts,
                allow_degraded=allow_degraded,
                credentials=credentials,
                output=None if verbose else log,
                guard_persistence=True,  # the project's venvs, .git and PATH dirs stay put
            )
        label = os.path.basename(project)
        if code != 0:
            show_failed_build(None if verbose else log, f"-e {label}")
            return BuildResult(None, f"the editable build of {label} failed", code)
        wheel, problem = check_wheel(staging, None)
        if wheel is None:
            return BuildResult(None, problem, 1)
        return BuildResult(_move_regular_file(wheel, out_dir), None, 0)
    finally:
        remove_tree(private_dir)
