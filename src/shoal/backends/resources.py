"""What one machine offers containers, and what each container holds of it: the local backend's resource ledger.

- **The machine** (:func:`discover`): its CPUs and memory (``SHOAL_CPUS`` and ``SHOAL_MEMORY_MIB`` say how much
  of it containers may have), and its GPUs, each with its type and memory: ``nvidia-smi`` lists them (only those in
  the server's own ``CUDA_VISIBLE_DEVICES`` when that is set), or ``SHOAL_FAKE_GPUS=T4,T4`` declares GPUs with no
  hardware (tests, and trying the GPU paths on a laptop).
- **A container's request** (:class:`Request`): ``cpu=`` as a reservation (Modal's default, 0.125 cores, when
  unset), ``memory=`` (Modal's default request, 128 MiB), ``gpu=`` in Modal's forms: ``"T4"``, ``"H100:2"``,
  ``"any"``, a list of types in order of preference, any case.
- **The ledger** (:class:`Ledger`): a container starts only where its whole request fits; what does not fit waits,
  and :meth:`Ledger.shortfall` says for what ("waiting for a GPU (T4): 2 of 2 in use"). What no amount of waiting
  could give (a type the machine lacks, more GPUs, CPUs or memory than it has) is refused when the function
  registers (:meth:`Ledger.check`), naming what the machine has.

On a machine without GPUs, ``gpu=`` reserves nothing and the container runs on CPU (the client warns, as before).
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess

import msgspec

from ..config import settings
from ..exception import InvalidError
from ..protocol.specs import Resources
from .base import Unplaceable

DEFAULT_CPU = 0.125  # Modal's default CPU request, in cores
DEFAULT_MEMORY_MIB = 128  # Modal's default memory request
# GPU types by the names Modal uses, most specific first: a name like "NVIDIA A100-SXM4-80GB" is the first one
# found in it as a word. An A100 with more than 50 GB is an "A100-80GB".
KNOWN_TYPES = ("B200", "H200", "H100", "A100", "L40S", "A10G", "A10", "L40", "L4", "T4", "V100", "P100", "A40")
KNOWN_MEMORY_MIB = {"T4": 15360, "L4": 23034, "A10G": 23028, "A10": 23028, "L40S": 46068, "A100": 40960,
                    "A100-80GB": 81920, "H100": 81559, "H200": 143771, "B200": 183359}  # fmt: skip
# what a request for one type may also get (Modal upgrades A100 to A100-80GB and H100 to H200; "H100!" never)
UPGRADES = {"A100": ("A100-80GB",), "A100-40GB": ("A100-80GB",), "H100": ("H200",)}
ALIASES = {"A100-40GB": "A100"}


class Gpu(msgspec.Struct, frozen=True):
    """One GPU of the machine: its index (as ``nvidia-smi`` counts), type, memory and UUID (none when fake)."""

    index: int
    kind: str
    memory_mib: int
    uuid: str = ""


class Machine(msgspec.Struct, frozen=True):
    """What containers may have of this machine."""

    cpus: float
    memory_mib: int
    gpus: tuple[Gpu, ...] = ()
    fake_gpus: bool = False  # declared by SHOAL_FAKE_GPUS: no devices to pass through

    def describe_gpus(self) -> str:
        counts: dict[str, int] = {}
        for g in self.gpus:
            counts[g.kind] = counts.get(g.kind, 0) + 1
        return ", ".join(f"{n} x {k}" for k, n in sorted(counts.items())) or "no GPUs"


class GpuRequest(msgspec.Struct, frozen=True):
    """``gpu=`` parsed: the acceptable types in order of preference (empty: any type), and how many."""

    kinds: tuple[str, ...]
    count: int

    def accepts(self, gpu: Gpu) -> int | None:
        """How well ``gpu`` serves this request: its rank among the types asked for (lower is better), or None."""
        if not self.kinds:
            return 0
        for rank, kind in enumerate(self.kinds):
            exact = kind.rstrip("!")
            if gpu.kind == ALIASES.get(exact, exact):
                return 2 * rank
            if not kind.endswith("!") and gpu.kind in UPGRADES.get(exact, ()):
                return 2 * rank + 1
        return None

    def describe(self) -> str:
        kinds = " or ".join(self.kinds) if self.kinds else "any type"
        return f"{self.count} GPU{'s' if self.count > 1 else ''} ({kinds})"


def parse_gpu(text: str) -> GpuRequest:
    """Modal's ``gpu=`` forms, any case: ``"T4"``, ``"H100:2"``, ``"any"``, ``"any:2"``, and a preference list
    (``"H100,A100-80GB"``: the SDK joins a list with commas; every entry asks for the same count).

    Raises:
        InvalidError: a form that is none of these.
    """
    kinds: list[str] = []
    counts: set[int] = set()
    for part in (p.strip() for p in text.split(",")):
        kind, _, count = part.partition(":")
        kind = kind.strip().upper()
        if not kind or not re.fullmatch(r"[A-Z0-9][A-Z0-9-]*!?", kind) or (count and not count.strip().isdigit()):
            raise InvalidError(
                f"gpu={text!r} is not a GPU request: use a type such as 'T4' or 'H100', with a "
                "count after a colon ('H100:2'), 'any', or a list of types in order of preference."
            )
        counts.add(int(count) if count else 1)
        if kind != "ANY":
            kinds.append(kind)
    if len(counts) != 1 or min(counts) < 1:
        raise InvalidError(f"gpu={text!r}: ask for one count of at least 1 for every type in the list.")
    return GpuRequest(tuple(kinds), counts.pop())


class Request(msgspec.Struct, frozen=True):
    """What one container reserves of the machine."""

    cpu: float = DEFAULT_CPU
    memory_mib: int = DEFAULT_MEMORY_MIB
    gpu: GpuRequest | None = None

    @classmethod
    def of(cls, resources: Resources) -> Request:
        gpu = parse_gpu(resources.gpu) if resources.gpu else None
        cpu = float(resources.cpu) if resources.cpu is not None else DEFAULT_CPU
        return cls(cpu, int(resources.memory or DEFAULT_MEMORY_MIB), gpu)


class Grant(msgspec.Struct, frozen=True):
    """What a placed container holds: its CPUs, memory and GPU indexes."""

    cpu: float
    memory_mib: int
    gpus: tuple[int, ...] = ()


class Ledger(msgspec.Struct):
    """The machine's capacity and what placed containers hold of it. Not thread-safe: the event loop's."""

    machine: Machine
    cpu_used: float = 0.0
    memory_used: int = 0
    gpus_held: dict[int, str] = msgspec.field(default_factory=dict)  # GPU index -> the container holding it

    def check(self, request: Request) -> None:
        """Refuse what this machine could never place, naming what it has.

        Raises:
            Unplaceable: more CPUs, memory or GPUs than the machine has, or a GPU type it lacks.
        """
        m = self.machine
        if request.cpu > m.cpus + 1e-9:
            raise Unplaceable(f"cpu={request.cpu:g}: this machine offers containers {m.cpus:g} CPUs in all; "
                              "ask for fewer (or set SHOAL_CPUS on the server).")  # fmt: skip
        if request.memory_mib > m.memory_mib:
            raise Unplaceable(f"memory={request.memory_mib}: this machine offers containers {m.memory_mib} MiB in "
                              "all; ask for less.")  # fmt: skip
        if request.gpu is None or not m.gpus:
            return
        fitting = [g for g in m.gpus if request.gpu.accepts(g) is not None]
        if len(fitting) < request.gpu.count:
            some = f"only {len(fitting)} of them" if fitting else "none"
            raise Unplaceable(f"gpu asks for {request.gpu.describe()}, and {some} on this machine, which has "
                              f"{m.describe_gpus()}: ask for one of those, or gpu='any'.")  # fmt: skip

    def take(self, container_id: str, request: Request) -> Grant | None:
        """Reserve ``request`` for a container, or None while it does not fit."""
        if self.shortfall(request) is not None:
            return None
        gpus = self._gpus_for(request)
        assert gpus is not None
        self.cpu_used += request.cpu
        self.memory_used += request.memory_mib
        for index in gpus:
            self.gpus_held[index] = container_id
        return Grant(request.cpu, request.memory_mib, gpus)

    def give_back(self, grant: Grant) -> None:
        self.cpu_used = max(0.0, self.cpu_used - grant.cpu)
        self.memory_used = max(0, self.memory_used - grant.memory_mib)
        for index in grant.gpus:
            self.gpus_held.pop(index, None)

    def shortfall(self, request: Request) -> str | None:
        """What a request waits for now ("a GPU (T4): 2 of 2 in use"), or None when it fits."""
        m = self.machine
        if self._gpus_for(request) is None:
            assert request.gpu is not None
            fitting = [g for g in m.gpus if request.gpu.accepts(g) is not None]
            busy = sum(g.index in self.gpus_held for g in fitting)
            kinds = "/".join(request.gpu.kinds) or "any"
            what = "a GPU" if request.gpu.count == 1 else f"{request.gpu.count} GPUs"
            return f"waiting for {what} ({kinds}): {busy} of {len(fitting)} in use"
        if self.cpu_used + request.cpu > m.cpus + 1e-9:
            return f"waiting for CPU: {self.cpu_used:g} of {m.cpus:g} cores reserved, it asks {request.cpu:g}"
        if self.memory_used + request.memory_mib > m.memory_mib:
            return (f"waiting for memory: {self.memory_used} of {m.memory_mib} MiB reserved, it asks "
                    f"{request.memory_mib}")  # fmt: skip
        return None

    def _gpus_for(self, request: Request) -> tuple[int, ...] | None:
        """The free GPUs a request would get (the best-ranked types first), () for none asked, None if too few."""
        if request.gpu is None or not self.machine.gpus:
            return ()
        ranked = sorted((rank, g.index) for g in self.machine.gpus
                        if g.index not in self.gpus_held and (rank := request.gpu.accepts(g)) is not None)  # fmt: skip
        if len(ranked) < request.gpu.count:
            return None
        return tuple(sorted(index for _, index in ranked[: request.gpu.count]))

    def usage(self) -> dict[str, object]:
        """What is reserved now, for ``shoal server status`` and the dashboard."""
        return {"cpu_reserved": round(self.cpu_used, 3), "memory_reserved_mib": self.memory_used,
                "gpus_in_use": len(self.gpus_held), "gpu_types": self.machine.describe_gpus()}  # fmt: skip


def gpu_kind(name: str, memory_mib: int = 0) -> str:
    """Modal's name for a GPU that NVML calls ``name`` ("Tesla T4" -> "T4", "NVIDIA A100-SXM4-80GB" ->
    "A100-80GB"); an unknown one keeps its own name, upper-case, without the vendor ("RTX-4090")."""
    upper = name.upper()
    for kind in KNOWN_TYPES:
        if re.search(rf"(?<![A-Z0-9]){kind}(?![A-Z0-9])", upper):
            if kind == "A100" and (memory_mib > 50_000 or "80G" in upper):
                return "A100-80GB"
            return kind
    words = [w for w in re.split(r"\s+", upper) if w and w not in ("NVIDIA", "TESLA", "GEFORCE", "QUADRO")]
    return "-".join(words) or "GPU"


def total_memory_mib() -> int:
    """This machine's memory (MiB), as the kernel counts it (``MemTotal``)."""
    return int(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") // 2**20)


def discover() -> Machine:
    """This machine as containers may have it (see the module's docstring for the settings that shape it)."""
    config = settings()
    cpus = config.cpus or float(len(os.sched_getaffinity(0)))
    memory = config.memory_mib or total_memory_mib()
    fake = config.fake_gpus
    if fake is not None:
        kinds = [gpu_kind(k) for k in fake]
        gpus = tuple(Gpu(i, k, KNOWN_MEMORY_MIB.get(k, 16384)) for i, k in enumerate(kinds))
        return Machine(cpus, memory, gpus, fake_gpus=True)
    return Machine(cpus, memory, _visible(nvidia_gpus()))


def _visible(gpus: tuple[Gpu, ...]) -> tuple[Gpu, ...]:
    """The GPUs the server's own ``CUDA_VISIBLE_DEVICES`` names by index (all when it is unset)."""
    raw = os.environ.get("CUDA_VISIBLE_DEVICES")
    if raw is None:
        return gpus
    wanted = {int(p) for p in raw.split(",") if p.strip().isdigit()}
    return tuple(g for g in gpus if g.index in wanted)


@functools.cache
def nvidia_gpus() -> tuple[Gpu, ...]:
    """The machine's NVIDIA GPUs, as ``nvidia-smi`` lists them (NVML underneath); none without the driver."""
    if shutil.which("nvidia-smi") is None:
        return ()
    query = ["nvidia-smi", "--query-gpu=index,name,memory.total,uuid", "--format=csv,noheader,nounits"]
    try:
        found = subprocess.run(query, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return ()
    gpus = []
    for line in found.stdout.splitlines() if found.returncode == 0 else []:
        parts = [p.strip() for p in line.split(",")]
        if len(parts) == 4 and parts[0].isdigit():
            memory = int(float(parts[2])) if parts[2].replace(".", "").isdigit() else 0
            gpus.append(Gpu(int(parts[0]), gpu_kind(parts[1], memory), memory, parts[3]))
    return tuple(gpus)


def device_nodes(indexes: tuple[int, ...]) -> list[str]:
    """The ``/dev`` nodes a container with these GPUs needs: theirs and the driver's shared ones (those present)."""
    nodes = [f"/dev/nvidia{i}" for i in indexes]
    nodes += ["/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools", "/dev/nvidia-modeset"]
    return [n for n in nodes if os.path.exists(n)]
