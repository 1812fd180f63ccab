"""The SQLite store reading what an older Shoal wrote (unversioned specs)."""

from __future__ import annotations

import json

import pytest

from shoal.protocol.specs import FunctionSpec, InvalidSpec
from shoal.server.store import SQLiteStore


@pytest.fixture
def store(tmp_path):  # noqa: ANN001, ANN201
    s = SQLiteStore(tmp_path / "state.db")
    s.create_app("ap-1", "app")
    s.create_function("fu-1", "ap-1", "f", FunctionSpec(max_containers=3, min_containers=1), None)
    yield s
    s.close()


def test_specs_stored_by_an_older_shoal_are_read_or_set_aside_without_stopping_the_others(store):
    # Given two functions stored before specs were versioned: one with a volume (its directory recorded), one with
    # an image the client had built
    old = {"timeout": 5, "startup_timeout": 60, "max_containers": 2, "min_containers": 1, "buffer_containers": 0,
           "scaledown_window": 60, "cpu": 1.0, "memory": None, "gpu": None, "env": {}, "is_async": False,
           "retries": {"max_retries": 1, "backoff_coefficient": 2.0, "initial_delay": 1.0, "max_delay": 60.0},
           "volumes": [{"path": "/data", "volume": "v", "read_only": False, "dir": "/srv/v"}]}  # fmt: skip
    for fid, extra in (("fu-old", {}), ("fu-img", {"image": {"python": "/x/bin/python", "hash": "h"}})):
        store.create_function(fid, "ap-1", fid, FunctionSpec(), None)
        store.db.execute("UPDATE functions SET spec=? WHERE id=?", (json.dumps({**old, **extra}), fid))
    # Then the first reads as today's spec, and the second is set aside with a message saying to redeploy
    spec = store.function("fu-old").spec
    assert (spec.resources.cpu, spec.volumes[0].volume, spec.retries.max_retries) == (1.0, "v", 1)
    with pytest.raises(InvalidSpec, match="deploy"):
        store.function("fu-img")
    assert {load.function_id for load in store.function_loads()} == {"fu-1", "fu-old"}
