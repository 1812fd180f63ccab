"""Pure scheduling decisions: (function loads, containers, now) -> actions. No I/O, tested by feeding state.

Autoscaling per function: desired = clamp(backlog + buffer, min_containers, max_containers) while there is a
backlog (each container runs one input at a time), else min_containers; a container idle for longer than
``scaledown_window`` above that number is drained.

When the machine-wide cap cannot hold every function's desire, capacity is shared max-min fairly
(:func:`fair_shares`): each function is owed an equal part, and what one needs less of goes to the others. A
function below its share gets room: first from idle containers above other functions' need (drained at once),
then from functions above their share, whose busy containers *yield*: they take no new input, finish the ones they
run and exit (no work is lost). So a new function's first input waits for one input of another, not its backlog. A
function whose containers keep failing to start backs off exponentially before the next launch. Containers that
stop heartbeating or never finish starting are killed.

Below the cap, the machine itself may run out (the backend's ledger: GPUs, CPUs, memory), and containers it
cannot place yet *wait*. Functions whose containers wait share what is placed max-min fairly too, within their
pool (GPU functions contend for GPUs, the others for CPUs and memory): one above its fair part of the placed
containers yields, so that a function waiting for a GPU gets one when an input of another ends
(:func:`_placed_fairly`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping

import msgspec

from .records import ContainerRow, ContainerState, FunctionLoad

MAX_STARTUP_BACKOFF = 30.0
TIMEOUT_GRACE = 2.0  # seconds past an input's timeout before the server kills a container that did not end it


class Launch(msgspec.Struct, frozen=True):
    function_id: str
    app_id: str
    count: int


class Drain(msgspec.Struct, frozen=True):
    """Stop an idle container gracefully."""

    container_id: str


class Kill(msgspec.Struct, frozen=True):
    """Kill an unresponsive container; its leased inputs are re-queued or failed."""

    container_id: str
    reason: str
    timed_out: bool = False  # its input ran past the function's timeout


class Yield(msgspec.Struct, frozen=True):
    """A busy container of a function above its fair share takes no new input and exits once its inputs end."""

    container_id: str


Action = Launch | Drain | Kill | Yield


class Limits(msgspec.Struct, frozen=True):
    heartbeat_timeout: float
    max_total_containers: int


def desired_containers(load: FunctionLoad) -> int:
    backlog = load.ready + load.leased
    want = -(-backlog // max(1, load.capacity)) + load.buffer_containers if backlog else 0
    return max(load.min_containers, min(want, load.max_containers))


def fair_shares(wants: dict[str, int], capacity: int) -> dict[str, int]:
    """Max-min fair containers per function: an equal part of ``capacity`` each, never more than a function
    wants; what some leave is shared by the rest. Remainders go to functions in id order (deterministic)."""
    shares = dict.fromkeys(wants, 0)
    open_ = sorted((f for f in wants if wants[f] > 0), key=lambda f: (wants[f], f))
    left = max(0, capacity)
    while open_ and left > 0:
        part = left // len(open_)
        if part == 0:
            for f in sorted(open_)[:left]:
                shares[f] += 1
            break
        for f in list(open_):
            give = min(part, wants[f] - shares[f])
            shares[f] += give
            left -= give
            if shares[f] == wants[f]:
                open_.remove(f)
    return shares


def _shares(loads: list[FunctionLoad], wants: dict[str, int], capacity: int) -> dict[str, int]:
    """Each function's ``min_containers`` first (a reservation), then the rest of ``capacity`` shared fairly."""
    reserved = {f.function_id: min(f.min_containers, wants[f.function_id]) for f in loads}
    extra = fair_shares({f: wants[f] - reserved[f] for f in wants}, capacity - sum(reserved.values()))
    return {f: reserved[f] + extra[f] for f in wants}


def startup_backoff(failures: int) -> float:
    return 0.0 if failures <= 0 else min(0.5 * 2 ** (failures - 1), MAX_STARTUP_BACKOFF)


def plan(
    loads: list[FunctionLoad], containers: list[ContainerRow], now: float, limits: Limits,
    heard: Mapping[str, float] | None = None,
) -> list[Action]:  # fmt: skip
    """Decide what to launch, drain and kill now. ``heard``: when containers were last heard from, where that is
    later than their row's ``last_seen`` (the plane keeps beats and long polls in memory)."""
    actions: list[Action] = []
    by_function: dict[str, list[ContainerRow]] = defaultdict(list)
    heard = heard or {}
    load_of = {load.function_id: load for load in loads}
    for c in containers:
        by_function[c.function_id].append(c)
        if c.state == ContainerState.RUNNING and c.leased == 0 and c.last_seen > now - limits.heartbeat_timeout:
            continue  # the common case of a big fleet, decided without a call: idle, and heard from lately
        found = _health_actions(c, now, limits, load_of.get(c.function_id), max(c.last_seen, heard.get(c.id, 0.0)))
        actions.extend(found)
    killed = {a.container_id for a in actions if isinstance(a, Kill)}
    total = len(containers) - len(killed)
    blocked = 0  # containers functions with a backlog want but the machine-wide cap refuses
    spare: list[ContainerRow] = []  # idle containers above their function's need: drained early when blocked
    over: list[ContainerRow] = []  # containers of functions above their fair share: they give way when blocked
    wants = {load.function_id: desired_containers(load) for load in loads}
    shares = _shares(loads, wants, limits.max_total_containers)
    for load in sorted(loads, key=lambda f: f.function_id):
        active = [c for c in by_function[load.function_id] if c.id not in killed and c.state != ContainerState.DRAINING]
        desired, share = wants[load.function_id], shares[load.function_id]
        if len(active) > share:  # a container still starting is left to start: it holds nothing yet
            settled = [c for c in active if c.state == ContainerState.RUNNING or c.waiting]
            over.extend(sorted(settled, key=lambda c: (c.leased, c.last_active))[: len(active) - share])  # idle first
        if len(active) < share:
            if now - load.last_startup_failure < startup_backoff(load.startup_failures):
                continue
            wanted = 1 if load.startup_failures else share - len(active)  # probe while failing to start
            count = min(wanted, limits.max_total_containers - total)
            blocked += wanted - max(count, 0)
            if count > 0:
                actions.append(Launch(load.function_id, load.app_id, count))
                total += count
        elif len(active) > desired:
            surplus = len(active) - desired
            unplaced = [c for c in active if c.waiting][:surplus]  # never ran: nothing to keep them for
            actions.extend(Drain(c.id) for c in unplaced)
            idle = sorted((c for c in active if c.state == ContainerState.RUNNING and c.leased == 0),
                          key=lambda c: c.last_active)  # fmt: skip
            idle = idle[: surplus - len(unplaced)]
            expired = [c for c in idle if now - c.last_active >= load.scaledown_window]
            actions.extend(Drain(c.id) for c in expired)
            spare.extend(c for c in idle if c not in expired)
    if blocked:  # idle containers of other functions give way now, not when their scaledown window ends
        spare.sort(key=lambda c: c.last_active)
        actions.extend(Drain(c.id) for c in spare[:blocked])
        blocked -= len(spare[:blocked])
        drained = {a.container_id for a in actions if isinstance(a, Drain)}
        for c in [c for c in over if c.id not in drained][: max(0, blocked)]:  # then functions above their share
            free = c.state == ContainerState.RUNNING and c.leased == 0
            actions.append(Drain(c.id) if free or c.waiting else Yield(c.id))
    if any(c.waiting for c in containers):  # (a walk of every container's lists, for none, held the loop)
        decided = {a.container_id for a in actions if not isinstance(a, Launch)}
        actions.extend(_placed_fairly(loads, by_function, killed | decided, wants))
    return actions


def _placed_fairly(
    loads: list[FunctionLoad], by_function: Mapping[str, list[ContainerRow]], decided: set[str],
    wants: Mapping[str, int],
) -> list[Action]:  # fmt: skip
    """Share what the machine placed: in each pool where containers wait for room, a function with fewer placed
    than its fair part gets room from those above theirs (idle containers drain, busy ones yield)."""
    pools: dict[str, list[FunctionLoad]] = defaultdict(list)
    for load in loads:
        pools[load.pool].append(load)
    actions: list[Action] = []
    for members in pools.values():
        placed: dict[str, list[ContainerRow]] = {}
        waiting: dict[str, int] = {}
        for load in members:
            active = [c for c in by_function[load.function_id]
                      if c.id not in decided and c.state != ContainerState.DRAINING]  # fmt: skip
            placed[load.function_id] = [c for c in active if not c.waiting]
            waiting[load.function_id] = sum(c.waiting for c in active)
        if not any(waiting.values()):
            continue
        parts = fair_shares({f: min(wants[f], len(placed[f]) + waiting[f]) for f in placed},
                            sum(len(p) for p in placed.values()))  # fmt: skip
        short = sum(max(0, parts[f] - len(placed[f])) for f in placed if waiting[f])
        for f in sorted(placed):
            surplus = min(len(placed[f]) - parts[f], short)
            if surplus <= 0:
                continue
            running = sorted((c for c in placed[f] if c.state == ContainerState.RUNNING),
                             key=lambda c: (c.leased, c.last_active))  # fmt: skip
            for c in running[:surplus]:  # idle first
                actions.append(Drain(c.id) if c.leased == 0 else Yield(c.id))
                short -= 1
    return actions


def _health_actions(
    c: ContainerRow, now: float, limits: Limits, load: FunctionLoad | None, last_seen: float
) -> list[Action]:
    if c.state == ContainerState.STARTING:
        if c.waiting:  # its startup time begins when the backend places it
            return []
        startup_timeout = load.startup_timeout if load is not None else 300.0
        if now - c.created_at > startup_timeout:
            return [Kill(c.id, f"it did not start within startup_timeout={startup_timeout:g}s")]
        return []
    if load is not None and load.capacity == 1 and c.leased == 1 and c.oldest_lease is not None:
        # One input leased alone started when it was leased; the container's own watchdog ends it at its
        # timeout, unless native code holding the GIL stops the watchdog: then the server kills it.
        if now - c.oldest_lease > load.timeout + TIMEOUT_GRACE:
            reason = (f"Function timed out after {load.timeout:g}s (timeout={load.timeout:g}) and did not stop "
                      "(native code holding the GIL?), so its container was killed")  # fmt: skip
            return [Kill(c.id, reason, timed_out=True)]
    if now - last_seen > limits.heartbeat_timeout:
        return [Kill(c.id, f"no heartbeat for {now - last_seen:.0f}s (hung, stopped or holding the GIL)")]
    return []
