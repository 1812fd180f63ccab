"""Records the store hands out, and the states an input and a container move through."""

from __future__ import annotations

from typing import Any

import msgspec

from ...protocol.messages import (
    RETRYABLE,
    ContainerState,
    LeasedInput,
    Output,
    OutputStatus,
    ReportedOutput,
)
from ...protocol.specs import FunctionSpec

__all__ = [  # the store's records, with the wire's rows and states they include
    "RETRYABLE", "Attempt", "shown_tag", "CallInfo", "CallSample", "ContainerRecord", "ContainerRow", "ContainerSample",
    "ContainerState", "DueSchedule",
    "FailureGroup", "FunctionInsight", "FunctionLoad", "FunctionRecord", "InputDetail", "Intent", "LeasedInput",
    "LogFilter", "LogLine", "Output", "OutputStatus", "ReportedOutput",
]  # fmt: skip


def shown_tag(tag: str) -> str:
    """A function's tag as people see it: a ``with_options`` variant's (``Model~<hash of its options>``, the pool
    the control plane keeps for it) as its class's name and a short mark of the variant."""
    base, variant, key = tag.partition("~")
    return f"{base} (with_options {key[:6]})" if variant else tag


class FunctionRecord(msgspec.Struct, frozen=True):
    """A registered function: its spec and, for ``serialized=True``, the pickled function (opaque here)."""

    id: str
    app_id: str
    tag: str
    spec: FunctionSpec
    pickled: bytes | None


class Intent(msgspec.Struct, frozen=True):
    """Why the control plane is killing a container, and what its inputs get for it."""

    reason: str
    status: OutputStatus = OutputStatus.CRASHED  # TIMEOUT when an input ran past its timeout
    charge: bool = True  # whether the inputs it held lose an attempt


class ContainerRecord(msgspec.Struct, frozen=True):
    """One container as the store knows it, with why the control plane is killing it (if it is)."""

    id: str
    function_id: str
    app_id: str
    state: ContainerState
    intent: Intent | None
    startup_failures: int  # consecutive failed starts of its function


class ContainerRow(
    msgspec.Struct
):  # not frozen: 10,000 of them are made every tick, and a frozen one costs 5x (treat as a value)
    id: str
    function_id: str
    state: ContainerState
    created_at: float
    last_seen: float
    last_active: float
    leased: int
    oldest_lease: float | None = None  # when its oldest leased input was leased
    waiting: bool = False  # asked of the backend, not placed yet for lack of capacity (no startup clock runs)


class ContainerSample(msgspec.Struct, frozen=True):
    """What a container used at one moment: CPU (percent of one core), memory, and its GPUs' (None: no GPU)."""

    container_id: str
    function_id: str
    at: float
    cpu: float
    memory_mib: float
    gpu: float | None = None  # utilization, percent (the mean over its GPUs)
    gpu_memory_mib: float | None = None


class CallSample(msgspec.Struct, frozen=True):
    """A call's progress at one moment: inputs done, and containers of its function."""

    call_id: str
    at: float
    done: int
    containers: int


class FunctionLoad(msgspec.Struct, frozen=True):
    """What the scheduler needs to know about one function."""

    function_id: str
    app_id: str
    ready: int  # pending inputs whose retry delay has passed
    waiting: int  # pending inputs still in their retry delay
    leased: int
    min_containers: int
    max_containers: int
    buffer_containers: int
    scaledown_window: float
    startup_timeout: float
    timeout: float
    startup_failures: int
    last_startup_failure: float
    capacity: int = 1  # inputs one container runs at once (@concurrent's target_inputs)
    pool: str = "cpu"  # what its containers contend for on a machine: "gpu" (GPUs) or "cpu" (CPUs and memory)


class CallInfo(msgspec.Struct, frozen=True):
    id: str
    function_id: str
    function_name: str
    app_id: str
    kind: str
    created_at: float
    num_inputs: int | None
    submitted: int
    done: int
    failed: int
    cancelled: bool
    expired: bool
    finished_at: float | None
    parent_input: str | None
    expected: int | None = None  # how many inputs the caller said it has, while they are being submitted

    @property
    def status(self) -> str:
        if self.expired:
            return "EXPIRED"
        if self.cancelled:
            return "CANCELLED"
        if self.num_inputs is not None and self.done >= self.num_inputs:
            if not self.failed:
                return "SUCCEEDED"
            # a batch whose results include failures (returned to a map with return_exceptions=True) finished
            return "FAILED" if self.failed >= self.done else "FINISHED_WITH_FAILURES"
        return "RUNNING"


# ---- what the dashboard and the schedules read -------------------------------------------------


class FunctionInsight(msgspec.Struct, frozen=True):
    """One function of an app (its newest version) as the app page shows it."""

    function_id: str
    tag: str
    backlog: int
    running: int
    containers: int
    succeeded: int
    failed: int
    latency: dict[str, dict[str, float | None]]  # metric -> {"p50": s, "p95": s}


class FailureGroup(msgspec.Struct, frozen=True):
    """Failed inputs of a call that raised the same exception type with the same message."""

    error_type: str
    message: str
    count: int
    traceback: str
    indexes: list[int]  # the first ones, ascending


class Attempt(msgspec.Struct, frozen=True):
    lease: int  # attempt number
    container_id: str | None
    status: str
    duration: float | None
    error_type: str | None
    error_message: str | None
    ended_at: float | None


class InputDetail(msgspec.Struct, frozen=True):
    """One input of a call: where it is now, each attempt, its output, its log lines."""

    call_id: str
    index: int
    state: str  # PENDING, LEASED, or the output's status
    attempts: list[Attempt]
    traceback: str | None
    logs: list[LogLine] = msgspec.field(default_factory=list)


class LogLine(msgspec.Struct, frozen=True):
    seq: int
    ts: float
    stream: str
    text: str
    app_id: str
    call_id: str | None
    input_idx: int | None
    container_id: str | None


class LogFilter(msgspec.Struct, frozen=True):
    """Which log lines to show; every field narrows (None: any)."""

    app_id: str | None = None
    function_id: str | None = None
    call_id: str | None = None
    container_id: str | None = None
    input_idx: int | None = None
    text: str | None = None  # a substring, case-insensitive
    function_tag: str | None = None  # every version of the app's function with this tag (app_id needed)
    stream: str | None = None  # "stdout", "stderr" or "system"
    since_ts: float | None = None  # written at or after
    until_ts: float | None = None  # written before


class DueSchedule(msgspec.Struct, frozen=True):
    function_id: str
    app_id: str
    spec: dict[str, Any]
    anchor: float
    fire_at: float
