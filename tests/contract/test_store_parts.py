"""The store contract beyond inputs: functions and specs, apps and deployments, logs, Dicts and Queues, generator
items, schedules, secrets and tokens. Run against every implementation in ``conftest.STORES``."""

from __future__ import annotations

import pytest

from shoal.protocol.messages import LogEntry
from shoal.protocol.specs import FunctionSpec
from shoal.schedule import Period
from shoal.server.core.records import CallSample, ContainerSample, ContainerState
from shoal.server.store import SQLStore, Store
from shoal.server.store.base import InsightsPart, SamplesPart
from shoal.server.store.insights import Insights
from shoal.server.store.samples import Samples
from tests.contract.conftest import inputs_of


@pytest.fixture
def store(make_store):  # noqa: ANN001, ANN201
    s = make_store()
    s.create_app("ap-1", "app")
    s.create_function("fu-1", "ap-1", "f", FunctionSpec(max_containers=3, min_containers=1), None)
    return s


def test_the_interface_names_every_public_method_of_the_implementation():
    # Given the Store protocol and the SQLite store, then neither has a public method the other lacks
    def public(cls: type) -> set[str]:
        return {n for n, v in vars(cls).items() if not n.startswith("_") and (callable(v) or isinstance(v, property))}

    parts = {"catalog", "insights", "kv", "items", "blob_refs", "schedules", "secrets", "tokens", "samples"}
    assert public(SQLStore) - parts == public(Store) - parts
    # and each part's interface names every public method of its implementation
    assert public(Insights) == public(InsightsPart)
    assert public(Samples) == public(SamplesPart)


def test_a_function_comes_back_with_its_typed_spec_and_autoscaler_changes_persist(store, make_store):
    found = store.function("fu-1")
    assert (found.app_id, found.tag, found.spec.max_containers, found.pickled) == ("ap-1", "f", 3, None)
    assert store.function_by_tag("ap-1", "f") == "fu-1"
    assert store.catalog.update_autoscaler("fu-1", {"max_containers": 5})["max_containers"] == 5
    with pytest.raises(ValueError, match="min_containers"):
        store.catalog.update_autoscaler("fu-1", {"max_containers": 0, "min_containers": 2})
    assert make_store().function("fu-1").spec.max_containers == 5
    assert store.function("fu-nope") is None


def test_a_function_with_min_containers_has_a_load_even_with_no_inputs(store):
    (load,) = store.function_loads()
    assert (load.function_id, load.min_containers, load.max_containers, load.ready) == ("fu-1", 1, 3, 0)


def test_apps_deploy_in_versions_and_are_listed_found_and_stopped(store):
    store.create_app("ap-2", "svc", "deployed")
    assert store.catalog.deployed_app("svc") == "ap-2"
    assert store.catalog.begin_deployment("ap-2") == 1
    store.catalog.finish_deployment("ap-2", 1, {"f": "fu-9"})
    assert store.catalog.history("ap-2")[0]["functions"] == {"f": "fu-9"}
    assert store.catalog.find_app("svc")["app_id"] == "ap-2"
    store.stop_app("ap-2", "stopped by the user")
    assert store.app_state("ap-2") == "STOPPED"
    assert [a["app_id"] for a in store.catalog.list_apps(include_stopped=False)] == ["ap-1"]


def test_an_ephemeral_app_whose_client_is_silent_is_reaped(store):
    store.clock_.now += 30
    assert store.catalog.apps_to_reap(20.0) == [("ap-1", "its client disconnected")]
    store.catalog.touch_client("ap-1")
    assert store.catalog.apps_to_reap(20.0) == []


def test_logs_are_kept_in_order_per_app_and_per_container(store):
    store.add_container("ta-1", "fu-1", "ap-1")
    store.append_logs("ap-1", "ta-1", [LogEntry(None, None, "stdout", f"line {i}\n", 1.0) for i in range(3)])
    rows = store.logs("ap-1", 0)
    assert [r[2] for r in rows] == ["line 0\n", "line 1\n", "line 2\n"]
    assert [r[2] for r in store.catalog.logs(None, "ta-1", rows[0][0], tail=1)] == ["line 2\n"]


def test_containers_move_through_their_states(store):
    store.add_container("ta-1", "fu-1", "ap-1")
    assert store.container_state("ta-1") == ("fu-1", ContainerState.STARTING)
    store.mark_started("ta-1")
    store.set_container_state("ta-1", ContainerState.STOPPED, "done")
    store.set_container_state("ta-1", ContainerState.RUNNING)  # a stopped container stays stopped
    assert store.container_state("ta-1") == ("fu-1", ContainerState.STOPPED)
    assert store.live_containers() == []


def test_a_drained_container_keeps_why_it_was_stopped_and_adds_how_it_ended(store):
    store.add_container("ta-1", "fu-1", "ap-1")
    store.mark_started("ta-1")
    store.set_container_state("ta-1", ContainerState.DRAINING, "stopped by the user")
    store.set_container_state("ta-1", ContainerState.STOPPED, "exit code 0")
    assert store.insights.container("ta-1")["stop_reason"] == "stopped by the user (exit code 0)"
    store.add_container("ta-2", "fu-1", "ap-1")  # a crash is its own reason
    store.set_container_state("ta-2", ContainerState.STOPPED, "killed by SIGKILL")
    assert store.insights.container("ta-2")["stop_reason"] == "killed by SIGKILL"


def test_dicts_and_queues_keep_opaque_bytes(store):
    d = store.kv.open("dict", "d", create_if_missing=True)
    assert store.kv.open("dict", "d", create_if_missing=False) == d
    store.kv.dict_op(d, "put", {"key": b"k", "value": b"v"})
    assert store.kv.dict_op(d, "get", {"key": b"k"}) == {"found": True, "value": b"v"}
    q = store.kv.open("queue", None, create_if_missing=True)
    store.kv.put(q, "", [b"a", b"b"])
    assert store.kv.take(q, "", 1) == [b"a"]
    assert store.kv.length(q, None) == 1
    with pytest.raises(KeyError):
        store.kv.open("dict", "missing", create_if_missing=False)


def test_generator_items_are_kept_only_under_the_current_lease(store):
    store.create_call("fc-1", "fu-1", "ap-1", "gen", None, [b"x"], close=True)
    store.add_container("ta-1", "fu-1", "ap-1")
    (leased,) = inputs_of(store.lease_inputs("fu-1", "ta-1", 1))
    assert store.items.add("ta-1", "fc-1", 0, leased.lease, 0, b"i0")
    assert not store.items.add("ta-1", "fc-1", 0, leased.lease + 1, 1, b"stale")
    assert store.items.after("fc-1", 0, -1) == [[0, b"i0"]]


def test_a_schedule_fires_once_per_tick_as_an_ordinary_call(store):
    store.schedules.register("fu-1", "ap-1", "f", Period(seconds=10).spec())
    assert store.schedules.due(store.clock_.now) == []
    store.clock_.now += 10
    (due,) = store.schedules.due(store.clock_.now)
    call_id = store.schedules.fire(due, store.clock_.now)
    assert call_id is not None and store.call(call_id).num_inputs == 1
    assert store.schedules.fire(due, store.clock_.now) == call_id  # the same tick cannot make a second call
    assert store.catalog.calls_of_function("ap-1", "f") == [call_id]


def test_secrets_are_sealed_rows_listed_without_values(store):
    secret_id = store.secrets.put("se-1", "db", b"sealed", ["USER", "PASSWORD"], overwrite=False)
    assert store.secrets.resolve("db") == secret_id
    assert store.secrets.sealed(secret_id) == b"sealed"
    assert store.secrets.list()[0]["keys"] == ["PASSWORD", "USER"]
    with pytest.raises(PermissionError):
        store.secrets.put("se-2", "db", b"other", [], overwrite=False)
    store.secrets.delete("db")
    with pytest.raises(KeyError):
        store.secrets.resolve("db")


def test_tokens_are_valid_until_revoked_and_only_under_their_issuer(store):
    store.tokens.add("ci", "hash-1", "issuer-a")
    assert store.tokens.valid("hash-1", "issuer-a") == "ci"
    assert store.tokens.valid("hash-1", "issuer-b") is None
    store.tokens.revoke("ci")
    assert store.tokens.valid("hash-1", "issuer-a") is None
    assert [t["name"] for t in store.tokens.list()] == ["ci"]


def test_containers_of_a_launch_are_added_and_log_their_start_in_one_call_each(store):
    store.add_containers(["ta-7", "ta-8", "ta-9"], "fu-1", "ap-1")
    starting = {c.id for c in store.live_containers() if c.state == ContainerState.STARTING}
    assert {"ta-7", "ta-8", "ta-9"} <= starting
    lines = [(cid, LogEntry(None, None, "system", f"Container {cid} started\n", 1000.0)) for cid in ("ta-7", "ta-8")]
    store.append_container_logs("ap-1", lines)
    assert [(r[2], r[3]) for r in store.logs("ap-1", 0)] == [("Container ta-7 started\n", "ta-7"),
                                                            ("Container ta-8 started\n", "ta-8")]  # fmt: skip


def test_resource_samples_come_back_per_container_summed_per_function_and_per_call_and_expire(store):
    # Given two containers of a function sampled at two moments, and a call's progress
    samples = [ContainerSample("ct-1", "fu-1", 10.0, 50.0, 100.0), ContainerSample("ct-2", "fu-1", 10.0, 30.0, 50.0),
               ContainerSample("ct-1", "fu-1", 15.0, 90.0, 120.0, 80.0, 1000.0)]  # fmt: skip
    store.samples.add(samples, [CallSample("fc-1", 10.0, 3, 2), CallSample("fc-1", 15.0, 9, 2)])
    # Then a container's come back in time order, a function's summed per moment, a call's in order
    assert store.samples.of_container("ct-1") == [samples[0], samples[2]]
    summed = [(s.at, s.cpu, s.memory_mib, s.gpu) for s in store.samples.of_function("fu-1")]
    assert summed == [(10.0, 80.0, 150.0, None), (15.0, 90.0, 120.0, 80.0)]
    assert [(s.at, s.done) for s in store.samples.of_call("fc-1")] == [(10.0, 3), (15.0, 9)]
    # and an unfinished call is one to sample
    store.create_call("fc-2", "fu-1", "ap-1", "map", None)
    assert ("fc-2", "fu-1", 0) in store.samples.unfinished_calls()
    # and samples older than the retention go
    store.samples.expire(12.0)
    assert [s.at for s in store.samples.of_container("ct-1")] == [15.0]
    assert [s.at for s in store.samples.of_call("fc-1")] == [15.0]
