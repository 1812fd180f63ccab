"""What becomes of an input, as a table: an event and the facts on record in, one verdict per input out.

Each row is one rule of ``server/core/inputs.py``; no store, no SQL, no clock. The store tests (tests/contract)
check that the verdicts are written; these check that they are the right ones.
"""

from __future__ import annotations

import pytest

from shoal.protocol.messages import FailureInfo
from shoal.retries import RetryPolicy
from shoal.server.core.inputs import (
    UNDESCRIBED,
    Cancelled,
    ContainerFailed,
    Event,
    Finish,
    Held,
    QueueFailed,
    Released,
    Reported,
    Requeue,
    Retry,
    Verdict,
    describe,
    settle,
)
from shoal.server.core.records import OutputStatus as S

NOW = 1000.0
POLICY = RetryPolicy(max_retries=2, backoff_coefficient=2.0, initial_delay=1.0, max_delay=60.0)
ERROR = FailureInfo("ValueError", "bad record 7", "Traceback ...")
CRASH = FailureInfo("ExecutionError", "killed", "")
FRESH, ONCE, SPENT = Held(0), Held(1), Held(2)
ISOLATED = Held(0, isolated=True)

TABLE: list[tuple[str, Event, list[Held], list[Verdict]]] = [
    # a report
    ("a success ends the input", Reported(S.SUCCESS, b"R"), [FRESH], [Finish(S.SUCCESS, b"R", None)]),
    ("a failure with retries left is retried after its backoff",
     Reported(S.FAILURE, b"E", ERROR), [FRESH], [Retry(NOW + 1.0, ERROR, S.FAILURE)]),
    ("the backoff grows with each failure",
     Reported(S.FAILURE, b"E", ERROR), [ONCE], [Retry(NOW + 2.0, ERROR, S.FAILURE)]),
    ("a failure with its retries spent ends the input",
     Reported(S.FAILURE, b"E", ERROR), [SPENT], [Finish(S.FAILURE, b"E", ERROR)]),
    ("a failure the container could not describe still says so",
     Reported(S.FAILURE, b"E"), [SPENT], [Finish(S.FAILURE, b"E", UNDESCRIBED)]),
    ("a timeout is retried like a failure", Reported(S.TIMEOUT, b"took 5s"), [FRESH],
     [Retry(NOW + 1.0, FailureInfo("FunctionTimeoutError", "took 5s", ""), S.TIMEOUT)]),
    ("a start that failed is not retried",
     Reported(S.INIT_FAILED, b"no module"), [FRESH],
     [Finish(S.INIT_FAILED, b"no module", FailureInfo("ExecutionError", "no module", ""))]),
    # a release
    ("an input given back unstarted is queued again, uncharged, keeping its isolation",
     Released(), [FRESH, ISOLATED], [Requeue(False), Requeue(True)]),
    # a container's death
    ("a container that held one input: that input is charged (and retried)",
     ContainerFailed(S.CRASHED, "killed"), [FRESH], [Retry(NOW + 1.0, CRASH, S.CRASHED)]),
    ("... and ends when its retries are spent",
     ContainerFailed(S.CRASHED, "killed"), [SPENT], [Finish(S.CRASHED, b"killed", CRASH)]),
    ("a container that held several: none is charged, each is isolated",
     ContainerFailed(S.CRASHED, "killed"), [FRESH, ONCE], [Requeue(True, CRASH, S.CRASHED)] * 2),
    ("a container lost with its node: its one input is not to blame",
     ContainerFailed(S.CRASHED, "killed", lost=True), [FRESH], [Requeue(True, CRASH, S.CRASHED)]),
    ("... unless that input was isolated already",
     ContainerFailed(S.CRASHED, "killed", lost=True), [ISOLATED], [Retry(NOW + 1.0, CRASH, S.CRASHED)]),
    ("a death that is not charged (the server restarted) clears isolation",
     ContainerFailed(S.CRASHED, "killed", charge=False), [ISOLATED], [Requeue(False, CRASH, S.CRASHED)]),
    ("a kill for a timeout is a timeout",
     ContainerFailed(S.TIMEOUT, "ran past 60s"), [SPENT],
     [Finish(S.TIMEOUT, b"ran past 60s", FailureInfo("FunctionTimeoutError", "ran past 60s", ""))]),
    ("a container that held nothing: nothing to decide", ContainerFailed(S.CRASHED, "killed"), [], []),
    # a cancel, a queue that cannot run
    ("a cancel ends every input, queued or running",
     Cancelled("by the user"), [FRESH, ONCE],
     [Finish(S.CANCELLED, b"by the user", FailureInfo("InputCancellation", "by the user", ""))] * 2),
    ("a function that cannot load ends its queued inputs",
     QueueFailed(S.INIT_FAILED, "cannot import"), [FRESH],
     [Finish(S.INIT_FAILED, b"cannot import", FailureInfo("ExecutionError", "cannot import", ""))]),
]  # fmt: skip


@pytest.mark.parametrize(("rule", "event", "held", "verdicts"), TABLE, ids=[row[0] for row in TABLE])
def test_settle(rule: str, event: Event, held: list[Held], verdicts: list[Verdict]) -> None:
    assert settle(event, held, POLICY, NOW) == verdicts


def test_no_retries_means_the_first_failure_ends_the_input():
    assert settle(Reported(S.FAILURE, b"E", ERROR), [FRESH], RetryPolicy(max_retries=0), NOW) == [
        Finish(S.FAILURE, b"E", ERROR)
    ]


def test_a_success_is_never_described_as_a_failure():
    assert describe(S.SUCCESS, b"anything", ERROR) is None
