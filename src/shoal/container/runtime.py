"""The pull loop every backend runs: load the function, then lease -> run -> report, with heartbeats.

Three ways to run inputs, chosen by the function's spec:

* sequential (default): inputs are leased in batches sized to ~``TARGET_BATCH_SECONDS`` of work and run one
  at a time in the main thread; finished outputs ride on the next lease request (one round trip per batch).
* batched (``@batched``): up to ``max_batch_size`` inputs, waiting at most ``wait_ms`` after the first, go to
  one call of the function as lists.
* concurrent (``@concurrent``): up to ``max_inputs`` at once, sync ones on threads, async ones as tasks; fast
  inputs are leased a queue ahead, so a slot that finishes one starts the next at once (:class:`Slots`).

A watchdog thread enforces the per-attempt timeout: it reports the timed-out input, gives back the others
and ends the process (the backend then kills the process group). Cancelled inputs get ``InputCancellation``
(``CancelledError`` in async code).
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import hashlib
import inspect
import os
import signal
import sys
import threading
import time
import traceback
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import msgspec

from .. import exception, serialization
from .._context import set_current_input
from ..config import INLINE_PAYLOAD_LIMIT, ContainerEnv, container_env, settings, synced_volumes
from ..exception import InputCancellation, InvalidError, SerializationError
from ..protocol import payloads
from ..protocol.messages import (
    EXIT_UNREACHABLE,
    Command,
    ExchangeReply,
    ExchangeRequest,
    FailureInfo,
    HeartbeatReply,
    HeartbeatRequest,
    InputRef,
    ItemReport,
    LeasedInput,
    LogEntry,
    OutputStatus,
    Release,
    ReportedOutput,
    StartedReport,
    WebReady,
)
from ..protocol.specs import FunctionSpec
from ..redaction import Redactor
from . import commands, volume_sync
from .api import ContainerAPI
from .capture import LogBuffer, install
from .usercode import PLAIN_TYPES, UserCode

if TYPE_CHECKING:
    from .web import WebServer

TARGET_BATCH_SECONDS = 0.05
MAX_BATCH = 2048  # inputs a lease asks for at most (fast inputs: fewer exchanges; chunk rows make a large lease cheap)
IDLE_POLL = 10.0
M_ARENA_MAX = -8  # mallopt's parameter
HELD_BEAT = 30.0  # seconds a quiet heartbeat asks to be held: the server holds it a third of its heartbeat timeout
# at most (5 s by default; a server with a longer timeout, for a large fleet, gets fewer beats) and answers an order
# at once
PREFETCH_BELOW = 0.25  # seconds per input: faster inputs lease their next batch while the last input runs
FLUSH_EVERY = 0.2  # seconds: report finished outputs at least this often inside a long batch
SHIP_WAIT = 5.0  # seconds an exchange waits for the heartbeat's log shipment in flight (so lines keep their order)

Key = tuple[str, int]


Outcome = tuple[OutputStatus, bytes, "FailureInfo | None"]  # how an input ended, its data, its failure as text


class Running(msgspec.Struct):
    lease: int
    started: float
    thread: int = 0  # thread ident running it (0: an asyncio task)
    future: Any = None


class State(msgspec.Struct):
    """What the container holds, shared by the threads (guarded by ``lock``)."""

    lock: threading.Lock = msgspec.field(default_factory=threading.Lock)
    reports: list[ReportedOutput] = msgspec.field(default_factory=list)  # finished, not yet sent
    unstarted: collections.deque[LeasedInput] = msgspec.field(default_factory=collections.deque)
    running: dict[Key, Running] = msgspec.field(default_factory=dict)
    cancelled: set[Key] = msgspec.field(default_factory=set)
    stopping: bool = False


class Slots:
    """The ``@concurrent`` runtime's slots: how many are idle, how many are starting, how long inputs take, and when
    to lease (fields guarded by the runtime's state lock; ``wake`` tells the main thread to look again)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.idle = size
        self.starting = 0  # slots handed to the pool that have not taken their first input yet
        self.per_input: float | None = None  # seconds, a moving average
        self.wake = threading.Event()

    def start(self, count: int) -> None:
        """``count`` idle slots are handed to the pool, each to take one of the queued inputs."""
        self.idle -= count
        self.starting += count

    def started(self) -> None:
        """A starting slot took its first input (or found none)."""
        self.starting -= 1

    def ran(self, took: float) -> None:
        self.per_input = took if self.per_input is None else 0.8 * self.per_input + 0.2 * took

    def fast(self) -> bool:
        return self.per_input is not None and self.per_input < PREFETCH_BELOW

    def wanted(self, queued: int) -> int:
        """How many inputs to lease: one per idle slot, and for fast inputs a queue refilled to one per slot once
        it is half empty. ``queued`` is the runtime's unstarted inputs; those that starting slots are about to take
        are not a queue (counting them made a map's first lease wait for an input to end before asking again)."""
        waiting = self._waiting(queued)
        ahead = self.size - waiting if self.fast() and self.low(queued) else 0
        return max(0, self.idle - waiting) + ahead

    def low(self, queued: int) -> bool:
        return self._waiting(queued) <= self.size // 2

    def _waiting(self, queued: int) -> int:
        """Queued inputs no starting slot will take (running slots may have taken some of theirs first)."""
        return max(0, queued - self.starting)


class ContainerRuntime:
    def __init__(self, api: ContainerAPI, heartbeat_interval: float) -> None:
        self.api = api
        self.heartbeat_interval = heartbeat_interval
        self.logs = LogBuffer(budget=settings().log_budget_mib << 20)
        self.state = State()
        self.changed = threading.Event()
        self.timeout = 300.0
        self.spec = FunctionSpec()
        self.code: UserCode | None = None
        self.main_thread = threading.get_ident()
        self.report_ready = threading.Event()
        self.cancel_target: Key | None = None
        self.web: WebServer | None = None  # a web function's app, served for the gateway
        self._prefetch_pool: ThreadPoolExecutor | None = None  # leases the next batch while the last input runs
        self._prefetch_api: ContainerAPI | None = None

    # ---- start and stop -------------------------------------------------------------------------

    def start(self) -> bool:
        """Load the user's code and run its enter hooks; report success or the traceback."""
        info = self.api.boot()
        secret_env = info.secret_env
        os.environ.update(secret_env)
        self.logs.redact = Redactor(secret_env.values())
        install(self.logs)
        threading.Thread(target=self._heartbeat_loop, name="shoal-heartbeat", daemon=True).start()
        self.spec = info.spec
        self.timeout = self.spec.timeout
        if self.spec.modal_alias:  # the app was registered under `shoal run`/`deploy`/`python`
            from .. import _modal_alias

            _modal_alias.install()
        stage = "load"
        try:
            if mounts := synced_volumes():  # the Ray backend: this container's copies of its volumes, pulled now
                self.api.sync.run(volume_sync.pull_all(self.api.sync.client, mounts))
            self.code = UserCode(self.spec, info.pickled, self.api.blob)
            stage = "enter"
            self.code.enter()
            if self.spec.web is not None:  # a web function: its app is built and listening before it is ready
                from .web import WebServer  # uvicorn: imported by web functions only

                stage = "serve"
                self.web = WebServer(self.code, self.spec.web, self.spec.web_method)
        except BaseException as exc:  # noqa: BLE001 - any failure to start is reported, whatever it is
            if isinstance(exc, SystemExit) and self.state.stopping:  # told to stop while loading: not a failure
                raise
            what = {"enter": "run the @enter hooks of", "serve": "start the web app of"}.get(stage, "load")
            error = f"Failed to {what} {self.spec.qualname} ({self.spec.module or 'pickled'}):\n"
            error = self.logs.redact(error + "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))
            sys.stderr.write(error)
            # an import error is deterministic: fail fast; an enter hook may be flaky: the server retries a few times
            self.api.started(StartedReport(error, fatal=stage == "load"))
            return False
        threading.Thread(target=self._watchdog_loop, name="shoal-watchdog", daemon=True).start()
        self.api.started(StartedReport())
        return True

    def shutdown(self) -> None:
        """Deliver what is finished, give back the rest, run exit hooks."""
        with self.state.lock:
            self.state.stopping = True
        if self.web is not None:
            self.web.stop()
        if self._prefetch_pool is not None:  # a lease ahead in flight: its inputs are given back with the rest
            self._prefetch_pool.shutdown(wait=True)
        try:
            self._exchange(0, 0)
        except BaseException:  # noqa: BLE001 - best effort on the way out
            pass
        if self.code is not None:
            try:
                self.code.exit()
            except BaseException:  # noqa: BLE001
                traceback.print_exc()

    def serve(self) -> None:
        if self.web is not None:
            self.api.web_ready(WebReady(self.web.port, self.web.host))
            self.web.wait()
        elif self.spec.batch is not None:
            self._serve_batched(self.spec.batch.max_batch_size, self.spec.batch.wait_ms / 1000)
        elif self.spec.concurrency is not None:
            self._serve_concurrent(self.spec.concurrency.max_inputs)
        else:
            self._serve_sequential()

    # ---- sequential -----------------------------------------------------------------------------

    def _serve_sequential(self) -> None:
        want, per_input, last = 1, None, 0
        single_use = self.spec.single_use_containers
        one_at_a_time = single_use or self.spec.is_generator  # a generator's items are not re-runnable
        while not self.state.stopping:
            # slow start: at most twice the last batch, so one container does not take a small queue that its
            # siblings could share (the per-input estimate may come from earlier, cheaper inputs)
            ask = 1 if one_at_a_time else min(want, max(1, 2 * last))
            with self.state.lock:
                batch = list(self.state.unstarted)  # what a lease ahead brought, if one did
            if not batch:
                resp = self._exchange(ask, IDLE_POLL)
                if resp.stop:
                    return
                batch = resp.inputs
                with self.state.lock:
                    self.state.unstarted = collections.deque(batch)
            last = len(batch)
            batch_started = time.monotonic()
            # fast inputs: lease the next batch while the last input of this one runs (a round trip less per batch)
            fast = per_input is not None and per_input < PREFETCH_BELOW and len(batch) > 1 and not one_at_a_time
            ran, stop = self._run_unstarted(len(batch), ask if fast else 0)
            if stop or (single_use and batch):
                return
            if ran:
                elapsed = (time.monotonic() - batch_started) / ran
                per_input = elapsed if per_input is None else 0.7 * per_input + 0.3 * elapsed
                want = max(1, min(MAX_BATCH, int(TARGET_BATCH_SECONDS / max(per_input, 1e-6))))

    def _run_unstarted(self, count: int, prefetch: int = 0) -> tuple[int, bool]:
        """Run ``count`` leased inputs one after the other in this thread, reporting each as it ends (one lock a
        turn).

        With ``prefetch`` > 0, the next ``prefetch`` inputs are leased (by another thread) while the last one runs:
        they are left unstarted for the next batch. Returns how many inputs ran, and whether the control plane said
        to stop."""
        state, thread = self.state, threading.get_ident()
        last_flush = time.monotonic()
        ran, stop = 0, False
        pending: Future[bool] | None = None
        with state.lock:
            lease = self._take_unstarted(thread, last_flush)
        while lease is not None:
            if prefetch and pending is None and ran == count - 1:
                pending = self._prefetcher().submit(self._prefetch, prefetch)
            status, data, error = self._run_one(lease, thread)
            ran += 1
            now = time.monotonic()
            with state.lock:
                running = state.running.pop(lease.key, None)
                took = now - running.started if running else 0.0
                state.reports.append(ReportedOutput(lease.call_id, lease.index, lease.lease, status, data, took, error))
                lease = self._take_unstarted(thread, now) if ran < count else None
            if lease is None and pending is not None:  # the lease ahead: its inputs are the next batch
                stop = pending.result()
            if lease is not None and now - last_flush > FLUSH_EVERY:  # a long batch: deliver what is done so far
                self._exchange(0, 0)
                last_flush = time.monotonic()
        return ran, stop

    def _prefetcher(self) -> ThreadPoolExecutor:
        if self._prefetch_pool is None:
            self._prefetch_api = self._side_api()
            self._prefetch_pool = ThreadPoolExecutor(1, thread_name_prefix="shoal-prefetch")
        return self._prefetch_pool

    def _prefetch(self, want: int) -> bool:
        """Report what is done and lease ``want`` more, queued behind the inputs being run; True: told to stop."""
        reply = self._exchange(want, 0, self._prefetch_api)
        with self.state.lock:
            self.state.unstarted.extend(reply.inputs)
        return reply.stop

    def _take_unstarted(self, thread: int, now: float) -> LeasedInput | None:
        """The next input to run, marked running (the caller holds the lock)."""
        unstarted = self.state.unstarted
        while unstarted and not self.state.stopping:
            lease = unstarted.popleft()
            if lease.key in self.state.cancelled:
                continue
            # no wake-up for the watchdog: it never sleeps past a timeout's length, so it sees this in time
            self.state.running[lease.key] = Running(lease.lease, now, thread)
            return lease
        return None

    def _report(self, lease: LeasedInput, status: OutputStatus, data: bytes, error: FailureInfo | None) -> None:
        with self.state.lock:
            self._record(lease, (status, data, error))

    def _record(self, lease: LeasedInput, outcome: Outcome) -> float:
        """Queue the input's report (the caller holds the lock); returns how long it ran (s)."""
        status, data, error = outcome
        running = self.state.running.pop(lease.key, None)
        took = time.monotonic() - running.started if running else 0.0
        self.state.reports.append(ReportedOutput(lease.call_id, lease.index, lease.lease, status, data, took, error))
        return took

    def _run_one(self, lease: LeasedInput, thread: int) -> Outcome:
        assert self.code is not None
        set_current_input(lease.call_id, lease.index)
        try:
            args, kwargs = serialization.loads(payloads.payload_bytes(lease.payload, self.api.blob))
            result = self.code.call(args, kwargs, on_future=lambda f: self._attach_future(lease.key, f))
            if type(result) not in PLAIN_TYPES and (inspect.isgenerator(result) or inspect.isasyncgen(result)):
                self._stream(lease, result)  # a generator function: its items go to the caller as they come
                result = None
        except BaseException as exc:  # noqa: BLE001 - user code may raise anything, SystemExit included
            return (OutputStatus.FAILURE, *self._failure(exc))
        finally:
            if self.logs.written:  # what the input printed reaches the log file before its output is reported
                sys.stdout.flush()
            set_current_input(None)
        return self._success(result)

    def _stream(self, lease: LeasedInput, generator: Any) -> None:
        """Send each item the generator yields, in order, under the input's lease (one request per item, so the
        caller gets the first while the generator goes on)."""
        for seq, item in enumerate(self._items_of(generator)):
            report = ItemReport(lease.call_id, lease.index, lease.lease, seq, self._pack(serialization.dumps(item)))
            if not self.api.item(report):
                raise InputCancellation(f"input {lease.key} was taken away from this container")

    def _items_of(self, generator: Any) -> Any:
        if inspect.isgenerator(generator):
            yield from generator
            return
        assert self.code is not None
        while True:
            try:
                yield self.code.resolve(generator.__anext__())
            except StopAsyncIteration:
                return

    def _attach_future(self, key: Key, future: Any) -> None:
        with self.state.lock:
            running = self.state.running.get(key)
            if running is not None:
                running.future = future
            cancelled = key in self.state.cancelled
        if cancelled:
            future.cancel()

    def _success(self, result: Any) -> Outcome:
        try:
            return OutputStatus.SUCCESS, self._pack(serialization.dumps(result)), None
        except Exception as exc:
            err = SerializationError(f"The return value ({type(result).__name__}) cannot be pickled: {exc}")
            return (OutputStatus.FAILURE, *self._failure(err))

    def _exchange(self, want: int, wait: float, api: ContainerAPI | None = None) -> ExchangeReply:
        if wait > 0 and self.logs.pending():  # an output must not reach the caller before the lines printed before it
            reply = self._exchange(want, 0)
            if reply.inputs or reply.stop:
                return reply
        with self.state.lock:
            reports, self.state.reports = self.state.reports, []
            released = [x.release() for x in self.state.unstarted] if self.state.stopping else []
            if self.state.stopping:
                self.state.unstarted = collections.deque()
        try:  # a long poll carries no logs (it would hold them back): the heartbeat ships them meanwhile
            shipping: contextlib.AbstractContextManager[list[list[Any]]] = (
                self.logs.shipping(SHIP_WAIT) if wait <= 0 else contextlib.nullcontext([])
            )
            with shipping as logs:
                return (api or self.api).exchange(ExchangeRequest(reports, released, entries(logs), want, wait))
        except BaseException:
            with self.state.lock:  # not delivered: keep them for the next try
                self.state.reports = reports + self.state.reports
            raise

    def _failure(self, exc: BaseException) -> tuple[bytes, FailureInfo]:
        """The failure as the caller gets it (packed), and as text for people (the dashboard)."""
        described = serialization.describe_failure(exc, self.logs.redact)
        return self._pack(serialization.serialize_failure(exc, self.logs.redact)), FailureInfo(*described)

    def _pack(self, data: bytes) -> bytes:
        if len(data) <= INLINE_PAYLOAD_LIMIT:
            return payloads.INLINE_TAG + data  # payloads.inline_payload, without a call per input
        blob_id = hashlib.sha256(data).hexdigest()
        self.api.put_blob(blob_id, data)
        return payloads.blob_payload(blob_id)

    # ---- batched --------------------------------------------------------------------------------

    def _serve_batched(self, max_size: int, wait_s: float) -> None:
        while not self.state.stopping:
            resp = self._exchange(max_size, IDLE_POLL)
            if resp.stop:
                return
            batch = list(resp.inputs)
            deadline = time.monotonic() + wait_s
            while batch and len(batch) < max_size and not self.state.stopping:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                more = self._exchange(max_size - len(batch), remaining)
                batch += more.inputs
                if more.stop:
                    break
            if batch:
                self._run_batch(batch)

    def _run_batch(self, batch: list[LeasedInput]) -> None:
        assert self.code is not None
        now = time.monotonic()
        decoded: list[tuple[LeasedInput, tuple[Any, ...], dict[str, Any]]] = []
        with self.state.lock:
            for lease in batch:
                self.state.running[lease.key] = Running(lease.lease, now, threading.get_ident())
        self.changed.set()
        for lease in batch:
            try:
                args, kwargs = serialization.loads(payloads.payload_bytes(lease.payload, self.api.blob))
                decoded.append((lease, args, kwargs))
            except BaseException as exc:  # noqa: BLE001
                self._report(lease, OutputStatus.FAILURE, *self._failure(exc))
        if not decoded:
            return
        try:
            f, _ = self.code.target(decoded[0][1])
            columns = _columns(f, [(self.code.target(a)[1], kw) for _, a, kw in decoded])
            results = self.code.resolve(f(**columns))
            if not isinstance(results, (list, tuple)) or len(results) != len(decoded):
                got = len(results) if isinstance(results, (list, tuple)) else type(results).__name__
                raise InvalidError(
                    f"A @batched function must return a list with one result per input: got {got} for "
                    f"{len(decoded)} inputs."
                )
        except BaseException as exc:  # noqa: BLE001 - the whole batch fails together
            failure = self._failure(exc)
            for lease, _, _ in decoded:
                self._report(lease, OutputStatus.FAILURE, *failure)
            return
        for (lease, _, _), result in zip(decoded, results):
            self._report(lease, *self._success(result))

    # ---- concurrent -----------------------------------------------------------------------------

    def _serve_concurrent(self, max_inputs: int) -> None:
        """Keep ``max_inputs`` slots busy. Each slot runs queued inputs one after another; the main thread leases
        for the slots that ran out, and, when inputs are fast, up to ``max_inputs`` more ahead of need, so a slot
        that ends an input starts the next without waiting for a round trip."""
        pool = ThreadPoolExecutor(max_inputs, thread_name_prefix="shoal-input")
        reporter = threading.Thread(target=self._report_loop, name="shoal-reporter", daemon=True)
        reporter.start()
        slots = Slots(max_inputs)
        while not self.state.stopping:
            slots.wake.clear()
            with self.state.lock:
                want = slots.wanted(len(self.state.unstarted))
                reports, self.state.reports = (self.state.reports, []) if want else ([], self.state.reports)
            if want == 0:  # (the reporter thread delivers what finishes meanwhile)
                slots.wake.wait(IDLE_POLL)
                continue
            resp = self.api.exchange(ExchangeRequest(reports, want=want, wait=IDLE_POLL))
            with self.state.lock:
                self.state.unstarted.extend(resp.inputs)
                starting = min(slots.idle, len(resp.inputs))
                slots.start(starting)
            for _ in range(starting):
                pool.submit(self._run_slot, slots)
            if resp.stop:  # the running inputs finish; the queued ones are given back on the way out
                with self.state.lock:
                    self.state.stopping = True
                break
        pool.shutdown(wait=True)
        self.changed.set()

    def _run_slot(self, slots: Slots) -> None:
        """One slot: run queued inputs until none is left, then hand the slot back to the main thread."""
        thread = threading.get_ident()
        with self.state.lock:
            slots.started()
            lease = self._take_unstarted(thread, time.monotonic())
            if lease is None:
                slots.idle += 1
        self.changed.set()  # the watchdog: an input started
        while lease is not None:
            lease = self._run_in_slot(slots, lease, thread)

    def _run_in_slot(self, slots: Slots, lease: LeasedInput, thread: int) -> LeasedInput | None:
        """Run ``lease`` on this slot's thread and report it; returns the next queued input, or None when the slot
        went back to the main thread.

        A cancel reaches a worker thread as an asynchronous exception, set under the state lock while its input
        runs (:meth:`cancel`). One that lands after the input's own code returned still cancels that input, and
        one not yet raised is dropped here, under the same lock, before the thread takes the next input."""
        try:
            outcome = self._run_one(lease, thread)
        except InputCancellation as exc:
            outcome = (OutputStatus.FAILURE, *self._failure(exc))
        with self.state.lock:
            if lease.key in self.state.cancelled:  # only a cancel of this input can have left one pending
                ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(thread), None)
            slots.ran(self._record(lease, outcome))
            following = self._take_unstarted(thread, time.monotonic())
            if following is None:
                slots.idle += 1
            low = slots.low(len(self.state.unstarted))
        self.report_ready.set()
        if following is None or low:
            slots.wake.set()
        return following

    def _report_loop(self) -> None:
        api = self._side_api()
        while True:
            self.report_ready.wait()
            self.report_ready.clear()
            with self.state.lock:
                reports, self.state.reports = self.state.reports, []
            if reports:
                try:
                    with self.logs.shipping() as logs:
                        api.exchange(ExchangeRequest(reports, logs=entries(logs), want=0))
                except Exception:  # noqa: BLE001 - retried with the next batch
                    with self.state.lock:
                        self.state.reports = reports + self.state.reports

    # ---- background threads ---------------------------------------------------------------------

    def _side_api(self) -> ContainerAPI:
        env = container_env()
        assert env is not None
        return ContainerAPI(self.api.url, env.container_id, env.container_token, self.api.ledger, self.api.contact,
                            self.api.sync)  # fmt: skip

    def _heartbeat_loop(self) -> None:
        """Ship output as it comes (each shipment is a beat too); when there is none, beat, unless an exchange
        (in flight, or within the interval) just said the container is alive. A quiet beat is held by the server up
        to a third of its heartbeat timeout and answered at once when an order comes (stop, or inputs to interrupt),
        so a container that exchanges often sends no beat at all, and one busy with a long input sends one every
        few seconds."""
        threading.Thread(target=self._order_loop, name="shoal-orders", daemon=True).start()
        api = self._side_api()
        while True:
            if not self.logs.pending():  # a burst of output goes out request after request, as fast as taken
                time.sleep(self.heartbeat_interval)
                continue
            try:
                with self.logs.shipping() as logs:
                    if logs:
                        self._obey(api.heartbeat(HeartbeatRequest(entries(logs))))
                if not logs:  # another thread ships now: no busy loop beside it
                    time.sleep(min(0.05, self.heartbeat_interval))
            except SystemExit:
                os._exit(0)
            except Exception:  # noqa: BLE001 - the server may be restarting; keep shipping
                time.sleep(self.heartbeat_interval)

    def _order_loop(self) -> None:
        api = self._side_api()
        while True:
            if self.api.contact.recent(self.heartbeat_interval):
                time.sleep(self.heartbeat_interval)
                continue
            try:
                self._obey(api.heartbeat(HeartbeatRequest(wait=HELD_BEAT)))
            except SystemExit:
                os._exit(0)
            except Exception:  # noqa: BLE001 - the server may be restarting; keep beating
                time.sleep(self.heartbeat_interval)

    def _obey(self, resp: HeartbeatReply) -> None:
        self.interrupt(resp.cancel)
        self.run_commands(resp.run)
        if resp.stop:
            self.request_stop()

    def run_commands(self, orders: list[Command]) -> None:
        """Run each command the server ordered (``shoal container exec``) on a thread of its own, and say how it
        ended."""
        for command in orders:
            threading.Thread(target=self._run_command, args=(command,), name="shoal-exec", daemon=True).start()

    def _run_command(self, command: Command) -> None:
        result = commands.run(command)
        try:
            self._side_api().command_ended(result)
        except Exception:  # noqa: BLE001 - the server went away; its caller's wait ends without an answer
            traceback.print_exc()

    def interrupt(self, inputs: list[InputRef]) -> None:
        for ref in inputs:
            self.cancel((ref.call_id, ref.index))

    def cancel(self, key: Key) -> None:
        """Stop one input: it raises InputCancellation (CancelledError in async code); nothing else is touched."""
        with self.state.lock:
            self.state.cancelled.add(key)
            running = self.state.running.get(key)
            if running is None:
                return
            if running.future is None and running.thread not in (0, self.main_thread):
                # sync code on a worker thread: raised at its next Python instruction; set under the lock, so the
                # thread is still on this input (see _run_in_slot)
                exc = ctypes.py_object(InputCancellation)
                ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(running.thread), exc)
                return
        if running.thread == self.main_thread:
            self.cancel_target = key  # the signal handler raises InputCancellation in the main thread
            os.kill(os.getpid(), signal.SIGUSR2)
        elif running.future is not None:  # async code: the task gets CancelledError
            running.future.cancel()

    def _watchdog_loop(self) -> None:
        api = self._side_api()
        while True:
            with self.state.lock:
                starts = [(r.started, k) for k, r in self.state.running.items()]
            if not starts:  # waits at most one timeout: an input that starts meanwhile times out no earlier than that
                self.changed.wait(self.timeout)
                self.changed.clear()
                continue
            remaining = min(starts)[0] + self.timeout - time.monotonic()
            if remaining > 0:
                self.changed.wait(remaining)
                self.changed.clear()
                continue
            self._time_out(api)

    def _time_out(self, api: ContainerAPI) -> None:
        """Report inputs past their timeout, give back every other one, and end the container."""
        message = f"Function timed out after {self.timeout:g}s (timeout={self.timeout:g})"
        if sys.__stderr__ is not None:
            sys.__stderr__.write(message + "\n")
        now = time.monotonic()
        with self.state.lock:
            reports = list(self.state.reports)
            released = [x.release() for x in self.state.unstarted]
            for (call_id, index), r in self.state.running.items():
                if now - r.started >= self.timeout:
                    reports.append(ReportedOutput(call_id, index, r.lease, OutputStatus.TIMEOUT, message.encode()))
                else:
                    released.append(Release(call_id, index, r.lease))
        try:
            api.exchange(ExchangeRequest(reports, released, entries(self.logs.drain()), want=0))
        finally:
            os._exit(3)

    def request_stop(self) -> None:
        with self.state.lock:
            idle = not self.state.running
            self.state.stopping = True
        if idle:
            os.kill(os.getpid(), signal.SIGUSR1)


def entries(rows: list[list[Any]]) -> list[LogEntry]:
    """The log buffer's rows as wire entries."""
    return [LogEntry(*row) for row in rows]


def _columns(f: Any, calls: list[tuple[tuple[Any, ...], dict[str, Any]]]) -> dict[str, list[Any]]:
    """Per-parameter lists for a @batched call: every input's arguments bound to the signature."""
    signature = inspect.signature(f)
    columns: dict[str, list[Any]] = {name: [] for name in signature.parameters}
    for args, kwargs in calls:
        bound = signature.bind(*args, **kwargs)
        bound.apply_defaults()
        for name in columns:
            columns[name].append(bound.arguments[name])
    return columns


def confine(env: ContainerEnv) -> None:
    """Die with the server that started us (no orphans), and apply the memory limit, before any user code."""
    parent = env.parent_pid
    try:
        from .namespaces import die_with_parent

        die_with_parent(signal.SIGKILL)
    except (OSError, AttributeError):  # not Linux: a container notices its server is gone when its requests fail
        pass
    if parent and os.getppid() != parent:  # the server died before prctl took effect
        os._exit(0)
    limit = env.memory_limit_mib
    if limit:
        import resource

        # glibc's per-thread arenas would eat the address-space limit (MALLOC_ARENA_MAX, read by a fresh process
        # only: a container forked from a fork server is told here)
        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6").mallopt(M_ARENA_MAX, 2)
        resource.setrlimit(resource.RLIMIT_AS, (limit * 1024 * 1024, limit * 1024 * 1024))


def main() -> None:
    env = container_env()
    if env is None:
        sys.exit("python -m shoal.container is started by a Shoal backend (SHOAL_CONTAINER_ID is not set)")
    confine(env)
    cfg = settings()
    api = ContainerAPI(env.server_url, env.container_id, env.container_token)
    runtime = ContainerRuntime(api, cfg.heartbeat_interval)
    api.contact.on_cancel = runtime.interrupt  # orders that come with an exchange's reply
    api.contact.on_run = runtime.run_commands

    def on_stop(signum: int, frame: Any) -> None:
        runtime.state.stopping = True
        raise SystemExit(0)

    def on_term(signum: int, frame: Any) -> None:
        with runtime.state.lock:
            idle = not runtime.state.running
            runtime.state.stopping = True
        if idle:
            raise SystemExit(0)

    def on_cancel(signum: int, frame: Any) -> None:
        target = runtime.cancel_target
        with runtime.state.lock:
            running = target is not None and target in runtime.state.running
        if running:
            raise InputCancellation(f"input {target} was cancelled")

    signal.signal(signal.SIGUSR1, on_stop)
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGUSR2, on_cancel)
    code = 0
    try:
        if runtime.start():
            runtime.serve()
        else:
            code = 1
    except SystemExit:
        pass
    except exception.ConnectionError as exc:  # the control plane cannot be reached (see EXIT_UNREACHABLE)
        sys.stderr.write(f"{exc}\n")
        code = EXIT_UNREACHABLE
    except Exception:
        traceback.print_exc()
        code = 1
    if code == 0:
        runtime.shutdown()
    sys.stdout.flush()
    os._exit(code)
