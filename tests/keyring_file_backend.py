"""A keyring backend for tests: a JSON file named by ``SAFE_PIP_TEST_KEYRING_FILE``.

Real backends (Secret Service, KWallet) need a desktop session and D-Bus, which test
machines and CI containers lack; this one lets tests drive the real ``keyring`` API
and the real ``safe-run secret`` command, in-process or in a subprocess selected with
``PYTHON_KEYRING_BACKEND=keyring_file_backend.FileKeyring`` (the tests directory on
``PYTHONPATH``).  Stored as ``{"service": {"username": "password"}}``.
"""

from __future__ import annotations

import json
import os

from keyring.backend import KeyringBackend
from keyring.errors import PasswordDeleteError

#: The variable naming the JSON file; required, so a test never writes a default path.
FILE_VARIABLE = "SAFE_PIP_TEST_KEYRING_FILE"


class FileKeyring(KeyringBackend):
    """Plain-text JSON keyring: for tests only, never for real secrets."""

    priority = 1  # overrides a classproperty of the base class: always viable

    def _path(self) -> str:
        return os.environ[FILE_VARIABLE]

    def _load(self) -> dict[str, dict[str, str]]:
        try:
            with open(self._path(), encoding="utf-8") as file:
                data: dict[str, dict[str, str]] = json.load(file)
        except FileNotFoundError:
            return {}
        return data

    def _save(self, data: dict[str, dict[str, str]]) -> None:
        path = self._path()
        with open(path + ".tmp", "w", encoding="utf-8") as file:
            json.dump(data, file)
        os.replace(path + ".tmp", path)

    def get_password(self, service: str, username: str) -> str | None:
        return self._load().get(service, {}).get(username)

    def set_password(self, service: str, username: str, password: str) -> None:
        data = self._load()
        data.setdefault(service, {})[username] = password
        self._save(data)

    def delete_password(self, service: str, username: str) -> None:
        data = self._load()
        if username not in data.get(service, {}):
            raise PasswordDeleteError("not found")
        del data[service][username]
        self._save(data)
