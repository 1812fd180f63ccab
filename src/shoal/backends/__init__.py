"""Backends provide capacity only: start, stop and list containers. They know nothing about inputs.

A backend is chosen by name through :data:`KINDS` (``--backend``, ``SHOAL_BACKEND``): each kind says how it is
opened, whether it needs a token (its containers run on other machines) and the machine-wide cap on containers it
implies. The server imports no backend by name, and no backend imports the server.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import msgspec

from .base import Backend, ContainerSpec, VolumeDirs


class Setup(msgspec.Struct, frozen=True):
    """What a backend is opened with."""

    state_dir: Path  # the server's own state (containers' logs; the Ray backend's scratch)
    volumes: VolumeDirs  # where each volume's files are on the server's machine
    hidden: tuple[str, ...] = ()  # more directories containers must never see (a shared directory of blobs, keys)
    ray_address: str = "auto"


class Kind(msgspec.Struct, frozen=True):
    name: str
    open: Callable[[Setup], Backend]
    needs_token: bool  # its containers reach the server over the network: a token is required
    max_total_containers: int | None  # the default cap on containers in all; None: max(32, 8 x CPUs) here
    about: str
    get_ready: Callable[[], None] = lambda: None  # begins what opening it waits for, without waiting (a server's
    # start calls it before its slow imports, which then run beside it)
    prelaunch: Callable[[Setup], None] = lambda setup: None  # launches what its first container waits for (the
    # local backend's spare fork server) before the server's slow imports; :meth:`open` adopts it


def _open_local(setup: Setup) -> Backend:
    from .local import LocalBackend

    return LocalBackend(_local_log_dir(setup), setup.volumes, setup.hidden)


def _ready_local() -> None:
    from .sandbox import start_probe

    start_probe()


def _prelaunch_local(setup: Setup) -> None:
    from ..config import settings
    from .fork_launch import launch_early
    from .layout import SPARE, Layout

    if settings().fork_server:
        log_dir = _local_log_dir(setup)
        launch_early(Layout(log_dir, setup.volumes, setup.hidden).template(SPARE), log_dir)


def _local_log_dir(setup: Setup) -> Path:
    return setup.state_dir / "containers"


def _open_ray(setup: Setup) -> Backend:
    from .ray_backend import RayBackend  # imports Ray: only for a server that asks for it

    return RayBackend(setup.ray_address, setup.state_dir)


KINDS: dict[str, Kind] = {
    "local": Kind("local", _open_local, False, None, "processes on this machine", _ready_local, _prelaunch_local),
    # a cluster grows (Ray's autoscaler adds nodes for pending actors): no tight cap
    "ray": Kind("ray", _open_ray, True, 10_000, "a Ray actor per container, on a Ray cluster"),
}


def kind(name: str) -> Kind:
    """The backend kind called ``name``; ValueError naming the known ones otherwise."""
    found = KINDS.get(name)
    if found is None:
        raise ValueError(f"Unknown backend {name!r}: use {' or '.join(sorted(KINDS))}.")
    return found


__all__ = ["KINDS", "Backend", "ContainerSpec", "Kind", "Setup", "kind"]
