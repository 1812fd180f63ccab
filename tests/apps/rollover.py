"""A deployed app whose containers are replaced by `shoal app rollover` and `shoal deploy --strategy recreate`."""

from __future__ import annotations

import os

import shoal

app = shoal.App("tests-rollover")


@app.function(scaledown_window=120)
def where() -> str:
    return os.environ.get("SHOAL_CONTAINER_ID", "")
