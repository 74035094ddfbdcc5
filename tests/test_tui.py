"""The console, driven by Textual's Pilot against a real 3-node cluster run by a supervisor."""
from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from broker import cli
from conftest import free_port
from screenshots.scene import start_cluster, stop_cluster
from tui.app import KraftboardApp
from tui.config import Settings
from tui.demo import DEMO_TOPICS, DemoProducer
from tui.local import LocalCluster
from tui.source import ClusterSource
from tui.widgets.live_table import LiveTable, plain

SIZE = (140, 44)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> LocalCluster:
    """Three nodes under a detached supervisor, as `kraftboard` itself starts them."""
    data_dir = tmp_path_factory.mktemp("tui") / "cluster"
    yield start_cluster(data_dir, brokers=3)
    stop_cluster(data_dir)


def console(cluster: LocalCluster, tmp_path: Path, demo: bool = True,
            settings: Settings | None = None) -> KraftboardApp:
    bootstrap = cluster.bootstrap()
    return KraftboardApp(ClusterSource(bootstrap, local=cluster), f"local {bootstrap}",
                         settings or Settings(path=tmp_path / "config.yaml"),
                         demo=DemoProducer(bootstrap, rate=20) if demo else None,
                         refresh_interval=0.3)


async def until(pilot, condition: Callable[[], object], timeout: float = 30.0,
                what: str = "the condition") -> None:
    """Let the app run until `condition()` holds; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await pilot.pause(0.1)


def rows(app: KraftboardApp, table_id: str) -> dict[str, list[str]]:
    """A table of the visible view as {row key: [plain cells]}."""
    table = app.visible_view().query_one(f"#{table_id}", LiveTable)
    return {key: [plain(c) for c in cells] for key, cells in table.shown}


async def test_cluster_view_shows_brokers_and_quorum(cluster, tmp_path):
    app = console(cluster, tmp_path, demo=False)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: len(rows(app, "voters")) == 3, what="three voters")
        await until(pilot, lambda: [cells[2] for cells in rows(app, "brokers").values()]
                    == ["online"] * 3, what="three brokers online")
        brokers = rows(app, "brokers")
        assert sorted(brokers) == ["1", "2", "3"]
        roles = [cells[5] for cells in brokers.values()]
        assert sum("quorum leader" in role for role in roles) == 1
        leader = app.snapshot.quorum.leader
        assert "(leader)" in rows(app, "voters")[str(leader)][0]


async def test_topics_view_counts_demo_records(cluster, tmp_path):
    app = console(cluster, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("2")
        await until(pilot, lambda: set(DEMO_TOPICS) <= set(rows(app, "topics")),
                    what="the demo topics")

        def counted() -> bool:
            table = rows(app, "topics")
            return all(int(table[t][4].replace(",", "")) > 0 and table[t][6] not in ("-", "0.0")
                       and None not in (p.size for p in app.snapshot.topics[t].partitions)
                       for t in DEMO_TOPICS)

        await until(pilot, counted, what="records, sizes and a rate on every demo topic")
        assert rows(app, "topics")["orders"][1:3] == ["3", "3"]
        # The size is what the partition leaders hold, as their DescribeLogDirs answers say.
        orders = app.snapshot.topics["orders"]
        assert orders.size == sum(p.size for p in orders.partitions) > 0


async def test_create_grow_and_delete_a_topic_from_the_keyboard(cluster, tmp_path):
    app = console(cluster, tmp_path, demo=False)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("2")
        await until(pilot, lambda: app.snapshot is not None)
        await pilot.press("n")
        await pilot.click("#name")
        await pilot.press(*"audit", "tab", "backspace", "2", "tab", "backspace", "2", "enter")
        await until(pilot, lambda: "audit" in rows(app, "topics"), what="the new topic")
        assert rows(app, "topics")["audit"][1:3] == ["2", "2"]

        app.screen.query_one(LiveTable).select_key("audit")
        await pilot.press("a", "backspace", "4", "enter")
        await until(pilot, lambda: rows(app, "topics")["audit"][1] == "4", what="4 partitions")

        await pilot.press("d")
        await pilot.press(*"audi", "enter")  # a wrong name keeps the dialog open
        assert "audit" in rows(app, "topics")
        await pilot.press("t", "enter")
        await until(pilot, lambda: "audit" not in rows(app, "topics"), what="the deletion")


async def test_topic_detail_lists_partitions(cluster, tmp_path):
    app = console(cluster, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("2")
        await until(pilot, lambda: "orders" in rows(app, "topics"))
        app.screen.query_one(LiveTable).select_key("orders")
        await pilot.press("enter")
        await until(pilot, lambda: len(app.screen.query("#partitions")) == 1
                    and len(rows(app, "partitions")) == 3, what="three partitions")
        for index, (partition, leader, replicas, isr, *_, size) in rows(app, "partitions").items():
            assert partition == index
            assert leader in replicas.split(",")
            assert sorted(isr.split(",")) == sorted(replicas.split(","))
            assert size.endswith("B") or size.endswith("bytes")
        await pilot.press("escape")
        assert app.screen.query("#topics")


async def test_theme_switch_is_remembered(cluster, tmp_path):
    app = console(cluster, tmp_path, demo=False)
    async with app.run_test(size=SIZE) as pilot:
        assert app.theme == "kraftboard-dark"
        assert {"kraftboard-light", "kraftboard-colorblind"} <= set(app.available_themes)
        app.theme = "kraftboard-colorblind"
        await pilot.pause()
    saved = yaml.safe_load((tmp_path / "config.yaml").read_text())
    assert saved["theme"] == "kraftboard-colorblind"
    assert Settings.load(tmp_path / "config.yaml").theme == "kraftboard-colorblind"


USER_THEME = {"name": "harbour-night", "primary": "#2a9d8f", "secondary": "#264653",
              "accent": "#e9c46a", "background": "#0b1d26", "dark": True}


async def test_a_user_theme_is_chosen_from_the_palette_and_remembered(cluster, tmp_path,
                                                                       monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    themes = tmp_path / "config" / "kraftboard" / "themes"
    themes.mkdir(parents=True)
    (themes / "harbour.yaml").write_text(yaml.safe_dump(USER_THEME))
    app = console(cluster, tmp_path, demo=False, settings=Settings.load())
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.snapshot is not None)
        assert app.theme == "kraftboard-dark"
        await pilot.press("ctrl+p")
        await until(pilot, lambda: type(app.screen).__name__ == "CommandPalette",
                    what="the command palette")
        await pilot.press(*"harbour-night")
        commands = app.screen.query_one("CommandList")
        await until(pilot, lambda: commands.highlighted is not None and "harbour-night" in str(
            commands.get_option_at_index(commands.highlighted).prompt), what="the theme's hit")
        await pilot.press("enter")
        await until(pilot, lambda: app.theme == "harbour-night", what="the theme switch")
        assert app.current_theme.primary == USER_THEME["primary"]
    saved = tmp_path / "config" / "kraftboard" / "config.yaml"
    assert yaml.safe_load(saved.read_text())["theme"] == "harbour-night"

    again = console(cluster, tmp_path, demo=False, settings=Settings.load())
    async with again.run_test(size=SIZE) as pilot:
        await pilot.pause()
        assert again.theme == "harbour-night"


async def test_a_broken_user_theme_is_reported_and_the_console_carries_on(cluster, tmp_path,
                                                                          monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    themes = tmp_path / "config" / "kraftboard" / "themes"
    themes.mkdir(parents=True)
    (themes / "bad-colour.yaml").write_text(yaml.safe_dump({**USER_THEME, "accent": "[gold"}))
    (themes / "typo.yaml").write_text(yaml.safe_dump({"name": "typo", "primry": "#ffffff"}))
    (themes / "good.yaml").write_text(yaml.safe_dump(USER_THEME))
    notices = []
    app = console(cluster, tmp_path, demo=False, settings=Settings.load())
    async with app.run_test(size=SIZE, notifications=True,
                            message_hook=lambda m: notices.append(m)) as pilot:
        await until(pilot, lambda: rows(app, "brokers"), what="the cluster view filled")
        refused = [m.notification.message for m in notices if type(m).__name__ == "Notify"
                   and m.notification.title == "Theme refused"]
        assert sorted(refused) == [
            f"{themes / 'bad-colour.yaml'}: accent: '[gold' is not a colour",
            f"{themes / 'typo.yaml'}: primry: unknown setting (did you mean 'primary'?)"]
        assert "harbour-night" in app.available_themes and "typo" not in app.available_themes
        toasts = " ".join(str(toast.render()) for toast in app.screen.query("Toast"))
        assert "bad-colour.yaml: accent" in toasts and "typo.yaml: primry" in toasts


def help_rows(app: KraftboardApp) -> dict[str, str]:
    """What the help panel shows: {key: its description} (keys of one action share a row)."""
    table = app.screen.query_one("BindingsTable").render_bindings_table()
    keys, descriptions = (column._cells for column in table.columns)
    return {key: plain(description) for keys_shown, description in zip(keys, descriptions)
            for key in plain(keys_shown).split()}


async def test_help_lists_every_key_and_number_keys_switch_views(cluster, tmp_path):
    from textual.widgets import HelpPanel
    app = console(cluster, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.snapshot is not None)
        for number, (mode, view) in enumerate(KraftboardApp.MODES.items(), start=1):
            await pilot.press(str(number))
            assert (app.current_mode, type(app.screen)) == (mode, view)
            await pilot.press("question_mark")
            await until(pilot, lambda: app.screen.query(HelpPanel), what="the help panel")
            shown = help_rows(app)
            # Every key bound by the app (with Textual's own and the palette's) and by the
            # view, as defined, not as help happens to list them.
            defined = [b for bindings in (app._bindings, app.screen._bindings)
                       for _, b in bindings if not b.system]
            assert defined
            for binding in defined:
                assert binding.description, f"{binding.key} ({binding.action}) has no help"
                key = app.get_key_display(binding)
                # A row reads "description tooltip", that of the first key of its action.
                assert shown.get(key, "").startswith(binding.description), \
                    f"{mode}: {key} {binding.description} not in help: {shown}"
            await pilot.press("question_mark")
            assert not app.screen.query(HelpPanel)


def test_a_bad_client_config_is_refused_with_file_key_and_reason(tmp_path, capsys):
    config = tmp_path / "client.yaml"
    config.write_text(yaml.safe_dump({"security.protocol": "SASL_SSL",
                                      "sasl.mechanisms": "PLAIN"}))
    code = cli.main(["ui", "--bootstrap-server", "127.0.0.1:1", "--client-config", str(config)])
    assert code == 2
    error = capsys.readouterr().err
    assert str(config) in error and "sasl.mechanisms" in error
    assert "did you mean 'sasl.mechanism'" in error


async def test_groups_view_shows_why_it_is_empty_or_the_groups(cluster, tmp_path):
    app = console(cluster, tmp_path, demo=False)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("3")
        await until(pilot, lambda: app.snapshot is not None)
        await pilot.pause(0.2)
        note = app.screen.query_one("#groups-empty")
        if app.snapshot.groups:
            assert note.has_class("hidden") and rows(app, "groups")
        else:
            assert not note.has_class("hidden")
            text = str(note.render())
            assert ("No consumer groups" in text) and (app.snapshot.groups_error or "yet") in text


def broker_serves(api_key: int) -> bool:
    import broker.apis  # noqa: F401 (registers the APIs)
    from broker.protocol import REGISTRY
    return api_key in REGISTRY


@pytest.mark.skipif(not broker_serves(16), reason="the broker has no consumer groups yet")
async def test_a_paused_consumer_groups_lag_rises_and_shows_per_partition(cluster, tmp_path):
    from aiokafka import AIOKafkaConsumer
    app = console(cluster, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.snapshot and "orders" in app.snapshot.topics)
        consumer = AIOKafkaConsumer("orders", group_id="tui-lag", auto_offset_reset="earliest",
                                    bootstrap_servers=cluster.bootstrap())
        await consumer.start()
        try:
            await consumer.getmany(timeout_ms=3000)
            await consumer.commit()
            await pilot.press("3")
            await until(pilot, lambda: "tui-lag" in rows(app, "groups"), what="the group")
            first = int(rows(app, "groups")["tui-lag"][4].replace(",", ""))
            await until(pilot, lambda: int(rows(app, "groups")["tui-lag"][4].replace(",", ""))
                        > first, what="the lag to rise while the consumer is paused")
            app.screen.query_one(LiveTable).select_key("tui-lag")
            await pilot.press("enter")
            await until(pilot, lambda: len(app.screen.query("#group-partitions")) == 1
                        and len(rows(app, "group-partitions")) == 3, what="lag per partition")
            detail = rows(app, "group-partitions")
            assert sorted(detail) == ["orders-0", "orders-1", "orders-2"]
            committed = {key: cells for key, cells in detail.items() if cells[2] != "-"}
            assert committed, "no committed offsets shown"
            for topic, index, offset, end, lag, _ in committed.values():
                assert int(lag.replace(",", "")) == (int(end.replace(",", ""))
                                                     - int(offset.replace(",", "")))
        finally:
            await consumer.stop()


async def test_a_record_produced_from_the_dialog_shows_in_the_tail(cluster, tmp_path):
    from tui.widgets.record_log import RecordLog
    app = console(cluster, tmp_path, demo=False)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: app.snapshot and "payments" in app.snapshot.topics)
        await pilot.press("4", "t")
        options = app.screen.query_one("OptionList")
        options.highlighted = sorted(app.snapshot.topics).index("payments")
        await pilot.press("enter")
        view = app.visible_view()
        await until(pilot, lambda: view.topic == "payments", what="the tail on payments")
        await pilot.press("p")
        await pilot.click("#key")
        await pilot.press(*"k-42", "tab", *'{"hello": 1}', "tab", *"trace=abc", "tab", "1",
                          "enter")
        log = view.query_one(RecordLog)

        def arrived():
            return [r for r in map(log.record, range(len(log.rows))) if r.key == b"k-42"]

        await until(pilot, arrived, what="the produced record in the tail")
        record = arrived()[0]
        assert (record.partition, record.value, record.headers) == \
            (1, b'{"hello": 1}', (("trace", b"abc"),))
        await pilot.press("f")  # JSON: the detail pane pretty-prints the value
        assert '"hello": 1' in str(view.query_one("#record").render())


async def test_killing_a_partition_leader_from_the_keyboard(cluster, tmp_path):
    app = console(cluster, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("5")
        await until(pilot, lambda: "orders-0" in rows(app, "drill-partitions"))
        partitions = app.screen.query_one("#drill-partitions", LiveTable)
        partitions.select_key("orders-0")
        partitions.focus()
        old_leader = int(rows(app, "drill-partitions")["orders-0"][1])
        await pilot.press("l")
        await pilot.press("enter")  # confirm
        try:
            await until(pilot, lambda: rows(app, "drill-brokers")[str(old_leader)][2] == "killed",
                        what="the broker marked killed")
            await until(pilot, lambda: rows(app, "drill-partitions")["orders-0"][1]
                        not in (str(old_leader), "none"), what="a new leader for orders-0")
            new_leader = rows(app, "drill-partitions")["orders-0"][1]
            texts = [event.text for event in app.events]
            assert f"leader election on orders-0: broker {new_leader} (was broker {old_leader})" \
                in texts
            assert any(t.startswith(f"broker {old_leader} is killed") for t in texts)
            await pilot.press("1")
            log = app.screen.query_one("#events")
            assert any("leader election on orders-0" in line.text for line in log.lines)
        finally:
            await cluster.drill("restart", old_leader)


async def test_a_dead_cluster_shows_its_state_and_the_console_stays_usable(tmp_path):
    bootstrap = f"127.0.0.1:{free_port()}"  # nothing listens there
    app = KraftboardApp(ClusterSource(bootstrap), bootstrap, Settings(path=tmp_path / "c.yaml"),
                        refresh_interval=0.2)
    async with app.run_test(size=SIZE) as pilot:
        status = lambda: str(app.screen.query_one("StatusLine").render())  # noqa: E731
        await until(pilot, lambda: "⚠" in status(), what="the problem in the status line")
        assert app.problem and bootstrap in status()
        await pilot.press("5")  # keys still work while refreshes keep failing
        note = app.screen.query_one("#drills-unavailable")
        assert not note.has_class("hidden")
        assert "only on the bundled cluster" in str(note.render())
        assert "⚠" in status()


async def test_pausing_a_broker_shows_it_paused_and_the_console_keeps_refreshing(cluster,
                                                                                  tmp_path):
    app = console(cluster, tmp_path, demo=False)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("5")
        await until(pilot, lambda: rows(app, "drill-brokers").get("3", [""] * 3)[2] == "online",
                    what="broker 3 online")
        app.screen.query_one("#drill-brokers", LiveTable).select_key("3")
        await pilot.press("p", "enter")  # pause asks first
        try:
            await until(pilot, lambda: rows(app, "drill-brokers")["3"][2] == "paused",
                        what="broker 3 paused")
            taken = app.snapshot.taken_at
            await until(pilot, lambda: app.snapshot.taken_at > taken and not app.problem,
                        what="a refresh with broker 3 hung")
            await pilot.press("p")  # resume does not ask
            await until(pilot, lambda: rows(app, "drill-brokers")["3"][2] == "online",
                        what="broker 3 online again")
        finally:
            if app.snapshot.broker_state(3) == "paused":
                await cluster.drill("resume", 3)


async def test_a_drill_under_the_verified_workload_writes_a_report(cluster, tmp_path):
    import json

    app = console(cluster, tmp_path, demo=False)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("5")
        await until(pilot, lambda: app.snapshot and len(app.snapshot.brokers) == 3)
        view = app.screen
        await pilot.press("w")
        await until(pilot, lambda: view.session and view.session.workload
                    and view.session.workload.acknowledged > 100, what="acknowledged writes")
        await until(pilot, lambda: "drill-workload-1" in rows(app, "drill-partitions"))
        partitions = view.query_one("#drill-partitions", LiveTable)
        partitions.select_key("drill-workload-1")
        partitions.focus()
        victim = int(rows(app, "drill-partitions")["drill-workload-1"][1])
        await pilot.press("l", "enter")
        try:
            await until(pilot, lambda: view.session.drills
                        and view.session.drills[-1].resumed_after is not None,
                        what="writes to resume on every partition")
            await pilot.press("w")
            await until(pilot, lambda: "report" in str(view.query_one("#workload").render()),
                        timeout=90, what="the report")
        finally:
            await cluster.drill("restart", victim)
    reports = sorted((cluster.data_dir / "drills").glob("drill-*.json"))
    report = json.loads(reports[-1].read_text())
    assert report["ok"] and report["lost"] == 0 and report["duplicated"] == 0
    assert report["acknowledged"] > 100 and report["consumed"] >= report["acknowledged"]
    assert report["drills"][0]["action"] == f"kill broker {victim}, leader of drill-workload-1"
    assert report["drills"][0]["resumed_after"] > 0
    markdown = reports[-1].with_suffix(".md").read_text()
    assert "nothing acknowledged was lost" in markdown and f"kill broker {victim}" in markdown


async def test_table_keys_and_clicks_move_the_selection_and_open_a_row(cluster, tmp_path):
    app = console(cluster, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("2")
        await until(pilot, lambda: set(DEMO_TOPICS) <= set(rows(app, "topics")))
        table = app.screen.query_one(LiveTable)
        names = list(rows(app, "topics"))
        table.focus()
        table.select_key(names[0])
        await pilot.press("down")
        assert table.selected_key == names[1]
        await pilot.press("end")
        assert table.selected_key == names[-1]
        await pilot.press("home")
        assert table.selected_key == names[0]
        row = names.index("payments") + 1  # below the header line
        await pilot.click(LiveTable, offset=(2, row))
        assert table.selected_key == "payments"
        await pilot.click(LiveTable, offset=(2, row))  # a click on the selected row opens it
        await until(pilot, lambda: getattr(app.screen, "topic", None) == "payments",
                    what="the topic's partitions")


async def test_filter_help_and_palette_keys(cluster, tmp_path):
    app = console(cluster, tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("2")
        await until(pilot, lambda: set(DEMO_TOPICS) <= set(rows(app, "topics")))
        app.screen.query_one(LiveTable).select_key("payments")
        await pilot.press("slash", *"pay")
        await until(pilot, lambda: list(rows(app, "topics")) == ["payments"], what="the filter")
        await pilot.press("enter")
        taken = app.snapshot.taken_at
        await until(pilot, lambda: app.snapshot.taken_at > taken, what="a refresh")
        assert list(rows(app, "topics")) == ["payments"]  # refreshes keep the filter
        assert app.screen.query_one(LiveTable).selected_key == "payments"
        await pilot.press("escape")
        await until(pilot, lambda: set(DEMO_TOPICS) <= set(rows(app, "topics")))
        assert app.screen.query_one(LiveTable).selected_key == "payments"  # and the selection

        await pilot.press("question_mark")
        assert app.screen.query("HelpPanel")
        await pilot.press("question_mark")
        assert not app.screen.query("HelpPanel")
        await pilot.press("ctrl+p")
        await until(pilot, lambda: type(app.screen).__name__ == "CommandPalette",
                    what="the command palette")
        await pilot.press("escape")
