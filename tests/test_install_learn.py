"""``safe-pip install --learn``, end to end: a build that needs more than the default
build sandbox, the flags learn mode proposes for it, and an install that works with
exactly those flags while the secrets stay denied.

Real uv, a real local index on 127.0.0.1 (:mod:`pkg_index`), real sandboxes, in both
sandbox modes.  The fixture sdist ``needs-more-<marker>`` runs, at build time
(``setup.py``, each time setuptools runs it):

1. ``~/.ssh/id_rsa`` of the caller's (fake) home: an attempt only, its error caught;
2. every file of a vendor directory under the test's tmp directory, which nothing
   in the build sandbox grants;
3. an HTTP download from a second local origin (a loopback port that is not the
   index), through the ``HTTP_PROXY`` the sandbox hands out.

The build fails unless 2 and 3 both worked, and records what it got (the vendored
files, the download, and whether the SSH key was readable) in a module of the package
it builds, ``needs_more_<marker>/_probe.py``.  The key attempt comes first and every
step runs before the build gives up, so one traced run sees all three refusals.

What is proven:

- the default build sandbox refuses 2 and 3: ``safe-pip install`` fails, because of
  them (the build says so), and the origin was never reached;
- ``safe-pip install --learn`` fails the same way, and its report names the vendor
  directory (``--allow-read``) and the origin (``--allow-host 127.0.0.1:PORT``),
  reports ``~/.ssh/id_rsa`` as kept denied and proposes nothing under ``~/.ssh``;
- the same command with exactly the flags of the report's "run the command again
  with:" line succeeds: the package is in the venv, its build read the vendored files
  and the download, and it still could not read the SSH key (the secret is nowhere).
"""

from __future__ import annotations

import json
import re
import secrets
import shlex
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from net_servers import HttpOrigin
from pkg_index import FIXTURE_VERSION, LocalIndex, write_sdist
from sandbox_harness import World, make_world

SAFE_PIP = Path(sys.executable).parent / "safe-pip"
pytestmark = [
    pytest.mark.sandbox,
    pytest.mark.skipif(not SAFE_PIP.exists(), reason="safe-pip is not installed next to python"),
]

LEARN = "safe-pip: learn: "
RERUN = f"{LEARN}to allow them, run the command again with: "
#: What each vendored file holds; the build records what it read.
VENDOR_FILES = {
    "LICENSE.vendor": "vendored licence text\n",
    "table.dat": "1 2 3\n",
    "header.h": "#define NEEDS_MORE 1\n",
}
#: What the build prints when a step it needs failed (so a failure is the sandbox's).
VENDOR_FAILED = "needs-more: cannot read the vendor directory"
DOWNLOAD_FAILED = "needs-more: cannot download"

_PYPROJECT = """\
[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"
"""

#: ``setup.py`` of the fixture sdist; ``str.format`` fields are filled with ``repr``s.
_SETUP_PY = """\
import os
import sys
import urllib.request

import setuptools

VENDOR_DIR = {vendor_dir!r}
ORIGIN_URL = {origin_url!r}
SSH_KEY = {ssh_key!r}
failed = []

# 1. The caller's SSH key: attempted, never needed.
try:
    with open(SSH_KEY, "rb") as key_file:
        key_file.read()
    ssh_read = True
except OSError as exc:
    ssh_read = False
    print(f"needs-more: the SSH key stayed unreadable: {{exc!r}}", file=sys.stderr)

# 2. Every file of the vendor directory.
vendored = {{}}
try:
    for name in sorted(os.listdir(VENDOR_DIR)):
        with open(os.path.join(VENDOR_DIR, name), encoding="utf-8") as vendored_file:
            vendored[name] = vendored_file.read()
except OSError as exc:
    failed.append(f"{vendor_failed}: {{exc!r}}")

# 3. A download, through the proxy the sandbox hands out (directly when there is none).
proxy = os.environ.get("HTTP_PROXY") or os.environ.get("http_proxy") or ""
handler = urllib.request.ProxyHandler({{"http": proxy}} if proxy else {{}})
opener = urllib.request.build_opener(handler)
try:
    with opener.open(ORIGIN_URL, timeout=10) as response:
        downloaded = response.read().decode()
except OSError as exc:
    failed.append(f"{download_failed} {{ORIGIN_URL}}: {{exc!r}}")

if failed:
    sys.exit("\\n".join(failed))

with open(os.path.join({module!r}, "_probe.py"), "w", encoding="utf-8") as probe:
    probe.write(f"SSH_READ = {{ssh_read!r}}\\n")
    probe.write(f"VENDORED = {{vendored!r}}\\n")
    probe.write(f"DOWNLOADED = {{downloaded!r}}\\n")

setuptools.setup(name={name!r}, version={version!r}, packages=[{module!r}])
"""


@dataclass
class Scenario:
    """One user's world, the fixture sdist on the index, and what it reaches for."""

    world: World
    index: LocalIndex
    origin: HttpOrigin
    name: str
    module: str
    vendor_dir: Path
    venv: Path

    @property
    def ssh_key(self) -> Path:
        return self.world.home / ".ssh" / "id_rsa"

    @property
    def origin_host(self) -> str:
        return f"127.0.0.1:{self.origin.port}"


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str

    def explain(self) -> str:
        return f"exit {self.returncode}\nstdout:\n{self.stdout}\nstderr:\n{self.stderr[-6000:]}"

    def learn_lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.startswith(LEARN)]


def needs_more_sdist(
    dest: Path, name: str, *, vendor_dir: Path, origin_url: str, ssh_key: Path
) -> Path:
    """The fixture sdist: a package whose ``setup.py`` needs a vendor dir and a download."""
    module = name.replace("-", "_")
    setup_py = _SETUP_PY.format(
        vendor_dir=str(vendor_dir),
        origin_url=origin_url,
        ssh_key=str(ssh_key),
        vendor_failed=VENDOR_FAILED,
        download_failed=DOWNLOAD_FAILED,
        module=module,
        name=name,
        version=FIXTURE_VERSION,
    )
    compile(setup_py, "setup.py", "exec")  # a broken template fails here, not in uv
    files = {
        "setup.py": setup_py,
        "pyproject.toml": _PYPROJECT,
        f"{module}/__init__.py": '"""Built with a vendor directory and a download."""\n',
    }
    return write_sdist(dest, name, FIXTURE_VERSION, files)


def make_vendor_dir(path: Path) -> Path:
    """A directory outside everything the build sandbox grants, readable by anyone."""
    path.mkdir(mode=0o755)
    path.chmod(0o755)
    for name, text in VENDOR_FILES.items():
        (path / name).write_text(text)
        (path / name).chmod(0o644)
    return path


@pytest.fixture
def scenario(tmp_path: Path, index: LocalIndex) -> Iterator[Scenario]:
    world = make_world(tmp_path)
    (world.root / "xdg-cache").mkdir()
    vendor_dir = make_vendor_dir(tmp_path / "vendor-src")
    name = f"needs-more-{secrets.token_hex(4)}"
    with HttpOrigin() as origin:
        needs_more_sdist(
            index.directory,
            name,
            vendor_dir=vendor_dir,
            origin_url=origin.url("/hello"),
            ssh_key=world.home / ".ssh" / "id_rsa",
        )
        yield Scenario(
            world=world,
            index=index,
            origin=origin,
            name=name,
            module=name.replace("-", "_"),
            vendor_dir=vendor_dir,
            venv=world.root / "venv",
        )


def safe_pip_install(s: Scenario, mode: str, *flags: str) -> Run:
    """``safe-pip install FLAGS --venv V -i INDEX NAME`` as the user of the world."""
    argv = [str(SAFE_PIP), "install", *flags, "--python", sys.executable]
    argv += ["--venv", str(s.venv), "-i", s.index.url, s.name]
    env = s.world.env(mode, XDG_CACHE_HOME=str(s.world.root / "xdg-cache"))
    done = subprocess.run(
        argv,
        cwd=s.world.project,
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    return Run(done.returncode, done.stdout, done.stderr)


def installed_probe(s: Scenario) -> dict[str, object]:
    """What the build recorded, read by the venv's python from the installed package."""
    code = (
        f"import json; from {s.module} import _probe as p; "
        "print(json.dumps({'ssh_read': p.SSH_READ, 'vendored': p.VENDORED, "
        "'downloaded': p.DOWNLOADED}))"
    )
    done = subprocess.run(
        [str(s.venv / "bin" / "python"), "-c", code],
        env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    parsed = json.loads(done.stdout)
    assert isinstance(parsed, dict), done.stdout
    return parsed


def rerun_flags(run: Run) -> list[str]:
    """The flags of the report's "run the command again with:" line."""
    lines = [line for line in run.stderr.splitlines() if line.startswith(RERUN)]
    assert len(lines) == 1, run.explain()
    return shlex.split(lines[0].removeprefix(RERUN))


def flag_values(flags: list[str], flag: str) -> list[str]:
    assert len(flags) % 2 == 0, flags
    pairs = list(zip(flags[::2], flags[1::2], strict=True))
    assert all(name in ("--allow-read", "--allow-host") for name, _ in pairs), flags
    return [value for name, value in pairs if name == flag]


def assert_failed_for_the_sandboxs_refusals(s: Scenario, run: Run) -> None:
    """The install failed because the build could read neither the vendor directory
    nor the origin, and nothing it could not read got out."""
    assert run.returncode != 0, run.explain()
    assert VENDOR_FAILED in run.stderr, run.explain()
    assert DOWNLOAD_FAILED in run.stderr, run.explain()
    assert not s.origin.saw("/hello"), s.origin.paths()
    assert s.world.secret not in run.stdout + run.stderr
    assert not list(s.venv.glob(f"lib/python*/site-packages/{s.module}")), run.explain()


def test_the_default_build_sandbox_refuses_what_the_build_needs(
    scenario: Scenario, mode: str
) -> None:
    """Without extra flags the build can read neither the vendor dir nor the origin."""
    run = safe_pip_install(scenario, mode)
    assert_failed_for_the_sandboxs_refusals(scenario, run)
    assert not run.learn_lines(), run.explain()


def test_learn_proposes_the_flags_that_make_the_install_work(scenario: Scenario, mode: str) -> None:
    """``--learn`` names the vendor dir and the origin, keeps ``~/.ssh`` denied, and
    its flags, exactly, make the install work without opening the SSH key."""
    s = scenario
    learned = safe_pip_install(s, mode, "--learn")
    assert_failed_for_the_sandboxs_refusals(s, learned)

    vendor = str(s.vendor_dir.resolve())
    lines = learned.learn_lines()
    assert f"{LEARN}a build needed read access to {vendor}" in lines, learned.explain()
    assert f"{LEARN}a build needed the network host {s.origin_host}" in lines, learned.explain()
    kept = f"{LEARN}kept denied: ~/.ssh/id_rsa (on the deny list: ~/.ssh); not proposed"
    assert kept in lines, learned.explain()

    flags = rerun_flags(learned)
    reads, hosts = flag_values(flags, "--allow-read"), flag_values(flags, "--allow-host")
    assert vendor in reads, flags
    assert s.origin_host in hosts, flags
    ssh_dir = s.world.home / ".ssh"
    proposed = [line for line in lines if not line.startswith(f"{LEARN}kept denied: ")]
    for text in (*reads, *proposed):
        assert not re.search(rf"(~|{re.escape(str(s.world.home))})/\.ssh", text), text
    for read in reads:
        assert not Path(read).resolve().is_relative_to(ssh_dir.resolve()), read
        assert not ssh_dir.resolve().is_relative_to(Path(read).resolve()), read

    again = safe_pip_install(s, mode, *flags)
    # The proposed flags must reach every sandbox of the install, the wheel build too
    # (--allow-read once reached only the resolution step, and learn never converged).
    assert again.returncode == 0, f"flags {flags}\n{again.explain()}"
    assert s.origin.saw("/hello"), s.origin.paths()
    probe = installed_probe(s)
    assert probe["vendored"] == VENDOR_FILES, probe
    assert probe["downloaded"] == HttpOrigin.HELLO.decode(), probe
    assert probe["ssh_read"] is False, probe
    assert s.world.secret not in again.stdout + again.stderr
    assert s.world.secret not in json.dumps(probe)
