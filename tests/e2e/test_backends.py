"""The end-to-end core on every backend, same assertions: the local one (processes on this machine) and the Ray
one (actors on a three-node Ray cluster on 127.0.0.1). The ``backend`` fixture points the SDK at its server."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

import shoal
from tests.apps import backends as b
from tests.conftest import shared_dir


def test_map_starmap_for_each_and_exceptions(backend):
    with b.app.run(show_logs=False):
        assert list(b.square.map(range(200))) == [x * x for x in range(200)]
        assert list(b.square.starmap([(3,), (4,)])) == [9, 16]
        b.square.for_each(range(10))
        got = list(b.fail_on_odd.map(range(6), return_exceptions=True))
        assert got[0::2] == [0, 2, 4] and all(isinstance(e, ValueError) for e in got[1::2])
        assert "odd input 1" in str(got[1])


def test_spawn_from_id_and_retries(backend):
    markers = shared_dir()
    with b.app.run(show_logs=False):
        call = b.flaky.spawn(markers, 7)
        again = shoal.FunctionCall.from_id(call.object_id)
        assert again.get(timeout=60) == 7
        assert sorted(p.name for p in Path(markers).iterdir()) == ["7-0", "7-1", "7-2"]  # three attempts


def test_an_input_past_its_timeout_fails_with_a_timeout_error(backend):
    with b.app.run(show_logs=False):
        started = time.monotonic()
        with pytest.raises(shoal.exception.FunctionTimeoutError):
            b.oversleep.remote(30)
        assert time.monotonic() - started < 20


def test_a_class_enters_once_per_container_and_batches_and_concurrency_hold(backend):
    with b.app.run(show_logs=False):
        greeter = b.Greeter()
        first, second = greeter.greet.remote("a"), greeter.greet.remote("b")
        assert (first[0], second[0]) == ("hello a", "hello b") and first[1] == second[1]
        sizes = list(b.batch_size.map(range(16)))
        assert max(sizes) > 1 and len(sizes) == 16  # inputs arrived together were run as batches
        starts = list(b.overlap.map([0.5] * 5))
        assert max(starts) - min(starts) < 0.4  # five at once in one container, not one after another


def test_dict_queue_secret_image_and_volume(backend, sandbox):
    with b.app.run(show_logs=False):
        with shoal.Dict.ephemeral() as d, shoal.Queue.ephemeral() as q:
            got = b.shared.remote(d, q, 4)
            assert got == {"secret": "s3cret", "image": "set by the image", "dict": 40}
            assert d["key-4"] == 40 and q.get(timeout=10) == 4
    with b.mounting_app.run(show_logs=False):
        name = f"hello-{time.time_ns()}.txt"
        assert name in b.write_file.remote(name, "from a container")
        assert b"".join(b.volume.read_file(name)) == b"from a container"


def test_add_local_dir_and_file_appear_read_only_in_containers(backend, sandbox):
    with b.mounting_app.run(show_logs=False):
        folder, single, source = b.local_content.remote()
    assert (folder, single) == ("hello from a local dir\n", "one local file\n")
    # locally the server's folder is bound in; on Ray the content came as a blob, unpacked on the node
    assert ("/shoal-ray/" in source) == (backend.configured_token is not None), source
