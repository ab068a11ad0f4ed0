"""The README's main command: ``safe-pip install`` of examples/untrusted-tool from its
file:// index, then ``safe-run untrusted-tool``; and the committed index is current."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from sandbox_harness import World, make_world
from test_install_cli import SAFE_PIP

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "untrusted-tool"
SAFE_RUN = SAFE_PIP.parent / "safe-run"
WHEEL = "untrusted-tool/untrusted_tool-0.1.0-py3-none-any.whl"


def _make_index_module():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location("make_index", EXAMPLE / "make_index.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_index_is_built_from_the_source(tmp_path: Path) -> None:
    _make_index_module().build(tmp_path)
    assert (tmp_path / WHEEL).read_bytes() == (EXAMPLE / "index" / WHEEL).read_bytes(), (
        "examples/untrusted-tool/index is stale: run python examples/untrusted-tool/make_index.py"
    )


@pytest.mark.sandbox
@pytest.mark.skipif(not SAFE_PIP.exists(), reason="safe-pip is not installed next to python")
def test_install_then_run_the_entry_point_sandboxed(tmp_path: Path) -> None:
    world: World = make_world(tmp_path)
    project = tmp_path / "example"
    shutil.copytree(EXAMPLE, project, ignore=shutil.ignore_patterns(".venv", "__pycache__"))
    for path in (project, *project.rglob("*")):
        path.chmod(0o755 if path.is_dir() else 0o644)
    env = world.env()
    env.pop("VIRTUAL_ENV", None)
    (world.home / ".ssh" / "id_ed25519").write_text(world.secret)
    installed = subprocess.run(
        [str(SAFE_PIP), "install", "--python", sys.executable, "-i",
         (project / "index").as_uri(), "untrusted-tool"],
        cwd=project, env=env, capture_output=True, text=True, check=False, timeout=120,
    )  # fmt: skip
    assert installed.returncode == 0, installed.stdout + installed.stderr
    assert "console script bin/untrusted-tool" in installed.stderr  # the audit
    tool = project / ".venv" / "bin" / "untrusted-tool"
    # Run plainly, the tool does what it says (HOME from the password database is
    # root's or the CI user's, so point the check at the world's home instead).
    plain = subprocess.run(
        [str(tool)], cwd=project, env=env, capture_output=True, text=True, check=False
    )
    assert plain.returncode == 0 and "LEAKED: environment variables" in plain.stdout
    # The project's policy runs only once approved: the README's command says so.
    refused = subprocess.run(
        [str(SAFE_RUN), "untrusted-tool"],
        cwd=project, env=env, capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert refused.returncode == 125 and "safe-run allow" in refused.stderr, refused.stderr
    assert "OK: today is" not in refused.stdout
    allowed = subprocess.run(
        [str(SAFE_RUN), "allow"], cwd=project, env=env, capture_output=True, text=True, check=False
    )
    assert allowed.returncode == 0 and "approved" in allowed.stdout, allowed.stderr
    sandboxed = subprocess.run(
        [str(SAFE_RUN), "untrusted-tool"],
        cwd=project, env=env, capture_output=True, text=True, check=False, timeout=60,
    )  # fmt: skip
    assert sandboxed.returncode == 0, sandboxed.stdout + sandboxed.stderr
    assert "OK: today is" in sandboxed.stdout
    assert "LEAKED" not in sandboxed.stdout, sandboxed.stdout
