"""The store contract, what the dashboard reads: counters, latency histograms, grouped failures, one input's
attempts and filtered logs. Run against every implementation in ``conftest.STORES``."""

from __future__ import annotations

import pytest

from shoal.protocol.messages import FailureInfo, LogEntry
from shoal.server.core.records import LogFilter, OutputStatus, ReportedOutput
from tests.contract.conftest import inputs_of


def failed(leased, message: str, took: float = 0.5) -> ReportedOutput:  # noqa: ANN001
    info = FailureInfo("ValueError", message, f"Traceback (most recent call last):\nValueError: {message}\n")
    return ReportedOutput("fc-1", leased.index, leased.lease, OutputStatus.FAILURE, b"Ipickled", took, info)


def test_counters_latencies_and_grouped_failures_of_a_call(store, make_store):
    store.clock.now += 1
    store.mark_started("ta-1")  # a cold start of 1 s
    store.add_inputs("fc-1", 0, [b"a", b"b", b"c", b"d"], close=True)
    store.clock.now += 0.25  # every input waited 0.25 s
    leased = inputs_of(store.lease_inputs("fu-1", "ta-1", 4))
    assert store.insights.running_inputs("fc-1", "fu-1") == 4
    ok = [ReportedOutput("fc-1", x.index, x.lease, OutputStatus.SUCCESS, b"Iok", 0.1) for x in leased[:2]]
    store.complete("ta-1", [*ok, failed(leased[2], "bad 2"), failed(leased[3], "bad 3")])
    # both failures have a retry left: they are attempts now, not outputs
    assert store.insights.failure_groups("fc-1") == []
    store.clock.now += 2
    again = inputs_of(store.lease_inputs("fu-1", "ta-1", 4))
    store.complete("ta-1", [failed(x, "bad") for x in again])

    (group,) = store.insights.failure_groups("fc-1")
    assert (group.error_type, group.message, group.count, group.indexes) == ("ValueError", "bad", 2, [2, 3])
    assert "ValueError: bad" in group.traceback
    (fn,) = store.insights.functions("ap-1")
    assert (fn.tag, fn.backlog, fn.running, fn.succeeded, fn.failed) == ("f", 0, 0, 2, 2)
    assert fn.latency["exec"]["p50"] == pytest.approx(0.5, rel=0.1)
    assert fn.latency["exec"]["p95"] == pytest.approx(0.5, rel=0.1)
    assert fn.latency["wait"]["p50"] == pytest.approx(0.25, rel=0.1)
    assert fn.latency["cold"]["p50"] == pytest.approx(1.0, rel=0.1)

    detail = store.insights.input_detail("fc-1", 3)
    assert detail is not None and detail.state == "FAILURE"
    assert [(a.lease, a.status, a.error_message, a.container_id) for a in detail.attempts] == [
        (1, "FAILURE", "bad 3", "ta-1"), (2, "FAILURE", "bad", "ta-1"),
    ]  # fmt: skip
    assert "ValueError: bad" in (detail.traceback or "")
    reopened = make_store()  # history survives a restart
    assert reopened.insights.functions("ap-1")[0].failed == 2
    assert reopened.insights.container("ta-1")["served"] == 6


def test_a_crash_and_a_cancel_are_grouped_with_the_error_the_caller_sees(store):
    store.add_inputs("fc-1", 0, [b"a", b"b"], close=True)
    inputs_of(store.lease_inputs("fu-1", "ta-1", 1))
    store.fail_container_inputs("ta-1", "the container exited with code 9")  # one retry left: an attempt
    assert store.insights.input_detail("fc-1", 0).attempts[0].error_type == "ExecutionError"
    store.cancel_call("fc-1", "the call was cancelled")
    types = {g.error_type: g.indexes for g in store.insights.failure_groups("fc-1")}
    assert types == {"InputCancellation": [0, 1]}


def test_failures_that_differ_only_in_numbers_or_ids_are_one_group(store):
    store.add_inputs("fc-1", 0, [b"a", b"b", b"c", b"d", b"e"], close=True)
    for _ in range(2):  # two attempts each (one retry): the second ends them
        leased = inputs_of(store.lease_inputs("fu-1", "ta-1", 5))
        reasons = [f"record {x.index * 1000 + 999} has a negative amount" for x in leased[:3]]
        store.complete("ta-1", [*(failed(x, r) for x, r in zip(leased, reasons)), failed(leased[3], "other"),
                                failed(leased[4], "call fc-1a2b3c4d5e failed")])  # fmt: skip
        store.clock.now += 2
    groups = store.insights.failure_groups("fc-1")
    assert [(g.message, g.count, g.indexes) for g in groups] == [
        ("record <n> has a negative amount", 3, [0, 1, 2]),
        ("other", 1, [3]),  # as many: the one that failed first comes first
        ("call fc-1a2b3c4d5e failed", 1, [4]),  # one message: shown as it is
    ]
    assert "record 999 has a negative amount" in groups[0].traceback  # the first input's
    assert store.insights.failed_statuses("fc-1") == {"FAILURE": 5}


def test_logs_filter_by_call_input_container_function_and_text(store):
    store.append_logs("ap-1", "ta-1", [LogEntry("fc-1", 0, "stdout", "hello from 0\n", 1.0)])
    store.append_logs("ap-1", "ta-2", [LogEntry("fc-1", 1, "stderr", "Hello from 1\n", 2.0)])
    store.append_logs("ap-1", "ta-2", [LogEntry(None, None, "system", "started\n", 3.0)])
    texts = lambda **kw: [x.text for x in store.insights.logs(LogFilter(**kw))]  # noqa: E731
    assert texts(app_id="ap-1") == ["hello from 0\n", "Hello from 1\n", "started\n"]
    assert texts(call_id="fc-1", input_idx=1) == ["Hello from 1\n"]
    assert texts(container_id="ta-2") == ["Hello from 1\n", "started\n"]
    assert texts(function_id="fu-1", text="HELLO") == ["hello from 0\n", "Hello from 1\n"]
    assert texts(app_id="ap-other") == []
    assert [x.text for x in store.insights.logs(LogFilter(app_id="ap-1"), limit=1)] == ["started\n"]


def test_child_calls_are_found_by_their_parent_inputs_prefix_and_attempts_expire_with_results(store):
    store.create_call("fc-2", "fu-1", "ap-1", "spawn", "in-1-3")
    store.create_call("fc-3", "fu-1", "ap-1", "spawn", "in-1-30")
    store.create_call("fc-4", "fu-1", "ap-1", "spawn", "in-10-1")  # another call's input: not a child of fc-1
    assert store.child_calls("in-1-") == ["fc-2", "fc-3"]
    store.add_inputs("fc-1", 0, [b"a"], close=True)
    (leased,) = inputs_of(store.lease_inputs("fu-1", "ta-1", 1))
    store.complete("ta-1", [failed(leased, "once")])  # a retry left: an attempt
    assert len(store.insights.input_detail("fc-1", 0).attempts) == 1
    store.cancel_call("fc-1", "cancelled")
    store.clock.now += 10
    assert store.expire_results(retention=5) >= 1
    assert store.insights.input_detail("fc-1", 0) is None  # output and attempts are gone
