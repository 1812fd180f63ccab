"""Shoal quick start: fan a function out over local containers.  Run: python examples/quickstart.py"""

import shoal as modal

app = modal.App("one-off-batch-job")


@app.function(
    timeout=600,
    retries=modal.Retries(max_retries=3, backoff_coefficient=2.0, initial_delay=1.0),
    max_containers=4,
    cpu=1.0,
    memory=512,
)
def process_item(item: dict) -> dict:
    return {"id": item["id"], "processed_value": item["value"] * 2}


@app.function(timeout=3600)
def run_batch(items: list[dict]) -> list[dict]:
    print(f"run_batch: fanning out {len(items)} items from inside a container")
    return list(process_item.map(items))  # nested fan-out from inside a container


if __name__ == "__main__":
    items = [{"id": i, "value": i} for i in range(100)]
    with app.run():
        print("remote:", process_item.remote({"id": 1, "value": 2}))
        results = list(process_item.map(items, order_outputs=False, return_exceptions=True))
        print(f"map: {len(results)} results, e.g. {sorted(r['id'] for r in results)[:5]}")
        call = run_batch.spawn(items)
        print("spawned", call.object_id)
        batch = modal.FunctionCall.from_id(call.object_id).get(timeout=60)
        print(f"run_batch returned {len(batch)} items; last = {batch[-1]}")
