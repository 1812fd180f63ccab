"""Named objects from code and from the shell (issue 25, items 10 and 11): ``.objects.create/list/delete`` on
Dict, Queue, Volume and Secret, ``Dict/Queue.from_id``, and ``shoal dict|queue`` as a user types them."""

from __future__ import annotations

import time

import pytest

import shoal
from shoal.exception import AlreadyExistsError, NotFoundError
from tests.e2e.test_cli import shoal_cli


def test_dicts_by_code_and_by_the_shoal_dict_commands(server):
    name = f"objs-{time.time_ns()}"
    shoal.Dict.objects.create(name)
    with pytest.raises(AlreadyExistsError, match="already exists"):
        shoal.Dict.objects.create(name)
    shoal.Dict.objects.create(name, allow_existing=True)
    assert name in [d.name for d in shoal.Dict.objects.list()]
    d = shoal.Dict.from_name(name)
    d.put("k", {"v": 1})
    assert shoal.Dict.from_id(d.object_id or "").get("k") == {"v": 1}  # by id, as another process would
    assert shoal_cli("dict", "get", name, "k").stdout.strip() == "{'v': 1}"
    assert "'k'" in shoal_cli("dict", "items", name).stdout and name in shoal_cli("dict", "list").stdout
    missing = shoal_cli("dict", "get", name, "nope")
    assert missing.returncode == 1 and "has no key 'nope'" in missing.stderr
    assert shoal_cli("dict", "clear", name, "--yes").returncode == 0 and d.len() == 0
    assert shoal_cli("dict", "delete", name, "--yes").returncode == 0
    assert name not in [x.name for x in shoal.Dict.objects.list()]
    again = shoal_cli("dict", "delete", name, "--yes")
    assert again.returncode == 1 and "does not exist" in again.stderr
    assert shoal_cli("dict", "delete", name, "--yes", "--allow-missing").returncode == 0


def test_queues_by_code_and_by_the_shoal_queue_commands(server):
    name = f"objq-{time.time_ns()}"
    assert shoal_cli("queue", "create", name).returncode == 0
    q = shoal.Queue.from_name(name)
    q.put_many([1, 2, 3])
    q.put("x", partition="p")
    assert shoal_cli("queue", "len", name).stdout.strip() == "3"
    assert shoal_cli("queue", "len", name, "--total").stdout.strip() == "4"
    assert shoal_cli("queue", "len", name, "-p", "p").stdout.strip() == "1"
    assert shoal_cli("queue", "peek", name, "2").stdout.split() == ["1", "2"] and q.len() == 3  # nothing taken
    assert name in shoal_cli("queue", "list").stdout
    assert shoal_cli("queue", "clear", name, "--yes").returncode == 0 and q.len() == 0 and q.len(total=True) == 1
    assert shoal_cli("queue", "clear", name, "--all", "--yes").returncode == 0
    assert shoal.Queue.from_id(q.object_id or "").len(total=True) == 0
    shoal.Queue.objects.delete(name)
    with pytest.raises(NotFoundError):
        shoal.Queue.objects.delete(name)


def test_volumes_and_secrets_by_their_objects_managers(server):
    volume, secret = f"objv-{time.time_ns()}", f"objs-{time.time_ns()}"
    shoal.Volume.objects.create(volume)
    with pytest.raises(AlreadyExistsError):
        shoal.Volume.objects.create(volume)
    assert volume in [v.name for v in shoal.Volume.objects.list()]
    shoal.Volume.objects.delete(volume)
    shoal.Volume.objects.delete(volume, allow_missing=True)
    assert volume not in [v.name for v in shoal.Volume.objects.list()]
    shoal.Secret.objects.create(secret, {"TOKEN": "abc"})
    with pytest.raises(AlreadyExistsError):
        shoal.Secret.objects.create(secret, {"TOKEN": "other"})
    assert secret in [s._name for s in shoal.Secret.objects.list()]
    shoal.Secret.objects.delete(secret)
    with pytest.raises(NotFoundError):
        shoal.Secret.objects.delete(secret)
