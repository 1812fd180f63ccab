"""What becomes of an input, as a pure function: an event and the facts on record in, one verdict per input out.

An input is PENDING (queued), LEASED (a container holds it) or ended (its one output). Every way it can leave a
lease is an event here: a container reports its result, gives it back unstarted, dies with it (charged or not,
lost with its node or not), its call is cancelled, or its function's queue fails (its code cannot load). The
store reads the facts it keeps about each input (:class:`Held`), asks :func:`settle`, and writes the verdicts in
the same transaction: :class:`Finish` (an output), :class:`Retry` (queued again after its backoff, one more
attempt charged) or :class:`Requeue` (queued again now, not charged). The rules live here and nowhere else, so a
store writes rows, not policy, and each rule is one row of ``tests/unit/core/test_inputs.py``.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

from ...protocol.messages import RETRYABLE, FailureInfo, OutputStatus
from ...retries import RetryPolicy

# what the caller raises for an input that ended without running to an answer (the dashboard's grouping key)
ERROR_TYPES = {OutputStatus.TIMEOUT: "FunctionTimeoutError", OutputStatus.CANCELLED: "InputCancellation"}
UNDESCRIBED = FailureInfo("Exception", "(no description was reported)", "")


class Held(msgspec.Struct, frozen=True):
    """What the store knows of one input an event concerns."""

    failures: int = 0  # attempts already charged to it
    isolated: bool = False  # leased alone since a container holding several died


# ---- events ---------------------------------------------------------------------------------------


class Reported(msgspec.Struct, frozen=True):
    """A container reported the input's result (``data``: the result, or the server's message for it)."""

    status: OutputStatus
    data: bytes = b""
    error: FailureInfo | None = None  # the container's account of a user exception


class Released(msgspec.Struct, frozen=True):
    """A container gave the input back without starting it."""


class ContainerFailed(msgspec.Struct, frozen=True):
    """The container holding the inputs died. ``charge``: whether its death may cost them an attempt (not when the
    server itself restarted); ``lost``: the backend lost it with its node, so nothing says an input caused it."""

    status: OutputStatus
    message: str
    charge: bool = True
    lost: bool = False


class Cancelled(msgspec.Struct, frozen=True):
    """The input's call was cancelled (queued or running)."""

    message: str


class QueueFailed(msgspec.Struct, frozen=True):
    """The function cannot run at all (its code does not load): its queued inputs end."""

    status: OutputStatus
    message: str


Event = Reported | Released | ContainerFailed | Cancelled | QueueFailed


# ---- verdicts -------------------------------------------------------------------------------------


class Finish(msgspec.Struct, frozen=True):
    """The input ends: ``status`` and ``data`` become its output; ``error`` is what people see of a failure."""

    status: OutputStatus
    data: bytes
    error: FailureInfo | None


class Retry(msgspec.Struct, frozen=True):
    """Charged an attempt and queued again, ready at ``not_before``; ``attempt`` is kept for people."""

    not_before: float
    attempt: FailureInfo
    status: OutputStatus


class Requeue(msgspec.Struct, frozen=True):
    """Queued again now, not charged. ``isolate``: leased alone from now on. ``attempt``: the attempt to keep for
    people (None when the input never started)."""

    isolate: bool
    attempt: FailureInfo | None = None
    status: OutputStatus | None = None


Verdict = Finish | Retry | Requeue


def settle(event: Event, held: Sequence[Held], policy: RetryPolicy, now: float) -> list[Verdict]:
    """One verdict for each input in ``held``, in order.

    ``held`` is what the event concerns: the one reported or released input; every input the dead container
    held; every unfinished input of the cancelled call; every queued input of the failed function.
    """
    if isinstance(event, Reported):
        return [_reported(event, h, policy, now) for h in held]
    if isinstance(event, Released):
        return [Requeue(isolate=h.isolated) for h in held]
    if isinstance(event, ContainerFailed):
        return _container_failed(event, held, policy, now)
    if isinstance(event, Cancelled):
        return [_ended(OutputStatus.CANCELLED, event.message)] * len(held)
    return [_ended(event.status, event.message)] * len(held)


def _reported(event: Reported, held: Held, policy: RetryPolicy, now: float) -> Verdict:
    """A result ends the input, unless it is a retryable failure with retries left."""
    error = describe(event.status, event.data, event.error)
    if error is not None and event.status in RETRYABLE:
        delay = policy.delay_before_retry(held.failures + 1)
        if delay is not None:
            return Retry(now + delay, error, event.status)
    return Finish(event.status, event.data, error)


def _container_failed(event: ContainerFailed, held: Sequence[Held], policy: RetryPolicy, now: float) -> list[Verdict]:
    """Who is to blame for a container's death.

    When it held one input (or inputs already isolated), that input caused or suffered the crash and is charged an
    attempt. When it held several, none is charged, but each is isolated (leased alone from now on), so a poison
    input is found after at most one uncharged crash and every budget still ends. A ``lost`` container is treated
    as one that held several even when it held one: only an input already isolated is charged. A death that is not
    charged (the server restarted) clears isolation: it says nothing about the inputs.
    """
    blamed = len(held) == 1 and (not event.lost or held[0].isolated)
    if event.charge and blamed:
        return [_reported(Reported(event.status, event.message.encode()), held[0], policy, now)]
    attempt = describe(event.status, event.message.encode(), None)
    return [Requeue(isolate=event.charge, attempt=attempt, status=event.status)] * len(held)


def _ended(status: OutputStatus, message: str) -> Finish:
    data = message.encode()
    return Finish(status, data, describe(status, data, None))


def describe(status: OutputStatus, data: bytes, error: FailureInfo | None) -> FailureInfo | None:
    """A failure as people see it: the container's account of a user exception, else the server's message (the
    output's data); None for a success."""
    if status == OutputStatus.SUCCESS:
        return None
    if error is not None:
        return error
    if status == OutputStatus.FAILURE:
        return UNDESCRIBED
    return FailureInfo(ERROR_TYPES.get(status, "ExecutionError"), data.decode(errors="replace"), "")
