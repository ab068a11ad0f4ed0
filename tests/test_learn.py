"""Learn mode: the sandbox names what it refused and proposes the policy that allows it.

The end-to-end tests follow the attack-test shape of tests/test_attacks.py.  One
program needs three things the default policy does not give it: a data directory
outside the project (read in a child process), a result directory outside it
(written from a thread), and a host on the network; it also tries to
read the fake home's ``~/.ssh/id_rsa``.  Run plainly, all four succeed, the key
included, which proves the program can tell.  Under ``safe-run`` it fails.  Under
``safe-run --learn`` it fails the same way, but the report proposes the data
directory, the result directory and the host, and names the key as kept denied;
after ``--learn --write`` an ordinary run succeeds while the key stays unreadable,
and the pyproject keeps every comment it had.

Evidence is what the program observed or what reached the server, never what the
test arranged.  Everything runs in both sandbox modes, as root and (in CI) as an
unprivileged user.
"""

from __future__ import annotations

import contextlib
import os
import pty
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import pytest
import tomllib
from net_servers import HttpOrigin
from sandbox_harness import SAFE_RUN, World, make_world

from safe_pip.learn.env_lookups import looks_secret, read_lookups, wanted_variables
from safe_pip.learn.findings import Denial, judge
from safe_pip.learn.foresight import Foresight
from safe_pip.learn.proposal import generalise, policy_spelling, propose
from safe_pip.learn.syscalls import fd_only_flags, traced_calls
from safe_pip.learn.tracer import Attempt
from safe_pip.sandbox.fs_rules import FsGrants
from safe_pip.sandbox.seccomp import build_trace_filter
from safe_pip.terminal import printable

needs_safe_run = pytest.mark.skipif(
    not SAFE_RUN.exists(), reason="safe-run is not installed next to python"
)
sandbox = [pytest.mark.sandbox, needs_safe_run]

POLICY_WITH_COMMENTS = """\
# The policy of the victim project: every comment here must survive --write.
[tool.safe-run]
# inputs live in the project
[tool.safe-run.filesystem]
read = [
    "data",  # the small sample
]
"""

PROGRAM = """\
import os, subprocess, sys, threading, urllib.request

data_dir, url, key_path, out_dir = sys.argv[1:5]
ok = True

# the data set, read file by file in a child process (forks are traced too)
reader = subprocess.run(
    [sys.executable, "-c",
     "import os, sys; d = sys.argv[1]; "
     "print(sum(len(open(os.path.join(d, n)).read()) for n in sorted(os.listdir(d))))",
     data_dir],
    capture_output=True, text=True,
)
if reader.returncode == 0:
    print("DATA", reader.stdout.strip())
else:
    ok = False
    print("DATA-FAILED")

# the host
try:
    print("FETCHED", len(urllib.request.urlopen(url, timeout=10).read()))
except Exception as exc:
    ok = False
    print("FETCH-FAILED", exc)

# the environment: a setting the program needs, and a token it should never get
region = os.environ.get("WEATHER_REGION")
print("REGION", region)
ok = ok and region == "eu-north"
print("TOKEN", os.getenv("WEATHER_API_TOKEN"))

# the secret: never needed, always tried
try:
    with open(key_path) as handle:
        print("KEY-READ", handle.read().strip()[-8:])
except OSError as exc:
    print("KEY-DENIED", exc.errno)

# the results, written outside the project from another thread (threads are traced)
written = []
def write_results():
    try:
        with open(os.path.join(out_dir, "result.txt"), "w") as handle:
            handle.write("done")
        written.append(True)
    except OSError as exc:
        print("WRITE-FAILED", exc.errno)
writer = threading.Thread(target=write_results)
writer.start()
writer.join()
ok = ok and bool(written)
sys.exit(0 if ok else 3)
"""


@pytest.fixture
def origin() -> Iterator[HttpOrigin]:
    with HttpOrigin() as server:
        yield server


class Scenario:
    """The program, its world, and the paths it needs."""

    def __init__(self, tmp_path: Path, origin: HttpOrigin) -> None:
        self.world: World = make_world(tmp_path, POLICY_WITH_COMMENTS)
        self.data = tmp_path / "datasets" / "weather"
        self.data.mkdir(parents=True)
        for index in range(4):
            (self.data / f"day{index}.csv").write_text(f"t,{index}\n")
        self.results = tmp_path / "results"
        self.results.mkdir()
        for path in (tmp_path / "datasets", self.data, self.results):
            path.chmod(0o777 if path == self.results else 0o755)
        self.origin = origin
        self.key = self.world.home / ".ssh" / "id_rsa"
        self.script = self.world.write_script(PROGRAM, "analyse.py")
        self.args = (str(self.data), origin.url("/hello"), str(self.key), str(self.results))

    ENV: ClassVar[dict[str, str]] = {
        "WEATHER_REGION": "eu-north",
        "WEATHER_API_TOKEN": "wt-" + "7" * 20,
    }

    def plain(self) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, str(self.script), *self.args],
            cwd=self.world.project,
            env=self.world.env(**self.ENV),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def safe(self, mode: str, *flags: str) -> subprocess.CompletedProcess[str]:
        return self.world.run_safe(
            mode, str(self.script), *self.args, flags=flags, env_extra=self.ENV
        )


def learn_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("safe-run: learn:")]


def suggested_table(stderr: str) -> dict[str, object]:
    """The TOML block after the 'suggested policy' line, parsed."""
    marker = "safe-run: learn: suggested policy for "
    _head, found, tail = stderr.partition(marker)
    assert found, stderr
    toml_text = tail.split("\n", 1)[1]
    table = tomllib.loads(toml_text)["tool"]["safe-run"]
    assert isinstance(table, dict)
    return table


@pytest.mark.parametrize("marks", [pytest.param(None, marks=sandbox)])
def test_learn_proposes_what_the_program_needs_and_keeps_ssh_denied(
    tmp_path: Path, mode: str, origin: HttpOrigin, marks: None
) -> None:
    scenario = Scenario(tmp_path, origin)
    world = scenario.world

    plain = scenario.plain()
    assert plain.returncode == 0, plain.stdout + plain.stderr
    assert "KEY-READ" in plain.stdout, "the probe must be able to read the key unsandboxed"
    assert f"TOKEN {Scenario.ENV['WEATHER_API_TOKEN']}" in plain.stdout
    (scenario.results / "result.txt").unlink()
    origin.reset()

    refused = scenario.safe(mode)
    assert refused.returncode == 3, refused.stdout + refused.stderr
    assert "DATA-FAILED" in refused.stdout and "KEY-DENIED" in refused.stdout
    assert not origin.saw("/hello")

    learned = scenario.safe(mode, "--learn")
    # One command: the first run fails at what it lacks, learn runs it again with
    # that granted, and the last run -- under everything learned -- succeeds.
    assert learned.returncode == 0, learned.stdout + learned.stderr
    assert learned.stdout.count("KEY-DENIED") >= 2, "learn mode must not loosen the sandbox"
    assert "DATA-FAILED" in learned.stdout and "DATA 16" in learned.stdout
    assert origin.saw("/hello")  # the second run, with the host allowed
    lines = learn_lines(learned.stderr)
    assert any(line.startswith("safe-run: learn: run 1 asked for ") for line in lines), lines
    assert f"safe-run: learn: needs read access to {scenario.data}" in lines, lines
    assert f"safe-run: learn: needs write access to {scenario.results}" in lines, lines
    assert f"safe-run: learn: needs the network host {origin.authority}" in lines, lines
    assert any(
        line.startswith("safe-run: learn: kept denied: ~/.ssh/id_rsa (on the deny list")
        for line in lines
    ), lines
    assert (
        "safe-run: learn: looked for the environment variable WEATHER_REGION, which you "
        "have and the sandbox does not pass"
    ) in lines, lines
    assert any(
        line.startswith("safe-run: learn: kept out: the environment variable WEATHER_API_TOKEN")
        for line in lines
    ), lines
    assert "TOKEN None" in learned.stdout
    table = suggested_table(learned.stderr)
    filesystem = table["filesystem"]
    assert isinstance(filesystem, dict)
    assert filesystem["read"] == ["data", str(scenario.data)]
    assert filesystem["write"] == [str(scenario.results)]
    assert table["network"] == {"allow": [origin.authority]}
    assert table["env"] == {"pass": ["WEATHER_REGION"]}
    proposed = [*filesystem["read"], *filesystem["write"]]
    ssh = str(world.home / ".ssh")
    assert not any(str(p).startswith((ssh, "~")) for p in proposed)
    assert world.project.joinpath("pyproject.toml").read_text().endswith(POLICY_WITH_COMMENTS), (
        "without --write the pyproject is not touched"
    )


@pytest.mark.parametrize("marks", [pytest.param(None, marks=sandbox)])
def test_learn_write_then_the_program_runs_and_the_key_stays_hidden(
    tmp_path: Path, mode: str, origin: HttpOrigin, marks: None
) -> None:
    scenario = Scenario(tmp_path, origin)
    pyproject = scenario.world.project / "pyproject.toml"
    before = pyproject.read_text()

    written = scenario.safe(mode, "--learn", "--write", "--yes")
    assert written.returncode == 0, written.stdout + written.stderr
    assert "--write changes" in written.stderr and "+write = [" in written.stderr
    after = pyproject.read_text()
    for line in before.splitlines():
        if "#" in line:
            assert line in after, f"--write dropped {line!r}"
    policy = tomllib.loads(after)["tool"]["safe-run"]
    assert policy["filesystem"]["read"] == ["data", str(scenario.data)]
    assert policy["filesystem"]["write"] == [str(scenario.results)]
    assert policy["network"]["allow"] == [origin.authority]
    assert policy["env"]["pass"] == ["WEATHER_REGION"]
    assert any("added" in line for line in learn_lines(written.stderr))

    origin.reset()
    second = scenario.safe(mode)
    assert second.returncode == 0, second.stdout + second.stderr
    assert "DATA 16" in second.stdout
    assert origin.saw("/hello")
    assert (scenario.results / "result.txt").read_text() == "done"
    assert "KEY-DENIED" in second.stdout and scenario.world.secret not in second.stdout
    assert "REGION eu-north" in second.stdout and "TOKEN None" in second.stdout

    again = scenario.safe(mode, "--learn")
    assert again.returncode == 0, again.stdout + again.stderr
    lines = learn_lines(again.stderr)
    assert "safe-run: learn: the sandbox refused nothing a policy should grant" in lines
    assert any("kept denied: ~/.ssh/id_rsa" in line for line in lines), lines


@pytest.mark.parametrize("marks", [pytest.param(None, marks=sandbox)])
def test_failed_run_names_refused_hosts_and_points_at_learn(
    tmp_path: Path, mode: str, origin: HttpOrigin, marks: None
) -> None:
    world = make_world(tmp_path)
    script = world.write_script(
        "import sys, urllib.request\n"
        "try:\n"
        "    urllib.request.urlopen(sys.argv[1], timeout=10)\n"
        "except Exception as exc:\n"
        "    print('FAILED', exc)\n"
        "    sys.exit(4)\n"
    )
    other = HttpOrigin()
    with other:
        failed = world.run_safe(
            mode, str(script), other.url("/hello"), flags=("--allow-host", origin.authority)
        )
        worked = world.run_safe(
            mode, str(script), origin.url("/hello"), flags=("--allow-host", origin.authority)
        )
    assert failed.returncode == 4, failed.stdout + failed.stderr
    assert not other.saw("/hello")
    hint = [line for line in failed.stderr.splitlines() if "exited with status 4" in line]
    assert len(hint) == 1 and "refused 1 network connection" in hint[0], failed.stderr
    assert "--learn" in hint[0]
    assert f'add "{other.authority}" to [tool.safe-run.network] allow' in failed.stderr
    assert worked.returncode == 0, worked.stdout + worked.stderr
    assert "exited with status" not in worked.stderr


@pytest.mark.parametrize("marks", [pytest.param(None, marks=sandbox)])
def test_failed_run_at_a_terminal_points_at_learn(tmp_path: Path, mode: str, marks: None) -> None:
    world = make_world(tmp_path)
    script = world.write_script("import sys\nopen(sys.argv[1]).read()\n")
    outside = tmp_path / "elsewhere.txt"
    outside.write_text("x")
    outside.chmod(0o644)
    primary, secondary = pty.openpty()
    try:
        process = subprocess.run(
            world.safe_run_argv(str(script), str(outside)),
            cwd=world.project,
            env=world.env(mode),
            stdout=subprocess.DEVNULL,
            stderr=secondary,
            timeout=60,
            check=False,
        )
        os.close(secondary)
        output = b""
        while True:
            try:
                chunk = os.read(primary, 4096)
            except OSError:
                break
            if not chunk:
                break
            output += chunk
    finally:
        os.close(primary)
    assert process.returncode == 1
    text = output.decode()
    assert "PermissionError" in text or "FileNotFoundError" in text, text
    assert "exited with status 1; if it needed a path the sandbox hides" in text, text
    assert "--learn" in text


# --- units: no sandbox ------------------------------------------------------------------


@pytest.mark.parametrize("arch", ["x86_64", "aarch64"])
def test_traced_call_tables(arch: str) -> None:
    calls = traced_calls(arch)
    names = {call.name for call in calls.values()}
    assert {"openat", "execve", "newfstatat", "statx", "unlinkat", "mkdirat"} <= names
    assert "openat2" in names and "renameat2" in names
    plain = build_trace_filter(calls, arch)
    assert len(plain) % 8 == 0 and len(plain) // 8 == len(calls) + 6
    shortcuts = fd_only_flags(calls)
    assert len(shortcuts) == 3  # newfstatat, statx, execveat
    with_shortcuts = build_trace_filter(calls, arch, shortcuts)
    assert len(with_shortcuts) // 8 == len(calls) + 6 + 2 * len(shortcuts)


def test_unknown_architecture_has_no_table() -> None:
    with pytest.raises(KeyError):
        traced_calls("mips")


HOME = "/home/ada"
PROJECT = "/home/ada/proj"


def test_generalise_folds_files_into_their_directory() -> None:
    files = [f"/srv/data/{n}.csv" for n in range(300)]
    assert generalise(files, home=HOME, project_dir=PROJECT) == ["/srv/data"]


def test_generalise_keeps_a_single_file_exact() -> None:
    assert generalise(["/srv/data/one.csv"], home=HOME, project_dir=PROJECT) == [
        "/srv/data/one.csv"
    ]


def test_generalise_folds_sibling_directories() -> None:
    paths = ["/srv/data/a/x", "/srv/data/a/y", "/srv/data/b"]
    assert generalise(paths, home=HOME, project_dir=PROJECT) == ["/srv/data"]


@pytest.mark.parametrize(
    "paths",
    [
        ["/srv/a", "/srv/b"],  # top level: /srv
        ["/home/ada/notes.txt", "/home/ada/todo.txt"],  # the home itself
        ["/home/x", "/home/y"],  # above the home
        ["/home/ada/proj2", "/home/ada/proj3"],  # siblings of the project: home
    ],
)
def test_generalise_never_climbs_to_broad_directories(paths: list[str]) -> None:
    assert generalise(paths, home=HOME, project_dir=PROJECT) == sorted(paths)


def test_policy_spelling() -> None:
    assert policy_spelling("/home/ada/proj/out", home=HOME, project_dir=PROJECT) == "out"
    assert policy_spelling("/home/ada/data", home=HOME, project_dir=PROJECT) == "~/data"
    assert policy_spelling("/srv/x", home=HOME, project_dir=PROJECT) == "/srv/x"


def _attempt(
    path: Path | str, access: str = "read", errno: int = 13, call: str = "openat"
) -> Attempt:
    return Attempt(str(path), access, errno, call)


def test_judge_sorts_real_denials_from_ordinary_misses(tmp_path: Path) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "a.csv").write_text("x")
    (tmp_path / "link").symlink_to(data / "a.csv")
    secret = tmp_path / "home" / ".ssh"
    secret.mkdir(parents=True)
    (secret / "id_rsa").write_text("k")
    project = tmp_path / "proj"
    project.mkdir()
    (project / "pyproject.toml").write_text("")
    private = tmp_path / "private"
    private.mkdir()
    (private / "x").write_text("")
    grants = FsGrants(
        read=(str(project),), deny=(str(secret),), protected=(str(project / "pyproject.toml"),)
    )
    attempts = [
        _attempt(data / "missing.csv", errno=2),  # does not exist anywhere: a miss
        _attempt(data / "a.csv"),  # exists outside: a denial
        _attempt(tmp_path / "link"),  # a symlink: the grant names its target
        _attempt(secret / "id_rsa", errno=2),  # on the deny list
        _attempt(project / "pyproject.toml", "write", 30),  # protected
        _attempt(tmp_path / "out" / "new.txt", "write", 2),  # parent missing: a miss
        _attempt(data / "new.txt", "write", 13),  # create in an existing dir
        _attempt(data / "gone", "entry", 13, "unlinkat"),  # removing what is not there
        _attempt(private / "x"),  # the sandbox's own private dir
        _attempt("/proc/1/environ"),  # never granted
    ]
    found = judge(attempts, grants, private_dir=str(private))
    assert found == [
        Denial(str(data / "a.csv"), "read", str(data / "a.csv"), "read"),
        Denial(
            str(secret / "id_rsa"),
            "read",
            str(secret / "id_rsa"),
            "read",
            "on the deny list",
            str(secret),
        ),
        Denial(
            str(project / "pyproject.toml"),
            "write",
            str(project / "pyproject.toml"),
            "write",
            "a protected path",
            str(project / "pyproject.toml"),
        ),
        Denial(str(data / "new.txt"), "write", str(data), "write"),
    ]


@pytest.mark.parametrize(
    ("name", "secret"),
    [
        ("OPENAI_API_KEY", True),
        ("GITHUB_TOKEN", True),
        ("AWS_REGION", True),
        ("DB_PASSWORD", True),
        ("SENTRY_DSN", True),
        ("WEATHER_REGION", False),
        ("KEYBOARD_LAYOUT", False),
        ("EDITOR", False),
        # names that escaped the word list before (the attack of issue 15)
        ("PGPASSWORD", True),
        ("OPENAI_APIKEY", True),
        ("GITHUB_PAT", True),
        ("SLACK_WEBHOOK_URL", True),
        ("MYSECRETS", True),
        ("DB_PASS", True),
        ("LANG", False),
        ("PYTHONPATH", False),
        ("PATH", False),
    ],
)
def test_looks_secret(name: str, secret: bool) -> None:
    assert looks_secret(name) is secret


@pytest.mark.parametrize(
    ("value", "secret"),
    [
        ("postgres://app:db-s3cret@db/prod", True),
        ("https://user:pw@index.example/simple", True),
        ("ghp_" + "a1" * 18, True),
        ("sk-proj-" + "x" * 30, True),
        ("AKIA" + "A" * 16, True),
        ("xoxb-1234567890-abcdef", True),
        ("-----BEGIN OPENSSH PRIVATE KEY-----\nabc", True),
        ("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.sig", True),
        ("https://db.example/prod", False),
        ("eu-north", False),
        ("/usr/local/bin:/usr/bin", False),
    ],
)
def test_a_secret_value_is_a_secret_whatever_its_name(value: str, secret: bool) -> None:
    assert looks_secret("DATABASE_URL", value) is secret


def test_read_lookups_takes_only_well_formed_names(tmp_path: Path) -> None:
    (tmp_path / "hook").mkdir()
    record = tmp_path / "hook" / "lookups"
    record.write_bytes(b"GOOD\n\x1b[2J\nALSO_GOOD\nGOOD\n1BAD\nbad-name\n\xff\n" + b"X" * 300)
    assert read_lookups(str(record)) == ["GOOD", "ALSO_GOOD"]
    assert read_lookups(str(tmp_path / "hook" / "absent")) == []


def test_read_lookups_does_not_follow_what_the_sandbox_planted(tmp_path: Path) -> None:
    """The record lies where the sandbox can write: a symlink must not be followed."""
    users_file = tmp_path / "users-file"
    users_file.write_text("HOME\nPATH\n")
    hook_dir = tmp_path / "tmp" / "safe-run-learn-env"
    hook_dir.mkdir(parents=True)
    (hook_dir / "lookups").symlink_to(users_file)
    assert read_lookups(str(hook_dir / "lookups")) == []
    (hook_dir / "lookups").unlink()
    os.mkfifo(hook_dir / "lookups")
    assert read_lookups(str(hook_dir / "lookups")) == []
    (hook_dir / "lookups").unlink()
    hook_dir.rmdir()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "lookups").write_text("HOME\n")
    hook_dir.symlink_to(elsewhere)
    assert read_lookups(str(hook_dir / "lookups")) == []


def test_wanted_variables_only_what_the_caller_has_and_the_sandbox_lacks() -> None:
    looked_for = ["REGION", "HOME", "UNSET", "MY_TOKEN"]
    caller = {"REGION": "eu", "HOME": "/h", "MY_TOKEN": "t"}
    sandbox = {"HOME": "/private"}
    assert wanted_variables(looked_for, caller, sandbox) == (["REGION"], ["MY_TOKEN"])


def test_printable_strips_terminal_controls() -> None:
    assert printable("/srv/\x1b[2Jx\ty") == "/srv/?[2Jx?y"
    assert printable("a\nb", keep_newlines=True) == "a\nb"


def test_propose_drops_reads_under_writes_and_keeps_denied_apart() -> None:
    denials = [
        Denial("/srv/out/a", "read", "/srv/out/a", "read"),
        Denial("/srv/out/b", "write", "/srv/out", "write"),
        Denial("/srv/in/x", "read", "/srv/in/x", "read"),
        Denial("/home/ada/.ssh/id_rsa", "read", "/home/ada/.ssh/id_rsa", "read",
               "on the deny list", "/home/ada/.ssh"),
    ]  # fmt: skip
    proposal = propose(denials, ["h:1", "h:1", "g:2"], home=HOME, project_dir=PROJECT)
    assert proposal.read == ("/srv/in/x",)
    assert proposal.write == ("/srv/out",)
    assert proposal.hosts == ("h:1", "g:2")
    assert proposal.kept == (("/home/ada/.ssh/id_rsa", "on the deny list", "/home/ada/.ssh"),)


def test_foresight_follows_only_calls_that_could_be_refusals(tmp_path: Path) -> None:
    granted = tmp_path / "granted"
    (granted / "pkg").mkdir(parents=True)
    (granted / "pkg" / "mod.py").write_text("")
    (granted / "escape").symlink_to(tmp_path / "outside.txt")
    (tmp_path / "outside.txt").write_text("")
    out = tmp_path / "out"
    out.mkdir()
    secret = granted / "secret"
    secret.mkdir()
    (secret / "key").write_text("")
    protected = out / "pyproject.toml"
    protected.write_text("")
    private = tmp_path / "private"
    private.mkdir()
    grants = FsGrants(
        read=(str(granted),), write=(str(out),), deny=(str(secret),), protected=(str(protected),)
    )
    look = Foresight(grants, str(private))
    # granted and present: allowed, no second stop
    assert not look.may_be_refused(str(granted / "pkg" / "mod.py"), "read")
    # missing everywhere: an ordinary miss
    assert not look.may_be_refused(str(granted / "pkg" / "mod.cpython-311.so"), "read")
    assert not look.may_be_refused(str(tmp_path / "nowhere" / "new.txt"), "write")
    # outside the grants, a symlink, the deny list: follow to the result
    assert look.may_be_refused(str(tmp_path / "outside.txt"), "read")
    assert look.may_be_refused(str(granted / "escape"), "read")
    assert look.may_be_refused(str(secret / "key"), "read")
    # writes: inside a write grant yes, onto a protected path or a read grant no
    assert not look.may_be_refused(str(out / "new.txt"), "write")
    assert not look.may_be_refused(str(out / "new-dir"), "entry")
    assert look.may_be_refused(str(protected), "write")
    assert look.may_be_refused(str(granted / "pkg" / "mod.py"), "write")
    assert look.may_be_refused(str(granted / "pkg" / "new.py"), "entry")
    # the run's own scratch space and /proc are never reported
    assert not look.may_be_refused(str(private / "x"), "read")
    assert not look.may_be_refused("/proc/1/environ", "read")


@pytest.mark.parametrize("marks", [pytest.param(None, marks=sandbox)])
def test_learn_run_ends_on_sigterm(tmp_path: Path, mode: str, marks: None) -> None:
    """The tracer reaps every tracee: a killed namespace must not hang the supervisor."""
    world = make_world(tmp_path)
    process = subprocess.Popen(
        world.safe_run_argv("--", "sleep", "60", flags=("--learn",)),
        cwd=world.project,
        env=world.env(mode),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    # Until the program itself runs (a fixed pause lost the race on a loaded box: the
    # signal came before safe-run had its handlers in place).
    deadline = time.monotonic() + 30
    while not _descendant_runs(process.pid, b"sleep\x0060") and time.monotonic() < deadline:
        time.sleep(0.05)
    # Everything with safe-run's command line at once, as `pkill -f` or a service
    # manager stopping a cgroup would: the sandbox's first child dies before the
    # program, so the namespace is torn down around processes only we can reap.
    for pid in (*children_of(process.pid), process.pid):
        with contextlib.suppress(ProcessLookupError):  # gone already: fine
            os.kill(pid, signal.SIGTERM)
    assert process.wait(timeout=20) == 128 + signal.SIGTERM


def _descendant_runs(root: int, cmdline: bytes) -> bool:
    """Whether a process below ``root`` has exactly this NUL-separated command line."""
    pending = [root]
    while pending:
        for child in children_of(pending.pop()):
            try:
                if Path(f"/proc/{child}/cmdline").read_bytes().rstrip(b"\0") == cmdline:
                    return True
            except OSError:
                continue
            pending.append(child)
    return False


def children_of(parent: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat[stat.rfind(")") + 2 :].split()[1]) == parent:
                found.append(int(entry))
    return found


@pytest.mark.parametrize("marks", [pytest.param(None, marks=sandbox)])
def test_learn_run_kills_leftovers_and_lets_stopped_children_go_on(
    tmp_path: Path, mode: str, marks: None
) -> None:
    world = make_world(tmp_path)
    marker = str(40000 + os.getpid() % 20000)  # a sleep length no other test uses
    script = world.write_script(
        "import os, signal, subprocess, sys, time\n"
        # a child that stops itself (a group-stop under the tracer) until SIGCONT
        "child = subprocess.Popen([sys.executable, '-c', 'import os, signal; "
        'os.kill(os.getpid(), signal.SIGSTOP); print("RESUMED", flush=True)\'])\n'
        "time.sleep(0.5)\n"
        "os.kill(child.pid, signal.SIGCONT)\n"
        "print('CHILD', child.wait(timeout=10), flush=True)\n"
        # and a daemon that would outlive the program
        f"subprocess.Popen(['sleep', '{marker}'], start_new_session=True)\n"
        "sys.exit(5)\n"
    )
    out = world.run_safe(mode, str(script), flags=("--learn",), timeout=30)
    assert out.returncode == 5, out.stdout + out.stderr
    assert "RESUMED" in out.stdout and "CHILD 0" in out.stdout
    leftovers = subprocess.run(["pgrep", "-f", f"sleep {marker}"], capture_output=True, text=True)
    assert leftovers.stdout == "", "a daemon outlived the learn run"


# --- what learn never proposes (issue: "learn proposes doors") ------------------------------

PLANT_PTH = """
import os, site, sys
site_dir = next(p for p in site.getsitepackages() if p.startswith(sys.prefix))
try:
    with open(os.path.join(site_dir, "zz-planted.pth"), "w") as handle:
        handle.write("import os\\n")
    print("LEAK planted")
except OSError as exc:
    print("BLOCKED", exc.errno)
import json  # a bytecode write may be attempted here too: never a proposal
"""


@pytest.mark.parametrize("marks", [pytest.param(None, marks=sandbox)])
def test_learn_never_proposes_writing_a_venv(tmp_path: Path, mode: str, marks: None) -> None:
    """A program that plants a .pth in its venv would, with the grant, run code at the
    venv's next start outside any sandbox: learn reports it, never proposes it."""
    world = make_world(tmp_path)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    script = world.write_script(PLANT_PTH, "plant.py")
    plain = subprocess.run(
        [str(venv / "bin" / "python"), str(script)], capture_output=True, text=True, check=False
    )
    assert "LEAK planted" in plain.stdout, plain.stdout + plain.stderr  # the control
    for planted in venv.glob("lib/python*/site-packages/zz-planted.pth"):
        planted.unlink()
    result = world.run_safe(mode, "--venv", str(venv), "--learn", "--write", "--yes", str(script))
    lines = learn_lines(result.stderr)
    assert "LEAK" not in result.stdout, result.stdout
    assert any(
        "not proposed: write access to" in line and "site-packages" in line for line in lines
    ), lines
    assert not any("needs write access" in line for line in lines), lines
    policy = tomllib.loads((world.project / "pyproject.toml").read_text())["tool"]["safe-run"]
    assert "write" not in policy.get("filesystem", {}), policy
    assert not list(venv.glob("lib/python*/site-packages/zz-planted.pth"))


AROUND_HOME = """
import os, pwd, sys
home = pwd.getpwuid(os.getuid()).pw_dir if len(sys.argv) < 2 else sys.argv[1]
for name in ("a.toml", "b.toml"):
    try:
        open(os.path.join(home, ".config", "tool", name)).read()
        print("READ", name)
    except OSError as exc:
        print("NOT-READ", name, exc.errno)
try:
    print("LISTED", len(os.listdir(home)))
except OSError as exc:
    print("NOT-LISTED", exc.errno)
"""


@pytest.mark.parametrize("marks", [pytest.param(None, marks=sandbox)])
def test_learn_proposes_the_files_used_not_the_home_directory(
    tmp_path: Path, mode: str, marks: None
) -> None:
    world = make_world(tmp_path)
    tool = world.home / ".config" / "tool"
    tool.mkdir(parents=True)
    for name in ("a.toml", "b.toml"):
        (tool / name).write_text("x = 1\n")
    script = world.write_script(AROUND_HOME, "around.py")
    result = world.run_safe(mode, "--learn", str(script), str(world.home))
    lines = learn_lines(result.stderr)
    assert "safe-run: learn: needs read access to ~/.config/tool" in lines, lines
    assert any(
        line.startswith("safe-run: learn: not proposed: read access to ~:") for line in lines
    )
    table = suggested_table(result.stderr)
    assert table["filesystem"] == {"read": ["~/.config/tool"]}, table
    assert "READ a.toml" in result.stdout  # the second run, with the narrow grant


SECRET_ENV = {
    "PGPASSWORD": "pg-s3cret",
    "DATABASE_URL": "postgres://app:db-s3cret@db/prod",
    "OPENAI_APIKEY": "sk-canary",
    "MYSECRETS": "x",
    "GITHUB_PAT": "ghp_canary",
    "SLACK_WEBHOOK_URL": "https://hooks.slack.com/services/T/B/canary",
    "DEPLOY_REGION": "eu-north",
}
LOOK_FOR_ENV = f"""
import os
for name in {sorted(SECRET_ENV)!r}:
    print(name, os.environ.get(name))
"""


@pytest.mark.parametrize("marks", [pytest.param(None, marks=sandbox)])
def test_learn_never_passes_a_secret_looking_variable(
    tmp_path: Path, mode: str, marks: None
) -> None:
    world = make_world(tmp_path)
    script = world.write_script(LOOK_FOR_ENV, "env.py")
    plain = subprocess.run(
        [sys.executable, str(script)],
        env=world.env(**SECRET_ENV), capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert "DATABASE_URL postgres://app:db-s3cret@db/prod" in plain.stdout  # the control
    result = world.run_safe(mode, "--learn", "--write", "--yes", str(script), env_extra=SECRET_ENV)
    lines = learn_lines(result.stderr)
    policy = tomllib.loads((world.project / "pyproject.toml").read_text())["tool"]["safe-run"]
    assert policy["env"]["pass"] == ["DEPLOY_REGION"], policy
    for name in set(SECRET_ENV) - {"DEPLOY_REGION"}:
        assert any(f"kept out: the environment variable {name} looks like a secret" in line
                   for line in lines), (name, lines)  # fmt: skip
    after = world.run_safe(mode, str(script), env_extra=SECRET_ENV)
    assert "DEPLOY_REGION eu-north" in after.stdout and "s3cret" not in after.stdout


CONCEAL = """
import os, sys
sys.stdout.write("all good\\x1b[8m")
sys.stdout.flush()
open(os.path.join(os.environ.get("OUT", "/nonexistent"), "x"), "w")
"""


@pytest.mark.parametrize("marks", [pytest.param(None, marks=sandbox)])
def test_learn_report_is_readable_after_a_program_conceals_the_terminal(
    tmp_path: Path, mode: str, marks: None
) -> None:
    """A program that ends in ESC[8m (conceal) must not hide the report, nor the write
    it asks for: the terminal is reset first, and --write asks at the terminal."""
    import pty

    world = make_world(tmp_path)
    out = tmp_path / "out"
    out.mkdir()
    out.chmod(0o777)
    script = world.write_script(CONCEAL, "hide.py")
    env = world.env(mode, OUT=str(out), TERM="xterm")
    argv = world.safe_run_argv("--learn", "--write", "--allow-env", "OUT", str(script))
    pid, fd = pty.fork()
    if pid == 0:  # pragma: no cover - the child execs
        os.chdir(world.project)
        os.execve(argv[0], argv, env)
    seen = b""
    answered = False
    while True:
        try:
            chunk = os.read(fd, 4096)
        except OSError:
            break
        if not chunk:
            break
        seen += chunk
        if not answered and b"write these changes? [y/N]" in seen:
            os.write(fd, b"n\n")
            answered = True
    os.waitpid(pid, 0)
    concealed = seen.index(b"\x1b[8m")
    reset = seen.index(b"\x1b[0m", concealed)
    report = seen.index(b"safe-run: learn: needs write access to", concealed)
    assert reset < report, seen[concealed:][:400]
    assert answered, seen[-600:]
    assert b"+write = [" in seen  # the diff was shown before the question
    assert "write" not in (world.project / "pyproject.toml").read_text(), "answered no"


def test_with_internal_addresses_names_them_beside_the_host() -> None:
    from safe_pip.learn.session import with_internal_addresses

    def resolver(host: str, port: int) -> list[tuple[int, str]]:
        return {
            "gateway.example": [(2, "10.1.2.3")],
            "devbox.example": [(2, "127.0.0.2")],
            "public.example": [(2, "93.184.216.34")],
        }[host]

    # A gateway's private address is reached through the exact name alone; loopback
    # never is, so its address is proposed beside the name.
    hints = ["gateway.example", "devbox.example", "public.example:8443", "localhost:8080"]
    assert with_internal_addresses(hints, resolver) == [
        "gateway.example", "devbox.example", "127.0.0.2", "public.example:8443", "localhost:8080",
    ]  # fmt: skip
