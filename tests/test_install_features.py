"""``safe-pip install`` and ``sync`` features beyond the basics, end to end.

Real uv, a real local index, real sandboxes: local and editable projects, find-links
folders, constraints, uv's own index configuration, the two install routes
(wheels only / staged), the shared cache and who may write it, ``--strict``,
``--wrap-scripts``, built wheels that try to overwrite other packages, ``sync``.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import textwrap
from pathlib import Path

import pytest
from net_servers import make_wheel
from pkg_index import (
    BENIGN_SDIST,
    BENIGN_WHEEL,
    LocalIndex,
    benign_sdist,
    benign_wheel,
    uv_binary,
    write_sdist,
)
from sandbox_harness import World, make_world
from test_install_cli import SAFE_PIP, outcome, safe_pip

pytestmark = [
    pytest.mark.sandbox,
    pytest.mark.skipif(not SAFE_PIP.exists(), reason="safe-pip is not installed next to python"),
]

SETUPTOOLS_PYPROJECT = """\
[build-system]
requires = ["setuptools>=61"]
build-backend = "setuptools.build_meta"

[project]
name = "{name}"
version = "{version}"
dependencies = {dependencies}

[project.scripts]
{name}-hi = "{module}:main"
"""


@pytest.fixture
def world(tmp_path: Path) -> World:
    return make_world(tmp_path)


def shared_cache(world: World) -> Path:
    return world.home / ".cache" / "safe-pip" / "uv"


def make_project(root: Path, name: str, greeting: str, dependencies: str = "[]") -> Path:
    """A src-layout setuptools project with a console script ``<name>-hi``."""
    module = name.replace("-", "_")
    project = root / name
    (project / "src" / module).mkdir(parents=True)
    (project / "pyproject.toml").write_text(
        SETUPTOOLS_PYPROJECT.format(
            name=name, version="0.3", dependencies=dependencies, module=module
        )
    )
    (project / "src" / module / "__init__.py").write_text(f"def main():\n    print({greeting!r})\n")
    for path in (project, *project.rglob("*")):
        path.chmod(0o755 if path.is_dir() else 0o644)
    return project


def run_script(venv: Path, name: str, cwd: Path | None = None) -> str:
    ran = subprocess.run(
        [str(venv / "bin" / name)], capture_output=True, text=True, check=False, cwd=cwd
    )
    assert ran.returncode == 0, ran.stdout + ran.stderr
    return ran.stdout


def tree_state(root: Path) -> dict[str, bytes | str]:
    """Every file's bytes (and every link's target) under ``root``."""
    state: dict[str, bytes | str] = {}
    for path in sorted(root.rglob("*")):
        if "__pycache__" in path.parts:
            continue
        if path.is_symlink():
            state[str(path.relative_to(root))] = os.readlink(path)
        elif path.is_file():
            state[str(path.relative_to(root))] = path.read_bytes()
    return state


# --- local and editable projects ------------------------------------------------------


def test_editable_project_is_live_and_its_definition_untouched(
    world: World, index: LocalIndex
) -> None:
    project = make_project(world.root, "mylib", "first", f'["{BENIGN_WHEEL}"]')
    pyproject = (project / "pyproject.toml").read_bytes()
    venv = world.root / "venv"
    result = safe_pip(world, "namespace", "--venv", str(venv), "-i", index.url, "-e", str(project))
    assert result.returncode == 0, result.stdout + result.stderr
    report = outcome(result)
    assert report["route"] == "staged"
    assert {"mylib==0.3", f"{BENIGN_WHEEL}==0.1.0"} <= set(report["installed"])  # type: ignore[arg-type]
    assert run_script(venv, "mylib-hi").strip() == "first"
    # Editable: a change to the source shows without reinstalling.
    (project / "src" / "mylib" / "__init__.py").write_text("def main():\n    print('second')\n")
    assert run_script(venv, "mylib-hi").strip() == "second"
    assert (project / "pyproject.toml").read_bytes() == pyproject


def test_local_directory_is_built_from_a_copy(world: World, mode: str, index: LocalIndex) -> None:
    """A non-editable local project is only read: the build works on a private copy."""
    project = make_project(world.root, "plainlib", "plain")
    before = tree_state(project)
    venv = world.root / "venv"
    result = safe_pip(world, mode, "--venv", str(venv), "-i", index.url, str(project))
    assert result.returncode == 0, result.stdout + result.stderr
    assert run_script(venv, "plainlib-hi").strip() == "plain"
    assert tree_state(project) == before, "the build wrote into the user's project"


def test_find_links_folder_and_constraints(world: World, index: LocalIndex) -> None:
    links = world.root / "links"
    links.mkdir()
    wheel = make_wheel("linked-only", "1.0", {"linked_only.py": b"VALUE = 'linked'\n"})
    (links / wheel.filename).write_bytes(wheel.data)
    for path in (links, *links.iterdir()):
        path.chmod(0o755 if path.is_dir() else 0o644)
    venv = world.root / "venv"
    args = ("--venv", str(venv), "-i", index.url, "-f", str(links))
    result = safe_pip(world, "namespace", *args, "linked-only")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "linked-only==1.0" in outcome(result)["installed"]  # type: ignore[operator]
    constraints = world.root / "constraints.txt"
    constraints.write_text(f"{BENIGN_WHEEL}>9\n")
    constraints.chmod(0o644)
    refused = safe_pip(world, "namespace", *args, "-c", str(constraints), BENIGN_WHEEL)
    assert refused.returncode != 0
    assert BENIGN_WHEEL in refused.stderr and "Traceback" not in refused.stderr


def test_index_from_the_projects_uv_configuration(world: World, index: LocalIndex) -> None:
    """No -i: the index comes from [tool.uv] in the project's pyproject, as for uv."""
    pyproject = world.project / "pyproject.toml"
    pyproject.write_text(
        pyproject.read_text() + f'\n[[tool.uv.index]]\nurl = "{index.url}"\ndefault = true\n'
    )
    venv = world.root / "venv"
    # A project's own index settings are used only once approved (they may have come
    # from whoever wrote the project, or from a sandbox that could write it).
    fetched_before = len(index.downloaded())  # the index serves the whole module
    refused = safe_pip(world, "namespace", "--venv", str(venv), BENIGN_WHEEL)
    assert refused.returncode == 125, refused.stdout + refused.stderr
    assert index.url in refused.stderr and "safe-run allow" in refused.stderr
    assert len(index.downloaded()) == fetched_before
    allowed = subprocess.run(
        [str(SAFE_PIP.parent / "safe-run"), "allow"],
        cwd=world.project, env=world.env(), capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert allowed.returncode == 0, allowed.stderr
    assert "package index settings" in allowed.stdout
    result = safe_pip(world, "namespace", "--venv", str(venv), BENIGN_WHEEL)
    assert result.returncode == 0, result.stdout + result.stderr
    assert any(BENIGN_WHEEL.replace("-", "_") in path for path in index.downloaded())


# --- routes and the shared cache ------------------------------------------------------


@pytest.fixture
def versions_index(tmp_path: Path, index_dir: Path) -> LocalIndex:
    """An index where ``twoway`` 1.0 has a wheel and 2.0 only an sdist."""
    directory = tmp_path / "versions-index"
    directory.mkdir()
    for backend in index_dir.glob("*.whl"):
        if not backend.name.startswith(("benign", "evil")):
            (directory / backend.name).symlink_to(backend)
    benign_wheel(directory, "twoway", "1.0")
    benign_sdist(directory, "twoway", "2.0")
    return LocalIndex(directory)


def test_wheels_are_preferred_and_sdists_are_built_when_asked_for(
    world: World, versions_index: LocalIndex
) -> None:
    with versions_index:
        venv = world.root / "venv"
        first = safe_pip(
            world, "namespace", "--venv", str(venv), "-i", versions_index.url, "twoway"
        )
        assert first.returncode == 0, first.stderr
        assert outcome(first)["route"] == "wheels-only"
        assert outcome(first)["installed"] == ["twoway==1.0"]
        assert outcome(first)["built"] == []
        pinned = safe_pip(
            world, "namespace", "--venv", str(venv), "-i", versions_index.url, "twoway==2.0"
        )
        assert pinned.returncode == 0, pinned.stderr
        assert outcome(pinned)["route"] == "staged"
        assert outcome(pinned)["built"] == ["twoway==2.0"]
        fresh = world.root / "fresh"
        nobuild = safe_pip(
            world, "namespace", "--venv", str(fresh), "-i", versions_index.url,
            "--no-build", "--no-cache", "twoway==2.0",
        )  # fmt: skip
        assert nobuild.returncode != 0
        assert "--no-build" in nobuild.stderr and "twoway" in nobuild.stderr
        # With the cache, the checked wheel of the earlier build is a wheel like any
        # other: --no-build installs it, and no build code runs.
        cached = safe_pip(
            world, "namespace", "--venv", str(fresh), "-i", versions_index.url,
            "--no-build", "twoway==2.0",
        )  # fmt: skip
        assert cached.returncode == 0, cached.stderr
        assert outcome(cached)["built"] == [] and outcome(cached)["installed"] == ["twoway==2.0"]


PTH_POISON = (
    "import os; open(os.path.join({cache!r}, 'poison-{marker}'), 'w').write('x')"
    " if os.path.isdir({cache!r}) else None\n"
)


def test_venv_startup_code_never_runs_with_the_shared_cache_writable(
    world: World, mode: str, index: LocalIndex
) -> None:
    """uv runs the venv's interpreter, and site.py runs its ``*.pth`` lines.  An
    earlier package's .pth must not get to write the cache later installs read."""
    venv = world.root / "venv"
    warm = safe_pip(world, mode, "--venv", str(venv), "-i", index.url, BENIGN_WHEEL)
    assert warm.returncode == 0, warm.stderr
    assert outcome(warm)["shared_cache"] is True
    cache = shared_cache(world)
    assert any(cache.iterdir()), "the wheels-only route should have warmed the shared cache"
    marker = secrets.token_hex(4)
    site = next((venv / "lib").glob("python3*/site-packages"))
    # Without safe-pip: the same kind of .pth writes into the cache uv is given.
    plain_cache = world.root / "plain-uv-cache"
    plain_cache.mkdir()
    (site / "zz_plain.pth").write_text(PTH_POISON.format(cache=str(plain_cache), marker=marker))
    env = {**world.env(), "UV_CACHE_DIR": str(plain_cache), "UV_NO_CONFIG": "1"}
    subprocess.run(
        [uv_binary(), "pip", "install", "--python", str(venv / "bin" / "python"),
         "--default-index", index.url, BENIGN_SDIST, "--dry-run"],
        env=env, capture_output=True, check=False,
    )  # fmt: skip
    assert (plain_cache / f"poison-{marker}").exists(), "the .pth attack does not work plainly"
    (site / "zz_plain.pth").unlink()
    (site / "zz_poison.pth").write_text(PTH_POISON.format(cache=str(cache), marker=marker))
    result = safe_pip(world, mode, "--venv", str(venv), "-i", index.url, BENIGN_SDIST)
    assert result.returncode == 0, result.stdout + result.stderr
    assert outcome(result)["shared_cache"] is False
    assert not (cache / f"poison-{marker}").exists()


def test_built_wheel_may_not_overwrite_another_packages_files(
    world: World, index: LocalIndex, tmp_path: Path
) -> None:
    venv = world.root / "venv"
    first = safe_pip(world, "namespace", "--venv", str(venv), "-i", index.url, BENIGN_WHEEL)
    assert first.returncode == 0, first.stderr
    package = BENIGN_WHEEL.replace("-", "_")
    module = next((venv / "lib").glob(f"python3*/site-packages/{package}/__init__.py"))
    genuine = module.read_bytes()
    name = f"shadow-{secrets.token_hex(3)}"
    setup_py = textwrap.dedent(
        f"""\
        import setuptools
        setuptools.setup(name="{name}", version="0.1.0", packages=["{package}"])
        """
    )
    shadow = "def main():\n    print('SHADOWED')\n"
    write_sdist(
        index.directory, name, "0.1.0", {"setup.py": setup_py, f"{package}/__init__.py": shadow}
    )
    # Plainly, uv installs the shadowing wheel over benign-wheel's module.
    plain = world.root / "plain-venv"
    env = {**world.env(), "UV_NO_CONFIG": "1", "UV_CACHE_DIR": str(world.root / "uv-cache")}
    subprocess.run([uv_binary(), "venv", "-q", "-p", "/usr/bin/python3", str(plain)], check=True)
    # One package per uv run: within a run uv installs in parallel, so which of two
    # wheels that share a file wins would be a race.
    for package_name in (BENIGN_WHEEL, name):
        installed = subprocess.run(
            [uv_binary(), "pip", "install", "--python", str(plain / "bin" / "python"),
             "--default-index", index.url, package_name],
            env=env, capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert installed.returncode == 0, installed.stderr
    plain_module = next((plain / "lib").glob(f"python3*/site-packages/{package}/__init__.py"))
    assert b"SHADOWED" in plain_module.read_bytes(), "the shadowing attack does not work plainly"

    result = safe_pip(world, "namespace", "--venv", str(venv), "-i", index.url, name)
    assert result.returncode != 0
    assert "would overwrite files it does not own" in result.stderr
    assert module.read_bytes() == genuine


# --- audit, --strict, --wrap-scripts --------------------------------------------------


def test_strict_leaves_an_existing_venv_exactly_as_it_was(world: World, index: LocalIndex) -> None:
    venv = world.root / "venv"
    project = make_project(world.root, "quietlib", "quiet")
    (project / "pyproject.toml").write_text(
        (project / "pyproject.toml").read_text().split("[project.scripts]")[0]
    )
    first = safe_pip(world, "namespace", "--venv", str(venv), "-i", index.url, str(project))
    assert first.returncode == 0, first.stderr
    assert outcome(first)["findings"] == []
    before = tree_state(venv)
    result = safe_pip(
        world, "namespace", "--venv", str(venv), "-i", index.url, "--strict", BENIGN_WHEEL
    )
    assert result.returncode == 1
    findings = outcome(result)["findings"]
    assert [f["kind"] for f in findings] == ["console-script"]  # type: ignore[index,union-attr]
    assert "--strict" in result.stderr
    assert tree_state(venv) == before


def test_wrapped_scripts_run_under_safe_run(world: World, index: LocalIndex) -> None:
    """The wrapped console script cannot read the home secret; unwrapped it can."""
    code = (
        "import os\ndef main():\n    try:\n"
        f"        print(open({str(world.home / '.ssh' / 'id_rsa')!r}).read())\n"
        "    except OSError as exc:\n        print('DENIED', exc.errno)\n"
    )
    wheel = make_wheel(
        "peeker",
        "1.0",
        {"peeker.py": code.encode()},
        entry_points="[console_scripts]\npeek = peeker:main\n",
    )
    (index.directory / wheel.filename).write_bytes(wheel.data)
    plain, wrapped = world.root / "plain", world.root / "wrapped"
    for venv, extra in ((plain, ()), (wrapped, ("--wrap-scripts",))):
        result = safe_pip(
            world, "namespace", "--venv", str(venv), "-i", index.url, *extra, "peeker"
        )
        assert result.returncode == 0, result.stderr
    assert world.secret in run_script(plain, "peek", cwd=world.project)
    assert outcome(result)["wrapped_scripts"] == ["peek"]
    out = run_script(wrapped, "peek", cwd=world.project)
    assert "DENIED" in out and world.secret not in out


# --- sync -----------------------------------------------------------------------------


def test_sync_installs_the_lock_exactly_and_the_project_editable(
    world: World, index: LocalIndex
) -> None:
    project = make_project(world.root, "synced", "synced", f'["{BENIGN_WHEEL}"]')
    env = {**world.env(), "UV_NO_CONFIG": "1", "UV_CACHE_DIR": str(world.root / "uv-cache")}
    locked = subprocess.run(
        [uv_binary(), "lock", "--default-index", index.url, "--project", str(project)],
        env=env, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert locked.returncode == 0, locked.stderr
    venv = world.root / "venv"
    sync_env = {**world.env(), "UV_DEFAULT_INDEX": index.url}

    def sync() -> dict[str, object]:
        ran = subprocess.run(
            [str(SAFE_PIP), "sync", "--json", "--venv", str(venv), "--python", "/usr/bin/python3"],
            cwd=project, env=sync_env, capture_output=True, text=True, check=False, timeout=300,
        )  # fmt: skip
        assert ran.returncode == 0, ran.stdout + ran.stderr
        parsed = json.loads(ran.stdout.splitlines()[-1])
        assert isinstance(parsed, dict)
        return parsed

    first = sync()
    assert {"synced==0.3", f"{BENIGN_WHEEL}==0.1.0"} <= set(first["installed"])  # type: ignore[arg-type]
    assert run_script(venv, "synced-hi").strip() == "synced"
    extra = safe_pip(world, "namespace", "--venv", str(venv), "-i", index.url, BENIGN_SDIST)
    assert extra.returncode == 0, extra.stderr
    second = sync()
    assert second["removed"] == [f"{BENIGN_SDIST}==0.1.0"]


def test_refused_host_is_named_with_the_flag_that_allows_it(
    world: World, index: LocalIndex
) -> None:
    port = index.url.split(":")[2].split("/")[0]
    wheel = f"{BENIGN_WHEEL.replace('-', '_')}-0.1.0-py3-none-any.whl"
    url = f"http://localhost:{port}/files/{wheel}"
    venv = world.root / "venv"
    result = safe_pip(
        world, "namespace", "--venv", str(venv), "-i", index.url, f"{BENIGN_WHEEL} @ {url}"
    )
    assert result.returncode != 0
    assert f"refused localhost:{port}" in result.stderr
    assert f"--allow-host localhost:{port}" in result.stderr
    assert not venv.exists()


POISON = "def main():\n    print('POISONED')\n"


def _installed_module(venv: Path) -> Path:
    return next((venv / "lib").glob("python3*/site-packages/benign_wheel/__init__.py"))


def _overwrite_installed_module(venv: Path) -> None:
    """What any code allowed to write this venv can do: rewrite an installed file in
    place (``open(..., "r+")``: the same inode, so a hard link's other names too)."""
    with open(_installed_module(venv), "r+", encoding="utf-8") as handle:
        handle.truncate(0)
        handle.write(POISON)


#: The attack from inside safe-run: prints WROTE, or REFUSED and the error.
OVERWRITE_FROM_SANDBOX = """import sys
try:
    with open(sys.argv[1], "r+", encoding="utf-8") as handle:
        handle.truncate(0)
        handle.write({poison!r})
    print("WROTE")
except OSError as exc:
    print("REFUSED", exc)
"""


def _grant_write(world: World, path: Path) -> None:
    """The project's policy names ``path`` for writing (approved, as by the user)."""
    (world.project / "pyproject.toml").write_text(
        '[project]\nname = "victim"\nversion = "0"\n\n'
        f"[tool.safe-run.filesystem]\nwrite = [{str(path)!r}]\n"
    )
    world.approve()


def _cache_inodes(world: World) -> set[int]:
    return {p.stat().st_ino for p in shared_cache(world).rglob("*") if p.is_file()}


def test_plain_uv_lets_a_write_to_one_venv_poison_the_next_install(
    world: World, index: LocalIndex
) -> None:
    """The attack safe-pip's link design answers: uv hard-links venv files to its
    cache by default on Linux, so an in-place write to one installed file rewrites
    the cache and the next venv gets the poison."""
    env = {**world.env(), "UV_NO_CONFIG": "1", "UV_CACHE_DIR": str(world.root / "uv-cache")}
    plain_a, plain_b = world.root / "plain-a", world.root / "plain-b"
    for venv in (plain_a, plain_b):
        subprocess.run([uv_binary(), "venv", "-q", "-p", "/usr/bin/python3", str(venv)], check=True)
    install = [uv_binary(), "pip", "install", "-q", "--default-index", index.url, BENIGN_WHEEL]
    subprocess.run([*install, "--python", str(plain_a / "bin" / "python")], env=env, check=True)
    _overwrite_installed_module(plain_a)
    subprocess.run([*install, "--python", str(plain_b / "bin" / "python")], env=env, check=True)
    assert "POISONED" in run_script(plain_b, "benign-hello"), "the attack does not work plainly"


@pytest.mark.parametrize("where", ["named", "deep"])
def test_a_linked_venv_stays_read_only_under_safe_run(
    world: World, mode: str, index: LocalIndex, where: str
) -> None:
    """safe-pip links venv files to its shared cache (uv's speed), and safe-run never
    lets a sandbox write such a venv, even when the policy names it for writing
    ("named") or grants a folder far above it ("deep": only safe-pip's registry of
    linked venvs finds it there).  The control: the same policy over a venv
    installed with ``--link-mode copy`` does let the write through, and the next
    install is clean either way."""
    grant = world.root / "deep"
    parent = grant / "a" / "b" if where == "deep" else world.root
    linked, copied = parent / "venv-linked", parent / "venv-copied"
    first = safe_pip(world, mode, "--venv", str(linked), "-i", index.url, BENIGN_WHEEL)
    assert first.returncode == 0, first.stderr
    module = _installed_module(linked)
    assert module.stat().st_ino in _cache_inodes(world), "the venv's file is not the cache's"
    before = module.read_text()

    script = world.write_script(OVERWRITE_FROM_SANDBOX.format(poison=POISON), "overwrite.py")
    _grant_write(world, grant if where == "deep" else linked)
    attack = world.run_safe(mode, str(script), str(module))
    assert attack.returncode == 0, attack.stderr
    assert attack.stdout.startswith("REFUSED"), attack.stdout + attack.stderr
    assert module.read_text() == before
    if where == "named":
        assert f"safe-run: {linked} stays read-only" in attack.stderr, attack.stderr

    fresh = world.root / "venv-fresh"
    second = safe_pip(world, mode, "--venv", str(fresh), "-i", index.url, BENIGN_WHEEL)
    assert second.returncode == 0, second.stderr
    assert run_script(fresh, "benign-hello").strip() == f"hello from {BENIGN_WHEEL}"

    # The control: a venv of copies is writable under the same kind of grant.
    third = safe_pip(
        world, mode, "--venv", str(copied), "--link-mode", "copy", "-i", index.url, BENIGN_WHEEL
    )
    assert third.returncode == 0, third.stderr
    assert (copied / "safe-pip.cfg").read_text().splitlines()[-1] == "link-mode = copy"
    copied_module = _installed_module(copied)
    assert copied_module.stat().st_ino not in _cache_inodes(world)
    _grant_write(world, grant if where == "deep" else copied)
    control = world.run_safe(mode, str(script), str(copied_module))
    assert control.stdout.startswith("WROTE"), control.stdout + control.stderr
    assert "POISONED" in copied_module.read_text()
    later = world.root / "venv-later"
    fourth = safe_pip(world, mode, "--venv", str(later), "-i", index.url, BENIGN_WHEEL)
    assert fourth.returncode == 0, fourth.stderr
    assert run_script(later, "benign-hello").strip() == f"hello from {BENIGN_WHEEL}"


def test_turning_a_linked_venv_into_copies_breaks_every_link(
    world: World, mode: str, index: LocalIndex
) -> None:
    """``--link-mode copy`` on a venv an earlier install linked: afterwards none of
    its files is one of the cache's, the packages of the earlier install included."""
    venv = world.root / "venv"
    first = safe_pip(world, mode, "--venv", str(venv), "-i", index.url, BENIGN_WHEEL)
    assert first.returncode == 0, first.stderr
    assert _installed_module(venv).stat().st_ino in _cache_inodes(world)
    second = safe_pip(
        world, mode, "--venv", str(venv), "--link-mode", "copy", "-i", index.url, BENIGN_SDIST
    )
    assert second.returncode == 0, second.stderr
    shared = _cache_inodes(world)
    linked = [p for p in venv.rglob("*") if p.is_file() and p.stat().st_ino in shared]
    assert not linked, linked
    assert run_script(venv, "benign-hello").strip() == f"hello from {BENIGN_WHEEL}"
    # The venv remembers: a later install without the flag copies too.
    third = safe_pip(world, mode, "--venv", str(venv), "-i", index.url, "--reinstall", BENIGN_WHEEL)
    assert third.returncode == 0, third.stderr
    assert _installed_module(venv).stat().st_ino not in _cache_inodes(world)
    # ...and safe-run lets a policy make it writable again.
    script = world.write_script(OVERWRITE_FROM_SANDBOX.format(poison=POISON), "overwrite.py")
    _grant_write(world, venv)
    wrote = world.run_safe(mode, str(script), str(_installed_module(venv)))
    assert wrote.stdout.startswith("WROTE"), wrote.stdout + wrote.stderr


def test_a_venv_the_policy_writes_gets_copies_by_itself(
    world: World, mode: str, index: LocalIndex
) -> None:
    """The project's ``[tool.safe-run]`` names the venv for writing: safe-pip installs
    copies without being asked, so the policy holds under safe-run (no read-only
    line) and a write there reaches no cache file."""
    venv = world.root / "venv-written"
    _grant_write(world, venv)
    first = safe_pip(world, mode, "--venv", str(venv), "-i", index.url, BENIGN_WHEEL)
    assert first.returncode == 0, first.stderr
    assert (venv / "safe-pip.cfg").read_text().splitlines()[-1] == "link-mode = copy"
    assert _installed_module(venv).stat().st_ino not in _cache_inodes(world)
    script = world.write_script(OVERWRITE_FROM_SANDBOX.format(poison=POISON), "overwrite.py")
    wrote = world.run_safe(mode, str(script), str(_installed_module(venv)))
    assert wrote.stdout.startswith("WROTE"), wrote.stdout + wrote.stderr
    assert "stays read-only" not in wrote.stderr
    later = world.root / "venv-later"
    second = safe_pip(world, mode, "--venv", str(later), "-i", index.url, BENIGN_WHEEL)
    assert second.returncode == 0, second.stderr
    assert run_script(later, "benign-hello").strip() == f"hello from {BENIGN_WHEEL}"


# --- the cache of built wheels ------------------------------------------------------------


def _setuptools_sdist(
    index: LocalIndex, name: str, files: dict[str, str], tool_table: str = ""
) -> None:
    """``name`` 0.3 as an sdist only (replacing an older file of that name), from
    :data:`SETUPTOOLS_PYPROJECT` with ``tool_table`` put before its scripts."""
    pyproject = SETUPTOOLS_PYPROJECT.format(
        name=name, version="0.3", dependencies="[]", module=name.replace("-", "_")
    )
    if tool_table:
        pyproject = pyproject.replace("[project.scripts]", tool_table + "\n[project.scripts]")
    write_sdist(index.directory, name, "0.3", {"pyproject.toml": pyproject, **files})


def _sdist_with_greeting(index: LocalIndex, name: str, greeting: str) -> None:
    """``name`` 0.3 as an sdist only, printing ``greeting`` (replaces an older file)."""
    module = name.replace("-", "_")
    _setuptools_sdist(
        index, name, {f"src/{module}/__init__.py": f"def main():\n    print({greeting!r})\n"}
    )


def test_an_sdist_is_built_once_and_its_wheel_reused(
    world: World, mode: str, index: LocalIndex
) -> None:
    """The second install of the same sdist runs no build: the checked wheel comes
    from safe-pip's cache of builds (by name and version before resolving, by the
    sdist's sha256 when something forces a build, e.g. ``--no-binary``); an sdist the
    index replaced is built again."""
    name = f"built-once-{secrets.token_hex(3)}"
    _sdist_with_greeting(index, name, "first build")
    runs = [world.root / f"venv-{n}" for n in range(4)]
    first = safe_pip(world, mode, "--venv", str(runs[0]), "-i", index.url, name)
    assert first.returncode == 0, first.stderr
    assert outcome(first)["built"] == [f"{name}==0.3"]

    second = safe_pip(world, mode, "--venv", str(runs[1]), "-i", index.url, name)
    assert second.returncode == 0, second.stderr
    assert outcome(second)["built"] == [] and outcome(second)["route"] == "wheels-only"
    assert run_script(runs[1], f"{name}-hi").strip() == "first build"

    third = safe_pip(
        world, mode, "--venv", str(runs[2]), "--no-binary", name, "-i", index.url, name
    )
    assert third.returncode == 0, third.stderr
    assert outcome(third)["built"] == []
    assert outcome(third)["reused_builds"] == [f"{name}==0.3"]

    _sdist_with_greeting(index, name, "second build")  # same file name, other bytes
    fourth = safe_pip(
        world, mode, "--venv", str(runs[3]), "--no-binary", name, "-i", index.url, name
    )
    assert fourth.returncode == 0, fourth.stderr
    assert outcome(fourth)["built"] == [f"{name}==0.3"]
    assert run_script(runs[3], f"{name}-hi").strip() == "second build"


def test_a_cached_build_that_would_overwrite_anothers_files_is_not_offered(
    world: World, mode: str, index: LocalIndex
) -> None:
    """A build is checked against the venv it goes into: a cached wheel that would
    overwrite files of a distribution installed in this venv is built and checked
    again rather than installed from the cache."""
    name = f"squatter-{secrets.token_hex(3)}"
    module = name.replace("-", "_")
    _setuptools_sdist(
        index,
        name,
        {
            f"src/{module}/__init__.py": "def main():\n    print('hi')\n",
            "src/benign_wheel/__init__.py": POISON,
        },
        tool_table=f'[tool.setuptools]\npackages = ["{module}", "benign_wheel"]\n'
        'package-dir = {"" = "src"}\n',
    )
    clean = world.root / "clean"
    first = safe_pip(world, mode, "--venv", str(clean), "-i", index.url, name)
    assert first.returncode == 0, first.stderr  # nothing to overwrite there
    victim = world.root / "victim"
    installed = safe_pip(world, mode, "--venv", str(victim), "-i", index.url, BENIGN_WHEEL)
    assert installed.returncode == 0, installed.stderr
    second = safe_pip(world, mode, "--venv", str(victim), "-i", index.url, name)
    assert second.returncode != 0
    assert "would overwrite files it does not own" in second.stderr, second.stderr
    assert run_script(victim, "benign-hello").strip() == f"hello from {BENIGN_WHEEL}"


def test_a_uv_init_project_installs_editable_with_uvs_own_backend(
    world: World, mode: str, index: LocalIndex
) -> None:
    """``uv init --package`` writes ``uv_build>=<uv's version>``, which the index may
    not carry (this one has no uv_build at all): uv is that backend itself, as for
    bare ``uv sync``.  Installing again picks up a changed entry point."""
    from importlib.metadata import version

    ours = version("uv")
    major, minor = (int(part) for part in ours.split(".")[:2])
    project = world.root / "uvapp"
    (project / "src" / "uvapp").mkdir(parents=True)
    (project / "pyproject.toml").write_text(
        textwrap.dedent(f"""\
        [project]
        name = "uvapp"
        version = "0.1.0"
        requires-python = ">=3.9"
        dependencies = []

        [project.scripts]
        uvapp = "uvapp:main"

        [build-system]
        requires = ["uv_build>={ours},<{major}.{minor + 1}.0"]
        build-backend = "uv_build"
        """)
    )
    (project / "src" / "uvapp" / "__init__.py").write_text("def main():\n    print('one')\n")
    (project / "src" / "uvapp" / "other.py").write_text("def main():\n    print('two')\n")
    for path in (project, *project.rglob("*")):
        path.chmod(0o755 if path.is_dir() else 0o644)
    venv = world.root / "venv"
    args = ("--venv", str(venv), "-i", index.url, "-e", str(project))
    first = safe_pip(world, mode, *args)
    assert first.returncode == 0, first.stdout + first.stderr
    assert run_script(venv, "uvapp").strip() == "one"
    assert not any("uv-build" in p or "uv_build" in p for p in index.paths())
    pyproject = project / "pyproject.toml"
    pyproject.chmod(0o644)
    pyproject.write_text(pyproject.read_text().replace('"uvapp:main"', '"uvapp.other:main"'))
    again = safe_pip(world, mode, *args)
    assert again.returncode == 0, again.stdout + again.stderr
    assert run_script(venv, "uvapp").strip() == "two", "the editable was installed again"
