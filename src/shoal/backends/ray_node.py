"""What every Shoal process on a Ray node shares: the node's own Shoal home and caches, images built on the node,
``add_local_*`` content unpacked there, and the containers' copies of volumes (the server's disk is elsewhere).
Used by a node's agent (:mod:`.ray_agent`) and by a container's own actor (:mod:`.ray_actor`)."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import socket
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from msgspec.structs import replace as replace_struct

from .._image_build import materialise
from ..config import use_home
from ..protocol.messages import HeartbeatRequest, LogEntry
from ..protocol.specs import FileMount, PreparedImage
from .base import ContainerSpec
from .ray_backend import BLOB_PREFIX


def node_dir() -> Path:
    """This node's Shoal directory (images built here, cached per content hash, one build at a time), made this
    process's Shoal home: the control plane's home is on another machine."""
    found = Path(tempfile.gettempdir()) / "shoal-ray" / str(os.getuid())
    found.mkdir(parents=True, exist_ok=True)
    use_home(found / "home")
    return found


def normal_priority() -> None:
    """Move this Ray worker (an agent or a GPU container's actor) back to niceness 0, where the node allows it.

    Ray starts its workers at niceness 15 (``RAY_worker_niceness``) to keep its own daemons responsive. Shoal's
    containers and image builds are the user's workload and would inherit it: beside two ordinary busy processes
    a build at 15 gets about 1% of a core (a 10-s build took minutes). On one machine a container runs at the
    server's niceness; on a Ray node it runs at the node's, 0, when this process may lower its niceness (root or
    CAP_SYS_NICE), else at Ray's (docs/ray.md)."""
    with contextlib.suppress(OSError):
        if os.getpriority(os.PRIO_PROCESS, 0) > 0:
            os.setpriority(os.PRIO_PROCESS, 0, 0)


def node_name() -> str:
    """The node, as ``shoal container list`` shows it: its Ray node id (short) and host."""
    try:
        import ray

        node_id = ray.get_runtime_context().get_node_id()[:8]
    except Exception:  # noqa: BLE001 - outside Ray (unit tests)
        node_id = "?"
    return f"{node_id}@{socket.gethostname()}"


def node_address() -> str:
    """The node's address in the cluster (Ray's node IP): where its containers serve web apps, for the gateway."""
    import ray

    return str(ray.util.get_node_ip_address())  # type: ignore[no-untyped-call]


def copy_volumes(root: Path, spec: ContainerSpec) -> str:
    """Each volume of the container as a copy of its own under ``root``: empty for read-write mounts (the
    container pulls them before the user's code loads, and commits and reloads them itself), pulled here for
    read-only ones; returns the container's SHOAL_SYNCED_VOLUMES."""
    from ..client import CONTAINER, SyncClient
    from ..container.volume_sync import SyncedVolume

    for mount in spec.volumes:
        (root / mount.volume).mkdir(parents=True, exist_ok=True)
    read_only = [m for m in spec.volumes if m.read_only]
    if read_only:
        client = SyncClient(spec.server_url, spec.container_token, CONTAINER)
        try:
            for mount in read_only:
                client.run(SyncedVolume(mount.volume, root / mount.volume).pull(client.client))
        finally:
            client.close()
    mounts = [{"volume": m.volume, "path": m.path, "read_only": m.read_only} for m in spec.volumes]
    return json.dumps(mounts)


def build_image(folder: Path, spec: ContainerSpec, log_path: Path) -> PreparedImage:
    """The container's image as built on this node (``folder``: the node's directory); the build's output goes to
    the container's log here and, as the container's own output, to the app's log (``app.run`` shows it)."""
    from ..container.api import ContainerAPI

    assert spec.image_spec is not None and spec.image is not None
    api = ContainerAPI(spec.server_url, spec.container_id, spec.container_token)
    pending: list[LogEntry] = []
    shipped = [time.monotonic()]

    def ship() -> None:
        if pending:
            with contextlib.suppress(Exception):  # the build goes on without its log
                api.heartbeat(HeartbeatRequest(logs=list(pending)))
            pending.clear()
        shipped[0] = time.monotonic()

    with open(log_path, "a") as log:

        def write(line: str) -> None:
            log.write(line + "\n")
            log.flush()
            pending.append(LogEntry(None, None, "stdout", f"[node {node_name()}] {line}\n", time.time()))
            if len(pending) >= 50 or time.monotonic() - shipped[0] > 0.5:
                ship()

        try:
            prepared = materialise(spec.image_spec, write, api.blob)
            mounts = [FileMount(unpack(folder, m.local, api.blob), m.remote) for m in spec.image.mounts]
            return replace_struct(prepared, mounts=mounts)
        finally:
            ship()
            api.sync.close()


def unpack(folder: Path, local: str, fetch: Callable[[str], bytes]) -> str:
    """Where a mount's content is on this node: a blob unpacked once into the node's cache (by content)."""
    if not local.startswith(BLOB_PREFIX):
        return local
    blob_id, _, file_name = local.removeprefix(BLOB_PREFIX).partition("/")  # a file's blob names it
    target = folder / "mounts" / blob_id
    if not target.exists():
        staging = target.with_name(f".{blob_id}.{os.getpid()}")
        shutil.rmtree(staging, ignore_errors=True)
        with tarfile.open(fileobj=io.BytesIO(fetch(blob_id))) as tar:
            tar.extractall(staging, filter="data")
        with contextlib.suppress(OSError):  # another container of this node unpacked it meanwhile
            staging.rename(target)
        shutil.rmtree(staging, ignore_errors=True)
    return str(target / file_name if file_name else target)
