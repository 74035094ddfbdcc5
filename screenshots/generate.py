"""`make screenshots`: an SVG of every view of the console, from a deterministic cluster.

Starts a 3-node cluster in a temporary directory, writes the fixed scene (see
scene.py), opens the console on it headless, creates one topic from the console (so
the event log has something to say) and saves screenshots/<view>.svg, plus the cluster
view in the light and colour-blind themes.
"""
from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from screenshots.scene import (SIZE, VIEWS, fill, settle, stable_app,  # noqa: E402
                               start_cluster, stop_cluster)
from tui.source import ClusterSource  # noqa: E402

OUT = Path(__file__).resolve().parent
BROKERS = 3
THEMES = {"cluster-light": "kraftboard-light", "cluster-colorblind": "kraftboard-colorblind"}


async def shoot(cluster, workdir: Path) -> list[Path]:
    source = ClusterSource(cluster.bootstrap())
    try:
        await fill(source, BROKERS)
    finally:
        await source.close()
    written = []
    app = stable_app(cluster, workdir / "config.yaml")
    async with app.run_test(size=SIZE) as pilot:
        await settle(pilot, "brokers")
        await app.source.create_topic("refunds", 1, BROKERS, {})
        for name, keys, table in VIEWS:
            await pilot.press(*keys)
            await settle(pilot, table)
            written.append(Path(app.save_screenshot(f"{name}.svg", str(OUT))))
    for name, theme in THEMES.items():
        app = stable_app(cluster, workdir / f"{name}.yaml", theme=theme)
        async with app.run_test(size=SIZE) as pilot:
            await settle(pilot, "brokers")
            written.append(Path(app.save_screenshot(f"{name}.svg", str(OUT))))
    return written


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="kraftboard-shots-") as tmp:
        data_dir = Path(tmp) / "cluster"
        cluster = start_cluster(data_dir, brokers=BROKERS)
        try:
            for path in asyncio.run(shoot(cluster, Path(tmp))):
                print(f"wrote {path.relative_to(OUT.parent)}")
        finally:
            stop_cluster(data_dir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
