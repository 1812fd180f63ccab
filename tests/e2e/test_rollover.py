"""Deploy strategies (issue 25, item 12; Modal 1.4): `shoal app rollover` gives a deployed app fresh containers
(rolling: each finishes its inputs first; recreate: at once), and `shoal deploy --strategy recreate` stops the
old version's containers at once instead of letting them scale down."""

from __future__ import annotations

import json

import shoal
from tests.conftest import REPO
from tests.e2e.test_cli import shoal_cli

APP = str(REPO / "tests" / "apps" / "rollover.py")


def _reason(container_id: str) -> str:
    rows = json.loads(shoal_cli("container", "list", "--all", "--json").stdout)
    return next(r["stop_reason"] or r["state"] for r in rows if r["container_id"] == container_id)


def test_rollover_and_a_recreate_deploy_replace_a_deployed_apps_containers(server):
    assert shoal_cli("deploy", APP).returncode == 0
    where = shoal.Function.from_name("tests-rollover", "where")
    first = where.remote()
    assert where.remote() == first  # a warm container serves again (scaledown_window=120)
    rolled = shoal_cli("app", "rollover", "tests-rollover")
    assert rolled.returncode == 0 and "1 container of tests-rollover replaced (rolling)" in rolled.stdout, rolled
    second = where.remote()
    assert second != first and _reason(first).startswith("replaced (rolling) (graceful)")
    recreated = shoal_cli("deploy", APP, "--strategy", "recreate")
    assert recreated.returncode == 0, recreated.stderr
    assert _reason(second).startswith("replaced (recreate)")
    assert shoal.Function.from_name("tests-rollover", "where").remote() not in (first, second)
    not_deployed = shoal_cli("app", "rollover", "no-such-app-here")
    assert not_deployed.returncode == 1 and "no app 'no-such-app-here'" in not_deployed.stderr
