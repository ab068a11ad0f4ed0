"""``safe-pip sync``: a pyproject-configured project into its venv, like ``uv sync``.

What gets installed: with a ``uv.lock``, exactly its pins (``uv export --frozen``,
hashes kept), and anything else in the venv is removed; without one, the project's
``dependencies`` plus its ``dev`` dependency group, added to what is there.  A project
with a ``[build-system]`` (or ``tool.uv.package = true``) is itself installed
editable, as ``uv sync`` does.  Everything then goes through the same sandboxed
install as ``safe-pip install``.
"""

from __future__ import annotations

import os
import subprocess
import sys

from safe_pip.errors import SafePipError
from safe_pip.installer.uv_binary import find_uv

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence


def load_pyproject(project_dir: str) -> dict[str, object]:
    if sys.version_info >= (3, 11):
        import tomllib
    else:  # pragma: no cover - exercised on 3.10 only
        import tomli as tomllib

    from safe_pip.bounded import UnreadableInput, read_regular_file

    path = os.path.join(project_dir, "pyproject.toml")
    try:
        return tomllib.loads(read_regular_file(path).decode("utf-8"))
    except UnreadableInput as exc:
        raise SafePipError(f"cannot read {path}: {exc}") from None
    except UnicodeDecodeError:
        raise SafePipError(f"{path} is not valid UTF-8") from None
    except OSError as exc:
        raise SafePipError(f"cannot read {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise SafePipError(f"{path} is not valid TOML: {exc}") from None


def is_packaged(data: dict[str, object]) -> bool:
    """uv's rule: a project is installed itself when it has a build system, unless
    ``tool.uv.package`` says otherwise."""
    tool = data.get("tool")
    uv = tool.get("uv") if isinstance(tool, dict) else None
    choice = uv.get("package") if isinstance(uv, dict) else None
    if isinstance(choice, bool):
        return choice
    return "build-system" in data


def declared_requirements(data: dict[str, object]) -> list[str]:
    """``[project] dependencies`` plus the ``dev`` dependency group (strings only)."""
    project = data.get("project")
    found = []
    if isinstance(project, dict):
        found += [d for d in project.get("dependencies", []) if isinstance(d, str)]
    groups = data.get("dependency-groups")
    if isinstance(groups, dict):
        found += [d for d in groups.get("dev", []) if isinstance(d, str)]
    return found


def export_lock(project_dir: str, out: str, selection: Sequence[str] = ()) -> None:
    """``uv export --frozen`` of the project's lock into ``out``; ``selection``: uv's
    ``--extra``/``--all-extras``/``--group``/``--no-dev``.

    Runs no package code and touches no network (``--frozen --offline``: the lock is
    read as it is), so it runs outside the sandbox.
    """
    argv = [find_uv(), "export", "--frozen", "--offline", "--quiet", "--no-header"]
    argv += ["--format", "requirements-txt", "--no-emit-project", "--project", project_dir]
    argv += [*selection, "-o", out]
    env = {**os.environ, "UV_PYTHON_DOWNLOADS": "never"}
    result = subprocess.run(argv, env=env, stdout=sys.stderr, check=False)
    if result.returncode != 0:
        raise SafePipError(f"cannot read {os.path.join(project_dir, 'uv.lock')} (see above)")


def split_local_lines(path: str, project_dir: str) -> tuple[list[str], list[str]]:
    """Take path dependencies (``-e ./x``, ``./x``) out of an exported requirements
    file, rewriting it in place; returns (editables, local sources), absolute."""
    editables, local = [], []
    kept = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            text = line.strip()
            if text.startswith("-e "):
                editables.append(os.path.normpath(os.path.join(project_dir, text[3:].strip())))
            elif text.startswith((".", "/")):
                local.append(os.path.normpath(os.path.join(project_dir, text.split()[0])))
            else:
                kept.append(line)
    with open(path, "w", encoding="utf-8") as handle:
        handle.writelines(kept)
    return editables, local
