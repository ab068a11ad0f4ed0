"""Shared fixtures for the safe-pip tests (the functions behind them live in helpers.py).

Fixtures:

* ``safe_run_bin`` - path of the installed `safe-run`; skips the test when absent.
* ``project`` - a temp project dir with a pyproject.toml.  The `[tool.safe-run]` text
  comes from indirect parametrisation::

      @pytest.mark.parametrize("project", ['extends = ["python-runtime"]'], indirect=True)
      def test_x(project: Path) -> None: ...

  Without a parameter the table is empty.  ``project_factory`` is the factory form for
  tests that need several projects or extra files.
* ``fake_home`` - a temp HOME with ~/.ssh/id_rsa, ~/.aws/credentials, ~/.bashrc and
  ~/.netrc holding random secrets (a `helpers.FakeHome`).  Pass it as ``home=`` to
  `run_safe`/`run_bare`: safe-run resolves `~` from HOME.
* ``modes`` - parametrised over namespace and fallback mode (a `helpers.SandboxMode`,
  pass it as ``mode=``).  Namespace mode skips where user namespaces are unavailable.
* ``unprivileged`` - True when the tests run as an ordinary user, not root.

Markers (registered here, see `pytest_configure`):

* ``sandbox`` - added automatically to every test that uses ``safe_run_bin`` or
  ``modes``; CI's unprivileged run selects tests with ``-m sandbox``.
* ``unprivileged`` - the test only means something as an ordinary user (root bypasses
  the check it relies on); it is skipped when running as root.
"""

from __future__ import annotations

import os
from functools import cache
from pathlib import Path

import pytest
from helpers import (
    IS_ROOT,
    MODES,
    FakeHome,
    SandboxMode,
    find_safe_run,
    make_fake_home,
    make_project,
    userns_available,
)

#: Fixtures whose use means "this test starts a real sandbox".
_SANDBOX_FIXTURES = frozenset({"safe_run_bin", "modes"})


def pytest_configure(config: pytest.Config) -> None:
    """Register the markers used here so `--strict-markers` and `-m` know them."""
    config.addinivalue_line(
        "markers", "unprivileged: only meaningful as a non-root user; skipped as root"
    )
    config.addinivalue_line(
        "markers", "sandbox: runs real sandboxes (run as root and as an unprivileged user)"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark sandbox tests by the fixtures they use, and skip unprivileged-only tests as root.

    Marking by fixture means nobody has to remember the marker, so CI's ``-m sandbox``
    run as an ordinary user cannot silently miss a test.
    """
    skip_as_root = pytest.mark.skip(reason="needs an unprivileged user; running as root")
    for item in items:
        fixtures = set(getattr(item, "fixturenames", ()))
        if fixtures & _SANDBOX_FIXTURES:
            item.add_marker(pytest.mark.sandbox)
        if IS_ROOT and item.get_closest_marker("unprivileged") is not None:
            item.add_marker(skip_as_root)


@cache
def _userns_available() -> bool:
    """`helpers.userns_available`, probed once per test session."""
    return userns_available()


class _ProjectFactory:
    """Creates named project dirs under one test's tmp_path."""

    def __init__(self, base: Path) -> None:
        self._base = base

    def __call__(
        self, name: str, policy_toml: str = "", files: dict[str, str] | None = None
    ) -> Path:
        """Create ``tmp_path/name`` as a project (see `helpers.make_project`)."""
        return make_project(self._base / name, policy_toml, files=files)


@pytest.fixture(scope="session")
def safe_run_bin() -> Path:
    """The `safe-run` console script next to the test interpreter.

    Skipped when absent (running the suite from a source checkout without installing),
    but a failure under CI: there the project is always installed, and a missing
    console script is a packaging bug that skipping would hide.
    """
    path = find_safe_run()
    if path is None:
        message = "safe-run is not installed next to the test interpreter"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


@pytest.fixture
def project(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    """A project directory whose pyproject.toml carries the parametrised policy text."""
    policy_toml: str = getattr(request, "param", "")
    return make_project(tmp_path / "project", policy_toml)


@pytest.fixture
def project_factory(tmp_path: Path) -> _ProjectFactory:
    """Factory for more project directories: ``project_factory("name", toml, files)``."""
    return _ProjectFactory(tmp_path)


@pytest.fixture
def fake_home(tmp_path: Path) -> FakeHome:
    """A HOME full of random secrets; see `helpers.FakeHome`."""
    return make_fake_home(tmp_path / "home")


@pytest.fixture(params=MODES, ids=[mode.name for mode in MODES])
def modes(request: pytest.FixtureRequest) -> SandboxMode:
    """Each sandbox mode in turn; namespace mode needs working user namespaces."""
    mode: SandboxMode = request.param
    if mode.name == "namespace" and not _userns_available():
        pytest.skip("unprivileged user namespaces are unavailable here")
    return mode


@pytest.fixture(scope="session")
def unprivileged() -> bool:
    """True when running as an ordinary user (what attackers usually are), not root."""
    return not IS_ROOT
