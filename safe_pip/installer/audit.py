"""What in a venv runs code later: start-up hooks and the scripts packages installed.

An install sandbox stops package code from doing harm *during* the install; what the
package leaves behind runs later, unsandboxed, with the user's full rights.  Two kinds
of leftovers matter:

- **start-up code**, run by every interpreter start in the venv before any user code:
  ``*.pth`` lines starting with ``import`` (``site.py`` ``exec()``\\s them),
  ``sitecustomize`` and ``usercustomize`` modules.  Nobody asked for it to run.
- **scripts**, ``[console_scripts]``/``[gui_scripts]`` entry points written to
  ``bin/``: they run when called, but a script named ``ls`` or ``git`` on a PATH
  that includes the venv's ``bin/`` is called by accident.
- **executables** a wheel puts in ``bin/`` without declaring them: files under
  ``<name>.data/scripts/`` or ``<name>.data/data/bin/``, or a replaced
  ``bin/python``.  They are found by comparing ``bin/`` before and after.

A script or executable whose name is a command on the user's ``PATH`` (``ls``,
``git``, ``python3``) is reported first, as ``shadows-command``: in an activated venv
it runs instead of the real one, with nothing to make anyone look twice.

Everything here reads files and nothing else: no interpreter of the venv is run and
nothing from it is imported, since that would execute exactly the code in question.
A ``.pth`` line that imports a module is reported, not followed: a changed module
that an unchanged ``.pth`` line imports is not detected (nor is any package code
that only runs when imported).
"""

from __future__ import annotations

import csv
import hashlib
import os
import stat

from safe_pip._records import record

STARTUP_KINDS = ("pth-exec", "sitecustomize", "usercustomize")
SCRIPT_KINDS = {"console_scripts": "console-script", "gui_scripts": "gui-script"}
#: A command on the user's PATH that a new ``bin/`` entry would run instead of.
SHADOW_KIND = "shadows-command"
EXECUTABLE_KIND = "executable"
#: In a venv that wraps its scripts (``--wrap-scripts``), a script that is not wrapped.
UNWRAPPED_KIND = "not-wrapped"
#: What a venv holds in ``bin/`` of its own (``python -m venv``, ``uv venv``,
#: virtualenv); checked by the full audit only, since an install that changes one of
#: them shows up in the before/after comparison anyway.
VENV_OWN = ("python", "activate", "Activate", "deactivate", "pydoc")
#: Where a shadowed command would otherwise be found, besides the caller's PATH.
_SYSTEM_PATH = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")

#: The ``distutils-precedence.pth`` of setuptools, whole: ``local`` is the default of
#: setuptools 60 and later (checked up to 84.2.1), ``stdlib`` that of the releases
#: before.  Compared after stripping trailing whitespace.
KNOWN_BENIGN_PTH = frozenset(
    "import os; var = 'SETUPTOOLS_USE_DISTUTILS'; "
    f"enabled = os.environ.get(var, '{default}') == 'local'; "
    "enabled and __import__('_distutils_hack').add_shim();"
    for default in ("local", "stdlib")
)

#: With this in its environment the known-benign ``.pth`` above imports nothing:
#: ``enabled`` is false, so ``_distutils_hack`` (a module in site-packages that any
#: install could have replaced) is never imported.
INERT_STARTUP_ENV = {"SETUPTOOLS_USE_DISTUTILS": "stdlib"}

_CUSTOMIZE = ("sitecustomize", "usercustomize")
_DETAIL_LIMIT = 120


@record
class Finding:
    """One thing in the venv that runs code later, and who put it there."""

    kind: str
    path: str
    detail: str
    distribution: str | None


@record
class VenvState:
    """What :func:`new_findings` compares against: digests, not contents.

    ``startup`` holds ``(path, sha256)`` of every ``*.pth``, ``sitecustomize`` and
    ``usercustomize`` file (a package as one digest over its files);
    ``distributions`` holds ``(dist-info name, version, scripts)`` with scripts as
    ``(kind, name, target)``.
    """

    startup: frozenset[tuple[str, str]]
    distributions: frozenset[tuple[str, str, tuple[tuple[str, str, str], ...]]]
    #: ``(name, identity)`` of every entry of ``bin/`` (see :func:`bin_entries`)
    bin: frozenset[tuple[str, str]] = frozenset()

    def versions(self) -> dict[str, str]:
        """Normalised project name -> version, as the dist-info directories say."""
        return {name.lower().replace("_", "-"): version for name, version, _ in self.distributions}


@record
class _StartupFile:
    """A start-up candidate as read: ``kind`` is ``pth`` or a ``_CUSTOMIZE`` name."""

    kind: str
    path: str
    digest: str
    exec_line: str | None  # a .pth file's first executed line
    benign: bool  # exactly the known setuptools .pth


@record
class _Dist:
    name: str  # as the dist-info directory spells it
    version: str
    dist_info: str
    scripts: tuple[tuple[str, str, str], ...]  # (kind, script name, module:func)


# --- where to look ----------------------------------------------------------------------


def site_packages_dirs(venv: str) -> list[str]:
    """``lib/pythonX.Y/site-packages`` (and ``lib64/...`` when it is another directory).

    Found by listing ``lib/``, never by asking the venv's interpreter (that would run
    its ``.pth`` files).  Every version directory is returned, in case the venv was
    recreated with another Python; a ``lib64`` that links to ``lib`` is counted once.
    """
    found: list[str] = []
    seen: set[tuple[int, int]] = set()
    for lib in ("lib", "lib64"):
        base = os.path.join(venv, lib)
        try:
            names = sorted(os.listdir(base))
        except OSError:
            continue
        for name in names:
            if not name.startswith(("python", "pypy")):
                continue
            candidate = os.path.join(base, name, "site-packages")
            try:
                info = os.stat(candidate)
            except OSError:
                continue
            key = (info.st_dev, info.st_ino)
            if stat.S_ISDIR(info.st_mode) and key not in seen:
                seen.add(key)
                found.append(candidate)
    return found


def _listdir(path: str) -> list[str]:
    try:
        return sorted(os.listdir(path))
    except OSError:
        return []


def _is_customize(name: str) -> str | None:
    """``sitecustomize``/``usercustomize`` when ``name`` could be imported as it
    (a module of any suffix, or a package directory)."""
    for module in _CUSTOMIZE:
        if name == module or name.startswith(module + "."):
            return module
    return None


# --- reading start-up files ---------------------------------------------------------------


def _read(path: str) -> bytes | None:
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError:
        return None


def _first_exec_line(data: bytes) -> str | None:
    """The first line ``site.py`` would ``exec()``: it starts with ``import`` plus a
    space or tab (no leading blanks).  Python 3.13 strips a UTF-8 BOM; so do we."""
    text = data.decode("utf-8", errors="replace").removeprefix("\ufeff")
    for line in text.splitlines():
        if line.startswith(("import ", "import\t")):
            line = line.rstrip()
            if len(line) > _DETAIL_LIMIT:
                line = line[: _DETAIL_LIMIT - 3] + "..."
            return line
    return None


def _path_lines(site: str, data: bytes) -> list[str]:
    """Directories a ``.pth`` file adds to ``sys.path`` (they may hold a
    ``sitecustomize``, which is imported after every ``.pth`` is processed)."""
    text = data.decode("utf-8", errors="replace").removeprefix("\ufeff")
    found = []
    for line in text.splitlines():
        if line.startswith(("#", "import ", "import\t")) or not line.strip():
            continue
        found.append(os.path.abspath(os.path.join(site, line.rstrip())))
    return found


def _tree_digest(path: str) -> str:
    """sha256 over a file, or over a package directory's names, links and files."""
    digest = hashlib.sha256()
    if not os.path.isdir(path):
        data = _read(path)
        return "unreadable" if data is None else hashlib.sha256(data).hexdigest()
    for root, dirs, files in os.walk(path):
        dirs.sort()
        for name in sorted(files + [d for d in dirs if os.path.islink(os.path.join(root, d))]):
            full = os.path.join(root, name)
            relative = os.path.relpath(full, path)
            if os.path.islink(full):
                digest.update(f"L {relative} {os.readlink(full)}\n".encode())
            data = _read(full)
            digest.update(f"F {relative} {len(data) if data is not None else -1}\n".encode())
            digest.update(data or b"")
    return "tree:" + digest.hexdigest()


def _customize_files(directory: str, names: list[str]) -> list[_StartupFile]:
    """``sitecustomize``/``usercustomize`` entries of one ``sys.path`` directory.

    A compiled copy in ``__pycache__`` is run instead of the source when its header
    matches, so it is part of the module's digest.
    """
    found = []
    cached = [n for n in _listdir(os.path.join(directory, "__pycache__")) if _is_customize(n)]
    for name in names:
        module = _is_customize(name)
        if module is None:
            continue
        path = os.path.join(directory, name)
        digest = _tree_digest(path)
        for extra in cached:
            if extra.startswith(module + "."):
                digest += "+" + _tree_digest(os.path.join(directory, "__pycache__", extra))
        found.append(_StartupFile(module, path, digest, None, False))
    return found


def _startup_files(sites: list[str]) -> list[_StartupFile]:
    """Every ``*.pth`` and customize module that an interpreter start would see.

    Hidden ``.pth`` files are included although Python 3.13 skips them: older ones
    do not.
    """
    found: list[_StartupFile] = []
    extra_dirs: list[str] = []
    for site in sites:
        names = _listdir(site)
        for name in names:
            path = os.path.join(site, name)
            if not name.endswith(".pth") or os.path.isdir(path):
                continue
            data = _read(path)
            if data is None:
                found.append(_StartupFile("pth", path, "unreadable", "(unreadable)", False))
                continue
            benign = data.decode("utf-8", errors="replace").rstrip() in KNOWN_BENIGN_PTH
            digest = hashlib.sha256(data).hexdigest()
            found.append(_StartupFile("pth", path, digest, _first_exec_line(data), benign))
            extra_dirs += _path_lines(site, data)
        found += _customize_files(site, names)
    for directory in dict.fromkeys(extra_dirs):
        if directory not in sites and os.path.isdir(directory):
            found += _customize_files(directory, _listdir(directory))
    return found


# --- bin/ ---------------------------------------------------------------------------------


def bin_entries(venv: str) -> dict[str, str]:
    """``name -> identity`` of every file and link directly in ``VENV/bin``.

    The identity (a link's target; a file's mode, size, inode and mtime) changes
    when an install writes the entry, without reading multi-megabyte binaries.
    Directories (``.safe-pip-wrapped``) are not entries.
    """
    found: dict[str, str] = {}
    try:
        with os.scandir(os.path.join(venv, "bin")) as scan:
            for entry in scan:
                try:
                    if entry.is_symlink():
                        found[entry.name] = "link " + os.readlink(entry.path)
                    elif not entry.is_dir(follow_symlinks=False):
                        st = entry.stat(follow_symlinks=False)
                        found[entry.name] = (
                            f"file {st.st_mode:o} {st.st_size} {st.st_ino} {st.st_mtime_ns}"
                        )
                except OSError:
                    continue
    except OSError:
        pass
    return found


def _is_executable(path: str) -> bool:
    try:
        return stat.S_ISREG(os.stat(path).st_mode) and os.access(path, os.X_OK)
    except OSError:
        return False


def shadowed_command(name: str, venv: str) -> str | None:
    """The command ``name`` would shadow on the user's PATH (outside the venv), if any."""
    own = os.path.realpath(os.path.join(venv, "bin"))
    directories = os.environ.get("PATH", "").split(os.pathsep) + list(_SYSTEM_PATH)
    for directory in dict.fromkeys(directories):
        if not directory.startswith("/") or os.path.realpath(directory) == own:
            continue
        candidate = os.path.join(directory, name)
        if _is_executable(candidate):
            return candidate
    return None


def _executable_findings(
    venv: str, names: list[str], dists: list[_Dist], declared: set[str]
) -> list[Finding]:
    """Findings for ``bin/`` entries no distribution declares as a script."""
    undeclared = [name for name in sorted(names) if name not in declared]
    paths = [os.path.join(venv, "bin", name) for name in undeclared]
    owners = _owners(paths, dists)
    findings = []
    for path in paths:
        how = "executable" if _is_executable(path) else "not executable"
        findings.append(Finding(EXECUTABLE_KIND, path, how, owners.get(path)))
    return findings


def _shadow_findings(venv: str, findings: list[Finding]) -> list[Finding]:
    """One ``shadows-command`` finding per ``bin/`` finding named like a command."""
    shadows = []
    bin_dir = os.path.join(venv, "bin")
    for finding in findings:
        if os.path.dirname(finding.path) != bin_dir or finding.kind == SHADOW_KIND:
            continue
        if finding.kind == UNWRAPPED_KIND or (
            finding.kind == EXECUTABLE_KIND and finding.detail != "executable"
        ):
            continue
        real = shadowed_command(os.path.basename(finding.path), venv)
        if real is not None:
            shadows.append(Finding(SHADOW_KIND, finding.path, real, finding.distribution))
    return shadows


def _declared_scripts(dists: list[_Dist]) -> set[str]:
    return {name for dist in dists for _, name, _ in dist.scripts}


# --- distributions and their scripts ------------------------------------------------------


def _parse_scripts(text: str) -> tuple[tuple[str, str, str], ...]:
    """``(kind, name, module:func)`` of the script groups of an ``entry_points.txt``.

    Extras (``[extra]``) are dropped from the target; other groups are ignored.
    """
    scripts = []
    kind: str | None = None
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            kind = SCRIPT_KINDS.get(line[1:-1].strip())
            continue
        name, sep, value = line.partition("=")
        if kind is not None and sep:
            target = value.split("[", 1)[0].strip().replace(" ", "")
            scripts.append((kind, name.strip(), target))
    return tuple(scripts)


def _distributions(sites: list[str]) -> list[_Dist]:
    """Every ``*.dist-info`` with its scripts; one read per dist that has entry points."""
    found = []
    for site in sites:
        for name in _listdir(site):
            if not name.endswith(".dist-info"):
                continue
            dist_name, _, version = name[: -len(".dist-info")].partition("-")
            dist_info = os.path.join(site, name)
            data = _read(os.path.join(dist_info, "entry_points.txt"))
            text = "" if data is None else data.decode("utf-8", errors="replace")
            found.append(_Dist(dist_name, version, dist_info, _parse_scripts(text)))
    return found


def _metadata_name(dist: _Dist) -> str:
    """The project name as METADATA spells it (``Name:``), else the dist-info's."""
    data = _read(os.path.join(dist.dist_info, "METADATA"))
    for line in (data or b"").decode("utf-8", errors="replace").splitlines():
        if not line:
            break
        key, _, value = line.partition(":")
        if key.strip().lower() == "name" and value.strip():
            return value.strip()
    return dist.name


def _record_paths(dist: _Dist) -> list[str]:
    """Absolute paths a dist-info's RECORD lists (relative to its site-packages)."""
    data = _read(os.path.join(dist.dist_info, "RECORD"))
    if data is None:
        return []
    site = os.path.dirname(dist.dist_info)
    rows = csv.reader(data.decode("utf-8", errors="replace").splitlines())
    return [os.path.normpath(os.path.join(site, row[0])) for row in rows if row]


def _owners(paths: list[str], dists: list[_Dist]) -> dict[str, str]:
    """path -> owning distribution, from the RECORDs; a directory is owned by the dist
    that lists a file inside it.  RECORDs are read only when there is something to own."""
    owners: dict[str, str] = {}
    wanted = set(paths)
    if not wanted:
        return owners
    for dist in dists:
        for listed in _record_paths(dist):
            match = listed if listed in wanted else None
            if match is None:
                match = next((w for w in wanted if listed.startswith(w + os.sep)), None)
            if match is not None and match not in owners:
                owners[match] = _metadata_name(dist)
    return owners


# --- findings ------------------------------------------------------------------------------


def _startup_findings(files: list[_StartupFile], dists: list[_Dist]) -> list[Finding]:
    """Findings for the start-up files that run code (a .pth without import lines
    only extends sys.path and is not one)."""
    running = [f for f in files if f.kind != "pth" or f.exec_line is not None]
    owners = _owners([f.path for f in running], dists)
    findings = []
    for item in running:
        if item.kind == "pth":
            kind, detail = "pth-exec", item.exec_line or ""
        else:
            kind, detail = item.kind, "imported at every interpreter start"
        findings.append(Finding(kind, item.path, detail, owners.get(item.path)))
    return findings


def _script_findings(venv: str, dists: list[_Dist]) -> list[Finding]:
    findings = []
    for dist in dists:
        owner: str | None = None
        for kind, name, target in dist.scripts:
            owner = owner or _metadata_name(dist)
            findings.append(Finding(kind, os.path.join(venv, "bin", name), target, owner))
    return sorted(findings, key=lambda f: (f.path, f.kind))


def audit_venv(venv: str) -> list[Finding]:
    """Everything in the venv that runs code later: commands it would shadow first,
    then start-up code, scripts, and undeclared executables in ``bin/``; in a venv
    that wraps its scripts, each script that is not wrapped."""
    from safe_pip.installer.wrap import wrappable, wraps_scripts

    venv = os.path.abspath(venv)
    sites = site_packages_dirs(venv)
    dists = _distributions(sites)
    names = [name for name in bin_entries(venv) if not name.startswith(VENV_OWN)]
    findings = _startup_findings(_startup_files(sites), dists) + _script_findings(venv, dists)
    findings += _executable_findings(venv, names, dists, _declared_scripts(dists))
    if wraps_scripts(venv):
        owners = {f.path: f.distribution for f in findings}
        for name in wrappable(venv, names):
            path = os.path.join(venv, "bin", name)
            findings.append(
                Finding(UNWRAPPED_KIND, path, "runs outside the sandbox", owners.get(path))
            )
    return _shadow_findings(venv, findings) + findings


def snapshot(venv: str) -> VenvState:
    """The state :func:`new_findings` compares with; take it before an install.

    Cheap (about a millisecond for 50 distributions): one listing per site-packages,
    every ``.pth`` read, one ``entry_points.txt`` open per distribution, no RECORD.
    """
    sites = site_packages_dirs(os.path.abspath(venv))
    return VenvState(
        startup=frozenset((f.path, f.digest) for f in _startup_files(sites)),
        distributions=frozenset((d.name, d.version, d.scripts) for d in _distributions(sites)),
        bin=frozenset(bin_entries(os.path.abspath(venv)).items()),
    )


def new_findings(venv: str, before: VenvState) -> list[Finding]:
    """Findings that :func:`snapshot` ``before`` did not have: new or changed start-up
    files (same path, other bytes counts), scripts that are new or now point at
    another ``module:func``, new or rewritten ``bin/`` entries that no distribution
    declares, and, first, every one of those named like a command on PATH."""
    venv = os.path.abspath(venv)
    sites = site_packages_dirs(venv)
    dists = _distributions(sites)
    changed = [f for f in _startup_files(sites) if (f.path, f.digest) not in before.startup]
    old_scripts = {
        (kind, name, target)
        for *_, scripts in before.distributions
        for kind, name, target in scripts
    }
    scripts = [
        finding
        for finding in _script_findings(venv, dists)
        if (finding.kind, os.path.basename(finding.path), finding.detail) not in old_scripts
    ]
    old_bin = dict(before.bin)
    touched = [name for name, key in bin_entries(venv).items() if old_bin.get(name) != key]
    executables = _executable_findings(venv, touched, dists, _declared_scripts(dists))
    findings = _startup_findings(changed, dists) + scripts + executables
    return _shadow_findings(venv, findings) + findings


def changed_bin_entries(venv: str, before: VenvState) -> list[str]:
    """Names in ``bin/`` that are new or were rewritten since ``before``."""
    old_bin = dict(before.bin)
    return sorted(name for name, key in bin_entries(venv).items() if old_bin.get(name) != key)


def startup_code(venv: str) -> list[Finding]:
    """The findings that run at every interpreter start, except setuptools' known
    ``distutils-precedence.pth`` (inert under :data:`INERT_STARTUP_ENV`).

    uv runs the venv's interpreter (``python -I -B``, which still processes the
    ``.pth`` files of site-packages) to query it, so any start-up code in the venv
    runs inside whatever sandbox uv runs in.  The installer gives uv the shared cache
    writable only when this is empty (and passes :data:`INERT_STARTUP_ENV`), so that
    no package code can run where it could poison what later installs read.
    """
    sites = site_packages_dirs(os.path.abspath(venv))
    files = [f for f in _startup_files(sites) if not f.benign]
    if not any(f.kind != "pth" or f.exec_line is not None for f in files):
        return []
    return _startup_findings(files, _distributions(sites))


# --- output ----------------------------------------------------------------------------------


def findings_to_json(findings: list[Finding]) -> list[dict[str, object]]:
    """Plain dicts for ``--json`` output, in the order given."""
    return [
        {"kind": f.kind, "path": f.path, "detail": f.detail, "distribution": f.distribution}
        for f in findings
    ]


def _short_path(path: str) -> str:
    """``site-packages/x.pth`` or ``bin/foo``: enough to find it, short enough to read."""
    parts = path.split(os.sep)
    for anchor in ("site-packages", "bin"):
        if anchor in parts:
            index = len(parts) - 1 - parts[::-1].index(anchor)
            return "/".join(parts[index:])
    return path


def describe(finding: Finding) -> str:
    """One human line, e.g. ``console script bin/foo -> foo.cli:main (foo)``.

    Everything in it comes from the package (names, paths, a ``.pth`` line), so the
    line is made printable: no escape sequence reaches the terminal.
    """
    from safe_pip.terminal import printable

    where = _short_path(finding.path)
    owner = f" ({finding.distribution})" if finding.distribution else ""
    if finding.kind == "pth-exec":
        line = f"pth file {where} runs code at every start: {finding.detail}{owner}"
    elif finding.kind in _CUSTOMIZE:
        line = f"{finding.kind} module {where} runs at every start{owner}"
    elif finding.kind == SHADOW_KIND:
        name = os.path.basename(finding.path)
        line = (
            f"{where} shadows the command {finding.detail}: with the venv active, "
            f"'{name}' runs this instead{owner}"
        )
    elif finding.kind == UNWRAPPED_KIND:
        line = (
            f"{where} is not wrapped although this venv wraps its scripts: it {finding.detail}"
            f" (install its package again to wrap it){owner}"
        )
    elif finding.kind == EXECUTABLE_KIND:
        undeclared = "was added to bin/ without being declared as a script"
        line = f"{where} {undeclared} ({finding.detail}){owner}"
    else:
        label = finding.kind.replace("-", " ")
        line = f"{label} {where} -> {finding.detail}{owner}"
    return printable(line)
