"""Directories named by a venv's ``*.pth`` files are granted read-only, within reason.

An editable install puts its source tree on ``sys.path`` through a ``.pth`` file.  In
fallback mode an ungranted directory on ``sys.path`` is an EACCES that crashes pip, so
the launcher grants those directories -- but never ``/``, the home directory or one of
its parents, which a hostile or careless ``.pth`` line could name.
"""

from __future__ import annotations

from pathlib import Path

from safe_pip.launcher.plan import pth_directories


def make_venv(root: Path, lines: str) -> Path:
    venv = root / "venv"
    site = venv / "lib" / "python3.11" / "site-packages"
    site.mkdir(parents=True)
    (venv / "pyvenv.cfg").write_text("home = /usr/bin\n")
    (site / "__editable__.demo.pth").write_text(lines)
    return venv


def test_editable_source_trees_are_found(tmp_path: Path) -> None:
    source = tmp_path / "src" / "demo"
    source.mkdir(parents=True)
    relative = tmp_path / "venv" / "lib" / "python3.11" / "extra"
    venv = make_venv(tmp_path, f"{source}\n# comment\nimport os; os.getcwd()\n../extra\n")
    relative.mkdir()
    assert pth_directories(str(venv), home=str(tmp_path / "home")) == [str(source), str(relative)]


def test_root_home_and_its_parents_are_never_granted(tmp_path: Path) -> None:
    home = tmp_path / "home" / "me"
    (home / "project").mkdir(parents=True)
    venv = make_venv(tmp_path, f"/\n{home}\n{home.parent}\n{home}/project\n/does/not/exist\n")
    assert pth_directories(str(venv), home=str(home)) == [str(home / "project")]
