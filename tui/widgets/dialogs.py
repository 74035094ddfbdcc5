"""Modal dialogs: confirmations and the forms for topics and records.

Each dialog dismisses with its result (None when cancelled), so a view can
`await app.push_screen_wait(Dialog(...))` inside a worker.
"""
from __future__ import annotations

from dataclasses import dataclass

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, OptionList, Select


class Dialog(ModalScreen):
    """A titled box with fields, an OK and a Cancel button; Esc cancels."""

    BINDINGS = [Binding("escape", "cancel", "Cancel", id="dialog.cancel")]
    TITLE_TEXT = ""

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog") as box:
            box.border_title = self.TITLE_TEXT
            yield from self.fields()
            yield Label("", id="problem")
            with Horizontal(classes="buttons"):
                yield Button("OK", variant="primary", id="ok")
                yield Button("Cancel", id="cancel")

    def fields(self) -> ComposeResult:
        raise NotImplementedError

    def result(self) -> object:
        """The dialog's value; raise ValueError with a message to keep the dialog open."""
        raise NotImplementedError

    @on(Button.Pressed, "#ok")
    @on(Input.Submitted)
    def submit(self) -> None:
        try:
            value = self.result()
        except ValueError as exc:
            self.query_one("#problem", Label).update(str(exc))
            return
        self.dismiss(value)

    @on(Button.Pressed, "#cancel")
    def action_cancel(self) -> None:
        self.dismiss(None)

    def value(self, field_id: str) -> str:
        return self.query_one(f"#{field_id}", Input).value.strip()

    def number(self, field_id: str, what: str, low: int = 1) -> int:
        try:
            number = int(self.value(field_id))
        except ValueError:
            raise ValueError(f"{what}: a whole number, please") from None
        if number < low:
            raise ValueError(f"{what}: at least {low}")
        return number


def parse_pairs(text: str, what: str) -> list[tuple[str, str]]:
    """`a=1, b=2` as [("a", "1"), ("b", "2")]."""
    pairs = []
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ValueError(f"{what}: write name=value pairs separated by commas")
        pairs.append((key.strip(), value.strip()))
    return pairs


class Confirm(Dialog):
    """Yes or no; with `type_to_confirm`, OK needs that exact text typed first."""

    TITLE_TEXT = "Are you sure?"

    def __init__(self, question: str, type_to_confirm: str | None = None):
        super().__init__()
        self.question, self.expected = question, type_to_confirm

    def fields(self) -> ComposeResult:
        yield Label(self.question)
        if self.expected:
            yield Label(f"Type [b]{self.expected}[/b] to confirm:")
            yield Input(id="typed")

    def on_mount(self) -> None:
        if not self.expected:
            self.query_one("#ok", Button).focus()

    def result(self) -> bool:
        if self.expected and self.value("typed") != self.expected:
            raise ValueError(f"type {self.expected} exactly, or press Esc")
        return True


@dataclass(frozen=True)
class TopicSpec:
    name: str
    partitions: int
    replication_factor: int
    configs: dict[str, str]


class CreateTopic(Dialog):
    TITLE_TEXT = "New topic"

    def __init__(self, default_rf: int):
        super().__init__()
        self.default_rf = default_rf

    def fields(self) -> ComposeResult:
        yield Label("Name")
        yield Input(id="name")
        yield Label("Partitions")
        yield Input("3", id="partitions")
        yield Label("Replication factor")
        yield Input(str(self.default_rf), id="rf")
        yield Label("Configs (name=value, ...), e.g. retention.ms=3600000")
        yield Input(id="configs")

    def result(self) -> TopicSpec:
        name = self.value("name")
        if not name:
            raise ValueError("the topic needs a name")
        return TopicSpec(name, self.number("partitions", "partitions"),
                         self.number("rf", "replication factor"),
                         dict(parse_pairs(self.value("configs"), "configs")))


class AddPartitions(Dialog):
    TITLE_TEXT = "Add partitions"

    def __init__(self, topic: str, current: int):
        super().__init__()
        self.topic, self.current = topic, current

    def fields(self) -> ComposeResult:
        yield Label(f"{self.topic} has {self.current} partitions. New total:")
        yield Input(str(self.current + 1), id="total")

    def result(self) -> int:
        return self.number("total", "total partitions", low=self.current + 1)


@dataclass(frozen=True)
class RecordSpec:
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]
    partition: int | None
    acks: str


class ProduceRecord(Dialog):

    def __init__(self, topic: str, partitions: int):
        super().__init__()
        self.topic, self.partitions = topic, partitions
        self.TITLE_TEXT = f"Produce to {topic}"

    def fields(self) -> ComposeResult:
        yield Label("Key (empty: none)")
        yield Input(id="key")
        yield Label("Value")
        yield Input(id="value")
        yield Label("Headers (name=value, ...)")
        yield Input(id="headers")
        yield Label(f"Partition (0-{self.partitions - 1}, empty: by key)")
        yield Input(id="partition")
        yield Label("Acks")
        yield Select([("all", "all"), ("1", "1"), ("0", "0")], value="all", allow_blank=False,
                     id="acks")

    def result(self) -> RecordSpec:
        partition = None
        if self.value("partition"):
            partition = self.number("partition", "partition", low=0)
            if partition >= self.partitions:
                raise ValueError(f"partition: the topic has {self.partitions} partitions")
        return RecordSpec(key=self.value("key").encode() or None,
                          value=self.query_one("#value", Input).value.encode(),
                          headers=[(k, v.encode())
                                   for k, v in parse_pairs(self.value("headers"), "headers")],
                          partition=partition, acks=str(self.query_one("#acks", Select).value))


class PickTopic(Dialog):
    TITLE_TEXT = "Tail which topic?"

    def __init__(self, topics: list[str]):
        super().__init__()
        self.topics = topics

    def fields(self) -> ComposeResult:
        yield OptionList(*self.topics, id="choices")

    @on(OptionList.OptionSelected)
    def _chosen(self) -> None:
        self.submit()

    def result(self) -> str:
        index = self.query_one(OptionList).highlighted
        if index is None:
            raise ValueError("choose a topic")
        return self.topics[index]
