"""The scheduler is a pure function: feed it loads and containers, assert the actions."""

from __future__ import annotations

from shoal.server.core.records import ContainerRow, ContainerState, FunctionLoad
from shoal.server.core.scheduler import Drain, Kill, Launch, Limits, desired_containers, plan, startup_backoff

LIMITS = Limits(heartbeat_timeout=10.0, max_total_containers=100)


def load(ready=0, leased=0, max_containers=8, min_containers=0, buffer=0, failures=0, last_failure=0.0):  # noqa: ANN001, ANN201
    return FunctionLoad("fu-1", "ap-1", ready, 0, leased, min_containers, max_containers, buffer, 60.0, 30.0, 300.0,
                        failures, last_failure)  # fmt: skip


def container(cid="ta-1", state=ContainerState.RUNNING, created=0.0, seen=100.0, active=100.0, leased=0):  # noqa: ANN001, ANN201
    return ContainerRow(cid, "fu-1", state, created, seen, active, leased)


def test_a_backlog_launches_containers_up_to_max_containers():
    assert plan([load(ready=50)], [], 100.0, LIMITS) == [Launch("fu-1", "ap-1", 8)]


def test_no_backlog_and_no_containers_does_nothing():
    assert plan([load()], [], 100.0, LIMITS) == []


def test_desired_counts_leased_inputs_and_buffer_and_respects_min():
    assert desired_containers(load(ready=1, leased=2, buffer=1)) == 4
    assert desired_containers(load(min_containers=2)) == 2
    assert desired_containers(load(ready=100, max_containers=3)) == 3


def test_running_containers_count_towards_desired():
    actions = plan([load(ready=3)], [container("ta-1", leased=1), container("ta-2", leased=1)], 100.0, LIMITS)
    assert actions == [Launch("fu-1", "ap-1", 1)]


def test_idle_containers_past_the_scaledown_window_are_drained_oldest_first():
    cs = [container("ta-1", active=10.0), container("ta-2", active=20.0), container("ta-3", active=95.0)]
    actions = plan([load()], cs, 100.0, LIMITS)
    assert actions == [Drain("ta-1"), Drain("ta-2")]  # ta-3 has been idle only 5 s


def test_busy_containers_are_never_drained():
    actions = plan(
        [load(leased=1)], [container("ta-1", active=0.0, leased=1), container("ta-2", active=0.0)], 100.0, LIMITS
    )
    assert actions == [Drain("ta-2")]


def test_min_containers_are_kept_warm():
    actions = plan([load(min_containers=1)], [container("ta-1", active=0.0)], 100.0, LIMITS)
    assert actions == []


def test_a_container_without_heartbeat_is_killed():
    actions = plan([load(leased=1)], [container("ta-1", seen=80.0, leased=1)], 100.0, LIMITS)
    assert Kill("ta-1", "no heartbeat for 20s (hung, stopped or holding the GIL)") in actions


def test_a_container_heard_from_since_its_row_was_written_is_alive():
    # Given a row last written 20 s ago (beats and long polls are kept in the plane's memory, not the store)
    rows = [container("ta-1", seen=80.0, leased=1)]
    # Then a beat heard 5 s ago keeps it, and one heard 20 s ago does not
    assert not [a for a in plan([load(leased=1)], rows, 100.0, LIMITS, {"ta-1": 95.0}) if isinstance(a, Kill)]
    assert [a for a in plan([load(leased=1)], rows, 100.0, LIMITS, {"ta-1": 80.0}) if isinstance(a, Kill)]


def test_a_container_that_never_starts_is_killed_after_startup_timeout():
    actions = plan(
        [load(ready=1, max_containers=1)],
        [container("ta-1", state=ContainerState.STARTING, created=50.0)],
        100.0,
        LIMITS,
    )
    assert actions[0] == Kill("ta-1", "it did not start within startup_timeout=30s")


def test_a_container_waiting_for_capacity_has_no_startup_clock_and_goes_when_no_longer_needed():
    waiting = ContainerRow("ta-1", "fu-1", ContainerState.STARTING, 0.0, 0.0, 0.0, 0, waiting=True)
    assert plan([load(ready=1, max_containers=1)], [waiting], 1000.0, LIMITS) == []  # waited long: not killed
    assert plan([load(ready=0)], [waiting], 1000.0, LIMITS) == [Drain("ta-1")]  # no backlog: dropped at once
    running = container("ta-2", seen=999.0, active=999.0)  # idle in its scaledown window: kept; the unplaced goes
    assert plan([load(ready=1, max_containers=1)], [waiting, running], 1000.0, LIMITS) == [Drain("ta-1")]


def test_startup_failures_back_off_then_probe_with_one_container():
    assert plan([load(ready=10, failures=3, last_failure=99.0)], [], 100.0, LIMITS) == []
    assert startup_backoff(3) == 2.0
    assert plan([load(ready=10, failures=3, last_failure=97.0)], [], 100.0, LIMITS) == [Launch("fu-1", "ap-1", 1)]


def test_the_total_container_cap_is_respected():
    assert plan([load(ready=50)], [], 100.0, Limits(10.0, 5)) == [Launch("fu-1", "ap-1", 5)]


def test_idle_containers_of_another_function_give_way_when_the_cap_blocks_a_backlog():
    # Given a cap of 3, filled by idle containers of fu-a (idle 5 s, well inside its 60 s window)
    limits = Limits(heartbeat_timeout=10.0, max_total_containers=3)
    a = FunctionLoad("fu-a", "ap-1", 0, 0, 0, 0, 8, 0, 60.0, 30.0, 300.0, 0, 0.0)
    b = FunctionLoad("fu-b", "ap-1", 2, 0, 0, 0, 8, 0, 60.0, 30.0, 300.0, 0, 0.0)
    idle = [ContainerRow(f"ta-{i}", "fu-a", ContainerState.RUNNING, 0.0, 100.0, 95.0 + i, 0) for i in range(3)]
    # When fu-b has a backlog of 2, Then the two longest-idle fu-a containers are drained now
    assert plan([a, b], idle, 100.0, limits) == [Drain("ta-0"), Drain("ta-1")]


def test_busy_or_needed_containers_never_give_way():
    limits = Limits(heartbeat_timeout=10.0, max_total_containers=2)
    a = FunctionLoad("fu-a", "ap-1", 0, 0, 1, 2, 8, 0, 60.0, 30.0, 300.0, 0, 0.0)  # min 2, one input running
    b = FunctionLoad("fu-b", "ap-1", 5, 0, 0, 0, 8, 0, 60.0, 30.0, 300.0, 0, 0.0)
    busy = ContainerRow("ta-busy", "fu-a", ContainerState.RUNNING, 0.0, 100.0, 99.0, 1)
    kept = ContainerRow("ta-min", "fu-a", ContainerState.RUNNING, 0.0, 100.0, 99.0, 0)
    assert plan([a, b], [busy, kept], 100.0, limits) == []


def test_fair_shares_are_max_min_fair_and_never_exceed_the_capacity_or_a_want():
    from shoal.server.core.scheduler import fair_shares

    assert fair_shares({"a": 10, "b": 10, "c": 10}, 6) == {"a": 2, "b": 2, "c": 2}
    assert fair_shares({"a": 1, "b": 10, "c": 10}, 7) == {"a": 1, "b": 3, "c": 3}  # a's leftover shared
    assert fair_shares({"a": 3, "b": 2}, 10) == {"a": 3, "b": 2}  # room for all: each its want
    assert fair_shares({"a": 5, "b": 5, "c": 5}, 4) == {"a": 2, "b": 1, "c": 1}  # the remainder in id order
    assert fair_shares({"a": 0, "b": 4}, 2) == {"a": 0, "b": 2}


def test_a_function_over_its_share_yields_busy_containers_to_a_newcomer_with_a_backlog():
    from shoal.server.core.scheduler import Yield

    limits = Limits(heartbeat_timeout=10.0, max_total_containers=6)
    hog = FunctionLoad("fu-a", "ap-1", 100, 0, 6, 0, 6, 0, 60.0, 30.0, 300.0, 0, 0.0)
    newcomer = FunctionLoad("fu-b", "ap-2", 10, 0, 0, 0, 6, 0, 60.0, 30.0, 300.0, 0, 0.0)
    busy = [ContainerRow(f"ta-{i}", "fu-a", ContainerState.RUNNING, 0.0, 100.0, 99.0 - i, 1) for i in range(6)]
    # When every container is busy with the first function's backlog and a second function asks for room
    actions = plan([hog, newcomer], busy, 100.0, limits)
    # Then three busy containers of the first function yield (finish their input, take no more), none is killed
    assert sorted(a.container_id for a in actions if isinstance(a, Yield)) == ["ta-3", "ta-4", "ta-5"]
    assert [a for a in actions if not isinstance(a, Yield)] == []
    # and once they are draining, the newcomer gets its share as they exit, and nothing more yields
    draining = [c if c.id not in ("ta-3", "ta-4", "ta-5") else ContainerRow(c.id, c.function_id,
                ContainerState.DRAINING, 0.0, 100.0, 99.0, 1) for c in busy]  # fmt: skip
    assert plan([hog, newcomer], draining, 100.0, limits) == []
    assert plan([hog, newcomer], draining[:3], 100.0, limits) == [Launch("fu-b", "ap-2", 3)]


def _gpu_load(fid: str, ready: int, leased: int, pool: str = "gpu") -> FunctionLoad:
    return FunctionLoad(fid, "ap-1", ready, 0, leased, 0, 4, 0, 60.0, 30.0, 300.0, 0, 0.0, pool=pool)


def _row(cid: str, fid: str, leased: int = 1, waiting: bool = False) -> ContainerRow:
    state = ContainerState.STARTING if waiting else ContainerState.RUNNING
    return ContainerRow(cid, fid, state, 0.0, 100.0, 99.0, leased, waiting=waiting)


def test_a_function_waiting_for_a_gpu_gets_one_from_a_function_holding_both():
    from shoal.server.core.scheduler import Yield

    # Given two GPUs, both held by a function with a long backlog, and a second function whose container waits
    hog, newcomer = _gpu_load("fu-a", 20, 2), _gpu_load("fu-b", 1, 0)
    rows = [_row("ta-1", "fu-a"), _row("ta-2", "fu-a"), _row("ta-3", "fu-a", 0, waiting=True),
            _row("tb-1", "fu-b", 0, waiting=True)]  # fmt: skip
    # When the scheduler plans, Then one busy container of the first gives way (it finishes its input first)
    actions = plan([hog, newcomer], rows, 100.0, LIMITS)
    assert [a for a in actions if isinstance(a, Yield)] == [Yield("ta-1")]
    assert not [a for a in actions if isinstance(a, (Drain, Kill))]
    # and once the newcomer holds one GPU, nothing more gives way
    settled = [_row("ta-2", "fu-a"), _row("ta-3", "fu-a", 0, waiting=True), _row("tb-1", "fu-b")]
    assert [a for a in plan([hog, newcomer], settled, 100.0, LIMITS) if not isinstance(a, Launch)] == []


def test_containers_waiting_for_a_gpu_take_nothing_from_cpu_functions():
    # Given a CPU function with many containers and a GPU function whose container waits (the GPUs are elsewhere)
    cpu, gpu = _gpu_load("fu-a", 20, 4, pool="cpu"), _gpu_load("fu-b", 1, 0)
    rows = [_row(f"ta-{i}", "fu-a") for i in range(4)] + [_row("tb-1", "fu-b", 0, waiting=True)]
    # Then none of the CPU function's containers gives way: they hold nothing the GPU function waits for
    assert plan([cpu, gpu], rows, 100.0, LIMITS) == []
