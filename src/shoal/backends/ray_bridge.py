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
    """The containers of one control plane, as Ray actors; reports go out through ``send``."""

    def __init__(self, ray: Any, namespace: str, hidden: tuple[str, ...], send: Callable[[FromBridge], None]):
        from .ray_actor import ContainerHost

        self.ray, self.namespace, self.hidden, self.send = ray, namespace, hidden, send
        self.host_class = ray.remote(max_concurrency=4)(ContainerHost)
        self.handles: dict[str, Any] = {}  # container id -> its actor
        self.placed: set[str] = set()  # containers whose actors run
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
        await asyncio.gather(*(self.terminate(cid, 2.0) for cid in list(self.handles)), return_exceptions=True)
        if self._watchers:
            await asyncio.wait(self._watchers, timeout=5)


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
