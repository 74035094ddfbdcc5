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
from pathlib import Path


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
    from broker.cluster import ClusterError
    from broker.cluster.layout import default_data_dir
    from broker.config import ConfigError

    from tui.app import KraftboardApp
    from tui.config import Settings, load_client_config, state_dir
    from tui.demo import DemoProducer
    from tui.local import start_or_attach
    from tui.source import ClusterSource

    client_config = {}
    if args.client_config:
        try:
            client_config = load_client_config(args.client_config)
        except ConfigError as exc:
            print(f"kraftboard: refused client config: {exc}", file=sys.stderr)
            return 2
    local = None
    if args.bootstrap_server:
        bootstrap = args.bootstrap_server
    else:
        data_dir = args.data_dir or default_data_dir()
        try:
            local = start_or_attach(data_dir, brokers=3, port=args.port)
            bootstrap = local.bootstrap()
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
