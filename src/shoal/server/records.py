"""Records the store hands out, and the states an input and a container move through."""

from __future__ import annotations

import enum
from dataclasses import dataclass


class OutputStatus(str, enum.Enum):
    """How an input ended (the outputs table's ``status``)."""

    SUCCESS = "SUCCESS"  # data: cloudpickled return value
    FAILURE = "FAILURE"  # data: serialized exception from user code
    TIMEOUT = "TIMEOUT"  # data: utf-8 message
    CRASHED = "CRASHED"  # data: utf-8 message (container died while running it)
    CANCELLED = "CANCELLED"  # data: utf-8 message
    INIT_FAILED = "INIT_FAILED"  # data: utf-8 message (the function could not be loaded)


RETRYABLE = {OutputStatus.FAILURE, OutputStatus.TIMEOUT, OutputStatus.CRASHED}


class ContainerState(str, enum.Enum):
    STARTING = "STARTING"
    RUNNING = "RUNNING"
    DRAINING = "DRAINING"
    STOPPED = "STOPPED"


@dataclass(frozen=True)
class LeasedInput:
    call_id: str
    index: int
    lease: int  # fencing token: the lease counter when this container took it
    payload: bytes


@dataclass(frozen=True)
class Output:
    seq: int
    index: int
    status: str
    data: bytes


@dataclass(frozen=True)
class ReportedOutput:
    """What a container reports for one input it leased."""

    call_id: str
    index: int
    lease: int
    status: OutputStatus
    data: bytes


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
