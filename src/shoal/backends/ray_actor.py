"""What runs inside a Ray actor on a cluster node: one Shoal container, as the local backend would start it.

Containers that ask for GPUs run this way (Ray gives the actor its GPUs, ``CUDA_VISIBLE_DEVICES`` included);
the others are forked by their node's agent (:mod:`.ray_agent`). The actor is only a placement and a process
parent: the container inside it is the normal ``python -m shoal.container`` (sandboxed where the node has
bubblewrap) and talks to the control plane over HTTP exactly as a local one does. Ray's object store is never on
the data path. The actor is threaded so that ``terminate`` and ``tail`` can be asked while ``wait`` blocks.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess

from msgspec.structs import replace

from .base import ContainerSpec, FolderVolumes
from .local import LocalBackend
from .ray_node import build_image, copy_volumes, node_address, node_dir, node_name, normal_priority


class ContainerHost:
    """One container on this node (a Ray actor class: ``ray.remote`` is applied by the Ray bridge)."""

    def __init__(self, hidden: tuple[str, ...]) -> None:
        normal_priority()  # its container is not one of Ray's niced workers
        self.node_dir, self.hidden = node_dir(), hidden  # this actor's process only: it hosts one container
        self.local = LocalBackend(
            self.node_dir / "containers", FolderVolumes(self.node_dir / "volumes" / "none"), hidden=hidden, place=False
        )  # Ray placed it: no ledger here
        self.proc: subprocess.Popen[bytes] | None = None
        self.container_id = ""
        self.sandboxed = False

    def where(self) -> str:
        """The node this actor runs on (answered as soon as Ray placed it)."""
        return node_name()

    def start(self, spec: ContainerSpec) -> dict[str, str]:
        """Build the container's image on this node if needed, then start its process; returns where it runs."""
        self.container_id = spec.container_id
        if spec.image_spec is not None and spec.image is not None:
            spec = replace(spec, image=build_image(self.node_dir, spec, self.local.log_path(spec.container_id)))
        synced = ""
        if spec.volumes:
            root = self.node_dir / "volumes" / spec.container_id
            synced = copy_volumes(root, spec)
            self.local = LocalBackend(
                self.node_dir / "containers", FolderVolumes(root), hidden=self.hidden, place=False
            )
        started = self.local.command(spec)  # unsandboxed, it dies with this actor
        self.sandboxed = started.sandboxed
        env = started.env
        if synced:
            env["SHOAL_SYNCED_VOLUMES"] = synced
        node = node_name()
        env.update(SHOAL_NODE=node, SHOAL_WEB_HOST=node_address())
        with open(self.local.log_path(spec.container_id), "ab") as log:
            self.proc = subprocess.Popen(started.argv, env=env, cwd=started.cwd,
                                         stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)  # fmt: skip
        return {"node": node, "pid": str(self.proc.pid)}

    def wait(self) -> int:
        """Until the container's process exits; its exit code (negative: the signal that killed it)."""
        assert self.proc is not None
        code = self.proc.wait()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)  # no orphans of the user's code
        shutil.rmtree(self.node_dir / "volumes" / self.container_id, ignore_errors=True)  # its copies: committed or not
        return code

    def terminate(self, grace: float) -> None:
        """SIGTERM (unsandboxed: the sandbox dies at once; a sandboxed container learns it from its next heartbeat),
        then SIGKILL after ``grace`` seconds."""
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        if grace > 0:
            if not self.sandboxed:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(grace)
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)

    def tail(self, lines: int = 20) -> str:
        return self.local.output_tail(self.container_id, lines)
