"""The dashboard's pure parts: latency histograms and their percentiles, the pickle preview that never unpickles,
and a call's progress arithmetic."""

from __future__ import annotations

import pickle
import random
import sys

import cloudpickle
import pytest
from hypothesis import given
from hypothesis import strategies as st

from shoal.server import metrics
from shoal.server.core.records import CallInfo
from shoal.server.dashboard.pages import progress_of
from shoal.server.dashboard.preview import preview


@given(st.lists(st.floats(min_value=0.0002, max_value=3600.0), min_size=1, max_size=200), st.sampled_from([50, 95]))
def test_a_percentile_from_the_histogram_is_within_ten_percent_of_the_true_one(durations, q):
    hist = metrics.counts(durations)
    ordered = sorted(durations)
    true = ordered[max(0, -(-len(ordered) * q // 100) - 1)]  # nearest-rank percentile
    estimate = metrics.percentile(hist, q)
    assert estimate is not None and abs(estimate - true) <= 0.1 * true


def test_an_empty_histogram_has_no_percentile_and_tiny_durations_share_the_floor():
    assert metrics.percentile({}, 50) is None
    assert metrics.bucket_of(0) == metrics.bucket_of(1e-6) == 0
    assert metrics.percentile(metrics.counts([0.0, 1e-5]), 95) == pytest.approx(1e-4)


def test_a_histogram_stays_small_whatever_the_number_of_durations():
    rng = random.Random(1)
    hist = metrics.counts(rng.expovariate(10) for _ in range(100_000))
    assert len(hist) < 120  # buckets touched, not durations kept


@pytest.mark.parametrize(
    "value", [None, True, 7, -3, 2**80, 2.5, "text", b"raw", [1, [2, 3]], (1,), (1, 2, 3, 4), {"a": [None]}, {1, 2},
              frozenset({3})],
)  # fmt: skip
def test_plain_data_is_previewed_as_its_repr(value):
    for protocol in (4, 5):
        assert preview(pickle.dumps(value, protocol=protocol)) == repr(value)
    assert preview(cloudpickle.dumps(value)) == repr(value)


class Custom:
    def __init__(self) -> None:
        self.secret = "inside"


def test_an_object_is_previewed_by_its_class_name_without_importing_or_calling_anything(monkeypatch):
    audited: list[str] = []
    data = pickle.dumps(Custom())
    monkeypatch.setitem(sys.modules, "tests.unit.test_dashboard_parts", None)  # importing it would now fail
    sys.addaudithook(lambda event, args: audited.append(event) if event == "pickle.find_class" else None)
    text = preview(data)
    assert text == "<tests.unit.test_dashboard_parts.Custom>"
    assert "pickle.find_class" not in audited
    assert preview(b"not a pickle") == "<pickle, 12 bytes>"
    assert preview(pickle.dumps("x" * 1000)).endswith("…") and len(preview(pickle.dumps("x" * 1000))) == 200


def call(**changes: object) -> CallInfo:
    fields = dict(id="fc-1", function_id="fu-1", function_name="f", app_id="ap-1", kind="map", created_at=100.0,
                  num_inputs=100, submitted=100, done=40, failed=10, cancelled=False, expired=False,
                  finished_at=None, parent_input=None)  # fmt: skip
    return CallInfo(**{**fields, **changes})  # type: ignore[arg-type]


def test_progress_counts_pending_and_an_eta_from_the_rate_so_far():
    p = progress_of(call(), running=5, now=110.0)
    assert (p.succeeded, p.failed, p.running, p.pending, p.total) == (30, 10, 5, 55, 100)
    assert p.rate == 4.0 and p.eta == 15.0  # 40 done in 10 s; 60 to go
    assert p.finished_percent == 40.0 and p.percent(p.running) == 5.0


def test_a_call_still_taking_inputs_counts_what_was_submitted_and_a_finished_one_has_no_eta():
    open_call = progress_of(call(num_inputs=None, submitted=70, done=0, failed=0), running=0, now=100.0)
    assert (open_call.total, open_call.closed, open_call.pending, open_call.rate, open_call.eta) == (
        70, False, 70, None, None,
    )  # fmt: skip
    # one still taking inputs that has results has a rate but no estimate: its total is not known yet
    busy = progress_of(call(num_inputs=None, submitted=70, done=20, failed=0), running=5, now=110.0)
    assert busy.rate == 2.0 and busy.eta is None
    done = progress_of(call(done=100, failed=0, finished_at=120.0), running=0, now=500.0)
    assert done.rate == 5.0 and done.eta is None and done.finished_percent == 100.0


def test_a_call_whose_caller_said_its_length_has_that_total_and_an_eta_while_its_inputs_come():
    told = progress_of(call(num_inputs=None, submitted=70, done=20, failed=0, expected=1000), running=5, now=110.0)
    assert (told.total, told.closed, told.told, told.pending) == (1000, False, True, 975)
    assert told.rate == 2.0 and told.eta == 490.0  # 980 to go (running included) at 2/s: not the 25 s of "so far"
    # submitted past what it said (a __len__ that lied): the count submitted is the floor
    over = progress_of(call(num_inputs=None, submitted=70, done=0, failed=0, expected=50), running=0, now=100.0)
    assert over.total == 70


def test_the_length_of_a_maps_inputs_is_known_for_sized_iterables_only():
    from shoal._map import known_length

    assert known_length([1, 2, 3], range(10)) == 3  # zip stops at the shortest
    assert known_length([1, 2], iter([1])) is None and known_length(x for x in "ab") is None
    assert known_length() is None
