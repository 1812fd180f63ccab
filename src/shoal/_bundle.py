"""Source bundles: the module that defines a function plus the local modules it imported, zipped and hashed.

Containers import the function by module and qualified name from the unpacked bundle, so they run the code
as it was when the app started, not as it is on disk later.
"""

from __future__ import annotations

import hashlib
import io
import os
import site
import sys
import sysconfig
import zipfile
from pathlib import Path
from types import ModuleType

import msgspec

from .exception import InvalidError

MAX_BUNDLE_BYTES = 200 * 1024 * 1024
SKIP_DIRS = {
    "__pycache__",
    ".git",
    ".hg",
    ".venv",
    "venv",
    "node_modules",
    ".mypy_cache",
    ".pytest_cache",
    ".ruff_cache",
}


class Bundle(msgspec.Struct, frozen=True):
    blob_id: str
    data: bytes


class FunctionSource(msgspec.Struct, frozen=True):
    module: str  # importable module name inside the bundle
    qualname: str
    root: Path  # directory that goes on sys.path


def module_name_and_root(module: ModuleType) -> tuple[str, Path]:
    """The importable name of ``module`` and the directory it is imported from."""
    file = getattr(module, "__file__", None)
    if not file:
        raise InvalidError(
            f"Functions defined in {module.__name__!r} (an interactive session?) cannot be imported by a container: "
            "define them in a file, or pass serialized=True."
        )
    path = Path(file).resolve()
    name = module.__name__
    if name == "__main__":
        spec = getattr(module, "__spec__", None)
        name = spec.name if spec is not None and spec.name else path.stem
        if name.endswith(".__main__"):
            name = name[: -len(".__main__")]
    depth = name.count(".") + (1 if path.name == "__init__.py" else 0)
    root = path.parent
    for _ in range(depth):
        root = root.parent
    return name, root


def _excluded_roots() -> list[Path]:
    roots = {sys.prefix, sys.base_prefix, sysconfig.get_paths()["stdlib"], *site.getsitepackages()}
    roots.add(site.getusersitepackages())
    roots.add(str(Path(__file__).resolve().parent))
    return [Path(r).resolve() for r in roots if r]


def _local_entries(root: Path, main_name: str) -> set[str]:
    """Top-level names (packages or modules) under ``root`` that this process imported."""
    excluded = _excluded_roots()
    # most modules are installed ones (the stdlib, site-packages, Shoal): told apart by their path as imported,
    # without resolving it (11 ms for a few hundred modules)
    installed = tuple(f"{e}{os.sep}" for e in excluded if not root.is_relative_to(e))
    entries = {main_name.split(".")[0]}
    for mod in list(sys.modules.values()):
        file = getattr(mod, "__file__", None)
        if not file or file.startswith(installed):
            continue
        try:
            path = Path(file).resolve()
            rel = path.relative_to(root)
        except (ValueError, OSError):
            continue
        if any(path.is_relative_to(e) and not root.is_relative_to(e) for e in excluded):
            continue
        entries.add(rel.parts[0].removesuffix(".py"))
    return entries


def _files(root: Path, entry: str) -> list[Path]:
    package = root / entry
    if package.is_dir():
        return sorted(
            p for p in package.rglob("*")
            if p.is_file() and not any(part in SKIP_DIRS or part.startswith(".") for part in p.relative_to(root).parts)
            and p.suffix not in {".pyc", ".pyo"}
        )  # fmt: skip
    module = root / f"{entry}.py"
    return [module] if module.is_file() else []


def build_bundle(root: Path, main_name: str) -> Bundle:
    """Zip (deterministically) the main module and the local modules under ``root``."""
    files: list[Path] = []
    for entry in sorted(_local_entries(root, main_name)):
        files.extend(_files(root, entry))
    buf = io.BytesIO()
    total = 0
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zf:
        for path in files:
            data = path.read_bytes()
            total += len(data)
            if total > MAX_BUNDLE_BYTES:
                raise InvalidError(
                    f"The source bundle from {root} is over {MAX_BUNDLE_BYTES >> 20} MiB (at {path}). Move data "
                    "files out of your package directory."
                )
            info = zipfile.ZipInfo(str(path.relative_to(root)), date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, data)
    data = buf.getvalue()
    return Bundle(hashlib.sha256(data).hexdigest(), data)
