"""Shoal on its Ray backend: a one-node Ray cluster of 2 CPUs on 127.0.0.1 (what the Ray peers get), a Shoal
server with ``--backend ray`` on it, and the same app as the embedded Shoal runs. Containers are Ray actors."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

from .shoal_system import ShoalSystem

TOKEN = "shoal-bench-ray-token"


class ShoalRaySystem(ShoalSystem):
    name = "shoal-ray"

    def start(self) -> None:
        os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"  # loopback only (read when Ray is imported)
        from ray.cluster_utils import Cluster

        self.cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "include_dashboard": False,
                                                                       "object_store_memory": 100 * 2**20})  # fmt: skip
        state = Path(tempfile.mkdtemp(prefix="shoal-bench-ray-"))
        env = {**os.environ, "SHOAL_TOKEN": TOKEN}
        self.server = subprocess.Popen(
            [sys.executable, "-m", "shoal.server", "--port", "0", "--state-dir", str(state), "--backend", "ray",
             "--ray-address", self.cluster.address], stdout=subprocess.PIPE, env=env,
        )  # fmt: skip
        assert self.server.stdout is not None
        line = self.server.stdout.readline().decode().strip()
        if not line.startswith("SHOAL_SERVER_URL="):
            raise RuntimeError(f"the Shoal server on Ray did not start: {line!r}")
        os.environ.update(SHOAL_SERVER_URL=line.split("=", 1)[1], SHOAL_TOKEN=TOKEN)
        super().start()

    def stop(self) -> None:
        try:
            super().stop()
        finally:
            self.server.terminate()
            self.server.wait(30)
            self.cluster.shutdown()
