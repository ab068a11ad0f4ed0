"""``safe-run --learn --write``: additions land in the user's pyproject, nothing else moves.

Every result is parsed again with tomllib (the parser that reads policies) to check the
data, and the text is checked for the user's comments and formatting.
"""

from __future__ import annotations

import os
import stat
import sys
from pathlib import Path
from typing import Any

import pytest

from safe_pip.errors import SafePipError
from safe_pip.learn.pyproject_edit import (
    PolicyAdditions,
    apply_additions,
    merged_table,
    write_additions,
)

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

FULL = """\
# Project metadata (top comment).
[project]
name = "demo"  # the name
version = "1.0"

# Sandbox policy for safe-run.
[tool.safe-run]
extends = ["python-runtime"]  # the base profile
network = "none"  # offline until we know better

[tool.safe-run.filesystem]
# What the tool reads.
read = [
    "data/",  # inputs
    # certificates for TLS
    "/etc/ssl/certs",
]
write = ['.', "$TMPDIR"]  # literal quotes stay
deny = ["~/.ssh"]

[tool.uv]
dev-dependencies = ["pytest"]
"""

EVERYTHING = PolicyAdditions(
    read=("/srv/data", "data/"), write=("out/",), hosts=("api.openai.com", "example.com:8443")
)


def policy(text: str) -> dict[str, Any]:
    data: dict[str, Any] = tomllib.loads(text)["tool"]["safe-run"]
    return data


def comment_lines(text: str) -> list[str]:
    """Every comment in ``text``, whole-line or trailing (good enough for these files)."""
    return [line[line.index("#") :] for line in text.splitlines() if "#" in line]


def test_adds_to_existing_arrays_and_keeps_everything_else() -> None:
    new, changes = apply_additions(FULL, EVERYTHING)
    data = policy(new)
    assert data["filesystem"]["read"] == ["data/", "/etc/ssl/certs", "/srv/data"]
    assert data["filesystem"]["write"] == [".", "$TMPDIR", "out/"]
    assert data["filesystem"]["deny"] == ["~/.ssh"]
    assert data["network"] == {"allow": ["api.openai.com", "example.com:8443"]}
    assert data["extends"] == ["python-runtime"]
    assert tomllib.loads(new)["project"] == {"name": "demo", "version": "1.0"}
    assert tomllib.loads(new)["tool"]["uv"] == {"dev-dependencies": ["pytest"]}
    assert changes == [
        'filesystem.read: added "/srv/data"',
        'filesystem.write: added "out/"',
        'network: replaced "none" with an allow list',
        'network.allow: added "api.openai.com"',
        'network.allow: added "example.com:8443"',
    ]
    for comment in comment_lines(FULL):
        assert comment in new, comment
    # Untouched lines come back byte for byte; the multi-line array stays one a line.
    assert new.startswith(FULL[: FULL.index("network =")])
    assert '    "/etc/ssl/certs",\n    "/srv/data",\n]' in new
    assert 'write = [\'.\', "$TMPDIR", "out/"]  # literal quotes stay' in new
    assert new.endswith('[tool.uv]\ndev-dependencies = ["pytest"]\n')


def test_second_run_changes_nothing() -> None:
    once, _ = apply_additions(FULL, EVERYTHING)
    twice, changes = apply_additions(once, EVERYTHING)
    assert (twice, changes) == (once, [])


def test_empty_additions_leave_the_text_alone() -> None:
    assert apply_additions(FULL, PolicyAdditions()) == (FULL, [])
    assert merged_table("", PolicyAdditions()) == ""


def test_present_entries_are_skipped_and_new_ones_keep_their_order() -> None:
    text = '[tool.safe-run.filesystem]\nread = ["b", "a"]\n'
    additions = PolicyAdditions(read=("a", "z", "b", "y", "z"))
    new, changes = apply_additions(text, additions)
    assert new == '[tool.safe-run.filesystem]\nread = ["b", "a", "z", "y"]\n'
    assert changes == ['filesystem.read: added "z"', 'filesystem.read: added "y"']


def test_all_present_creates_no_tables() -> None:
    text = '[tool.safe-run.network]\nallow = ["h"]\n'
    assert apply_additions(text, PolicyAdditions(hosts=("h",))) == (text, [])


def test_multiline_array_without_trailing_comma() -> None:
    text = '[tool.safe-run.filesystem]\nread = [\n  "a",\n  "b"  # bee\n]\n'
    new, _ = apply_additions(text, PolicyAdditions(read=("c", "d")))
    assert new == '[tool.safe-run.filesystem]\nread = [\n  "a",\n  "b",  # bee\n  "c",\n  "d"\n]\n'
    assert policy(new)["filesystem"]["read"] == ["a", "b", "c", "d"]


def test_no_tool_table_gets_subtable_headers_only() -> None:
    text = '# top\n[project]\nname = "x"\n'
    new, _ = apply_additions(text, EVERYTHING)
    assert new.startswith(text + "\n[tool.safe-run.filesystem]\n")
    assert "[tool]" not in new and "[tool.safe-run]" not in new
    assert "{" not in new  # real tables, not inline ones
    assert "\n\n[tool.safe-run.network]\n" in new and "\n\n\n" not in new
    assert policy(new)["network"]["allow"] == ["api.openai.com", "example.com:8443"]
    assert policy(new)["filesystem"] == {"read": ["/srv/data", "data/"], "write": ["out/"]}


def test_only_another_tool_table() -> None:
    text = '[tool.uv]\ndev = true  # c\n\n[project]\nname = "x"\n'
    new, _ = apply_additions(text, PolicyAdditions(read=("r",)))
    assert new == (
        '[tool.uv]\ndev = true  # c\n\n[tool.safe-run.filesystem]\nread = ["r"]\n\n'
        '[project]\nname = "x"\n'
    )
    assert tomllib.loads(new)["tool"] == {
        "uv": {"dev": True},
        "safe-run": {"filesystem": {"read": ["r"]}},
    }


def test_missing_subtable_next_to_an_existing_one() -> None:
    text = (
        '[tool.safe-run]\nextends = ["x"]\n\n'
        "[tool.safe-run.filesystem]\nread = []\n\n"
        "[tool.uv]\nq = 1\n"
    )
    new, _ = apply_additions(text, PolicyAdditions(hosts=("h",)))
    assert '[tool.safe-run.network]\nallow = ["h"]\n\n[tool.uv]' in new
    assert policy(new)["network"] == {"allow": ["h"]}
    assert tomllib.loads(new)["tool"]["uv"] == {"q": 1}


def test_table_split_around_other_tables() -> None:
    text = (
        '[tool.safe-run]\nextends = ["x"]\n\n[project]\nname = "n"\n\n'
        '[tool.safe-run.network]\nallow = ["a"]\n'
    )
    new, _ = apply_additions(text, PolicyAdditions(read=("r",), hosts=("b",)))
    assert policy(new) == {
        "extends": ["x"],
        "filesystem": {"read": ["r"]},
        "network": {"allow": ["a", "b"]},
    }
    assert tomllib.loads(new)["project"] == {"name": "n"}


def test_inline_filesystem_table() -> None:
    text = '[tool.safe-run]\nfilesystem = { read = ["a"] }  # inline\n'
    new, _ = apply_additions(text, PolicyAdditions(read=("b",), write=("w",)))
    assert policy(new)["filesystem"] == {"read": ["a", "b"], "write": ["w"]}
    assert "# inline" in new and new.count("\n") == 2  # still one inline table on one line


def test_dotted_filesystem_keys() -> None:
    text = '[tool.safe-run]\nfilesystem.read = ["a"]  # dotted\n\n[tool.other]\nz = 1\n'
    new, _ = apply_additions(text, PolicyAdditions(read=("b",), write=("w",), hosts=("h",)))
    assert 'filesystem.read = ["a", "b"]  # dotted\nfilesystem.write = ["w"]\n' in new
    assert policy(new) == {
        "filesystem": {"read": ["a", "b"], "write": ["w"]},
        "network": {"allow": ["h"]},
    }
    assert tomllib.loads(new)["tool"]["other"] == {"z": 1}


def test_inline_safe_run_table_stays_inline() -> None:
    text = '[tool]\nsafe-run = { network = "none" }\n'
    new, changes = apply_additions(text, PolicyAdditions(read=("a", "b"), hosts=("h",)))
    assert policy(new) == {"filesystem": {"read": ["a", "b"]}, "network": {"allow": ["h"]}}
    assert 'network: replaced "none" with an allow list' in changes
    assert new.count("\n") == 2


def test_network_none_without_hosts_is_left_alone() -> None:
    text = '[tool.safe-run]\nnetwork = "none"  # offline\n'
    new, changes = apply_additions(text, PolicyAdditions(read=("r",)))
    assert policy(new) == {"network": "none", "filesystem": {"read": ["r"]}}
    assert new.startswith(text)
    assert changes == ['filesystem.read: added "r"']


def test_network_none_comment_survives_the_replacement() -> None:
    text = '[tool.safe-run]\nnetwork = "none"  # offline\n'
    new, _ = apply_additions(text, PolicyAdditions(hosts=("h",)))
    assert policy(new) == {"network": {"allow": ["h"]}}
    assert "# offline" in new


@pytest.mark.parametrize(
    "entry",
    ['quote"d', "back\\slash", "ünïcödé/路径", "tab\there", "C:\\new\\table", "#not-a-comment"],
)
def test_awkward_strings_are_escaped(entry: str) -> None:
    new, changes = apply_additions(FULL, PolicyAdditions(read=(entry,), hosts=(entry,)))
    assert policy(new)["filesystem"]["read"][-1] == entry
    assert policy(new)["network"]["allow"] == [entry]
    assert len(changes) == 3


def test_crlf_file_stays_crlf() -> None:
    text = (
        '[project]\r\nname = "x"\r\n\r\n[tool.safe-run.filesystem]\r\nread = [\r\n  "a",\r\n]\r\n'
    )
    new, _ = apply_additions(text, PolicyAdditions(read=("b",), hosts=("h",)))
    assert "\n" not in new.replace("\r\n", "")
    assert new.startswith(text[: text.index("]\r\n", text.index("read")) - 1])
    assert policy(new) == {"filesystem": {"read": ["a", "b"]}, "network": {"allow": ["h"]}}


@pytest.mark.parametrize(
    "text",
    [
        '[project\nname = "x"\n',
        "[tool.safe-run]\nnetwork = \n",
        "[a]\nx = 1\n[a]\ny = 2\n",
    ],
)
def test_invalid_toml_is_a_value_error(text: str) -> None:
    with pytest.raises(ValueError, match=r"^pyproject\.toml is not valid TOML"):
        apply_additions(text, EVERYTHING)
    with pytest.raises(ValueError, match="not valid TOML"):
        merged_table(text, EVERYTHING)


@pytest.mark.parametrize(
    ("text", "where"),
    [
        ('[tool.safe-run]\nfilesystem = "x"\n', "tool.safe-run.filesystem"),
        ('[tool.safe-run.filesystem]\nread = "x"\n', "tool.safe-run.filesystem.read"),
        ('[tool.safe-run]\nnetwork = "all"\n', "tool.safe-run.network"),
        ("tool = 3\n", "tool"),
    ],
)
def test_wrong_shapes_are_value_errors(text: str, where: str) -> None:
    with pytest.raises(ValueError, match=where.replace(".", r"\.")):
        apply_additions(text, EVERYTHING)


def test_merged_table_is_only_the_section() -> None:
    section = merged_table(FULL, EVERYTHING)
    assert section.startswith('[tool.safe-run]\nextends = ["python-runtime"]  # the base profile\n')
    assert "[project]" not in section and "[tool.uv]" not in section
    assert "# Project metadata" not in section
    assert "# What the tool reads." in section and "# inputs" in section
    assert tomllib.loads(section)["tool"] == {
        "safe-run": policy(apply_additions(FULL, EVERYTHING)[0])
    }
    assert section.endswith("\n") and not section.endswith("\n\n")


def test_merged_table_without_a_policy_is_the_added_keys() -> None:
    for text in ("", '[project]\nname = "x"\n\n[tool.uv]\nq = 1\n'):
        section = merged_table(text, PolicyAdditions(read=("a",), hosts=("h",)))
        assert section == (
            '[tool.safe-run.filesystem]\nread = ["a"]\n\n[tool.safe-run.network]\nallow = ["h"]\n'
        )


def test_merged_table_drops_an_empty_tool_header() -> None:
    text = '[tool]\nfoo = 1\n\n[tool.safe-run]\nextends = ["x"]\n'
    section = merged_table(text, PolicyAdditions(write=("w",)))
    assert (
        section == '[tool.safe-run]\nextends = ["x"]\n\n[tool.safe-run.filesystem]\nwrite = ["w"]\n'
    )


def test_write_additions_keeps_the_mode_and_reports(tmp_path: Path) -> None:
    path = tmp_path / "pyproject.toml"
    path.write_text(FULL, encoding="utf-8")
    path.chmod(0o640)
    changes = write_additions(str(path), EVERYTHING)
    assert changes == apply_additions(FULL, EVERYTHING)[1]
    assert path.read_text(encoding="utf-8") == apply_additions(FULL, EVERYTHING)[0]
    assert stat.S_IMODE(path.stat().st_mode) == 0o640
    assert os.listdir(tmp_path) == ["pyproject.toml"]  # no temporary file left behind


def test_write_additions_without_changes_does_not_write(tmp_path: Path) -> None:
    path = tmp_path / "pyproject.toml"
    path.write_text(FULL, encoding="utf-8")
    os.utime(path, ns=(1_000_000_000, 1_000_000_000))
    inode = path.stat().st_ino
    assert write_additions(str(path), PolicyAdditions(read=("data/",), write=(".",))) == []
    assert write_additions(str(path), PolicyAdditions()) == []
    assert path.stat().st_mtime_ns == 1_000_000_000
    assert path.stat().st_ino == inode


def test_write_additions_edits_through_a_symlink(tmp_path: Path) -> None:
    real = tmp_path / "real.toml"
    real.write_text("", encoding="utf-8")
    link = tmp_path / "pyproject.toml"
    link.symlink_to(real)
    write_additions(str(link), PolicyAdditions(hosts=("h",)))
    assert link.is_symlink()
    assert policy(real.read_text(encoding="utf-8")) == {"network": {"allow": ["h"]}}


def test_write_additions_invalid_file_is_a_safe_pip_error(tmp_path: Path) -> None:
    path = tmp_path / "pyproject.toml"
    path.write_text("[project\n", encoding="utf-8")
    with pytest.raises(SafePipError) as caught:
        write_additions(str(path), EVERYTHING)
    assert caught.value.message.startswith(f"{path} is not valid TOML")
    assert caught.value.exit_code == 125
    assert path.read_text(encoding="utf-8") == "[project\n"
