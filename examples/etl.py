"""The README tour's app: an ETL batch that fans one function out over its items.

shoal run examples/etl.py --day 2026-11-01 --dry-run
shoal run examples/etl.py::process_item --item '{"id": 3, "value": 5}'
shoal run --detach examples/etl.py
shoal deploy examples/etl.py
"""

from __future__ import annotations

import shoal as modal

app = modal.App("etl")


@app.function(timeout=600, retries=modal.Retries(max_retries=3), max_containers=8)
def process_item(item: dict) -> dict:
    return {"id": item["id"], "processed_value": item["value"] * 2}


@app.local_entrypoint()
def main(day: str = "2026-11-01", dry_run: bool = False, count: int = 1000) -> None:
    items = [{"id": i, "value": i} for i in range(count)]
    if dry_run:
        print(f"{day}: would process {len(items)} items")
        return
    total = sum(result["processed_value"] for result in process_item.map(items))
    print(f"{day}: processed {len(items)} items, total {total}")
