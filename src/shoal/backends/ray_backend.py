"""The Ray backend: each container is one Ray actor on a cluster node, running the normal container process.

Ray only places and runs container processes; the control plane stays the source of truth for inputs, retries,
timeouts, results and schedules, and containers pull their inputs from it over HTTP as local ones do.

- The server is not Ray's driver: a child process, the Ray bridge (:mod:`.ray_bridge`), is. Ray ends a driver
  that lost its cluster's head, so losing the head ends the bridge, never the server: the server says "cluster
  unreachable" (:meth:`RayBackend.trouble`), counts the containers that ran as lost (their inputs are queued again,
  uncharged), keeps asking for the containers it wants, and starts a bridge again until the cluster answers.
- A container is a detached actor named after the container id (``max_restarts=0``) in a namespace of this
  control plane's own, sized from the function's spec: ``cpu`` -> ``num_cpus`` (Modal's default request, 0.125,
  when unset), ``memory`` -> ``memory``, ``gpu="A100:2"`` -> ``num_gpus=2`` and Ray's ``accelerator_type:A100``.
- Actors are created asynchronously: ``launch`` returns at once, and a container whose actor Ray has not placed
  yet (or that waits for the cluster to be reachable) is *waiting for capacity* (shown by ``shoal container
  list``; no startup timeout runs while it waits). It is never reported lost: it waits until it runs or is
  stopped.
- A dead actor (its node lost, killed, out of memory) is a dead container: its inputs are retried or isolated as
  for a killed local container. Actors left by a previous life of the control plane are found by name and killed.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import importlib.util
import io
import json
import logging
import socket
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec

from .._image_build import materialise
from ..config import settings
from ..exception import InvalidError
from ..protocol.specs import FileMount, ImageSpec, PreparedImage, Resources
from . import resources, sandbox
from .base import Backend, Capabilities, ContainerSpec, Unplaceable, Waiting
from .ray_link import (
    Cluster,
    FromBridge,
    Launch,
    Placed,
    Terminate,
    frame,
    from_bridge,
    read_frame,
    read_frame_blocking,
)

log = logging.getLogger("shoal.ray")
BLOB_PREFIX = "blob:"  # a mount whose content is a blob (a tar), not a path of the node
DEFAULT_CPU = 0.125  # Modal's default CPU request for a container
ACTOR_PREFIX = "ta-"  # container ids: the actors' names
FIRST_CONTACT = 120.0  # seconds for the first bridge to reach the cluster before the server refuses to start
RECONNECT_TIMEOUT = 60.0  # seconds for a later bridge to reach the cluster before another is tried
RETRY_EVERY = (0.5, 1.0, 2.0, 5.0)  # seconds between bridges while the cluster is unreachable (the last repeats)


class BridgeFailed(Exception):
    """A Ray bridge could not reach the cluster; the message says why, from its log."""


@dataclass
class BridgeProcess:
    """One Ray bridge that reached the cluster: its process, the server's end of its socket, and its first
    report of the cluster's resources."""

    proc: subprocess.Popen[bytes]
    sock: socket.socket
    cluster: Cluster

    @classmethod
    def start(
        cls, address: str, namespace: str, hidden: tuple[str, ...], log_file: Path, timeout: float
    ) -> BridgeProcess:
        """Start a bridge and wait for its handshake (blocking).

        Raises:
            BridgeFailed: it ended or did not answer within ``timeout`` seconds (the cluster is unreachable).
        """
        ours, theirs = socket.socketpair()
        with open(log_file, "ab") as out:
            argv = [sys.executable, "-m", "shoal.backends.ray_bridge", address, namespace, json.dumps(hidden),
                    str(theirs.fileno())]  # fmt: skip
            proc = subprocess.Popen(argv, pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=subprocess.STDOUT, start_new_session=True)  # fmt: skip
        theirs.close()
        ours.settimeout(timeout)
        try:
            body = read_frame_blocking(ours)
        except (TimeoutError, OSError):
            body = None
        first = from_bridge(body) if body is not None else None
        if not isinstance(first, Cluster):
            ours.close()
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            proc.wait()
            raise BridgeFailed(_last_words(log_file) or f"no answer within {timeout:g}s")
        ours.setblocking(False)
        return cls(proc, ours, first)


class RayBackend(Backend):
    """Containers as Ray actors on the cluster at ``address`` (``auto``: the one this machine belongs to)."""

    def __init__(self, address: str, state_dir: Path) -> None:
        super().__init__()
        if importlib.util.find_spec("ray") is None:
            raise InvalidError("The Ray backend needs Ray: pip install 'shoal[ray]'")
        self.address = address
        self.namespace = self.namespace_for(state_dir)
        # the sandbox covers the server's state and home on a node that shares its disk
        self.hidden = (str(state_dir), str(settings().home))
        self.log_file = state_dir / "ray-bridge.log"
        self.resources: dict[str, float] = {}  # the cluster's, as last reported
        self.specs: dict[str, ContainerSpec] = {}  # every container asked for, until it exits
        self.sent: set[str] = set()  # ... of those, the ones the current bridge was asked to launch
        self.placed: dict[str, str] = {}  # container id -> its node, once its actor runs
        self.waiting_since: dict[str, float] = {}  # container id -> when it was asked for, until placed
        self.terminating: set[str] = set()  # containers the control plane is stopping
        self.tails: dict[str, str] = {}  # container id -> its last output lines
        self.unreachable_since: float | None = None  # wall time the cluster was lost (None: it answers)
        self._writer: asyncio.StreamWriter | None = None
        self._closing = False
        self._supervisor: asyncio.Task[None] | None = None
        state_dir.mkdir(parents=True, exist_ok=True)
        try:
            self._first: BridgeProcess | None = BridgeProcess.start(
                address, self.namespace, self.hidden, self.log_file, FIRST_CONTACT
            )
        except BridgeFailed as exc:
            raise InvalidError(f"Cannot reach the Ray cluster at {address}: {exc}. Start it (`ray start --head`), "
                               "or pass its address with --ray-address.") from None  # fmt: skip
        self.resources = dict(self._first.cluster.resources)

    @staticmethod
    def namespace_for(state_dir: Path) -> str:
        """The Ray namespace of the control plane keeping its state in ``state_dir``: its actors' names live there."""
        return "shoal-" + hashlib.sha256(str(state_dir.resolve()).encode()).hexdigest()[:12]

    # ---- the bridge -----------------------------------------------------------------------------------

    def warm(self, server_url: str) -> None:
        if self._supervisor is None:
            self._supervisor = asyncio.get_running_loop().create_task(self._supervise())

    async def _supervise(self) -> None:
        """Serve through one bridge at a time; when one ends (the cluster lost), start the next until the cluster
        answers again."""
        link, tries = self._first, 0
        self._first = None
        while not self._closing:
            if link is None:
                try:
                    link = await asyncio.to_thread(BridgeProcess.start, self.address, self.namespace, self.hidden,
                                                   self.log_file, RECONNECT_TIMEOUT)  # fmt: skip
                except BridgeFailed as exc:
                    log.info("the Ray cluster at %s is still unreachable: %s", self.address, exc)
                    await asyncio.sleep(RETRY_EVERY[min(tries, len(RETRY_EVERY) - 1)])
                    tries += 1
                    continue
                tries = 0
            await self._serve(link)
            link = None
            if not self._closing:
                self._lost_cluster()

    async def _serve(self, link: BridgeProcess) -> None:
        """Send the bridge what it is to launch, and apply its reports, until it ends."""
        reader, writer = await asyncio.open_unix_connection(sock=link.sock)
        self._writer = writer
        self.resources = dict(link.cluster.resources)
        if self.unreachable_since is not None:
            self.unreachable_since = None
            log.warning("the Ray cluster at %s is reachable again", self.address)
            self.on_trouble(None)
        for spec in [s for cid, s in self.specs.items() if cid not in self.sent]:
            self._launch(spec)
        try:
            while (body := await read_frame(reader)) is not None:
                self._apply(from_bridge(body))
        finally:
            self._writer = None
            writer.close()
            code = await asyncio.to_thread(_reap, link.proc)
            if not self._closing:
                log.warning("the Ray bridge ended (exit code %s): %s", code, _last_words(self.log_file))

    def _apply(self, message: FromBridge) -> None:
        if isinstance(message, Cluster):
            self.resources = dict(message.resources)
        elif isinstance(message, Placed):
            if message.container_id in self.specs:
                self.placed[message.container_id] = message.node
                self.waiting_since.pop(message.container_id, None)
                self.on_placed(message.container_id, message.node)
        else:
            self.tails[message.container_id] = message.tail
            self._exited(message.container_id, message.code)

    def _lost_cluster(self) -> None:
        """The bridge ended: the containers that ran are lost (their inputs run again, uncharged); those still
        waiting for a place are asked for again of the next bridge; those being stopped are stopped."""
        self.unreachable_since = self.unreachable_since or time.time()
        sent, self.sent = self.sent, set()
        lost = [cid for cid in sent if cid in self.placed]
        stopped = [cid for cid in sent if cid in self.terminating and cid not in self.placed]
        for cid in lost:
            self._exited(cid, None, with_cluster=True)
        for cid in stopped:
            self._exited(cid, 0)  # it never ran
        text = (f"The Ray cluster at {self.address} is unreachable: {len(lost)} running container(s) were lost "
                "(their inputs run again); inputs stay queued, and containers start when it is back.")  # fmt: skip
        log.warning(text)
        self.on_trouble(text)

    def _launch(self, spec: ContainerSpec) -> None:
        if self._writer is not None:
            self._writer.write(frame(Launch(spec)))
            self.sent.add(spec.container_id)

    def _exited(self, container_id: str, code: int | None, with_cluster: bool = False) -> None:
        if self.specs.pop(container_id, None) is None:
            return
        self.sent.discard(container_id)
        self.placed.pop(container_id, None)
        self.waiting_since.pop(container_id, None)
        self.terminating.discard(container_id)
        if with_cluster:
            self.on_lost_with_cluster(container_id)
        else:
            self.on_exit(container_id, code)

    # ---- the cluster ----------------------------------------------------------------------------------

    def trouble(self) -> str | None:
        if self.unreachable_since is None:
            return None
        since = time.strftime("%H:%M:%S", time.localtime(self.unreachable_since))
        return (f"the Ray cluster at {self.address} is unreachable since {since}; inputs stay queued and run "
                "when it is back")  # fmt: skip

    def capabilities(self) -> Capabilities:
        total = self.resources
        memory = int(total.get("memory", 0) // 2**20)
        isolated = sandbox.bwrap() is not None  # the nodes are assumed to be set up as this machine is
        return Capabilities(isolated, isolated, int(total.get("GPU", 0)), float(total.get("CPU", 0)), memory)

    def accelerators(self) -> dict[str, float]:
        """GPU types the cluster's nodes offer (Ray's ``accelerator_type:*`` resources), with their counts."""
        return {k.split(":", 1)[1]: v for k, v in self.resources.items() if k.startswith("accelerator_type:")}

    def check_resources(self, resources: Resources) -> None:
        """Refuse at registration what no node of the cluster could ever place."""
        if not resources.gpu:
            return
        kind, count = parse_gpu(resources.gpu)
        gpus = self.resources.get("GPU", 0)
        offered = self.accelerators()
        if not gpus or count > gpus:
            raise Unplaceable(f"gpu={resources.gpu!r}: the Ray cluster has {gpus:g} GPUs in all "
                               f"({_describe(offered)}). Add GPU nodes, or ask for fewer.")  # fmt: skip
        if kind is not None and kind not in offered:
            raise Unplaceable(f"gpu={resources.gpu!r}: no node of the Ray cluster offers a {kind} "
                               f"(it has {_describe(offered)}); ask for one of those, or gpu='any'.")  # fmt: skip

    # ---- containers -----------------------------------------------------------------------------------

    def prepare_image(
        self, image: ImageSpec, log: Callable[[str], None], fetch: Callable[[str], bytes]
    ) -> PreparedImage:
        """Built here first, so that the caller sees the build log and its errors at deploy; each node builds it
        again for its containers (``ContainerHost``), once per node, from the same recipe. ``add_local_*``
        content travels as blobs of the control plane (a tar each, content-addressed), unpacked on the node."""
        prepared = materialise(image, log, fetch)
        mounts = [FileMount(self._pack(m.local), m.remote) for m in prepared.mounts]
        return msgspec.structs.replace(prepared, mounts=mounts)

    def _pack(self, local: str) -> str:
        """``blob:<id>`` of a tar of folder ``local`` (``blob:<id>/<name>`` of a file), stored in the control
        plane's blob store."""
        path = Path(local)
        data = pack(path)
        blob_id = hashlib.sha256(data).hexdigest()
        self.put_blob(blob_id, data)
        return BLOB_PREFIX + blob_id + (f"/{path.name}" if path.is_file() else "")

    async def launch(self, spec: ContainerSpec) -> None:
        self.specs[spec.container_id] = spec
        self.waiting_since[spec.container_id] = time.monotonic()
        self._launch(spec)  # or by the next bridge, once the cluster answers

    async def terminate(self, container_id: str, grace: float) -> None:
        if container_id not in self.specs:
            return
        self.terminating.add(container_id)
        if container_id not in self.sent:  # never asked of a bridge: it never ran
            asyncio.get_running_loop().call_soon(self._exited, container_id, 0)
        elif self._writer is not None:
            self._writer.write(frame(Terminate(container_id, grace)))

    def waiting(self) -> dict[str, Waiting]:
        """Containers whose actors wait for the cluster's capacity (or for the cluster), with seconds waited."""
        now = time.monotonic()
        reason = "waiting for the Ray cluster" if self.trouble() else "waiting for the Ray cluster's capacity"
        return {cid: Waiting(now - since, reason) for cid, since in self.waiting_since.items()}

    def output_tail(self, container_id: str, lines: int = 20) -> str:
        return "\n".join(self.tails.pop(container_id, "").splitlines()[-lines:])

    def list(self) -> list[str]:
        return list(self.specs)

    def has(self, container_id: str) -> bool:
        return container_id in self.specs

    async def close(self) -> None:
        """Stop the bridge: it stops every container first (as it does when the server's end closes)."""
        self._closing = True
        if self._first is not None:  # never served (the server did not start)
            self._first.sock.close()
            await asyncio.to_thread(_reap, self._first.proc)
        if self._writer is not None:
            self._writer.close()
        if self._supervisor is not None:
            await asyncio.wait({self._supervisor}, timeout=15)
            self._supervisor.cancel()


def actor_options(resources: Resources) -> dict[str, Any]:
    """Ray's placement of one container: its resources, spread over the nodes (one node lost takes few)."""
    options: dict[str, Any] = {"num_cpus": resources.cpu if resources.cpu is not None else DEFAULT_CPU,
                               "scheduling_strategy": "SPREAD"}  # fmt: skip
    if resources.memory:
        options["memory"] = resources.memory * 2**20
    if resources.gpu:
        kind, count = parse_gpu(resources.gpu)
        options["num_gpus"] = count
        if kind is not None:
            options["resources"] = {f"accelerator_type:{kind}": 0.001}
    return options


def _reap(proc: subprocess.Popen[bytes], grace: float = 12.0) -> int:
    """Wait for a bridge to end (it stops its containers first), killing it after ``grace`` seconds."""
    try:
        return proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


def _last_words(log_file: Path) -> str:
    """The bridge's last line about the cluster (its reason for ending), from its log."""
    with contextlib.suppress(OSError):
        lines = [line for line in log_file.read_text(errors="replace").splitlines() if "shoal ray bridge:" in line]
        if lines:
            return lines[-1].split("shoal ray bridge:", 1)[1].strip()
    return ""


def pack(path: Path) -> bytes:
    """A tar of ``path`` (a file: one member named after it; a folder: its contents), reproducible: sorted
    members, no owners or times, so the same content gives the same blob."""
    out = io.BytesIO()

    def clean(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        info.mtime = 0
        return info

    with tarfile.open(fileobj=out, mode="w") as tar:
        if path.is_file():
            tar.add(path, arcname=path.name, filter=clean)
        else:
            for item in sorted(path.rglob("*")):
                tar.add(item, arcname=str(item.relative_to(path)), recursive=False, filter=clean)
    return out.getvalue()


def parse_gpu(gpu: str) -> tuple[str | None, int]:
    """Modal's ``gpu=`` forms (:func:`.resources.parse_gpu`) as Ray places them: (Ray's name for the first type of
    a preference list, or None for any; the count). Ray's resources name one type each: the rest of a list is
    not tried."""
    request = resources.parse_gpu(gpu)
    if not request.kinds:
        return None, request.count
    return request.kinds[0].rstrip("!").replace("A100-80GB", "A100-80G"), request.count


def _describe(offered: dict[str, float]) -> str:
    return ", ".join(f"{n:g} x {k}" for k, n in sorted(offered.items())) or "no typed GPUs"
