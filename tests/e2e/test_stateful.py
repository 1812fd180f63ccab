"""Classes with lifecycle hooks and parameters, @batched and @concurrent, input cancellation: real containers."""

from __future__ import annotations

import os
import time
from pathlib import Path

import httpx
import pytest

import shoal
from shoal.exception import ExecutionError, InputCancellation, InvalidError
from tests.apps import stateful
from tests.conftest import shared_dir, wait_until_gone


@pytest.fixture(scope="module", autouse=True)
def running(server):  # noqa: ANN001, ANN201
    with stateful.app.run(show_logs=False):
        yield


def wait_for_file(path: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():  # the container writes it; bounded
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)


def test_enter_runs_once_per_container_across_many_inputs():
    marker = shared_dir()
    results = list(stateful.Counter(marker_dir=marker).hit.map(range(1000)))
    assert [r["x"] for r in results] == list(range(1000))
    pids = {r["pid"] for r in results}
    assert 1 <= len(pids) <= 2
    enter_pids = [n.removeprefix("enter-").rsplit("-", 1)[0] for n in os.listdir(marker) if n.startswith("enter-")]
    assert len(enter_pids) == len(set(enter_pids)) <= 2  # once per container (one may get no input), not per input
    assert pids <= set(enter_pids)
    assert all(r["order"] == ["first", "second"] for r in results)  # several enter hooks, in definition order


def test_parameter_sets_get_separate_pools():
    a = stateful.Counter(label="a").hit.remote(1)
    b = stateful.Counter(label="b").hit.remote(2)
    assert (a["label"], b["label"]) == ("a", "b")
    assert a["pid"] != b["pid"]
    with pytest.raises(InvalidError, match="unknown parameters"):
        stateful.Counter(size="x")
    with pytest.raises(InvalidError, match="str, int, bool or bytes"):
        stateful.Counter(label=1.5)


def test_async_methods_and_aio():
    assert stateful.Counter().hit_async.remote(1) == 2

    async def main() -> list[int]:
        return [x async for x in stateful.Counter().hit_async.map.aio([1, 2, 3])]

    import asyncio

    assert asyncio.run(main()) == [2, 3, 4]


def test_exit_runs_on_scale_down():
    marker = shared_dir()
    container = stateful.Counter(marker_dir=marker, label="scaledown").hit.remote(0)["pid"]
    assert wait_until_gone({container}) == []  # scaledown_window=1: the idle container is stopped
    assert (Path(marker) / f"exit-{container}").exists()


def test_exit_runs_on_app_stop(server):
    marker = shared_dir()
    app = shoal.App("exit-on-stop")
    cls = app.cls()(stateful.Counter.user_cls)  # the same class, in an app this test stops
    with app.run(show_logs=False):
        container = cls(marker_dir=marker).hit.remote(0)["pid"]
    assert wait_until_gone({container}) == []
    assert (Path(marker) / f"exit-{container}").exists()


def test_local_runs_enter_hooks_in_this_process():
    result = stateful.Counter(label="local").hit.local(5)
    assert result == {"pid": f"local-{os.getpid()}", "order": ["first", "second"], "label": "local", "x": 5}


def test_with_options_gets_its_own_pool(server):
    plain = stateful.Counter(label="v").hit.remote(0)["pid"]
    variant = stateful.Counter.with_options(max_containers=1)(label="v").hit.remote(0)["pid"]
    assert plain != variant
    # and people see the variant under its class's name, not the pool's internal tag (Counter~<hash>)
    shown = {c["function"] for c in httpx.get(f"{server.url}/containers", headers=server.auth).json()["containers"]}
    assert any(f.startswith("Counter (with_options ") for f in shown) and not any("~" in f for f in shown), shown


def test_a_failing_enter_hook_fails_the_inputs_with_its_traceback():
    started = time.monotonic()
    with pytest.raises(ExecutionError, match="model weights not found"):
        stateful.BrokenEnter().run.remote(1)
    assert time.monotonic() - started < 30  # bounded retries, no crash loop


def test_batched_function_receives_batches_and_callers_get_their_own_result():
    results = list(stateful.batch_double.map(range(100)))
    assert [r[0] for r in results] == [2 * x for x in range(100)]
    sizes = [r[1] for r in results]
    assert max(sizes) <= 8
    assert max(sizes) > 1  # inputs were actually grouped


def test_batched_function_returning_the_wrong_length_fails_every_input():
    out = list(stateful.batch_wrong_length.map(range(4), return_exceptions=True))
    assert all(isinstance(e, InvalidError) and "one result per input" in str(e) for e in out)


def test_batched_validation():
    with pytest.raises(InvalidError):
        shoal.batched(max_batch_size=0, wait_ms=10)
    with pytest.raises(InvalidError):
        shoal.batched(max_batch_size=1001, wait_ms=10)
    with pytest.raises(InvalidError):
        shoal.batched(max_batch_size=4, wait_ms=600_000)


def test_concurrent_async_function_runs_inputs_together_on_one_container():
    assert stateful.nap.remote(0)  # warm: the container is up
    started = time.monotonic()
    pids = list(stateful.nap.map(range(100)))
    elapsed = time.monotonic() - started
    assert len(set(pids)) == 1
    assert elapsed < 6.0, f"100 inputs x 0.5 s at 20 at a time took {elapsed:.1f}s (ideal 2.5 s)"


def test_cancelling_one_async_input_leaves_the_others_running():
    marker = Path(shared_dir())
    victim = stateful.cancellable.spawn(str(marker), "victim", 30.0)
    other = stateful.cancellable.spawn(str(marker), "other", 1.5)
    wait_for_file(marker / "start-victim")
    wait_for_file(marker / "start-other")
    victim.cancel()
    assert other.get(timeout=30) == "other"
    with pytest.raises(InputCancellation):
        victim.get(timeout=10)
    wait_for_file(marker / "cancelled-victim")  # the coroutine saw CancelledError
    assert not (marker / "cancelled-other").exists()


def test_cancelling_a_sync_input_on_a_worker_thread_cancels_that_input_alone():
    # Given a @concurrent sync function running a long input and a stream of short ones beside it
    marker = Path(shared_dir())
    victim = stateful.threaded_sleeper.spawn(str(marker), "victim", 30.0)
    wait_for_file(marker / "start-victim")
    tags = [f"short-{i}" for i in range(200)]
    others = stateful.threaded_sleeper.spawn_map([""] * len(tags), tags, [0.002] * len(tags))
    # When the long one is cancelled while the short ones come and go on the other threads
    victim.cancel()
    # Then it ends with InputCancellation raised in its own code, and every other input succeeds
    wait_for_file(marker / "cancelled-victim")
    with pytest.raises(InputCancellation):
        victim.get(timeout=30)
    assert list(others.iter()) == tags


def test_cancelling_a_running_sync_input_raises_input_cancellation_in_it():
    marker = Path(shared_dir())
    victim = stateful.sequential_sleeper.spawn(str(marker), "victim", 30.0)
    wait_for_file(marker / "start-victim")
    queued = stateful.sequential_sleeper.spawn(str(marker), "queued", 0.0)
    victim.cancel()
    wait_for_file(marker / "cancelled-victim")
    assert queued.get(timeout=30) == "queued"  # the same container goes on with the next input


def test_a_function_with_options_runs_the_same_code_in_a_pool_of_its_own():
    # Given a function of one container, When a variant asks for other options (Modal 1.4.3)
    plain = stateful.whoami.remote()["pid"]
    variant = stateful.whoami.with_options(memory=(256, 512), timeout=30)
    first = variant.remote()
    # Then it runs in containers of its own, with its options, and a with_concurrency variant overlaps inputs
    assert first["pid"] != plain and first["memory"] == "512"
    assert variant.remote()["pid"] == first["pid"]  # the variant's pool is reused
    runs = list(stateful.whoami.with_concurrency(max_inputs=4).map([0.5] * 4))
    assert max(r["start"] for r in runs) < min(r["end"] for r in runs), runs  # all four at once, one container
    with pytest.raises(InvalidError, match="unsupported options"):
        stateful.whoami.with_options(serialized=True)
