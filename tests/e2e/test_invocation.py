"""End-to-end: every way of invoking a function, through the real server and real containers."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import itertools
import sqlite3
import time
from typing import Any

import pytest

import shoal
from shoal._sync import run_sync
from shoal.calls import Spawned
from shoal.client import Client, client_for
from shoal.exception import ExecutionError, NotFoundError, SerializationError
from shoal.protocol import routes
from tests.apps import basic
from tests.apps.basic import CustomError, Unpicklable
from tests.conftest import run_script


@pytest.fixture(scope="module", autouse=True)
def running(server):  # noqa: ANN001, ANN201
    with basic.app.run(show_logs=False):
        yield


def test_remote_returns_the_result():
    assert basic.square.remote(7) == 49


def test_local_runs_in_this_process():
    assert basic.square.local(3) == 9


def test_map_returns_results_in_order():
    assert list(basic.square.map([1, 2, 3, 4])) == [1, 4, 9, 16]


def test_map_zips_several_iterables_and_passes_kwargs():
    assert list(basic.add.map([1, 2, 3], [10, 20, 30], kwargs={"c": 100})) == [111, 122, 133]


def test_map_unordered_returns_every_result():
    # Given inputs whose durations are reversed, When mapped unordered, Then all results come back.
    delays = [0.3, 0.0, 0.0, 0.0]
    out = list(basic.slow_identity.map(range(4), delays, order_outputs=False))
    assert sorted(out) == [0, 1, 2, 3]


def test_map_return_exceptions_puts_the_original_exceptions_in_place():
    out = list(basic.fail_on_odd.map(range(6), return_exceptions=True))
    assert out[0::2] == [0, 2, 4]
    for value, expected in zip(out[1::2], [1, 3, 5]):
        assert type(value) is CustomError
        assert str(value) == f"odd input {expected}"


def test_map_raises_the_first_user_exception_with_remote_traceback():
    with pytest.raises(CustomError) as info:
        list(basic.fail_on_odd.map([0, 1, 2]))
    assert "Remote traceback" in str(info.value.__cause__)
    assert "fail_on_odd" in str(info.value.__cause__)


def test_remote_raises_the_user_exception_type():
    with pytest.raises(CustomError, match="odd input 3"):
        basic.fail_on_odd.remote(3)


def test_starmap_unpacks_argument_tuples():
    assert list(basic.add.starmap([(1, 2), (3, 4)], kwargs={"c": 1})) == [4, 8]


def test_for_each_runs_for_side_effects_and_raises_failures():
    assert basic.square.for_each(range(5)) is None
    with pytest.raises(CustomError):
        basic.fail_on_odd.for_each(range(3))
    assert basic.fail_on_odd.for_each(range(3), ignore_exceptions=True) is None


def test_spawn_map_results_can_be_fetched_later():
    call = basic.square.spawn_map(range(10))
    assert call.object_id.startswith("fc-")
    assert call.get(index=3, timeout=30) == 9
    assert list(call.iter()) == [i * i for i in range(10)]
    assert list(call.iter(start=2, end=5)) == [4, 9, 16]
    assert call.num_inputs() == 10


def test_map_aio_is_an_async_iterator():
    async def main() -> list[int]:
        return [x async for x in basic.square.map.aio(range(5))]

    assert asyncio.run(main()) == [0, 1, 4, 9, 16]


def test_remote_aio_and_spawn_aio():
    async def main() -> tuple[int, int]:
        a = await basic.square.remote.aio(5)
        call = await basic.square.spawn.aio(6)
        return a, await call.get.aio(timeout=30)

    assert asyncio.run(main()) == (25, 36)


def test_async_functions_run_in_containers():
    assert list(basic.async_double.map([1, 2, 3])) == [2, 4, 6]


def test_nested_map_inside_a_remote_function():
    assert basic.nested_sum.remote(20) == sum(i * i for i in range(20))


def test_context_inside_container():
    info = basic.whoami.remote(1)
    assert info["is_local"] is False
    assert info["call_id"].startswith("fc-")
    assert info["input_id"].startswith("in-")
    assert shoal.is_local() is True
    assert shoal.current_input_id() is None


def test_spawn_then_from_id_get_in_another_process(server):
    call = basic.slow_identity.spawn(41, 0.2)
    script = f"import shoal, sys\nprint(shoal.FunctionCall.from_id({call.object_id!r}).get(timeout=30))\n"
    result = run_script(["-c", script])
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "41"


def test_spawn_map_handle_works_from_another_process(server):
    call = basic.square.spawn_map(range(5))
    script = (
        "import shoal\n"
        f"c = shoal.FunctionCall.from_id({call.object_id!r})\n"
        "print(c.num_inputs(), list(c.iter()), c.get(index=4, timeout=30))\n"
    )
    result = run_script(["-c", script])
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "5 [0, 1, 4, 9, 16] 16"


def test_function_call_gather():
    calls = [basic.square.spawn(i) for i in range(4)]
    assert list(shoal.FunctionCall.gather(*calls)) == [0, 1, 4, 9]


def test_gather_waits_for_many_calls_in_one_long_poll_and_raises_the_first_failure_in_order():
    # Given 200 spawned calls, some slower than others (gather asks for all of them in one request at a time)
    calls = [basic.square.spawn(i) for i in range(200)] + [basic.slow_identity.spawn(7, 0.5)]
    assert list(shoal.FunctionCall.gather(*calls)) == [i * i for i in range(200)] + [7]
    assert asyncio.run(shoal.FunctionCall.gather.aio(*calls[:3])) == [0, 1, 4]
    # and a failed call raises its own exception, with the results before it fetched
    failing = [basic.square.spawn(2), basic.fail_on_odd.spawn(3), basic.square.spawn(3)]
    with pytest.raises(CustomError, match="odd input 3"):
        shoal.FunctionCall.gather(*failing)
    assert shoal.FunctionCall.gather() == []


def test_a_get_fetches_the_finished_results_of_its_sibling_spawns_in_the_same_request(monkeypatch):
    # Given 300 spawned calls and a failing one, all finished
    calls = [basic.square.spawn(i) for i in range(300)]
    failing = basic.fail_on_odd.spawn(3)
    assert list(shoal.FunctionCall.gather(*calls)) == [i * i for i in range(300)]
    with pytest.raises(CustomError):
        shoal.FunctionCall.gather(failing)
    sent: list[str] = []
    request = Client.request

    async def counted(self: Client, method: str, path: str, body: Any = None, *, packed: bool = False) -> Any:
        if not path.endswith("/heartbeat"):  # the app's own beat (app.run's background task) may land meanwhile
            sent.append(path)
        return await request(self, method, path, body, packed=packed)

    monkeypatch.setattr(Client, "request", counted)
    monkeypatch.setattr(Spawned.on(calls[0]._url or ""), "quiet_until", 0.0)  # whatever earlier tests' gets found
    # When each is fetched with get() in turn, then the first get() fetched every result: one request in all
    assert [c.get() for c in calls] == [i * i for i in range(300)]
    with pytest.raises(CustomError, match="odd input 3"):
        failing.get()
    assert sent == [routes.CALLS_FIRST_OUTPUTS]
    # and a result is kept only until its get(): asking again asks the server
    assert calls[7].get() == 49
    assert len(sent) == 2
    # and the server bounds the bytes of the results after the first
    ids = [c.object_id for c in calls[:5]]
    resp = run_sync(client_for(calls[0]._url or "").request(
        "POST", routes.CALLS_FIRST_OUTPUTS, {"call_ids": ids, "max_bytes": 1}, packed=True
    ))  # fmt: skip
    assert list(resp["outputs"]) == ids[:1]


def test_get_with_zero_timeout_polls_once():
    call = basic.slow_identity.spawn(1, 2.0)
    started = time.monotonic()
    with pytest.raises(TimeoutError):
        call.get(timeout=0)
    assert time.monotonic() - started < 1.0
    assert call.get(timeout=30) == 1


def test_unknown_call_id_raises_not_found():
    with pytest.raises(NotFoundError):
        shoal.FunctionCall.from_id("fc-00000000000000000000").get(timeout=0)
    with pytest.raises(NotFoundError):
        shoal.FunctionCall.from_id("not-an-id")


def test_cancel_ends_pending_inputs_with_input_cancellation():
    call = basic.slow_identity.spawn_map(range(40), kwargs={"delay": 0.5})
    call.cancel()
    with pytest.raises(shoal.exception.InputCancellation):
        call.get(index=39, timeout=10)


def test_unpicklable_argument_fails_on_the_client_naming_it():
    with pytest.raises(SerializationError, match="positional argument 0"):
        basic.square.remote(Unpicklable())
    with pytest.raises(SerializationError, match="keyword argument 'c'"):
        basic.add.remote(1, 2, c=Unpicklable())


def test_unpicklable_return_value_is_a_clear_error():
    with pytest.raises(SerializationError, match="cannot be pickled"):
        basic.returns_unpicklable.remote(1)


def test_large_payloads_go_through_the_blob_store_and_are_removed_if_never_named(server):  # noqa: ANN001
    data = b"x" * (3 * 1024 * 1024)
    assert basic.echo_bytes.remote(data) == len(data)
    # An upload as a payload is removed unless an input or result names it within the upload grace (a client
    # that dies between uploading and submitting); the server marks it so, and a reference forgets the mark.
    blob = b"never named " * 10_000
    blob_id = hashlib.sha256(blob).hexdigest()
    run_sync(client_for(server.url).put_blob(blob_id, blob, payload=True))
    with contextlib.closing(sqlite3.connect(f"file:{server.state_dir / 'state.db'}?mode=ro", uri=True)) as db:
        (since,) = db.execute("SELECT since FROM blob_orphans WHERE blob_id=?", (blob_id,)).fetchone()
    assert since > time.time() + 600  # an orphan from well after now (the grace, 1 hour by default)


def test_map_over_an_infinite_generator_stops_at_the_shortest():
    out = list(basic.add.map(range(1000), itertools.count()))
    assert out == [2 * i for i in range(1000)]


def test_an_exception_from_the_input_iterator_surfaces_promptly():
    def items():
        yield 1
        yield 2
        raise ValueError("bad input stream")

    started = time.monotonic()
    with pytest.raises(ValueError, match="bad input stream"):
        list(basic.square.map(items()))
    assert time.monotonic() - started < 10


def test_generator_functions_give_a_clear_error():
    app = shoal.App("gen")

    @app.function(serialized=True)
    def gen(n: int):  # noqa: ANN202
        yield from range(n)

    with pytest.raises(shoal.exception.InvalidError, match="generator"):
        gen.remote(3)


def test_calling_outside_app_run_is_a_clear_error():
    app = shoal.App("not-running")

    @app.function(serialized=True)
    def f(x: int) -> int:
        return x

    with pytest.raises(ExecutionError, match="app.run"):
        f.remote(1)


def test_serialized_functions_travel_as_pickles():
    app = shoal.App("serialized")
    offset = 5

    @app.function(serialized=True)
    def plus_offset(x: int) -> int:
        return x + offset

    with app.run(show_logs=False):
        assert list(plus_offset.map([1, 2])) == [6, 7]


def test_current_stats_and_a_live_autoscaler_update():
    # Given a function with no containers asked to keep one warm
    basic.add.update_autoscaler(min_containers=1)
    deadline = time.monotonic() + 20
    while basic.add.get_current_stats().num_total_runners < 1:  # the scheduler starts one within a tick or two
        assert time.monotonic() < deadline, basic.add.get_current_stats()
        time.sleep(0.1)
    stats = basic.add.get_current_stats()
    assert stats.backlog == 0 and stats.running_inputs == 0
    basic.add.update_autoscaler(min_containers=0, scaledown_window=1)
    with pytest.raises(shoal.exception.InvalidError, match="min_containers"):
        basic.add.update_autoscaler(min_containers=5, max_containers=1)
