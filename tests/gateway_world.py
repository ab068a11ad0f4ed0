"""A network like a company's, in namespaces of the test's own: run as a script.

Many users reach PyPI through a gateway: their resolver answers ``pypi.org`` with an
address that is not public (here 203.0.113.80, a documentation-range address; 10.x
in many companies), and the gateway's TLS certificate comes from a company CA.  The
tests of docs/network.md's "names the user chose may lead to site addresses" rule
need exactly that, without touching the machine's real network or /etc/hosts:

    unshare --user --map-root-user --net --mount -- python gateway_world.py CONFIG

In its own network and mount namespaces this script

* brings up loopback and puts the gateway's, an intranet host's and the metadata
  service's addresses on it (``ip addr add``);
* bind-mounts a hosts file over /etc/hosts: ``pypi.gateway.test`` and
  ``files.gateway.test`` → 203.0.113.80, ``intranet.gateway.test`` → 10.77.0.1,
  ``metadata.gateway.test`` → 169.254.169.254 — the real resolver (glibc, nss
  files) answers with them;
* serves a PEP 503 index over HTTPS on 203.0.113.80 with a certificate of a CA it
  makes (written to ``ca`` in CONFIG, so commands can trust it), and records every
  request to plain HTTP origins on the intranet and metadata addresses;
* runs each command of CONFIG as the caller's own user again (a nested user
  namespace maps it back), so safe-pip and safe-run meet this network as an
  ordinary user would, and writes what happened to ``out`` as JSON.

Placeholders in commands' argv and env values: ``{index_url}``, ``{index_port}``,
``{intranet_port}``, ``{metadata_port}``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from net_servers import HttpOrigin, QuietHttpServer
from pkg_index import LocalIndex, _IndexServer
from tls_servers import TestCA, TlsHttpServer

GATEWAY = "203.0.113.80"
INTRANET = "10.77.0.1"
METADATA = "169.254.169.254"
INDEX_NAME = "pypi.gateway.test"
HOSTS = f"""\
127.0.0.1 localhost
{GATEWAY} {INDEX_NAME} files.gateway.test
{INTRANET} intranet.gateway.test
{METADATA} metadata.gateway.test
"""


class _TlsServer(TlsHttpServer, _IndexServer):
    def __init__(self, index: GatewayIndex) -> None:
        self.ssl_context = index.ca.server_context((INDEX_NAME, "files.gateway.test"))
        _IndexServer.__init__(self, index)


class GatewayIndex(LocalIndex):
    """The index behind the gateway: HTTPS on 203.0.113.80, a certificate for its name."""

    def __init__(self, directory: Path, ca: TestCA) -> None:
        super().__init__(directory, GATEWAY)
        self.ca = ca

    def _make_server(self) -> QuietHttpServer:
        return _TlsServer(self)

    @property
    def url(self) -> str:
        return f"https://{INDEX_NAME}:{self.port}/simple/"


def ip_command() -> str | None:
    """iproute2's ``ip``, also where an ordinary user's PATH does not look."""
    import shutil

    return shutil.which("ip", path=f"{os.environ.get('PATH', '')}:/usr/sbin:/sbin")


def _network() -> None:
    ip = ip_command() or "ip"
    subprocess.run([ip, "link", "set", "lo", "up"], check=True)
    for address in (GATEWAY, INTRANET, METADATA):
        subprocess.run([ip, "addr", "add", f"{address}/32", "dev", "lo"], check=True)


def _hosts(scratch: str) -> None:
    path = os.path.join(scratch, "hosts")
    with open(path, "w") as handle:
        handle.write(HOSTS)
    os.chmod(path, 0o644)
    os.chmod(scratch, 0o755)
    subprocess.run(["mount", "--bind", path, "/etc/hosts"], check=True)


def main(config_path: str) -> int:
    config = json.loads(Path(config_path).read_text())
    _network()
    scratch = tempfile.mkdtemp(prefix="gateway-world-")
    _hosts(scratch)
    ca = TestCA("gateway test CA")
    Path(config["ca"]).write_bytes(ca.cert_pem)
    results = []
    with (
        GatewayIndex(Path(config["dists"]), ca) as index,
        HttpOrigin(INTRANET) as intranet,
        HttpOrigin(METADATA) as metadata,
    ):
        values = {
            "index_url": index.url,
            "index_port": str(index.port),
            "intranet_port": str(intranet.port),
            "metadata_port": str(metadata.port),
        }
        user = ["unshare", "--user", "--map-user", str(config["uid"])]
        user += ["--map-group", str(config["gid"]), "--"]
        for command in config["commands"]:
            argv = [word.format(**values) for word in command["argv"]]
            env = {name: value.format(**values) for name, value in command["env"].items()}
            done = subprocess.run(
                [*user, *argv],
                env=env,
                cwd=command.get("cwd"),
                capture_output=True,
                text=True,
                timeout=300,
                check=False,
            )
            results.append(
                {
                    "argv": argv,
                    "returncode": done.returncode,
                    "stdout": done.stdout,
                    "stderr": done.stderr,
                    "index": index.paths(),
                    "intranet": intranet.paths(),
                    "metadata": metadata.paths(),
                }
            )
            for service in (index, intranet, metadata):
                service.reset()
    Path(config["out"]).write_text(json.dumps({"values": values, "results": results}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
