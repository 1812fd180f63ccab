"""Typed messages of the wire protocol, and the states they carry.

Rows that travel by the thousand (leased inputs, reports, outputs, log entries) are ``array_like``: on the wire
they are short positional arrays, in code they are named fields. Bodies are msgpack (JSON where a human may
read them); :func:`decode` turns a body into a message and rejects a malformed one with :class:`MalformedBody`.
"""

from __future__ import annotations

import enum
from typing import Any, TypeVar

import msgspec

from .specs import FunctionSpec, ImageSpec

T = TypeVar("T")


class OutputStatus(str, enum.Enum):
    """How an input ended."""

    SUCCESS = "SUCCESS"  # data: cloudpickled return value
    FAILURE = "FAILURE"  # data: serialized exception from user code
    TIMEOUT = "TIMEOUT"  # data: utf-8 message
    CRASHED = "CRASHED"  # data: utf-8 message (container died while running it)
    CANCELLED = "CANCELLED"  # data: utf-8 message
    INIT_FAILED = "INIT_FAILED"  # data: utf-8 message (the function could not be loaded)


RETRYABLE = {OutputStatus.FAILURE, OutputStatus.TIMEOUT, OutputStatus.CRASHED}

# a container's exit code when it could not reach the control plane (EX_TEMPFAIL): the server's trouble (a restart,
# a storm of starts), not the function's, so a start that ends this way does not count towards a crash loop
EXIT_UNREACHABLE = 75


class ContainerState(str, enum.Enum):
    STARTING = "STARTING"
    RUNNING = "RUNNING"
    DRAINING = "DRAINING"
    STOPPED = "STOPPED"


class LeasedInput(msgspec.Struct, frozen=True, array_like=True):
    call_id: str
    index: int
    lease: int  # fencing token: the lease counter when this container took it
    payload: bytes
    count: int = 1  # a chunk: inputs index .. index+count-1, their payloads in one frame (protocol/chunks.py)

    @property
    def key(self) -> tuple[str, int]:
        return (self.call_id, self.index)

    def release(self) -> Release:
        return Release(self.call_id, self.index, self.lease)


class InputRef(msgspec.Struct, frozen=True, array_like=True):
    call_id: str
    index: int


class Release(msgspec.Struct, frozen=True, array_like=True):
    """An input a container leased but never started: back to the queue, uncharged."""

    call_id: str
    index: int
    lease: int
    count: int = 1  # a whole leased chunk


class FailureInfo(msgspec.Struct, frozen=True, array_like=True):
    """A user exception as text (secrets redacted), for people: the dashboard groups failures by type and message
    and shows the traceback. The pickled exception in the output's data is what the caller gets."""

    type: str
    message: str
    traceback: str


class ReportedOutput(msgspec.Struct, frozen=True, array_like=True):
    """What a container reports for one input it leased."""

    call_id: str
    index: int
    lease: int
    status: OutputStatus
    data: bytes
    duration: float = 0.0  # seconds the input ran in the container
    error: FailureInfo | None = None  # for status FAILURE
    count: int = 1  # a whole leased chunk that succeeded: its results in one frame, duration their sum


class Output(msgspec.Struct, frozen=True, array_like=True):
    seq: int
    index: int
    status: str
    data: bytes


class OutputRow(msgspec.Struct, frozen=True, array_like=True):
    """An output row as stored: one input's, or a chunk's (``count`` > 1, ``data`` a frame of their results)."""

    seq: int
    index: int
    status: str
    data: bytes
    count: int


class LogEntry(msgspec.Struct, frozen=True, array_like=True):
    call_id: str | None
    index: int | None
    stream: str  # stdout, stderr, system
    text: str
    ts: float


# ---- container <-> control plane --------------------------------------------------------------


class ContainerBoot(msgspec.Struct, frozen=True):
    """What a starting container is told: its function and the secrets' environment."""

    function_id: str
    app_id: str
    tag: str
    spec: FunctionSpec
    pickled: bytes | None = None
    secret_env: dict[str, str] = {}


class StartedReport(msgspec.Struct, frozen=True):
    error: str | None = None  # the traceback of a failed start
    fatal: bool = False  # the code cannot load: fail queued inputs now rather than retry starts


class WebReady(msgspec.Struct, frozen=True):
    """A web function's container serves its app on this port of ``host`` (its loopback; on a Ray node of
    another machine, the node's address, which the gateway reaches)."""

    port: int
    host: str = "127.0.0.1"


class ExchangeRequest(msgspec.Struct, frozen=True):
    """A container's finished work, and how many more inputs it wants (long-polling up to ``wait`` s)."""

    outputs: list[ReportedOutput] = []
    released: list[Release] = []
    logs: list[LogEntry] = []
    want: int = 1
    wait: float = 0.0


class Command(msgspec.Struct, frozen=True):
    """A command to run in a container (``shoal container exec``): ``argv`` in its sandbox and environment, killed
    after ``timeout`` s. ``exec_id`` is the caller's, so a request sent twice runs the command once."""

    exec_id: str
    argv: list[str]
    timeout: float = 300.0


class CommandResult(msgspec.Struct, frozen=True):
    """How a command ended: its exit code (None when it could not start or was killed for its timeout), its output
    (each stream cut to its last ``COMMAND_OUTPUT_LIMIT`` bytes) and, when it did not run to its end, why."""

    exec_id: str
    code: int | None
    stdout: bytes = b""
    stderr: bytes = b""
    error: str = ""


COMMAND_OUTPUT_LIMIT = 8 << 20


class ExchangeReply(msgspec.Struct, frozen=True):
    inputs: list[LeasedInput]
    stop: bool
    accepted: int = 0
    cancel: list[InputRef] = []  # inputs to interrupt (their call was cancelled): orders travel with exchanges too
    run: list[Command] = []  # commands to run (shoal container exec)


class HeartbeatRequest(msgspec.Struct, frozen=True):
    """Logs to ship, and how long the server may hold the beat (``wait`` s) to answer an order at once."""

    logs: list[LogEntry] = []
    wait: float = 0.0


class HeartbeatReply(msgspec.Struct, frozen=True):
    stop: bool
    cancel: list[InputRef] = []
    run: list[Command] = []


class ItemReport(msgspec.Struct, frozen=True):
    """One item a generator input yielded."""

    call_id: str
    index: int
    lease: int
    seq: int
    data: bytes


class Accepted(msgspec.Struct, frozen=True):
    accepted: bool


# ---- callers <-> control plane ------------------------------------------------------------------


class CallSummary(msgspec.Struct, frozen=True):
    """A function call's status and counters."""

    call_id: str
    function_id: str
    function_name: str
    app_id: str
    kind: str
    status: str  # RUNNING, SUCCEEDED, FINISHED_WITH_FAILURES (some inputs failed), FAILED (all), CANCELLED, EXPIRED
    num_inputs: int | None
    submitted: int
    done: int
    failed: int
    created_at: float
    finished_at: float | None
    parent_input: str | None


class OutputsReply(msgspec.Struct, frozen=True):
    outputs: list[Output]
    call: CallSummary


class OutputRowsReply(msgspec.Struct, frozen=True):
    """Outputs as rows (a client that asked for ``chunks`` splits chunks itself: less work for the server)."""

    outputs: list[OutputRow]
    call: CallSummary


class OutputReply(msgspec.Struct, frozen=True):
    output: Output | None
    call: CallSummary


class ImageBuildRequest(msgspec.Struct, frozen=True):
    """Prepare an image (a no-op once it is ready) and follow its build log after the first ``since`` lines."""

    image: ImageSpec
    since: int = 0
    wait: float = 0.0


class ImageBuildReply(msgspec.Struct, frozen=True):
    state: str  # building, ready, failed
    lines: list[str]
    error: str | None = None


class MalformedBody(ValueError):
    """A request or response body that is not the message it should be."""


def encode(message: Any) -> bytes:
    return _encoder.encode(message)


def decode(data: bytes, kind: type[T]) -> T:
    """The message of type ``kind`` in a msgpack body (an empty body is the message's defaults)."""
    try:
        return _decoder(kind).decode(data or b"\x80")
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise MalformedBody(f"malformed {kind.__name__}: {exc}") from None


_encoder = msgspec.msgpack.Encoder()
_decoders: dict[type[Any], msgspec.msgpack.Decoder[Any]] = {}


def _decoder(kind: type[T]) -> msgspec.msgpack.Decoder[T]:
    found = _decoders.get(kind)
    if found is None:
        found = _decoders[kind] = msgspec.msgpack.Decoder(kind)
    return found
