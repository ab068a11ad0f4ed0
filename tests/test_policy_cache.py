"""The policy cache (safe_pip/policy/cache.py): parsed ``[tool.safe-run]`` tables.

A hit must give exactly the Policy that parsing gives; anything doubtful (an edit, a
corrupt or foreign file, wrong owner or permissions) must be a silent miss that parses
and rewrites the entry.  The last section runs real sandboxes: the cache directory is
out of reach even for a policy that grants ``write = ["~"]``.
"""

from __future__ import annotations

import hashlib
import marshal
import os
import shutil
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
from sandbox_harness import SAFE_RUN, World, make_world

from safe_pip.errors import PolicyError
from safe_pip.policy import cache as policy_cache
from safe_pip.policy import loader
from safe_pip.policy.cache import MISS, PolicyCache
from safe_pip.policy.loader import CliOverrides, load_policy
from safe_pip.policy.model import Policy

TABLE = """\
extends = ["python-runtime"]
network.allow = ["api.example.com:443", "*.example.org"]
[tool.safe-run.filesystem]
read = ["data", "~/shared", "ünïcode"]
write = ["out"]
deny = [".env"]
[tool.safe-run.env]
pass = ["LANG"]
set = { GREETING = "hello \\"world\\"", N = "1" }
"""


def write_project(directory: Path, table: str | None = TABLE) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    text = '[project]\nname = "demo"\nversion = "1"\n'
    if table is not None:
        text += "\n[tool.safe-run]\n" + textwrap.dedent(table)
    (directory / "pyproject.toml").write_text(text, encoding="utf-8")
    return directory


@pytest.fixture
def home(tmp_path: Path) -> Path:
    path = tmp_path / "home"
    path.mkdir()
    return path


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return write_project(tmp_path / "project")


@pytest.fixture
def parses(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Counts TOML parses: every call of the loader's ``_parse_toml``, by path."""
    calls: list[str] = []
    real = loader._parse_toml

    def counting(data: bytes, path: str) -> dict[str, object]:
        calls.append(path)
        return real(data, path)

    monkeypatch.setattr(loader, "_parse_toml", counting)
    return calls


def load(project: Path, home: Path, **variables: str) -> Policy:
    return load_policy(
        cwd=project, project=None, overrides=CliOverrides(), variables=variables, home=home
    )


def entries_dir(home: Path) -> Path:
    return home / ".cache" / "safe-pip" / "policy"


def entry_file(home: Path, project: Path) -> Path:
    """The entry of ``project``'s pyproject (name: BLAKE2b-128 of its absolute path)."""
    name = hashlib.blake2b(os.fsencode(project / "pyproject.toml"), digest_size=16).hexdigest()
    return entries_dir(home) / name


def payload_entry(payload: object) -> bytes:
    """A well-formed entry file (right header and digest) around any marshal payload."""
    data = marshal.dumps(payload)
    return policy_cache._HEADER + hashlib.blake2b(data, digest_size=32).digest() + data


# -- hits and misses ----------------------------------------------------------------------


def test_second_load_is_a_hit(project: Path, home: Path, parses: list[str]) -> None:
    first = load(project, home)
    assert parses == [str(project / "pyproject.toml")]
    entry = entry_file(home, project)
    assert entry.is_file()
    assert entry.stat().st_mode & 0o777 == 0o600
    for directory in (home / ".cache", home / ".cache" / "safe-pip", entries_dir(home)):
        assert directory.stat().st_mode & 0o777 == 0o700, directory
    assert [p.name for p in entries_dir(home).iterdir()] == [entry.name]  # no temp files

    second = load(project, home)
    assert parses == [str(project / "pyproject.toml")]  # not parsed again
    assert second == first


def test_cached_policy_is_identical_to_parsing(project: Path, home: Path) -> None:
    parsed = load(project, home, SAFE_PIP_NO_CACHE="1")
    assert not entry_file(home, project).exists()
    missed = load(project, home)  # parses, writes the entry
    hit = load(project, home)
    assert parsed == missed == hit
    raw = loader._pyproject_table(str(project / "pyproject.toml"))  # no cache at all
    cache = PolicyCache(str(home), {})
    data = (project / "pyproject.toml").read_bytes()
    assert cache.lookup(str(project / "pyproject.toml"), data) == raw
    assert hit.sources == (
        "profile:base",
        "profile:python-runtime",
        str(project / "pyproject.toml"),
    )
    assert hit.env.set_values == (("GREETING", 'hello "world"'), ("N", "1"))


def test_the_no_table_answer_is_cached_too(tmp_path: Path, home: Path, parses: list[str]) -> None:
    """A pyproject that mentions safe-run without having the table: parsed once."""
    project = write_project(tmp_path / "p", None)
    with (project / "pyproject.toml").open("a", encoding="utf-8") as handle:
        handle.write('[project.optional-dependencies]\nx = ["safe-run-helper"]\n')
    assert load(project, home).pyproject is None
    assert load(project, home).pyproject is None
    assert len(parses) == 1


def test_edit_of_the_same_size_is_seen(project: Path, home: Path, parses: list[str]) -> None:
    pyproject = project / "pyproject.toml"
    assert str(project / "out") in load(project, home).filesystem.write
    before = pyproject.stat()
    pyproject.write_text(pyproject.read_text().replace('"out"', '"new"'), encoding="utf-8")
    # Even with the old mtime put back (ctime still moves: user space cannot set it).
    os.utime(pyproject, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = pyproject.stat()
    assert after.st_size == before.st_size and after.st_mtime_ns == before.st_mtime_ns
    policy = load(project, home)
    assert str(project / "new") in policy.filesystem.write
    assert str(project / "out") not in policy.filesystem.write
    assert len(parses) == 2
    load(project, home)
    assert len(parses) == 2  # the rewritten entry hits


def test_content_is_checked_even_when_stat_matches(
    project: Path, home: Path, parses: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stat fields are a fast filter; the digest of the bytes decides (coarse timestamps,
    a write racing the read, a clock set back: none can serve a stale table)."""
    monkeypatch.setattr(policy_cache, "_stat_key", lambda path: (1, 2, 3, 4, 5))
    load(project, home)
    pyproject = project / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().replace('"out"', '"new"'), encoding="utf-8")
    assert str(project / "new") in load(project, home).filesystem.write
    assert len(parses) == 2


def test_touch_without_edit_reparses(project: Path, home: Path, parses: list[str]) -> None:
    first = load(project, home)
    os.utime(project / "pyproject.toml")
    assert load(project, home) == first
    assert len(parses) == 2


def test_a_different_interpreter_misses(
    project: Path, home: Path, parses: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    load(project, home)
    monkeypatch.setattr(policy_cache, "_HEADER", policy_cache._HEADER.replace(b"marshal", b"m"))
    load(project, home)
    assert len(parses) == 2
    assert f"{sys.hexversion:x}".encode() in entry_file(home, project).read_bytes()


def test_opt_out_neither_reads_nor_writes(project: Path, home: Path, parses: list[str]) -> None:
    load(project, home, SAFE_PIP_NO_CACHE="1")
    assert not entry_file(home, project).exists()
    assert entries_dir(home).is_dir()  # created anyway: see test_cache_is_denied_...
    load(project, home)
    assert entry_file(home, project).exists()
    load(project, home, SAFE_PIP_NO_CACHE="true")
    assert len(parses) == 3


def test_xdg_cache_home(tmp_path: Path, project: Path, home: Path) -> None:
    xdg = tmp_path / "xdg"
    load(project, home, XDG_CACHE_HOME=str(xdg))
    assert (xdg / "safe-pip" / "policy").is_dir()
    assert not (home / ".cache").exists()
    load(project, home, XDG_CACHE_HOME="relative/cache")  # ignored, as the spec says
    assert entry_file(home, project).exists()


def test_no_home_no_cache(tmp_path: Path, project: Path, parses: list[str]) -> None:
    missing = tmp_path / "no-such-home"
    load(project, missing)
    load(project, missing)
    assert len(parses) == 2
    assert not missing.exists()


def test_errors_are_not_cached(tmp_path: Path, home: Path, parses: list[str]) -> None:
    for number, table in enumerate(["filesystem.read = [1979-05-27]\n", 'x = "y"\n']):
        project = write_project(tmp_path / f"p{number}", table)
        for _ in range(2):
            with pytest.raises(PolicyError):
                load(project, home)
    broken = write_project(tmp_path / "broken", "read = [\n")
    with pytest.raises(PolicyError, match="not valid TOML"):
        load(broken, home)
    not_a_table = tmp_path / "nat"
    not_a_table.mkdir()
    (not_a_table / "pyproject.toml").write_text('tool.safe-run = "yes"\n', encoding="utf-8")
    for _ in range(2):
        with pytest.raises(PolicyError, match="must be a table"):
            load(not_a_table, home)
    # The dated table is never stored (marshal cannot hold it); the others fail
    # validation the same way from the cache.
    assert not entry_file(home, tmp_path / "p0").exists()
    assert not entry_file(home, tmp_path / "broken").exists()
    assert not entry_file(home, not_a_table).exists()
    assert len(parses) == 2 + 1 + 1 + 2


# -- damaged, foreign and unsafe entries -------------------------------------------------


#: Ways to damage an entry: each gets the good entry and (path, stat key, content digest).
Damage = Callable[[bytes, str, object, bytes], bytes]
CORRUPTIONS: dict[str, Damage] = {
    "empty": lambda good, path, key, content: b"",
    "truncated": lambda good, path, key, content: good[:-7],
    "garbage": lambda good, path, key, content: os.urandom(len(good)),
    "flipped payload byte": lambda good, path, key, content: (
        good[:-3] + bytes([good[-3] ^ 1]) + good[-2:]
    ),
    "foreign header": lambda good, path, key, content: b"x" + good[1:],
    "not a tuple": lambda good, path, key, content: payload_entry([path, key, content, {}]),
    "short tuple": lambda good, path, key, content: payload_entry((path, key, content)),
    "other path": lambda good, path, key, content: payload_entry((path + "x", key, content, {})),
    "tuple in table": lambda good, path, key, content: payload_entry(
        (path, key, content, {"extends": ()})
    ),
    "bytes in table": lambda good, path, key, content: payload_entry(
        (path, key, content, {"x": b""})
    ),
    "set in table": lambda good, path, key, content: payload_entry(
        (path, key, content, {"x": frozenset()})
    ),
    "int keys": lambda good, path, key, content: payload_entry((path, key, content, {1: "x"})),
    "code object": lambda good, path, key, content: payload_entry(
        (path, key, content, compile("1", "", "eval"))
    ),
    "list value": lambda good, path, key, content: payload_entry((path, key, content, [])),
}


@pytest.mark.parametrize("kind", sorted(CORRUPTIONS))
def test_a_damaged_entry_falls_back_and_is_rewritten(
    project: Path, home: Path, parses: list[str], kind: str
) -> None:
    expected = load(project, home)
    entry = entry_file(home, project)
    path = str(project / "pyproject.toml")
    content = hashlib.blake2b((project / "pyproject.toml").read_bytes(), digest_size=32).digest()
    bad = CORRUPTIONS[kind](entry.read_bytes(), path, policy_cache._stat_key(path), content)
    entry.write_bytes(bad)
    assert load(project, home) == expected
    assert len(parses) == 2
    assert entry.read_bytes() != bad
    load(project, home)  # the entry was rewritten: a hit
    assert len(parses) == 2


def test_a_crafted_entry_with_valid_checks_is_still_validated(project: Path, home: Path) -> None:
    """The cache only replaces parsing: what it returns goes through validation."""
    path = str(project / "pyproject.toml")
    data = (project / "pyproject.toml").read_bytes()
    content = hashlib.blake2b(data, digest_size=32).digest()
    load(project, home)
    bad = {"filesystem": {"reed": ["/"]}}
    entry_file(home, project).write_bytes(
        payload_entry((path, policy_cache._stat_key(path), content, bad))
    )
    with pytest.raises(PolicyError, match="unknown key"):
        load(project, home)


@pytest.mark.parametrize("mode", [0o620, 0o602, 0o666])
def test_a_writable_entry_is_ignored(
    project: Path, home: Path, parses: list[str], mode: int
) -> None:
    load(project, home)
    entry = entry_file(home, project)
    entry.chmod(mode)
    load(project, home)
    assert len(parses) == 2
    assert entry.stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize("level", ["root", "policy"])
def test_a_writable_directory_is_not_trusted_and_repaired(
    project: Path, home: Path, parses: list[str], level: str
) -> None:
    """What Landlock (before ABI 8) cannot stop in fallback mode: chmod from the sandbox."""
    load(project, home)
    directory = entries_dir(home) if level == "policy" else entries_dir(home).parent
    directory.chmod(0o777)
    load(project, home)
    assert len(parses) == 2
    assert directory.stat().st_mode & 0o777 == 0o700
    load(project, home)
    assert len(parses) == 2


def test_a_symlinked_entry_is_ignored(
    tmp_path: Path, project: Path, home: Path, parses: list[str]
) -> None:
    load(project, home)
    entry = entry_file(home, project)
    elsewhere = tmp_path / "elsewhere"
    entry.rename(elsewhere)
    entry.symlink_to(elsewhere)
    load(project, home)
    assert len(parses) == 2
    assert not entry.is_symlink()


def test_a_symlinked_entry_directory_is_not_used(
    tmp_path: Path, project: Path, home: Path, parses: list[str]
) -> None:
    load(project, home)
    real = tmp_path / "real-policy"
    entries_dir(home).rename(real)
    entries_dir(home).symlink_to(real)
    load(project, home)
    load(project, home)
    assert len(parses) == 3
    assert sorted(real.iterdir()) == [real / entry_file(home, project).name]


def test_entries_of_another_user_are_ignored(
    project: Path, home: Path, parses: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Seen from another euid, our directories are foreign: no read, no write."""
    load(project, home)
    good = entry_file(home, project).read_bytes()
    monkeypatch.setattr(os, "geteuid", lambda: os.getuid() + 4242)
    load(project, home)
    load(project, home)
    assert len(parses) == 3
    assert entry_file(home, project).read_bytes() == good


needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="chown needs root")


@needs_root
def test_an_entry_owned_by_someone_else_is_ignored(
    project: Path, home: Path, parses: list[str]
) -> None:
    load(project, home)
    entry = entry_file(home, project)
    os.chown(entry, 4242, 4242)
    load(project, home)
    assert len(parses) == 2
    assert entry.stat().st_uid == 0  # replaced by our own


@needs_root
def test_no_directories_in_someone_elses_home(project: Path, home: Path, parses: list[str]) -> None:
    """``sudo`` keeping the user's HOME must not leave root-owned directories there."""
    os.chown(home, 4242, 4242)
    load(project, home)
    load(project, home)
    assert len(parses) == 2
    assert not (home / ".cache").exists()


def test_lookup_and_store_never_raise(tmp_path: Path, home: Path) -> None:
    cache = PolicyCache(str(home), {})
    missing = str(tmp_path / "gone" / "pyproject.toml")
    assert cache.lookup(missing, b"") is MISS
    cache.store(missing, b"", {"x": "y"})  # the stat fails: nothing stored, no error
    assert list(entries_dir(home).iterdir()) == []
    cache.store(missing, b"", {"when": object()})  # not TOML data: not stored


# -- the sandbox cannot reach the cache ---------------------------------------------------


def test_cache_is_denied_and_protected_in_the_policy(
    tmp_path: Path, project: Path, home: Path
) -> None:
    root = home / ".cache" / "safe-pip"
    for variables in ({}, {"SAFE_PIP_NO_CACHE": "1"}):
        fs = load(project, home, **variables).filesystem
        assert str(root / "policy") in fs.deny
        assert str(root) in fs.protected
    # With XDG_CACHE_HOME elsewhere both roots stay out of reach: a later run without
    # it would trust entries planted under ~/.cache.
    xdg = tmp_path / "xdg"
    fs = load(project, home, XDG_CACHE_HOME=str(xdg)).filesystem
    assert str(xdg / "safe-pip" / "policy") in fs.deny and str(root / "policy") in fs.deny
    assert str(xdg / "safe-pip") in fs.protected and str(root) in fs.protected


ATTACK = """\
import os, sys
home, entry = sys.argv[1], sys.argv[2]
cache = home + "/.cache"
policy = cache + "/safe-pip/policy"

def attempt(name, action):
    try:
        action()
    except OSError as error:
        print(name, "blocked", error.errno)
    else:
        print(name, "done")

def plant(directory=policy):
    with open(directory + "/" + entry, "wb") as handle:
        handle.write(b"planted")

def make_and_plant():
    os.makedirs(policy, exist_ok=True)
    plant()

def move_root():
    os.rename(cache + "/safe-pip", cache + "/safe-pip-moved")
    os.makedirs(policy)
    plant()

def move_cache():
    os.rename(cache, home + "/.cache-moved")
    os.makedirs(policy)
    plant()

attempt("read", lambda: open(policy + "/" + entry, "rb").read())
attempt("overwrite", plant)
attempt("create", lambda: open(policy + "/new", "w").close())
attempt("mkdir-plant", make_and_plant)
attempt("move-root", move_root)
attempt("move-cache", move_cache)
print("DONE")
"""
ATTACKS = ("read", "overwrite", "create", "mkdir-plant", "move-root", "move-cache")
WRITE_HOME = '[tool.safe-run.filesystem]\nwrite = ["~"]\n'


@pytest.mark.sandbox
@pytest.mark.skipif(not SAFE_RUN.exists(), reason="safe-run is not installed next to python")
def test_sandbox_cannot_reach_the_cache_even_with_write_home(tmp_path: Path, mode: str) -> None:
    # Plainly every attack works (so the test can see one)...
    plain = make_world(tmp_path / "plain", WRITE_HOME)
    load(plain.project, plain.home)
    name = entry_file(plain.home, plain.project).name
    out = plain.run_plain(plain.write_script(ATTACK), str(plain.home), name)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[: len(ATTACKS)] == [f"{a} done" for a in ATTACKS]

    # ...and under safe-run none does.  No run has happened in this world yet: the
    # sandboxed run itself must create the cache directory before the sandbox exists.
    world: World = make_world(tmp_path / "sandboxed", WRITE_HOME)
    shutil.rmtree(world.home / ".cache")  # made when make_world approved the policy
    assert not (world.home / ".cache").exists()
    script = world.write_script(ATTACK)
    name = entry_file(world.home, world.project).name
    out = world.run_safe(mode, str(script), str(world.home), name)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.split("\n")
    assert lines[len(ATTACKS)] == "DONE", out.stdout
    for attack, line in zip(ATTACKS, lines, strict=False):
        assert line.startswith(f"{attack} blocked"), out.stdout

    entries = entries_dir(world.home)
    assert sorted(p.name for p in (world.home / ".cache").iterdir()) == ["safe-pip"]
    assert sorted(p.name for p in entries.iterdir()) == [name]
    assert b"planted" not in (entries / name).read_bytes()
    assert not (world.home / ".cache-moved").exists()
    # The run that follows gets the policy that parsing gives.
    parsed = load(world.project, world.home, SAFE_PIP_NO_CACHE="1")
    assert load(world.project, world.home) == parsed
    assert str(world.home) in parsed.filesystem.write
