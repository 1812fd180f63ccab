"""The control plane's behaviour: the store, the backend, long-poll wake-ups and the scheduler loop together.

Routes (``server/routes``) translate HTTP to calls on :class:`ControlPlane`; this module knows nothing of HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import msgspec
from msgspec.structs import replace

from .. import backends
from .._ids import call_of_input, new_id
from ..backends.base import Backend, ContainerSpec, Unplaceable, Waiting
from ..config import settings
from ..protocol.messages import (
    EXIT_UNREACHABLE,
    Command,
    CommandResult,
    ExchangeReply,
    ExchangeRequest,
    HeartbeatReply,
    InputRef,
    ItemReport,
    LogEntry,
)
from ..protocol.specs import FunctionSpec
from ..redaction import Redactor
from ..schedule import from_spec, next_fire
from . import clock
from .auth import Authorizer, ContainerKeys, TokenRegistry
from .blobs import BlobStore
from .boot_window import BOOT_WINDOW, BootWindow
from .commands import Commands
from .core import lifecycle
from .core.lifecycle import ContainerExited, Facts, KillDecided, StartReported, decide
from .core.records import ContainerRecord, ContainerRow, ContainerState, FunctionRecord, Intent, Output, OutputStatus
from .core.scheduler import Drain, Kill, Launch, Limits, Yield, plan
from .errors import Conflict, Invalid, NotFound
from .gateway import Gateway
from .images import ImageBuilds
from .liveness import Liveness, control_key
from .notifier import Notifier
from .sampler import Sampler
from .secrets import SecretStore
from .store import SQLiteStore, Store, open_store
from .volumes import VolumeStore, open_volumes

log = logging.getLogger("shoal.server")


def check_schedule(schedule: Any) -> None:
    """A schedule spec the server can compute fire times for (the SDK builds them from Period/Cron)."""
    try:
        if schedule.get("kind") == "period":
            from_spec(schedule)  # Period's own checks: no negative part, at least a millisecond long
        next_fire(schedule, 0.0, 0.0)
    except Exception as exc:  # noqa: BLE001 - whatever is wrong with it, it is the caller's input
        raise Invalid(f"invalid schedule {schedule!r}: {exc}") from None


def check_name(name: str) -> None:
    if not 1 <= len(name) <= 64:
        raise Invalid("an app name is 1 to 64 characters")


MAX_LONG_POLL = 30.0
DRAIN_GRACE = 5.0
MAX_COMMAND_TIMEOUT = 24 * 3600.0  # seconds: shoal container exec --timeout
TICK_INTERVAL = 0.1
BLOB_SWEEP_EVERY = 5.0  # seconds between looks for payload blobs no call uses
LAUNCHES_PER_TURN = 20
PLAN_IN_THREAD = 1000  # containers from which the scheduler's plan() runs in a thread (~40 ms at 10,000)
STARTED_LINES_EVERY = 0.05  # seconds: "started" lines of containers that start meanwhile are written together


class ServerConfig(msgspec.Struct, frozen=True):
    state_dir: Path
    url: str
    client_token: str | None
    heartbeat_timeout: float
    result_retention: float
    max_total_containers: int
    max_payload_bytes: int
    container_key: bytes = b""  # signs each container's token (auth.ContainerKeys); random at each start when empty
    rate_limit: float = 0.0  # client requests per second per token (0: unlimited)
    local_token: str | None = None  # without client_token: what this home's clients present (see auth.py)
    client_timeout: float = 20.0  # an ephemeral app whose client is silent this long is stopped
    expiry_interval: float = 60.0  # seconds between sweeps for expired results
    blob_grace: float = 30.0  # seconds a payload blob stays on disk after its last use ended (store/blob_refs.py)
    upload_grace: float = 3600.0  # seconds an uploaded payload blob that no input or result names yet stays
    home_ports: bool = False  # an embedded server: endpoints keep their ports through the home (gateway.py)
    boot_window: int = BOOT_WINDOW  # containers booting at once (boot_window.py)


class Parts(msgspec.Struct, frozen=True):
    """What a control plane works with, built by the caller (:meth:`Parts.in_dir` for the defaults)."""

    store: Store
    blobs: BlobStore
    volumes: VolumeStore
    secrets: SecretStore

    @classmethod
    def in_dir(cls, state_dir: Path, store: str | None = None, shared_dir: Path | None = None,
               volumes: VolumeStore | None = None) -> Parts:  # fmt: skip
        """The parts of a server: its store (``store``: a ``postgresql://`` URL, else a SQLite file in
        ``state_dir``), and blobs, volumes and the secrets key in ``shared_dir`` (the directory every server over
        one PostgreSQL store reaches; default: ``state_dir``). ``volumes``: the volume store the backend was opened
        with, when it was opened first."""
        shared = shared_dir or state_dir
        volumes = volumes or open_volumes(state_dir, shared_dir)  # (it makes the private directories too)
        opened = open_store(store) if store else SQLiteStore(state_dir / "state.db")
        secret_store = SecretStore(opened.secrets, shared / "secret.key")
        return cls(opened, BlobStore(shared / "blobs"), volumes, secret_store)


class ControlPlane:
    """Applies requests and lifecycle events to the store and the backend; runs the scheduler loop while started."""

    def __init__(self, config: ServerConfig, backend: Backend, parts: Parts) -> None:
        self.config = config
        self.container_keys = ContainerKeys(config.container_key or None)
        self.store, self.blobs, self.volumes, self.secrets = parts.store, parts.blobs, parts.volumes, parts.secrets
        self.catalog = self.store.catalog
        self.schedules = self.store.schedules
        self.items = self.store.items
        self.backend = backend
        self.backend.on_exit = self._on_container_exit
        self.backend.on_placed = self._on_placed
        self.backend.on_lost_with_cluster = self._on_container_lost_with_cluster
        self.backend.put_blob = self.blobs.put
        self.backend.on_trouble = self._on_backend_trouble
        self._placed_at: dict[str, float] = {}  # container -> when the backend placed it (its startup clock)
        self._released: set[str] = set()  # containers whose held beat was followed by a request (release_held)
        self.beats_released = 0  # held beats answered because a request followed them (GET /server)
        self.boots = BootWindow(config.boot_window, backend.waiting)
        self.notifier = Notifier()
        self.liveness = Liveness(self._wake_held)
        self.commands = Commands(self.liveness)
        self.images = ImageBuilds(backend, self.blobs, self.notifier)
        registry = TokenRegistry(self.store.tokens, config.client_token)
        self.authorizer = Authorizer(config.client_token or config.local_token, self.container_keys, registry)
        self.gateway = Gateway(self, urlsplit(config.url).hostname or "127.0.0.1")
        self._wake = asyncio.Event()
        self._pending: set[asyncio.Future[None]] = set()  # terminations under way
        self._loop_task: asyncio.Task[None] | None = None
        self._launches: set[asyncio.Task[None]] = set()  # containers being started (_launch)
        self._waits_said: set[str] = set()  # functions whose waiting containers the app's log has been told of
        self._started: list[ContainerRecord] = []  # containers that run, their "started" lines not yet written
        self._last_expiry = 0.0
        self.sampler = Sampler(self.store, self.backend)
        self._last_blob_sweep = 0.0
        self._stopping = False
        self.disk_full_at = float("-inf")  # when a write last failed for lack of space (answers warn a while)

    # ---- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        self._recover_after_restart()
        await self.gateway.start()
        self._loop_task = asyncio.create_task(self._scheduler_loop())
        self.sampler.start()
        self.backend.warm(self.config.url)

    async def quiesce(self) -> None:
        """The server is stopping: decide nothing more, end long polls now, and kill every container.

        Nothing is failed or cancelled: the containers' leased inputs stay leased in the store, and the next start
        re-queues them uncharged (:meth:`_recover_after_restart`). Killing beats draining here: a container could
        not report through a server that no longer answers, and the work is re-run either way.
        """
        if self._stopping:
            return
        self._stopping = True
        await self.sampler.stop()
        if self._loop_task:
            self._loop_task.cancel()  # on Python 3.11, wait_for() can swallow a cancel: the loop also checks the flag
            self._wake.set()
            await asyncio.wait({self._loop_task}, timeout=1.0)
        if self._launches:  # starts in flight end first (the rest are never asked for), then every container goes
            await asyncio.wait(set(self._launches), timeout=5.0)
        self.backend.on_exit = lambda container_id, code: None  # a shutdown is not the containers' failure
        self.backend.on_lost_with_cluster = lambda container_id: None
        self.notifier.notify_all()
        await self.gateway.close()
        await asyncio.gather(*(self.backend.terminate(cid, 0) for cid in self.backend.list()), return_exceptions=True)

    async def stop(self) -> None:
        await self.quiesce()
        await self.backend.close()
        self.store.close()

    def _recover_after_restart(self) -> None:
        """Containers of a previous server process are gone: requeue what they held, uncharged. Clients could not
        heartbeat while the server was down: their timeout counts from now."""
        for c in self.store.live_containers():
            self.store.fail_container_inputs(c.id, "the server restarted while it ran", charge=False)
            self.store.set_container_state(c.id, ContainerState.STOPPED, "server restarted")
        self.catalog.clients_seen_now()

    def list_containers(self, include_stopped: bool, limit: int = 200) -> list[dict[str, Any]]:
        """Containers as people see them: the web requests each serves count as running inputs, and one the
        backend has not placed yet says for how long it has waited for capacity."""
        rows = self.catalog.list_containers(include_stopped, limit)
        waiting = self.backend.waiting()
        for row in rows:
            row["running_inputs"] += self.gateway.inflight.get(row["container_id"], 0)
            found = waiting.get(row["container_id"])
            row["waiting_for_capacity_s"] = found.seconds if found else None
            row["waiting_for"] = found.reason if found else None
        return rows

    def demand(self) -> dict[str, int]:
        """Inputs (and web requests) waiting for a container, per function tag (summed over apps that share a
        tag): what more capacity would serve."""
        out: dict[str, int] = {}
        for load in self.store.function_loads(self.gateway.demand()):
            if load.ready:
                found = self.store.function(load.function_id)
                tag = found.tag if found else load.function_id
                out[tag] = out.get(tag, 0) + load.ready
        return out

    def wake_scheduler(self) -> None:
        self._wake.set()

    # ---- apps, functions, calls (client side) ---------------------------------------------------

    def create_app(self, name: str, mode: str = "ephemeral") -> str:
        check_name(name)
        if mode not in ("ephemeral", "detached"):
            raise Invalid(f"unknown app mode {mode!r}")
        app_id = new_id("app")
        self.store.create_app(app_id, name, mode)
        return app_id

    def begin_deploy(self, name: str) -> tuple[str, int]:
        """The deployed app called ``name`` (created on first deploy) and the new version number."""
        check_name(name)
        app_id = self.catalog.deployed_app(name)
        if app_id is None:
            app_id = new_id("app")
            self.store.create_app(app_id, name, "deployed")
        return app_id, self.catalog.begin_deployment(app_id)

    def detach(self, app_id: str) -> None:
        """The client left on purpose: the app lives until its unfinished calls are done."""
        self.catalog.set_mode(app_id, "detached")
        self.catalog.forget_client(app_id)
        self.wake_scheduler()

    async def stop_container(self, container_id: str, graceful: bool = False, why: str = "stopped by the user") -> None:
        """Stop a container: at once (its inputs run again elsewhere, after a short grace), or ``graceful``: it
        takes no new input, finishes those it holds and exits (as a container that yields does)."""
        if self.store.container_state(container_id) is None:
            raise NotFound(container_id)
        reason = why + (" (graceful)" if graceful else "")
        self.store.set_container_state(container_id, ContainerState.DRAINING, reason)
        self._notify_container_function(container_id)
        if not graceful:
            await self.backend.terminate(container_id, DRAIN_GRACE)

    def system_log(self, app_id: str, container_id: str | None, text: str) -> None:
        """A lifecycle line (container started/stopped) in the app's log stream."""
        self.store.append_logs(app_id, container_id or "", [LogEntry(None, None, "system", text + "\n", clock.now())])
        self.notifier.notify("logs:" + app_id)

    def create_function(self, app_id: str, tag: str, spec: FunctionSpec, pickled: bytes | None) -> str:
        if self.store.app_state(app_id) is None:
            raise NotFound(app_id)
        try:
            secret_ids = [self.secrets.resolve(ref) for ref in spec.secrets]
        except KeyError as exc:
            name = exc.args[0]
            raise NotFound(f"Secret {name!r} not found: create it with `shoal secret create {name} KEY=VALUE`") from exc
        if spec.schedule is not None:
            check_schedule(spec.schedule)
        self._check_mounts(spec)
        try:
            self.backend.check_resources(spec.resources)
        except Unplaceable as exc:
            raise Invalid(str(exc)) from None
        spec = spec.replace(secrets=secret_ids)
        function_id = new_id("function")
        self.store.create_function(function_id, app_id, tag, spec, pickled)
        self.schedules.register(function_id, app_id, tag, spec.schedule)
        return function_id

    def _check_mounts(self, spec: FunctionSpec) -> None:
        """Volumes must exist; mounts need a backend that can show them inside containers."""
        if (spec.volumes or (spec.image and spec.image.mounts)) and not self.backend.capabilities().mounts:
            raise Invalid(
                "Volumes and add_local_dir/add_local_file mount paths inside containers, which needs the sandbox: "
                "install bubblewrap (apt-get install bubblewrap) on the server's machine, and do not set "
                "SHOAL_SANDBOX=off."
            )
        for mount in spec.image.mounts if spec.image else []:
            self._check_local_path(mount.local)
        for v in spec.volumes:
            if not self.volumes.exists(v.volume):
                raise NotFound(f"Volume {v.volume!r} not found: create it with Volume.from_name(..., "
                               "create_if_missing=True) or `shoal volume create`")  # fmt: skip

    def _check_local_path(self, local: str) -> None:
        """What ``add_local_dir``/``add_local_file`` may show a container: never the server's own state; on a
        server with a token (its clients may be other machines' users), only paths under SHOAL_MOUNT_ROOTS."""
        path = Path(local).resolve()
        private = [self.config.state_dir.resolve(), settings().home.resolve()]
        if any(path == p or p in path.parents or path in p.parents for p in private):
            raise Invalid(f"add_local_dir/add_local_file of {local}: that is (or holds) the Shoal server's own state, "
                          "which containers never see")  # fmt: skip
        if self.config.client_token:
            roots = [Path(r).resolve() for r in settings().mount_roots]
            if not any(path == r or r in path.parents for r in roots):
                raise Invalid(f"add_local_dir/add_local_file of {local}: a server with a token shows containers "
                              "only paths under SHOAL_MOUNT_ROOTS (set on the server; now "
                              f"{':'.join(map(str, roots)) or 'none'})")  # fmt: skip

    async def expose(self, function_id: str) -> str | None:
        """The URL of a web function (served from now on by the gateway), or None for other functions."""
        found = self.store.function(function_id)
        if found is None or found.spec.web is None:
            return None
        label = found.spec.web.label or web_label(self.store.catalog.find_app(found.app_id), found.tag)
        return await self.gateway.expose(label, function_id, found.app_id)

    def web_ready(self, container_id: str, host: str, port: int) -> None:
        """A web function's container serves its app at ``host:port``: the gateway may use it."""
        found = self.store.container_state(container_id)
        if found is None:
            raise NotFound(container_id)
        self.store.set_web_address(container_id, host, port)
        self.gateway.containers_changed(found[0])
        self.notifier.notify("web:" + found[0])

    def bind(self, function_id: str, params_blob: str) -> str:
        """The function serving a class with these parameter values (created once per set): its own pool."""
        found = self.store.function(function_id)
        if found is None:
            raise NotFound(function_id)
        if found.spec.kind != "class":
            raise Invalid(f"{found.tag} is not a class: only classes take parameters")
        if not self.blobs.exists(params_blob):
            raise Invalid("upload the parameter blob before binding")
        bound_tag = f"{found.tag}({params_blob[:16]})"
        existing = self.store.function_by_tag(found.app_id, bound_tag)
        if existing is not None and self.store.function(existing).spec.parent == function_id:  # type: ignore[union-attr]
            return existing
        bound_id = new_id("function")
        spec = found.spec.replace(params_blob=params_blob, parent=function_id)
        self.store.create_function(bound_id, found.app_id, bound_tag, spec, None)
        return bound_id

    def create_call(
        self, function_id: str, kind: str, parent_input: str | None, inputs: list[bytes] | None = None,
        close: bool = False, key: str | None = None, expected: int | None = None,
    ) -> tuple[str, bool]:  # fmt: skip
        """A new call, with its first inputs committed in the same transaction (a spawn is one commit); returns
        (its id, False). With ``key``: (the id of the function's call that key started, True) while that call's
        results are kept, and nothing is created."""
        found = self.store.function(function_id)
        if found is None:
            raise NotFound(function_id)
        if self.store.app_state(found.app_id) != "RUNNING":
            raise Conflict(f"the app of function {found.tag} is stopped; start it again to call it")
        call_id = new_id("call")
        scoped = None if key is None else keyed(found.tag, key)
        made = self.store.create_call(call_id, function_id, found.app_id, kind, parent_input, inputs or (), close,
                                      scoped, expected)  # fmt: skip
        if made != call_id:
            return made, True
        if parent_input is not None:  # made by a web request's handler? then that request is kept as a call
            self.gateway.called_from(call_of_input(parent_input))
        if inputs:
            self._inputs_added(function_id, call_id, close)
        return call_id, False

    def call_by_key(self, function_id: str, key: str) -> str:
        """The call ``key`` started on the function (while its results are kept).

        Raises:
            NotFound: no call holds that key.
        """
        found = self.store.function(function_id)
        call_id = self.store.call_by_key(found.app_id, keyed(found.tag, key)) if found else None
        if call_id is None:
            raise NotFound(f"no call of this function holds the key {key!r} (never used, or its results expired)")
        return call_id

    def add_inputs(self, call_id: str, start: int, payloads: list[bytes], close: bool) -> int:
        added = self.store.add_inputs(call_id, start, payloads, close)
        info = self.store.call(call_id)
        if info is not None:
            self._inputs_added(info.function_id, call_id, close)
        return added

    def _inputs_added(self, function_id: str, call_id: str, close: bool) -> None:
        """Wake the function's idle containers, a waiter on a closed call, and the scheduler (to scale up)."""
        self.notifier.notify("fn:" + function_id)
        if close:
            self.notifier.notify("call:" + call_id)
        self.wake_scheduler()

    async def wait_outputs(self, call_id: str, since: int, limit: int, wait: float, rows: bool = False) -> list[Any]:
        """Outputs after ``since`` (as stored rows when ``rows``: a chunk as one), long-polling up to ``wait`` s."""

        def finished() -> bool:
            info = self.store.call(call_id)
            return info is None or info.finished_at is not None

        read = self.store.output_rows if rows else self.store.outputs
        return await self.notifier.poll(
            "call:" + call_id, wait, lambda: read(call_id, since, limit), lambda o: bool(o) or finished()
        )

    def add_item(self, container_id: str, item: ItemReport) -> bool:
        """One item a generator input yielded; its caller's long poll wakes."""
        accepted = self.items.add(container_id, item.call_id, item.index, item.lease, item.seq, item.data)
        if accepted:
            self.notifier.notify("call:" + item.call_id)
        return accepted

    async def wait_items(self, call_id: str, since: int, wait: float) -> tuple[list[list[Any]], Any]:
        """(items after ``since``, the input's output once it ended), long-polling until either exists."""
        return await self.notifier.poll(
            "call:" + call_id, wait,
            lambda: (self.items.after(call_id, 0, since), self.store.output_at(call_id, 0)),
            lambda r: bool(r[0]) or r[1] is not None,
        )  # fmt: skip

    async def wait_output_at(self, call_id: str, index: int, wait: float) -> Any:
        return await self.notifier.poll(
            "call:" + call_id, wait, lambda: self.store.output_at(call_id, index), lambda o: o is not None
        )

    async def wait_first_outputs(
        self, call_ids: list[str], wait: float, max_bytes: int | None = None
    ) -> dict[str, Output]:
        """The output of input 0 of each call that has one; when none has, wait up to ``wait`` s for one. With
        ``max_bytes``, outputs after the first stop once their payloads add up to that much."""

        def found() -> dict[str, Output]:
            outputs: dict[str, Output] = {}
            size = 0
            for c in call_ids:
                if (o := self.store.output_at(c, 0)) is not None:
                    size += len(o.data)
                    if outputs and max_bytes is not None and size > max_bytes:
                        break
                    outputs[c] = o
            return outputs

        outputs = found()
        if outputs or wait <= 0 or not call_ids:
            return outputs
        waits = [asyncio.ensure_future(self.notifier.wait("call:" + c, wait)) for c in call_ids[:1000]]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED, timeout=wait)
        finally:
            for w in waits:
                w.cancel()
        return found()

    async def cancel_call(self, call_id: str, terminate_containers: bool, message: str) -> None:
        running = self.store.cancel_call(call_id, message)
        self.notifier.notify("call:" + call_id)
        for cid in sorted({cid for cid, _ in running}):
            if terminate_containers:
                self._handle(cid, KillDecided(Intent("terminated by FunctionCall.cancel", charge=False)))
            else:  # told with its next exchange or heartbeat (one held open is answered now): only those inputs
                self.liveness.interrupt(cid, [InputRef(call_id, index) for c, index in running if c == cid])
                self._notify_container_function(cid)  # its long poll (an exchange) answers with the order

    async def roll_over(self, app_id: str, strategy: str, keep: set[str] | None = None) -> int:
        """Replace an app's containers (``shoal app rollover``, ``shoal deploy --strategy recreate``), but those of
        the functions in ``keep``: ``rolling``, each takes no new input, finishes those it holds and exits, while
        fresh ones start as demand asks; ``recreate``, they stop now (their inputs run again, uncharged). Returns
        how many were told to go."""
        if strategy not in DEPLOY_STRATEGIES:
            raise Invalid(f"strategy={strategy!r}: use {' or '.join(DEPLOY_STRATEGIES)}")
        going = []
        for cid in self.store.containers_of_app(app_id):
            found = self.store.container_state(cid)
            if found is not None and found[1] != ContainerState.DRAINING and (keep is None or found[0] not in keep):
                going.append(cid)
        why = f"replaced ({strategy})"
        await asyncio.gather(*(self.stop_container(cid, strategy == "rolling", why) for cid in going))
        self.wake_scheduler()
        return len(going)

    def retry_call(self, call_id: str, statuses: list[str]) -> tuple[int, int]:
        """Queue again the inputs of a finished call that ended with one of ``statuses`` (FunctionCall.retry_failed):
        on the function it ran on, or, in a deployed app, on the version deployed now (a fix deployed since is
        what runs). Returns (inputs queued again, inputs without a kept payload: ended before payloads were kept).

        Raises:
            NotFound: no such call.
            Invalid: a status that is none of an input's ends.
            Conflict: the call's app has stopped, the call has not finished, or its results expired.
        """
        unknown = set(statuses) - RETRY_STATUSES
        if unknown or not statuses:
            raise Invalid(f"cannot retry inputs that ended {sorted(unknown) or 'nohow'}: choose among "
                          f"{sorted(RETRY_STATUSES)}")  # fmt: skip
        info = self.store.call(call_id)
        if info is None:
            raise NotFound(call_id)
        app = self.catalog.find_app(info.app_id)
        if app is None or self.store.app_state(info.app_id) != "RUNNING":
            name = app["name"] if app else info.app_id
            raise Conflict(f"app {name!r} has stopped, so {info.function_name} cannot run again: retry while the app "
                          "runs (inside its `with app.run()`, or deploy it)")  # fmt: skip
        function_id = info.function_id
        if app.get("mode") == "deployed":
            function_id = self.catalog.functions_of(info.app_id).get(info.function_name, function_id)
        queued, missing = self.store.retry_call(call_id, function_id, statuses)
        if queued:
            self._inputs_added(function_id, call_id, False)
            self.notifier.notify("call:" + call_id)
        return queued, missing

    async def stop_app(self, app_id: str, reason: str = "stopped") -> None:
        self.store.stop_app(app_id, reason)
        self.gateway.app_stopped()
        for call_id in self.store.unfinished_calls(app_id):
            await self.cancel_call(call_id, False, f"the app was stopped ({reason}) before this input finished")
        self.store.blob_refs.release_inputs_of_app(app_id)  # no input of it runs again: its blobs can go
        cids = self.store.containers_of_app(app_id)
        for cid in cids:
            self.store.set_container_state(cid, ContainerState.DRAINING, "app stopped")
            self._notify_container_function(cid)
        await asyncio.gather(*(self.backend.terminate(cid, DRAIN_GRACE) for cid in cids))

    async def wait_logs(self, app_id: str, since: int, wait: float) -> list[Any]:
        return await self.notifier.poll(
            "logs:" + app_id, wait, lambda: self.store.logs(app_id, since),
            lambda rows: bool(rows) or self.store.app_state(app_id) != "RUNNING",
        )  # fmt: skip

    # ---- containers ---------------------------------------------------------------------------

    def container_started(self, container_id: str, error: str | None, fatal: bool) -> None:
        if not self._handle(container_id, StartReported(error, fatal)):
            raise NotFound(container_id)
        if error is not None:
            self.wake_scheduler()

    async def exchange(self, container_id: str, request: ExchangeRequest) -> ExchangeReply:
        """Apply a container's reports and lease it up to ``request.want`` inputs, long-polling up to ``wait`` s.

        The reply's ``stop`` tells the container to exit; a report is not accepted when its lease is no longer
        current (the input was re-run elsewhere, or cancelled).
        """
        found = self.store.container_state(container_id)
        if found is None:
            raise NotFound(container_id)
        function_id, state = found
        self.record_logs(container_id, request.logs)
        if request.released:
            self.store.release(container_id, request.released)
            self.notifier.notify("fn:" + function_id)
        stop = self._stopping or state in (ContainerState.DRAINING, ContainerState.STOPPED)
        want = 0 if stop else request.want
        # reports and the first lease in one transaction: one commit per exchange
        accepted, touched, leased = self.store.report_and_lease(container_id, function_id, request.outputs, want)
        if touched:
            self._notify_calls(touched)
        deadline = time.monotonic() + min(request.wait, MAX_LONG_POLL)
        with self.liveness.holding(container_id, clock.now()):  # a long poll: on the line, no heartbeat needed
            while True:
                if stop:
                    return ExchangeReply([], True, accepted, *self._orders(container_id))
                remaining = deadline - time.monotonic()
                if leased or remaining <= 0 or self.liveness.has_orders(container_id):
                    # (a lease wakes no tick: it moves inputs from ready to leased, so no function's need changes;
                    # at 3,000 busy containers those wake-ups kept the tick running, 15% of the server's time)
                    return ExchangeReply(leased, False, accepted, *self._orders(container_id))
                retry_at = self.store.next_retry_at(function_id)  # a backoff ending is a wake-up too
                if retry_at is not None:
                    remaining = min(remaining, max(0.0, retry_at - self.store.clock()) + 0.005)
                await self.notifier.wait("fn:" + function_id, remaining)
                found = self.store.container_state(container_id)
                stop = self._stopping or found is None or found[1] in (ContainerState.DRAINING, ContainerState.STOPPED)
                leased = self.store.lease_inputs(function_id, container_id, want) if want > 0 and not stop else []

    async def heartbeat(self, container_id: str, logs: list[LogEntry], wait: float = 0.0) -> HeartbeatReply:
        """Record liveness (in memory: no transaction); the reply says whether the container should stop and which
        inputs it must interrupt. A beat with ``wait`` is held up to that long (a third of the heartbeat timeout at
        most) and answered as soon as an order comes."""
        found = self.store.container_state(container_id)
        if found is None:
            return HeartbeatReply(True)
        self.liveness.beats += 1
        self.liveness.heard(container_id, clock.now())
        self.record_logs(container_id, logs)
        stop = found[1] in (ContainerState.DRAINING, ContainerState.STOPPED)
        hold = min(wait, self.config.heartbeat_timeout / 3, MAX_LONG_POLL)
        quiet = not self.liveness.has_orders(container_id) and container_id not in self._released
        if not stop and hold > 0 and quiet and not self._stopping:
            with self.liveness.holding(container_id, clock.now()):
                await self.notifier.wait(control_key(container_id), hold)
            found = self.store.container_state(container_id)
            stop = found is None or found[1] in (ContainerState.DRAINING, ContainerState.STOPPED)
        self._released.discard(container_id)
        return HeartbeatReply(stop, *self._orders(container_id))

    def _orders(self, container_id: str) -> tuple[list[InputRef], list[Command]]:
        """What the container must do besides its work (inputs to interrupt, commands to run), told once."""
        return self.liveness.take_interrupts(container_id), self.liveness.take_commands(container_id)

    async def run_command(self, container_id: str, command: Command) -> CommandResult:
        """Run ``command`` in a running container, in its sandbox and environment, and say how it ended."""
        found = self.store.container_state(container_id)
        if found is None:
            raise NotFound(container_id)
        if found[1] != ContainerState.RUNNING:
            raise Conflict(f"{container_id} is {found[1].value.lower()}: a command runs only in a running container "
                           "(see `shoal container list`)")  # fmt: skip
        if not command.argv or not command.argv[0]:
            raise Invalid("no command to run: give one after `--`, as in `shoal container exec ID -- ls /tmp`")
        if not 0 < command.timeout <= MAX_COMMAND_TIMEOUT:
            raise Invalid(f"a command's timeout must be between 0 and {MAX_COMMAND_TIMEOUT:.0f} seconds")
        return await self.commands.run(container_id, command)

    def command_ended(self, container_id: str, result: CommandResult) -> None:
        self.commands.ended(container_id, result)

    def record_logs(self, container_id: str, logs: list[LogEntry]) -> None:
        if not logs:
            return
        app_id = self.container_app(container_id)
        if app_id:
            self.store.append_logs(app_id, container_id, logs)
            self.notifier.notify("logs:" + app_id)

    def container_app(self, container_id: str) -> str | None:
        found = self.store.container_state(container_id)
        if found is None:
            return None
        fn = self.store.function(found[0])
        return fn.app_id if fn else None

    def _on_placed(self, container_id: str, node: str) -> None:
        self._placed_at[container_id] = clock.now()
        self.store.set_container_node(container_id, node)

    def container_booted(self, container_id: str) -> None:
        """It fetched its spec: the next container may launch (:class:`BootWindow`)."""
        self.boots.booted(container_id)

    def _on_container_exit(self, container_id: str, code: int | None) -> None:
        self._placed_at.pop(container_id, None)
        self.boots.booted(container_id)
        tail = self._redacted(container_id, self.backend.output_tail(container_id))  # in the error itself: an
        # embedded run's files go with it
        unreachable = code == EXIT_UNREACHABLE
        exited = ContainerExited(self.backend.describe_exit(code), tail, unreachable, lost=code is None)
        self._handle(container_id, exited)

    def _on_backend_trouble(self, text: str | None) -> None:
        """Containers cannot start at all (the cluster is lost), or can again: said in every running app's log,
        which its callers' terminals show."""
        line = text or "The cluster is reachable again: containers start again."
        for app in self.catalog.list_apps(include_stopped=False):
            self.system_log(app["app_id"], None, line)

    def _on_container_lost_with_cluster(self, container_id: str) -> None:
        self._placed_at.pop(container_id, None)
        self.boots.booted(container_id)
        self._handle(container_id, ContainerExited("it was lost with its cluster", lost=True, blameless=True))

    def _redacted(self, container_id: str, text: str) -> str:
        """``text`` of a container's raw output (fd writes, a subprocess's) with its function's secret values
        hidden, as the container hides them in what it ships."""
        found = self.store.container_state(container_id)
        fn = self.store.function(found[0]) if found and text else None
        if fn is None or not fn.spec.secrets:
            return text
        return Redactor(self.secrets.env(fn.spec.secrets).values())(text)

    def _handle(self, container_id: str, event: lifecycle.Event) -> bool:
        """Apply what the lifecycle decides for ``event``; False when the container is unknown.

        Returns after the store is updated; a ``Terminate`` is started, and its exit comes back as an event."""
        found = self.store.container(container_id)
        if found is None:
            return False
        facts = Facts(found.state, found.intent, found.startup_failures, self.backend.has(container_id))
        touched: set[str] = set()
        for action in decide(event, facts):
            touched |= self._apply(found, action)
        self._notify_calls(touched)
        self.gateway.containers_changed(found.function_id)
        self.notifier.notify("web:" + found.function_id)  # requests waiting for a container look again
        if not isinstance(event, StartReported):
            self.notifier.notify("fn:" + found.function_id)
            self.wake_scheduler()
        return True

    def _apply(self, container: ContainerRecord, action: lifecycle.Action) -> set[str]:
        """One lifecycle action on the store or the backend; returns the calls that got outputs."""
        cid = container.id
        if isinstance(action, lifecycle.RecordIntent):
            self.store.set_intent(cid, action.intent)
        elif isinstance(action, lifecycle.Terminate):
            task = asyncio.ensure_future(self.backend.terminate(cid, action.grace))
            self._pending.add(task)
            task.add_done_callback(self._pending.discard)
        elif isinstance(action, lifecycle.FailInputs):
            return self.store.fail_container_inputs(cid, action.message, action.status, action.charge, action.lost)
        elif isinstance(action, lifecycle.CountStartFailure):
            self.store.record_startup_failure(cid, action.error)
        elif isinstance(action, lifecycle.FailQueued):
            return self.store.fail_pending(container.function_id, action.status, action.message)
        elif isinstance(action, lifecycle.MarkStarted):
            self.store.mark_started(cid)
            self._say_started(container)
        elif isinstance(action, lifecycle.MarkStopped):
            self.store.set_container_state(cid, ContainerState.STOPPED, action.reason)
            self.boots.booted(cid)
            self._released.discard(cid)
            self.liveness.forget(cid)
            self.commands.gone(cid, action.reason)
        elif isinstance(action, lifecycle.Log):
            self.system_log(container.app_id, cid, f"Container {cid} {action.text}")
        return set()

    def _say_started(self, container: ContainerRecord) -> None:
        """ "Container ... started for f" in its app's log once it runs; lines of many starts are written together
        (a fleet starting at once would otherwise cost a transaction each)."""
        self._started.append(container)
        if len(self._started) == 1:
            asyncio.get_running_loop().call_later(STARTED_LINES_EVERY, self._write_started)

    def _write_started(self) -> None:
        started, self._started = self._started, []
        tags: dict[str, str] = {}
        by_app: dict[str, list[tuple[str, LogEntry]]] = {}
        for c in started:
            if c.function_id not in tags:
                found = self.store.function(c.function_id)
                tags[c.function_id] = found.tag if found is not None else c.function_id
            text = f"Container {c.id} started for {tags[c.function_id]}\n"
            by_app.setdefault(c.app_id, []).append((c.id, LogEntry(None, None, "system", text, clock.now())))
        for app_id, lines in by_app.items():
            self.store.append_container_logs(app_id, lines)
            self.notifier.notify("logs:" + app_id)

    def _say_waiting(self, rows: list[ContainerRow], waiting: Mapping[str, Waiting]) -> None:
        """A line in the app's log (the caller's terminal) when a function's containers begin to wait for room
        ("waiting for a GPU (T4): 2 of 2 in use"), once until none of them waits."""
        now_waiting: dict[str, ContainerRow] = {}
        for c in rows:
            now_waiting.setdefault(c.function_id, c)
        for function_id, c in now_waiting.items():
            if function_id in self._waits_said:
                continue
            found = self.store.function(function_id)
            if found is None:
                continue
            count = sum(r.function_id == function_id for r in rows)
            what = "container" if count == 1 else "containers"
            self.system_log(found.app_id, None, f"{count} {what} of {found.tag} {waiting[c.id].reason}")
        self._waits_said = set(now_waiting)

    def _notify_calls(self, call_ids: set[str]) -> None:
        for call_id in call_ids:
            self.notifier.notify("call:" + call_id)

    def _notify_container_function(self, container_id: str) -> None:
        found = self._wake_held(container_id)
        if found:
            self.gateway.containers_changed(found)  # a draining container takes no more requests

    def release_held(self, container_id: str) -> None:
        """The container sent another request behind its held beat, on the same connection (``_http.py``
        pipelines an exchange behind a quiet beat rather than open a second connection): the beat answers now."""
        self._released.add(container_id)  # (it may come before the beat is held: then it is not held at all)
        self.beats_released += 1
        self.notifier.notify(control_key(container_id))

    def _wake_held(self, container_id: str) -> str | None:
        """Answer the container's held requests now (it may have to stop, or has orders): a beat waits on its own
        key, an exchange on its function's. Returns its function."""
        self.notifier.notify(control_key(container_id))
        found = self.store.container_state(container_id)
        if found:
            self.notifier.notify("fn:" + found[0])
        return found[0] if found else None

    # ---- scheduler loop -------------------------------------------------------------------------

    async def _scheduler_loop(self) -> None:
        limits = Limits(self.config.heartbeat_timeout, self.config.max_total_containers)
        while not self._stopping:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._wake.wait(), 0.5)
            if self._stopping:
                return
            self._wake.clear()
            started = time.perf_counter()
            try:
                await self._tick(limits)
            except Exception:  # the loop must survive anything one tick hits
                log.exception("scheduler tick failed")
            # coalesce bursts of wake-ups; a tick that took long (a large fleet) waits longer, so that ticks take at
            # most a quarter of the event loop's time whatever the fleet's size
            await asyncio.sleep(max(TICK_INTERVAL, 3 * (time.perf_counter() - started)))

    async def _tick(self, limits: Limits) -> None:
        now = clock.now()
        serving = self.gateway.inflight  # web requests a container serves keep it busy, as leased inputs do
        waiting = self.backend.waiting()  # not placed yet for lack of capacity: its startup time has not begun
        containers = []
        for c in self.store.live_containers():  # (a copy only for the few that differ: 1,000 copies cost 5 ms)
            extra = serving.get(c.id, 0)  # when it was placed is its startup clock: for those still starting
            placed = self._placed_at.get(c.id) if c.state == ContainerState.STARTING else None
            if extra or placed is not None or c.id in waiting:
                c = replace(c, leased=c.leased + extra, waiting=c.id in waiting, created_at=placed or c.created_at)
            containers.append(c)
        self._say_waiting([c for c in containers if c.waiting], waiting)
        heard = self.liveness.heard_by(now)  # beats and long polls are not in the store
        await asyncio.sleep(0)  # requests waiting meanwhile go first: a tick over 10,000 containers is tens of ms
        loads = self.store.function_loads(self.gateway.demand())
        if len(containers) < PLAN_IN_THREAD:
            actions = plan(loads, containers, now, limits, heard)
            await asyncio.sleep(0)
        else:  # a pure function of copies: in a thread, the loop answers requests between its GIL slices
            actions = await asyncio.to_thread(plan, loads, containers, now, limits, heard)
        for action in actions:
            if isinstance(action, Launch):
                self._launch(action.function_id, action.app_id, action.count)
            elif isinstance(action, (Drain, Yield)):  # it takes no new input from now on
                reason = "scaled down" if isinstance(action, Drain) else "gave way to other functions (fair share)"
                self.store.set_container_state(action.container_id, ContainerState.DRAINING, reason)
                self._notify_container_function(action.container_id)
                if isinstance(action, Drain):  # an idle one goes now; one that yields exits when its inputs end
                    asyncio.create_task(self.backend.terminate(action.container_id, DRAIN_GRACE))
            elif isinstance(action, Kill):
                status = OutputStatus.TIMEOUT if action.timed_out else OutputStatus.CRASHED
                self._handle(action.container_id, KillDecided(Intent(action.reason, status)))
        for due in self.schedules.due(now):
            call_id = self.schedules.fire(due, now)
            if call_id is not None:
                self._inputs_added(due.function_id, call_id, True)
        for app_id, reason in self.catalog.apps_to_reap(self.config.client_timeout):
            await self.stop_app(app_id, reason)
        if now - self._last_expiry > self.config.expiry_interval:
            self._last_expiry = now
            self.store.expire_results(self.config.result_retention)
            self.store.samples.expire(now - self.config.result_retention)
        if now - self._last_blob_sweep > BLOB_SWEEP_EVERY:
            self._last_blob_sweep = now
            await self.remove_unused_blobs()

    async def remove_unused_blobs(self) -> int:
        """Delete the payload blobs no call has used for the grace period (and nobody uploaded or asked for since:
        a client may be about to submit inputs that name one; those are looked at again later). Returns how many
        files were removed."""
        due = self.store.blob_refs.orphans_due(self.config.blob_grace)
        if not due:
            return 0
        removed, kept = await asyncio.to_thread(self.blobs.remove_unused, due, self.config.blob_grace)
        self.store.blob_refs.unused(kept, 0.0)
        return removed

    def payload_uploaded(self, blob_id: str) -> None:
        """A client or a container uploaded an input's or a result's blob: unless an input, result or item names it
        within ``upload_grace`` (a client that died between uploading and submitting never will), it is removed."""
        self.store.blob_refs.unused([blob_id], self.config.upload_grace - self.config.blob_grace)

    def _launch(self, function_id: str, app_id: str, count: int) -> None:
        """Start ``count`` containers of a function: their rows now, in one transaction (the next tick counts them),
        the processes in the background, so that a tick never waits for a start (a fork server's first one takes a
        fresh interpreter's time)."""
        found = self.store.function(function_id)
        if found is None:
            return
        ids = [new_id("container") for _ in range(count)]
        self.store.add_containers(ids, function_id, app_id)
        task = asyncio.create_task(self._start_containers(found, app_id, ids))
        self._launches.add(task)
        task.add_done_callback(self._launches.discard)

    async def starts_done(self) -> None:
        """Wait for the container starts under way (tests: a tick's launches have reached the backend)."""
        while self._launches:
            await asyncio.wait(set(self._launches))

    async def _start_containers(self, found: FunctionRecord, app_id: str, ids: list[str]) -> None:
        """Up to ``LAUNCHES_PER_TURN`` containers at once (a fork server forks one while the next is asked for), as
        many as the boot window has room for (:class:`BootWindow`: 10,000 at once would be a herd of first
        requests), with requests let in between. A container's "started" line comes when it runs
        (:meth:`_say_started`), not now: on Ray it may wait for a node first."""
        at = 0
        while at < len(ids):
            fits = await self.boots.room(min(LAUNCHES_PER_TURN, len(ids) - at))
            turn = ids[at : at + fits]
            at += fits
            if self._stopping:  # the server is stopping: these never start
                for cid in turn:
                    self.store.set_container_state(cid, ContainerState.STOPPED, "the server stopped")
                continue
            await asyncio.gather(*(self._start_container(found, cid) for cid in turn))
            await asyncio.sleep(0)

    async def _start_container(self, found: FunctionRecord, container_id: str) -> bool:
        """Ask the backend for one container; a failed launch is a failed start, never a stuck container."""
        spec = found.spec
        try:
            image = await self.images.prepared(spec.image) if spec.image else None
            env = {k: v for k, v in spec.env.items() if v is not None}
            if spec.web is not None:
                env["SHOAL_WEB_KEY"] = self.container_keys.web_key(container_id)
            cspec = ContainerSpec(
                container_id, found.id, found.app_id, self.config.url, self.container_keys.mint(container_id),
                env=env, resources=spec.resources, image=image, volumes=spec.volumes, image_spec=spec.image,
            )  # fmt: skip
            self.boots.launched(container_id)
            await self.backend.launch(cspec)
            return True
        except Exception as exc:  # noqa: BLE001
            log.exception("launching a container for %s failed", found.tag)
            self.boots.booted(container_id)
            self.store.set_container_state(container_id, ContainerState.STOPPED, f"launch failed: {exc}")
            self.store.record_startup_failure(container_id, f"could not start a container process: {exc}")
            return False


DEPLOY_STRATEGIES = ("rolling", "recreate")  # Modal 1.4's: how a deploy or rollover replaces running containers
RETRY_STATUSES = {s.value for s in OutputStatus} - {OutputStatus.SUCCESS.value}


def keyed(tag: str, key: str) -> str:
    """A caller's key as the store keeps it: per function of the app (a redeploy keeps it; another function's
    same key is another call)."""
    return f"{tag}:{key}"  # a function's tag has no ':' (a Python name, or Class.method)


def web_label(app: dict[str, Any] | None, tag: str) -> str:
    """Modal's default endpoint label: the app's and the function's names, lowercase, '-' for anything else."""
    raw = f"{app['name'] if app else 'app'}-{tag}".lower()
    return re.sub(r"-+", "-", re.sub(r"[^a-z0-9]", "-", raw)).strip("-")[:63].strip("-") or "endpoint"


def default_max_total_containers(kind: backends.Kind | None = None) -> int:
    """SHOAL_MAX_TOTAL_CONTAINERS, else the backend kind's (10,000 on a Ray cluster), else max(32, 8 x CPUs)."""
    configured = settings().max_total_containers
    if configured is not None:
        return configured
    if kind is not None and kind.max_total_containers is not None:
        return kind.max_total_containers
    return max(32, 8 * (os.cpu_count() or 1))
