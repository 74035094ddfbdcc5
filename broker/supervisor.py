"""`kraftboard cluster`: run a local cluster under a supervisor, and drive it."""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path

from broker.cluster import ClusterError, client
from broker.cluster.layout import Layout, default_data_dir, prepare_nodes
from broker.cluster.supervisor import READY_TIMEOUT, STOP_GRACE, State, Supervisor, describe_exit
from broker.config import ConfigError

# Ops on one node: the command, its help. Each is the supervisor op of the same name.
NODE_COMMANDS = {
    "kill": "SIGKILL a node (for real: no goodbye, no flush)",
    "pause": "SIGSTOP a node: a hung broker, its connections open",
    "resume": "SIGCONT a paused node",
    "isolate": "cut a node off from its peers; clients still reach it",
    "heal": "reconnect an isolated node to its peers",
    "restart": "start a node again on its data (stopping it first if it runs)",
}

STATUS_FIELDS = ("id", "host", "port", "pid", "state", "controller")


def add_commands(commands: argparse._SubParsersAction) -> None:
    cluster = commands.add_parser("cluster", help="run and drive a local cluster")
    cluster.set_defaults(func=lambda args: _usage(cluster))
    sub = cluster.add_subparsers(metavar="COMMAND")

    where = argparse.ArgumentParser(add_help=False)
    where.add_argument("--data-dir", type=Path, metavar="DIR",
                       help=f"the cluster's directory (default: {default_data_dir()})")

    start = sub.add_parser("start", parents=[where],
                           help="start a local cluster, one OS process per node")
    start.add_argument("--brokers", type=_bounded(1, 64), default=3, metavar="N",
                       help="number of nodes (default: 3)")
    start.add_argument("--port", type=_bounded(1, 65535), default=9092, metavar="P",
                       help="node i listens on P+i-1 (default: 9092)")
    start.add_argument("--detach", action="store_true",
                       help="run the supervisor in the background and return once ready")
    start.set_defaults(func=_command(start_cluster))

    status = sub.add_parser("status", parents=[where], help="show the nodes of the cluster")
    status.add_argument("--json", action="store_true", help="print JSON for scripts")
    status.set_defaults(func=_command(show_status))

    stop = sub.add_parser("stop", parents=[where],
                          help="stop node ID gracefully (its leaderships move first), "
                               "or without ID every node and the supervisor")
    stop.add_argument("id", type=int, nargs="?", help="the node's id (node.id)")
    stop.set_defaults(func=_command(stop_cluster))

    for name, help_text in NODE_COMMANDS.items():
        command = sub.add_parser(name, parents=[where], help=help_text)
        command.add_argument("id", type=int, help="the node's id (node.id)")
        command.set_defaults(func=_command(partial(node_command, name)))


def start_cluster(args: argparse.Namespace, layout: Layout) -> int:
    if args.port + args.brokers - 1 > 65535:
        raise ClusterError(f"{args.brokers} nodes from port {args.port} run past 65535", 2)
    try:
        status = client.request(layout.root, "status")
    except client.NotRunning:
        pass
    else:
        print(f"kraftboard: a cluster is already running in {layout.root}")
        _print_status(status)
        return 0
    configs = prepare_nodes(layout, args.brokers, args.port)
    if args.detach:
        return _detach(args, layout)
    supervisor = Supervisor(layout, configs)
    # The detached supervisor runs this same path with no terminal to press Ctrl-C in.
    return asyncio.run(supervisor.run(
        partial(_print_ready, layout, foreground=sys.stdin.isatty())))


def _detach(args: argparse.Namespace, layout: Layout) -> int:
    """Run `cluster start` as a daemon in a new session; return once it is ready."""
    argv = [sys.executable, "-m", "broker", "--log-level", args.log_level, "cluster", "start",
            "--data-dir", str(layout.root), "--brokers", str(args.brokers),
            "--port", str(args.port)]
    with open(layout.log, "ab") as out:
        log_start = out.tell()
        daemon = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out,
                                  stderr=subprocess.STDOUT, start_new_session=True,
                                  env={**os.environ, "PYTHONUNBUFFERED": "1"})
    deadline = time.monotonic() + READY_TIMEOUT + 10
    while time.monotonic() < deadline:
        if daemon.poll() is not None:
            with open(layout.log, "rb") as out:
                out.seek(log_start)
                sys.stderr.write(out.read().decode(errors="replace"))
            return daemon.returncode or 1
        try:
            status = client.request(layout.root, "status", timeout=5.0)
        except (client.NotRunning, ConnectionError):
            pass  # not listening yet, or going away: the daemon's exit is checked above
        else:
            if all(node["state"] == State.RUNNING for node in status["nodes"]):
                _print_ready(layout, status, foreground=False)
                return 0
        time.sleep(0.1)
    raise ClusterError(f"the supervisor (pid {daemon.pid}) did not report a ready cluster "
                       f"within {READY_TIMEOUT + 10:g} s; see {layout.log}, and stop it with "
                       f"`{_hint(layout, 'stop')}`")


def show_status(args: argparse.Namespace, layout: Layout) -> int:
    status = _call(layout, "status")
    if args.json:
        print(json.dumps({"bootstrap": status["bootstrap"], "controller": status["controller"],
                          "nodes": [{key: node[key] for key in STATUS_FIELDS}
                                    for node in status["nodes"]]}))
    else:
        print(f"cluster in {layout.root} (supervisor pid {status['supervisor_pid']})")
        _print_status(status)
    return 0


def stop_cluster(args: argparse.Namespace, layout: Layout) -> int:
    if args.id is not None:
        return node_command("stop", args, layout)
    _call(layout, "stop")
    # The supervisor removes its pid file last, after the nodes and the socket are gone.
    deadline = time.monotonic() + STOP_GRACE + 10
    while layout.pid_file.exists():
        if time.monotonic() > deadline:
            raise ClusterError(f"the supervisor is still stopping after {STOP_GRACE + 10:g} s; "
                               f"see {layout.log}")
        time.sleep(0.05)
    print(f"kraftboard: stopped the cluster in {layout.root}")
    return 0


def node_command(op: str, args: argparse.Namespace, layout: Layout) -> int:
    node = _call(layout, op, id=args.id)["node"]
    pid = f", pid {node['pid']}" if node["pid"] else ""
    print(f"node {node['id']} ({node['host']}:{node['port']}{pid}) is {node['state']}")
    return 0


def _call(layout: Layout, op: str, **params) -> dict:
    """One request to the supervisor; a failed op becomes a ClusterError to report."""
    try:
        response = client.request(layout.root, op, **params)
    except client.NotRunning:
        raise ClusterError(f"no cluster running in {layout.root}; start one with "
                           f"`{_hint(layout, 'start')}`") from None
    except OSError as exc:
        raise ClusterError(f"the supervisor of {layout.root} did not answer: {exc}") from None
    if not response["ok"]:
        raise ClusterError(response["error"], 2 if response.get("kind") == "usage" else 1)
    return response


def _command(run: Callable[[argparse.Namespace, Layout], int]) -> Callable:
    """Give a command its Layout, and turn the errors it raises into a message and status."""
    def command(args: argparse.Namespace) -> int:
        layout = Layout((args.data_dir or default_data_dir()).expanduser().absolute())
        try:
            return run(args, layout)
        except ConfigError as exc:
            print(f"kraftboard: refused config: {exc}", file=sys.stderr)
            return 2
        except ClusterError as exc:
            print(f"kraftboard: {exc}", file=sys.stderr)
            return exc.exit_code
    return command


def _print_status(status: dict) -> None:
    rows = [("ID", "ADDRESS", "PID", "STATE")]
    for node in status["nodes"]:
        state = node["state"]
        if state == State.EXITED:
            state += f" ({describe_exit(node['exit_code'])})"
        rows.append((str(node["id"]), f"{node['host']}:{node['port']}",
                     str(node["pid"] or "-"), state))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
    print(f"bootstrap: {status['bootstrap']}")
    controller = status["controller"]
    print(f"active controller: {'none reachable' if controller is None else f'node {controller}'}")


def _print_ready(layout: Layout, status: dict, foreground: bool) -> None:
    bootstrap = status["bootstrap"]
    print(f"kraftboard: {len(status['nodes'])} node(s) running, data in {layout.root}\n"
          f"  bootstrap  {bootstrap}\n"
          f"  kcat       kcat -b {bootstrap} -L\n"
          f"  python     from kafka import KafkaProducer; "
          f"KafkaProducer(bootstrap_servers=\"{bootstrap}\")\n"
          f"  status     {_hint(layout, 'status')}\n"
          f"  stop       {_hint(layout, 'stop')}" + ("  (or Ctrl-C here)" if foreground else ""),
          flush=True)


def _hint(layout: Layout, command: str) -> str:
    """The command line for `command` on this cluster, ready to paste."""
    where = "" if layout.root == default_data_dir() else f" --data-dir {shlex.quote(str(layout.root))}"
    return f"kraftboard cluster {command}{where}"


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help()
    return 2


def _bounded(low: int, high: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        value = int(text)
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be between {low} and {high}")
        return value
    return parse
