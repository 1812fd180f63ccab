"""The store contract, chunk-level rows: a batch of inputs is one row until something happens to one input of it.

A chunk is leased whole or cut at a lease's size, reported whole when every input of it succeeded, and split into
rows of one input when anything else happens to some of its inputs (a failure, a release, a crash, a cancel).
"""

from __future__ import annotations

from shoal.protocol import chunks
from shoal.protocol.messages import Release
from shoal.server.core.records import OutputStatus, ReportedOutput
from tests.contract.conftest import inputs_of


def chunk_report(leased, results):  # noqa: ANN001, ANN201
    """A container's report of a whole leased chunk that succeeded."""
    frame = chunks.pack(results)
    return ReportedOutput(
        leased.call_id, leased.index, leased.lease, OutputStatus.SUCCESS, frame, 0.5, count=leased.count
    )


def payloads(n):  # noqa: ANN001, ANN201
    return [b"I%d" % i for i in range(n)]


def test_a_batch_is_one_row_leased_and_reported_whole(store):
    store.add_inputs("fc-1", 0, payloads(5), close=True)
    (leased,) = store.lease_inputs("fu-1", "ta-1", 10)
    assert (leased.index, leased.count) == (0, 5)
    assert [x.payload for x in inputs_of([leased])] == payloads(5)
    assert store.complete("ta-1", [chunk_report(leased, [b"Ir%d" % i for i in range(5)])]) == (5, {"fc-1"})
    assert [(o.index, o.data) for o in store.outputs("fc-1", 0, 100)] == [(i, b"Ir%d" % i) for i in range(5)]
    assert [(r.index, r.count) for r in store.output_rows("fc-1", 0, 100)] == [(0, 5)]
    assert store.output_at("fc-1", 3).data == b"Ir3"
    assert store.output_at("fc-1", 5) is None
    info = store.call("fc-1")
    assert (info.done, info.failed, info.status) == (5, 0, "SUCCEEDED")
    assert store.queued_counts() == {}


def test_a_lease_cuts_a_chunk_at_its_size_and_the_rest_keeps_its_place(store):
    store.add_inputs("fc-1", 0, payloads(5), close=False)
    store.add_inputs("fc-1", 5, payloads(2), close=True)
    first = store.lease_inputs("fu-1", "ta-1", 2)
    assert [(x.index, x.count) for x in first] == [(0, 2)]
    assert store.queued_counts() == {"fu-1": 5}
    second = store.lease_inputs("fu-1", "ta-2", 4)
    # the first batch was cut into pieces of two, in its place in the queue: its rest comes first, then one input
    # cut from the next batch (a part of one input: unframed)
    assert [(x.index, x.count) for x in second] == [(2, 2), (4, 1), (5, 1)]
    assert [inputs_of([x])[0].payload for x in second] == [b"I2", b"I4", b"I0"]
    (third,) = store.lease_inputs("fu-1", "ta-2", 5)
    assert (third.index, third.count, third.payload) == (6, 1, b"I1")
    reports = {"ta-1": first, "ta-2": [*second, third]}
    for container, leased in reports.items():
        store.complete(container, [report_of(x) for x in leased])
    assert store.call("fc-1").done == 7
    assert [o.index for o in store.outputs("fc-1", 0, 10)] == list(range(7))


def report_of(leased):  # noqa: ANN001, ANN201
    """A container's report of a leased row: a chunk's as one, an input's as itself."""
    if leased.count > 1:
        return chunk_report(leased, [b"Iok"] * leased.count)
    return ReportedOutput(leased.call_id, leased.index, leased.lease, OutputStatus.SUCCESS, b"Iok")


def test_a_failure_in_a_chunk_is_retried_alone_and_the_others_succeed(store):
    store.add_inputs("fc-1", 0, payloads(3), close=True)
    (leased,) = store.lease_inputs("fu-1", "ta-1", 3)
    reports = [
        ReportedOutput("fc-1", 0, leased.lease, OutputStatus.SUCCESS, b"Iok"),
        ReportedOutput("fc-1", 1, leased.lease, OutputStatus.FAILURE, b"Ierr"),
        ReportedOutput("fc-1", 2, leased.lease, OutputStatus.SUCCESS, b"Iok"),
    ]
    assert store.complete("ta-1", reports) == (3, {"fc-1"})
    assert sorted(o.index for o in store.outputs("fc-1", 0, 10)) == [0, 2]
    store.clock_.now += 2.0  # its backoff
    (retry,) = store.lease_inputs("fu-1", "ta-2", 3)
    assert (retry.index, retry.count, retry.payload) == (1, 1, b"I1")
    assert retry.lease == leased.lease + 1


def test_a_chunk_report_after_part_of_it_was_reported_counts_only_the_rest(store):
    store.add_inputs("fc-1", 0, payloads(3), close=True)
    (leased,) = store.lease_inputs("fu-1", "ta-1", 3)
    store.complete("ta-1", [ReportedOutput("fc-1", 1, leased.lease, OutputStatus.SUCCESS, b"Ifirst")])
    assert store.complete("ta-1", [chunk_report(leased, [b"Ia", b"Ib", b"Ic"])]) == (2, {"fc-1"})
    assert [o.data for o in store.outputs("fc-1", 0, 10)] == [b"Ifirst", b"Ia", b"Ic"]  # the first result stays
    assert store.call("fc-1").done == 3


def test_giving_back_a_whole_chunk_or_part_of_one(store):
    store.add_inputs("fc-1", 0, payloads(4), close=True)
    (leased,) = store.lease_inputs("fu-1", "ta-1", 4)
    store.release("ta-1", [Release("fc-1", 0, leased.lease, 4)])
    assert store.queued_counts() == {"fu-1": 4}
    (again,) = store.lease_inputs("fu-1", "ta-1", 4)
    assert (again.index, again.count) == (0, 4)
    store.release("ta-1", [Release("fc-1", 2, again.lease), Release("fc-1", 3, again.lease)])
    assert store.queued_counts() == {"fu-1": 2}
    assert [x.index for x in inputs_of(store.lease_inputs("fu-1", "ta-2", 4))] == [2, 3]
    held = [ReportedOutput("fc-1", i, again.lease, OutputStatus.SUCCESS, b"Iok") for i in (0, 1)]
    assert store.complete("ta-1", held)[0] == 2


def test_a_crash_holding_a_chunk_isolates_each_of_its_inputs(store):
    store.add_inputs("fc-1", 0, payloads(3), close=True)
    store.lease_inputs("fu-1", "ta-1", 3)
    store.fail_container_inputs("ta-1", "killed")
    assert store.queued_counts() == {"fu-1": 3}
    assert [(x.index, x.count) for x in store.lease_inputs("fu-1", "ta-2", 3)] == [(0, 1)]  # one at a time now


def test_cancel_ends_each_input_of_a_chunk_and_names_the_running_ones(store):
    store.add_inputs("fc-1", 0, payloads(4), close=True)
    store.lease_inputs("fu-1", "ta-1", 2)
    assert store.cancel_call("fc-1", "cancelled") == [("ta-1", 0), ("ta-1", 1)]
    outputs = store.outputs("fc-1", 0, 10)
    assert sorted(o.index for o in outputs) == [0, 1, 2, 3]
    assert {o.status for o in outputs} == {"CANCELLED"}
    assert store.queued_counts() == {}


def test_a_resent_batch_adds_nothing(store):
    assert store.add_inputs("fc-1", 0, payloads(3), close=False) == 3
    (leased,) = store.lease_inputs("fu-1", "ta-1", 3)
    store.complete("ta-1", [chunk_report(leased, [b"Iok"] * 3)])
    assert store.add_inputs("fc-1", 0, payloads(3), close=False) == 0  # its answer was lost: the client sends again
    assert store.add_inputs("fc-1", 2, payloads(3), close=True) == 2  # overlapping: only the new ones
    assert store.queued_counts() == {"fu-1": 2}
    assert store.call("fc-1").num_inputs == 5


def test_pieces_of_a_cut_chunk_keep_its_place_before_later_calls(store):
    store.add_inputs("fc-1", 0, payloads(4), close=True)
    store.create_call("fc-2", "fu-1", "ap-1", "map", None, payloads(2), close=True)
    order = [(x.call_id, x.index) for _ in range(6) for x in store.lease_inputs("fu-1", "ta-1", 1)]
    assert order == [("fc-1", 0), ("fc-1", 1), ("fc-1", 2), ("fc-1", 3), ("fc-2", 0), ("fc-2", 1)]


def test_failing_the_queue_ends_each_queued_input_of_a_chunk_and_counts_them(store):
    store.add_inputs("fc-1", 0, payloads(4), close=True)
    (leased,) = store.lease_inputs("fu-1", "ta-1", 1)  # one is running: it is not queued
    assert store.fail_pending("fu-1", OutputStatus.INIT_FAILED, "cannot import") == {"fc-1"}
    outputs = store.outputs("fc-1", 0, 10)
    assert [(o.index, o.status, o.data) for o in outputs] == [(i, "INIT_FAILED", b"cannot import") for i in (1, 2, 3)]
    assert store.output_at("fc-1", 2).data == b"cannot import"
    assert (store.call("fc-1").done, store.call("fc-1").failed) == (3, 3)
    (group,) = store.insights.failure_groups("fc-1")
    assert (group.count, group.message) == (3, "cannot import")
    assert store.complete("ta-1", [report_of(leased)])[0] == 1
    assert store.call("fc-1").status == "FINISHED_WITH_FAILURES"  # three failed, the running one succeeded
