"""The command lines and the policy format, table-driven and fuzzed: every input ends
in a result or one line with the documented exit code -- never a traceback.

Exit codes (README): 2 for a usage error (an unknown option, a missing or empty
value), 125 for a policy that cannot be used (one line naming file and key).
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
from pathlib import Path

import pytest

from safe_pip.cli.run import RunOptions, parse_args
from safe_pip.errors import PolicyError, SafePipError

BIN = Path(sys.executable).parent

# --- safe-run's own option parser, table-driven ------------------------------------

PARSES = [
    (["script.py", "a", "-v"], {"words": ["script.py", "a", "-v"], "kind": "auto"}),
    (["-v", "--", "ls", "-l"], {"verbose": True, "kind": "command", "words": ["ls", "-l"]}),
    (["-m", "json.tool", "x"], {"kind": "module", "words": ["json.tool", "x"]}),
    (["-mjson.tool", "x"], {"kind": "module", "words": ["json.tool", "x"]}),
    (["--allow-read", "a", "--allow-read=b", "t"], {"allow_read": ["a", "b"], "words": ["t"]}),
    (["--venv=v", "--project", "p", "t"], {"venv": "v", "project": "p", "words": ["t"]}),
    (["--allow-host", "x.org", "--no-network", "t"], {"allow_host": ["x.org"], "no_network": True}),
    (["--learn", "--write", "--yes", "t"], {"learn": True, "write": True, "yes": True}),
    (["--explain"], {"explain": True, "words": []}),
    (["-h"], {"show_help": True}),
    (["--version"], {"show_version": True}),
    (["-", "x"], {"words": ["-", "x"]}),
    (["--credential", "openai", "t"], {"credentials": ["openai"]}),
    (["--profile", "pypi", "--allow-env", "LANG", "t"],
     {"profiles": ["pypi"], "allow_env": ["LANG"]}),
]  # fmt: skip


@pytest.mark.parametrize(("argv", "expected"), PARSES)
def test_parses(argv: list[str], expected: dict[str, object]) -> None:
    opts = parse_args(argv)
    for name, value in expected.items():
        assert getattr(opts, name) == value, (name, getattr(opts, name))


REFUSALS = [
    (["--frobnicate", "t"], "unknown option --frobnicate"),
    (["--allow-read"], "--allow-read needs a value"),
    (["--allow-read="], "--allow-read needs a value (it was empty)"),
    (["--project=", "t"], "--project needs a value (it was empty)"),
    (["-m"], "-m needs a module name"),
    (["-x", "t"], "unknown option -x"),
]


@pytest.mark.parametrize(("argv", "message"), REFUSALS)
def test_refuses_with_exit_2(argv: list[str], message: str) -> None:
    with pytest.raises(SafePipError) as refused:
        parse_args(argv)
    assert refused.value.exit_code == 2
    assert message in refused.value.message


# --- fuzzing the argv grammar --------------------------------------------------------

_WORDS = [
    "--project", "--venv", "--profile", "--allow-read", "--allow-write", "--allow-host",
    "--allow-env", "--credential", "--no-network", "--explain", "--allow-degraded", "-v",
    "--verbose", "--learn", "--write", "--yes", "-h", "--version", "-m", "--", "-",
    "--allow-read=", "--allow-host=bad host", "--profile=nonexistent", "--venv=/nonexistent",
    "--credential=nope", "=", "-mx", "x", "", "é", "\udcff", "a" * 300, "/", ".", "~",
    "--allow-host=127.0.0.1:99999", "--allow-env=1BAD", "--project=/dev/null",
]  # fmt: skip


def _argvs(count: int, seed: int) -> list[list[str]]:
    rng = random.Random(seed)
    return [[rng.choice(_WORDS) for _ in range(rng.randint(0, 6))] for _ in range(count)]


def test_fuzzed_argv_parses_or_refuses_with_2() -> None:
    for argv in _argvs(400, seed=18):
        try:
            opts = parse_args(argv)
        except SafePipError as exc:
            assert exc.exit_code == 2, (argv, exc.message)
        else:
            assert isinstance(opts, RunOptions)


def test_fuzzed_argv_end_to_end_never_tracebacks(tmp_path: Path) -> None:
    """A sample of the same argvs through the real command, with ``--explain`` first so
    nothing runs: only documented exit codes, at most a few lines, no traceback."""
    project = tmp_path / "project"
    project.mkdir()
    (project / "pyproject.toml").write_text("[project]\nname = 'p'\nversion = '0'\n")
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path),
           "LANG": "C.UTF-8"}  # fmt: skip
    for argv in _argvs(40, seed=19):
        words = [w for w in argv if w not in ("-h", "--version", "--", "-m")]
        result = subprocess.run(
            [str(BIN / "safe-run"), "--explain", *words], cwd=project, env=env,
            capture_output=True, text=True, errors="replace", timeout=60, check=False,
        )  # fmt: skip
        assert "Traceback" not in result.stderr, (words, result.stderr)
        assert "internal error" not in result.stderr, (words, result.stderr)
        assert result.returncode in (0, 2, 125, 126, 127), (words, result.returncode, result.stderr)


# --- fuzzing the policy format -------------------------------------------------------

_KEYS = {
    "": ["extends", "filesystem", "network", "env", "credentials", "nonsense"],
    "filesystem": ["read", "write", "deny", "protect", "git", "typo"],
    "network": ["allow", "mode"],
    "env": ["pass", "set", "clear"],
}
_VALUES = [
    '"x"', '""', "1", "-1", "true", "[]", '["."]', '["~"]', '["/"]', '["a", 1]', "{}",
    '{ a = "b" }', '["*.example.com", "127.0.0.1:8000"]', '["bad host"]', '["pypi"]',
    '["/dev/zero"]', '["nonexistent-profile"]', '"commit"', '["\\u00e9"]', "[[1]]",
    '["x:99999"]', '["LANG", "1BAD"]', '{ PYTHONPATH = "x" }', '{ "" = "x" }', "1.5",
    '["../../.."]', '["~/.ssh"]', '"\\u0000"',
]  # fmt: skip


def _policies(count: int, seed: int) -> list[str]:
    """``[tool.safe-run]`` tables: some keys with values of every type, then some
    sub-tables with theirs (TOML wants plain keys before sub-tables)."""
    rng = random.Random(seed)
    texts = []
    for _ in range(count):
        chosen = rng.sample(_KEYS[""], rng.randint(0, 4))
        tables = [key for key in chosen if key in _KEYS and rng.random() < 0.7]
        lines = ["[tool.safe-run]"]
        lines += [f"{key} = {rng.choice(_VALUES)}" for key in chosen if key not in tables]
        for table in tables:
            lines.append(f"[tool.safe-run.{table}]")
            for sub in rng.sample(_KEYS[table], rng.randint(0, len(_KEYS[table]))):
                lines.append(f"{sub} = {rng.choice(_VALUES)}")
        texts.append("\n".join(lines) + "\n")
    return texts


def test_fuzzed_policies_load_or_fail_with_one_policy_error(tmp_path: Path) -> None:
    from safe_pip.policy.loader import CliOverrides, load_policy

    project = tmp_path / "project"
    project.mkdir()
    home = tmp_path / "home"
    home.mkdir()
    variables = {"HOME": str(home), "SAFE_PIP_NO_CACHE": "1"}
    outcomes = {"loaded": 0, "refused": 0}
    for text in _policies(300, seed=20):
        (project / "pyproject.toml").write_text(text)
        try:
            load_policy(cwd=project, project=project, overrides=CliOverrides(),
                        variables=variables, home=home)  # fmt: skip
            outcomes["loaded"] += 1
        except PolicyError as exc:
            assert "\n" not in exc.message and exc.exit_code == 125, exc.message
            outcomes["refused"] += 1
        except SafePipError as exc:
            assert exc.exit_code == 125, exc.message
            outcomes["refused"] += 1
    assert outcomes["loaded"] > 10 and outcomes["refused"] > 10, outcomes
