"""The built-in network profiles (``openai``, ``pypi``, ...): pure and fast, no sandbox.

These profiles are plain allow lists, but a mistake in one is quiet: a host that the
loader rejects breaks every project that extends the profile, a profile that leaves
the fast TOML subset slows every run down, and an ``llm-apis`` that drifts from the
vendor profiles it summarises allows something nobody reviewed.  Each of those has a
test here.  Like tests/test_policy.py, nothing depends on the developer's own home.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from sandbox_harness import SAFE_RUN

from safe_pip.errors import PolicyError
from safe_pip.policy import profiles
from safe_pip.policy.loader import CliOverrides, load_policy
from safe_pip.policy.model import Policy

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

HOME = Path("/home/alice")
VARIABLES = {"TMPDIR": "/tmp/safe-run-xyz/tmp"}

#: The profiles that hold only a network allow list.
NETWORK_PROFILES = ("anthropic", "github", "google-ai", "llm-apis", "openai", "pypi")
#: What ``llm-apis`` must equal: the union of these, in this order.
LLM_VENDORS = ("openai", "anthropic", "google-ai")


def profile_text(name: str) -> str:
    return Path(profiles.profile_path(name)).read_text(encoding="utf-8")


def allow_list(name: str) -> list[str]:
    """The profile's ``network.allow`` as tomllib reads it (the reference parser)."""
    network = tomllib.loads(profile_text(name))["network"]
    assert isinstance(network, dict)
    allow = network["allow"]
    assert isinstance(allow, list) and all(isinstance(item, str) for item in allow)
    return allow


def make_project(directory: Path, table: str = "") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "pyproject.toml").write_text(
        f'[project]\nname = "demo"\nversion = "1"\n\n[tool.safe-run]\n{table}', encoding="utf-8"
    )
    return directory


def load(cwd: Path, overrides: CliOverrides | None = None) -> Policy:
    return load_policy(
        cwd=cwd,
        project=None,
        overrides=overrides or CliOverrides(),
        variables=VARIABLES,
        home=HOME,
    )


def test_every_network_profile_is_installed() -> None:
    assert set(NETWORK_PROFILES) <= set(profiles.available_profiles())


@pytest.mark.parametrize("name", NETWORK_PROFILES)
def test_parse_builtin_reads_it_exactly_as_tomllib(name: str) -> None:
    text = profile_text(name)
    parsed = profiles.parse_builtin(text)
    assert parsed is not None, f"{name}.toml left the subset parse_builtin reads"
    assert parsed == tomllib.loads(text)


@pytest.mark.parametrize("name", NETWORK_PROFILES)
def test_holds_only_a_network_allow_list(name: str) -> None:
    data = tomllib.loads(profile_text(name))
    assert list(data) == ["network"], "a network profile grants nothing but hosts"
    assert list(data["network"]) == ["allow"]
    allow = allow_list(name)
    assert allow, "an empty allow list would mean no network at all"
    assert len(set(allow)) == len(allow), "duplicate entries"


@pytest.mark.parametrize("name", NETWORK_PROFILES)
def test_starts_with_an_explaining_comment(name: str) -> None:
    assert profile_text(name).startswith(f"# {name}: ")


@pytest.mark.parametrize(
    ("name", "pattern"),
    [(name, pattern) for name in NETWORK_PROFILES for pattern in allow_list(name)],
)
def test_each_pattern_passes_the_loaders_validation(
    tmp_path: Path, name: str, pattern: str
) -> None:
    # One pattern at a time through --allow-host, so a bad one is named by the failure.
    policy = load(make_project(tmp_path / "p"), CliOverrides(allow_host=(pattern,)))
    assert policy.network.allow == (pattern,), "patterns are stored lower case already"
    host, _, port = pattern.rpartition(":")
    assert port == "443", "an allowed host is host and port: name the port"
    assert not host.startswith("*.") or host.count(".") >= 2, "wildcard over a whole TLD"


@pytest.mark.parametrize("name", NETWORK_PROFILES)
def test_loads_through_extends(tmp_path: Path, name: str) -> None:
    policy = load(make_project(tmp_path / "p", f'extends = ["python-runtime", "{name}"]\n'))
    assert policy.network.mode == "allowlist"
    assert policy.network.allow == tuple(allow_list(name))
    assert f"profile:{name}" in policy.sources


@pytest.mark.parametrize("name", NETWORK_PROFILES)
def test_loads_through_the_profile_flag(tmp_path: Path, name: str) -> None:
    policy = load(make_project(tmp_path / "p"), CliOverrides(profiles=(name,)))
    assert policy.network.allow == tuple(allow_list(name))
    assert policy.sources[-1] == f"profile:{name}"


def test_profiles_combine_and_repeat_once(tmp_path: Path) -> None:
    root = make_project(tmp_path / "p", 'extends = ["openai", "llm-apis", "pypi"]\n')
    expected = dict.fromkeys(allow_list("llm-apis") + allow_list("pypi"))
    assert load(root).network.allow == tuple(expected)


def test_network_none_after_a_network_profile_clears_it(tmp_path: Path) -> None:
    root = make_project(tmp_path / "p", 'extends = ["github"]\n')
    policy = load(root, CliOverrides(profiles=("network-none",)))
    assert policy.network.mode == "none"
    assert policy.network.allow == ()


def test_no_network_flag_clears_a_network_profile(tmp_path: Path) -> None:
    root = make_project(tmp_path / "p", 'extends = ["llm-apis"]\n')
    assert load(root, CliOverrides(no_network=True)).network.mode == "none"


def test_llm_apis_is_exactly_the_vendor_profiles() -> None:
    vendors = [pattern for name in LLM_VENDORS for pattern in allow_list(name)]
    assert allow_list("llm-apis") == vendors


def test_no_profile_allows_a_storage_wildcard() -> None:
    """Wildcards over domains where anyone can publish would be an exfiltration path."""
    too_wide = ("*.googleapis.com", "*.amazonaws.com", "*.azure.com", "*.github.io")
    for name in NETWORK_PROFILES:
        for pattern in allow_list(name):
            host = pattern.rpartition(":")[0]
            assert not any(host.endswith(wide[1:]) and host[0] == "*" for wide in too_wide), (
                name,
                pattern,
            )


def test_a_typo_in_a_profile_name_lists_the_network_profiles(tmp_path: Path) -> None:
    root = make_project(tmp_path / "p", 'extends = ["open-ai"]\n')
    with pytest.raises(PolicyError) as info:
        load(root)
    for name in NETWORK_PROFILES:
        assert name in info.value.message


@pytest.mark.skipif(not SAFE_RUN.exists(), reason="safe-run is not installed next to python")
def test_explain_shows_the_profile_hosts(tmp_path: Path) -> None:
    """End to end through the real CLI: --profile with a network profile, explained."""
    root = make_project(tmp_path / "p")
    (root / "x.py").write_text("pass\n", encoding="utf-8")
    venv = ("--venv", sys.prefix) if sys.prefix != sys.base_prefix else ()
    out = subprocess.run(
        [str(SAFE_RUN), *venv, "--profile", "llm-apis", "--explain", "x.py"],
        cwd=root,
        env={"PATH": "/usr/bin:/bin", "HOME": str(tmp_path / "home"), "LANG": "C.UTF-8"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    for pattern in allow_list("llm-apis"):
        assert f'"{pattern}"' in out.stdout
    assert "profile:llm-apis" in out.stdout
