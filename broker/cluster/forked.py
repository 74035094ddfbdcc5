"""Node processes forked from a server that has imported the node's code once.

A fresh interpreter spends about half a second in imports before its node listens, and a
local cluster starts all its nodes at once, on a laptop's few cores. multiprocessing's
forkserver imports the node's modules once, in a clean single-threaded process, and
forks each node from it: every node is still an OS process of its own that the drills'
signals reach, but it starts listening in milliseconds, and a restart is as quick.
"""
from __future__ import annotations

import asyncio
import multiprocessing
import os
import signal
import sys
from pathlib import Path

_context = multiprocessing.get_context("forkserver")
_context.set_forkserver_preload(["broker.cli", "broker.node"])


def _run_node(config_path: str, log_path: str) -> None:
    """The node process: `kraftboard broker --config FILE` with its output in its log."""
    os.setpgid(0, 0)  # Ctrl-C on the supervisor's terminal reaches the supervisor alone
    log_fd = os.open(log_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    for stream in (1, 2):
        os.dup2(log_fd, stream)
    os.close(log_fd)
    # Line-buffered, so node.log holds every line even after a SIGKILL.
    sys.stdout = open(1, "w", buffering=1, closefd=False)
    sys.stderr = open(2, "w", buffering=1, closefd=False)
    from broker.cli import main

    sys.exit(main(["broker", "--config", config_path]))


class NodeProcess:
    """A forked node, driven like a subprocess: its pid, signals, and its exit awaited."""

    def __init__(self, config_path: Path, log_path: Path):
        self._process = _context.Process(target=_run_node, name=f"node {config_path.parent.name}",
                                         args=(str(config_path), str(log_path)))

    async def start(self) -> None:
        # The first start launches the fork server and waits for its imports: not on
        # the event loop, which keeps serving the control socket meanwhile.
        await asyncio.to_thread(self._process.start)

    @property
    def pid(self) -> int:
        return self._process.pid

    @property
    def returncode(self) -> int | None:
        """The exit code, or minus the signal that ended it; None while it runs."""
        return self._process.exitcode

    def send_signal(self, signum: signal.Signals) -> None:
        if self.returncode is None:
            os.kill(self.pid, signum)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    async def wait(self) -> int:
        loop = asyncio.get_running_loop()
        sentinel = self._process.sentinel  # readable once the process has ended
        ended = loop.create_future()
        loop.add_reader(sentinel, lambda: ended.done() or ended.set_result(None))
        try:
            await ended
        finally:
            loop.remove_reader(sentinel)
        return self._process.exitcode
