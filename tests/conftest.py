"""Shared pytest set-up: the ``sandbox`` marker and the ``mode`` fixture.

``mode`` runs a test in both sandbox modes: ``namespace`` (skipped where unprivileged
user namespaces are unavailable, with the reason) and ``fallback`` (forced with
``SAFE_PIP_NO_USERNS=1``, see tests/sandbox_harness.py).

Under CI a missing ``safe-run`` executable is an error, not a skip: a packaging bug
must not turn every sandbox test silently green.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from sandbox_harness import MODES, SAFE_RUN

from safe_pip.sandbox.namespaces import userns_available

if TYPE_CHECKING:
    from pkg_index import LocalIndex


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "sandbox: runs real sandboxes (run as root and as an unprivileged user)"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    needs_safe_run = any(item.get_closest_marker("sandbox") for item in items)
    if os.environ.get("CI") and needs_safe_run and not SAFE_RUN.exists():
        raise pytest.UsageError(f"CI: {SAFE_RUN} is missing, the sandbox tests cannot run")


@pytest.fixture(params=MODES)
def mode(request: pytest.FixtureRequest) -> str:
    """``namespace`` or ``fallback``: the sandbox mode the test's safe-run uses."""
    if request.param == "namespace":
        ok, why = userns_available()
        if not ok:
            pytest.skip(f"namespace mode unavailable: {why}")
    return str(request.param)


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A module's own package index directory: the fixture packages and the build
    backends (setuptools ...) that uv's build isolation fetches from the same index."""
    from pkg_index import build_fixture_packages, require_backend_wheels, seed_build_backends

    directory = tmp_path_factory.mktemp("index")
    build_fixture_packages(directory)
    seed_build_backends(directory, require_backend_wheels())
    return directory


@pytest.fixture(scope="module")
def index(index_dir: Path) -> Iterator[LocalIndex]:
    """:func:`index_dir` served as a PEP 503 index on 127.0.0.1 for the module."""
    from pkg_index import LocalIndex

    with LocalIndex(index_dir) as served:
        yield served
