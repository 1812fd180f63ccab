"""The container lifecycle decisions, as events in and actions out: no processes, no store, no sleeps."""

from __future__ import annotations

from shoal.server.core.lifecycle import (
    ContainerExited,
    CountStartFailure,
    Facts,
    FailInputs,
    FailQueued,
    Intent,
    KillDecided,
    Log,
    MarkStarted,
    MarkStopped,
    RecordIntent,
    StartReported,
    Terminate,
    decide,
)
from shoal.server.core.records import ContainerState, OutputStatus

RUNNING = Facts(ContainerState.RUNNING)


def test_a_crash_charges_its_inputs_and_quotes_the_containers_last_words():
    actions = decide(ContainerExited("exit code 1", "MemoryError"), RUNNING)
    (fail,) = [a for a in actions if isinstance(a, FailInputs)]
    assert fail.status == OutputStatus.CRASHED and fail.charge
    assert "exited unexpectedly: exit code 1. The last lines it wrote:\nMemoryError" in fail.message
    assert actions[-2:] == [MarkStopped("exit code 1"), Log("stopped: exit code 1")]


def test_a_kill_is_recorded_before_the_process_is_terminated_and_its_reason_wins_at_exit():
    # Given the scheduler decides a hung container must go
    intent = Intent("no heartbeat for 31s")
    assert decide(KillDecided(intent), RUNNING) == [RecordIntent(intent), Terminate(0.0)]
    # When the backend later reports the exit, the recorded reason (not the signal) explains it
    actions = decide(ContainerExited("killed by SIGKILL"), Facts(ContainerState.RUNNING, intent))
    assert "no heartbeat for 31s" in actions[0].message  # type: ignore[union-attr]


def test_an_input_past_its_timeout_ends_as_timeout_with_the_timeout_message():
    intent = Intent("Function timed out after 2s (timeout=2)", OutputStatus.TIMEOUT)
    (fail, *_) = decide(ContainerExited("killed by SIGKILL"), Facts(ContainerState.RUNNING, intent))
    assert fail == FailInputs(OutputStatus.TIMEOUT, "Function timed out after 2s (timeout=2)", True)


def test_a_container_terminated_by_a_cancel_or_stopped_on_purpose_charges_nobody():
    cancel = Intent("terminated by FunctionCall.cancel", charge=False)
    assert not decide(ContainerExited("SIGKILL"), Facts(ContainerState.RUNNING, cancel))[0].charge  # type: ignore[union-attr]
    assert not decide(ContainerExited("exit code 0"), Facts(ContainerState.DRAINING))[0].charge  # type: ignore[union-attr]


def test_a_container_lost_on_its_own_is_marked_lost_but_one_the_control_plane_killed_is_not():
    (fail, *_) = decide(ContainerExited("it was lost", lost=True), RUNNING)
    assert fail == FailInputs(OutputStatus.CRASHED, "The container running this input exited unexpectedly: "
                              "it was lost", charge=True, lost=True)  # fmt: skip
    timeout = Intent("Function timed out after 2s (timeout=2)", OutputStatus.TIMEOUT)
    (killed, *_) = decide(ContainerExited("it was lost", lost=True), Facts(ContainerState.RUNNING, timeout))
    assert killed == FailInputs(OutputStatus.TIMEOUT, timeout.reason, True, lost=False)


def test_a_kill_of_a_container_already_gone_is_handled_as_its_exit():
    intent = Intent("it did not start within startup_timeout=5s")
    actions = decide(KillDecided(intent), Facts(ContainerState.STARTING, alive=False))
    assert actions[0] == RecordIntent(intent)
    assert Terminate(0.0) not in actions
    assert any(isinstance(a, CountStartFailure) for a in actions)
    assert actions[-2] == MarkStopped("it did not start within startup_timeout=5s")


def test_dying_before_ready_counts_a_failed_start_and_the_third_in_a_row_fails_the_queue():
    second = decide(ContainerExited("exit code 1"), Facts(ContainerState.STARTING, startup_failures=1))
    assert [type(a) for a in second[:2]] == [FailInputs, CountStartFailure]
    assert not any(isinstance(a, FailQueued) for a in second)
    third = decide(ContainerExited("exit code 1"), Facts(ContainerState.STARTING, startup_failures=2))
    (queued,) = [a for a in third if isinstance(a, FailQueued)]
    assert queued.status == OutputStatus.INIT_FAILED and "exited before it was ready" in queued.message


def test_a_start_that_could_not_reach_the_control_plane_is_not_counted_against_the_function():
    # Given two failed starts already: a third that died for lack of the server (a start storm, a restart)
    actions = decide(
        ContainerExited("exit code 75", unreachable=True), Facts(ContainerState.STARTING, startup_failures=2)
    )
    # Then it is not a failed start of the function, and its queue is left alone
    assert not any(isinstance(a, (CountStartFailure, FailQueued)) for a in actions)
    assert MarkStopped("exit code 75") in actions
    # while the same exit of a container that had started is an ordinary crash for its inputs
    crashed = decide(ContainerExited("exit code 75", unreachable=True), Facts(ContainerState.RUNNING))
    assert [type(a) for a in crashed][:1] == [FailInputs]


def test_a_start_lost_with_its_node_or_cluster_is_not_counted_against_the_function():
    # Given two failed starts already: a third whose Ray actor went with its cluster's head while it loaded
    actions = decide(ContainerExited("it was lost", lost=True), Facts(ContainerState.STARTING, startup_failures=2))
    # Then its queue is left alone (a head lost mid-map must not fail every queued input as INIT_FAILED)
    assert not any(isinstance(a, (CountStartFailure, FailQueued)) for a in actions)
    assert Log("stopped: it was lost (its node or cluster went away; not counted as a failed start)") in actions
    # but a start the control plane killed (late to start) still counts, lost or not
    late = Facts(ContainerState.STARTING, Intent("it did not start within startup_timeout=5s"), startup_failures=2)
    killed = decide(ContainerExited("it was lost", lost=True), late)
    assert any(isinstance(a, FailQueued) for a in killed)


def test_a_container_gone_with_its_whole_cluster_charges_none_of_its_inputs():
    # A node lost alone isolates what its container held (one of them may be to blame), but a whole cluster lost
    # says nothing of the inputs: an input isolated by an earlier loss is not charged either
    actions = decide(ContainerExited("it was lost with its cluster", lost=True, blameless=True), RUNNING)
    (failed,) = [a for a in actions if isinstance(a, FailInputs)]
    assert not failed.charge and failed.lost


def test_a_reported_start_marks_it_started_and_an_import_error_fails_the_queue_at_once():
    assert decide(StartReported(), Facts(ContainerState.STARTING)) == [MarkStarted()]
    flaky = decide(StartReported("enter hook failed", fatal=False), Facts(ContainerState.STARTING))
    assert flaky == [CountStartFailure("enter hook failed")]
    broken = decide(StartReported("ImportError: no module x", fatal=True), Facts(ContainerState.STARTING))
    assert broken == [
        CountStartFailure("ImportError: no module x"),
        FailQueued(OutputStatus.INIT_FAILED, "ImportError: no module x"),
    ]
