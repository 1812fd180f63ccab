"""Finding what ``shoal run``/``shoal deploy`` should run: import a file or module, pick the app and entrypoint,
and turn the entrypoint's signature into command-line options."""

from __future__ import annotations

import datetime
import functools
import importlib
import inspect
import json
import sys
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import click

from ..app import App
from ..cls import class_methods
from ..exception import InvalidError


@dataclass(frozen=True)
class Entry:
    app: App
    name: str
    func: Callable[..., Any]  # the entrypoint to call locally, or Function.remote for a plain function
    params_of: Callable[..., Any]  # whose signature becomes the command-line options


def import_target(target: str, as_module: bool) -> tuple[ModuleType, str | None]:
    """Import ``FILE.py[::ref]`` (or ``package.module[::ref]`` with -m); returns (module, ref)."""
    path_part, _, ref = target.partition("::")
    if as_module:
        sys.path.insert(0, str(Path.cwd()))
        name = path_part
    else:
        path = Path(path_part).resolve()
        if not path.is_file():
            raise click.UsageError(f"No such file: {path_part}")
        if path.suffix != ".py":
            raise click.UsageError(f"{path_part} is not a Python file (expected FILE.py, or -m package.module)")
        sys.path.insert(0, str(path.parent))
        name = path.stem
    try:
        module = importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (name == exc.name or name.startswith(exc.name + ".")):
            where = "the current directory or the installed packages" if as_module else str(Path(path_part).parent)
            raise click.UsageError(f"No module named {name!r} (looked in {where})") from exc
        raise
    except SyntaxError as exc:  # the user's file, line and message: not importlib's stack
        code = f"\n    {exc.text.rstrip()}" if exc.text else ""
        raise click.ClickException(f"{exc.msg} in {exc.filename}, line {exc.lineno}:{code}") from None
    except InvalidError as exc:  # the app's definition is invalid (an unknown option): a usage error
        raise click.UsageError(str(exc)) from None
    return module, ref or None


def apps_in(module: ModuleType) -> list[App]:
    return [v for v in vars(module).values() if isinstance(v, App)]


def find_app(module: ModuleType) -> App:
    apps = apps_in(module)
    if len(apps) != 1:
        found = "no App" if not apps else f"{len(apps)} Apps"
        raise click.UsageError(f"{module.__name__} defines {found}; it must define exactly one shoal.App.")
    return apps[0]


def find_entry(module: ModuleType, ref: str | None) -> Entry:
    """The entrypoint ``ref`` names, or the only one there is."""
    apps = apps_in(module)
    if not apps:
        raise click.UsageError(f"{module.__name__} defines no shoal.App.")
    entries: dict[str, Entry] = {}
    functions: dict[str, Entry] = {}
    for app in apps:
        for name, f in app.local_entrypoints.items():
            entries[name] = Entry(app, name, f, f)
        for tag, fn in app.registered_functions.items():
            if tag not in app.registered_classes:
                functions[tag] = Entry(app, tag, fn.remote, fn.get_raw_f())
        for tag, cls in app.registered_classes.items():
            for method_name in class_methods(cls.user_cls):  # type: ignore[arg-type]
                raw = getattr(cls.user_cls, method_name)
                handle = getattr(cls(), method_name)
                functions[f"{tag}.{method_name}"] = Entry(app, f"{tag}.{method_name}", handle.remote,
                                                          functools.partial(raw, None))  # fmt: skip
    if ref is not None:
        entry = entries.get(ref) or functions.get(ref)
        if entry is None:
            choices = ", ".join(sorted(entries) + sorted(functions)) or "none"
            raise click.UsageError(f"No entrypoint or function {ref!r} in {module.__name__}; choose one of: {choices}")
        return entry
    if len(entries) == 1:
        return next(iter(entries.values()))
    if not entries and len(functions) == 1:
        return next(iter(functions.values()))
    listed = sorted(entries) if entries else sorted(functions)
    raise click.UsageError(
        f"{module.__name__} has several entrypoints; pick one with FILE.py::NAME. Choices: {', '.join(listed)}"
    )


def _click_type(annotation: Any) -> tuple[Any, bool]:
    """(click type, is optional) for a parameter annotation."""
    optional = False
    origin = typing.get_origin(annotation)
    if origin is typing.Union or str(origin) == "types.UnionType":
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        optional = len(args) < len(typing.get_args(annotation))
        annotation = args[0] if len(args) == 1 else str
        origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return click.Choice([str(v) for v in typing.get_args(annotation)]), optional
    mapping = {str: click.STRING, int: click.INT, float: click.FLOAT, bool: click.BOOL,
               datetime.datetime: click.DateTime()}  # fmt: skip
    if annotation is inspect.Parameter.empty:
        return click.STRING, optional
    return mapping.get(annotation, JSON), optional  # dict, list and every other type: a JSON value


class JsonValue(click.ParamType):  # type: ignore[type-arg]
    """A parameter of any other type (dict, list, ...) is given as JSON: --config '{"a": 1}'."""

    name = "json"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if not isinstance(value, str):
            return value
        try:
            return json.loads(value)
        except json.JSONDecodeError as exc:
            self.fail(f"{value!r} is not valid JSON ({exc.msg}); e.g. --{param.name if param else 'x'} "
                      "'{\"key\": 1}'", param, ctx)  # fmt: skip


JSON = JsonValue()


def _literal_value(annotation: Any, raw: Any) -> Any:
    for candidate in typing.get_args(annotation):
        if str(candidate) == raw:
            return candidate
    return raw


def parse_entry_args(entry: Entry, args: list[str]) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """Turn command-line args into the entrypoint's arguments (``--name value``; bools as ``--x/--no-x``)."""
    signature = inspect.signature(entry.params_of)
    params = list(signature.parameters.values())
    if any(p.kind == p.VAR_POSITIONAL for p in params):
        return tuple(args), {}
    target = entry.params_of.func if isinstance(entry.params_of, functools.partial) else entry.params_of
    hints = typing.get_type_hints(target)
    options: list[click.Parameter] = []
    for p in params:
        annotation = hints.get(p.name, p.annotation)
        ctype, optional = _click_type(annotation)
        flag = "--" + p.name.replace("_", "-")
        required = p.default is inspect.Parameter.empty and not optional
        default = None if p.default is inspect.Parameter.empty else p.default
        if ctype is click.BOOL:
            options.append(click.Option([f"{flag}/--no-{flag[2:]}", p.name], default=default, required=required))
        else:
            help_text = "a JSON value" if ctype is JSON else None
            options.append(click.Option([flag, p.name], type=ctype, default=default, required=required, help=help_text))
    command = click.Command(entry.name, params=options, callback=lambda **kw: kw, help=target.__doc__)
    try:
        parsed = command.main(args, prog_name=f"shoal run ...::{entry.name}", standalone_mode=False)
    except click.exceptions.Exit:
        raise SystemExit(0) from None
    if not isinstance(parsed, dict):  # --help was shown
        raise SystemExit(0)
    for option in options:
        if option.required and parsed.get(option.name) is None:  # click lets an empty command line through
            raise click.MissingParameter(param=option, param_hint=option.opts[0].split("/")[0])
    for p in params:
        if typing.get_origin(hints.get(p.name)) is typing.Literal and parsed.get(p.name) is not None:
            parsed[p.name] = _literal_value(hints[p.name], parsed[p.name])
    return (), dict(parsed)
