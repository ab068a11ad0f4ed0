"""Build ``index/``: a PEP 503 package index holding the ``untrusted-tool`` wheel.

The index is a folder, so ``safe-pip install -i file://$PWD/index untrusted-tool``
needs no network at all.  The wheel is made with ``zipfile`` and fixed timestamps, so
rebuilding it from ``src/untrusted_tool.py`` gives the same bytes; the test suite
checks that the committed index matches its source.  Run: ``python make_index.py``.
"""

from __future__ import annotations

import base64
import hashlib
import sys
import zipfile
from pathlib import Path

NAME, VERSION = "untrusted-tool", "0.1.0"
HERE = Path(__file__).resolve().parent
_EPOCH = (2024, 1, 1, 0, 0, 0)


def _record_hash(data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
    return "sha256=" + digest.decode()


def wheel_members(source: bytes) -> dict[str, bytes]:
    """Every file of the wheel, RECORD last."""
    info = f"untrusted_tool-{VERSION}.dist-info"
    members = {
        "untrusted_tool.py": source,
        f"{info}/METADATA": (
            f"Metadata-Version: 2.1\nName: {NAME}\nVersion: {VERSION}\n"
            "Summary: safe-pip example: a CLI that also tries to steal things\n"
        ).encode(),
        f"{info}/WHEEL": (
            b"Wheel-Version: 1.0\nGenerator: make_index.py\nRoot-Is-Purelib: true\n"
            b"Tag: py3-none-any\n"
        ),
        f"{info}/entry_points.txt": b"[console_scripts]\nuntrusted-tool = untrusted_tool:main\n",
    }
    record = "".join(f"{path},{_record_hash(data)},{len(data)}\n" for path, data in members.items())
    members[f"{info}/RECORD"] = (record + f"{info}/RECORD,,\n").encode()
    return members


def build(index: Path) -> Path:
    """Write the wheel and its index page under ``index``; returns the wheel's path."""
    folder = index / NAME
    folder.mkdir(parents=True, exist_ok=True)
    wheel = folder / f"untrusted_tool-{VERSION}-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w", zipfile.ZIP_DEFLATED) as archive:
        for path, data in wheel_members((HERE / "src" / "untrusted_tool.py").read_bytes()).items():
            entry = zipfile.ZipInfo(path, _EPOCH)
            entry.external_attr = 0o644 << 16
            archive.writestr(entry, data)
    sha = hashlib.sha256(wheel.read_bytes()).hexdigest()
    (folder / "index.html").write_text(
        f'<!DOCTYPE html>\n<html><body><a href="{wheel.name}#sha256={sha}">{wheel.name}</a>'
        "</body></html>\n"
    )
    (index / "index.html").write_text(
        f'<!DOCTYPE html>\n<html><body><a href="{NAME}/">{NAME}</a></body></html>\n'
    )
    return wheel


if __name__ == "__main__":
    print(build(Path(sys.argv[1]) if len(sys.argv) > 1 else HERE / "index"))
