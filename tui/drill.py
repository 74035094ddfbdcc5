"""A drill session: a verified workload writes while drills run, then a report.

The workload (`broker.workload.VerifiedWorkload`) is an idempotent acks=all producer
whose records are read back at the end: every acknowledged record must be there once.
The session notes each drill and how long writes took to resume on every partition
after it, and writes the report as Markdown and JSON into the cluster's directory.
"""
from __future__ import annotations

import asyncio
import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from aiokafka.errors import TopicAlreadyExistsError

from tui.source import ClusterSource

TOPIC = "drill-workload"
PARTITIONS = 3
RATE = 200  # records per second


def workload_class() -> Any:
    """The verified workload, or None in a build that lacks it."""
    try:
        from broker.workload import VerifiedWorkload
    except ImportError:
        return None
    return VerifiedWorkload


@dataclass
class Drill:
    at: float  # wall clock
    moment: float  # time.monotonic(), to compare with the workload's acknowledgements
    action: str
    resumed_after: float | None = None  # seconds until every partition took writes again


@dataclass
class Report:
    started: float
    ended: float
    topic: str
    produced: int
    acknowledged: int
    consumed: int
    lost: int
    duplicated: int
    out_of_order: int
    delivery_errors: dict[str, int]
    drills: list[Drill] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.lost or self.duplicated or self.out_of_order)

    def markdown(self) -> str:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.started))
        lines = [f"# Drill report, {stamp}", "",
                 f"Verdict: **{'nothing acknowledged was lost' if self.ok else 'FAILED'}**", "",
                 f"A verified workload (idempotent, acks=all) wrote to `{self.topic}` for "
                 f"{self.ended - self.started:.0f} s.", "",
                 "| produced | acknowledged | consumed | lost | duplicated | out of order |",
                 "|---|---|---|---|---|---|",
                 f"| {self.produced} | {self.acknowledged} | {self.consumed} | {self.lost} | "
                 f"{self.duplicated} | {self.out_of_order} |", "", "## Drills", ""]
        if not self.drills:
            lines.append("None.")
        else:
            lines += ["| at | drill | writes resumed after |", "|---|---|---|"]
            for drill in self.drills:
                resumed = ("not yet" if drill.resumed_after is None
                           else f"{drill.resumed_after:.2f} s")
                lines.append(f"| {time.strftime('%H:%M:%S', time.localtime(drill.at))} | "
                             f"{drill.action} | {resumed} |")
        if self.delivery_errors:
            lines += ["", "Delivery errors reported to the producer: " + ", ".join(
                f"{name} ×{count}" for name, count in sorted(self.delivery_errors.items()))]
        return "\n".join(lines) + "\n"

    def write(self, directory: Path) -> Path:
        """Write drill-<time>.md and .json; returns the Markdown file's path."""
        directory.mkdir(parents=True, exist_ok=True)
        base = directory / time.strftime("drill-%Y%m%d-%H%M%S", time.localtime(self.started))
        base.with_suffix(".json").write_text(json.dumps({**asdict(self), "ok": self.ok},
                                                        indent=2) + "\n")
        markdown = base.with_suffix(".md")
        markdown.write_text(self.markdown())
        return markdown


class DrillSession:
    def __init__(self, source: ClusterSource, report_dir: Path):
        self.source, self.report_dir = source, report_dir
        self.drills: list[Drill] = []
        self.started = time.time()
        self.workload: Any = None

    async def start(self) -> None:
        try:
            await self.source.create_topic(TOPIC, PARTITIONS, 3, {"min.insync.replicas": "2"})
        except TopicAlreadyExistsError:
            pass
        self.workload = await asyncio.to_thread(
            lambda: workload_class()(self.source.bootstrap, TOPIC, PARTITIONS, rate=RATE).start())

    def note(self, action: str) -> None:
        self.drills.append(Drill(time.time(), time.monotonic(), action))

    def update(self) -> None:
        """Fill in, for each drill, when writes resumed on every partition."""
        for drill in self.drills:
            if drill.resumed_after is None:
                per_partition = [self.workload.resumed_after(drill.moment, partition=p)
                                 for p in range(PARTITIONS)]
                if None not in per_partition:
                    drill.resumed_after = max(per_partition)

    async def finish(self) -> tuple[Report, Path]:
        """Stop writing, read everything back, and write the report."""
        await asyncio.to_thread(self.workload.stop)
        self.update()
        verification = await asyncio.to_thread(self.workload.verify)
        report = Report(self.started, time.time(), TOPIC, self.workload.produced,
                        verification.acknowledged, verification.consumed,
                        len(verification.lost), len(verification.duplicated),
                        len(verification.out_of_order), dict(self.workload.errors), self.drills)
        return report, report.write(self.report_dir)
