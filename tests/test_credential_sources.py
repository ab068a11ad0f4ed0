"""Where a credential's real value comes from: dotenv parsing, the three sources, the
keyring's own files, and ``safe-run secret``.

Every error path also checks the one rule that matters most here: the secret value
never appears in a message (they end up in terminals, CI logs and bug reports).

The keyring tests use the real ``keyring`` package with a small file backend
(tests/keyring_file_backend.py): in-process through ``keyring.set_keyring``, and for
the ``safe-run secret`` subprocess through ``PYTHON_KEYRING_BACKEND``.  Nothing here
needs root or a desktop keyring.
"""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import keyring
import keyring.errors
import pytest
from keyring.backend import KeyringBackend
from keyring_file_backend import FILE_VARIABLE, FileKeyring

from safe_pip.cli.run import USAGE
from safe_pip.cli.secret import main_secret, valid_name
from safe_pip.credentials.sources import (
    delete_secret,
    keyring_store_paths,
    parse_dotenv,
    read_secret,
    store_secret,
)
from safe_pip.credentials.spec import KEYRING_SERVICE, CredentialSpec
from safe_pip.errors import SafePipError

SECRET = "sk-test-Zq8vW3secretvalue"
TESTS_DIR = Path(__file__).resolve().parent
SAFE_RUN = Path(sys.executable).with_name("safe-run")


def spec(source: str = "env", **kwargs: object) -> CredentialSpec:
    fields: dict[str, object] = {
        "name": "openai",
        "env": "OPENAI_API_KEY",
        "hosts": ("api.openai.com:443",),
        "source": source,
    }
    fields.update(kwargs)
    return CredentialSpec(**fields)  # type: ignore[arg-type]


def failure(credential: CredentialSpec, env: dict[str, str] | None = None) -> str:
    """The message ``read_secret`` fails with; asserts it is clean and exits 125."""
    with pytest.raises(SafePipError) as info:
        read_secret(credential, env or {})
    exc = info.value
    assert exc.exit_code == 125
    assert SECRET not in exc.message and SECRET not in str(exc)
    assert "\n" not in exc.message  # one line
    assert "openai" in exc.message  # names the credential
    return exc.message


# --- parse_dotenv ----------------------------------------------------------------------


def test_dotenv_basic_export_whitespace_and_comments() -> None:
    text = (
        "# a comment\n"
        "\n"
        "   # an indented comment\n"
        "A=1\n"
        "export B=2\n"
        "export\tC=3\n"
        "  D  =  4  \n"
        "E=\n"
        "export=5\n"
    )
    assert parse_dotenv(text) == {"A": "1", "B": "2", "C": "3", "D": "4", "E": "", "export": "5"}


def test_dotenv_single_quotes_are_literal() -> None:
    values = parse_dotenv("A='x\\ny #not a comment $HOME'\nB=' padded '  # trailing\n")
    assert values == {"A": "x\\ny #not a comment $HOME", "B": " padded "}


def test_dotenv_double_quote_escapes() -> None:
    values = parse_dotenv('A="tab\\there\\nline \\"q\\" back\\\\slash \\d"\n')
    assert values == {"A": 'tab\there\nline "q" back\\slash \\d'}


def test_dotenv_double_quotes_span_lines() -> None:
    text = 'A="first\nsecond # kept\n  third"\nB=after\n'
    assert parse_dotenv(text) == {"A": "first\nsecond # kept\n  third", "B": "after"}


def test_dotenv_inline_comments() -> None:
    text = "A=value # comment\nB=a#b\nC=x\t#tab comment\nD=\"q\" # c\nE='s'#c\nF=#notcomment\n"
    assert parse_dotenv(text) == {
        "A": "value",
        "B": "a#b",
        "C": "x",
        "D": "q",
        "E": "s",
        "F": "#notcomment",
    }


def test_dotenv_later_duplicates_win() -> None:
    assert parse_dotenv("A=1\nA=2\nexport A='3'\n") == {"A": "3"}


def test_dotenv_invalid_lines_are_ignored() -> None:
    text = (
        "no equals sign\n"
        "1BAD=x\n"
        "BAD-NAME=x\n"
        "=x\n"
        "B\u00e9=x\n"
        'J="a" junk after the quote\n'
        'U="never closed\n'
        "OK=yes\n"
        "S='also never closed\n"
        "LAST=1"
    )
    assert parse_dotenv(text) == {"OK": "yes", "LAST": "1"}


def test_dotenv_crlf_and_no_interpolation() -> None:
    text = 'A=1\r\nB=${HOME}/x\r\nC="$A"\r\n'
    assert parse_dotenv(text) == {"A": "1", "B": "${HOME}/x", "C": "$A"}


# --- read_secret: env ------------------------------------------------------------------


def test_env_source() -> None:
    assert read_secret(spec(), {"OPENAI_API_KEY": SECRET}) == SECRET
    keyed = spec(key="MY_OPENAI")
    assert read_secret(keyed, {"MY_OPENAI": SECRET, "OPENAI_API_KEY": "other"}) == SECRET


def test_env_missing_and_empty() -> None:
    message = failure(spec(), {"OTHER": SECRET})
    assert "OPENAI_API_KEY is not set in the environment" in message
    assert "safe-run secret set openai" in message
    assert "is empty" in failure(spec(), {"OPENAI_API_KEY": ""})


@pytest.mark.parametrize("bad", ["\r", "\n", "\0"])
def test_env_value_breaking_headers_is_refused(bad: str) -> None:
    message = failure(spec(), {"OPENAI_API_KEY": SECRET + bad + "X-Injected: 1"})
    assert "HTTP header" in message


# --- read_secret: dotenv ---------------------------------------------------------------


def test_dotenv_source(tmp_path: Path) -> None:
    path = tmp_path / ".env"
    path.write_text(f"# keys\nexport OPENAI_API_KEY='{SECRET}'\nOTHER=1\n", encoding="utf-8")
    assert read_secret(spec("dotenv", file=str(path)), {}) == SECRET
    path.write_text(f"\ufeffOPENAI_API_KEY={SECRET}\n", encoding="utf-8")  # BOM
    assert read_secret(spec("dotenv", file=str(path)), {}) == SECRET
    path.write_text(f"MY_KEY={SECRET}\n", encoding="utf-8")
    assert read_secret(spec("dotenv", file=str(path), key="MY_KEY"), {}) == SECRET


def test_dotenv_ignores_the_caller_environment(tmp_path: Path) -> None:
    path = tmp_path / ".env"
    path.write_text("OTHER=1\n", encoding="utf-8")
    assert "is not set in the dotenv file" in failure(
        spec("dotenv", file=str(path)), {"OPENAI_API_KEY": SECRET}
    )


def test_dotenv_errors(tmp_path: Path) -> None:
    path = tmp_path / ".env"
    assert "needs a file" in failure(spec("dotenv"))
    assert "cannot read the dotenv file" in failure(spec("dotenv", file=str(path)))
    assert "cannot read the dotenv file" in failure(spec("dotenv", file=str(tmp_path)))
    path.write_text(f"OTHER={SECRET}\n", encoding="utf-8")
    message = failure(spec("dotenv", file=str(path)))
    assert f"OPENAI_API_KEY is not set in the dotenv file {path}" in message
    path.write_text("OPENAI_API_KEY=\n", encoding="utf-8")
    assert "is empty in the dotenv file" in failure(spec("dotenv", file=str(path)))
    path.write_text(f'OPENAI_API_KEY="{SECRET}\nsecond line"\n', encoding="utf-8")
    assert "line break" in failure(spec("dotenv", file=str(path)))
    path.write_bytes(b"OPENAI_API_KEY=\xff" + SECRET.encode() + b"\n")
    assert "not valid UTF-8" in failure(spec("dotenv", file=str(path)))


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their mode")
def test_dotenv_unreadable_file(tmp_path: Path) -> None:
    path = tmp_path / ".env"
    path.write_text(f"OPENAI_API_KEY={SECRET}\n", encoding="utf-8")
    path.chmod(0)
    try:
        assert "Permission denied" in failure(spec("dotenv", file=str(path)))
    finally:
        path.chmod(0o600)


# --- read_secret: keyring (in-process) -------------------------------------------------


@pytest.fixture
def file_keyring(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The test backend as the process's keyring; the JSON file it writes to."""
    store = tmp_path / "keyring.json"
    monkeypatch.setenv(FILE_VARIABLE, str(store))
    previous = keyring.get_keyring()
    keyring.set_keyring(FileKeyring())
    try:
        yield store
    finally:
        keyring.set_keyring(previous)


class FailingKeyring(KeyringBackend):
    """A backend whose every call fails with ``error`` (the message echoes SECRET)."""

    priority = 1

    def __init__(self, error: Exception) -> None:
        super().__init__()
        self.error = error

    def get_password(self, service: str, username: str) -> str | None:
        raise self.error

    def set_password(self, service: str, username: str, password: str) -> None:
        raise self.error

    def delete_password(self, service: str, username: str) -> None:
        raise self.error


@pytest.fixture
def use_keyring() -> Iterator[None]:
    """Restore the process's keyring after a test that replaces it."""
    previous = keyring.get_keyring()
    try:
        yield
    finally:
        keyring.set_keyring(previous)


def test_keyring_source(file_keyring: Path) -> None:
    store_secret("openai", SECRET)
    assert json.loads(file_keyring.read_text()) == {KEYRING_SERVICE: {"openai": SECRET}}
    assert read_secret(spec("keyring"), {"OPENAI_API_KEY": "ignored"}) == SECRET


def test_keyring_missing_and_empty(file_keyring: Path) -> None:
    message = failure(spec("keyring"), {"OPENAI_API_KEY": SECRET})
    assert message == (
        'credential "openai" is not in the keyring (service "safe-run"); '
        "store it with: safe-run secret set openai"
    )
    FileKeyring().set_password(KEYRING_SERVICE, "openai", "")
    assert "is empty in the keyring" in failure(spec("keyring"))


def test_keyring_value_breaking_headers_is_refused(file_keyring: Path) -> None:
    FileKeyring().set_password(KEYRING_SERVICE, "openai", SECRET + "\r\n")
    assert "carriage return" in failure(spec("keyring"))


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (keyring.errors.NoKeyringError("No recommended backend"), "no keyring backend"),
        (keyring.errors.KeyringLocked("locked"), "the keyring is locked"),
        (RuntimeError("D-Bus went away"), "RuntimeError: D-Bus went away"),
    ],
)
def test_keyring_backend_errors(use_keyring: None, error: Exception, expected: str) -> None:
    keyring.set_keyring(FailingKeyring(error))
    assert expected in failure(spec("keyring"))
    with pytest.raises(SafePipError) as info:
        delete_secret("openai")
    assert expected in info.value.message


def test_keyring_store_error_is_redacted(use_keyring: None) -> None:
    keyring.set_keyring(FailingKeyring(keyring.errors.PasswordSetError(f"cannot store {SECRET}")))
    with pytest.raises(SafePipError) as info:
        store_secret("openai", SECRET)
    assert "PasswordSetError: cannot store ***" in info.value.message
    assert SECRET not in info.value.message


def test_keyring_package_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "keyring", None)  # makes `import keyring` fail
    message = failure(spec("keyring"))
    assert "keyring package, which is not installed" in message
    assert "pip install 'safe-pip[keyring]'" in message
    for call in (lambda: store_secret("openai", SECRET), lambda: delete_secret("openai")):
        with pytest.raises(SafePipError) as info:
            call()
        assert "pip install 'safe-pip[keyring]'" in info.value.message
        assert SECRET not in info.value.message


def test_store_and_delete(file_keyring: Path) -> None:
    assert delete_secret("openai") is False
    store_secret("openai", SECRET)
    store_secret("other", "x")
    assert delete_secret("openai") is True
    assert json.loads(file_keyring.read_text()) == {KEYRING_SERVICE: {"other": "x"}}
    assert delete_secret("openai") is False


@pytest.mark.parametrize("bad", ["", "a\nb", "a\rb", "a\0b"])
def test_store_refuses_unusable_values(file_keyring: Path, bad: str) -> None:
    with pytest.raises(SafePipError) as info:
        store_secret("openai", bad)
    assert "refusing to store" in info.value.message
    assert not file_keyring.exists()


# --- keyring_store_paths ---------------------------------------------------------------


def test_keyring_store_paths_defaults() -> None:
    assert keyring_store_paths("/home/u", {"XDG_DATA_HOME": ""}) == [
        "/home/u/.local/share/python_keyring",
        "/home/u/.local/share/keyrings",
        "/home/u/.local/share/kwalletd",
        "/home/u/.config/python_keyring",
    ]


def test_keyring_store_paths_follow_xdg() -> None:
    paths = keyring_store_paths("/home/u", {"XDG_DATA_HOME": "/d/", "XDG_CONFIG_HOME": "/c"})
    assert paths == ["/d/python_keyring", "/d/keyrings", "/d/kwalletd", "/c/python_keyring"]


def test_sources_module_is_import_light() -> None:
    code = (
        "import sys; import safe_pip.credentials.sources; "
        "print(sorted(m for m in ('keyring', 're', 'typing', 'pathlib', 'json') "
        "if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-S", "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(TESTS_DIR.parent)},
    )
    assert out.stdout.strip() == "[]"


# --- safe-run secret -------------------------------------------------------------------


@pytest.mark.parametrize("name", ["openai", "A-b_c.1", "x" * 64])
def test_valid_names(name: str) -> None:
    assert valid_name(name)


@pytest.mark.parametrize("name", ["", "x" * 65, "a b", "a/b", "é", "a\n"])
def test_invalid_names(name: str) -> None:
    assert not valid_name(name)


@pytest.mark.parametrize(
    "argv", [[], ["set"], ["get", "openai"], ["set", "a/b"], ["set", "openai", "extra"]]
)
def test_main_secret_usage_errors(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main_secret(argv) == 2
    assert "usage: safe-run secret" in capsys.readouterr().err


def test_run_usage_mentions_secret() -> None:
    assert "safe-run secret set|delete NAME" in USAGE
    assert "named `secret` or `allow`, use `safe-run -- NAME`" in USAGE


@pytest.fixture
def cli_env(tmp_path: Path) -> dict[str, str]:
    """Environment for ``safe-run secret`` with the file backend and a scratch HOME."""
    if not SAFE_RUN.exists():
        if os.environ.get("CI"):
            pytest.fail(f"{SAFE_RUN} is missing")
        pytest.skip(f"{SAFE_RUN} is missing (install the package into this venv)")
    home = tmp_path / "home"
    home.mkdir()
    pythonpath = os.pathsep.join(filter(None, [str(TESTS_DIR), os.environ.get("PYTHONPATH")]))
    return {
        **os.environ,
        "HOME": str(home),
        "XDG_DATA_HOME": str(home / "data"),
        "XDG_CONFIG_HOME": str(home / "config"),
        "PYTHONPATH": pythonpath,
        "PYTHON_KEYRING_BACKEND": "keyring_file_backend.FileKeyring",
        FILE_VARIABLE: str(tmp_path / "keyring.json"),
    }


def secret_cli(
    env: dict[str, str], *args: str, stdin: str = ""
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(SAFE_RUN), "secret", *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert SECRET not in result.stdout and SECRET not in result.stderr
    assert "Traceback" not in result.stderr
    return result


def test_cli_set_and_delete(cli_env: dict[str, str]) -> None:
    store = Path(cli_env[FILE_VARIABLE])
    result = secret_cli(cli_env, "set", "openai", stdin=SECRET + "\n")
    assert result.returncode == 0, result.stderr
    assert result.stderr == 'safe-run: stored openai in the keyring (service "safe-run")\n'
    assert json.loads(store.read_text()) == {KEYRING_SERVICE: {"openai": SECRET}}

    result = secret_cli(cli_env, "set", "win", stdin=SECRET + "\r\n")  # CRLF pipe
    assert result.returncode == 0, result.stderr
    assert json.loads(store.read_text())[KEYRING_SERVICE]["win"] == SECRET

    result = secret_cli(cli_env, "delete", "openai")
    assert result.returncode == 0, result.stderr
    assert json.loads(store.read_text()) == {KEYRING_SERVICE: {"win": SECRET}}
    result = secret_cli(cli_env, "delete", "openai")
    assert result.returncode == 1
    assert "openai is not in the keyring" in result.stderr


def test_cli_errors(cli_env: dict[str, str]) -> None:
    store = Path(cli_env[FILE_VARIABLE])
    for args in (("set", "bad/name"), ("set",), ("frobnicate", "openai")):
        result = secret_cli(cli_env, *args, stdin=SECRET + "\n")
        assert result.returncode == 2, args
        assert "usage: safe-run secret" in result.stderr
    result = secret_cli(cli_env, "set", "openai", stdin="")
    assert result.returncode == 125
    assert result.stderr == "safe-run: refusing to store an empty value for openai\n"
    result = secret_cli(cli_env, "set", "openai", stdin="\n")
    assert result.returncode == 125
    assert not store.exists()


def test_cli_broken_backend_is_one_line(cli_env: dict[str, str]) -> None:
    env = {**cli_env, "PYTHON_KEYRING_BACKEND": "no_such_module.Keyring"}
    result = secret_cli(env, "set", "openai", stdin=SECRET + "\n")
    assert result.returncode == 125
    assert result.stderr.startswith("safe-run: storing openai in the keyring failed")
    assert result.stderr.count("\n") == 1


def test_cli_reads_a_terminal_without_echo(cli_env: dict[str, str]) -> None:
    """On a terminal the value is typed at a getpass prompt and never echoed."""
    import fcntl
    import termios

    def make_controlling_tty() -> None:  # runs in the child, after setsid()
        fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    master, slave = pty.openpty()
    try:
        proc = subprocess.Popen(
            [str(SAFE_RUN), "secret", "set", "openai"],
            stdin=slave,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=cli_env,
            start_new_session=True,
            preexec_fn=make_controlling_tty,
        )
        os.close(slave)
        slave = -1
        screen = b""
        deadline = time.monotonic() + 30
        while b"(not echoed): " not in screen and time.monotonic() < deadline:
            if select.select([master], [], [], 0.5)[0]:
                screen += os.read(master, 4096)
        assert b"value for openai (not echoed): " in screen
        os.write(master, SECRET.encode() + b"\n")
        stdout, stderr = proc.communicate(timeout=30)
        while select.select([master], [], [], 0.2)[0]:
            try:
                screen += os.read(master, 4096)
            except OSError:  # EIO once the child has closed the terminal
                break
    finally:
        os.close(master)
        if slave >= 0:
            os.close(slave)
    assert proc.returncode == 0, stderr
    assert SECRET.encode() not in screen + stdout + stderr
    store = json.loads(Path(cli_env[FILE_VARIABLE]).read_text())
    assert store == {KEYRING_SERVICE: {"openai": SECRET}}
