"""Carving grants into Landlock rules: the rule list itself, then the real kernel.

Kernel tests run every attack twice in a forked child: without the sandbox (it must
work, or the test could not see it fail) and confined by the rules ``landlock_rules``
produced (it must fail).  A fake HOME under tmp_path stands in for the user's.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable
from pathlib import Path

import pytest
from landlock_harness import outcome

from safe_pip.sandbox.fs_rules import FsGrants, fs_rules_summary, landlock_rules
from safe_pip.sandbox.landlock import (
    FILE_ONLY,
    READ,
    AccessFs,
    Ruleset,
    abi_version,
    fs_access_for_abi,
)

ABI = abi_version()
RULES_ABI = 7  # pure rule tests use a fixed ABI so they mean the same on every kernel
ALL = fs_access_for_abi(RULES_ABI)
needs_landlock = pytest.mark.skipif(ABI < 1, reason="Landlock is unavailable on this kernel")


def fs_grants(**kinds: tuple[Path, ...]) -> FsGrants:
    """FsGrants from test paths: the record holds plain strings."""
    return FsGrants(**{kind: tuple(map(str, paths)) for kind, paths in kinds.items()})


def sandbox(grants: FsGrants, *, carve_protected: bool = True) -> Ruleset:
    """A ruleset holding exactly the rules ``landlock_rules`` computes for ``grants``."""
    ruleset = Ruleset()
    for path, access in landlock_rules(grants, ABI, carve_protected=carve_protected):
        assert ruleset.add_path(path, access), path
    return ruleset


def read_file(path: Path) -> Callable[[], None]:
    def action() -> None:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.read(fd, 4096)
        finally:
            os.close(fd)

    return action


def write_file(path: Path) -> Callable[[], None]:
    """Create or append: both a tamper and a create attempt."""

    def action() -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o700)
        try:
            os.write(fd, b"\n# attacker was here\n")
        finally:
            os.close(fd)

    return action


def list_dir(path: Path) -> Callable[[], object]:
    return lambda: os.listdir(path)


def rules_dict(grants: FsGrants, *, carve_protected: bool = True) -> dict[str, AccessFs]:
    return dict(landlock_rules(grants, RULES_ABI, carve_protected=carve_protected))


# --------------------------------------------------------------------------- fixtures


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A fake HOME: ~/.ssh/id_rsa (secret), ~/.bashrc, ~/src/app.py, ~/work (scratch)."""
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "id_rsa").write_text(secrets.token_hex(16))
    (home / ".ssh" / "config").write_text("Host *\n")
    (home / ".bashrc").write_text("export PS1=x\n")
    (home / "src").mkdir()
    (home / "src" / "app.py").write_text("print('hi')\n")
    (home / "work").mkdir()
    return home


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A project with a policy file, git hooks and source: the protected-path case."""
    proj = tmp_path / "proj"
    (proj / ".git" / "hooks").mkdir(parents=True)
    (proj / ".git" / "config").write_text("[core]\n")
    (proj / "src").mkdir()
    (proj / "src" / "mod.py").write_text("x = 1\n")
    (proj / "pyproject.toml").write_text("[tool.safe-run]\n")
    return proj


# --------------------------------------------------------------------------- rule lists


def test_plain_grants_become_plain_rules(home: Path) -> None:
    rules = rules_dict(fs_grants(read=(home / "src",), write=(home / "work",)))
    assert rules == {str(home / "src"): READ, str(home / "work"): ALL}


def test_write_wins_over_read_on_the_same_path(home: Path) -> None:
    assert rules_dict(fs_grants(read=(home,), write=(home,))) == {str(home): ALL}


def test_missing_paths_are_skipped(home: Path) -> None:
    grants = fs_grants(read=(home / "nope", home / "src"), deny=(home / "src" / "absent",))
    assert rules_dict(grants) == {str(home / "src"): READ}


def test_relative_paths_are_refused() -> None:
    with pytest.raises(ValueError, match="absolute"):
        landlock_rules(FsGrants(read=("relative",)), RULES_ABI, carve_protected=True)


def test_deny_outside_every_grant_needs_no_rule(home: Path, tmp_path: Path) -> None:
    rules = rules_dict(fs_grants(read=(home / "src",), deny=(home / ".ssh",)))
    assert rules == {str(home / "src"): READ}


def test_deny_carves_the_grant(home: Path) -> None:
    rules = rules_dict(fs_grants(read=(home,), deny=(home / ".ssh",)))
    assert rules[str(home)] == AccessFs.READ_DIR
    assert rules[str(home / ".bashrc")] == AccessFs.EXECUTE | AccessFs.READ_FILE
    assert rules[str(home / "src")] == READ
    assert not any(Path(path).is_relative_to(home / ".ssh") for path in rules)


def test_deny_wins_over_a_grant_inside_it(home: Path) -> None:
    grants = fs_grants(
        read=(home / ".ssh" / "config",), write=(home / ".ssh",), deny=(home / ".ssh",)
    )
    assert rules_dict(grants) == {}


def test_nested_grants_are_both_carved(tmp_path: Path) -> None:
    a = tmp_path / "a"
    (a / "b" / "c").mkdir(parents=True)
    (a / "b" / "d").mkdir()
    (a / "e").mkdir()
    rules = rules_dict(fs_grants(read=(a,), write=(a / "b",), deny=(a / "b" / "c",)))
    assert rules[str(a)] == rules[str(a / "b")] == AccessFs.READ_DIR
    assert rules[str(a / "b" / "d")] == ALL
    assert rules[str(a / "e")] == READ
    assert str(a / "b" / "c") not in rules


def test_symlinks_met_while_carving_are_not_granted(home: Path) -> None:
    (home / "rootlink").symlink_to("/")
    rules = rules_dict(fs_grants(read=(home,), deny=(home / ".ssh",)))
    assert "/" not in rules
    assert str(home / "rootlink") not in rules


def test_only_directories_leading_to_an_exclusion_are_scanned(home: Path) -> None:
    big = home / "big"
    big.mkdir()
    for index in range(50):
        (big / f"f{index}").touch()
    rules = rules_dict(fs_grants(read=(home,), deny=(home / ".ssh",)))
    assert rules[str(big)] == READ
    assert not any(os.path.dirname(path) == str(big) for path in rules)


def test_protected_paths_keep_read_under_a_write_grant(project: Path) -> None:
    grants = fs_grants(
        write=(project,), protected=(project / "pyproject.toml", project / ".git" / "hooks")
    )
    rules = rules_dict(grants)
    file_read = AccessFs.EXECUTE | AccessFs.READ_FILE
    assert rules[str(project)] == READ
    assert rules[str(project / ".git")] == READ
    assert rules[str(project / ".git" / "hooks")] == READ
    assert rules[str(project / "pyproject.toml")] == file_read
    assert rules[str(project / ".git" / "config")] == ALL & FILE_ONLY
    assert rules[str(project / "src")] == ALL


def test_protected_paths_are_left_alone_without_carve_protected(project: Path) -> None:
    grants = fs_grants(write=(project,), protected=(project / "pyproject.toml",))
    assert rules_dict(grants, carve_protected=False) == {str(project): ALL}


def test_a_missing_protected_path_still_blocks_its_creation(project: Path) -> None:
    (project / ".git" / "hooks").rmdir()
    rules = rules_dict(fs_grants(write=(project,), protected=(project / ".git" / "hooks",)))
    assert rules[str(project / ".git")] == READ  # no MAKE_DIR where hooks/ would appear
    assert rules[str(project / ".git" / "config")] & AccessFs.WRITE_FILE


def test_device_grants_get_file_rights_only() -> None:
    rules = dict(
        landlock_rules(fs_grants(devices_rw=(Path("/dev/null"),)), 7, carve_protected=True)
    )
    assert rules == {"/dev/null": AccessFs.READ_FILE | AccessFs.WRITE_FILE | AccessFs.IOCTL_DEV}
    old = dict(landlock_rules(fs_grants(devices_rw=(Path("/dev/null"),)), 3, carve_protected=True))
    assert old == {"/dev/null": AccessFs.READ_FILE | AccessFs.WRITE_FILE}


def test_rights_follow_the_abi(home: Path) -> None:
    rules = dict(landlock_rules(fs_grants(write=(home,)), 1, carve_protected=True))
    assert rules == {str(home): fs_access_for_abi(1)}
    assert not rules[str(home)] & AccessFs.REFER


def test_summary_names_kind_path_and_rights(home: Path) -> None:
    lines = fs_rules_summary(
        landlock_rules(fs_grants(read=(home,), deny=(home / ".ssh",)), 7, carve_protected=True)
    )
    assert f"list  {home}  [read_dir]" in lines
    assert f"read  {home / 'src'}  [execute,read_file,read_dir]" in lines


# --------------------------------------------------------------------------- kernel


@needs_landlock
def test_secret_under_a_read_home_stays_unreadable(home: Path) -> None:
    secret = home / ".ssh" / "id_rsa"
    assert outcome(read_file(secret)) == "ok"
    with sandbox(fs_grants(read=(home,), deny=(home / ".ssh",))) as ruleset:
        assert outcome(read_file(secret), ruleset) == "EACCES"
        assert outcome(read_file(home / ".ssh" / "config"), ruleset) == "EACCES"
        assert outcome(read_file(home / ".bashrc"), ruleset) == "ok"
        assert outcome(read_file(home / "src" / "app.py"), ruleset) == "ok"
        assert outcome(list_dir(home), ruleset) == "ok"


@needs_landlock
def test_symlink_made_in_a_writable_dir_does_not_reach_the_secret(home: Path) -> None:
    work, secret = home / "work", home / ".ssh" / "id_rsa"

    def attack() -> None:
        link = work / f"link-{os.getpid()}"
        os.symlink(secret, link)  # allowed: MAKE_SYM in the writable dir
        read_file(link)()

    assert outcome(attack) == "ok"
    with sandbox(fs_grants(read=(home,), write=(work,), deny=(home / ".ssh",))) as ruleset:
        assert outcome(attack, ruleset) == "EACCES"


@needs_landlock
def test_hardlink_to_the_secret_cannot_be_made(home: Path) -> None:
    work, secret = home / "work", home / ".ssh" / "id_rsa"
    stolen = work / "stolen"

    def attack() -> None:
        os.link(secret, stolen)

    assert outcome(attack) == "ok"
    stolen.unlink()
    with sandbox(fs_grants(read=(home,), write=(work,), deny=(home / ".ssh",))) as ruleset:
        assert outcome(attack, ruleset) in {"EACCES", "EXDEV"}
    assert not stolen.exists()


@needs_landlock
def test_symlink_to_outside_found_while_carving_grants_nothing(home: Path, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("s")
    (home / "outlink").symlink_to(outside)
    steal = read_file(home / "outlink" / "secret.txt")
    assert outcome(steal) == "ok"
    with sandbox(fs_grants(read=(home,), deny=(home / ".ssh",))) as ruleset:
        assert outcome(steal, ruleset) == "EACCES"


@needs_landlock
def test_deny_given_as_a_symlink_protects_its_target(home: Path, tmp_path: Path) -> None:
    vault = tmp_path / "vault"
    vault.mkdir()
    (vault / "credentials").write_text("aws")
    (home / ".aws").symlink_to(vault)
    steal = read_file(vault / "credentials")
    assert outcome(steal) == "ok"
    with sandbox(fs_grants(read=(tmp_path,), deny=(home / ".aws",))) as ruleset:
        assert outcome(steal, ruleset) == "EACCES"
        assert outcome(read_file(home / ".aws" / "credentials"), ruleset) == "EACCES"
        assert outcome(read_file(home / ".bashrc"), ruleset) == "ok"


@needs_landlock
def test_deny_under_nested_read_and_write_grants(tmp_path: Path) -> None:
    a = tmp_path / "a"
    (a / "b" / "c").mkdir(parents=True)
    (a / "b" / "d").mkdir()
    (a / "e").mkdir()
    (a / "b" / "c" / "secret").write_text("s")
    (a / "e" / "notes").write_text("n")
    steal = read_file(a / "b" / "c" / "secret")
    assert outcome(steal) == "ok"
    with sandbox(fs_grants(read=(a,), write=(a / "b",), deny=(a / "b" / "c",))) as ruleset:
        assert outcome(steal, ruleset) == "EACCES"
        assert outcome(write_file(a / "b" / "c" / "planted"), ruleset) == "EACCES"
        assert outcome(write_file(a / "b" / "d" / "new"), ruleset) == "ok"
        assert outcome(read_file(a / "e" / "notes"), ruleset) == "ok"
        assert outcome(write_file(a / "e" / "notes"), ruleset) == "EACCES"


@needs_landlock
def test_protected_files_resist_tampering_under_a_write_grant(project: Path) -> None:
    policy, hook = project / "pyproject.toml", project / ".git" / "hooks" / "pre-commit"
    tamper, plant = write_file(policy), write_file(hook)
    assert outcome(tamper) == outcome(plant) == "ok"  # the attacks work unconfined
    hook.unlink()
    before = policy.read_text()
    grants = fs_grants(write=(project,), protected=(policy, project / ".git" / "hooks"))
    with sandbox(grants, carve_protected=True) as ruleset:
        assert outcome(tamper, ruleset) == "EACCES"
        assert outcome(plant, ruleset) == "EACCES"
        assert outcome(read_file(policy), ruleset) == "ok"
        assert outcome(write_file(project / "src" / "mod.py"), ruleset) == "ok"
        assert outcome(write_file(project / "src" / "new.py"), ruleset) == "ok"
    assert policy.read_text() == before
    assert not hook.exists()
