"""The store contract, input lifecycle: leases, reports, retries, crashes, cancels and expiry, on a fake clock."""

from __future__ import annotations

import pytest

from shoal.protocol.messages import Release
from shoal.server.core.records import OutputStatus, ReportedOutput
from tests.contract.conftest import inputs_of


def ok(lease, index=0, call="fc-1"):  # noqa: ANN001, ANN201
    return ReportedOutput(call, index, lease.lease if hasattr(lease, "lease") else lease, OutputStatus.SUCCESS, b"Iok")


def test_inputs_are_leased_oldest_first_and_only_once(store):
    store.add_inputs("fc-1", 0, [b"a", b"b", b"c"], close=True)
    first = inputs_of(store.lease_inputs("fu-1", "ta-1", 2))
    second = inputs_of(store.lease_inputs("fu-1", "ta-2", 5))
    assert [x.index for x in first] == [0, 1]
    assert [x.index for x in second] == [2]
    assert inputs_of(store.lease_inputs("fu-1", "ta-2", 5)) == []


def test_adding_the_same_input_batch_twice_is_idempotent(store):
    assert store.add_inputs("fc-1", 0, [b"a", b"b"], close=False) == 2
    assert store.add_inputs("fc-1", 0, [b"a", b"b"], close=False) == 0
    assert store.call("fc-1").submitted == 2


def test_a_completed_input_has_exactly_one_output_and_the_call_finishes(store):
    store.add_inputs("fc-1", 0, [b"a"], close=True)
    (leased,) = inputs_of(store.lease_inputs("fu-1", "ta-1", 1))
    assert store.complete("ta-1", [ok(leased)]) == (1, {"fc-1"})
    assert store.complete("ta-1", [ok(leased)]) == (0, set())  # a duplicate report is ignored
    assert [o.index for o in store.outputs("fc-1", 0, 10)] == [0]
    assert store.call("fc-1").status == "SUCCEEDED"


def test_a_report_from_a_stale_lease_is_rejected(store):
    store.add_inputs("fc-1", 0, [b"a"], close=True)
    (old,) = inputs_of(store.lease_inputs("fu-1", "ta-1", 1))
    store.fail_container_inputs("ta-1", "crashed", charge=False)  # requeued: ta-1 is now a zombie
    (new,) = inputs_of(store.lease_inputs("fu-1", "ta-2", 1))
    assert new.lease == old.lease + 1
    assert store.complete("ta-1", [ok(old)]) == (0, set())
    assert store.complete("ta-2", [ok(new)]) == (1, {"fc-1"})


def test_a_failure_is_retried_after_its_backoff_then_ends(store):
    store.add_inputs("fc-1", 0, [b"a"], close=True)
    (x,) = inputs_of(store.lease_inputs("fu-1", "ta-1", 1))
    store.complete("ta-1", [ReportedOutput("fc-1", 0, x.lease, OutputStatus.FAILURE, b"Ierr")])
    assert inputs_of(store.lease_inputs("fu-1", "ta-1", 1)) == []  # still in its 2 s backoff
    store.clock_.now += 2.0
    (y,) = inputs_of(store.lease_inputs("fu-1", "ta-1", 1))
    store.complete("ta-1", [ReportedOutput("fc-1", 0, y.lease, OutputStatus.FAILURE, b"Ierr")])
    (out,) = store.outputs("fc-1", 0, 10)
    assert out.status == "FAILURE"
    assert store.call("fc-1").status == "FAILED"


def test_a_crash_holding_several_inputs_isolates_them_without_charging(store):
    store.add_inputs("fc-1", 0, [b"a", b"b", b"c"], close=True)
    inputs_of(store.lease_inputs("fu-1", "ta-1", 3))
    store.fail_container_inputs("ta-1", "killed")
    assert store.outputs("fc-1", 0, 10) == []
    # isolated inputs are leased one at a time, so the next crash is attributed to exactly one input
    assert len(inputs_of(store.lease_inputs("fu-1", "ta-2", 3))) == 1


def test_an_isolated_input_given_back_unstarted_stays_isolated(store):
    # Given two inputs isolated by the crash of a container that held both
    store.add_inputs("fc-1", 0, [b"a", b"b"], close=True)
    inputs_of(store.lease_inputs("fu-1", "ta-1", 2))
    store.fail_container_inputs("ta-1", "killed")
    # When the first is leased and given back unstarted (its container stopping), then leased again
    (first,) = inputs_of(store.lease_inputs("fu-1", "ta-2", 2))
    store.release("ta-2", [Release(first.call_id, first.index, first.lease)])
    (again,) = inputs_of(store.lease_inputs("fu-1", "ta-2", 2))
    assert again.index == first.index == 0
    # Then it is still isolated: lost with its node, it is charged (and waits out its backoff), as an isolated
    # input is; giving it back said nothing of it
    store.fail_container_inputs("ta-2", "its node was lost", lost=True)
    store.add_container("ta-3", "fu-1", "ap-1")
    assert [x.index for x in inputs_of(store.lease_inputs("fu-1", "ta-3", 2))] == [1]


def test_a_crash_holding_one_input_charges_it_until_retries_are_spent(store):
    store.add_inputs("fc-1", 0, [b"a"], close=True)
    for _ in range(2):  # max_retries=1: two attempts
        store.clock_.now += 10
        assert inputs_of(store.lease_inputs("fu-1", "ta-1", 1))
        store.fail_container_inputs("ta-1", "exit code 1")
    (out,) = store.outputs("fc-1", 0, 10)
    assert out.status == "CRASHED"
    assert b"exit code 1" in out.data


def test_a_lost_container_holding_one_input_requeues_it_uncharged_once_then_charges_it_isolated(store):
    # A container the backend lost with its node: nothing says the input it held caused that
    store.add_inputs("fc-1", 0, [b"a", b"b"], close=True)
    inputs_of(store.lease_inputs("fu-1", "ta-1", 1))
    store.fail_container_inputs("ta-1", "it was lost", lost=True)
    assert store.outputs("fc-1", 0, 10) == []
    # but it is isolated, so a poison input that takes nodes down still spends its attempts (max_retries=1)
    for _ in range(2):
        store.clock_.now += 10
        (leased,) = inputs_of(store.lease_inputs("fu-1", "ta-2", 2))
        assert leased.index == 0
        store.fail_container_inputs("ta-2", "it was lost", lost=True)
    (out,) = store.outputs("fc-1", 0, 10)
    assert out.index == 0 and out.status == "CRASHED"


def test_cancel_ends_every_unfinished_input(store):
    store.add_inputs("fc-1", 0, [b"a", b"b"], close=True)
    inputs_of(store.lease_inputs("fu-1", "ta-1", 1))
    assert store.cancel_call("fc-1", "cancelled") == [("ta-1", 0)]
    assert {o.status for o in store.outputs("fc-1", 0, 10)} == {"CANCELLED"}
    assert store.call("fc-1").status == "CANCELLED"


def test_results_expire_after_the_retention_window(store):
    store.add_inputs("fc-1", 0, [b"a"], close=True)
    (x,) = inputs_of(store.lease_inputs("fu-1", "ta-1", 1))
    store.complete("ta-1", [ok(x)])
    assert store.expire_results(retention=60) == 0
    store.clock_.now += 61
    assert store.expire_results(retention=60) == 1
    assert store.outputs("fc-1", 0, 10) == []
    assert store.call("fc-1").status == "EXPIRED"


def test_a_closed_call_takes_no_more_inputs(store):
    store.add_inputs("fc-1", 0, [b"a"], close=True)
    with pytest.raises(ValueError, match="closed"):
        store.add_inputs("fc-1", 1, [b"b"], close=False)


def test_state_survives_reopening_the_store(store, make_store):
    store.add_inputs("fc-1", 0, [b"a"], close=True)
    (x,) = inputs_of(store.lease_inputs("fu-1", "ta-1", 1))
    store.complete("ta-1", [ok(x)])
    reopened = make_store()
    assert [o.index for o in reopened.outputs("fc-1", 0, 10)] == [0]
    assert reopened.function("fu-1").spec.retries.max_retries == 1


def test_a_call_keeps_the_number_of_inputs_its_caller_said_it_has(store):
    store.create_call("fc-n", "fu-1", "ap-1", "map", None, expected=1000)
    assert store.call("fc-n").expected == 1000 and store.call("fc-n").num_inputs is None  # said, not yet in
    assert store.call("fc-1").expected is None  # a generator's: not known


def test_a_key_is_one_call_while_its_results_are_kept(store):
    assert store.create_call("fc-k1", "fu-1", "ap-1", "spawn", None, [b"a"], close=True, key="f:k") == "fc-k1"
    # the same key again (another request, another server): the first call, and nothing added to it
    assert store.create_call("fc-k2", "fu-1", "ap-1", "spawn", None, [b"b"], close=True, key="f:k") == "fc-k1"
    assert store.call("fc-k2") is None and store.call("fc-k1").num_inputs == 1
    assert store.call_by_key("ap-1", "f:k") == "fc-k1" and store.call_by_key("ap-1", "f:other") is None
    (x,) = inputs_of(store.lease_inputs("fu-1", "ta-1", 1))
    store.complete("ta-1", [ok(x, call="fc-k1")])
    store.clock_.now += 61
    assert store.expire_results(retention=60) == 1
    # its results expired: the key is free, and starts a new call
    assert store.call_by_key("ap-1", "f:k") is None
    assert store.create_call("fc-k3", "fu-1", "ap-1", "spawn", None, [b"c"], close=True, key="f:k") == "fc-k3"


def test_a_finished_calls_failed_and_cancelled_inputs_are_queued_again_from_their_kept_payloads(store):
    # Given a call of three inputs (the store's default retries: two failures end an input): one succeeds, one
    # fails for good, and the call is cancelled with the third still queued
    store.add_inputs("fc-1", 0, [b"a", b"b", b"c"], close=True)
    first, second = inputs_of(store.lease_inputs("fu-1", "ta-1", 2))
    store.complete("ta-1", [ok(first)])
    store.complete("ta-1", [ReportedOutput("fc-1", 1, second.lease, OutputStatus.FAILURE, b"Ierr")])
    store.clock_.now += 2.0
    leased = {x.index: x for x in inputs_of(store.lease_inputs("fu-1", "ta-1", 5))}
    again = leased[1]
    store.complete("ta-1", [ReportedOutput("fc-1", 1, again.lease, OutputStatus.FAILURE, b"Ierr")])
    store.release("ta-1", [Release("fc-1", 2, leased[2].lease)])  # input 2 goes back to the queue, unrun
    with pytest.raises(Exception, match="has not finished"):
        store.retry_call("fc-1", "fu-1", ["FAILURE"])  # input 2 is still queued
    store.cancel_call("fc-1", "cancelled")
    assert store.call("fc-1").status == "CANCELLED"
    # When its failures are retried: the failed input is queued again, on the next lease number
    assert store.retry_call("fc-1", "fu-1", ["FAILURE"]) == (1, 0)
    assert store.call("fc-1").status == "RUNNING"
    (retried,) = inputs_of(store.lease_inputs("fu-1", "ta-2", 5))
    assert (retried.index, retried.payload, retried.lease) == (1, b"b", again.lease + 1)
    store.complete("ta-2", [ok(retried, index=1)])
    # and then its cancelled one
    assert store.retry_call("fc-1", "fu-1", ["CANCELLED"]) == (1, 0)
    (last,) = inputs_of(store.lease_inputs("fu-1", "ta-2", 5))
    store.complete("ta-2", [ok(last, index=2)])
    # Then every input has one output, the call succeeded, and the first attempts stay on the input
    assert sorted((o.index, o.status) for o in store.outputs("fc-1", 0, 10)) == [(0, "SUCCESS"), (1, "SUCCESS"),
                                                                                  (2, "SUCCESS")]  # fmt: skip
    assert store.call("fc-1").status == "SUCCEEDED"
    statuses = [a.status for a in store.insights.input_detail("fc-1", 1).attempts]
    assert statuses == ["FAILURE", "FAILURE", "SUCCESS"]
    assert store.retry_call("fc-1", "fu-1", ["FAILURE"]) == (0, 0)  # nothing left to retry
