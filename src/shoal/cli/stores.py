"""``shoal dict`` and ``shoal queue``: named Dicts and Queues from the shell (Modal 1.1's commands). Keys given on
the command line are strings; values are shown as Python writes them (``repr``)."""

from __future__ import annotations

import itertools
from typing import Any

import click

from .main import friendly_errors


def _table(title: str, columns: list[str], rows: list[list[Any]]) -> None:
    from .manage import _table as table

    table(title, columns, rows)


@click.group("dict")
def dict_group() -> None:
    """Create, list, read, clear and delete named Dicts."""


@dict_group.command("create")
@click.argument("name")
@click.option("--allow-existing", is_flag=True, help="Do nothing when it exists already.")
@friendly_errors
def dict_create(name: str, allow_existing: bool) -> None:
    from ..dict import Dict

    Dict.objects.create(name, allow_existing=allow_existing)
    click.echo(f"✓ Dict {name!r} ready")


@dict_group.command("list")
@friendly_errors
def dict_list() -> None:
    from ..dict import Dict

    _table("Dicts", ["name", "items"], [[d.name, d.len()] for d in Dict.objects.list()])


@dict_group.command("get")
@click.argument("name")
@click.argument("key")
@friendly_errors
def dict_get(name: str, key: str) -> None:
    """Print the value of KEY (a string key)."""
    from ..dict import Dict

    d = Dict.from_name(name)
    if not d.contains(key):
        raise click.ClickException(f"Dict {name!r} has no key {key!r}")
    click.echo(repr(d.get(key)))


@dict_group.command("items")
@click.argument("name")
@click.argument("n", type=int, default=20)
@friendly_errors
def dict_items(name: str, n: int) -> None:
    """Print the first N items (20 by default)."""
    from ..dict import Dict

    d = Dict.from_name(name)
    rows = [[repr(k), repr(v)] for k, v in itertools.islice(d.items(), n)]
    _table(f"{name} ({d.len()} items)", ["key", "value"], rows)


@dict_group.command("clear")
@click.argument("name")
@click.option("-y", "--yes", is_flag=True, help="Do not ask.")
@friendly_errors
def dict_clear(name: str, yes: bool) -> None:
    from ..dict import Dict

    if not yes:
        click.confirm(f"Remove every item of Dict {name!r}?", abort=True)
    Dict.from_name(name).clear()
    click.echo(f"✓ Cleared Dict {name!r}")


@dict_group.command("delete")
@click.argument("name")
@click.option("-y", "--yes", is_flag=True, help="Do not ask.")
@click.option("--allow-missing", is_flag=True, help="Do nothing when it does not exist.")
@friendly_errors
def dict_delete(name: str, yes: bool, allow_missing: bool) -> None:
    from ..dict import Dict

    if not yes:
        click.confirm(f"Delete Dict {name!r} and its items?", abort=True)
    Dict.objects.delete(name, allow_missing=allow_missing)
    click.echo(f"✓ Deleted Dict {name!r}")


@click.group("queue")
def queue_group() -> None:
    """Create, list, peek at, clear and delete named Queues."""


@queue_group.command("create")
@click.argument("name")
@click.option("--allow-existing", is_flag=True, help="Do nothing when it exists already.")
@friendly_errors
def queue_create(name: str, allow_existing: bool) -> None:
    from ..queue import Queue

    Queue.objects.create(name, allow_existing=allow_existing)
    click.echo(f"✓ Queue {name!r} ready")


@queue_group.command("list")
@friendly_errors
def queue_list() -> None:
    from ..queue import Queue

    _table("Queues", ["name", "items (all partitions)"], [[q.name, q.len(total=True)] for q in Queue.objects.list()])


@queue_group.command("len")
@click.argument("name")
@click.option("-p", "--partition", default=None, help="One partition (default: the unnamed one).")
@click.option("-t", "--total", is_flag=True, help="Every partition's items.")
@friendly_errors
def queue_len(name: str, partition: str | None, total: bool) -> None:
    from ..queue import Queue

    click.echo(Queue.from_name(name).len(partition=partition, total=total))


@queue_group.command("peek")
@click.argument("name")
@click.argument("n", type=int, default=1)
@click.option("-p", "--partition", default=None, help="One partition (default: the unnamed one).")
@friendly_errors
def queue_peek(name: str, n: int, partition: str | None) -> None:
    """Print the next N items without taking them."""
    from ..queue import Queue

    for item in itertools.islice(Queue.from_name(name).iterate(partition=partition), n):
        click.echo(repr(item))


@queue_group.command("clear")
@click.argument("name")
@click.option("-p", "--partition", default=None, help="One partition (default: the unnamed one).")
@click.option("-a", "--all", "everything", is_flag=True, help="Every partition.")
@click.option("-y", "--yes", is_flag=True, help="Do not ask.")
@friendly_errors
def queue_clear(name: str, partition: str | None, everything: bool, yes: bool) -> None:
    from ..queue import Queue

    if not yes:
        click.confirm(f"Remove the items of Queue {name!r}?", abort=True)
    Queue.from_name(name).clear(partition=partition, all=everything)
    click.echo(f"✓ Cleared Queue {name!r}")


@queue_group.command("delete")
@click.argument("name")
@click.option("-y", "--yes", is_flag=True, help="Do not ask.")
@click.option("--allow-missing", is_flag=True, help="Do nothing when it does not exist.")
@friendly_errors
def queue_delete(name: str, yes: bool, allow_missing: bool) -> None:
    from ..queue import Queue

    if not yes:
        click.confirm(f"Delete Queue {name!r} and its items?", abort=True)
    Queue.objects.delete(name, allow_missing=allow_missing)
    click.echo(f"✓ Deleted Queue {name!r}")
