"""A container's lifecycle as a pure function: an event and the facts on record in, the actions to apply out.

The control plane turns what happens (the scheduler decides a kill, the backend sees a process end, a container
reports its start) into an event, reads the container's :class:`Facts` from the store, and applies the actions
:func:`decide` returns, in order. Everything a later event needs (why a container is being killed) is written to
the store by an action, never kept in the plane's memory, so decisions survive a restart and are tested here
without processes, sockets or sleeps (dask's worker state machine is the model).
"""

from __future__ import annotations

import msgspec

from .records import ContainerState, Intent, OutputStatus

FATAL_STARTUP_FAILURES = 3  # consecutive failed starts of a function before its queued inputs fail


class Facts(msgspec.Struct, frozen=True):
    """What the store knows about the container an event concerns."""

    state: ContainerState
    intent: Intent | None = None
    startup_failures: int = 0  # consecutive failed starts of its function so far
    alive: bool = True  # whether the backend still runs its process


# ---- events ---------------------------------------------------------------------------------------


class KillDecided(msgspec.Struct, frozen=True):
    """The scheduler found it hung, late to start or past an input's timeout; or a cancel terminates it."""

    intent: Intent


class ContainerExited(msgspec.Struct, frozen=True):
    """The backend saw the process end."""

    description: str  # the backend's words for how (exit code, signal)
    output_tail: str = ""  # the last lines it wrote, for the error its inputs get
    unreachable: bool = False  # it exited because it could not reach the control plane (EXIT_UNREACHABLE)
    lost: bool = False  # the backend lost it with no exit of its own (its Ray actor or node gone)
    blameless: bool = False  # it went with its whole cluster: nothing says anything about its inputs (not charged)


class StartReported(msgspec.Struct, frozen=True):
    """The container loaded the function and ran its enter hooks, or failed to."""

    error: str | None = None
    fatal: bool = False  # the code cannot load at all: no point in trying another start


Event = KillDecided | ContainerExited | StartReported


# ---- actions --------------------------------------------------------------------------------------


class RecordIntent(msgspec.Struct, frozen=True):
    intent: Intent


class Terminate(msgspec.Struct, frozen=True):
    grace: float = 0.0


class FailInputs(msgspec.Struct, frozen=True):
    """End or re-queue the inputs it held (``charge``: each loses an attempt; ``lost``: a lone input is not to blame
    unless already isolated)."""

    status: OutputStatus
    message: str
    charge: bool
    lost: bool = False


class CountStartFailure(msgspec.Struct, frozen=True):
    error: str


class FailQueued(msgspec.Struct, frozen=True):
    """End every queued input of its function: it cannot start."""

    status: OutputStatus
    message: str


class MarkStarted(msgspec.Struct, frozen=True):
    pass


class MarkStopped(msgspec.Struct, frozen=True):
    reason: str


class Log(msgspec.Struct, frozen=True):
    text: str


Action = RecordIntent | Terminate | FailInputs | CountStartFailure | FailQueued | MarkStarted | MarkStopped | Log


def decide(event: Event, facts: Facts) -> list[Action]:
    """The actions that follow ``event`` for a container with these ``facts``."""
    if isinstance(event, KillDecided):
        if facts.alive:
            return [RecordIntent(event.intent), Terminate(0.0)]
        # already gone without the backend noticing: it exited, for the reason the kill gives
        gone = Facts(facts.state, event.intent, facts.startup_failures, alive=False)
        return [RecordIntent(event.intent), *decide(ContainerExited(event.intent.reason), gone)]
    if isinstance(event, StartReported):
        if event.error is None:
            return [MarkStarted()]
        return _start_failed(event.error, facts, event.fatal)
    return _exited(event, facts)


def _exited(event: ContainerExited, facts: Facts) -> list[Action]:
    intent = facts.intent or Intent(event.description)
    log_hint = f". The last lines it wrote:\n{event.output_tail}" if event.output_tail.strip() else ""
    if intent.status == OutputStatus.TIMEOUT:
        status, message = OutputStatus.TIMEOUT, intent.reason
    else:
        status = OutputStatus.CRASHED
        message = f"The container running this input exited unexpectedly: {intent.reason}{log_hint}"
    # stopped on purpose, or gone with its whole cluster: not its inputs' fault
    charge = intent.charge and facts.state != ContainerState.DRAINING and not event.blameless
    lost = event.lost and facts.intent is None  # lost on its own, not by a kill of the control plane's
    actions: list[Action] = [FailInputs(status, message, charge, lost)]
    if facts.state == ContainerState.STARTING and (event.unreachable or lost):  # not its code's fault: start another
        why = "it could not reach the control plane" if event.unreachable else "its node or cluster went away"
        return [
            *actions,
            MarkStopped(intent.reason),
            Log(f"stopped: {intent.reason} ({why}; not counted as a failed start)"),
        ]
    if facts.state == ContainerState.STARTING:
        error = f"The container for this function exited before it was ready ({intent.reason}){log_hint}"
        actions += _start_failed(error, facts, fatal=False)
    return [*actions, MarkStopped(intent.reason), Log(f"stopped: {intent.reason}")]


def _start_failed(error: str, facts: Facts, fatal: bool) -> list[Action]:
    actions: list[Action] = [CountStartFailure(error)]
    if fatal or facts.startup_failures + 1 >= FATAL_STARTUP_FAILURES:
        actions.append(FailQueued(OutputStatus.INIT_FAILED, error))
    return actions
