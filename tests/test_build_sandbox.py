"""Phase 2 of ``safe-pip install``: one sdist built into a wheel in its own sandbox.

``python -m safe_pip.installer.build SDIST OUT --index-url URL`` runs ``uv build
--wheel`` inside the build sandbox and hands back exactly one checked wheel.  It runs
as a subprocess here (its supervisor changes process-global state), in both sandbox
modes, against the real local index of :mod:`pkg_index`.

What is shown, each with a half that proves the evidence channel works without the
sandbox (plain ``uv build`` of the very same sdist, in this file, so a broken fixture
cannot make a sandboxed test pass vacuously):

- a benign sdist builds into a real wheel (its console script works once installed);
- every :data:`pkg_index.ATTACKS` attack fails inside the build while the build itself
  succeeds; one sdist carries them all, each leaving distinguishable evidence, plus
  two open channels that make the blocked result mean something: the build's stderr
  (uv forwards the backend's output, so a secret that was read would show up there)
  and the index itself (a daemon that keeps requesting pages from the allowed index
  shows whether it outlived the build);
- a build that hands back a wheel of *another* project is refused and leaves nothing;
- the network is the index given and nothing else: an index without the build
  backend fails the build cleanly (the caller's index settings do not help it), and
  an in-tree backend that needs no downloads cannot reach the real index's port when
  another index was given.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from net_servers import TcpSink, UdpSink, wait_until
from pkg_index import (
    ATTACKS,
    BENIGN_SDIST,
    BENIGN_SDIST_SCRIPT,
    BENIGN_WHEEL,
    FIXTURE_VERSION,
    HEARTBEAT_DAEMON,
    LocalIndex,
    benign_sdist,
    combine_attacks,
    malicious_sdist,
    normalize,
    project_of,
    render_attack,
    render_every_attack,
    uv_binary,
    uv_env,
    wait_for_file,
    write_sdist,
)
from sandbox_harness import World, make_world

pytestmark = pytest.mark.sandbox

#: The project a rogue build tries to hand back a wheel for (it is on the index).
OTHER_PROJECT = BENIGN_WHEEL
OTHER_VERSION = "9.9"
OTHER_DIST = OTHER_PROJECT.replace("-", "_")
#: How long the attack daemons wait before leaving their evidence, in seconds.
DAEMON_DELAY = 1
#: How long the heartbeat daemon keeps requesting index pages, in seconds.
HEARTBEAT_LIFETIME = 6.0


# --- fixtures --------------------------------------------------------------------------


@pytest.fixture
def world(tmp_path: Path) -> World:
    world = make_world(tmp_path)
    # The caller's own uv caches exist, so that a write into them would succeed.
    (world.root / "uv-cache").mkdir()
    (world.home / ".cache" / "uv").mkdir(parents=True)
    return world


# --- running builds --------------------------------------------------------------------


@dataclass
class Build:
    """One build (sandboxed or plain): exit code, output, the wheel and the problem."""

    returncode: int
    stdout: str
    stderr: str
    wheel: str | None
    problem: str | None
    finished: float  # time.monotonic() when the builder had exited

    def explain(self) -> str:
        return f"exit {self.returncode}\nstdout: {self.stdout}\nstderr:\n{self.stderr[-6000:]}"


def user_cache(world: World) -> Path:
    """The caller's ``$UV_CACHE_DIR``: a cache that unsandboxed installs read."""
    return world.root / "uv-cache"


def build_in_sandbox(
    world: World,
    mode: str,
    sdist: Path,
    out: Path,
    index_url: str,
    *flags: str,
    env_extra: dict[str, str] | None = None,
    timeout: float = 120,
) -> Build:
    """``python -m safe_pip.installer.build`` as the user of ``world`` would run it:
    their HOME, their uv cache and secrets in the environment."""
    env = world.env(mode, UV_CACHE_DIR=str(user_cache(world)), **(env_extra or {}))
    argv = [sys.executable, "-m", "safe_pip.installer.build", str(sdist), str(out)]
    argv += ["--index-url", index_url, "--python", sys.executable, "--json", *flags]
    done = subprocess.run(
        argv,
        cwd=world.project,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    finished = time.monotonic()
    try:
        payload = json.loads(done.stdout)
    except ValueError:
        pytest.fail(f"the builder printed no JSON:\n{done.stdout}\n{done.stderr}")
    assert isinstance(payload, dict), done.stdout
    assert set(payload) == {"wheel", "problem"}, done.stdout
    return Build(
        done.returncode, done.stdout, done.stderr, payload["wheel"], payload["problem"], finished
    )


def build_plainly(world: World, sdist: Path, out: Path, index_url: str) -> Build:
    """The same build with plain ``uv build`` and no sandbox: the attack half."""
    env = uv_env(
        world.home,
        user_cache(world),
        SECRET_TOKEN=world.secret,
        AWS_SECRET_ACCESS_KEY=world.secret,
    )
    argv = [uv_binary(), "build", "--wheel", str(sdist), "--out-dir", str(out)]
    argv += ["--python", sys.executable, "--default-index", index_url]
    done = subprocess.run(
        argv, cwd=world.project, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    finished = time.monotonic()
    wheels = sorted(str(path) for path in out.glob("*.whl"))
    return Build(
        done.returncode, done.stdout, done.stderr, wheels[0] if wheels else None, None, finished
    )


def make_venv(path: Path) -> Path:
    """A plain venv made by uv (no package code runs); its directory."""
    done = subprocess.run(
        [uv_binary(), "venv", "--python", sys.executable, str(path)],
        env=uv_env(path.parent, path.parent / "venv-cache"),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return path


def unique(tag: str) -> str:
    return f"{tag}-{secrets.token_hex(4)}"


# --- the benign build ------------------------------------------------------------------


def test_benign_sdist_builds_a_real_wheel(
    world: World, mode: str, index: LocalIndex, index_dir: Path, tmp_path: Path
) -> None:
    sdist = index_dir / f"{BENIGN_SDIST.replace('-', '_')}-{FIXTURE_VERSION}.tar.gz"
    assert sdist.is_file()
    out = tmp_path / "out"
    index.reset()
    build = build_in_sandbox(world, mode, sdist, out, index.url)
    assert build.returncode == 0, build.explain()
    assert build.problem is None
    expected = out / f"{BENIGN_SDIST.replace('-', '_')}-{FIXTURE_VERSION}-py3-none-any.whl"
    assert build.wheel == str(expected)
    assert sorted(os.listdir(out)) == [expected.name]
    # The backend came from the index, through the sandbox's network.
    assert "/simple/setuptools/" in index.paths()
    # The caller's uv cache was not the build's cache.
    assert list(user_cache(world).iterdir()) == []

    venv = make_venv(tmp_path / "venv")
    python = str(venv / "bin" / "python")
    install = subprocess.run(
        [
            uv_binary(),
            "pip",
            "install",
            "--python",
            python,
            "--no-deps",
            "--no-index",
            str(expected),
        ],
        env=uv_env(tmp_path, tmp_path / "install-cache"),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert install.returncode == 0, install.stderr
    hello = subprocess.run(
        [str(venv / "bin" / BENIGN_SDIST_SCRIPT)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert hello.returncode == 0, hello.stderr
    assert hello.stdout == f"hello from {BENIGN_SDIST}\n"


# --- every attack in one sdist ---------------------------------------------------------

#: Not an attack of its own: prints every secret it can read to stderr, which uv
#: forwards, so a secret read that the network block would otherwise hide shows up.
SHOW_SECRETS = """\
import os, sys
found = []
for base in dict.fromkeys(["{home}", os.path.expanduser("~")]):
    for name in (".ssh/id_rsa", ".aws/credentials"):
        try:
            with open(os.path.join(base, name)) as secret_file:
                found.append(secret_file.read())
        except OSError as exc:
            found.append(repr(exc))
print("SHOW-HOME:", repr(found), file=sys.stderr)
names = ("SECRET_TOKEN", "AWS_SECRET_ACCESS_KEY")
print("SHOW-ENV:", repr([os.environ.get(name) for name in names]), file=sys.stderr)
found = []
pid = os.getppid()
while pid > 1:
    try:
        with open(f"/proc/{{pid}}/environ", "rb") as environ:
            found.extend(e for e in environ.read().split(b"\\0") if b"SECRET" in e)
        with open(f"/proc/{{pid}}/stat", "rb") as stat_file:
            pid = int(stat_file.read().rsplit(b")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError) as exc:
        found.append(repr(exc).encode())
        break
print("SHOW-PROC:", repr(found), file=sys.stderr)
"""


@dataclass
class Scenario:
    """A world wired for the combined attack sdist, and the evidence it can leave."""

    world: World
    index: LocalIndex
    tcp: TcpSink
    udp: UdpSink
    marker: str
    venv: Path
    outside: Path
    daemon: Path
    sdist: Path

    @property
    def keys(self) -> list[str]:
        return [*ATTACKS, "show_secrets", "heartbeat"]

    def heartbeats(self) -> int:
        return sum(f"/heartbeat-{self.marker}-" in path for path in self.index.paths())

    def pth_files(self) -> list[Path]:
        return list(self.world.home.glob(".local/lib/python*/site-packages/*.pth"))

    def caches_poisoned(self) -> list[Path]:
        caches = (user_cache(self.world), self.world.home / ".cache" / "uv")
        return [cache for cache in caches if any(cache.glob("safe-pip-poison-*"))]


@pytest.fixture
def scenario(world: World, index: LocalIndex, tmp_path: Path) -> Iterator[Scenario]:
    marker = unique("evil")
    venv = make_venv(world.root / "victim-venv")
    outside = world.root / "outside.txt"
    daemon = world.root / "daemon"
    with TcpSink() as tcp, UdpSink() as udp:
        attacks = render_every_attack(
            tcp_port=tcp.port,
            udp_port=udp.port,
            home=world.home,
            marker=marker,
            daemon_evidence=daemon,
            daemon_delay=DAEMON_DELAY,
            uv_cache=user_cache(world),
            venv=venv,
            outside=outside,
        )
        attacks["show_secrets"] = render_attack(SHOW_SECRETS, home=world.home)
        attacks["heartbeat"] = render_attack(
            HEARTBEAT_DAEMON, url=index.url, marker=marker, lifetime=HEARTBEAT_LIFETIME
        )
        sdist = malicious_sdist(tmp_path / "sdists", f"evil-all-{marker}", combine_attacks(attacks))
        yield Scenario(world, index, tcp, udp, marker, venv, outside, daemon, sdist)


def test_attacks_work_in_a_plain_uv_build(scenario: Scenario, tmp_path: Path) -> None:
    """The attack half: the combined sdist, built by plain uv, leaves every evidence."""
    s, world = scenario, scenario.world
    build = build_plainly(world, s.sdist, tmp_path / "out", s.index.url)
    assert build.returncode == 0, build.explain()
    for key in s.keys:
        assert f"ATTACK {key}: completed" in build.stderr, build.explain()
    secret = world.secret.encode()
    assert wait_until(
        lambda: any(c.data.startswith(b"HOME:") and secret in c.data for c in s.tcp.connections),
        5,
    ), s.tcp.received
    assert b"ENV:" + secret in s.tcp.received
    assert re.search(rb"PROC:\d+:SECRET_TOKEN=" + secret, s.tcp.received)
    assert f"TCP:{s.marker}".encode() in s.tcp.received
    assert wait_until(lambda: f"UDP:{s.marker}:{world.secret}".encode() in s.udp.datagrams, 5)
    for show in ("SHOW-HOME:", "SHOW-ENV:", "SHOW-PROC:"):
        lines = [line for line in build.stderr.splitlines() if line.startswith(show)]
        assert lines, build.explain()
        assert all(world.secret in line for line in lines), lines
    assert f"# {s.marker}" in (world.home / ".bashrc").read_text()
    assert any(s.marker in pth.read_text() for pth in s.pth_files())
    assert len(s.caches_poisoned()) == 2  # $UV_CACHE_DIR and ~/.cache/uv
    assert f"# {s.marker}" in (s.venv / "bin" / "activate").read_text()
    assert s.outside.read_text() == f"{s.marker}\n"
    assert "HEARTBEAT first: b'reached'" in build.stderr
    # Both daemons outlived the build.
    assert wait_for_file(s.daemon, DAEMON_DELAY + 5), "the daemon did not outlive uv build"
    beats = s.heartbeats()
    assert wait_until(lambda: s.heartbeats() > beats, 2), "no heartbeat after uv build"


def test_attacks_fail_in_the_build_sandbox(scenario: Scenario, mode: str, tmp_path: Path) -> None:
    s, world = scenario, scenario.world
    bashrc = (world.home / ".bashrc").read_text()
    activate = (s.venv / "bin" / "activate").read_text()
    out = tmp_path / "out"
    build = build_in_sandbox(world, mode, s.sdist, out, s.index.url)

    # The build ran every attack and still succeeded.
    assert build.returncode == 0, build.explain()
    assert build.wheel is not None and build.problem is None
    assert [path.name for path in out.iterdir()] == [Path(build.wheel).name]
    for key in s.keys:
        assert f"ATTACK {key}:" in build.stderr, build.explain()
    # The daemon ran during the build (the allowed index is reachable from it).
    assert "HEARTBEAT first: b'reached'" in build.stderr, build.explain()
    assert s.heartbeats() > 0

    # Secrets: neither sent anywhere nor even read.
    assert world.secret not in build.stdout + build.stderr
    assert "SHOW-HOME:" in build.stderr and "SHOW-PROC:" in build.stderr
    # Exfiltration: nothing reached the TCP sink (a port that was not allowed) or UDP.
    time.sleep(0.3)
    assert not s.tcp.seen(), s.tcp.received
    assert not s.udp.seen(), s.udp.datagrams
    # Persistence and writes outside the build.
    assert (world.home / ".bashrc").read_text() == bashrc
    assert s.pth_files() == []
    assert s.caches_poisoned() == []
    assert (s.venv / "bin" / "activate").read_text() == activate
    assert not s.outside.exists()
    # Nothing outlived the build: no heartbeat after it, no daemon evidence even
    # after the daemon's delay.
    beats = s.heartbeats()
    time.sleep(max(0.0, build.finished + DAEMON_DELAY + 1 - time.monotonic()))
    assert s.heartbeats() == beats, "a daemon outlived the build (it kept calling the index)"
    assert not s.daemon.exists()
    assert not s.daemon.with_name("daemon.started").exists()


# --- a wheel for another project -------------------------------------------------------

#: Drop a wheel of another project next to the real one: into the directory the build
#: backend was asked to fill (the parent of setuptools' ``--dist-dir``).
DROP_OTHER_WHEEL = f"""\
import os, sys, zipfile
if "--dist-dir" not in sys.argv:
    return
wheel_dir = os.path.dirname(os.path.abspath(sys.argv[sys.argv.index("--dist-dir") + 1]))
name, version = "{OTHER_DIST}", "{OTHER_VERSION}"
path = os.path.join(wheel_dir, f"{{name}}-{{version}}-py3-none-any.whl")
info = f"{{name}}-{{version}}.dist-info"
with zipfile.ZipFile(path, "w") as wheel:
    wheel.writestr(f"{{name}}/__init__.py", "print('shadowed')\\n")
    metadata = f"Metadata-Version: 2.1\\nName: {{name}}\\nVersion: {{version}}\\n"
    wheel.writestr(f"{{info}}/METADATA", metadata)
    tags = "Wheel-Version: 1.0\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n"
    wheel.writestr(f"{{info}}/WHEEL", tags)
    wheel.writestr(f"{{info}}/RECORD", "")
print("ROGUE dropped", path, file=sys.stderr)
"""

#: Build the sdist's code as a wheel of another project: ``setup()`` with another name.
RENAME_WHEEL = f"""\
import sys, setuptools
real_setup = setuptools.setup
def renamed_setup(**kwargs):
    kwargs.update(name="{OTHER_PROJECT}", version="{OTHER_VERSION}")
    print("ROGUE renamed", file=sys.stderr)
    return real_setup(**kwargs)
setuptools.setup = renamed_setup
"""

ROGUES = {"drop": DROP_OTHER_WHEEL, "rename": RENAME_WHEEL}


def other_wheels(out: Path) -> list[str]:
    return [p.name for p in out.glob("*.whl") if project_of(p.name) == normalize(OTHER_PROJECT)]


def test_rogue_wheels_reach_the_output_of_a_plain_uv_build(
    world: World, index: LocalIndex, tmp_path: Path
) -> None:
    """The attack half: plain uv leaves the other project's wheel in its output
    directory.  For ``drop`` uv even succeeds; for ``rename`` uv notices the name and
    fails, yet the wheel stays, so a builder that took whatever wheel it found would
    still hand it on."""
    for kind, code in ROGUES.items():
        sdist = malicious_sdist(tmp_path / "sdists", unique(f"rogue-{kind}"), code)
        out = tmp_path / f"out-{kind}"
        build = build_plainly(world, sdist, out, index.url)
        assert (build.returncode == 0) == (kind == "drop"), build.explain()
        assert other_wheels(out) == [f"{OTHER_DIST}-{OTHER_VERSION}-py3-none-any.whl"], kind


@pytest.mark.parametrize("kind", sorted(ROGUES))
def test_wheel_of_another_project_is_refused(
    world: World, mode: str, index: LocalIndex, tmp_path: Path, kind: str
) -> None:
    sdist = malicious_sdist(tmp_path / "sdists", unique(f"rogue-{kind}"), ROGUES[kind])
    out = tmp_path / "out"
    build = build_in_sandbox(world, mode, sdist, out, index.url)
    # The rogue code ran (the build itself worked) and the result was refused.
    assert "ROGUE " in build.stderr, build.explain()
    assert build.returncode not in (0, 125), build.explain()
    assert build.wheel is None
    assert build.problem is not None
    assert "Traceback" not in build.stderr
    assert list(out.iterdir()) == [], "the builder left files in the output directory"
    if kind == "drop":
        # uv is content; the builder's own check names the other project.
        assert re.search(r"benign[-_]wheel", build.problem), build.problem
    else:
        # uv refuses the renamed wheel itself and says why on stderr.
        assert re.search(r"benign[-_]wheel", build.stderr), build.explain()


# --- the network is the index given ----------------------------------------------------

#: Index settings a user may have in their environment, all pointing at the real index.
INDEX_SETTINGS = ("UV_INDEX_URL", "UV_EXTRA_INDEX_URL", "UV_INDEX", "PIP_INDEX_URL")


@pytest.fixture
def empty_index(tmp_path: Path) -> Iterator[LocalIndex]:
    """A live index on another port that serves nothing (no setuptools)."""
    directory = tmp_path / "empty-index"
    directory.mkdir()
    with LocalIndex(directory) as served:
        yield served


def test_index_settings_in_the_environment_reach_plain_uv(
    world: World, index_dir: Path, empty_index: LocalIndex, tmp_path: Path
) -> None:
    """The attack half: with the caller's index settings, plain uv gets setuptools from
    the real index although another index was given on the command line."""
    sdist = benign_sdist(tmp_path / "sdists")
    with LocalIndex(index_dir) as real:
        env = uv_env(world.home, user_cache(world), **dict.fromkeys(INDEX_SETTINGS, real.url))
        argv = [uv_binary(), "build", "--wheel", str(sdist), "--out-dir", str(tmp_path / "out")]
        argv += ["--python", sys.executable, "--default-index", empty_index.url]
        done = subprocess.run(
            argv, env=env, capture_output=True, text=True, timeout=120, check=False
        )
        assert done.returncode == 0, done.stderr
        assert "/simple/setuptools/" in real.paths()


def test_index_without_the_backend_fails_cleanly(
    world: World, mode: str, index_dir: Path, empty_index: LocalIndex
) -> None:
    """The given index has no setuptools: the build fails with one problem and no
    traceback, and neither the caller's index settings nor the network lead uv to the
    real index (on another port of the same address)."""
    sdist = benign_sdist(world.root / "sdists")
    out = world.root / "out"
    with LocalIndex(index_dir) as real:
        build = build_in_sandbox(
            world,
            mode,
            sdist,
            out,
            empty_index.url,
            env_extra=dict.fromkeys(INDEX_SETTINGS, real.url),
        )
        assert real.requests == [], real.paths()
    assert "/simple/setuptools/" in empty_index.paths(), build.explain()
    assert build.returncode not in (0, 125), build.explain()
    assert build.wheel is None
    assert build.problem, build.explain()
    assert "\n" not in build.problem
    assert "Traceback" not in build.stderr, build.stderr
    assert list(out.iterdir()) == []


#: An in-tree PEP 517 backend that needs nothing from any index: it builds its wheel
#: by hand, after probing the given index (must work) and the other one (must not).
PROBE_BACKEND = """\
import os, socket, sys, urllib.request, zipfile

NAME, VERSION = "{name}", "{version}"


def _probe():
    for label, url in (("given", "{given}"), ("other", "{other}")):
        try:
            urllib.request.urlopen(url, timeout=5)
            result = "ok"
        except Exception as exc:
            result = repr(exc)
        print("PROBE", label, result, file=sys.stderr)
    try:
        with socket.create_connection(("127.0.0.1", {other_port}), timeout=5) as conn:
            conn.sendall(b"GET {raw_path} HTTP/1.0\\r\\n\\r\\n")
            conn.recv(100)
        result = "ok"
    except OSError as exc:
        result = repr(exc)
    print("PROBE raw", result, file=sys.stderr)


def get_requires_for_build_wheel(config_settings=None):
    return []


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    _probe()
    dist = NAME.replace("-", "_")
    filename = f"{{dist}}-{{VERSION}}-py3-none-any.whl"
    info = f"{{dist}}-{{VERSION}}.dist-info"
    with zipfile.ZipFile(os.path.join(wheel_directory, filename), "w") as wheel:
        wheel.writestr(f"{{dist}}.py", "")
        metadata = f"Metadata-Version: 2.1\\nName: {{NAME}}\\nVersion: {{VERSION}}\\n"
        wheel.writestr(f"{{info}}/METADATA", metadata)
        tags = "Wheel-Version: 1.0\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n"
        wheel.writestr(f"{{info}}/WHEEL", tags)
        wheel.writestr(f"{{info}}/RECORD", "")
    return filename
"""

_PROBE_PYPROJECT = """\
[build-system]
requires = []
build-backend = "probe_backend"
backend-path = ["."]
"""


@pytest.fixture
def probe(
    index_dir: Path, index: LocalIndex, tmp_path: Path
) -> Iterator[tuple[LocalIndex, Path, str]]:
    """A second index (the one the build is given), and an sdist whose backend probes
    both it and the real one; yields (given index, sdist, marker)."""
    marker = unique("probe")
    with LocalIndex(index_dir) as given:
        backend = PROBE_BACKEND.format(
            name=marker,
            version=FIXTURE_VERSION,
            given=f"{given.url}{marker}-given/",
            other=f"{index.url}{marker}-other/",
            other_port=index.port,
            raw_path=f"/simple/{marker}-raw/",
        )
        files = {"pyproject.toml": _PROBE_PYPROJECT, "probe_backend.py": backend}
        compile(backend, "probe_backend.py", "exec")
        sdist = write_sdist(tmp_path / "sdists", marker, FIXTURE_VERSION, files)
        yield given, sdist, marker


def probes(index: LocalIndex, marker: str) -> list[str]:
    return [path for path in index.paths() if marker in path]


def test_probe_backend_reaches_both_indexes_without_the_sandbox(
    world: World, index: LocalIndex, probe: tuple[LocalIndex, Path, str], tmp_path: Path
) -> None:
    given, sdist, marker = probe
    build = build_plainly(world, sdist, tmp_path / "out", given.url)
    assert build.returncode == 0, build.explain()
    assert probes(given, marker) == [f"/simple/{marker}-given/"]
    assert wait_until(lambda: len(probes(index, marker)) == 2, 5), index.paths()
    assert set(probes(index, marker)) == {f"/simple/{marker}-other/", f"/simple/{marker}-raw/"}


def test_only_the_given_index_is_reachable(
    world: World, mode: str, index: LocalIndex, probe: tuple[LocalIndex, Path, str]
) -> None:
    given, sdist, marker = probe
    out = world.root / "out"
    build = build_in_sandbox(world, mode, sdist, out, given.url)
    assert build.returncode == 0, build.explain()
    assert build.wheel is not None and Path(build.wheel).parent == out
    assert "PROBE raw" in build.stderr, build.explain()
    # The given index answered (through the proxy) ...
    assert probes(given, marker) == [f"/simple/{marker}-given/"], build.explain()
    # ... the real index, on another port of the same address, never heard of it.
    time.sleep(0.2)
    assert probes(index, marker) == [], build.explain()
