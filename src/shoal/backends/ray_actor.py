"""What runs inside a Ray actor on a cluster node: one Shoal container, as the local backend would start it.

The actor is only a placement and a process parent: the container inside it is the normal
``python -m shoal.container`` (sandboxed where the node has bubblewrap) and talks to the control plane over HTTP
exactly as a local one does. Ray's object store is never on the data path. The actor is threaded so that
``terminate`` and ``tail`` can be asked while ``wait`` blocks.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from msgspec.structs import replace as replace_struct

from .._image_build import materialise
from ..config import use_home
from ..protocol.messages import HeartbeatRequest, LogEntry
from ..protocol.specs import FileMount, PreparedImage
from .base import ContainerSpec, FolderVolumes
from .local import LocalBackend
from .ray_backend import BLOB_PREFIX


class ContainerHost:
    """One container on this node (a Ray actor class: ``ray.remote`` is applied by the Ray backend).

    Its node keeps a Shoal home of its own (images built here, cached per content hash, one build at a time):
    the control plane's home is on another machine.
    """

    def __init__(self, hidden: tuple[str, ...]) -> None:
        node_dir = Path(tempfile.gettempdir()) / "shoal-ray" / str(os.getuid())
        node_dir.mkdir(parents=True, exist_ok=True)
        use_home(node_dir / "home")  # this actor's process only: it hosts one container
        self.node_dir, self.hidden = node_dir, hidden
        self.local = LocalBackend(node_dir / "containers", FolderVolumes(node_dir / "volumes" / "none"), hidden=hidden)
        self.proc: subprocess.Popen[bytes] | None = None
        self.container_id = ""
        self.sandboxed = False

    def where(self) -> str:
        """The node this actor runs on (answered as soon as Ray placed it)."""
        return _node_name()

    def start(self, spec: ContainerSpec) -> dict[str, str]:
        """Build the container's image on this node if needed, then start its process; returns where it runs."""
        self.container_id = spec.container_id
        if spec.image_spec is not None and spec.image is not None:
            spec = replace(spec, image=self._image(spec))
        synced = self._volumes(spec) if spec.volumes else ""
        started = self.local.command(spec)  # unsandboxed, it dies with this actor
        self.sandboxed = started.sandboxed
        env = started.env
        if synced:
            env["SHOAL_SYNCED_VOLUMES"] = synced
        node = _node_name()
        env["SHOAL_NODE"] = node
        with open(self.local.log_path(spec.container_id), "ab") as log:
            self.proc = subprocess.Popen(started.argv, env=env, cwd=started.cwd,
                                         stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)  # fmt: skip
        return {"node": node, "pid": str(self.proc.pid)}

    def _volumes(self, spec: ContainerSpec) -> str:
        """Each volume as a copy of the container's own on this node (the server's disk is elsewhere): empty for
        read-write mounts (the container pulls them before the user's code loads, and commits and reloads them
        itself), pulled here for read-only ones; returns the container's SHOAL_SYNCED_VOLUMES."""
        from ..client import CONTAINER, SyncClient
        from ..container.volume_sync import SyncedVolume

        root = self.node_dir / "volumes" / spec.container_id
        for mount in spec.volumes:
            (root / mount.volume).mkdir(parents=True, exist_ok=True)
        self.local = LocalBackend(self.node_dir / "containers", FolderVolumes(root), hidden=self.hidden)
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

    def _image(self, spec: ContainerSpec) -> PreparedImage:
        """The image as built on this node; the build's output goes to the container's log here and, as the
        container's own output, to the app's log (``app.run`` shows it as it comes)."""
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

        with open(self.local.log_path(spec.container_id), "a") as log:

            def write(line: str) -> None:
                log.write(line + "\n")
                log.flush()
                pending.append(LogEntry(None, None, "stdout", f"[node {_node_name()}] {line}\n", time.time()))
                if len(pending) >= 50 or time.monotonic() - shipped[0] > 0.5:
                    ship()

            try:
                prepared = materialise(spec.image_spec, write, api.blob)
                mounts = [FileMount(self._unpack(m.local, api.blob), m.remote) for m in spec.image.mounts]
                return replace_struct(prepared, mounts=mounts)
            finally:
                ship()
                api.sync.close()

    def _unpack(self, local: str, fetch: Callable[[str], bytes]) -> str:
        """Where a mount's content is on this node: a blob unpacked once into the node's cache (by content)."""
        if not local.startswith(BLOB_PREFIX):
            return local
        blob_id, _, file_name = local.removeprefix(BLOB_PREFIX).partition("/")  # a file's blob names it
        target = self.node_dir / "mounts" / blob_id
        if not target.exists():
            staging = target.with_name(f".{blob_id}.{os.getpid()}")
            shutil.rmtree(staging, ignore_errors=True)
            with tarfile.open(fileobj=io.BytesIO(fetch(blob_id))) as tar:
                tar.extractall(staging, filter="data")
            with contextlib.suppress(OSError):  # another container of this node unpacked it meanwhile
                staging.rename(target)
            shutil.rmtree(staging, ignore_errors=True)
        return str(target / file_name if file_name else target)

    def wait(self) -> int:
        """Until the container's process exits; its exit code (negative: the signal that killed it)."""
        assert self.proc is not None
        code = self.proc.wait()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)  # no orphans of the user's code
        shutil.rmtree(self.node_dir / "volumes" / self.container_id, ignore_errors=True)  # its copies: committed or not
        return code

    def terminate(self, grace: float) -> None:
        """SIGTERM (unsandboxed: the sandbox dies at once; a sandboxed container learns it from its next heartbeat),
        then SIGKILL after ``grace`` seconds."""
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        if grace > 0:
            if not self.sandboxed:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(grace)
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)

    def tail(self, lines: int = 20) -> str:
        return self.local.output_tail(self.container_id, lines)


def _node_name() -> str:
    """The node, as ``shoal container list`` shows it: its Ray node id (short) and host."""
    try:
        import ray

        node_id = ray.get_runtime_context().get_node_id()[:8]
    except Exception:  # noqa: BLE001 - outside Ray (unit tests)
        node_id = "?"
    return f"{node_id}@{socket.gethostname()}"
