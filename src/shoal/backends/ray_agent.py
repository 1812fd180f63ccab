"""One Ray actor per node that starts that node's containers (those without GPUs): the node's agent.

A container on Ray used to be an actor of its own, and so a fresh Ray worker process (about a second of CPU) plus
a fresh interpreter. The agent is one asynchronous actor per node, holding a :class:`~.local.LocalBackend` of the
node: containers are forked from its fork servers (``container/zygote.py``), each in its own sandbox, exactly as
on one machine. Ray still accounts for each container's resources: the Ray bridge reserves a placement group
bundle per container, and asks the agent of the node the bundle landed on to start it (``ray_bridge.py``).
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil

from msgspec.structs import replace
from msgspec.structs import replace as replace_struct

from .base import ContainerSpec, FolderVolumes
from .local import LocalBackend
from .ray_node import build_image, copy_volumes, node_address, node_dir, node_name, normal_priority


class NodeAgent:
    """The containers of one node (a Ray actor class: ``ray.remote`` is applied by the Ray bridge; its methods are
    coroutines, so Ray runs many at once on the actor's event loop)."""

    def __init__(self, hidden: tuple[str, ...]) -> None:
        normal_priority()  # its containers are not Ray's niced workers
        self.node_dir = node_dir()
        self.volumes = self.node_dir / "volumes"
        # a volume of a container is its own copy, at volumes/<container id>/<volume> (see start)
        self.local = LocalBackend(self.node_dir / "containers", FolderVolumes(self.volumes), hidden=hidden, place=False)
        self.local.on_exit = self._exited
        self.exits: dict[str, asyncio.Future[int | None]] = {}
        self.node = node_name()

    def where(self) -> str:
        return self.node

    async def start(self, spec: ContainerSpec) -> str:
        """Build the container's image on this node if needed, copy its volumes, then fork it; returns the node."""
        cid = spec.container_id
        self.exits[cid] = asyncio.get_running_loop().create_future()
        if spec.image_spec is not None and spec.image is not None:
            image = await asyncio.to_thread(build_image, self.node_dir, spec, self.local.log_path(cid))
            spec = replace(spec, image=image)
        env = {**spec.env, "SHOAL_NODE": self.node, "SHOAL_WEB_HOST": node_address()}
        if spec.volumes:
            env["SHOAL_SYNCED_VOLUMES"] = await asyncio.to_thread(copy_volumes, self.volumes / cid, spec)
            own = [replace_struct(m, volume=f"{cid}/{m.volume}") for m in spec.volumes]  # this container's copies
            spec = replace(spec, volumes=own)
        await self.local.launch(replace(spec, env=env))
        return self.node

    async def wait(self, container_id: str) -> int | None:
        """Until the container ends: its exit code (negative: the signal that killed it)."""
        return await asyncio.shield(self.exits[container_id])

    def _exited(self, container_id: str, code: int | None) -> None:
        shutil.rmtree(self.volumes / container_id, ignore_errors=True)  # its copies: committed or not
        found = self.exits.get(container_id)
        if found is not None and not found.done():
            found.set_result(code)
        asyncio.get_running_loop().call_later(60, self.exits.pop, container_id, None)  # asked again: same answer

    async def terminate(self, container_id: str, grace: float) -> None:
        await self.local.terminate(container_id, grace)

    def tail(self, container_id: str, lines: int = 20) -> str:
        return self.local.output_tail(container_id, lines)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.local.close()
