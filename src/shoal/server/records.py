"""Records the store hands out, and the states an input and a container move through."""

from __future__ import annotations

from dataclasses import dataclass

from ..protocol.messages import (
    RETRYABLE,
    ContainerState,
    LeasedInput,
    Output,
    OutputStatus,
    ReportedOutput,
)
from ..protocol.specs import FunctionSpec

__all__ = [  # the store's records, with the wire's rows and states they include
    "RETRYABLE", "CallInfo", "ContainerRecord", "ContainerRow", "ContainerState", "FunctionLoad", "FunctionRecord",
    "Intent", "LeasedInput", "Output", "OutputStatus", "ReportedOutput",
]  # fmt: skip


@dataclass(frozen=True)
class FunctionRecord:
    """A registered function: its spec and, for ``serialized=True``, the pickled function (opaque here)."""

    id: str
    app_id: str
    tag: str
    spec: FunctionSpec
    pickled: bytes | None


@dataclass(frozen=True)
class Intent:
    """Why the control plane is killing a container, and what its inputs get for it."""

    reason: str
    status: OutputStatus = OutputStatus.CRASHED  # TIMEOUT when an input ran past its timeout
    charge: bool = True  # whether the inputs it held lose an attempt


@dataclass(frozen=True)
class ContainerRecord:
    """One container as the store knows it, with why the control plane is killing it (if it is)."""

    id: str
    function_id: str
    app_id: str
    state: ContainerState
    intent: Intent | None
    startup_failures: int  # consecutive failed starts of its function


@dataclass(frozen=True)
class ContainerRow:
    id: str
    function_id: str
    state: ContainerState
    created_at: float
    last_seen: float
    last_active: float
    leased: int
    oldest_lease: float | None = None  # when its oldest leased input was leased
    waiting: bool = False  # asked of the backend, not placed yet for lack of capacity (no startup clock runs)


@dataclass(frozen=True)
class FunctionLoad:
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


@dataclass(frozen=True)
class CallInfo:
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

    @property
    def status(self) -> str:
        if self.expired:
            return "EXPIRED"
        if self.cancelled:
            return "CANCELLED"
        if self.num_inputs is not None and self.done >= self.num_inputs:
            return "FAILED" if self.failed else "SUCCEEDED"
        return "RUNNING"
