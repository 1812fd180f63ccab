"""Generator functions (issue 12, part 3): items stream to the caller while the generator runs."""

from __future__ import annotations

import asyncio
import os
import time

import pytest

from shoal.exception import InvalidError
from tests.apps import generators
from tests.apps.generators import StreamError
from tests.conftest import shared_dir


@pytest.fixture(scope="module", autouse=True)
def running(server):  # noqa: ANN001, ANN201
    with generators.app.run(show_logs=False):
        yield


def test_remote_gen_yields_every_item_in_order():
    assert list(generators.count.remote_gen(5)) == [0, 1, 2, 3, 4]


def test_async_generators_stream_through_remote_gen_aio():
    async def collect() -> list[int]:
        return [x async for x in generators.acount.remote_gen.aio(4)]

    assert asyncio.run(collect()) == [0, 1, 2, 3]


def test_the_first_item_arrives_while_the_generator_still_runs():
    directory = shared_dir()
    items = generators.first_then_wait.remote_gen(directory)
    assert next(items) == "first"
    open(os.path.join(directory, "go"), "w").close()  # only now may the generator go on
    assert list(items) == ["second"]


def test_an_exception_mid_stream_comes_after_the_items_before_it():
    got = []
    with pytest.raises(StreamError, match="failed after 3 items"):
        for item in generators.fail_after.remote_gen(3):
            got.append(item)
    assert got == [0, 1, 2]


def test_leaving_the_loop_stops_the_generator_in_its_container():
    directory = shared_dir()
    for i in generators.endless.remote_gen(directory):
        if i == 3:
            break
    deadline = time.monotonic() + 15
    while not os.path.exists(os.path.join(directory, "stopped")):
        assert time.monotonic() < deadline, "the generator was not stopped"
        time.sleep(0.05)


def test_generators_are_called_with_remote_gen_only_as_in_modal():
    with pytest.raises(InvalidError, match="remote_gen"):
        generators.count.remote(3)
    with pytest.raises(InvalidError, match="remote_gen"):
        list(generators.count.map([1, 2]))
    with pytest.raises(InvalidError, match=r"\.remote\("):
        list(generators.nested.remote_gen(2))


def test_remote_gen_works_from_inside_another_function():
    assert generators.nested.remote(4) == [0, 1, 2, 3]


def test_generator_methods_of_classes_stream_too():
    assert list(generators.Tokenizer(prefix="t").tokens.remote_gen("a b c")) == ["t:a", "t:b", "t:c"]
    with pytest.raises(InvalidError, match="remote_gen"):
        generators.Tokenizer().tokens.remote("a b")
