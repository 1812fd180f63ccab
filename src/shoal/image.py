"""``Image``: a container environment, written as a chain of build steps (Modal's API).

The spec is content-hashed and sent to the server, whose backend prepares it (the local backend: once per machine,
as a virtualenv that also sees Shoal's own runtime, reused while the spec is unchanged; ``_image_build.py``).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .config import container_env
from .exception import InvalidError
from .protocol.specs import ImageSpec


@dataclass(frozen=True)
class Image:
    """An immutable chain of build steps: ``Image.debian_slim().pip_install("x").env({"A": "1"})``."""

    steps: tuple[tuple[str, Any], ...] = field(default_factory=tuple)
    functions: tuple[Callable[..., Any], ...] = ()  # run_function steps (by position), kept out of the hash

    def _with(self, step: str, value: Any) -> Image:
        return Image(self.steps + ((step, value),), self.functions)

    # ---- bases ----------------------------------------------------------------------------------

    @staticmethod
    def debian_slim(python_version: str | None = None) -> Image:
        """The default base; on the local backend it is this machine with the given Python (default: the host's)."""
        return Image((("base", {"python": python_version}),))

    @staticmethod
    def from_registry(tag: str, *, add_python: str | None = None, **kwargs: Any) -> Image:
        """A registry image: the local backend runs it only when the host matches its Python version."""
        return Image((("registry", {"tag": tag, "add_python": add_python}),))

    @staticmethod
    def from_dockerfile(path: str | Path, **kwargs: Any) -> Image:
        """A Dockerfile image: not buildable by the local backend (a clear error at run/deploy time)."""
        return Image((("dockerfile", str(path)),))

    # ---- steps ----------------------------------------------------------------------------------

    def pip_install(self, *packages: str | list[str], extra_options: str = "", **kwargs: Any) -> Image:
        """Install packages with pip (``uv pip`` when uv is installed)."""
        return self._with("pip", {"packages": _flatten(packages), "options": extra_options, **_pip_flags(kwargs)})

    def uv_pip_install(self, *packages: str | list[str], **kwargs: Any) -> Image:
        return self.pip_install(*packages, **kwargs)

    def pip_install_from_requirements(self, requirements_txt: str | Path, **kwargs: Any) -> Image:
        path = Path(requirements_txt).expanduser().resolve()
        if not path.is_file():
            raise InvalidError(f"pip_install_from_requirements: no file {path}")
        return self._with("pip", {"packages": ["-r", str(path)], "options": "", "content": _digest(path)})

    def apt_install(self, *packages: str | list[str], **kwargs: Any) -> Image:
        """Debian packages: the local backend checks that the host has them (it installs nothing)."""
        return self._with("apt", _flatten(packages))

    def run_commands(self, *commands: str | list[str], **kwargs: Any) -> Image:
        """Shell commands run once at build time, in the image's virtualenv."""
        return self._with("run", _flatten(commands))

    def run_function(self, raw_f: Callable[..., Any], **kwargs: Any) -> Image:
        """Call ``raw_f()`` once at build time, inside the image (e.g. to download weights)."""
        image = Image(self.steps + (("function", getattr(raw_f, "__qualname__", "function")),), self.functions)
        return Image(image.steps, self.functions + (raw_f,))

    def env(self, vars: dict[str, str]) -> Image:  # noqa: A002 - Modal's name
        """Environment variables for containers of this image."""
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in vars.items()):
            raise InvalidError("Image.env takes a dict of strings to strings")
        return self._with("env", dict(sorted(vars.items())))

    def workdir(self, path: str) -> Image:
        """The containers' working directory."""
        return self._with("workdir", path)

    def add_local_dir(self, local_path: str | Path, remote_path: str, *, copy: bool = False, **kwargs: Any) -> Image:
        """Make a local directory appear at ``remote_path`` in containers (read-only)."""
        path = Path(local_path).expanduser().resolve()
        if container_env() is not None:  # the app's module imported in its container: the content is there
            return self._with("mount", {"local": str(path), "remote": remote_path, "content": ""})
        if not path.is_dir():
            raise InvalidError(f"add_local_dir: no directory {path}")
        return self._with("mount", {"local": str(path), "remote": remote_path, "content": _digest(path)})

    def add_local_file(self, local_path: str | Path, remote_path: str, *, copy: bool = False) -> Image:
        """Make a local file appear at ``remote_path`` in containers (read-only)."""
        path = Path(local_path).expanduser().resolve()
        if container_env() is not None:  # the app's module imported in its container: the file is there already
            return self._with("mount", {"local": str(path), "remote": remote_path, "content": ""})
        if not path.is_file():
            raise InvalidError(f"add_local_file: no file {path}")
        return self._with("mount", {"local": str(path), "remote": remote_path, "content": _digest(path)})

    def add_local_python_source(self, *modules: str, copy: bool = False, **kwargs: Any) -> Image:
        """Make these local packages/modules importable in containers."""
        import importlib.util

        roots = []
        for name in modules:
            spec = importlib.util.find_spec(name)
            if spec is None or not spec.origin:
                raise InvalidError(f"add_local_python_source: cannot find module {name!r}")
            origin = Path(spec.origin).resolve()
            root = origin.parent.parent if origin.name == "__init__.py" else origin.parent
            roots.append(str(root))
        return self._with("pythonpath", roots)

    # ---- helpers --------------------------------------------------------------------------------

    @property
    def content_hash(self) -> str:
        return hashlib.sha256(json.dumps(self.steps, sort_keys=True, default=str).encode()).hexdigest()[:24]

    def spec(self, function_blobs: list[str]) -> ImageSpec:
        """The wire form, with the blob ids of the pickled ``run_function`` callables (uploaded by the caller)."""
        return ImageSpec(self.content_hash, [(name, value) for name, value in self.steps], function_blobs)

    @property
    def needs_build(self) -> bool:
        return any(name in ("pip", "run", "function") for name, _ in self.steps)

    @contextlib.contextmanager
    def imports(self) -> Iterator[None]:
        """Imports of packages only this image has: a failure is ignored except in a container of this image."""
        try:
            yield
        except ImportError:
            env = container_env()
            if env is not None and env.image_hash == self.content_hash:
                raise


def _flatten(items: tuple[Any, ...]) -> list[str]:
    out: list[str] = []
    for item in items:
        out.extend([item] if isinstance(item, str) else list(item))
    return out


def _pip_flags(kwargs: dict[str, Any]) -> dict[str, Any]:
    known = {k: kwargs[k] for k in ("index_url", "extra_index_url", "pre", "find_links") if kwargs.get(k)}
    return known


def _digest(path: Path) -> str:
    """A content hash of a file or directory tree (so the image is rebuilt when it changes)."""
    h = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for f in files:
        h.update(str(f.relative_to(path if path.is_dir() else path.parent)).encode())
        h.update(f.read_bytes())
    return h.hexdigest()[:16]
