"""A memory cgroup per container with ``memory=``'s limit, where the server may make one (root, cgroup v1's
memory controller writable): the container's processes *and* what they keep in its private ``/tmp`` (a tmpfs,
whose pages are charged to the cgroup of whoever wrote them) count against one limit. ``RLIMIT_AS`` (applied by
the container itself) sees only address space, not tmpfs pages.

The container's launcher joins its cgroup before it runs bwrap (``joined``), or a forked container's keeper
before it forks the container (``made``), so every process of the container is in it from the start; the
folder is removed when the container has exited. Elsewhere (an ordinary user, cgroup v2 only, a read-only
``/sys/fs/cgroup``) nothing changes: ``RLIMIT_AS`` alone, and ``/tmp`` bounded by its size.
"""

from __future__ import annotations

import contextlib
import functools
import os
from pathlib import Path

V1_MEMORY = Path("/sys/fs/cgroup/memory")
PARENT = "shoal"


@functools.lru_cache(maxsize=1)
def root() -> Path | None:
    """The folder under which containers get their memory cgroups, or None where there is none to have."""
    if os.geteuid() != 0 or not (V1_MEMORY / "memory.limit_in_bytes").exists():
        return None
    folder = V1_MEMORY / PARENT
    try:
        folder.mkdir(exist_ok=True)
        return folder if (folder / "cgroup.procs").exists() else None
    except OSError:
        return None


def made(container_id: str, limit_mib: int | None) -> Path | None:
    """The ``cgroup.procs`` of a new memory cgroup of ``limit_mib`` for the container, or None (no limit, or
    no cgroups here). A forked container's keeper joins it through this file, opened by the server."""
    base = root()
    if base is None or not limit_mib:
        return None
    folder = base / container_id
    try:
        folder.mkdir(exist_ok=True)
        (folder / "memory.limit_in_bytes").write_text(str(limit_mib << 20))
    except OSError:
        return None
    return folder / "cgroup.procs"


def joined(container_id: str, limit_mib: int | None, command: list[str]) -> list[str]:
    """``command``, started inside a new memory cgroup of ``limit_mib`` (unchanged without a limit or cgroups)."""
    procs = made(container_id, limit_mib)
    if procs is None:
        return command
    return ["/bin/sh", "-c", f'echo $$ > "{procs}" && exec "$@"', "shoal-container", *command]


def remove(container_id: str) -> None:
    """Remove an exited container's cgroup (nothing when it had none)."""
    base = root()
    if base is not None:
        with contextlib.suppress(OSError):
            (base / container_id).rmdir()
