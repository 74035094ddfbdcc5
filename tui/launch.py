"""`kraftboard ui` and `kraftboard` alone: open the console.

Without --bootstrap-server the console starts (or attaches to) the bundled 3-node
cluster in the user's data directory, adds demo topics with a demo producer, and
leaves the cluster running on exit. This module is imported by every `kraftboard`
command, so it imports Textual and the Kafka clients only when the console opens.
"""
from __future__ import annotations

import argparse
import logging
import sys
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tui.local import LocalCluster


def add_commands(commands: argparse._SubParsersAction) -> None:
    ui = commands.add_parser(
        "ui", help="open the console (on the bundled cluster unless --bootstrap-server)")
    ui.add_argument("--bootstrap-server", metavar="HOST:PORT",
                    help="any Kafka cluster; without it, the bundled local cluster")
    ui.add_argument("--client-config", type=Path, metavar="FILE",
                    help="YAML with Kafka client settings (security.protocol, sasl.*, ssl.*)")
    ui.add_argument("--data-dir", type=Path, metavar="DIR",
                    help="the bundled cluster's directory (default: as `cluster start`)")
    ui.add_argument("--port", type=int, default=9092, metavar="P",
                    help="the bundled cluster's first port (default: 9092)")
    ui.add_argument("--no-demo", action="store_true",
                    help="no demo topics and producer on the bundled cluster")
    ui.add_argument("--refresh", type=float, default=1.0, metavar="SECONDS",
                    help="pause between refreshes (default: 1)")
    ui.set_defaults(func=run_console)


def run_console(args: argparse.Namespace) -> int:
    from broker.config import ConfigError

    client_config = {}
    if args.client_config:
        from tui.config import load_client_config
        try:
            client_config = load_client_config(args.client_config)
        except ConfigError as exc:
            print(f"kraftboard: refused client config: {exc}", file=sys.stderr)
            return 2
    if args.bootstrap_server:
        return _open_console(args, client_config, None)
    # Starting the bundled cluster takes seconds, most of them waiting for its nodes: it
    # runs while this thread imports Textual and the Kafka clients.
    with ThreadPoolExecutor(1, thread_name_prefix="cluster-start") as pool:
        return _open_console(args, client_config, pool.submit(_start_or_attach, args))


def _start_or_attach(args: argparse.Namespace) -> tuple[LocalCluster, str]:
    from broker.cluster.layout import default_data_dir

    from tui.local import start_or_attach

    local = start_or_attach(args.data_dir or default_data_dir(), brokers=3, port=args.port)
    return local, local.bootstrap()


def _open_console(args: argparse.Namespace, client_config: dict,
                  starting: Future[tuple[LocalCluster, str]] | None) -> int:
    """The console on --bootstrap-server, or on the bundled cluster once `starting` is done."""
    from broker.cluster import ClusterError
    from broker.config import ConfigError

    from tui.app import KraftboardApp
    from tui.config import Settings, state_dir
    from tui.demo import DemoProducer
    from tui.source import ClusterSource

    local = None
    if starting is None:
        bootstrap = args.bootstrap_server
    else:
        try:
            local, bootstrap = starting.result()
        except ConfigError as exc:
            print(f"kraftboard: refused config: {exc}", file=sys.stderr)
            return 2
        except (ClusterError, OSError) as exc:
            print(f"kraftboard: {exc}", file=sys.stderr)
            return getattr(exc, "exit_code", 1)
    _log_to_file(state_dir() / "console.log", args.log_level)
    source = ClusterSource(bootstrap, client_config, local)
    where = f"local cluster {bootstrap}" if local else bootstrap
    demo = DemoProducer(bootstrap) if local and not args.no_demo else None
    app = KraftboardApp(source, where, Settings.load(), demo=demo,
                        refresh_interval=args.refresh)
    app.run()
    if local:
        print(f"kraftboard: the cluster keeps running; stop it with "
              f"`kraftboard cluster stop --data-dir {local.data_dir}`")
    return app.return_code or 0


def _log_to_file(path: Path, level: str) -> None:
    """Log lines would tear the screen; they go to a file while the console runs."""
    path.parent.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(filename=path, level=level, force=True,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
