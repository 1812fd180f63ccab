"""The pull loop every backend runs: load the function, then lease -> run -> report, with heartbeats.

Inputs are leased in batches sized so one batch is about ``TARGET_BATCH_SECONDS`` of work (one at a time for
slow functions, up to ``MAX_BATCH`` for fast ones); outputs ride on the next lease request, so a fast
function costs one HTTP round trip per batch. A watchdog thread enforces the per-attempt timeout by reporting
the timeout and ending the process (the backend then kills its whole process group).
"""

from __future__ import annotations

import asyncio
import inspect
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .. import serialization
from .._context import set_current_input
from ..config import INLINE_PAYLOAD_LIMIT, settings
from ..exception import SerializationError
from ..server.records import OutputStatus
from .api import ContainerAPI
from .capture import LogBuffer, install
from .loader import load_function

TARGET_BATCH_SECONDS = 0.05
MAX_BATCH = 256
IDLE_POLL = 10.0
FLUSH_EVERY = 0.2  # seconds: report finished outputs at least this often inside a long batch


@dataclass
class Running:
    call_id: str
    index: int
    lease: int
    started: float


class ContainerRuntime:
    def __init__(self, api: ContainerAPI, heartbeat_interval: float) -> None:
        self.api = api
        self.heartbeat_interval = heartbeat_interval
        self.logs = LogBuffer()
        self.lock = threading.Lock()
        self.reports: list[list[Any]] = []  # finished, not yet sent
        self.unstarted: list[list[Any]] = []  # leased, not yet started
        self.running: Running | None = None
        self.changed = threading.Event()
        self.stopping = False
        self.timeout = 300.0
        self.fn: Callable[..., Any] = lambda: None
        self.loop: asyncio.AbstractEventLoop | None = None

    # ---- start ----------------------------------------------------------------------------------

    def start(self) -> bool:
        """Load the user's function; report success or the traceback. Returns False when loading failed."""
        install(self.logs)
        threading.Thread(target=self._heartbeat_loop, name="shoal-heartbeat", daemon=True).start()
        info = self.api.call("spec")
        spec = info["spec"]
        self.timeout = float(spec["timeout"])
        try:
            self.fn = load_function(spec, info["pickled"], self.api.blob)
        except BaseException as exc:  # noqa: BLE001 - any failure to load is reported, whatever it is
            where = spec.get("module", "the pickled function")
            error = f"Failed to load function {spec.get('qualname')} from {where}:\n" + "".join(
                traceback.format_exception(type(exc), exc, exc.__traceback__)
            )
            sys.stderr.write(error)
            self.api.call("started", {"error": error, "fatal": True})
            return False
        if inspect.iscoroutinefunction(self.fn):
            self.loop = asyncio.new_event_loop()
        threading.Thread(target=self._watchdog_loop, name="shoal-watchdog", daemon=True).start()
        self.api.call("started", {})
        return True

    # ---- the pull loop --------------------------------------------------------------------------

    def serve(self) -> None:
        want, per_input = 1, None
        while not self.stopping:
            resp = self._exchange(want, IDLE_POLL)
            if resp["stop"]:
                break
            batch = resp["inputs"]
            with self.lock:
                self.unstarted = list(batch)
            last_flush = time.monotonic()
            batch_started = time.monotonic()
            while True:
                with self.lock:
                    if not self.unstarted or self.stopping:
                        break
                    call_id, index, lease, payload = self.unstarted.pop(0)
                    self.running = Running(call_id, index, lease, time.monotonic())
                self.changed.set()
                status, data = self._run_one(call_id, index, payload)
                with self.lock:
                    self.running = None
                    self.reports.append([call_id, index, lease, status.value, data])
                if time.monotonic() - last_flush > FLUSH_EVERY and self.unstarted:
                    self._exchange(0, 0)
                    last_flush = time.monotonic()
            if batch:
                elapsed = (time.monotonic() - batch_started) / len(batch)
                per_input = elapsed if per_input is None else 0.7 * per_input + 0.3 * elapsed
                want = max(1, min(MAX_BATCH, int(TARGET_BATCH_SECONDS / max(per_input, 1e-6))))
        self._exchange(0, 0)

    def _exchange(self, want: int, wait: float) -> dict[str, Any]:
        with self.lock:
            reports, self.reports = self.reports, []
            released = [[c, i, lease] for c, i, lease, _ in self.unstarted] if self.stopping else []
            if self.stopping:
                self.unstarted = []
        try:
            return self.api.call(
                "exchange",
                {"outputs": reports, "released": released, "logs": self.logs.drain(), "want": want, "wait": wait},
            )
        except BaseException:
            with self.lock:  # not delivered: keep them for the next try
                self.reports = reports + self.reports
            raise

    def _run_one(self, call_id: str, index: int, payload: bytes) -> tuple[OutputStatus, bytes]:
        token = set_current_input(call_id, index)
        try:
            args, kwargs = serialization.loads(serialization.payload_bytes(payload, self.api.blob))
            if self.loop is not None:
                result = self.loop.run_until_complete(self.fn(*args, **kwargs))
            else:
                result = self.fn(*args, **kwargs)
        except BaseException as exc:  # noqa: BLE001 - user code may raise anything, SystemExit included
            return OutputStatus.FAILURE, self._pack(serialization.serialize_failure(exc))
        finally:
            sys.stdout.flush()
            set_current_input(None)
            del token
        try:
            return OutputStatus.SUCCESS, self._pack(serialization.dumps(result))
        except Exception as exc:
            err = SerializationError(f"The return value ({type(result).__name__}) cannot be pickled: {exc}")
            return OutputStatus.FAILURE, self._pack(serialization.serialize_failure(err))

    def _pack(self, data: bytes) -> bytes:
        if len(data) <= INLINE_PAYLOAD_LIMIT:
            return serialization.inline_payload(data)
        import hashlib

        blob_id = hashlib.sha256(data).hexdigest()
        self.api.put_blob(blob_id, data)
        return serialization.blob_payload(blob_id)

    # ---- background threads ---------------------------------------------------------------------

    def _heartbeat_loop(self) -> None:
        api = ContainerAPI(self.api.url, os.environ["SHOAL_CONTAINER_ID"], os.environ["SHOAL_CONTAINER_TOKEN"])
        while True:
            time.sleep(self.heartbeat_interval)
            try:
                if api.call("heartbeat", {"logs": self.logs.drain()})["stop"]:
                    self.request_stop()
            except SystemExit:
                os._exit(0)
            except Exception:  # noqa: BLE001 - the server may be restarting; keep beating
                continue

    def _watchdog_loop(self) -> None:
        api = ContainerAPI(self.api.url, os.environ["SHOAL_CONTAINER_ID"], os.environ["SHOAL_CONTAINER_TOKEN"])
        while True:
            with self.lock:
                running = self.running
            if running is None:
                self.changed.wait()
                self.changed.clear()
                continue
            remaining = running.started + self.timeout - time.monotonic()
            if remaining > 0:
                self.changed.wait(remaining)
                self.changed.clear()
                continue
            self._time_out(api, running)

    def _time_out(self, api: ContainerAPI, running: Running) -> None:
        """Report the timed-out input, give back the unstarted ones, and end the container."""
        message = f"Function timed out after {self.timeout:g}s (timeout={self.timeout:g})"
        if sys.__stderr__ is not None:
            sys.__stderr__.write(message + "\n")
        with self.lock:
            reports = self.reports + [[running.call_id, running.index, running.lease, "TIMEOUT", message.encode()]]
            released = [[c, i, lease] for c, i, lease, _ in self.unstarted]
        try:
            api.call("exchange", {"outputs": reports, "released": released, "logs": self.logs.drain(), "want": 0})
        finally:
            os._exit(3)

    def request_stop(self) -> None:
        with self.lock:
            idle = self.running is None
            self.stopping = True
        if idle:
            os.kill(os.getpid(), signal.SIGUSR1)


def _on_stop_signal(signum: int, frame: Any) -> None:
    raise SystemExit(0)


def main() -> None:
    cfg = settings()
    api = ContainerAPI(
        os.environ["SHOAL_SERVER_URL"], os.environ["SHOAL_CONTAINER_ID"], os.environ["SHOAL_CONTAINER_TOKEN"]
    )
    runtime = ContainerRuntime(api, cfg.heartbeat_interval)
    signal.signal(signal.SIGUSR1, _on_stop_signal)

    def on_term(signum: int, frame: Any) -> None:
        with runtime.lock:
            idle = runtime.running is None
            runtime.stopping = True
        if idle:
            raise SystemExit(0)

    signal.signal(signal.SIGTERM, on_term)
    try:
        if not runtime.start():
            sys.exit(1)
        runtime.serve()
    except SystemExit:
        with runtime.lock:
            runtime.stopping = True
        try:  # best effort: deliver finished outputs and give back unstarted inputs
            runtime._exchange(0, 0)
        except BaseException:  # noqa: BLE001
            pass
    except Exception:
        traceback.print_exc()
        sys.exit(1)
    sys.stdout.flush()
    os._exit(0)
