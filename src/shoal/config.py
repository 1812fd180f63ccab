"""Typed settings, read from the environment (``SHOAL_*``) when first needed."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

DEFAULT_PORT = 7811
INLINE_PAYLOAD_LIMIT = 256 * 1024  # larger payloads travel as blobs (files), not through SQLite


def _float_env(name: str, default: float) -> float:
    raw = os.environ.get(name)
    return float(raw) if raw else default


@dataclass(frozen=True)
class Settings:
    """Where state lives, how clients find the server, and the server's time limits (seconds)."""

    home: Path
    server_url: str | None
    token: str | None
    result_retention: float
    heartbeat_interval: float
    heartbeat_timeout: float
    max_payload_bytes: int
    rate_limit: float

    @classmethod
    def from_env(cls) -> Settings:
        return cls(
            home=Path(os.environ.get("SHOAL_HOME", str(Path.home() / ".shoal"))),
            server_url=os.environ.get("SHOAL_SERVER_URL") or None,
            token=os.environ.get("SHOAL_TOKEN") or None,
            result_retention=_float_env("SHOAL_RESULT_RETENTION", 7 * 24 * 3600.0),
            heartbeat_interval=_float_env("SHOAL_HEARTBEAT_INTERVAL", 1.0),
            heartbeat_timeout=_float_env("SHOAL_HEARTBEAT_TIMEOUT", 15.0),
            max_payload_bytes=int(_float_env("SHOAL_MAX_PAYLOAD_BYTES", 512 * 1024 * 1024)),
            rate_limit=_float_env("SHOAL_RATE_LIMIT", 5000.0),
        )

    @property
    def default_url(self) -> str:
        return f"http://127.0.0.1:{DEFAULT_PORT}"


def settings() -> Settings:
    """Current settings (re-read every time so tests and subprocesses can change the environment)."""
    return Settings.from_env()
