"""Snapshot tests: the main views drawn from a deterministic single-node cluster.

The scene (screenshots/scene.py) has fixed topics and records and pins what changes
between runs. After a deliberate change to a view, update the baselines with
`pytest tests/test_tui_snapshots.py --snapshot-update` and review the SVG diff.
"""
from __future__ import annotations

import asyncio

import pytest

from screenshots.scene import SIZE, VIEWS, fill, settle, stable_app, start_cluster, stop_cluster
from tui.source import ClusterSource

@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("snapshots") / "cluster"
    cluster = start_cluster(data_dir, brokers=1)

    async def write_scene() -> None:
        source = ClusterSource(cluster.bootstrap())
        try:
            await fill(source, brokers=1)
        finally:
            await source.close()

    try:
        asyncio.run(write_scene())
        yield cluster
    finally:
        stop_cluster(data_dir)


@pytest.mark.parametrize("name, keys, table", VIEWS, ids=[v[0] for v in VIEWS])
def test_view_looks_as_before(scene, tmp_path, snap_compare, name, keys, table):
    async def open_view(pilot) -> None:
        await settle(pilot, "brokers")
        await pilot.press(*keys)
        await settle(pilot, table)

    assert snap_compare(stable_app(scene, tmp_path / "config.yaml"), terminal_size=SIZE,
                        run_before=open_view)
