"""Every common build backend, sandboxed: one real package per backend, built from an
sdist on a local index by ``safe-pip install`` and imported from the venv; a few of
them also as a local project and editable.

Backends (their wheels fetched from the package registry once per machine into the
test cache, pkg_index.MORE_BACKEND_PACKAGES): setuptools with a pyproject only and
with a legacy ``setup.py``, hatchling, flit-core, pdm-backend, poetry-core, uv_build,
and meson-python compiling a C extension with the machine's gcc.
"""

from __future__ import annotations

import subprocess
import sys
import sysconfig
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from pkg_index import LocalIndex, require_backend_wheels, seed_build_backends, write_sdist
from sandbox_harness import World, make_world
from test_install_cli import SAFE_PIP

pytestmark = [
    pytest.mark.sandbox,
    pytest.mark.skipif(not SAFE_PIP.exists(), reason="safe-pip is not installed next to python"),
]


def _module(name: str) -> str:
    return name.replace("-", "_")


def _pure(name: str, build_system: str, layout: str = "src", extra: str = "") -> dict[str, str]:
    module = _module(name)
    files = {
        "pyproject.toml": textwrap.dedent(f"""\
            [build-system]
            {build_system}

            [project]
            name = "{name}"
            version = "1.0"
            description = "A {name} test package"
            requires-python = ">=3.9"
            {extra}
            """),
    }
    where = f"src/{module}" if layout == "src" else module
    files[f"{where}/__init__.py"] = f'"""{name}."""\n__version__ = "1.0"\nBUILT_BY = "{name}"\n'
    return files


MESON_BUILD = """\
project('via-meson', 'c', version: '1.0')
py = import('python').find_installation(pure: false)
py.extension_module('via_meson', 'via_meson.c', install: true)
"""

C_SOURCE = """\
#define PY_SSIZE_T_CLEAN
#include <Python.h>

static PyObject *add(PyObject *self, PyObject *args) {
    long a, b;
    if (!PyArg_ParseTuple(args, "ll", &a, &b)) return NULL;
    return PyLong_FromLong(a + b);
}

static PyMethodDef methods[] = {{"add", add, METH_VARARGS, "Add two integers."}, {NULL}};
static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "via_meson", NULL, -1, methods};
PyMODINIT_FUNC PyInit_via_meson(void) { return PyModule_Create(&module); }
"""


def _uv_build_requires() -> str:
    from importlib.metadata import version

    major, minor = (int(part) for part in version("uv").split(".")[:2])
    return f'requires = ["uv_build>=0.13.0,<{major}.{minor + 1}.0"]\nbuild-backend = "uv_build"'


def packages() -> dict[str, dict[str, str]]:
    """Distribution name -> sdist files."""
    legacy = {
        "setup.py": "from setuptools import setup\nsetup(name='via-setup-py', version='1.0', "
        "packages=['via_setup_py'])\n",
        "via_setup_py/__init__.py": 'BUILT_BY = "via-setup-py"\n',
    }
    return {
        "via-setuptools": _pure(
            "via-setuptools",
            'requires = ["setuptools>=61"]\nbuild-backend = "setuptools.build_meta"',
        ),
        "via-setup-py": legacy,
        "via-hatchling": _pure(
            "via-hatchling", 'requires = ["hatchling"]\nbuild-backend = "hatchling.build"'
        ),
        "via-flit": _pure(
            "via-flit",
            'requires = ["flit_core>=3.2,<5"]\nbuild-backend = "flit_core.buildapi"',
            layout="flat",
        ),
        "via-pdm": _pure("via-pdm", 'requires = ["pdm-backend"]\nbuild-backend = "pdm.backend"'),
        "via-poetry": _pure(
            "via-poetry",
            'requires = ["poetry-core>=2.0"]\nbuild-backend = "poetry.core.masonry.api"',
        ),
        "via-uv-build": _pure("via-uv-build", _uv_build_requires()),
        "via-meson": {
            "pyproject.toml": textwrap.dedent("""\
                [build-system]
                requires = ["meson-python"]
                build-backend = "mesonpy"

                [project]
                name = "via-meson"
                version = "1.0"
                """),
            "meson.build": MESON_BUILD,
            "via_meson.c": C_SOURCE,
        },
    }


@pytest.fixture(scope="module")
def backend_index(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalIndex]:
    directory = tmp_path_factory.mktemp("backends-index")
    seed_build_backends(directory, require_backend_wheels())
    seed_build_backends(directory, require_backend_wheels(more=True))
    for name, files in packages().items():
        write_sdist(directory, name, "1.0", files)
    for path in (directory, *directory.iterdir()):
        path.chmod(0o755 if path.is_dir() else 0o644)
    with LocalIndex(directory) as index:
        yield index


@pytest.fixture
def world(tmp_path: Path) -> World:
    return make_world(tmp_path)


def install(
    world: World, mode: str, index: LocalIndex, *args: str
) -> subprocess.CompletedProcess[str]:
    env = world.env(mode)
    env.pop("VIRTUAL_ENV", None)
    return subprocess.run(
        [str(SAFE_PIP), "install", "-p", sys.executable, "-i", index.url, *args],
        cwd=world.project, env=env, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip


def imported(venv: Path, code: str) -> str:
    done = subprocess.run([str(venv / "bin" / "python"), "-c", code], capture_output=True,
                          text=True, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def _has_python_headers() -> bool:
    include = sysconfig.get_paths()["include"]
    return Path(include, "Python.h").is_file()


@pytest.mark.parametrize("name", list(packages()))
def test_each_backend_builds_an_sdist_in_the_sandbox(
    world: World, backend_index: LocalIndex, name: str
) -> None:
    if name == "via-meson" and not _has_python_headers():
        pytest.skip("no Python.h for this interpreter: a C extension cannot compile")
    venv = world.root / "venv"
    result = install(world, "namespace", backend_index, "--venv", str(venv), "--json", name)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"{name}==1.0" in result.stdout, result.stdout  # in "built"
    module = _module(name)
    if name == "via-meson":
        assert imported(venv, "import via_meson; print(via_meson.add(2, 3))") == "5"
    else:
        assert imported(venv, f"import {module}; print({module}.BUILT_BY)") == name


def test_every_backend_in_one_install_in_fallback_mode(
    world: World, backend_index: LocalIndex
) -> None:
    names = [n for n in packages() if n != "via-meson" or _has_python_headers()]
    venv = world.root / "venv"
    result = install(world, "fallback", backend_index, "--venv", str(venv), *names)
    assert result.returncode == 0, result.stdout + result.stderr
    for name in names:
        module = _module(name)
        check = "print(via_meson.add(1, 1))" if name == "via-meson" else f"print({module}.BUILT_BY)"
        assert imported(venv, f"import {module}; {check}") in (name, "2")


@pytest.mark.parametrize("name", ["via-hatchling", "via-pdm", "via-flit", "via-poetry"])
def test_local_projects_install_editable_with_each_backend(
    world: World, mode: str, backend_index: LocalIndex, name: str
) -> None:
    project = world.root / name
    for path, text in packages()[name].items():
        target = project / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    for path in (project, *project.rglob("*")):
        path.chmod(0o755 if path.is_dir() else 0o644)
    venv = world.root / "venv"
    result = install(world, mode, backend_index, "--venv", str(venv), "-e", str(project))
    assert result.returncode == 0, result.stdout + result.stderr
    module = _module(name)
    init = next(project.rglob("__init__.py"))
    init.write_text(init.read_text().replace(f'BUILT_BY = "{name}"', 'BUILT_BY = "edited"'))
    assert imported(venv, f"import {module}; print({module}.BUILT_BY)") == "edited"
