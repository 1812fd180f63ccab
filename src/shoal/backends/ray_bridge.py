"""The Ray bridge: the server's child process that is Ray's driver (``python -m shoal.backends.ray_bridge``).

Ray ends a driver that loses its cluster's head (its core worker exits once the GCS has been unreachable for a
while). So the server is never the driver: this process is, and the server's :class:`~.ray_backend.RayBackend`
starts it, talks to it over a socket (:mod:`.ray_link`), and starts another when it ends. Here each container is a
detached actor named after the container id (``max_restarts=0``), in a namespace of the control plane's own, which
runs the normal container process (:mod:`.ray_actor`).

The bridge ends on its own (exit code :data:`EXIT_UNREACHABLE`) when it cannot reach the cluster, at start or for
``SHOAL_RAY_HEAD_TIMEOUT`` seconds later; and, stopping its containers first, when the server closes the socket.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from ..config import settings
from ..protocol.specs import Resources
from .base import ContainerSpec, killed_by_signal
from .ray_backend import ACTOR_PREFIX, actor_options
from .ray_link import Cluster, Exited, FromBridge, Launch, Placed, Terminate, frame, read_frame, to_bridge

log = logging.getLogger("shoal.ray.bridge")
EXIT_UNREACHABLE = 3  # the cluster could not be reached, or was lost
HEALTH_EVERY = 1.0  # seconds between two looks at the cluster (its resources, and whether its head answers)
NODE_LOSS_SETTLE = 1.0  # seconds after a container's death by signal before its actor is asked whether it lives
UNAVAILABLE_RETRY = 1.0  # seconds before an actor Ray calls unavailable is asked again
NAME_FREED_WITHIN = 10.0  # seconds for the name of a killed actor of a previous bridge to become free


class Bridge:
    """The containers of one control plane on the cluster; reports go out through ``send``.

    A container without GPUs gets a placement group of one bundle (its resources: Ray accounts for them, and its
    autoscaler sees the demand of those still pending) and is forked by the agent of the node the bundle landed
    on (:mod:`.ray_agent`). A container with GPUs is an actor of its own (:mod:`.ray_actor`), so that Ray assigns
    it its GPUs (``CUDA_VISIBLE_DEVICES``), as it does for any actor.
    """

    def __init__(self, ray: Any, namespace: str, hidden: tuple[str, ...], send: Callable[[FromBridge], None]):
        from .ray_actor import ContainerHost
        from .ray_agent import NodeAgent

        self.ray, self.namespace, self.hidden, self.send = ray, namespace, hidden, send
        self.host_class = ray.remote(max_concurrency=4)(ContainerHost)
        self.agent_class = ray.remote(NodeAgent)
        self.agents: dict[str, asyncio.Future[Any]] = {}  # node id -> its agent, once made (or being made)
        self.handles: dict[str, Any] = {}  # container id -> its own actor (GPU containers)
        self.forked: dict[str, asyncio.Task[None]] = {}  # container id -> its run (forked by an agent)
        self.unplaced: set[str] = set()  # forked containers whose bundles wait for a place
        self.agent_of: dict[str, Any] = {}  # container id -> its node's agent, once its bundle is placed
        self.placed: set[str] = set()  # containers that run (their actors, or their processes started)
        self.terminating: set[str] = set()  # containers the control plane is stopping (their deaths are no loss)
        self.tails: dict[str, str] = {}  # container id -> its last output lines, read before the actor went
        self._watchers: set[asyncio.Task[None]] = set()

    def reconcile(self) -> None:
        """Kill the actors of a previous life of this control plane or bridge (their containers are over)."""
        for name in self.ray.util.list_named_actors(all_namespaces=False):
            if name.startswith(ACTOR_PREFIX) and name not in self.handles:
                with contextlib.suppress(Exception):
                    self.ray.kill(self.ray.get_actor(name, namespace=self.namespace), no_restart=True)
                    log.warning("killed actor %s, left by a previous run of this control plane", name)

    async def launch(self, spec: ContainerSpec) -> None:
        if not spec.resources.gpu:
            task = asyncio.create_task(self._run_forked(spec))
            self.forked[spec.container_id] = task
            task.add_done_callback(lambda _: self.forked.pop(spec.container_id, None))
            return
        try:
            handle = await self._create(spec)
        except Exception as exc:  # noqa: BLE001 - Ray refused the actor: the container is lost, not its inputs' fault
            log.warning("container %s: Ray refused its actor (%s: %s)", spec.container_id, type(exc).__name__, exc)
            self.send(Exited(spec.container_id, None, f"Ray refused its actor: {exc}"))
            return
        self.handles[spec.container_id] = handle
        task = asyncio.create_task(self._run(spec, handle))
        self._watchers.add(task)
        task.add_done_callback(self._watchers.discard)

    async def _run_forked(self, spec: ContainerSpec) -> None:
        """Reserve the container's bundle, then have its node's agent fork it; report its exit (None: lost)."""
        cid = spec.container_id
        group = self.ray.util.placement_group([bundle(spec.resources)], strategy="STRICT_PACK")
        self.unplaced.add(cid)
        code: int | None = None
        node_id, agent = "", None
        try:
            await group.ready()  # once Ray reserved the bundle (cancelled: stopped before that)
            self.unplaced.discard(cid)
            table = await asyncio.to_thread(self.ray.util.placement_group_table, group)
            node_id = table["bundles_to_node_id"][0]
            agent = self.agent_of[cid] = await self._agent(node_id)
            self.placed.add(cid)
            self.send(Placed(cid, await self._ask(lambda: agent.where.remote())))
            await agent.start.remote(spec)
            if cid in self.terminating:  # stopped while it started
                await agent.terminate.remote(cid, 0.0)
            code = await self._ask(lambda: agent.wait.remote(cid))
            with contextlib.suppress(Exception):
                self.tails[cid] = await asyncio.wait_for(_awaitable(agent.tail.remote(cid)), 5)
        except asyncio.CancelledError:  # stopped while it waited for a place: it never ran
            code = 0
        except Exception as exc:  # noqa: BLE001 - its agent (or its node) died, or Ray refused the group
            if cid in self.terminating:
                code = -signal.SIGKILL if cid in self.placed else 0
            else:
                log.warning("container %s: lost with its node's agent (%s: %s)", cid, type(exc).__name__, exc)
            if isinstance(exc, self.ray.exceptions.RayActorError):  # the agent died: its node's next makes another
                self._forget_agent(node_id, agent)
        finally:
            self.unplaced.discard(cid)
            self.agent_of.pop(cid, None)
            self.placed.discard(cid)
            self.terminating.discard(cid)
            with contextlib.suppress(Exception):
                await asyncio.to_thread(self.ray.util.remove_placement_group, group)
        self.send(Exited(cid, code, self.tails.pop(cid, "")))

    async def _agent(self, node_id: str) -> Any:
        """The agent of node ``node_id``, made on first use (an actor pinned to the node, using no resources)."""
        made = self.agents.get(node_id)
        if made is None:
            made = self.agents[node_id] = asyncio.ensure_future(self._make_agent(node_id))
        try:
            return await asyncio.shield(made)
        except Exception:
            self.agents.pop(node_id, None)
            raise

    async def _make_agent(self, node_id: str) -> Any:
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        pinned = NodeAffinitySchedulingStrategy(node_id, soft=False)
        agent = self.agent_class.options(num_cpus=0, scheduling_strategy=pinned, max_concurrency=10_000,
                                         max_restarts=0).remote(self.hidden)  # fmt: skip
        await self._ask(lambda: agent.where.remote())
        return agent

    def _forget_agent(self, node_id: str, agent: Any) -> None:
        made = self.agents.get(node_id)
        if made is not None and made.done() and (made.exception() is not None or made.result() is agent):
            self.agents.pop(node_id, None)

    async def _create(self, spec: ContainerSpec) -> Any:
        """The container's actor. Its name may still be held by the killed actor of a previous bridge (a container
        that waited for a place while the bridge was lost, asked for again): that one is killed, and its name
        awaited."""
        options = {"name": spec.container_id, "namespace": self.namespace, "lifetime": "detached", "max_restarts": 0,
                   **actor_options(spec.resources)}  # fmt: skip
        deadline = time.monotonic() + NAME_FREED_WITHIN
        while True:
            try:
                return self.host_class.options(**options).remote(self.hidden)
            except ValueError:  # the name is taken
                if time.monotonic() > deadline:
                    raise
                with contextlib.suppress(Exception):
                    self.ray.kill(self.ray.get_actor(spec.container_id, namespace=self.namespace), no_restart=True)
                await asyncio.sleep(0.2)

    async def _run(self, spec: ContainerSpec, handle: Any) -> None:
        """Start the container in its actor once Ray placed it, then report its exit (None: the actor died)."""
        container_id = spec.container_id
        code: int | None = None
        try:
            node = await self._ask(lambda: handle.where.remote())  # once Ray placed the actor and its worker runs
            self.placed.add(container_id)
            self.send(Placed(container_id, node))
            await handle.start.remote(spec)  # the image built on the node if needed, then the process started
            code = await self._ask(lambda: handle.wait.remote())
            code = await self._exit_of(container_id, handle, code)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # noqa: BLE001 - the actor (or its node) died, or the control plane killed it
            if container_id in self.terminating:  # killed on purpose; never placed: it never ran
                code = -signal.SIGKILL if container_id in self.placed else 0
            else:
                log.warning("container %s: its Ray actor died (%s)", container_id, type(exc).__name__)
        finally:
            with contextlib.suppress(Exception):
                self.ray.kill(handle, no_restart=True)
            self.handles.pop(container_id, None)
            self.terminating.discard(container_id)
            self.placed.discard(container_id)
        self.send(Exited(container_id, code, self.tails.pop(container_id, "")))

    async def _ask(self, call: Callable[[], Any]) -> Any:
        """An idempotent call of an actor's, asked again while Ray says the actor is *unavailable* (its head does
        not answer, or its node is slow): only a death Ray is sure of (``ActorDiedError``) ends a container. A
        cluster that stays unreachable ends this bridge instead, and the server counts its containers lost, with
        no input to blame."""
        unavailable = getattr(self.ray.exceptions, "ActorUnavailableError", ())
        while True:
            try:
                return await call()
            except unavailable:
                await asyncio.sleep(UNAVAILABLE_RETRY)

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
        if container_id in self.forked:
            self.terminating.add(container_id)
            agent = self.agent_of.get(container_id)
            if container_id in self.unplaced:
                self.forked[container_id].cancel()
            elif agent is not None:  # (one still starting is stopped once started: _run_forked)
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(_awaitable(agent.terminate.remote(container_id, grace)), grace + 5)
            return
        handle = self.handles.get(container_id)
        if handle is None:
            return
        self.terminating.add(container_id)
        if container_id in self.placed and grace > 0:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(_awaitable(handle.terminate.remote(grace)), grace + 5)
        with contextlib.suppress(Exception):
            self.ray.kill(handle, no_restart=True)

    async def close(self) -> None:
        every = [*self.handles, *self.forked]
        await asyncio.gather(*(self.terminate(cid, 2.0) for cid in every), return_exceptions=True)
        running = {*self._watchers, *self.forked.values()}
        if running:
            await asyncio.wait(running, timeout=5)


def watch_cluster(ray: Any, report: Callable[[dict[str, float]], None], timeout: float) -> None:
    """Report the cluster's resources when they change, and end this process when the cluster's head has not
    answered for ``timeout`` seconds. Threads of their own: a call of Ray's may block the event loop while the
    head is gone (a named actor's creation waits for it)."""
    answered = [time.monotonic()]

    def probe() -> None:
        last: dict[str, float] | None = None
        while True:
            with contextlib.suppress(Exception):  # no answer: the watchdog decides
                resources = {k: float(v) for k, v in ray.cluster_resources().items()}
                answered[0] = time.monotonic()
                if resources != last:
                    report(resources)
                    last = resources
            time.sleep(HEALTH_EVERY)

    def watchdog() -> None:
        while time.monotonic() - answered[0] < timeout:
            time.sleep(HEALTH_EVERY)
        print(f"shoal ray bridge: the cluster's head has not answered for {timeout:g}s (SHOAL_RAY_HEAD_TIMEOUT); "
              "the bridge ends", file=sys.stderr, flush=True)  # fmt: skip
        os._exit(EXIT_UNREACHABLE)

    threading.Thread(target=probe, name="probe", daemon=True).start()
    threading.Thread(target=watchdog, name="watchdog", daemon=True).start()


async def serve(ray: Any, sock: socket.socket, namespace: str, hidden: tuple[str, ...]) -> None:
    """Obey the server's messages until it closes the socket, then stop every container."""
    reader, writer = await asyncio.open_unix_connection(sock=sock)

    def send(message: FromBridge) -> None:
        writer.write(frame(message))

    bridge = Bridge(ray, namespace, hidden, send)
    bridge.reconcile()
    loop = asyncio.get_running_loop()

    def report(resources: dict[str, float]) -> None:
        loop.call_soon_threadsafe(send, Cluster(resources))

    watch_cluster(ray, report, settings().ray_head_timeout)  # its first report is the handshake
    tasks: set[asyncio.Task[None]] = set()
    while (body := await read_frame(reader)) is not None:
        message = to_bridge(body)
        work = bridge.launch(message.spec) if isinstance(message, Launch) else _terminate(bridge, message)
        task = asyncio.create_task(work)
        tasks.add(task)
        task.add_done_callback(tasks.discard)
    await bridge.close()


def bundle(resources: Resources) -> dict[str, float]:
    """A container's placement group bundle (GPU containers are actors instead: see :class:`Bridge`)."""
    options = actor_options(resources)
    found = {"CPU": float(options["num_cpus"])}
    if "memory" in options:
        found["memory"] = float(options["memory"])
    return found


def _terminate(bridge: Bridge, message: Terminate) -> Any:
    return bridge.terminate(message.container_id, message.grace)


async def _awaitable(ref: Any) -> Any:
    return await ref


def main(argv: list[str]) -> int:
    """``ADDRESS NAMESPACE HIDDEN_JSON FD``: drive the cluster at ADDRESS for the server at the other end of FD."""
    address, namespace, hidden, fd = argv
    sock = socket.socket(fileno=int(fd))
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the terminal's Ctrl-C is the server's to handle, not ours
    try:
        import ray

        ray.init(address=address, namespace=namespace, log_to_driver=False, logging_level=logging.WARNING)
    except Exception as exc:  # noqa: BLE001 - any failure to reach the cluster is reported the same way
        print(f"shoal ray bridge: cannot reach the Ray cluster at {address}: {type(exc).__name__}: {exc}",
              file=sys.stderr, flush=True)  # fmt: skip
        return EXIT_UNREACHABLE
    asyncio.run(serve(ray, sock, namespace, tuple(json.loads(hidden))))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
