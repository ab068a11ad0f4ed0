"""``safe-pip install`` end to end: a real local index, real uv, real sandboxes.

The attack halves that must work *without* the sandbox live in test_pkg_index.py
(plain ``uv pip install`` of the same malicious sdists); here the same attacks go
through ``safe-pip install`` and must fail while the install itself succeeds.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from net_servers import TcpSink, wait_until
from pkg_index import (
    ATTACK_READ_HOME,
    ATTACK_VENV_ACTIVATE,
    BENIGN_SDIST,
    BENIGN_SDIST_SCRIPT,
    BENIGN_WHEEL,
    BENIGN_WHEEL_SCRIPT,
    LocalIndex,
    malicious_sdist,
    render_attack,
)
from sandbox_harness import World, make_world

SAFE_PIP = Path(sys.executable).parent / "safe-pip"
pytestmark = [
    pytest.mark.sandbox,
    pytest.mark.skipif(not SAFE_PIP.exists(), reason="safe-pip is not installed next to python"),
]


@pytest.fixture
def world(tmp_path: Path) -> World:
    return make_world(tmp_path)


SYSTEM_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"


def safe_pip(
    world: World, mode: str, *args: str, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    env = world.env(mode)
    env.pop("VIRTUAL_ENV", None)
    # The machine's trust store, as a user here has it (a gateway CA may be in it).
    cert = os.environ.get("SSL_CERT_FILE") or (
        SYSTEM_BUNDLE if os.path.isfile(SYSTEM_BUNDLE) else ""
    )
    if cert:
        env["SSL_CERT_FILE"] = cert
    return subprocess.run(
        [str(SAFE_PIP), "install", "--json", "--python", sys.executable, *args],
        cwd=world.project,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def outcome(result: subprocess.CompletedProcess[str]) -> dict[str, object]:
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    assert lines, result.stdout + result.stderr
    parsed = json.loads(lines[-1])
    assert isinstance(parsed, dict)
    return parsed


def test_wheel_and_sdist_install_and_run(world: World, mode: str, index: LocalIndex) -> None:
    venv = world.root / "venv"
    result = safe_pip(world, mode, "--venv", str(venv), "-i", index.url, BENIGN_WHEEL, BENIGN_SDIST)
    assert result.returncode == 0, result.stdout + result.stderr
    report = outcome(result)
    assert report["created_venv"] is True
    assert report["built"] == [f"{BENIGN_SDIST}==0.1.0"]
    for script in (BENIGN_WHEEL_SCRIPT, BENIGN_SDIST_SCRIPT):
        ran = subprocess.run([str(venv / "bin" / script)], capture_output=True, text=True)
        assert ran.returncode == 0 and "hello from" in ran.stdout, ran.stderr


def test_requirement_files_and_the_default_venv(world: World, index: LocalIndex) -> None:
    requirements = world.project / "requirements.txt"
    requirements.write_text(f"{BENIGN_WHEEL}\n")
    result = safe_pip(world, "namespace", "-i", index.url, "-r", str(requirements))
    assert result.returncode == 0, result.stdout + result.stderr
    assert (world.project / ".venv" / "bin" / BENIGN_WHEEL_SCRIPT).exists()


def test_no_build_refuses_sdists_and_names_them(world: World, mode: str, index: LocalIndex) -> None:
    venv = world.root / "venv"
    result = safe_pip(world, mode, "--venv", str(venv), "-i", index.url, "--no-build", BENIGN_SDIST)
    assert result.returncode != 0
    assert BENIGN_SDIST in result.stderr + result.stdout
    assert "Traceback" not in result.stderr
    assert not venv.exists(), "a venv this command created must be removed after a failure"


def test_a_build_cannot_read_home_secrets_or_rewrite_the_venv(
    world: World, mode: str, index: LocalIndex
) -> None:
    """One malicious sdist tries both; plainly both work (test_pkg_index.py), here the
    install succeeds and neither does."""
    venv = world.root / "venv"
    first = safe_pip(world, mode, "--venv", str(venv), "-i", index.url, BENIGN_WHEEL)
    assert first.returncode == 0, first.stderr
    activate = venv / "bin" / "activate"
    before = activate.read_bytes()
    marker = "owned-" + secrets.token_hex(4)
    with TcpSink() as sink:
        code = render_attack(
            ATTACK_READ_HOME, port=sink.port, home=str(world.home), home_file=".ssh/id_rsa"
        ) + render_attack(ATTACK_VENV_ACTIVATE, venv=str(venv), marker=marker)
        name = f"evil-{secrets.token_hex(3)}"
        malicious_sdist(index.directory, name, code)
        result = safe_pip(world, mode, "--venv", str(venv), "-i", index.url, name)
        assert result.returncode == 0, result.stdout + result.stderr
        assert f"{name}==0.1.0" in outcome(result)["installed"]  # type: ignore[operator]
        assert not wait_until(sink.seen, 0.5), "the HOME secret left the build"
    assert activate.read_bytes() == before
    assert world.secret not in result.stdout + result.stderr


def test_real_pypi_smoke(world: World) -> None:
    """One small pure-Python package from the real index (reachable on CI machines)."""
    try:
        address = socket.getaddrinfo("pypi.org", 443, type=socket.SOCK_STREAM)[0][4][0]
    except OSError:
        if os.environ.get("CI"):
            raise
        pytest.skip("pypi.org does not resolve here")
    venv = world.root / "venv"
    # Behind some gateways pypi.org resolves to a non-public address, which the proxy
    # refuses unless that address is allowed explicitly (docs/network.md).
    allow = ("--allow-host", f"[{address}]:443" if ":" in address else f"{address}:443")
    result = safe_pip(world, "namespace", "--venv", str(venv), *allow, "six")
    assert result.returncode == 0, result.stdout + result.stderr
    ran = subprocess.run([str(venv / "bin" / "python"), "-c", "import six"], check=False)
    assert ran.returncode == 0


class _RedirectingIndex(LocalIndex):
    """An index whose sdist links answer safe-pip's own (trusted, unsandboxed) fetch --
    urllib's user agent -- with a 302 to ``target``; uv in the sandbox gets the file."""

    def __init__(self, directory: Path, target: str) -> None:
        super().__init__(directory)
        self.target = target

    def redirect(self, path: str, headers: object) -> str | None:
        agent = str(getattr(headers, "get", lambda *_: "")("User-Agent", ""))
        if path.startswith("/files/") and path.endswith(".tar.gz") and "urllib" in agent:
            return self.target
        return None


def test_the_trusted_sdist_fetch_follows_no_redirect_out(
    world: World, mode: str, index_dir: Path
) -> None:
    """A malicious index sends safe-pip's own sdist download (made outside any
    sandbox) to an internal service, standing in for the cloud metadata endpoint."""
    import urllib.request

    with TcpSink(idle_timeout=0.5) as canary:
        target = f"http://127.0.0.1:{canary.port}/latest/meta-data/iam/security-credentials/"
        with _RedirectingIndex(index_dir, target) as index:
            prefix = BENIGN_SDIST.replace("-", "_") + "-"
            sdist = next(p.name for p in index_dir.iterdir() if p.name.startswith(prefix))
            # Control: a plain urllib fetch of that link follows the redirect inside.
            try:
                urllib.request.urlopen(f"http://{index.authority}/files/{sdist}", timeout=10)
            except OSError:
                pass  # the canary answers nothing useful; being reached is the point
            assert wait_until(lambda: canary.seen(), 5), "the control never reached the canary"
            canary.reset()
            venv = world.root / "venv"
            result = safe_pip(world, mode, "--venv", str(venv), "-i", index.url, BENIGN_SDIST)
            assert result.returncode != 0, result.stdout + result.stderr
            assert "redirected (302)" in result.stderr and target in result.stderr, result.stderr
            assert "Traceback" not in result.stderr
        assert not canary.seen()


def test_from_a_subdirectory_the_projects_venv_is_used(
    world: World, mode: str, index: LocalIndex
) -> None:
    """uv's rule: the nearest .venv above, else the project root's; never sub/.venv."""
    sub = world.project / "src" / "pkg"
    sub.mkdir(parents=True)
    env = world.env(mode)
    env.pop("VIRTUAL_ENV", None)

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(SAFE_PIP), *args], cwd=sub, env=env, capture_output=True, text=True,
            timeout=180, check=False,
        )  # fmt: skip

    first = run("install", "--python", sys.executable, "-i", index.url, BENIGN_WHEEL)
    assert first.returncode == 0, first.stdout + first.stderr
    assert (world.project / ".venv" / "pyvenv.cfg").is_file(), "made at the project root"
    assert not (sub / ".venv").exists()
    listed = run("list")
    assert listed.returncode == 0, listed.stderr
    assert BENIGN_WHEEL in listed.stdout
    # safe-run from the same place runs the same venv's console script.
    ran = subprocess.run(
        [str(SAFE_PIP.with_name("safe-run")), BENIGN_WHEEL_SCRIPT], cwd=sub, env=env,
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stdout + ran.stderr
