"""`kraftboard`: one entry point for a node, the local cluster, and the load tool."""
from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from broker import perf, supervisor
from broker.config import ConfigError, NodeConfig
from tui import launch


def run_node(args: argparse.Namespace) -> int:
    from broker.node import serve_forever

    try:
        config = NodeConfig.load(args.config)
    except ConfigError as exc:
        print(f"kraftboard: refused config: {exc}", file=sys.stderr)
        return 2
    try:
        asyncio.run(serve_forever(config))
    except KeyboardInterrupt:
        pass
    except OSError as exc:  # a busy port, an unwritable data directory
        print(f"kraftboard: node {config.node_id} cannot start: {exc}", file=sys.stderr)
        return 1
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kraftboard",
        description="A Kafka-compatible cluster on your laptop, and a console for any Kafka cluster.")
    parser.add_argument("--log-level", default="INFO",
                        choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    node = commands.add_parser("broker", help="run one node in the foreground")
    node.add_argument("--config", required=True, metavar="FILE",
                      help="the node's YAML config (Kafka config names)")
    node.set_defaults(func=run_node)

    supervisor.add_commands(commands)
    perf.add_commands(commands)
    launch.add_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:  # `kraftboard` alone: the console on the bundled cluster
        args = parser.parse_args([*(sys.argv[1:] if argv is None else argv), "ui"])
    logging.basicConfig(level=args.log_level,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    return args.func(args)
