"""The policy loader, profiles, renderer and JSON schema: pure and fast, no sandbox.

Every test builds its projects under ``tmp_path`` and passes ``home`` and
``variables`` explicitly, so nothing depends on the developer's own home or
environment.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from safe_pip.errors import EXIT_INTERNAL, PolicyError, SafePipError
from safe_pip.policy import profiles
from safe_pip.policy.loader import (
    ACCEPTED_KEYS,
    CLI_SOURCE,
    CliOverrides,
    find_pyproject,
    load_policy,
)
from safe_pip.policy.model import Policy
from safe_pip.policy.render import render_toml

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

HOME = Path("/home/alice")
VARIABLES = {"TMPDIR": "/tmp/safe-run-xyz/tmp", "DATA": "/srv/data", "EMPTY": ""}
REPO = Path(__file__).resolve().parents[1]
SCHEMA_PATH = REPO / "schema" / "safe-run.schema.json"


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def make_project(directory: Path, table: str | None = "") -> Path:
    """A project whose pyproject has ``[tool.safe-run]`` + ``table`` (None: no table)."""
    text = '[project]\nname = "demo"\nversion = "1"\n'
    if table is not None:
        text += "\n[tool.safe-run]\n" + textwrap.dedent(table)
    write(directory / "pyproject.toml", text)
    return directory


def load(
    cwd: Path,
    *,
    project: Path | None = None,
    overrides: CliOverrides | None = None,
    variables: dict[str, str] | None = None,
    home: Path = HOME,
) -> Policy:
    return load_policy(
        cwd=cwd,
        project=project,
        overrides=overrides or CliOverrides(),
        variables=VARIABLES if variables is None else variables,
        home=home,
    )


def load_error(cwd: Path, **kwargs: object) -> PolicyError:
    with pytest.raises(PolicyError) as info:
        load(cwd, **kwargs)  # type: ignore[arg-type]
    return info.value


@pytest.fixture
def no_outer_pyproject(tmp_path: Path) -> None:
    """Discovery tests need a tmp dir with no pyproject.toml anywhere above it."""
    if find_pyproject(tmp_path) is not None:
        pytest.skip(f"a pyproject.toml above {tmp_path} would be found")


# -- discovery -------------------------------------------------------------------------


def test_find_pyproject_walks_upward_to_the_nearest(tmp_path: Path) -> None:
    outer = make_project(tmp_path / "outer")
    inner = make_project(outer / "inner", None)
    deep = inner / "a" / "b"
    deep.mkdir(parents=True)
    assert find_pyproject(deep) == str(inner / "pyproject.toml")
    assert find_pyproject(outer / "other") == str(outer / "pyproject.toml")  # need not exist
    assert find_pyproject(str(inner)) == str(inner / "pyproject.toml")


def test_no_pyproject_means_cwd_is_the_project(tmp_path: Path, no_outer_pyproject: None) -> None:
    assert find_pyproject(tmp_path) is None
    policy = load(tmp_path)
    assert policy.project_dir == str(tmp_path)
    assert policy.pyproject is None
    assert policy.sources == ("profile:base",)
    assert str(tmp_path) in policy.filesystem.read
    assert policy.network.mode == "none"
    assert str(tmp_path / "pyproject.toml") in policy.filesystem.protected


def test_pyproject_without_table_is_still_the_project_root(tmp_path: Path) -> None:
    root = make_project(tmp_path / "proj", None)
    (root / "src").mkdir()
    policy = load(root / "src")
    assert policy.project_dir == str(root)
    assert policy.pyproject is None
    assert policy.sources == ("profile:base",)
    assert str(root) in policy.filesystem.read
    protected = policy.filesystem.protected
    assert protected[0] == f"{root}/pyproject.toml"
    # base's list of files that run later: read-only under any write grant
    assert {f"{HOME}/.bashrc", f"{HOME}/.local/bin", f"{HOME}/.gitconfig"} <= set(protected)


def test_pyproject_with_table_supplies_the_policy(tmp_path: Path) -> None:
    root = make_project(tmp_path / "proj", 'filesystem.read = ["data"]\n')
    policy = load(root)
    assert policy.pyproject == str(root / "pyproject.toml")
    assert policy.sources == ("profile:base", str(root / "pyproject.toml"))
    assert str(root / "data") in policy.filesystem.read


def test_project_option_overrides_discovery(tmp_path: Path) -> None:
    here = make_project(tmp_path / "here", 'filesystem.read = ["here-data"]\n')
    there = make_project(tmp_path / "there", 'filesystem.read = ["there-data"]\n')
    policy = load(here, project=Path("../there"))
    assert policy.project_dir == str(there)
    assert str(there / "there-data") in policy.filesystem.read
    assert str(here / "here-data") not in policy.filesystem.read


def test_project_option_requires_a_pyproject(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    error = load_error(tmp_path, project=tmp_path / "empty")
    assert (error.source, error.key) == (CLI_SOURCE, "--project")
    assert "pyproject.toml" in error.problem
    assert isinstance(error, SafePipError) and error.exit_code == EXIT_INTERNAL


# -- extends ---------------------------------------------------------------------------


def test_extends_builtin_profile(tmp_path: Path) -> None:
    root = make_project(tmp_path / "p", 'extends = ["python-runtime"]\n')
    policy = load(root)
    pyproject = str(root / "pyproject.toml")
    assert policy.sources == ("profile:base", "profile:python-runtime", pyproject)
    assert "PYTHONUNBUFFERED" in policy.env.pass_names
    assert "PYTHONHASHSEED" in policy.env.pass_names


def test_project_write_profile_expands_project_token(tmp_path: Path) -> None:
    root = make_project(tmp_path / "p", 'extends = ["project-write"]\n')
    policy = load(root / ".")
    assert policy.filesystem.write == (str(root),)
    assert policy.sources[:3] == ("profile:base", "profile:python-runtime", "profile:project-write")
    # The policy file itself stays protected under the now-writable project.
    assert str(root / "pyproject.toml") in policy.filesystem.protected


def test_extends_relative_file_resolves_paths_against_that_file(tmp_path: Path) -> None:
    shared = write(
        tmp_path / "shared" / "policy.toml",
        """
        [filesystem]
        read = ["assets", "../common"]
        """,
    )
    root = make_project(tmp_path / "proj", 'extends = ["../shared/policy.toml"]\n')
    policy = load(root)
    assert str(tmp_path / "shared" / "assets") in policy.filesystem.read
    assert str(tmp_path / "common") in policy.filesystem.read
    assert policy.sources == ("profile:base", str(shared), str(root / "pyproject.toml"))
    assert str(shared) in policy.filesystem.protected


def test_nested_extends_merge_depth_first(tmp_path: Path) -> None:
    write(
        tmp_path / "inner.toml",
        """
        extends = ["network-none"]
        filesystem.read = ["/inner"]
        env.set = { ORDER = "inner", ONLY_INNER = "1" }
        """,
    )
    write(
        tmp_path / "outer.toml",
        """
        extends = ["inner.toml", "python-runtime"]
        filesystem.read = ["/outer"]
        env.set = { ORDER = "outer" }
        """,
    )
    root = make_project(
        tmp_path / "p",
        """
        extends = ["../outer.toml"]
        filesystem.read = ["/table"]
        """,
    )
    policy = load(root)
    assert policy.sources == (
        "profile:base",
        "profile:network-none",
        str(tmp_path / "inner.toml"),
        "profile:python-runtime",
        str(tmp_path / "outer.toml"),
        str(root / "pyproject.toml"),
    )
    read = list(policy.filesystem.read)
    assert read.index("/inner") < read.index("/outer") < read.index("/table")
    assert dict(policy.env.set_values) == {"ORDER": "outer", "ONLY_INNER": "1"}


def test_diamond_extends_merges_each_profile_once(tmp_path: Path) -> None:
    root = make_project(tmp_path / "p", 'extends = ["project-write", "python-runtime", "base"]\n')
    policy = load(root)
    assert policy.sources.count("profile:python-runtime") == 1
    assert policy.sources.count("profile:base") == 1


def test_extends_cycle_is_an_error_naming_the_file(tmp_path: Path) -> None:
    a = write(tmp_path / "a.toml", 'extends = ["b.toml"]\n')
    b = write(tmp_path / "b.toml", 'extends = ["./a.toml"]\n')
    root = make_project(tmp_path / "p", 'extends = ["../a.toml"]\n')
    error = load_error(root)
    assert error.source == str(b)
    assert error.key == "extends[0]"
    assert "cycle" in error.problem
    assert f"{a} -> {b} -> {a}" in error.problem
    assert str(b) in str(error)


def test_extends_self_cycle(tmp_path: Path) -> None:
    me = write(tmp_path / "me.toml", 'extends = ["me.toml"]\n')
    root = make_project(tmp_path / "p", 'extends = ["../me.toml"]\n')
    error = load_error(root)
    assert error.source == str(me) and "cycle" in error.problem


def test_extends_missing_file_blames_the_entry(tmp_path: Path) -> None:
    root = make_project(tmp_path / "p", 'extends = ["python-runtime", "nope.toml"]\n')
    error = load_error(root)
    assert error.source == str(root / "pyproject.toml")
    assert error.key == "tool.safe-run.extends[1]"
    assert "does not exist" in error.problem


def test_unknown_profile_lists_available_ones(tmp_path: Path) -> None:
    root = make_project(tmp_path / "p", 'extends = ["python-runtim"]\n')
    error = load_error(root)
    assert error.source == str(root / "pyproject.toml")
    assert error.key == "tool.safe-run.extends[0]"
    for name in ("python-runtime", "project-write", "network-none", "base"):
        assert name in error.problem


def test_policy_file_errors_use_top_level_keys(tmp_path: Path) -> None:
    bad = write(tmp_path / "bad.toml", '[filesystem]\nreed = ["x"]\n')
    root = make_project(tmp_path / "p", 'extends = ["../bad.toml"]\n')
    error = load_error(root)
    assert (error.source, error.key) == (str(bad), "filesystem.reed")
    assert "perhaps a typo for 'read'" in error.problem


def test_invalid_toml_in_policy_file_names_file_and_line(tmp_path: Path) -> None:
    bad = write(tmp_path / "bad.toml", "network = \n")
    root = make_project(tmp_path / "p", 'extends = ["../bad.toml"]\n')
    error = load_error(root)
    assert error.source == str(bad)
    assert error.key.startswith("line 1")
    assert "not valid TOML" in error.problem


# -- built-in profile restrictions (a fake profile directory) ---------------------------


@pytest.fixture
def fake_profiles(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "policies"
    directory.mkdir()
    base = profiles.profile_path("base")
    (directory / "base.toml").write_bytes(Path(base).read_bytes())
    monkeypatch.setattr(profiles, "_profile_dir", str(directory))
    return directory


def test_builtin_profile_rejects_relative_paths(tmp_path: Path, fake_profiles: Path) -> None:
    write(fake_profiles / "rel.toml", 'filesystem.read = ["data"]\n')
    root = make_project(tmp_path / "p", 'extends = ["rel"]\n')
    error = load_error(root)
    assert (error.source, error.key) == ("profile:rel", "filesystem.read[0]")
    assert "$PROJECT" in error.problem


def test_builtin_profile_cannot_extend_files(tmp_path: Path, fake_profiles: Path) -> None:
    write(fake_profiles / "sneaky.toml", 'extends = ["/etc/other.toml"]\n')
    root = make_project(tmp_path / "p", 'extends = ["sneaky"]\n')
    error = load_error(root)
    assert (error.source, error.key) == ("profile:sneaky", "extends[0]")


def test_builtin_profile_cycle(tmp_path: Path, fake_profiles: Path) -> None:
    write(fake_profiles / "one.toml", 'extends = ["two"]\n')
    write(fake_profiles / "two.toml", 'extends = ["one"]\n')
    root = make_project(tmp_path / "p", 'extends = ["one"]\n')
    error = load_error(root)
    assert error.source == "profile:two"
    assert "profile:one -> profile:two -> profile:one" in error.problem


# -- merging ---------------------------------------------------------------------------


def test_lists_concatenate_without_duplicates(tmp_path: Path) -> None:
    write(tmp_path / "prof.toml", 'filesystem.read = ["/a", "/b"]\nenv.pass = ["X", "Y"]\n')
    root = make_project(
        tmp_path / "p",
        """
        extends = ["../prof.toml"]
        filesystem.read = ["/b", "/c", "/a/"]
        env.pass = ["Y", "Z", "X"]
        """,
    )
    policy = load(root)
    read = list(policy.filesystem.read)
    assert [p for p in read if p in ("/a", "/b", "/c")] == ["/a", "/b", "/c"]
    assert len(read) == len(set(read))
    assert policy.env.pass_names == ("X", "Y", "Z")


def test_base_is_always_first_and_its_deny_list_stays(tmp_path: Path) -> None:
    root = make_project(tmp_path / "p", 'filesystem.read = ["~"]\n')
    policy = load(root)
    assert policy.sources[0] == "profile:base"
    assert str(HOME) in policy.filesystem.read
    assert str(HOME / ".ssh") in policy.filesystem.deny
    assert "/usr" in policy.filesystem.read


def test_network_none_in_later_layer_clears_earlier_allows(tmp_path: Path) -> None:
    write(tmp_path / "net.toml", 'network.allow = ["pypi.org", "files.pythonhosted.org:443"]\n')
    root = make_project(
        tmp_path / "p",
        """
        extends = ["../net.toml", "network-none"]
        """,
    )
    policy = load(root)
    assert policy.network.mode == "none" and policy.network.allow == ()


def test_allows_after_network_none_survive(tmp_path: Path) -> None:
    root = make_project(
        tmp_path / "p",
        """
        extends = ["network-none"]
        network.allow = ["API.Example.COM", "*.GitHubUserContent.com:443", "api.example.com"]
        """,
    )
    policy = load(root)
    assert policy.network.mode == "allowlist"
    assert policy.network.allow == ("api.example.com", "*.githubusercontent.com:443")


def test_table_network_none(tmp_path: Path) -> None:
    root = make_project(tmp_path / "p", 'network = "none"\n')
    assert load(root).network.mode == "none"


def test_env_set_later_layer_wins(tmp_path: Path) -> None:
    write(tmp_path / "a.toml", 'env.set = { A = "profile", B = "profile" }\n')
    write(tmp_path / "cli.toml", 'env.set = { B = "cli-profile" }\n')
    root = make_project(
        tmp_path / "p",
        """
        extends = ["../a.toml"]
        [tool.safe-run.env]
        set = { A = "table" }
        """,
    )
    policy = load(root, overrides=CliOverrides(profiles=("../cli.toml",)))
    assert dict(policy.env.set_values) == {"A": "table", "B": "cli-profile"}


# -- command line ----------------------------------------------------------------------


def test_cli_overrides_are_the_last_layer(tmp_path: Path) -> None:
    root = make_project(tmp_path / "p", 'network.allow = ["pypi.org"]\n')
    sub = root / "sub"
    sub.mkdir()
    overrides = CliOverrides(
        allow_read=("data", "~/models", "$DATA/x"),
        allow_write=("out/",),
        allow_env=("OPENAI_BASE_URL",),
        allow_host=("LOCALHOST:8000", "[::1]:8000"),
    )
    policy = load(sub, overrides=overrides)
    assert policy.sources[-1] == CLI_SOURCE
    for path in (f"{sub}/data", f"{HOME}/models", "/srv/data/x"):
        assert path in policy.filesystem.read
    assert policy.filesystem.write == (f"{sub}/out",)
    assert policy.env.pass_names[-1] == "OPENAI_BASE_URL"
    assert policy.network.allow == ("pypi.org", "localhost:8000", "[::1]:8000")


def test_cli_no_network_clears_table_allows(tmp_path: Path) -> None:
    root = make_project(tmp_path / "p", 'network.allow = ["pypi.org"]\n')
    policy = load(root, overrides=CliOverrides(no_network=True))
    assert policy.network.mode == "none" and policy.network.allow == ()
    assert policy.sources[-1] == CLI_SOURCE


def test_cli_profile_applies_after_the_table(tmp_path: Path) -> None:
    root = make_project(
        tmp_path / "p",
        """
        extends = ["network-none"]
        network.allow = ["pypi.org"]
        """,
    )
    assert load(root).network.mode == "allowlist"
    policy = load(root, overrides=CliOverrides(profiles=("network-none",)))
    assert policy.network.mode == "none"
    assert policy.sources[-1] == "profile:network-none"


def test_cli_allow_host_after_profile_network_none(tmp_path: Path) -> None:
    root = make_project(tmp_path / "p")
    policy = load(
        root, overrides=CliOverrides(profiles=("network-none",), allow_host=("pypi.org",))
    )
    assert policy.network.allow == ("pypi.org",)


def test_no_network_with_allow_host_is_impossible(tmp_path: Path) -> None:
    root = make_project(tmp_path / "p")
    error = load_error(root, overrides=CliOverrides(no_network=True, allow_host=("pypi.org",)))
    assert error.source == CLI_SOURCE
    assert "--allow-host" in str(error) and "--no-network" in str(error)


def test_cli_unknown_profile(tmp_path: Path) -> None:
    error = load_error(make_project(tmp_path / "p"), overrides=CliOverrides(profiles=("nope",)))
    assert (error.source, error.key) == (CLI_SOURCE, "--profile")
    assert "python-runtime" in error.problem


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        (CliOverrides(allow_env=("BAD-NAME",)), "--allow-env"),
        (CliOverrides(allow_host=("bad host",)), "--allow-host"),
        (CliOverrides(allow_read=("$NOPE",)), "--allow-read"),
        (CliOverrides(allow_write=("",)), "--allow-write"),
    ],
)
def test_cli_errors_name_the_flag(tmp_path: Path, overrides: CliOverrides, key: str) -> None:
    error = load_error(make_project(tmp_path / "p"), overrides=overrides)
    assert (error.source, error.key) == (CLI_SOURCE, key)


# -- path expansion --------------------------------------------------------------------


def test_path_expansion(tmp_path: Path) -> None:
    root = make_project(
        tmp_path / "p",
        """
        [tool.safe-run.filesystem]
        read = ["~", "~/docs/", "$DATA", "${DATA}/sub", "data/../other", "/abs//x/./y", "$HOME/h"]
        write = ["$TMPDIR", "${PROJECT}/out", "."]
        deny = [".env", "$PROJECT/secrets"]
        """,
    )
    policy = load(root)
    read = list(policy.filesystem.read)
    for expected in (
        "/home/alice",
        "/home/alice/docs",
        "/srv/data",
        "/srv/data/sub",
        f"{root}/other",
        "/abs/x/y",
        "/home/alice/h",
    ):
        assert expected in read
    assert list(policy.filesystem.write) == ["/tmp/safe-run-xyz/tmp", f"{root}/out", str(root)]
    assert list(policy.filesystem.deny)[-2:] == [f"{root}/.env", f"{root}/secrets"]


def test_symlinks_are_not_resolved(tmp_path: Path) -> None:
    (tmp_path / "real").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "real")
    root = make_project(tmp_path / "p", f'filesystem.read = ["{tmp_path}/link/x"]\n')
    assert str(tmp_path / "link" / "x") in load(root).filesystem.read


def test_project_variable_cannot_be_overridden_by_the_caller(tmp_path: Path) -> None:
    root = make_project(tmp_path / "p", 'filesystem.write = ["$PROJECT"]\n')
    policy = load(root, variables={"PROJECT": "/"})
    assert policy.filesystem.write == (str(root),)


@pytest.mark.parametrize(
    ("path", "problem"),
    [
        ("$NOPE/x", "unknown variable $NOPE"),
        ("${NOPE}", "unknown variable $NOPE"),
        ("$EMPTY/x", "empty"),
        ("${DATA", "closing"),
        ("/a/$/b", "variable name"),
        ("${1X}", "variable name"),
        ("~bob/x", "~user"),
        ("", "empty path"),
        ("a\u0000b", "NUL"),
    ],
)
def test_bad_paths_name_the_key(tmp_path: Path, path: str, problem: str) -> None:
    root = make_project(tmp_path / "p", f"filesystem.deny = [{json.dumps(path)}]\n")
    error = load_error(root)
    assert error.source == str(root / "pyproject.toml")
    assert error.key == "tool.safe-run.filesystem.deny[0]"
    assert problem in error.problem


def test_home_must_be_absolute_to_expand_tilde(tmp_path: Path) -> None:
    error = load_error(make_project(tmp_path / "p"), home=Path("relative"))
    assert error.source == "profile:base" and "home directory" in error.problem


# -- validation errors name file and key -------------------------------------------------


@pytest.mark.parametrize(
    ("table", "key", "problem"),
    [
        ('filesystem.reed = ["x"]\n', "tool.safe-run.filesystem.reed", "perhaps a typo for 'read'"),
        ("extend = []\n", "tool.safe-run.extend", "unknown key"),
        ("credentials.x.env = 'K'\n", "tool.safe-run.credentials.x.hosts", "is required"),
        ("credentials.x.hosts = ['a.example']\n", "tool.safe-run.credentials.x.env", "is required"),
        ("credentials.openai.sorce = 'env'\n", "tool.safe-run.credentials.openai.sorce", "unknown"),
        ('credentials = ["opneai"]\n', "tool.safe-run.credentials[0]", "not a built-in"),
        (
            "credentials.x = { env = 'K', hosts = ['*.example.com'] }\n",
            "tool.safe-run.credentials.x.hosts[0]",
            "without '*'",
        ),
        (
            "credentials.x = { env = 'K', hosts = ['a.example'], base-url = 'http://a.example' }\n",
            "tool.safe-run.credentials.x.base-url",
            "https://",
        ),
        (
            "credentials.x = { env = 'K', hosts = ['a.example'], file = '.env' }\n",
            "tool.safe-run.credentials.x.file",
            "dotenv",
        ),
        ('"odd key" = 1\n', 'tool.safe-run."odd key"', "unknown key"),
        ('network.alow = ["x"]\n', "tool.safe-run.network.alow", "unknown key"),
        ('env.passs = ["X"]\n', "tool.safe-run.env.passs", "unknown key"),
        ('filesystem.read = "data"\n', "tool.safe-run.filesystem.read", "not a string"),
        ("filesystem.write = [1]\n", "tool.safe-run.filesystem.write[0]", "not an integer"),
        ("filesystem = []\n", "tool.safe-run.filesystem", "must be a table"),
        ('extends = "python-runtime"\n', "tool.safe-run.extends", "array of strings"),
        ('extends = [""]\n', "tool.safe-run.extends[0]", "empty"),
        ("network = 5\n", "tool.safe-run.network", "not an integer"),
        ('network = "all"\n', "tool.safe-run.network", '"none"'),
        ('network.allow = "pypi.org"\n', "tool.safe-run.network.allow", "array"),
        ("network.allow = [true]\n", "tool.safe-run.network.allow[0]", "not a boolean"),
        ('env.pass = ["OK", "1BAD"]\n', "tool.safe-run.env.pass[1]", "environment variable"),
        ('env.pass = ["A-B"]\n', "tool.safe-run.env.pass[0]", "environment variable"),
        ("env.set = { A = 1 }\n", "tool.safe-run.env.set.A", "must be a string"),
        ('env.set = { "B C" = "x" }\n', 'tool.safe-run.env.set."B C"', "environment variable"),
        ('env.set = ["A=1"]\n', "tool.safe-run.env.set", "table of strings"),
        ("env = 1987-07-05\n", "tool.safe-run.env", "date/time"),
    ],
)
def test_validation_errors_name_file_and_key(
    tmp_path: Path, table: str, key: str, problem: str
) -> None:
    root = make_project(tmp_path / "p", table)
    error = load_error(root)
    assert error.source == str(root / "pyproject.toml")
    assert error.key == key
    assert problem in error.problem
    message = str(error)
    assert message == f"{root / 'pyproject.toml'}: {key}: {error.problem}"
    assert "\n" not in message


def test_safe_run_must_be_a_table(tmp_path: Path) -> None:
    write(tmp_path / "p" / "pyproject.toml", 'tool.safe-run = "none"\n')
    error = load_error(tmp_path / "p")
    assert error.key == "tool.safe-run" and "must be a table" in error.problem


def test_invalid_pyproject_toml_names_the_line(tmp_path: Path) -> None:
    write(tmp_path / "p" / "pyproject.toml", '[tool.safe-run]\nnetwork = "none\n')
    error = load_error(tmp_path / "p")
    assert error.source == str(tmp_path / "p" / "pyproject.toml")
    assert error.key.startswith("line 2")


def test_pyproject_not_mentioning_safe_run_is_not_parsed(tmp_path: Path) -> None:
    # Other tools own the rest of the file; a broken file without our table is theirs.
    write(tmp_path / "p" / "pyproject.toml", "[project\nname = \n")
    assert load(tmp_path / "p").project_dir == str(tmp_path / "p")


def test_escaped_table_name_is_still_found(tmp_path: Path) -> None:
    write(tmp_path / "p" / "pyproject.toml", '[tool."safe\\u002drun"]\nnetwork.allow = ["x.org"]\n')
    assert load(tmp_path / "p").network.allow == ("x.org",)


VALID_HOSTS = [
    "api.openai.com",
    "*.githubusercontent.com:443",
    "*.local",
    "localhost",
    "pypi.org:1",
    "pypi.org:65535",
    "xn--bcher-kva.example",
    "10.0.0.5:8080",
    "0.0.0.0",
    "255.255.255.255",
    "::1",
    "[::1]:8000",
    "[2001:db8::1]",
    "2001:DB8::1",
    "::ffff:10.0.0.1",
    "a-b.c-d.example",
    "123.example",
]

BAD_HOSTS = [
    "",
    "*",
    "*.",
    "*.*.example.com",
    "api.*.com",
    "foo*.example.com",
    "*.10.0.0.1",
    "exa mple.com",
    "example.com.",
    ".example.com",
    "a..b",
    "-bad.example",
    "bad-.example",
    "under_score.example",
    "bücher.example",
    "https://example.com",
    "example.com/path",
    "example.com:0",
    "example.com:65536",
    "example.com:080",
    "example.com:",
    "example.com:http",
    "example.com:+80",
    "1.2.3",
    "1.2.3.4.5",
    "256.1.1.1",
    "01.2.3.4",
    "::1:8000x",
    "[::1",
    "[::1]8000",
    "[example.com]:80",
    "[10.0.0.1]:80",
    "fe80::1%eth0",
    "[::1]:0",
    "a" * 64 + ".example",
    ".".join(["a" * 60] * 5),
]


@pytest.mark.parametrize("host", VALID_HOSTS)
def test_valid_host_patterns(tmp_path: Path, host: str) -> None:
    root = make_project(tmp_path / "p", f"network.allow = [{json.dumps(host)}]\n")
    assert load(root).network.allow == (host.lower(),)


@pytest.mark.parametrize("host", BAD_HOSTS)
def test_bad_host_patterns_name_file_and_key(tmp_path: Path, host: str) -> None:
    root = make_project(tmp_path / "p", f'network.allow = ["ok.org", {json.dumps(host)}]\n')
    error = load_error(root)
    assert error.source == str(root / "pyproject.toml")
    assert error.key == "tool.safe-run.network.allow[1]"


# -- built-in profiles -------------------------------------------------------------------


def test_available_profiles() -> None:
    assert profiles.available_profiles() == [
        "anthropic",
        "base",
        "github",
        "google-ai",
        "llm-apis",
        "network-none",
        "openai",
        "project-write",
        "pypi",
        "python-runtime",
    ]


@pytest.mark.parametrize("name", ["../policies/base", "Base", "", "base.toml", "-x"])
def test_profile_path_rejects_odd_names(name: str) -> None:
    with pytest.raises(PolicyError, match=r"available: .*\bbase\b"):
        profiles.profile_path(name)


@pytest.mark.parametrize("name", ["base", "python-runtime", "project-write", "network-none"])
def test_each_builtin_profile_loads(tmp_path: Path, name: str) -> None:
    policy = load(make_project(tmp_path / "p"), overrides=CliOverrides(profiles=(name,)))
    assert policy.sources[-1] == f"profile:{name}"


def test_builtin_profiles_have_an_explaining_comment() -> None:
    for name in profiles.available_profiles():
        text = Path(profiles.profile_path(name)).read_text(encoding="utf-8")
        assert text.startswith(f"# {name}: "), name


@pytest.mark.parametrize("name", ["base", "python-runtime", "project-write", "network-none"])
def test_builtin_profiles_stay_inside_the_fast_subset(name: str) -> None:
    text = Path(profiles.profile_path(name)).read_text(encoding="utf-8")
    parsed = profiles.parse_builtin(text)
    assert parsed is not None, f"{name}.toml left the subset parse_builtin reads"
    assert parsed == tomllib.loads(text)


SUBSET_SAMPLES = [
    # inside the subset
    'a = "x"\n',
    '# c\n\n[t]\nk = ["a", "b",]\nm = []\n',
    '[t]\nk = [\n  # c\n  "/a b",\n\n  "#not-a-comment",\n]\n',
    'k = "x"\r\n[t]\r\nv = "y"\r\n',
    'k = "ünï"\n',
    # outside it (escapes, other types, odd spacing, comments after values, ...)
    'k = "a\\"b"\n',
    'k = "a\\\\b"\n',
    'k = "\\u0041"\n',
    "k = 1\n",
    "k = true\n",
    "k = 'literal'\n",
    'k="x"\n',
    'k = "x" # c\n',
    'a.b = "x"\n',
    'K = "x"\n',
    '"q" = "x"\n',
    '[a.b]\nk = "x"\n',
    '[[a]]\nk = "x"\n',
    "[t]\n[t]\n",
    'k = "x"\nk = "y"\n',
    't = "x"\n[t]\n',
    'k = { a = "b" }\n',
    'k = ["a" "b"]\n',
    'k = ["a", 1]\n',
    'k = ["a\\\\"]\n',
    'k = [\n"a"\n]\n',
    'k = [\n"a", # c\n]\n',
    'k = [\n"a",\n',
    'k = """x"""\n',
    'k = "x\ty"\n',
    '\tk = "x"\n',
    '# a\x0cb\nk = "x"\n',
    'k = "a\u2028b"\n',
    'k = ""\n',
    'k = "\n',
]


@pytest.mark.parametrize("text", SUBSET_SAMPLES)
def test_parse_builtin_agrees_with_tomllib_or_declines(text: str) -> None:
    parsed = profiles.parse_builtin(text)
    try:
        expected = tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        assert parsed is None
        return
    assert parsed is None or parsed == expected


def test_a_run_without_a_table_does_not_import_tomllib(tmp_path: Path) -> None:
    make_project(tmp_path / "p", None)
    code = textwrap.dedent(
        f"""
        import sys
        from pathlib import Path
        from safe_pip.policy.loader import CliOverrides, load_policy
        load_policy(cwd=Path({str(tmp_path / "p")!r}), project=None,
                    overrides=CliOverrides(profiles=("project-write", "network-none")),
                    variables={{}}, home=Path("/home/x"))
        print(sorted(m for m in ("tomllib", "tomli", "difflib") if m in sys.modules))
        """
    )
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        [sys.executable, "-S", "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == "[]"


SECRET_PATHS = [
    "~/.ssh",
    "~/.aws",
    "~/.gnupg",
    "~/.netrc",
    "~/.pypirc",
    "~/.docker",
    "~/.kube",
    "~/.config/gh",
    "~/.config/gcloud",
    "~/.azure",
    "~/.git-credentials",
    "~/.config/git/credentials",
    # browser profiles
    "~/.mozilla",
    "~/.config/google-chrome",
    "~/.config/chromium",
    "~/.config/BraveSoftware",
    "~/.config/microsoft-edge",
    "~/snap/firefox",
    "~/.var/app/org.mozilla.firefox",
    # shell histories
    "~/.bash_history",
    "~/.zsh_history",
    "~/.local/share/fish/fish_history",
    "~/.python_history",
    # keyrings and password stores
    "~/.local/share/keyrings",
    "~/.local/share/python_keyring",
    "~/.password-store",
]


def test_base_profile_denies_every_named_secret(tmp_path: Path) -> None:
    data = tomllib.loads(Path(profiles.profile_path("base")).read_text(encoding="utf-8"))
    deny = data["filesystem"]["deny"]
    missing = [path for path in SECRET_PATHS if path not in deny]
    assert not missing
    policy = load(make_project(tmp_path / "p"))
    for path in SECRET_PATHS:
        assert f"{HOME}/{path[2:]}" in policy.filesystem.deny


def test_base_profile_reads_system_paths_but_not_resolv_conf(tmp_path: Path) -> None:
    read = load(make_project(tmp_path / "p")).filesystem.read
    for path in ("/usr", "/lib64", "/etc/ssl", "/etc/passwd", "/sys/devices/system/cpu"):
        assert path in read
    assert "/etc/resolv.conf" not in read
    assert "/proc" not in read


# -- rendering ---------------------------------------------------------------------------


def rendered_table(text: str) -> dict[str, object]:
    table = tomllib.loads(text)["tool"]["safe-run"]
    assert isinstance(table, dict)
    return table


def test_render_round_trips_through_the_loader(tmp_path: Path) -> None:
    write(tmp_path / "shared.toml", 'env.set = { FROM_FILE = "yes" }\nfilesystem.read = ["lib"]\n')
    root = make_project(
        tmp_path / "p",
        """
        extends = ["project-write", "../shared.toml"]
        network.allow = ["api.openai.com", "*.githubusercontent.com:443", "[::1]:8000"]
        [tool.safe-run.filesystem]
        read = ["data/", 'quote"and\\\\backslash', "tab\\there", "ünïcode"]
        deny = [".env"]
        [tool.safe-run.env]
        pass = ["LANG", "TERM"]
        set = { PYTHONUNBUFFERED = "1", QUOTED = "a \\"b\\" \\\\ c\\nd" }
        """,
    )
    policy = load(root, overrides=CliOverrides(allow_write=("$TMPDIR",)))
    text = render_toml(policy, layers=[("landlock", "in force (ABI 7)")])
    table = rendered_table(text)
    assert "extends" not in table

    # Pin the rendered policy as the project's own table and load it again.
    (root / "pyproject.toml").write_text(text, encoding="utf-8")
    again = load(root)
    assert again.filesystem.read == policy.filesystem.read
    assert again.filesystem.write == policy.filesystem.write
    assert again.filesystem.deny == policy.filesystem.deny
    assert again.network == policy.network
    assert again.env == policy.env
    assert dict(again.env.set_values)["QUOTED"] == 'a "b" \\ c\nd'


def test_render_network_none_and_empty_lists(tmp_path: Path, no_outer_pyproject: None) -> None:
    policy = load(tmp_path)
    text = render_toml(policy)
    table = rendered_table(text)
    assert table["network"] == "none"
    assert table["filesystem"]["write"] == []  # type: ignore[index]
    assert table["env"] == {"pass": [], "set": {}}
    assert "# sources, merged in this order:\n#   profile:base\n" in text


def test_render_comments_cannot_inject_toml(tmp_path: Path) -> None:
    weird = tmp_path / 'we"ird\nnetwork = "all"'
    make_project(weird)
    policy = load(weird, overrides=CliOverrides(allow_read=("/x/\udcff",)))
    text = render_toml(policy, layers=[("net\nwork", 'x\n[tool.safe-run]\nnetwork = "y"')])
    table = rendered_table(text)
    assert table["network"] == "none"
    assert "/x/" not in str(table["filesystem"])  # unrepresentable path: comment only
    assert "cannot be written in TOML" in text
    text.encode("utf-8")  # printable: no lone surrogates reach the terminal


def test_render_lists_sources_protected_and_layers(tmp_path: Path) -> None:
    root = make_project(tmp_path / "p", 'extends = ["python-runtime"]\n')
    policy = load(root, overrides=CliOverrides(allow_env=("X",)))
    text = render_toml(policy, layers=[("landlock", "in force (ABI 7)"), ("seccomp", "off")])
    header = text.split("\n\n")[0]
    for line in (
        "#   profile:base",
        "#   profile:python-runtime",
        f"#   {root / 'pyproject.toml'}",
        "#   command line",
        f"#   {root / 'pyproject.toml'}",
        f"#   {HOME / '.bashrc'}",
        "# layers:",
        "#   landlock: in force (ABI 7)",
        "#   seccomp: off",
    ):
        assert line in header.splitlines()


# -- JSON schema -------------------------------------------------------------------------


def schema() -> dict[str, object]:
    data = json.loads(SCHEMA_PATH.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def resolve(node: dict[str, object], root: dict[str, object]) -> dict[str, object]:
    ref = node.get("$ref")
    if isinstance(ref, str):
        target: object = root
        for part in ref.removeprefix("#/").split("/"):
            assert isinstance(target, dict)
            target = target[part]
        assert isinstance(target, dict)
        return target
    return node


def object_keys(node: dict[str, object], root: dict[str, object]) -> tuple[str, ...]:
    node = resolve(node, root)
    for branch in node.get("oneOf", []):  # type: ignore[attr-defined]
        branch = resolve(branch, root)
        if branch.get("type") == "object":
            node = branch
    assert node.get("additionalProperties") is False
    properties = node["properties"]
    assert isinstance(properties, dict)
    return tuple(properties)


def test_schema_keys_match_the_loader() -> None:
    root = schema()
    assert root["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert object_keys(root, root) == ACCEPTED_KEYS[""]
    properties = root["properties"]
    assert isinstance(properties, dict)
    for table in ("filesystem", "network", "env"):
        assert object_keys(properties[table], root) == ACCEPTED_KEYS[table]


def test_schema_describes_every_key() -> None:
    root = schema()

    def walk(node: object, where: str) -> None:
        if isinstance(node, dict):
            properties = node.get("properties", {})
            for name, child in properties.items():
                child = resolve(child, root)
                assert "description" in child, f"{where}.{name} has no description"
            for name, child in node.items():
                walk(child, f"{where}.{name}")
        elif isinstance(node, list):
            for index, child in enumerate(node):
                walk(child, f"{where}[{index}]")

    walk(root, "schema")


SCHEMA_EXAMPLES_OK: list[dict[str, object]] = [
    {},
    {"extends": ["python-runtime", "../shared/policy.toml"], "network": "none"},
    {
        "filesystem": {"read": ["data/", "/etc/ssl/certs"], "write": [".", "$TMPDIR"]},
        "network": {"allow": ["api.openai.com", "*.githubusercontent.com:443", "[::1]:8000"]},
        "env": {"pass": ["LANG", "TERM"], "set": {"PYTHONUNBUFFERED": "1"}},
    },
    {"credentials": ["openai", "github"]},
    {
        "credentials": {
            "openai": {"source": "keyring"},
            "internal": {
                "env": "INTERNAL_TOKEN",
                "hosts": ["api.internal.example:8443"],
                "source": "dotenv",
                "file": ".env.local",
                "base-url": "https://api.internal.example:8443/v2",
                "base-url-env": "INTERNAL_BASE_URL",
            },
        }
    },
]

SCHEMA_EXAMPLES_BAD: list[dict[str, object]] = [
    {"filesystem": {"reed": ["x"]}},
    {"network": "all"},
    {"network": {"allow": ["bad host"]}},
    {"env": {"pass": ["1BAD"]}},
    {"env": {"set": {"A": 1}}},
    {"extends": "python-runtime"},
    {"credentials": "openai"},
    {"credentials": {"x": {"env": "K", "hosts": "a.example"}}},
]


def test_schema_examples_agree_with_the_loader(tmp_path: Path) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    root = schema()
    jsonschema.Draft202012Validator.check_schema(root)
    validator = jsonschema.Draft202012Validator(root)
    render_policy = load(make_project(tmp_path / "rendered", 'extends = ["project-write"]\n'))
    examples_ok = [*SCHEMA_EXAMPLES_OK, rendered_table(render_toml(render_policy))]
    (tmp_path / "shared" / "policy.toml").parent.mkdir()
    (tmp_path / "shared" / "policy.toml").write_text("")
    for index, example in enumerate(examples_ok):
        assert list(validator.iter_errors(example)) == [], example
        project = tmp_path / f"ok{index}"
        write(project / "pyproject.toml", _as_pyproject(example))
        load(project)  # the loader accepts it too
    for index, example in enumerate(SCHEMA_EXAMPLES_BAD):
        assert list(validator.iter_errors(example)), example
        project = tmp_path / f"bad{index}"
        write(project / "pyproject.toml", _as_pyproject(example))
        load_error(project)


def _as_pyproject(table: dict[str, object]) -> str:
    """A pyproject holding ``table`` as ``[tool.safe-run]`` (JSON values are TOML too)."""
    lines = ["[tool.safe-run]"]
    lines += [f"{key} = {_inline(value)}" for key, value in table.items()]
    return "\n".join(lines) + "\n"


def _inline(value: object) -> str:
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{json.dumps(k)} = {_inline(v)}" for k, v in value.items()) + " }"
    if isinstance(value, list):
        return "[" + ", ".join(_inline(v) for v in value) + "]"
    return json.dumps(value)


def test_schema_is_where_the_wheel_expects_it() -> None:
    text = (REPO / "pyproject.toml").read_text(encoding="utf-8")
    assert '"schema/safe-run.schema.json"' in text
    assert '"policies" = "safe_pip/policies"' in text
    assert os.path.isfile(SCHEMA_PATH)
