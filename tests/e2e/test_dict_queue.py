"""Dict and Queue: durable, server-backed, shared by the client and containers."""

from __future__ import annotations

import queue as stdlib_queue
import time

import pytest

import shoal
from shoal.exception import NotFoundError, RequestSizeError
from tests.apps import shared_state


def test_dict_methods_follow_modal(server):
    with shoal.Dict.ephemeral() as d:
        assert d.get("missing", 7) == 7
        assert d.put("a", 1) is True
        assert d.put("a", 2, skip_if_exists=True) is False
        assert d["a"] == 1
        d.update({"b": [1, 2]}, c={"x": 1})
        d[("tuple", 3)] = b"bytes"
        assert len(d) == 4 and d.len() == 4
        assert "b" in d and d.contains(("tuple", 3)) and "zzz" not in d
        assert sorted(map(str, d.keys())) == sorted(map(str, ["a", "b", "c", ("tuple", 3)]))
        assert d.pop("a") == 1
        with pytest.raises(KeyError):
            d.pop("a")
        with pytest.raises(KeyError):
            d["a"]
        del d["b"]
        assert dict(d.items()) == {"c": {"x": 1}, ("tuple", 3): b"bytes"}
        assert list(d.values()) == [{"x": 1}, b"bytes"]
        d.clear()
        assert len(d) == 0


def test_named_dicts_persist_and_missing_ones_are_clear_errors(server):
    with pytest.raises(NotFoundError, match="create_if_missing"):
        shoal.Dict.from_name("no-such-dict").get("x")
    shoal.Dict.from_name("persisted", create_if_missing=True)["k"] = "v"
    assert shoal.Dict.from_name("persisted").get("k") == "v"  # a new handle sees it
    shoal.Dict.delete("persisted")
    with pytest.raises(NotFoundError):
        shoal.Dict.from_name("persisted").get("k")


def test_dict_aio(server):
    import asyncio

    async def main() -> tuple[object, int]:
        d = shoal.Dict.from_name("aio-dict", create_if_missing=True)
        await d.put.aio("x", 41)
        return await d.get.aio("x"), await d.len.aio()

    assert asyncio.run(main()) == (41, 1)


def test_a_dict_passed_to_containers_is_shared(server):
    with shoal.Dict.ephemeral() as d, shared_state.app.run(show_logs=False):
        assert shared_state.remember.remote(d, "k", 1) is None
        assert shared_state.remember.remote(d, "k", 2) == 1
        assert d["k"] == 2


def test_queue_methods_follow_modal(server):
    with shoal.Queue.ephemeral() as q:
        assert q.get(block=False) is None
        with pytest.raises(stdlib_queue.Empty):
            q.get(timeout=0.2)
        q.put(1)
        q.put_many([2, 3, 4])
        q.put("p", partition="side")
        assert q.len() == 4 and q.len(partition="side") == 1 and q.len(total=True) == 5
        assert list(q.iterate()) == [1, 2, 3, 4]  # reading leaves them in place
        assert q.get() == 1
        assert q.get_many(10) == [2, 3, 4]
        assert q.get(partition="side") == "p"
        q.put_many(list(range(10)))
        q.clear()
        assert q.len(total=True) == 0


def test_queue_limits_are_clear_errors(server):
    with shoal.Queue.ephemeral() as q:
        with pytest.raises(RequestSizeError, match="1048576"):
            q.put(b"x" * (2 * 1024 * 1024))
        q.put_many(list(range(5000)))
        with pytest.raises(stdlib_queue.Full):
            q.put(1, block=False)
        with pytest.raises(stdlib_queue.Full):
            q.put(1, timeout=0.2)
        with pytest.raises(shoal.exception.InvalidError, match="partition key"):
            q.put(1, partition="p" * 65)


def test_producer_consumer_across_4_containers_loses_and_duplicates_nothing(server):
    total = 10_000
    with shoal.Queue.ephemeral() as jobs, shoal.Dict.ephemeral() as results, shoal.Dict.ephemeral() as ready:
        with shared_state.app.run(show_logs=False):
            consumers = [shared_state.consume.spawn(jobs, results, w, ready) for w in range(4)]
            deadline = time.monotonic() + 60  # two consumers run at once (else the first may take all before
            while ready.len() < 2 and time.monotonic() < deadline:  # the second container is up)
                time.sleep(0.02)
            for start in range(0, total, 1000):  # the client produces while the containers consume
                jobs.put_many(list(range(start, start + 1000)))  # blocks while the queue holds 5,000
            jobs.put_many(["STOP"] * 4)
            counts = [c.get(timeout=120) for c in consumers]
        received = dict(results.items())
    assert sum(counts) == total  # no item was taken twice
    assert sorted(received) == list(range(total))  # and none was lost
    assert len(set(received.values())) >= 2  # the work was actually shared


def test_a_named_dict_sent_before_its_first_use_is_created_where_it_arrives(server):
    # Given a Dict.from_name(create_if_missing=True) that this client never used
    import uuid

    d = shoal.Dict.from_name(f"sent-first-{uuid.uuid4().hex[:8]}", create_if_missing=True)
    with shared_state.app.run(show_logs=False):
        # When it is passed to a function, Then the container creates and uses it; the client sees the same one
        assert shared_state.remember.remote(d, "k", 1) is None
        assert shared_state.remember.remote(d, "k", 2) == 1
    assert d["k"] == 2
