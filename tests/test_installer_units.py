"""The pure parts of the installer: index hosts, sdist identity, the wheel check."""

from __future__ import annotations

import os
import zipfile
from pathlib import Path

import pytest

from safe_pip.errors import SafePipError
from safe_pip.installer.build import check_wheel, sdist_identity
from safe_pip.installer.indexes import allowed_hosts, host_pattern


@pytest.mark.parametrize(
    ("url", "pattern"),
    [
        ("https://pypi.org/simple", "pypi.org:443"),
        ("http://127.0.0.1:8080/simple/", "127.0.0.1:8080"),
        ("https://user:secret@pkgs.example.com/simple/", "pkgs.example.com:443"),
        ("http://[::1]:3141/root/pypi/", "[::1]:3141"),
        ("http://index.example:80/", "index.example:80"),
    ],
)
def test_host_pattern(url: str, pattern: str) -> None:
    assert host_pattern(url) == pattern


@pytest.mark.parametrize("url", ["file:///srv/wheels", "ftp://x/", "https://", "http://h:99999/"])
def test_unusable_index_urls_are_errors(url: str) -> None:
    with pytest.raises(SafePipError):
        host_pattern(url)


def test_pypi_brings_its_file_host() -> None:
    assert allowed_hosts(["https://pypi.org/simple", "http://127.0.0.1:1/s/"]) == [
        "pypi.org:443",
        "files.pythonhosted.org:443",
        "127.0.0.1:1",
    ]


def test_sdist_identity() -> None:
    assert sdist_identity("/x/Foo_Bar-1.0.tar.gz") == ("foo-bar", "1.0")
    assert sdist_identity("zope.interface-6.0.zip") == ("zope-interface", "6.0")
    with pytest.raises(SafePipError):
        sdist_identity("/x/notes.txt")


def write_wheel(path: Path, name: str = "foo-bar", version: str = "1.0") -> None:
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(
            "foo_bar-1.0.dist-info/METADATA",
            f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        )


def test_the_one_own_wheel_is_accepted(tmp_path: Path) -> None:
    write_wheel(tmp_path / "foo_bar-1.0-py3-none-any.whl", name="Foo_Bar", version="1.0.0")
    wheel, problem = check_wheel(str(tmp_path), ("foo-bar", "1.0"))
    assert problem is None and wheel == str(tmp_path / "foo_bar-1.0-py3-none-any.whl")


@pytest.mark.parametrize(("name", "version"), [("requests", "1.0"), ("foo-bar", "2.0")])
def test_metadata_naming_another_project_is_refused(
    tmp_path: Path, name: str, version: str
) -> None:
    write_wheel(tmp_path / "foo_bar-1.0-py3-none-any.whl", name=name, version=version)
    wheel, problem = check_wheel(str(tmp_path), ("foo-bar", "1.0"))
    assert wheel is None and problem is not None and "declares itself" in problem


def test_a_wheel_without_metadata_is_refused(tmp_path: Path) -> None:
    (tmp_path / "foo_bar-1.0-py3-none-any.whl").write_bytes(b"PK")
    wheel, problem = check_wheel(str(tmp_path), ("foo-bar", "1.0"))
    assert wheel is None and problem is not None and "METADATA" in problem


@pytest.mark.parametrize(
    ("files", "fragment"),
    [
        ([], "exactly one wheel"),
        (["foo_bar-1.0-py3-none-any.whl", "extra-1.0-py3-none-any.whl"], "exactly one wheel"),
        (["requests-9.9-py3-none-any.whl"], "for requests 9.9"),
        (["foo_bar-2.0-py3-none-any.whl"], "for foo-bar 2.0"),
        (["foo_bar.whl"], "not a valid wheel file name"),
    ],
)
def test_other_outputs_are_refused(tmp_path: Path, files: list[str], fragment: str) -> None:
    for name in files:
        (tmp_path / name).write_bytes(b"PK")
    wheel, problem = check_wheel(str(tmp_path), ("foo-bar", "1.0"))
    assert wheel is None and problem is not None and fragment in problem


def test_a_planted_symlink_is_refused(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("key")
    staging = tmp_path / "out"
    staging.mkdir()
    os.symlink(secret, staging / "foo_bar-1.0-py3-none-any.whl")
    wheel, problem = check_wheel(str(staging), ("foo-bar", "1.0"))
    assert wheel is None and problem is not None and "not a regular file" in problem


def test_sdists_outside_the_indexes_are_not_fetched(tmp_path: Path) -> None:
    """The lock comes out of a sandbox where build code ran: its URLs are suspect."""
    from safe_pip.installer.lock import LockedPackage, fetch_sdist

    for url in ("http://169.254.169.254/latest/x-1.0.tar.gz", "file:///etc/x-1.0.tar.gz"):
        package = LockedPackage("x", "1.0", (), url, "0" * 64)
        with pytest.raises(SafePipError, match="outside the indexes"):
            fetch_sdist(package, str(tmp_path), ["http://127.0.0.1:1/simple/"])
    assert list(tmp_path.iterdir()) == []


# -- uv's TLS settings and safe-pip's own hosts ------------------------------------------


def test_uv_toml_tls_settings_become_variables(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """uv runs with UV_NO_CONFIG, so system-certs (or native-tls) in the user's uv.toml
    must arrive as UV_SYSTEM_CERTS; a project's own file may choose trust roots but
    never turn verification off for a host."""
    from safe_pip.installer.indexes import uv_trust_environment

    config = tmp_path / "config"
    (config / "uv").mkdir(parents=True)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(config))
    project = tmp_path / "project"
    project.mkdir()
    assert uv_trust_environment(str(project), {}) == {}
    (config / "uv" / "uv.toml").write_text(
        'native-tls = true\nallow-insecure-host = ["mirror.corp"]\n'
    )
    assert uv_trust_environment(str(project), {}) == {
        "UV_SYSTEM_CERTS": "true",
        "UV_INSECURE_HOST": "mirror.corp",
    }
    assert uv_trust_environment(str(project), {"UV_NATIVE_TLS": "1", "UV_INSECURE_HOST": "x"}) == {}
    (config / "uv" / "uv.toml").unlink()
    (project / "uv.toml").write_text(
        'system-certs = true\nallow-insecure-host = ["evil.example"]\n'
    )
    assert uv_trust_environment(str(project), {}) == {"UV_SYSTEM_CERTS": "true"}


def test_allow_hosts_from_the_users_config_and_the_approved_project(tmp_path: Path) -> None:
    from safe_pip.errors import PolicyError
    from safe_pip.installer.settings import project_hosts, user_hosts
    from safe_pip.policy.trust import ApprovalStore

    home = tmp_path / "home"
    (home / ".config" / "safe-pip").mkdir(parents=True)
    env = {"HOME": str(home)}
    assert user_hosts(env, str(home)) == []
    (home / ".config" / "safe-pip" / "config.toml").write_text(
        'allow-hosts = ["Artifacts.corp.example", "10.20.0.5:8443"]\n'
    )
    assert user_hosts(env, str(home)) == ["artifacts.corp.example", "10.20.0.5:8443"]
    (home / ".config" / "safe-pip" / "config.toml").write_text('allow-hosts = ["bad host"]\n')
    with pytest.raises(PolicyError, match="allow-hosts"):
        user_hosts(env, str(home))

    project = tmp_path / "project"
    project.mkdir()
    (project / "pyproject.toml").write_text(
        '[tool.safe-pip]\nallow-hosts = ["downloads.example.org"]\n'
    )
    hosts, approval = project_hosts(str(project), str(home), env)
    assert hosts == ["downloads.example.org"]
    assert approval is not None and approval.state == "new"
    ApprovalStore(str(home), env).approve(approval)
    assert project_hosts(str(project), str(home), env)[1].approved  # type: ignore[union-attr]
    (project / "pyproject.toml").write_text('[tool.safe-pip]\nallow-hosts = ["evil.example"]\n')
    assert project_hosts(str(project), str(home), env)[1].state == "changed"  # type: ignore[union-attr]


def test_a_signal_during_an_uninterrupted_step_is_raised_after_it() -> None:
    """SIGTERM in the middle of a step that must not be cut in half (putting a venv
    back, deleting a snapshot): the step finishes, then KeyboardInterrupt comes."""
    import signal

    from safe_pip.interrupts import install_handlers, uninterrupted

    previous = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    install_handlers()
    steps: list[str] = []

    def step() -> None:
        steps.append("begun")
        os.kill(os.getpid(), signal.SIGTERM)
        for _ in range(1000):  # the eval loop checks for signals here
            pass
        steps.append("done")

    try:
        with pytest.raises(KeyboardInterrupt):
            uninterrupted(step)
        assert steps == ["begun", "done"]
        with pytest.raises(KeyboardInterrupt):  # outside a step: at once
            os.kill(os.getpid(), signal.SIGTERM)
            for _ in range(1000):
                pass
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
