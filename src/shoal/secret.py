"""``Secret``: values injected into containers as environment variables, never logged or returned by the API.

Inline secrets (``from_dict``, ``from_local_environ``, ``from_dotenv``) are uploaded when the app starts;
named ones (``from_name``) are created once with ``shoal secret create NAME KEY=VALUE ...``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import ClassVar

from .exception import InvalidError, NotFoundError
from .objects import SecretObjects


class Secret:
    """A set of environment variables for containers (``secrets=[...]`` on ``App``/``@app.function``)."""

    objects: ClassVar[SecretObjects]  # Secret.objects.create/list/delete

    def __init__(self, values: dict[str, str] | None = None, name: str | None = None) -> None:
        self._values = values
        self._name = name
        self._ids: dict[str, str] = {}  # server url -> id of the uploaded inline secret

    def __repr__(self) -> str:
        keys = sorted(self._values) if self._values is not None else "..."
        return f"Secret(name={self._name!r}, keys={keys})"  # never the values

    @staticmethod
    def from_dict(env_dict: dict[str, str | None]) -> Secret:
        """A secret from a dict (None values are dropped)."""
        values = {k: v for k, v in env_dict.items() if v is not None}
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in values.items()):
            raise InvalidError("Secret.from_dict takes a dict of strings to strings")
        return Secret(values)

    @staticmethod
    def from_local_environ(env_keys: list[str]) -> Secret:
        """A secret made of these variables of this process's environment (all must be set)."""
        missing = [k for k in env_keys if k not in os.environ]
        if missing:
            raise InvalidError(f"Secret.from_local_environ: {', '.join(missing)} not set in this environment")
        return Secret({k: os.environ[k] for k in env_keys})

    @staticmethod
    def from_dotenv(path: str | Path | None = None, *, filename: str = ".env") -> Secret:
        """A secret from a ``.env`` file (``KEY=VALUE`` lines; ``#`` comments; optional quotes)."""
        file = Path(path) if path is not None else Path.cwd() / filename
        if file.is_dir():
            file = file / filename
        if not file.is_file():
            raise InvalidError(f"Secret.from_dotenv: no file {file}")
        values = {}
        for line in file.read_text().splitlines():
            line = line.strip()
            if not line or line.startswith("#") or "=" not in line:
                continue
            key, _, value = line.removeprefix("export ").partition("=")
            value = value.strip()
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
                value = value[1:-1]
            values[key.strip()] = value
        return Secret(values)

    @staticmethod
    def from_name(name: str, *, required_keys: list[str] | None = None) -> Secret:
        """A secret created on the server with ``shoal secret create NAME KEY=VALUE ...``."""
        if not name:
            raise NotFoundError("Secret.from_name needs a name")
        return Secret(None, name)

    @property
    def is_named(self) -> bool:
        return self._values is None


Secret.objects = SecretObjects()
