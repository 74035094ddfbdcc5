"""The bundled cluster: start or attach to it, and drive drills through its supervisor.

Only drills and broker states use the supervisor's control socket; everything the
console shows about topics, partitions and the quorum comes over the Kafka protocol.
"""
from __future__ import annotations

import argparse
import asyncio
from pathlib import Path

from broker import supervisor
from broker.cluster import ClusterError, client
from broker.cluster.layout import Layout

from tui.snapshot import LocalNode


class DrillError(Exception):
    """The supervisor refused or could not do a drill; the message says why."""


class LocalCluster:
    """A cluster run by a supervisor in `data_dir`."""

    def __init__(self, data_dir: Path):
        self.data_dir = Path(data_dir)

    async def request(self, op: str, **params) -> dict:
        """One control-socket op, off the event loop; a refusal raises DrillError."""
        try:
            response = await asyncio.to_thread(client.request, self.data_dir, op,
                                               timeout=30.0, **params)
        except client.NotRunning:
            raise DrillError(f"no supervisor runs in {self.data_dir}") from None
        except OSError as exc:
            raise DrillError(f"the supervisor did not answer: {exc}") from None
        if not response.get("ok"):
            raise DrillError(response.get("error", "the supervisor refused"))
        return response

    async def drill(self, op: str, node_id: int) -> dict:
        """An op on one node: kill, stop, pause, resume, isolate, heal or restart."""
        # A supervisor from before single-node stops ignores "id" and stops every node;
        # those also lack the "controller" field in their status.
        if op == "stop" and "controller" not in await self.request("status"):
            raise DrillError("this cluster's supervisor can only stop all nodes; restart the "
                             "cluster with this version to stop one")
        return await self.request(op, id=node_id)

    async def nodes(self) -> dict[int, LocalNode]:
        status = await self.request("status")
        return {node["id"]: LocalNode(node["id"], node["state"], node.get("pid"))
                for node in status["nodes"]}

    def bootstrap(self) -> str:
        return client.request(self.data_dir, "status", timeout=10.0)["bootstrap"]


def start_or_attach(data_dir: Path, brokers: int = 3, port: int = 9092,
                    log_level: str = "WARNING") -> LocalCluster:
    """Start the cluster in the background (as `cluster start --detach`), or attach to it.

    Raises broker.cluster.ClusterError or broker.config.ConfigError with what to fix.
    """
    args = argparse.Namespace(brokers=brokers, port=port, detach=True, log_level=log_level)
    layout = Layout(Path(data_dir).expanduser().absolute())
    status = supervisor.start_cluster(args, layout)
    if status != 0:
        raise ClusterError(f"the cluster in {layout.root} did not start "
                                      f"(see {layout.log})", status)
    return LocalCluster(layout.root)
