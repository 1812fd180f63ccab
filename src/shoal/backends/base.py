"""The backend boundary: how the control plane gets and releases containers."""

from __future__ import annotations

import abc
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import msgspec

from ..exception import ImageBuildError
from ..protocol.specs import ImageSpec, MountSpec, PreparedImage, Resources

ExitCallback = Callable[[str, "int | None"], None]
PlacedCallback = Callable[[str, str], None]


class Unplaceable(ValueError):
    """What a backend could never place (a GPU type no node has), and what it offers instead: the control plane
    refuses the function at registration with this message."""


class VolumeDirs(Protocol):
    """Where each volume's files are on this machine: the server's volume store, or a node's copies. A backend
    binds these into its containers; it imports nothing of the server."""

    def dir(self, name: str) -> Path: ...


class FolderVolumes:
    """Volumes as the folders under ``root`` (a Ray node's copies for one container)."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def dir(self, name: str) -> Path:
        path = self.root / name
        if not path.is_dir():
            raise FileNotFoundError(f"volume {name} has no copy on this node ({path})")
        return path


class ContainerSpec(msgspec.Struct, frozen=True):
    """Everything a backend needs to start one container running ``python -m shoal.container``."""

    container_id: str
    function_id: str
    app_id: str
    server_url: str
    container_token: str
    env: dict[str, str] = msgspec.field(default_factory=dict)
    resources: Resources = Resources()
    image: PreparedImage | None = None  # as this backend prepared it (prepare_image)
    image_spec: ImageSpec | None = None  # the recipe, for backends that build it again where the container runs
    volumes: list[MountSpec] = msgspec.field(default_factory=list)  # volumes by name: the backend attaches them


class Waiting(msgspec.Struct, frozen=True):
    """A container asked for but not placed yet: for how long, and what for ("a GPU (T4): 2 of 2 in use")."""

    seconds: float
    reason: str


class Usage(msgspec.Struct, frozen=True):
    """What one container uses now: CPU (percent of one core, its processes summed), resident memory, and its
    GPUs' utilization (percent, their mean) and memory (None: it has none, or they cannot be read)."""

    cpu: float
    memory_mib: float
    gpu: float | None = None
    gpu_memory_mib: float | None = None


class Capabilities(msgspec.Struct, frozen=True):
    """What a backend gives containers: checked when functions register, shown by ``shoal server status``."""

    sandbox: bool = False  # containers are isolated: a private /tmp, nothing of the server's state
    mounts: bool = False  # volumes and add_local_* content appear at the paths the app names
    gpus: int = 0
    cpus: float = 0.0  # capacity in all (0: unknown)
    memory_mib: int = 0


class Backend(abc.ABC):
    """Starts and stops containers; reports each container's exit through ``on_exit(container_id, code)``."""

    def __init__(self) -> None:
        self.on_exit: ExitCallback = lambda container_id, code: None
        # a container that went with its whole cluster (its head lost): nothing says anything about its inputs
        self.on_lost_with_cluster: Callable[[str], None] = lambda container_id: self.on_exit(container_id, None)
        self.on_placed: PlacedCallback = lambda container_id, node: None  # where a container runs, once known
        self.put_blob: Callable[[str, bytes], None] = lambda blob_id, data: None  # the control plane's blob store
        # what keeps containers from starting at all (its text), and None once that is over: a cluster lost
        self.on_trouble: Callable[[str | None], None] = lambda text: None

    @abc.abstractmethod
    async def launch(self, spec: ContainerSpec) -> None:
        """Start one container; returns once it is started (not once it is ready)."""

    @abc.abstractmethod
    async def terminate(self, container_id: str, grace: float) -> None:
        """Ask a container to stop (SIGTERM-like), then force it after ``grace`` seconds."""

    @abc.abstractmethod
    def list(self) -> list[str]:
        """Ids of the containers this backend is running."""

    def has(self, container_id: str) -> bool:
        """Whether this backend runs the container (backends answer without listing them all)."""
        return container_id in self.list()

    @abc.abstractmethod
    async def close(self) -> None:
        """Stop every container (the server is shutting down)."""

    def prestart(self) -> None:
        """Begin what is slow to start, right after the backend is opened and before the server's event loop runs
        (the server imports the rest of itself meanwhile); nothing, by default."""
        return None

    def warm(self, server_url: str) -> None:
        """Get ready for the first container, in the background, once the server runs (nothing, by default)."""
        return None

    def capabilities(self) -> Capabilities:
        """What this backend can give containers (none of the optional features, by default)."""
        return Capabilities()

    def prepare_image(
        self, image: ImageSpec, log: Callable[[str], None], fetch: Callable[[str], bytes]
    ) -> PreparedImage:
        """Make ``image`` ready to start containers in (blocking: called on a worker thread), streaming build
        output to ``log``; ``fetch`` reads a blob (pickled ``run_function`` steps). Cached by the image's hash.

        Raises:
            ImageBuildError: what the backend cannot provide, or a failed build step.
        """
        raise ImageBuildError(f"The {type(self).__name__} backend cannot build images; use no image= here.")

    def check_resources(self, resources: Resources) -> None:
        """Refuse at registration what this backend could never place (a GPU type no node has).

        Raises:
            Unplaceable: what cannot be placed, and what the backend offers instead.
        """
        return None

    def waiting(self) -> dict[str, Waiting]:
        """Containers asked for but not yet placed for lack of capacity, with how long and what for (none, by
        default). No startup timeout runs while a container waits."""
        return {}

    def usage(self) -> dict[str, object]:
        """What placed containers hold of the capacity now (reserved CPUs, memory, GPUs), where a backend keeps
        account (empty by default)."""
        return {}

    async def sample(self) -> dict[str, Usage]:
        """What each running container uses now (none, by default: a backend whose processes are elsewhere)."""
        return {}

    def trouble(self) -> str | None:
        """What keeps containers from starting at all now (a cluster that cannot be reached), or None."""
        return None

    def output_tail(self, container_id: str, lines: int = 20) -> str:
        """The last lines a container wrote to its own stdout/stderr (put in errors about its death), or ''."""
        return ""

    def describe_exit(self, code: int | None) -> str:
        """Human words for an exit code."""
        if code is None:
            return "it was lost"
        if code < 0:
            import signal

            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            hint = " (out of memory, or killed from outside)" if name == "SIGKILL" else ""
            return f"killed by {name}{hint}"
        if killed_by_signal(code):  # a shell or the sandbox reports a child's death by signal N as 128 + N
            import signal

            try:
                return f"exit code {code} (killed by {signal.Signals(code - 128).name})"
            except ValueError:
                pass
        return f"exit code {code}"


def killed_by_signal(code: int | None) -> bool:
    """Whether an exit code says the process died of a signal (negative, or 128 + N from a shell or the sandbox)."""
    return code is not None and (code < 0 or 128 < code < 128 + 64)
