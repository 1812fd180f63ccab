"""Apps the end-to-end tests run (each imported without the test fixtures)."""

from __future__ import annotations

import os


def me() -> str:
    """Which container runs this code: its id (inside a container's own pid namespace a pid says nothing), or
    this process's pid outside any container (``.local()``)."""
    return os.environ.get("SHOAL_CONTAINER_ID") or f"local-{os.getpid()}"
