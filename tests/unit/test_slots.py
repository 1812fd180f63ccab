"""The ``@concurrent`` runtime's leasing decisions (``container.runtime.Slots``): how many inputs to ask for."""

from __future__ import annotations

from shoal.container.runtime import PREFETCH_BELOW, Slots


def test_a_fresh_container_asks_for_one_input_per_slot_and_nothing_ahead():
    slots = Slots(8)
    assert slots.wanted(queued=0) == 8
    slots.idle = 3
    assert slots.wanted(queued=0) == 3
    slots.idle = 0
    assert slots.wanted(queued=0) == 0  # busy, and inputs of unknown length: no lease ahead


def test_slow_inputs_are_never_leased_ahead():
    slots = Slots(8)
    slots.ran(PREFETCH_BELOW * 4)
    slots.idle = 0
    assert not slots.fast()
    assert slots.wanted(queued=0) == 0
    slots.idle = 2
    assert slots.wanted(queued=0) == 2


def test_fast_inputs_keep_a_queue_of_one_per_slot_refilled_once_half_empty():
    slots = Slots(8)
    slots.ran(0.02)
    assert slots.fast()
    slots.idle = 0
    assert slots.wanted(queued=0) == 8  # all busy: a whole queue ahead
    assert slots.wanted(queued=4) == 4  # half empty: topped up
    assert slots.wanted(queued=5) == 0  # more than half full: nothing yet
    slots.idle = 3
    assert slots.wanted(queued=0) == 3 + 8  # idle slots, and the queue behind them


def test_the_estimate_follows_the_inputs_as_they_change():
    slots = Slots(4)
    slots.ran(0.01)
    for _ in range(30):
        slots.ran(PREFETCH_BELOW * 2)
    assert not slots.fast()


def test_inputs_that_starting_slots_are_about_to_take_are_not_a_queue():
    # Given fast inputs, and a lease of 17 inputs that 17 idle slots of 32 are started for
    slots = Slots(32)
    slots.ran(0.02)
    slots.start(17)
    # Then, before those slots took them, the 15 idle slots and a queue ahead are asked for at once
    assert slots.wanted(queued=17) == 15 + 32
    # and once they took them, the same
    for _ in range(17):
        slots.started()
    assert slots.wanted(queued=0) == 15 + 32
    # Running slots that took a starting slot's input first leave nothing queued, not less than nothing
    slots.start(5)
    assert slots.wanted(queued=2) == 10 + 32
