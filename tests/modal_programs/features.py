"""Modal's core features through `import modal` only: starmap, for_each, spawn_map, @concurrent, Volume, Queue,
Secret, timeouts. Run with `shoal run tests/modal_programs/features.py`."""

import os
import time

import modal

app = modal.App("modal-features")
volume = modal.Volume.from_name("modal-features-vol", create_if_missing=True)


@app.function(secrets=[modal.Secret.from_dict({"GREETING": "hi"})], volumes={"/data": volume})
def greet(name: str, punctuation: str) -> str:
    with open(f"/data/{name}.txt", "w") as f:
        f.write(name)
    volume.commit()
    return f"{os.environ['GREETING']} {name}{punctuation}"


@app.function()
@modal.concurrent(max_inputs=4)
async def wait_a_bit(x: int) -> int:
    import asyncio

    await asyncio.sleep(0.2)
    return x


@app.function(timeout=1)
def too_slow() -> None:
    time.sleep(5)


@app.function()
def report(q: modal.Queue, x: int) -> None:
    q.put(x)


@app.local_entrypoint()
def main() -> None:
    print("STARMAP", list(greet.starmap([("ann", "!"), ("bob", "?")])))
    print("CONCURRENT", sorted(wait_a_bit.map(range(4))))
    with modal.Queue.ephemeral() as q:
        report.for_each([q] * 3, range(3))
        print("FOREACH", sorted(q.get_many(3)))
    call = greet.spawn_map(["cy"], ["."])
    print("SPAWNMAP", modal.FunctionCall.from_id(call.object_id).get(index=0, timeout=60))
    print("VOLUME", sorted(e.path for e in volume.listdir("/")))
    try:
        too_slow.remote()
    except modal.exception.FunctionTimeoutError:
        print("TIMEOUT ok")
