"""A Modal-style ETL program using Modal's import forms; run with `shoal run tests/modal_programs/etl.py`."""

import modal
import modal.partial_function
from modal import App, Dict, Retries
from modal.exception import NotFoundError, SandboxTimeoutError
from modal.functions import FunctionCall

app = App("modal-etl")
image = modal.Image.debian_slim()


@app.function(image=image, retries=Retries(max_retries=2, initial_delay=0.0), max_containers=2)
def transform(row: dict) -> dict:
    import modal as inside  # the container reads `modal` as Shoal too

    return {"id": row["id"], "value": row["value"] * 10, "alias": inside.App.__module__}


@app.function(schedule=modal.Cron("0 6 * * *", timezone="America/New_York"))
def nightly() -> str:
    return "ran"


@app.cls()
class Counter:
    start: int = modal.parameter(default=100)

    @modal.enter()
    def load(self) -> None:
        self.base = self.start

    @modal.method()
    def add(self, x: int) -> int:
        return self.base + x


@app.local_entrypoint()
def main(rows: int = 20) -> None:
    out = list(transform.map([{"id": i, "value": i} for i in range(rows)]))
    assert [r["value"] for r in out] == [10 * i for i in range(rows)]
    print("ALIAS", out[0]["alias"])
    call = transform.spawn({"id": 99, "value": 1})
    print("SPAWNED", FunctionCall.from_id(call.object_id).get(timeout=60)["value"])
    print("CLS", Counter(start=1).add.remote(2))
    with Dict.ephemeral() as d:
        d["k"] = "v"
        print("DICT", d["k"])
    try:
        FunctionCall.from_id("fc-00000000000000000000").get(timeout=5)
    except (NotFoundError, SandboxTimeoutError) as exc:
        print("NOTFOUND", type(exc).__name__)
    print("PARTIAL", modal.partial_function.method is modal.method)
