"""What local containers use: their processes' CPU and memory (psutil), their GPUs' utilization and memory
(nvidia-smi). A container's processes are found under the roots the backend started (its own process, or the fork
server it was forked from) by the ``SHOAL_CONTAINER_ID`` in their environment, which its children inherit."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from .base import Usage

if TYPE_CHECKING:
    import psutil


class Meter:
    """Measures on a worker thread; keeps each process between calls (CPU percent is since the last call)."""

    def __init__(self) -> None:
        self._procs: dict[int, psutil.Process] = {}
        self._owners: dict[int, str | None] = {}  # pid -> its container (None: not a container's process)

    def measure(self, roots: Sequence[int], gpus_of: Mapping[str, tuple[int, ...]]) -> dict[str, Usage]:
        """Each container's use now (``gpus_of``: the GPUs of those that hold real ones)."""
        import psutil  # here: ~6 ms of a server's start, where nothing is measured yet

        cpu: dict[str, float] = {}
        memory: dict[str, float] = {}
        alive: set[int] = set()
        for proc in self._tree(roots):
            owner = self._owner(proc)
            if owner is None:
                continue
            try:
                used = proc.cpu_percent(None), proc.memory_info().rss
            except psutil.Error:
                continue
            alive.add(proc.pid)
            cpu[owner] = cpu.get(owner, 0.0) + used[0]
            memory[owner] = memory.get(owner, 0.0) + used[1] / 2**20
        for pid in set(self._procs) - alive:
            self._procs.pop(pid, None)
            self._owners.pop(pid, None)
        gpus = gpu_usage() if gpus_of else {}
        usage = {}
        for cid in cpu:
            held = [gpus[i] for i in gpus_of.get(cid, ()) if i in gpus]
            gpu = sum(u for u, _ in held) / len(held) if held else None
            gpu_memory = sum(m for _, m in held) if held else None
            usage[cid] = Usage(round(cpu[cid], 1), round(memory[cid], 1), gpu, gpu_memory)
        return usage

    def _tree(self, roots: Sequence[int]) -> list[psutil.Process]:
        import psutil

        found = []
        for root in roots:
            try:
                top = psutil.Process(root)
                found += [top, *top.children(recursive=True)]
            except psutil.Error:
                continue
        return [self._procs.setdefault(p.pid, p) for p in found]

    def _owner(self, proc: psutil.Process) -> str | None:
        """The container a process belongs to; read again until found (a forked container writes its own
        environment just after the fork)."""
        import psutil

        if self._owners.get(proc.pid) is None:
            try:
                self._owners[proc.pid] = proc.environ().get("SHOAL_CONTAINER_ID") or None
            except psutil.Error:
                return None
        return self._owners[proc.pid]


def gpu_usage() -> dict[int, tuple[float, float]]:
    """Each GPU's utilization (percent) and memory in use (MiB), by index, as nvidia-smi reports them now."""
    if shutil.which("nvidia-smi") is None:
        return {}
    query = ["nvidia-smi", "--query-gpu=index,utilization.gpu,memory.used", "--format=csv,noheader,nounits"]
    try:
        found = subprocess.run(query, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return {}
    usage = {}
    for line in found.stdout.splitlines() if found.returncode == 0 else []:
        parts = [p.strip() for p in line.split(",")]
        try:
            usage[int(parts[0])] = (float(parts[1]), float(parts[2]))
        except (ValueError, IndexError):
            continue
    return usage
