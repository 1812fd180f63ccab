"""``import modal`` means Shoal, inside ``shoal run``, ``shoal deploy``, ``shoal python`` and their containers.

:func:`install` puts a ``modal`` package into ``sys.modules`` whose names are Shoal's (``modal.App is
shoal.App``), with Modal's submodules (``modal.functions``, ``modal.exception``, ...) mapped onto Shoal's
modules. A Modal name Shoal does not have is a stand-in that raises :class:`~shoal.exception.NotSupportedError`
("Modal's modal.X is not supported by Shoal yet") where it is used, so a program fails at the line that needs it,
with that message, not at ``from modal import X``. In ``modal.exception``, an unknown exception name is a
subclass of Shoal's ``Error``, so ``except modal.exception.SomethingError:`` still works.

Nothing is installed on import: outside these commands a real ``modal`` package is never shadowed. A container
installs the alias when its app was registered under it (``FunctionSpec.modal_alias``).
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import logging
import sys
import types
from collections.abc import Sequence
from typing import Any

from .exception import Error, NotSupportedError

log = logging.getLogger("shoal")

# Modal's submodules -> the Shoal modules that hold their names
SUBMODULES: dict[str, tuple[str, ...]] = {
    "app": ("shoal.app",),
    "cls": ("shoal.cls",),
    "functions": ("shoal.functions", "shoal.calls"),
    "call_graph": ("shoal.calls",),
    "exception": ("shoal.exception",),
    "image": ("shoal.image",),
    "volume": ("shoal.volume",),
    "secret": ("shoal.secret",),
    "dict": ("shoal.dict",),
    "queue": ("shoal.queue",),
    "partial_function": ("shoal.partial",),
    "retries": ("shoal.retries",),
    "output": ("shoal._output",),
    "schedule": ("shoal.schedule",),
    "config": (),
}


class _Unsupported:
    """Stands for a Modal name Shoal lacks; using it in any way raises NotSupportedError."""

    def __init__(self, qualname: str) -> None:
        self._qualname = qualname

    def _fail(self, *args: Any, **kwargs: Any) -> Any:
        raise NotSupportedError(
            f"Modal's {self._qualname} is not supported by Shoal yet (README: 'Running Modal programs' lists what is)."
        )

    __call__ = _fail
    __iter__ = _fail
    __enter__ = _fail

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        return self._fail()

    def __repr__(self) -> str:
        return f"<not supported by Shoal: {self._qualname}>"


class _ModalModule(types.ModuleType):
    """``modal`` or ``modal.<sub>``: Shoal's names from ``sources``, stand-ins for the rest."""

    def __init__(self, name: str, sources: Sequence[str]) -> None:
        super().__init__(name, f"Modal's {name}, provided by Shoal.")
        self._sources = [importlib.import_module(s) for s in sources]

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        for source in self._sources:
            if hasattr(source, name):
                return getattr(source, name)
        qualname = f"{self.__name__}.{name}"
        if self.__name__ == "modal.exception" and name[:1].isupper():
            stand_in: Any = type(name, (Error,), {"__doc__": f"Modal's {qualname} (Shoal never raises it)."})
        else:
            stand_in = _Unsupported(qualname)
        setattr(self, name, stand_in)
        return stand_in

    def __dir__(self) -> list[str]:
        return sorted({n for s in self._sources for n in dir(s) if not n.startswith("_")})


class _Finder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports ``modal.<anything>``: mapped submodules, or stand-in modules for the ones Shoal lacks."""

    def find_spec(self, fullname: str, path: Any = None, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        if fullname == "modal" or fullname.startswith("modal."):
            return importlib.machinery.ModuleSpec(fullname, self, is_package=True)
        return None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType:
        sub = spec.name.partition(".")[2]
        sources = ("shoal",) if not sub else SUBMODULES.get(sub, ())
        module = _ModalModule(spec.name, sources)
        module.__path__ = []  # a package: its submodules import through this finder too
        return module

    def exec_module(self, module: types.ModuleType) -> None:
        pass


_FINDER = _Finder()


def install() -> None:
    """Make ``import modal`` (and its submodules) mean Shoal in this process; idempotent."""
    if installed():
        return
    for name in [n for n in sys.modules if n == "modal" or n.startswith("modal.")]:
        del sys.modules[name]  # a real modal imported earlier in this process would win otherwise
    sys.meta_path.insert(0, _FINDER)
    log.debug("`modal` means Shoal in this process (%s)", sys.argv[0] if sys.argv else "")


def installed() -> bool:
    """True when ``modal`` resolves to Shoal here."""
    return _FINDER in sys.meta_path
