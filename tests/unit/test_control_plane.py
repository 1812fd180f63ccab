"""The control plane with the in-memory backend: requests and container events, applied to a real store, with no
container process, socket or sleep (the test plays the containers' part through the plane's own methods)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from pathlib import Path

from shoal.backends.fake import FakeBackend
from shoal.protocol.messages import ExchangeRequest, OutputStatus, ReportedOutput
from shoal.protocol.specs import FunctionSpec
from shoal.retries import RetryPolicy
from shoal.server.control import ControlPlane, Parts, ServerConfig
from shoal.server.core.records import ContainerState
from shoal.server.core.scheduler import Limits


async def tick(plane: ControlPlane, limits: Limits) -> None:
    """One scheduler tick, and the container starts it began (they run in the background)."""
    await plane._tick(limits)
    await plane.starts_done()


def plane_at(tmp_path: Path) -> tuple[ControlPlane, FakeBackend]:
    config = ServerConfig(tmp_path / "state", "http://127.0.0.1:1", None, 10.0, 3600.0, 10, 1 << 20)
    backend = FakeBackend()
    return ControlPlane(config, backend, Parts.in_dir(config.state_dir)), backend


def test_a_backlog_launches_a_container_whose_crash_requeues_its_input_and_whose_report_ends_it(tmp_path):
    async def scenario() -> None:
        plane, backend = plane_at(tmp_path)
        limits = Limits(heartbeat_timeout=10.0, max_total_containers=4)
        # Given a function with one retry and a call of one input
        app_id = plane.create_app("unit")
        spec = FunctionSpec(max_containers=1, retries=RetryPolicy(max_retries=1, initial_delay=0.0, max_delay=1.0))
        function_id = plane.create_function(app_id, "f", spec, None)
        call_id, _ = plane.create_call(function_id, "map", None, [b"payload"], close=True)
        # When the scheduler ticks, Then the backend is asked for one container of that function
        await tick(plane, limits)
        (first,) = backend.launched
        assert first.function_id == function_id
        # When it starts, leases the input and crashes, Then the input is charged an attempt and queued again
        plane.container_started(first.container_id, None, False)
        reply = await plane.exchange(first.container_id, ExchangeRequest(want=1))
        assert [x.index for x in reply.inputs] == [0]
        backend.exit(first.container_id, 1)
        assert plane.store.container_state(first.container_id) == (function_id, ContainerState.STOPPED)
        assert plane.store.outputs(call_id, 0, 10) == []
        # When a second container runs it and reports success, Then the call has its one result
        await tick(plane, limits)
        second = backend.launched[-1]
        assert second.container_id != first.container_id
        plane.container_started(second.container_id, None, False)
        (leased,) = (await plane.exchange(second.container_id, ExchangeRequest(want=1))).inputs
        report = ReportedOutput(call_id, 0, leased.lease, OutputStatus.SUCCESS, b"result")
        await plane.exchange(second.container_id, ExchangeRequest([report], want=0))
        assert [(o.index, o.status, o.data) for o in plane.store.outputs(call_id, 0, 10)] == [(0, "SUCCESS", b"result")]
        assert plane.store.call(call_id).status == "SUCCEEDED"
        await plane.stop()

    asyncio.run(scenario())


def test_a_container_the_scheduler_finds_silent_is_killed_with_its_reason_on_record(tmp_path):
    async def scenario() -> None:
        plane, backend = plane_at(tmp_path)
        app_id = plane.create_app("unit")
        function_id = plane.create_function(app_id, "f", FunctionSpec(max_containers=1), None)
        call_id, _ = plane.create_call(function_id, "spawn", None, [b"payload"], close=True)
        await tick(plane, Limits(heartbeat_timeout=10.0, max_total_containers=4))
        (container,) = backend.launched
        plane.container_started(container.container_id, None, False)
        await plane.exchange(container.container_id, ExchangeRequest(want=1))
        # When its heartbeats stop for longer than the timeout (a zero timeout: it is already too late)
        await tick(plane, Limits(heartbeat_timeout=-1.0, max_total_containers=4))
        await asyncio.sleep(0)  # the termination runs as a task
        # Then it was terminated, and its input failed (no retries) naming why
        assert backend.terminated == [container.container_id]
        (output,) = plane.store.outputs(call_id, 0, 10)
        assert output.status == "CRASHED" and b"no heartbeat" in output.data
        await plane.stop()

    asyncio.run(scenario())


def test_a_container_lost_with_its_node_costs_its_lone_input_no_attempt(tmp_path):
    async def scenario() -> None:
        plane, backend = plane_at(tmp_path)
        limits = Limits(heartbeat_timeout=10.0, max_total_containers=4)
        # Given a function without retries, and a container holding its one input
        app_id = plane.create_app("unit")
        function_id = plane.create_function(app_id, "f", FunctionSpec(max_containers=1), None)
        call_id, _ = plane.create_call(function_id, "map", None, [b"payload"], close=True)
        await tick(plane, limits)
        (first,) = backend.launched
        plane.container_started(first.container_id, None, False)
        assert [x.index for x in (await plane.exchange(first.container_id, ExchangeRequest(want=1))).inputs] == [0]
        # When the backend loses it (a Ray node gone: no exit code of its own)
        backend.exit(first.container_id, None)
        # Then the input is queued again, not failed, and another container runs it
        assert plane.store.outputs(call_id, 0, 10) == []
        await tick(plane, limits)
        second = backend.launched[-1]
        plane.container_started(second.container_id, None, False)
        (leased,) = (await plane.exchange(second.container_id, ExchangeRequest(want=1))).inputs
        assert leased.index == 0
        await plane.stop()

    asyncio.run(scenario())


def test_payload_blobs_go_when_nothing_uses_them_and_a_shared_one_stays(tmp_path):
    """Inputs' blobs go when their (ephemeral) app stops, results' blobs when the results expire, and a blob that
    another app's input names stays."""

    async def scenario() -> None:
        config = ServerConfig(tmp_path / "state", "http://127.0.0.1:1", None, 10.0, 3600.0, 10, 1 << 20, blob_grace=0)
        plane = ControlPlane(config, FakeBackend(), Parts.in_dir(config.state_dir))
        blobs = {name: put_blob(plane, name) for name in (b"argument", b"shared", b"result")}
        app_id = plane.create_app("blobs")
        function_id = plane.create_function(app_id, "f", FunctionSpec(), None)
        call_id, _ = plane.create_call(function_id, "map", None, [b"B" + blobs[b"argument"].encode()], close=False)
        plane.add_inputs(call_id, 1, [b"B" + blobs[b"shared"].encode()], close=True)
        other_app = plane.create_app("other")
        other_fn = plane.create_function(other_app, "g", FunctionSpec(), None)
        plane.create_call(other_fn, "map", None, [b"B" + blobs[b"shared"].encode()], close=True)
        container_id = "ta-1"
        plane.store.add_container(container_id, function_id, app_id)
        plane.store.mark_started(container_id)
        leased = (await plane.exchange(container_id, ExchangeRequest(want=1))).inputs
        report = ReportedOutput(call_id, 0, leased[0].lease, OutputStatus.SUCCESS, b"B" + blobs[b"result"].encode())
        await plane.exchange(container_id, ExchangeRequest([report], want=0))
        assert await plane.remove_unused_blobs() == 0  # every blob is in use

        await plane.stop_app(app_id, "the client left")
        assert await plane.remove_unused_blobs() == 1
        assert not plane.blobs.exists(blobs[b"argument"])
        assert plane.blobs.exists(blobs[b"shared"])  # the other app's input names it
        assert plane.blobs.exists(blobs[b"result"])  # the results can still be fetched

        plane.store.clock = lambda: time.time() + 7200  # past the retention window
        plane.store.expire_results(3600.0)
        assert await plane.remove_unused_blobs() == 1
        assert not plane.blobs.exists(blobs[b"result"])
        assert plane.blobs.exists(blobs[b"shared"])
        await plane.stop()

    asyncio.run(scenario())


def test_an_uploaded_payload_no_call_names_goes_after_the_upload_grace_and_other_blobs_stay(tmp_path):
    """A client that died between uploading an input's blob and submitting the input leaves a blob nobody will
    name: it goes once the upload grace is over. A blob uploaded as something else (a source bundle) stays, and
    one asked for just before its removal is looked at again later instead of forgotten."""

    async def scenario() -> None:
        config = ServerConfig(tmp_path / "state", "http://127.0.0.1:1", None, 10.0, 3600.0, 10, 1 << 20,
                              blob_grace=5, upload_grace=60)  # fmt: skip
        plane = ControlPlane(config, FakeBackend(), Parts.in_dir(config.state_dir))
        blobs = {name: put_blob(plane, name) for name in (b"abandoned", b"named", b"bundle")}
        for name in (b"abandoned", b"named"):
            plane.payload_uploaded(blobs[name])
        app_id = plane.create_app("blobs")
        function_id = plane.create_function(app_id, "f", FunctionSpec(), None)
        plane.create_call(function_id, "map", None, [b"B" + blobs[b"named"].encode()], close=True)
        assert await plane.remove_unused_blobs() == 0  # within the upload grace
        plane.store.clock = lambda: time.time() + 120  # past it
        assert await plane.remove_unused_blobs() == 1
        assert not plane.blobs.exists(blobs[b"abandoned"])
        assert plane.blobs.exists(blobs[b"named"]) and plane.blobs.exists(blobs[b"bundle"])

        # an orphan a client asked for (HEAD) just before the sweep is kept, and removed at a later sweep
        again = put_blob(plane, b"asked for")
        plane.payload_uploaded(again)
        plane.blobs.touch(again)
        plane.store.clock = lambda: time.time() + 240
        assert await plane.remove_unused_blobs() == 0
        os.utime(plane.blobs.path(again), (time.time() - 10, time.time() - 10))
        plane.store.clock = lambda: time.time() + 300
        assert await plane.remove_unused_blobs() == 1
        assert not plane.blobs.exists(again)
        await plane.stop()

    asyncio.run(scenario())


def put_blob(plane: ControlPlane, data: bytes) -> str:
    blob_id = hashlib.sha256(data).hexdigest()
    plane.blobs.writer(blob_id).finish([data])
    os.utime(plane.blobs.path(blob_id), (time.time() - 10, time.time() - 10))  # written a while ago
    return blob_id


def test_a_wall_clock_step_expires_no_lease_and_kills_no_container(tmp_path, monkeypatch):

    async def scenario() -> None:
        plane, backend = plane_at(tmp_path)
        app_id = plane.create_app("unit")
        spec = FunctionSpec(max_containers=1, timeout=60)
        function_id = plane.create_function(app_id, "f", spec, None)
        call_id, _ = plane.create_call(function_id, "spawn", None, [b"payload"], close=True)
        limits = Limits(heartbeat_timeout=10.0, max_total_containers=4)
        await tick(plane, limits)
        (container,) = backend.launched
        plane.container_started(container.container_id, None, False)
        (leased,) = (await plane.exchange(container.container_id, ExchangeRequest(want=1))).inputs
        # When the machine's clock jumps an hour ahead, then back two hours, while the input runs
        for step in (3600.0, -7200.0):
            wall = time.time() + step
            monkeypatch.setattr(time, "time", lambda wall=wall: wall)
            await tick(plane, limits)
            await asyncio.sleep(0)
            # Then nothing was killed for silence or timed out, and the lease still holds
            assert backend.terminated == []
            assert plane.store.outputs(call_id, 0, 10) == []
        report = ReportedOutput(call_id, 0, leased.lease, OutputStatus.SUCCESS, b"result")
        await plane.exchange(container.container_id, ExchangeRequest([report], want=0))
        assert [o.status for o in plane.store.outputs(call_id, 0, 10)] == ["SUCCESS"]
        await plane.stop()

    asyncio.run(scenario())


def test_a_period_schedule_keeps_its_pace_when_the_wall_clock_steps_back(tmp_path, monkeypatch):
    from shoal.schedule import Period

    async def scenario() -> None:
        plane, _ = plane_at(tmp_path)
        app_id = plane.create_app("unit")
        spec = FunctionSpec(schedule=Period(seconds=0.2).spec())
        plane.create_function(app_id, "f", spec, None)
        # When the machine's clock goes back an hour right after the schedule was registered
        wall = time.time() - 3600
        monkeypatch.setattr(time, "time", lambda: wall)
        await asyncio.sleep(0.3)  # the period itself: what the test waits for is time passing
        await tick(plane, Limits(heartbeat_timeout=10.0, max_total_containers=4))
        # Then it fired on time (the plane's clock kept its pace), not an hour later
        assert len(plane.catalog.calls_of_function(app_id, "f")) == 1
        await plane.stop()

    asyncio.run(scenario())


def test_a_container_says_it_started_when_it_runs_and_never_when_it_failed_to(tmp_path):
    async def scenario() -> None:
        plane, backend = plane_at(tmp_path)
        limits = Limits(heartbeat_timeout=10.0, max_total_containers=4)
        app_id = plane.create_app("unit")
        function_id = plane.create_function(app_id, "f", FunctionSpec(max_containers=2), None)
        plane.create_call(function_id, "map", None, [b"a", b"b"], close=True)
        await tick(plane, limits)
        first, second = backend.launched

        def said() -> list[str]:
            return [text for _, _, text, _ in plane.catalog.logs(app_id, None, 0) if "started" in text]

        # Given two containers launched (on Ray, a launch may wait for a node): neither has said it started
        assert said() == []
        # When one reports it runs and the other that its code failed to load
        plane.container_started(first.container_id, None, False)
        plane.container_started(second.container_id, "ImportError: no module named x", True)
        plane._write_started()  # (lines of starts close together are written together, STARTED_LINES_EVERY later)
        # Then only the first says so
        assert said() == [f"Container {first.container_id} started for f\n"]

    asyncio.run(scenario())


def test_a_big_launch_is_paced_by_the_boot_window_and_goes_on_as_containers_boot(tmp_path):
    """At most ``boot_window`` containers are launched and not booted; each that fetches its spec lets one more
    launch (a fleet's first requests would otherwise arrive as one herd)."""

    async def scenario() -> None:
        config = ServerConfig(tmp_path / "state", "http://127.0.0.1:1", None, 10.0, 3600.0, 10, 1 << 20, boot_window=3)
        backend = FakeBackend()
        plane = ControlPlane(config, backend, Parts.in_dir(config.state_dir))
        app_id = plane.create_app("unit")
        function_id = plane.create_function(app_id, "f", FunctionSpec(max_containers=8), None)
        plane.create_call(function_id, "map", None, [b"x"] * 8, close=True)
        # When the scheduler wants 8 containers, Then 8 rows exist but only 3 are launched
        await plane._tick(Limits(heartbeat_timeout=10.0, max_total_containers=8))
        for _ in range(5):
            await asyncio.sleep(0)
        assert len(plane.store.live_containers()) == 8
        assert len(backend.launched) == 3
        # When two of them boot, Then two more launch; and the rest as the others boot
        for spec in backend.launched[:2]:
            plane.container_booted(spec.container_id)
        while len(backend.launched) < 5:
            await asyncio.sleep(0)
        await asyncio.sleep(0.01)
        assert len(backend.launched) == 5
        for spec in backend.launched[2:]:
            plane.container_booted(spec.container_id)
        await asyncio.wait_for(plane.starts_done(), 10)
        assert len(backend.launched) == 8 and len({s.container_id for s in backend.launched}) == 8
        await plane.stop()

    asyncio.run(scenario())


def test_a_held_beat_answers_when_released_and_a_release_that_came_first_means_it_is_not_held(tmp_path):
    """``release_held``: the container's next request came behind its quiet beat on one connection. A beat held
    answers at once; a release that came before the beat was held (a race of the two) is not lost."""

    async def scenario() -> None:
        plane, backend = plane_at(tmp_path)
        app_id = plane.create_app("unit")
        function_id = plane.create_function(app_id, "f", FunctionSpec(max_containers=1), None)
        plane.create_call(function_id, "map", None, [b"x"], close=True)
        await tick(plane, Limits(heartbeat_timeout=90.0, max_total_containers=4))
        (container,) = backend.launched
        cid = container.container_id
        plane.container_started(cid, None, False)
        beat = asyncio.ensure_future(plane.heartbeat(cid, [], wait=30.0))
        for _ in range(5):
            await asyncio.sleep(0)
        assert not beat.done()  # held: no order, no release
        plane.release_held(cid)
        assert (await asyncio.wait_for(beat, 5)).stop is False
        plane.release_held(cid)  # before the next beat is held
        started = time.monotonic()
        await asyncio.wait_for(plane.heartbeat(cid, [], wait=30.0), 5)
        assert time.monotonic() - started < 5
        beat = asyncio.ensure_future(plane.heartbeat(cid, [], wait=30.0))  # and the release was used up
        for _ in range(5):
            await asyncio.sleep(0)
        assert not beat.done()
        plane.release_held(cid)
        await asyncio.wait_for(beat, 5)
        await plane.stop()

    asyncio.run(scenario())
