"""An in-memory backend: containers that exist only as records, for control-plane tests without processes.

``launch`` remembers the container; a test plays the container's part through the control plane's own
methods (``container_started``, ``exchange``) and ends it with :meth:`FakeBackend.exit` (a crash, a kill)."""

from __future__ import annotations

from .base import Backend, Capabilities, ContainerSpec


class FakeBackend(Backend):
    def __init__(self, capabilities: Capabilities = Capabilities()) -> None:
        super().__init__()
        self.running: dict[str, ContainerSpec] = {}
        self.launched: list[ContainerSpec] = []
        self.terminated: list[str] = []
        self._capabilities = capabilities

    async def launch(self, spec: ContainerSpec) -> None:
        self.running[spec.container_id] = spec
        self.launched.append(spec)

    async def terminate(self, container_id: str, grace: float) -> None:
        self.terminated.append(container_id)
        self.exit(container_id, -9 if grace == 0 else 0)

    def exit(self, container_id: str, code: int | None) -> None:
        """The container's process ended with ``code``, as a real backend reports it."""
        if self.running.pop(container_id, None) is not None:
            self.on_exit(container_id, code)

    def list(self) -> list[str]:
        return list(self.running)

    async def close(self) -> None:
        self.running.clear()

    def capabilities(self) -> Capabilities:
        return self._capabilities
