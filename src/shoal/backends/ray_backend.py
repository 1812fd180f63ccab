"""The Ray backend: each container is one Ray actor on a cluster node, running the normal container process.

Ray only places and runs container processes; the control plane stays the source of truth for inputs, retries,
timeouts, results and schedules, and containers pull their inputs from it over HTTP as local ones do.

- A container is a detached actor named after the container id (``max_restarts=0``) in a namespace of this
  control plane's own, sized from the function's spec: ``cpu`` -> ``num_cpus`` (Modal's default request, 0.125,
  when unset), ``memory`` -> ``memory``, ``gpu="A100:2"`` -> ``num_gpus=2`` and Ray's ``accelerator_type:A100``.
- Actors are created asynchronously: ``launch`` returns at once, and a container whose actor Ray has not placed
  yet is *waiting for capacity* (shown by ``shoal container list``; no startup timeout runs while it waits).
- A dead actor (its node lost, killed, out of memory) is a dead container: its inputs are retried or isolated as
  for a killed local container. Actors left by a previous life of the control plane are found by name and killed.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import logging
import tarfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

from .._image_build import materialise
from ..config import settings
from ..exception import InvalidError
from ..protocol.specs import FileMount, ImageSpec, PreparedImage, Resources
from . import sandbox
from .base import Backend, Capabilities, ContainerSpec, Unplaceable, killed_by_signal

log = logging.getLogger("shoal.ray")
BLOB_PREFIX = "blob:"  # a mount whose content is a blob (a tar), not a path of the node
DEFAULT_CPU = 0.125  # Modal's default CPU request for a container
NODE_LOSS_SETTLE = 1.0  # seconds after a container's death by signal before its actor is asked whether it lives
ACTOR_PREFIX = "ta-"  # container ids: the actors' names


class RayBackend(Backend):
    """Containers as Ray actors on the cluster at ``address`` (``auto``: the one this machine belongs to)."""

    def __init__(self, address: str, state_dir: Path) -> None:
        super().__init__()
        try:
            import ray
        except ImportError:
            raise InvalidError("The Ray backend needs Ray: pip install 'shoal[ray]'") from None
        self.ray: Any = ray  # untyped: Ray's stubs are partial
        self.namespace = self.namespace_for(state_dir)
        if not ray.is_initialized():
            ray.init(address=address, namespace=self.namespace, log_to_driver=False, logging_level=logging.WARNING)
        # the sandbox covers the server's state and home on a node that shares its disk
        self.hidden = (str(state_dir), str(settings().home))
        self.host_class = self.ray.remote(max_concurrency=4)(_actor_class())
        self.handles: dict[str, Any] = {}  # container id -> its actor
        self.placed: dict[str, str] = {}  # container id -> its node, once the actor runs
        self.waiting_since: dict[str, float] = {}  # container id -> when it was asked for, until placed
        self.terminating: set[str] = set()  # containers the control plane is stopping (their deaths are no loss)
        self.tails: dict[str, str] = {}  # container id -> its last output lines, read before the actor went
        self._watchers: set[asyncio.Task[None]] = set()
        self.reconcile()

    @staticmethod
    def namespace_for(state_dir: Path) -> str:
        """The Ray namespace of the control plane keeping its state in ``state_dir``: its actors' names live there."""
        return "shoal-" + hashlib.sha256(str(state_dir.resolve()).encode()).hexdigest()[:12]

    # ---- the cluster ----------------------------------------------------------------------------------

    def reconcile(self) -> None:
        """Kill the actors of a previous life of this control plane (its containers are dead to the store)."""
        for name in self.ray.util.list_named_actors(all_namespaces=False):
            if name.startswith(ACTOR_PREFIX) and name not in self.handles:
                with contextlib.suppress(Exception):
                    self.ray.kill(self.ray.get_actor(name, namespace=self.namespace), no_restart=True)
                    log.warning("killed actor %s, left by a previous run of this control plane", name)

    def capabilities(self) -> Capabilities:
        total = self.ray.cluster_resources()
        memory = int(total.get("memory", 0) // 2**20)
        isolated = sandbox.bwrap() is not None  # the nodes are assumed to be set up as this machine is
        return Capabilities(isolated, isolated, int(total.get("GPU", 0)), float(total.get("CPU", 0)), memory)

    def accelerators(self) -> dict[str, float]:
        """GPU types the cluster's nodes offer (Ray's ``accelerator_type:*`` resources), with their counts."""
        total = self.ray.cluster_resources()
        return {k.split(":", 1)[1]: v for k, v in total.items() if k.startswith("accelerator_type:")}

    def check_resources(self, resources: Resources) -> None:
        """Refuse at registration what no node of the cluster could ever place."""
        if not resources.gpu:
            return
        kind, count = parse_gpu(resources.gpu)
        gpus = self.ray.cluster_resources().get("GPU", 0)
        offered = self.accelerators()
        if not gpus or count > gpus:
            raise Unplaceable(f"gpu={resources.gpu!r}: the Ray cluster has {gpus:g} GPUs in all "
                               f"({_describe(offered)}). Add GPU nodes, or ask for fewer.")  # fmt: skip
        if kind is not None and kind not in offered:
            raise Unplaceable(f"gpu={resources.gpu!r}: no node of the Ray cluster offers a {kind} "
                               f"(it has {_describe(offered)}); ask for one of those, or gpu='any'.")  # fmt: skip

    def actor_options(self, resources: Resources) -> dict[str, Any]:
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
        options = self.actor_options(spec.resources)
        handle = self.host_class.options(name=spec.container_id, namespace=self.namespace, lifetime="detached",
                                         max_restarts=0, **options).remote(self.hidden)  # fmt: skip
        self.handles[spec.container_id] = handle
        self.waiting_since[spec.container_id] = time.monotonic()
        task = asyncio.create_task(self._run(spec, handle))
        self._watchers.add(task)
        task.add_done_callback(self._watchers.discard)

    async def _run(self, spec: ContainerSpec, handle: Any) -> None:
        """Start the container in its actor once Ray placed it, then report its exit (None: the actor died)."""
        container_id = spec.container_id
        code: int | None = None
        try:
            node = await handle.where.remote()  # answers once Ray placed the actor and its worker runs
            self.placed[container_id] = node
            self.waiting_since.pop(container_id, None)
            self.on_placed(container_id, node)
            await handle.start.remote(spec)  # the image built on the node if needed, then the process started
            code = await handle.wait.remote()
            code = await self._exit_of(container_id, handle, code)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - the actor (or its node) died: the container is lost
            log.warning("container %s: its Ray actor died (%s)", container_id, type(exc).__name__)
        finally:
            with contextlib.suppress(Exception):
                self.ray.kill(handle, no_restart=True)
            self.handles.pop(container_id, None)
            self.terminating.discard(container_id)
            self.placed.pop(container_id, None)
            self.waiting_since.pop(container_id, None)
        self.on_exit(container_id, code)

    async def _exit_of(self, container_id: str, handle: Any, code: int) -> int | None:
        """The container's exit code, or None when its actor went down with it: a node lost kills the container's
        process a moment before its actor, which may still report the signal. So after a death by signal the actor
        is asked for the process's last lines, a moment later; an actor that cannot answer was lost with its node
        (its inputs are not to blame), one that answers saw its process killed alone (out of memory, a kill)."""
        suspect = killed_by_signal(code) and container_id not in self.terminating
        if suspect:
            await asyncio.sleep(NODE_LOSS_SETTLE)
        try:
            self.tails[container_id] = await asyncio.wait_for(_awaitable(handle.tail.remote()), 5)
        except Exception:  # noqa: BLE001 - the actor is gone or does not answer
            if suspect:
                log.warning("container %s: killed, and its Ray actor is gone too: its node was lost", container_id)
                return None
        return code

    async def terminate(self, container_id: str, grace: float) -> None:
        handle = self.handles.get(container_id)
        if handle is None:
            return
        self.terminating.add(container_id)
        if container_id in self.placed and grace > 0:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(_awaitable(handle.terminate.remote(grace)), grace + 5)
        with contextlib.suppress(Exception):
            self.ray.kill(handle, no_restart=True)

    def waiting(self) -> dict[str, float]:
        """Containers whose actors wait for the cluster's capacity, with how long (seconds) each has waited."""
        now = time.monotonic()
        return {cid: now - since for cid, since in self.waiting_since.items()}

    def output_tail(self, container_id: str, lines: int = 20) -> str:
        return "\n".join(self.tails.pop(container_id, "").splitlines()[-lines:])

    def list(self) -> list[str]:
        return list(self.handles)

    def has(self, container_id: str) -> bool:
        return container_id in self.handles

    async def close(self) -> None:
        await asyncio.gather(*(self.terminate(cid, 2.0) for cid in list(self.handles)), return_exceptions=True)
        if self._watchers:
            await asyncio.wait(self._watchers, timeout=5)


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
    """Modal's ``gpu=`` syntax: ``"T4"``, ``"A100:2"``, ``"any"`` -> (type or None for any, count)."""
    kind, _, count = gpu.partition(":")
    kind = kind.strip()
    if kind.lower() == "any":
        return None, int(count or 1)
    return kind.upper().replace("A100-80GB", "A100-80G"), int(count or 1)


def _describe(offered: dict[str, float]) -> str:
    return ", ".join(f"{n:g} x {k}" for k, n in sorted(offered.items())) or "no typed GPUs"


async def _awaitable(ref: Any) -> Any:
    return await ref


def _actor_class() -> type:
    from .ray_actor import ContainerHost

    return ContainerHost
