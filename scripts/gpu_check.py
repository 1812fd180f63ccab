"""The real-GPU check (issue 28): run on a machine with NVIDIA GPUs and their driver, from the repository root:

    python scripts/gpu_check.py            # about a minute; prints PASS/FAIL per check, exits 1 on any FAIL

What it checks, each line saying what it saw:
1. discovery: Shoal's ledger finds the GPUs nvidia-smi lists (NVML underneath), with Modal's type names;
2. assignment: two containers of a ``gpu="any"`` function run at once on two distinct GPUs (or, on a one-GPU
   machine, the second waits, saying "waiting for a GPU", and runs after the first);
3. CUDA inside the sandboxed container: through ``ctypes`` on the driver library (``libcuda.so.1``), no framework:
   it sees exactly its own GPU(s), allocates memory, keeps the GPU busy with device memsets for a few seconds,
   copies the result back and checks it;
4. utilization: what nvidia-smi reports while the containers compute (the dashboard's GPU charts are not built
   yet: see the README's "Resources and GPUs").

``--fake`` runs the same flow on SHOAL_FAKE_GPUS=T4,T4 with no CUDA (to try the script on a machine without GPUs).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import threading
from typing import Any

FAILED: list[str] = []


def report(ok: bool, what: str) -> None:
    print(f"{'PASS' if ok else 'FAIL'}  {what}", flush=True)
    if not ok:
        FAILED.append(what)


def compute(seconds: float, fake: bool) -> dict[str, Any]:
    """In the container: CUDA through the driver API (ctypes), or only the environment with fake GPUs."""
    import ctypes
    import os
    import time

    seen: dict[str, Any] = {"cuda_visible": os.environ.get("CUDA_VISIBLE_DEVICES"),
                            "nvidia_visible": os.environ.get("NVIDIA_VISIBLE_DEVICES"),
                            "start": time.time()}  # fmt: skip
    if fake:
        time.sleep(seconds)
        seen["end"] = time.time()
        return seen
    cuda = ctypes.CDLL("libcuda.so.1")

    def ok(code: int, what: str) -> None:
        if code != 0:
            raise RuntimeError(f"{what} failed with CUDA error {code}")

    ok(cuda.cuInit(0), "cuInit")
    count, device, ctx, ptr = ctypes.c_int(), ctypes.c_int(), ctypes.c_void_p(), ctypes.c_uint64()
    ok(cuda.cuDeviceGetCount(ctypes.byref(count)), "cuDeviceGetCount")
    ok(cuda.cuDeviceGet(ctypes.byref(device), 0), "cuDeviceGet")
    name = ctypes.create_string_buffer(128)
    ok(cuda.cuDeviceGetName(name, 128, device), "cuDeviceGetName")
    ok(cuda.cuCtxCreate_v2(ctypes.byref(ctx), 0, device), "cuCtxCreate")
    words = 1 << 26  # 256 MiB
    ok(cuda.cuMemAlloc_v2(ctypes.byref(ptr), ctypes.c_size_t(words * 4)), "cuMemAlloc")
    loops, deadline = 0, time.time() + seconds
    while time.time() < deadline:
        ok(cuda.cuMemsetD32_v2(ptr, ctypes.c_uint(loops + 1), ctypes.c_size_t(words)), "cuMemsetD32")
        loops += 1
        if loops % 50 == 0:
            ok(cuda.cuCtxSynchronize(), "cuCtxSynchronize")
    ok(cuda.cuCtxSynchronize(), "cuCtxSynchronize")
    host = (ctypes.c_uint32 * 4096)()
    ok(cuda.cuMemcpyDtoH_v2(host, ptr, ctypes.c_size_t(4096 * 4)), "cuMemcpyDtoH")
    seen.update(devices=count.value, name=name.value.decode(), loops=loops, correct=all(v == loops for v in host),
                end=time.time())  # fmt: skip
    return seen


def sample_utilization(stop: threading.Event, samples: list[str]) -> None:
    query = ["nvidia-smi", "--query-gpu=index,utilization.gpu,memory.used", "--format=csv,noheader,nounits"]
    while not stop.wait(1.0):
        found = subprocess.run(query, capture_output=True, text=True)
        if found.returncode == 0:
            samples.append(" | ".join(line.strip() for line in found.stdout.splitlines()))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fake", action="store_true", help="SHOAL_FAKE_GPUS=T4,T4 and no CUDA")
    parser.add_argument("--seconds", type=float, default=8.0, help="how long each container computes")
    args = parser.parse_args()
    if args.fake:
        os.environ["SHOAL_FAKE_GPUS"] = "T4,T4"
    os.environ.pop("SHOAL_SERVER_URL", None)  # an embedded server of its own, with this environment

    import shoal
    from shoal.backends.resources import discover

    machine = discover()
    listed = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True).stdout if not args.fake else ""
    print(f"nvidia-smi -L:\n{listed.strip() or '(fake inventory)'}")
    report(bool(machine.gpus), f"discovery: {machine.describe_gpus()} "
           f"({', '.join(f'{g.index}: {g.kind}, {g.memory_mib} MiB' for g in machine.gpus)})")  # fmt: skip
    if not machine.gpus:
        return 1
    app = shoal.App("gpu-check")
    check = app.function(gpu="any", max_containers=2, serialized=True)(compute)
    samples: list[str] = []
    stop = threading.Event()
    sampler = threading.Thread(target=sample_utilization, args=(stop, samples), daemon=True)
    if not args.fake:
        sampler.start()
    with app.run(show_logs=False):
        calls = [check.spawn(args.seconds, args.fake) for _ in range(2)]
        runs = [call.get(timeout=300) for call in calls]
    stop.set()
    for run in runs:
        print(f"container saw: {run}")
    at_once = runs[0]["start"] < runs[1]["end"] and runs[1]["start"] < runs[0]["end"]
    if len(machine.gpus) >= 2:
        distinct = runs[0]["cuda_visible"] != runs[1]["cuda_visible"]
        report(at_once and distinct, f"assignment: two containers at once on distinct GPUs "
               f"({runs[0]['cuda_visible']} and {runs[1]['cuda_visible']})")  # fmt: skip
    else:
        report(not at_once, "assignment: on one GPU the second container waited for the first")
    if not args.fake:
        for run in runs:
            report(run["devices"] == 1 and run["correct"] and run["loops"] > 0,
                   f"CUDA in the sandbox: sees {run['devices']} device ({run['name']}), {run['loops']} device memsets "
                   f"of 256 MiB, result {'correct' if run['correct'] else 'WRONG'}")  # fmt: skip
        busy = [s for s in samples if any(int(part.split(",")[1]) > 0 for part in s.split(" | "))]
        print("nvidia-smi while computing (index, utilization %, memory MiB):")
        for sample in samples:
            print(f"  {sample}")
        report(bool(busy), f"utilization: nvidia-smi saw the GPUs busy in {len(busy)} of {len(samples)} samples")
    print("FAILED: " + "; ".join(FAILED) if FAILED else "all checks passed")
    return 1 if FAILED else 0


if __name__ == "__main__":
    sys.exit(main())
