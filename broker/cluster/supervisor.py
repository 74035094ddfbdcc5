"""The supervisor: owns one OS process per node and serves the control socket.

The control socket speaks newline-delimited JSON: each request is an object with an
"op" (plus "id" for an op on one node), each response one object with "ok". Ops are
the entries of OPS, so a new drill is one more decorated method.

Drills are signals: SIGKILL (a crash), SIGTERM (a graceful stop: the node hands its
leaderships over first), SIGSTOP/SIGCONT (a hung node and its recovery) and
SIGUSR1/SIGUSR2 (the node cuts itself off from its peers, or reconnects, while clients
still reach it).
"""
from __future__ import annotations

import asyncio
import fcntl
import json
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from enum import StrEnum
from pathlib import Path
from typing import Any

from broker.cluster import ClusterError, client
from broker.cluster.forked import NodeProcess
from broker.cluster.layout import Layout
from broker.config import ConfigError, NodeConfig

log = logging.getLogger(__name__)

READY_TIMEOUT = 15.0  # seconds for a node's port to accept a connection
STOP_GRACE = 10.0  # seconds between SIGTERM and SIGKILL: a node moves its leaderships first
LOG_TAIL_LINES = 20


class State(StrEnum):
    STARTING = "starting"
    RUNNING = "running"
    PAUSED = "paused"  # SIGSTOPped by a drill
    ISOLATED = "isolated"  # cut off from its peers by a drill; clients still reach it
    STOPPED = "stopped"  # stopped by the supervisor
    KILLED = "killed"  # SIGKILLed by a drill
    EXITED = "exited"  # ended on its own; exit_code says how


class OpError(Exception):
    """An op that cannot be done; `usage` marks a bad request rather than a failure."""

    def __init__(self, message: str, usage: bool = False):
        super().__init__(message)
        self.usage = usage


def describe_exit(code: int) -> str:
    """A process's return code as words: "code 1", "signal SIGKILL"."""
    if code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"code {code}"


class Node:
    """One node process, started from its node.yaml and restarted on the same data."""

    def __init__(self, config: NodeConfig):
        self.config = config
        self.id = config.node_id
        self.lock = asyncio.Lock()  # one op at a time on a node
        self.process: NodeProcess | None = None
        self.phase = State.STOPPED  # where the process is in its life: starting ... exited
        self.paused = False  # drills on the running process
        self.isolated = False
        self.exit_code: int | None = None
        self._ending: State | None = None  # the state our own signal leads to
        self._exited: asyncio.Task | None = None
        self._log_start = 0

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.returncode is None

    @property
    def state(self) -> State:
        if self.phase is State.RUNNING and self.paused:
            return State.PAUSED
        if self.phase is State.RUNNING and self.isolated:
            return State.ISOLATED
        return self.phase

    @property
    def address(self) -> tuple[str, int]:
        return self.config.advertised_address

    @property
    def log_path(self) -> Path:
        return self.config.path.with_name("node.log")

    def describe(self) -> dict[str, Any]:
        host, port = self.address
        return {"id": self.id, "host": host, "port": port,
                "pid": self.process.pid if self.alive else None,
                "state": self.state, "exit_code": self.exit_code}

    async def start(self) -> None:
        """Spawn the node and wait until its port accepts connections."""
        try:
            config = NodeConfig.load(self.config.path)  # takes in edits since the last start
        except ConfigError as exc:
            raise OpError(f"refused config: {exc}") from None
        if config.node_id != self.id:
            raise OpError(f"{config.path}: node.id: changed from {self.id} to {config.node_id}; "
                          "restart the whole cluster to renumber a node")
        self.config = config
        self._log_start = self.log_path.stat().st_size if self.log_path.exists() else 0
        self.process = NodeProcess(config.path, self.log_path)
        await self.process.start()
        self.phase, self.exit_code, self._ending = State.STARTING, None, None
        self.paused = self.isolated = False
        self._exited = asyncio.create_task(self._watch(self.process))
        log.info("node %d started (pid %d)", self.id, self.process.pid)
        await self._wait_ready()
        self.phase = State.RUNNING
        log.info("node %d is ready on %s:%d", self.id, *self.address)

    def check_running(self) -> None:
        """Drills need a node that is up (not starting: its signal handlers are not set)."""
        if not self.alive or self.phase is not State.RUNNING:
            raise OpError(f"node {self.id} is not running (it is {self.state})")

    async def stop(self) -> None:
        """SIGTERM, then SIGKILL if the node is still there after the grace period."""
        if not self.alive:
            return
        self._ending = State.STOPPED
        self.process.terminate()
        if self.paused:  # it must run to act on SIGTERM
            self.process.send_signal(signal.SIGCONT)
            self.paused = False
        try:
            async with asyncio.timeout(STOP_GRACE):
                await asyncio.shield(self._exited)
        except TimeoutError:
            log.warning("node %d ignored SIGTERM for %g s; killing it", self.id, STOP_GRACE)
            self.process.kill()
            await self._exited

    async def kill(self) -> None:
        self.signal(signal.SIGKILL)  # ends a paused process too
        self._ending = State.KILLED
        await self._exited

    def pause(self) -> None:
        self.signal(signal.SIGSTOP)
        self.paused = True

    def resume(self) -> None:
        self.signal(signal.SIGCONT)
        self.paused = False

    def isolate(self) -> None:
        # A paused node acts on it once resumed: the kernel keeps the signal pending.
        self.signal(signal.SIGUSR1)
        self.isolated = True

    def heal(self) -> None:
        self.signal(signal.SIGUSR2)
        self.isolated = False

    def signal(self, signum: signal.Signals) -> None:
        self.check_running()
        self.process.send_signal(signum)

    async def _watch(self, process: NodeProcess) -> None:
        self.exit_code = await process.wait()
        self.phase = self._ending or State.EXITED
        self.paused = self.isolated = False
        if self._ending is None:
            log.warning("node %d exited on its own with %s", self.id, describe_exit(self.exit_code))

    async def _wait_ready(self) -> None:
        host, port = self.address
        loop = asyncio.get_running_loop()
        deadline = loop.time() + READY_TIMEOUT
        while self.alive:
            try:
                async with asyncio.timeout(1.0):
                    _, writer = await asyncio.open_connection(host, port)
            except (OSError, TimeoutError):
                if loop.time() > deadline:
                    await self.stop()
                    raise OpError(f"node {self.id} did not accept connections on {host}:{port} "
                                  f"within {READY_TIMEOUT:g} s, so it was stopped. "
                                  f"{self._log_tail()}") from None
                await asyncio.sleep(0.1)
            else:
                writer.close()
                if self.alive:  # else it died right after accepting: report that below
                    return
        await self._exited
        raise OpError(f"node {self.id} ended ({self.state}, {describe_exit(self.exit_code)}) "
                      f"before accepting connections on {host}:{port}. {self._log_tail()}")

    def _log_tail(self) -> str:
        with open(self.log_path, "rb") as out:
            out.seek(self._log_start)
            lines = out.read().decode(errors="replace").splitlines()[-LOG_TAIL_LINES:]
        where = f"(config {self.config.path}, full log {self.log_path})"
        if not lines:
            return f"It wrote nothing to its log {where}."
        text = "\n".join("  | " + line for line in lines)
        return f"Its log ends with:\n{text}\nFix the cause above {where} and start it again."


Handler = Callable[["Supervisor", dict], Awaitable[dict]]
NodeAction = Callable[["Supervisor", Node], Awaitable[None]]
OPS: dict[str, Handler] = {}


def op(name: str, on_node: bool = False) -> Callable:
    """Register a Supervisor method as a control-socket op.

    A plain op gets the request and returns its answer; a node op gets the node the
    request's "id" names, runs while holding that node's lock, and is answered with the
    node's state afterwards.
    """
    def register(method: Callable) -> Callable:
        async def on_one_node(supervisor: Supervisor, request: dict) -> dict:
            return await supervisor.on_node(request, method)

        OPS[name] = on_one_node if on_node else method
        return method
    return register


class Supervisor:
    def __init__(self, layout: Layout, configs: list[NodeConfig]):
        self.layout = layout
        self.nodes = {config.node_id: Node(config) for config in configs}
        self._stopping = asyncio.Event()

    async def on_node(self, request: dict, action: NodeAction) -> dict:
        node = self.node(request.get("id"))
        async with node.lock:
            await action(self, node)
        return {"node": node.describe()}

    def node(self, node_id: Any) -> Node:
        valid = ", ".join(str(i) for i in self.nodes)
        if not isinstance(node_id, int):
            raise OpError(f"this op needs a node \"id\" (an integer); valid ids: {valid}",
                          usage=True)
        if node_id not in self.nodes:
            raise OpError(f"no node {node_id} in this cluster; valid ids: {valid}", usage=True)
        return self.nodes[node_id]

    async def run(self, on_ready: Callable[[dict], None]) -> int:
        """Start the nodes, serve the control socket until asked to stop, stop the nodes.

        Returns the exit status: 0 after a requested stop, 1 if the cluster did not start.
        """
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            loop.add_signal_handler(signum, self._stopping.set)
        with self._pid_file():
            server = await self._listen()
            try:
                starting = asyncio.create_task(self._start_all())
                stopping = asyncio.create_task(self._stopping.wait())
                await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
                if not starting.done():
                    starting.cancel()
                    return 0
                if failures := starting.result():
                    print("kraftboard: the cluster did not start:", *failures, sep="\n\n",
                          file=sys.stderr)
                    return 1
                on_ready(await self.status({}))
                await stopping
                return 0
            finally:
                server.close()
                log.info("stopping the cluster")
                await self._stop_all()
                self.layout.socket.unlink(missing_ok=True)

    async def _start_all(self) -> list[str]:
        async def start(node: Node) -> None:
            async with node.lock:
                await node.start()

        results = await asyncio.gather(*(start(n) for n in self.nodes.values()),
                                       return_exceptions=True)
        failures = []
        for result in results:
            if isinstance(result, (OpError, OSError)):
                failures.append(str(result))
            elif isinstance(result, BaseException):
                raise result
        return failures

    async def _stop_all(self) -> None:
        """Every node, the active controller last, as Kafka advises: the others' controlled
        shutdowns need it to move their leaderships, or each waits out its timeout."""
        controller = (await self.status({}))["controller"]
        await asyncio.gather(*(self._stop_node(n) for n in self.nodes.values()
                               if n.id != controller))
        if controller in self.nodes:
            await self._stop_node(self.nodes[controller])

    @staticmethod
    async def _stop_node(node: Node) -> None:
        async with node.lock:
            await node.stop()

    @contextmanager
    def _pid_file(self) -> Iterator[None]:
        """Hold an exclusive lock on supervisor.pid for as long as this supervisor runs."""
        path = self.layout.pid_file
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.read(fd, 32).decode().strip() or "?"
            os.close(fd)
            raise ClusterError(f"a supervisor (pid {owner}) is already running "
                               f"for {self.layout.root}") from None
        try:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
            yield
        finally:
            path.unlink(missing_ok=True)
            os.close(fd)

    async def _listen(self) -> asyncio.AbstractServer:
        path = self.layout.socket
        if path.exists():
            try:
                client.request(self.layout.root, "status", timeout=2.0)
            except (client.NotRunning, OSError):
                path.unlink()  # stale: left by a supervisor that did not exit cleanly
            else:
                raise ClusterError(f"another supervisor answers on {path}")
        old_umask = os.umask(0o177)  # the socket is born 0600, never briefly wider
        try:
            return await asyncio.start_unix_server(self._serve_client, path=str(path))
        finally:
            os.umask(old_umask)

    async def _serve_client(self, reader: asyncio.StreamReader,
                            writer: asyncio.StreamWriter) -> None:
        try:
            while line := await reader.readline():
                response = await self.answer(line)
                writer.write(json.dumps(response).encode() + b"\n")
                await writer.drain()
        except (ConnectionError, ValueError):  # ValueError: a line over the reader's limit
            pass
        finally:
            writer.close()

    async def answer(self, line: bytes) -> dict:
        """One request line in, one response object out; a bad request never ends us."""
        try:
            request = json.loads(line)
            if not isinstance(request, dict):
                raise OpError("a request is a JSON object with an \"op\"", usage=True)
            handler = OPS.get(request.get("op"))
            if handler is None:
                raise OpError(f"unknown op {request.get('op')!r}; ops: {', '.join(OPS)}",
                              usage=True)
            return {"ok": True, **await handler(self, request)}
        except json.JSONDecodeError as exc:
            return {"ok": False, "error": f"not JSON: {exc}", "kind": "usage"}
        except OpError as exc:
            return {"ok": False, "error": str(exc), "kind": "usage" if exc.usage else "failed"}
        except Exception as exc:
            log.exception("op failed: %r", line)
            return {"ok": False, "error": f"internal error: {exc!r}", "kind": "failed"}

    @op("status")
    async def status(self, request: dict) -> dict:
        """Every node's state, and the active controller as the cluster itself says."""
        # Imported here: kafka-python takes half a second to import, which every
        # `kraftboard cluster` command and the supervisor's own start would pay.
        from broker.cluster.probe import quorum_leader

        # Paused and isolated nodes would hang or answer from a stale view: not asked.
        running = ",".join(f"{n.address[0]}:{n.address[1]}" for n in self.nodes.values()
                           if n.state is State.RUNNING)
        controller = await asyncio.to_thread(quorum_leader, running) if running else None
        nodes = [{**node.describe(), "controller": node.id == controller}
                 for node in self.nodes.values()]
        return {"bootstrap": ",".join(f"{n['host']}:{n['port']}" for n in nodes),
                "controller": controller, "nodes": nodes, "supervisor_pid": os.getpid()}

    @op("stop")
    async def stop(self, request: dict) -> dict:
        """With an "id": that node, gracefully. Without: every node, then the supervisor;
        answered at once, and the socket and the pid file go away last."""
        if "id" in request:
            return await self.on_node(request, Supervisor._stop_running_node)
        self._stopping.set()
        return {}

    async def _stop_running_node(self, node: Node) -> None:
        node.check_running()
        await node.stop()

    @op("kill", on_node=True)
    async def kill(self, node: Node) -> None:
        await node.kill()

    @op("restart", on_node=True)
    async def restart(self, node: Node) -> None:
        """Stops the node if it runs (a paused or isolated one too), and starts it afresh."""
        await node.stop()
        await node.start()

    @op("pause", on_node=True)
    async def pause(self, node: Node) -> None:
        node.pause()

    @op("resume", on_node=True)
    async def resume(self, node: Node) -> None:
        node.resume()

    @op("isolate", on_node=True)
    async def isolate(self, node: Node) -> None:
        node.isolate()

    @op("heal", on_node=True)
    async def heal(self, node: Node) -> None:
        node.heal()
