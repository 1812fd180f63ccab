"""The local backend's resource ledger: Modal's gpu= forms, GPU names, what fits, what waits and why."""

from __future__ import annotations

import pytest

from shoal.backends.base import Unplaceable
from shoal.backends.resources import Gpu, GpuRequest, Ledger, Machine, Request, discover, gpu_kind, parse_gpu
from shoal.exception import InvalidError
from shoal.protocol.specs import Resources


def test_modal_gpu_forms_parse_in_any_case():
    assert parse_gpu("T4") == GpuRequest(("T4",), 1)
    assert parse_gpu("h100:2") == GpuRequest(("H100",), 2)
    assert parse_gpu("any") == GpuRequest((), 1)
    assert parse_gpu("ANY:4") == GpuRequest((), 4)
    assert parse_gpu("H100, a100-80gb") == GpuRequest(("H100", "A100-80GB"), 1)  # a list, in order of preference
    assert parse_gpu("H100!") == GpuRequest(("H100!",), 1)


@pytest.mark.parametrize("bad", ["", "T4:0", "T4:two", "T4:2,L4:1", "a b"])
def test_a_gpu_request_that_is_no_form_of_modals_says_which_forms_are(bad):  # noqa: ANN001
    with pytest.raises(InvalidError, match="gpu="):
        parse_gpu(bad)


def test_nvml_names_become_modals_gpu_types():
    assert gpu_kind("Tesla T4") == "T4"
    assert gpu_kind("NVIDIA A100-SXM4-80GB", 81920) == "A100-80GB"
    assert gpu_kind("NVIDIA A100-SXM4-40GB", 40960) == "A100"
    assert gpu_kind("NVIDIA H100 80GB HBM3") == "H100"
    assert gpu_kind("NVIDIA H200") == "H200"
    assert gpu_kind("NVIDIA L40S") == "L40S"
    assert gpu_kind("NVIDIA L4") == "L4"
    assert gpu_kind("NVIDIA A10G") == "A10G"
    assert gpu_kind("NVIDIA GeForce RTX 4090") == "RTX-4090"


def _machine(*kinds: str, cpus: float = 8.0, memory: int = 64_000) -> Ledger:
    return Ledger(Machine(cpus, memory, tuple(Gpu(i, k, 16_000) for i, k in enumerate(kinds)), fake_gpus=True))


def test_each_gpu_container_gets_its_own_gpus_and_the_next_waits_saying_for_what():
    ledger = _machine("T4", "T4")
    one = Request.of(Resources(gpu="T4"))
    first, second = ledger.take("c1", one), ledger.take("c2", one)
    assert first is not None and second is not None
    assert {first.gpus, second.gpus} == {(0,), (1,)}
    assert ledger.take("c3", one) is None
    assert ledger.shortfall(one) == "waiting for a GPU (T4): 2 of 2 in use"
    ledger.give_back(first)
    third = ledger.take("c3", one)
    assert third is not None and third.gpus == first.gpus


def test_a_two_gpu_container_takes_both_and_waits_while_one_is_held():
    ledger = _machine("T4", "T4")
    pair = Request.of(Resources(gpu="t4:2"))
    single = ledger.take("c1", Request.of(Resources(gpu="T4")))
    assert single is not None and ledger.take("c2", pair) is None
    assert ledger.shortfall(pair) == "waiting for 2 GPUs (T4): 1 of 2 in use"
    ledger.give_back(single)
    both = ledger.take("c2", pair)
    assert both is not None and both.gpus == (0, 1)


def test_a_preference_list_takes_the_first_type_free_and_any_takes_whatever_is():
    ledger = _machine("A100-80GB", "H100")
    preferring = Request.of(Resources(gpu="H100,A100-80GB"))
    first, second = ledger.take("c1", preferring), ledger.take("c2", preferring)
    assert first is not None and first.gpus == (1,)  # the H100 first
    assert second is not None and second.gpus == (0,)  # then the A100-80GB
    assert _machine("L4").take("c", Request.of(Resources(gpu="any"))) is not None


def test_modal_upgrades_a100_to_80gb_and_h100_to_h200_but_not_h100_with_a_bang():
    assert _machine("A100-80GB").take("c", Request.of(Resources(gpu="A100"))) is not None
    assert _machine("H200").take("c", Request.of(Resources(gpu="H100"))) is not None
    with pytest.raises(Unplaceable):
        _machine("H200").check(Request.of(Resources(gpu="H100!")))


def test_a_type_or_count_the_machine_lacks_is_refused_naming_what_it_has():
    ledger = _machine("T4", "T4")
    with pytest.raises(Unplaceable, match=r"A100.*2 x T4"):
        ledger.check(Request.of(Resources(gpu="A100")))
    with pytest.raises(Unplaceable, match=r"only 2 of them.*2 x T4"):
        ledger.check(Request.of(Resources(gpu="T4:3")))
    with pytest.raises(Unplaceable, match="8 CPUs"):
        ledger.check(Request.of(Resources(cpu=16)))
    with pytest.raises(Unplaceable, match="64000 MiB"):
        ledger.check(Request.of(Resources(memory=100_000)))


def test_gpu_asked_of_a_machine_without_gpus_reserves_none():
    ledger = Ledger(Machine(4.0, 8_000))
    ledger.check(Request.of(Resources(gpu="A100")))  # runs on CPU; the client warns
    grant = ledger.take("c", Request.of(Resources(gpu="A100")))
    assert grant is not None and grant.gpus == ()


def test_cpu_and_memory_are_reservations_with_modals_defaults():
    ledger = Ledger(Machine(2.0, 1000))
    assert Request.of(Resources()) == Request(0.125, 128)
    cpu = Request.of(Resources(cpu=1))
    assert ledger.take("a", cpu) and ledger.take("b", cpu)
    assert ledger.take("c", cpu) is None
    assert ledger.shortfall(cpu) == "waiting for CPU: 2 of 2 cores reserved, it asks 1"
    big = Ledger(Machine(8.0, 1000))
    memory = Request.of(Resources(memory=400))
    assert big.take("a", memory) and big.take("b", memory)
    assert big.take("c", memory) is None
    assert big.shortfall(memory) == "waiting for memory: 800 of 1000 MiB reserved, it asks 400"


def test_the_fake_inventory_and_the_capacity_settings_replace_discovery(monkeypatch):  # noqa: ANN001
    monkeypatch.setenv("SHOAL_FAKE_GPUS", "t4, A100-80GB")
    monkeypatch.setenv("SHOAL_CPUS", "3")
    monkeypatch.setenv("SHOAL_MEMORY_MIB", "2048")
    machine = discover()
    assert [(g.index, g.kind) for g in machine.gpus] == [(0, "T4"), (1, "A100-80GB")]
    assert (machine.cpus, machine.memory_mib, machine.fake_gpus) == (3.0, 2048, True)
