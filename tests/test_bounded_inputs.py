"""Files the user names are read only when they are regular files of sane size: a FIFO,
a device or a huge file is one line and exit 125, never a hang or a memory blow-up."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from safe_pip.bounded import UnreadableInput, check_input_file, read_regular_file

BIN = Path(sys.executable).parent


def run(argv: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(cwd), "LANG": "C.UTF-8"}
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=60,
                          check=False)  # fmt: skip


@pytest.fixture
def fifo(tmp_path: Path) -> Path:
    path = tmp_path / "fifo"
    os.mkfifo(path)
    return path


@pytest.mark.parametrize("target", ["/dev/zero", "fifo", "dir", "huge"])
def test_extends_must_name_a_regular_file_of_sane_size(
    tmp_path: Path, fifo: Path, target: str
) -> None:
    path = {"/dev/zero": "/dev/zero", "fifo": str(fifo), "dir": str(tmp_path)}.get(target)
    if target == "huge":
        huge = tmp_path / "huge.toml"
        with open(huge, "wb") as handle:
            handle.truncate(5 << 20)  # sparse: 5 MiB of nothing, no disk used
        path = str(huge)
    project = tmp_path / "project"
    project.mkdir()
    (project / "pyproject.toml").write_text(f'[tool.safe-run]\nextends = ["{path}"]\n')
    result = run([str(BIN / "safe-run"), "--", "true"], project)
    assert result.returncode == 125, result.stderr
    assert "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert "tool.safe-run.extends[0]" in line
    assert ("not a regular file" in line) or ("larger than 4 MiB" in line), line


@pytest.mark.parametrize("flag", ["-r", "-c"])
def test_requirement_files_must_be_regular(tmp_path: Path, fifo: Path, flag: str) -> None:
    for path in ("/dev/zero", str(fifo)):
        args = [str(BIN / "safe-pip"), "install", "--venv", str(tmp_path / "v"), flag, path]
        if flag == "-c":
            args.append("six")
        result = run(args, tmp_path)
        assert result.returncode == 125, result.stderr
        assert result.stderr.strip().endswith("not a regular file"), result.stderr
        assert not (tmp_path / "v").exists()


def test_read_regular_file_stops_past_the_limit(tmp_path: Path, fifo: Path) -> None:
    small = tmp_path / "small"
    small.write_bytes(b"x" * 10)
    assert read_regular_file(str(small), limit=10) == b"x" * 10
    with pytest.raises(UnreadableInput, match="larger than"):
        read_regular_file(str(small), limit=9)
    with pytest.raises(UnreadableInput, match="FIFO"):
        read_regular_file(str(fifo))
    with pytest.raises(UnreadableInput, match="device"):
        check_input_file("/dev/null")
    with pytest.raises(FileNotFoundError):
        read_regular_file(str(tmp_path / "missing"))
