"""The install-test fixtures are real: uv installs from the local index, attacks work.

No sandbox here.  These are the "the attack works without the sandbox" halves of the
install tests: plain ``uv pip install`` from :class:`pkg_index.LocalIndex`, with a fake
home full of secrets, must install the benign packages (wheel and sdist, the latter
built with build isolation from the index's own setuptools) and must let each
malicious ``setup.py`` succeed at its attack.  If one of these fails, a sandboxed
install test that "blocks" the same attack proves nothing.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from net_servers import TcpSink, UdpSink, wait_until
from pkg_index import (
    ATTACK_BASHRC,
    ATTACK_DAEMON,
    ATTACK_ENV,
    ATTACK_PROC_ENVIRON,
    ATTACK_READ_HOME,
    ATTACK_TCP,
    ATTACK_UDP,
    ATTACK_USER_SITE_PTH,
    ATTACK_UV_CACHE,
    ATTACK_VENV_ACTIVATE,
    ATTACK_WRITE_OUTSIDE,
    ATTACKS,
    BACKEND_PACKAGES,
    BENIGN_SDIST,
    BENIGN_SDIST_SCRIPT,
    BENIGN_WHEEL,
    BENIGN_WHEEL_SCRIPT,
    LocalIndex,
    attack_placeholders,
    malicious_sdist,
    project_of,
    render_attack,
    uv_binary,
    uv_env,
    wait_for_file,
)
from sandbox_harness import World, make_world

# --- fixtures --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One venv for the module; each test installs a package of its own into it."""
    root = tmp_path_factory.mktemp("venv")
    path = root / "venv"
    env = uv_env(root, root / "cache")
    done = subprocess.run(
        [uv_binary(), "venv", "--python", sys.executable, str(path)],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return path


@pytest.fixture
def world(tmp_path: Path) -> World:
    return make_world(tmp_path)


def install(
    world: World, index: LocalIndex, venv: Path, *packages: str
) -> subprocess.CompletedProcess[str]:
    """Plain ``uv pip install`` from the local index: fake HOME, the secret in the
    environment, a fresh cache (so every sdist really builds)."""
    env = uv_env(world.home, world.root / "uv-cache", SECRET_TOKEN=world.secret)
    python = str(venv / "bin" / "python")
    return subprocess.run(
        [uv_binary(), "pip", "install", "--python", python, "--index-url", index.url, *packages],
        env=env,
        cwd=world.project,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def evil(index: LocalIndex, tag: str, template: str, **values: object) -> str:
    """Put a malicious sdist with a unique name on the index; its requirement name."""
    name = f"evil-{tag}-{secrets.token_hex(3)}"
    malicious_sdist(index.directory, name, render_attack(template, **values))
    return name


# --- the index itself ------------------------------------------------------------------


def test_index_serves_pep503_pages_with_correct_hashes(index: LocalIndex) -> None:
    with urllib.request.urlopen(index.url, timeout=10) as response:
        root = response.read().decode()
    for project in (BENIGN_WHEEL, BENIGN_SDIST, "setuptools"):
        assert f'href="/simple/{project}/"' in root
    base = index.url.removesuffix("/simple/")
    with urllib.request.urlopen(f"{index.url}Benign_Wheel", timeout=10) as response:
        page = response.read().decode()
    href, digest = re.findall(r'href="(/files/[^"#]+)#sha256=([0-9a-f]{64})"', page)[0]
    with urllib.request.urlopen(base + href, timeout=10) as response:
        assert hashlib.sha256(response.read()).hexdigest() == digest
    assert index.requests[-1].path == href


def test_every_attack_template_renders_to_a_valid_setup_py(tmp_path: Path) -> None:
    for name, template in ATTACKS.items():
        values = {
            key: "9" if key in ("port", "delay") else f"/x/{key}"
            for key in attack_placeholders(template) - {"host"}
        }
        # malicious_sdist compiles the setup.py it writes.
        malicious_sdist(tmp_path, f"t-{name}", render_attack(template, **values))
    with pytest.raises(KeyError):
        render_attack(ATTACK_ENV)
    with pytest.raises(ValueError):
        render_attack(ATTACK_BASHRC, home='/a"b', marker="m")


def test_backends_on_the_index(index_dir: Path) -> None:
    projects = {project_of(path.name) for path in index_dir.iterdir()}
    assert set(BACKEND_PACKAGES) <= projects


# --- benign installs -------------------------------------------------------------------


def test_benign_wheel_installs_and_its_script_runs(
    world: World, index: LocalIndex, venv: Path
) -> None:
    done = install(world, index, venv, BENIGN_WHEEL)
    assert done.returncode == 0, done.stderr
    hello = subprocess.run(
        [str(venv / "bin" / BENIGN_WHEEL_SCRIPT)], capture_output=True, text=True, check=True
    )
    assert hello.stdout == f"hello from {BENIGN_WHEEL}\n"


def test_benign_sdist_builds_with_the_index_setuptools(
    world: World, index: LocalIndex, venv: Path
) -> None:
    index.reset()
    done = install(world, index, venv, BENIGN_SDIST)
    assert done.returncode == 0, done.stderr
    assert f"Built {BENIGN_SDIST}" in done.stderr
    # Build isolation took setuptools from this index (there is no other).
    assert any(name.startswith("setuptools-") for name in index.downloaded())
    hello = subprocess.run(
        [str(venv / "bin" / BENIGN_SDIST_SCRIPT)], capture_output=True, text=True, check=True
    )
    assert hello.stdout == f"hello from {BENIGN_SDIST}\n"


# --- attacks succeed without a sandbox -------------------------------------------------


def test_home_secret_read_and_sent_over_tcp(world: World, index: LocalIndex, venv: Path) -> None:
    with TcpSink() as sink:
        name = evil(
            index,
            "home",
            ATTACK_READ_HOME,
            port=sink.port,
            home=world.home,
            home_file=".ssh/id_rsa",
        )
        done = install(world, index, venv, name)
        assert done.returncode == 0, done.stderr
        assert wait_until(lambda: world.secret.encode() in sink.received, 5)
    assert sink.received.startswith(b"HOME:")


def test_env_secret_sent_over_tcp(world: World, index: LocalIndex, venv: Path) -> None:
    with TcpSink() as sink:
        done = install(world, index, venv, evil(index, "env", ATTACK_ENV, port=sink.port))
        assert done.returncode == 0, done.stderr
        assert wait_until(lambda: b"ENV:" + world.secret.encode() in sink.received, 5)


def test_proc_environ_of_ancestors_read(world: World, index: LocalIndex, venv: Path) -> None:
    with TcpSink() as sink:
        name = evil(index, "proc", ATTACK_PROC_ENVIRON, port=sink.port)
        done = install(world, index, venv, name)
        assert done.returncode == 0, done.stderr
        assert wait_until(lambda: b"SECRET_TOKEN=" + world.secret.encode() in sink.received, 5)


def test_udp_datagram_sent(world: World, index: LocalIndex, venv: Path) -> None:
    marker = secrets.token_hex(8)
    with UdpSink() as sink:
        name = evil(index, "udp", ATTACK_UDP, port=sink.port, marker=marker)
        done = install(world, index, venv, name)
        assert done.returncode == 0, done.stderr
        expected = f"UDP:{marker}:{world.secret}".encode()
        assert wait_until(lambda: expected in sink.datagrams, 5)


def test_bashrc_appended(world: World, index: LocalIndex, venv: Path) -> None:
    marker = "persist-" + secrets.token_hex(8)
    done = install(
        world, index, venv, evil(index, "bashrc", ATTACK_BASHRC, home=world.home, marker=marker)
    )
    assert done.returncode == 0, done.stderr
    assert f"# {marker}" in (world.home / ".bashrc").read_text()


def test_venv_activate_rewritten(world: World, index: LocalIndex, venv: Path) -> None:
    marker = "activate-" + secrets.token_hex(8)
    name = evil(index, "activate", ATTACK_VENV_ACTIVATE, venv=venv, marker=marker)
    done = install(world, index, venv, name)
    assert done.returncode == 0, done.stderr
    assert f"# {marker}" in (venv / "bin" / "activate").read_text()


def test_other_attacks_in_one_install(world: World, index: LocalIndex, venv: Path) -> None:
    """The remaining attack constants work too; built in one (parallel) install."""
    marker = "misc-" + secrets.token_hex(8)
    cache = world.root / "uv-cache"
    outside = world.root / "outside.txt"
    daemon = world.root / "daemon"
    with TcpSink() as sink:
        names = [
            evil(index, "tcp", ATTACK_TCP, port=sink.port, marker=marker),
            evil(index, "pth", ATTACK_USER_SITE_PTH, home=world.home, marker=marker),
            evil(index, "daemon", ATTACK_DAEMON, evidence=daemon, delay=1),
            evil(index, "cache", ATTACK_UV_CACHE, cache_dir=cache, marker=marker),
            evil(index, "outside", ATTACK_WRITE_OUTSIDE, path=outside, marker=marker),
        ]
        done = install(world, index, venv, *names)
        assert done.returncode == 0, done.stderr
        assert wait_until(lambda: f"TCP:{marker}".encode() in sink.received, 5)
    pth = list(world.home.glob(".local/lib/python*/site-packages/safe_pip_evil.pth"))
    assert pth, "no .pth in the user site-packages"
    assert marker in pth[0].read_text()
    assert (cache / f"safe-pip-poison-{marker}").exists()
    assert outside.read_text() == f"{marker}\n"
    # The daemon outlived the build (and uv did not wait for it).
    assert daemon.with_name("daemon.started").exists()
    assert wait_for_file(daemon, 10), "the daemon did not outlive the install"
