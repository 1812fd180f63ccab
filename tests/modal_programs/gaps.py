"""Modal features that real programs use: an async local entrypoint, @batched alone on a class method,
app.image.imports(), a generator function. Run with `shoal run tests/modal_programs/gaps.py`."""

import modal

app = modal.App("modal-gaps")

with app.image.imports():
    import json  # noqa: F401 - imported the way Modal programs import image-only packages


@app.cls()
class Embedder:
    @modal.batched(max_batch_size=8, wait_ms=50)
    def embed(self, texts: list[str]) -> list[int]:
        return [len(t) for t in texts]


@app.function()
async def shout(word: str) -> str:
    return word.upper()


@app.function()
def countdown(n: int):  # noqa: ANN201
    yield from range(n, 0, -1)


@app.local_entrypoint()
async def main() -> None:
    loud = await shout.remote.aio("hello")
    sizes = list(Embedder().embed.map(["a", "bb", "ccc"]))
    streamed = [x async for x in countdown.remote_gen.aio(3)]
    print("ASYNC", loud, "BATCHED", sizes, "GEN", streamed)
