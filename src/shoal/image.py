"""``Image``: a container environment spec. Recorded now; building it is a later milestone.

Until images are built, functions run in the client's Python environment; an image with build steps makes
``app.run()`` warn once, so nothing is silently different from what the user wrote.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Image:
    """An immutable chain of build steps (``Image.debian_slim().pip_install("x")``)."""

    steps: tuple[tuple[str, Any], ...] = field(default_factory=tuple)

    def _with(self, step: str, value: Any) -> Image:
        return Image(self.steps + ((step, value),))

    @staticmethod
    def debian_slim(python_version: str | None = None) -> Image:
        return Image((("debian_slim", python_version),))

    def pip_install(self, *packages: str | list[str], **kwargs: Any) -> Image:
        flat: list[str] = []
        for p in packages:
            flat.extend([p] if isinstance(p, str) else p)
        return self._with("pip_install", tuple(flat))

    def uv_pip_install(self, *packages: str | list[str], **kwargs: Any) -> Image:
        return self.pip_install(*packages)

    def env(self, vars: dict[str, str]) -> Image:  # noqa: A002 - Modal's name
        return self._with("env", tuple(sorted(vars.items())))

    def run_commands(self, *commands: str) -> Image:
        return self._with("run_commands", commands)

    def workdir(self, path: str) -> Image:
        return self._with("workdir", path)

    @property
    def build_steps(self) -> list[str]:
        """Steps other than the base image (the ones Shoal cannot honour yet)."""
        return [name for name, _ in self.steps if name != "debian_slim"]
