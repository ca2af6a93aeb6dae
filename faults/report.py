"""What a fault campaign prints (``Report``: the figures, and whether they pass) and its
command line (``parser``, ``workspace``, ``main_with``)."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from faults.ledger import DeviceCount

OUTPUTS_OFF_LIMIT_S = 2.0
"""DESIGN.md invariant 1: a restarted unit drives every output off within 2 s of start."""


@dataclass
class Report:
    """What a campaign counted. ``ok``: nothing lost, nothing doubled, every restarted
    unit's outputs off within 2 s, every cycle done, no other problem."""

    campaign: str
    cycles_asked: int
    cycles_done: int = 0
    sent: int = 0
    stored: int = 0
    lost: int = 0
    doubled: int = 0
    waiting: int = 0
    redelivered: int = 0
    outputs_off_s: list[float] = field(default_factory=list)
    wall_s: float = 0.0
    figures: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def add(self, count: DeviceCount) -> None:
        self.sent += count.assigned
        self.stored += count.distinct
        self.lost += count.lost
        self.doubled += count.doubled
        self.waiting += count.waiting
        self.redelivered += count.redelivered
        if count.missing:
            self.problems.append(f"{count.device}: seqs lost {count.missing[:20]}")
        if count.doubled:
            self.problems.append(f"{count.device}: {count.doubled} seqs doubled")

    @property
    def max_outputs_off_s(self) -> float | None:
        return max(self.outputs_off_s) if self.outputs_off_s else None

    @property
    def ok(self) -> bool:
        off = self.max_outputs_off_s
        return (not self.problems and self.lost == 0 and self.doubled == 0
                and self.cycles_done == self.cycles_asked
                and (off is None or off <= OUTPUTS_OFF_LIMIT_S))

    def text(self) -> str:
        off = self.max_outputs_off_s
        lines = [
            f"campaign        {self.campaign}",
            f"cycles done     {self.cycles_done} of {self.cycles_asked} "
            f"in {self.wall_s:.1f} s",
            f"sent            {self.sent} (seqs assigned by the units' outboxes)",
            f"stored          {self.stored} (distinct (device, seq) in the controller DB)",
            f"lost            {self.lost}",
            f"doubled         {self.doubled}",
            f"still waiting   {self.waiting} (in a unit's outbox, not yet acked)",
            f"redeliveries    {self.redelivered} (ignored by the controller by (device, seq))",
            "outputs off     " + ("n/a (no unit restarted)" if off is None else
                                  f"max {off:.2f} s, mean "
                                  f"{sum(self.outputs_off_s) / len(self.outputs_off_s):.2f} s "
                                  f"after spawn, over {len(self.outputs_off_s)} restarts "
                                  f"(limit {OUTPUTS_OFF_LIMIT_S:g} s)"),
        ]
        for key, value in self.figures.items():
            lines.append(f"{key:<15} {value}")
        for problem in self.problems[:30]:
            lines.append(f"PROBLEM         {problem}")
        lines.append(f"result          {'PASS' if self.ok else 'FAIL'}")
        return "\n".join(lines)

    def as_dict(self) -> dict[str, Any]:
        return {"campaign": self.campaign, "cycles_asked": self.cycles_asked,
                "cycles_done": self.cycles_done, "sent": self.sent, "stored": self.stored,
                "lost": self.lost, "doubled": self.doubled, "waiting": self.waiting,
                "redelivered": self.redelivered, "max_outputs_off_s": self.max_outputs_off_s,
                "wall_s": round(self.wall_s, 1), "figures": self.figures,
                "problems": self.problems, "ok": self.ok}


def parser(description: str, cycles: int, max_s: float) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--cycles", type=int, default=cycles, help=f"kill cycles (default {cycles})")
    p.add_argument("--max-s", type=float, default=max_s,
                   help=f"wall-clock cap in seconds, draining included (default {max_s:g})")
    p.add_argument("--seed", type=int, default=None, help="random seed (default: random)")
    p.add_argument("--workdir", type=Path, default=None,
                   help="keep every file (logs, databases) here; default a temp dir, "
                        "removed when the campaign passes")
    p.add_argument("--json", action="store_true", help="print the figures as JSON too")
    p.add_argument("-v", "--verbose", action="store_true")
    return p


@contextlib.contextmanager
def workspace(workdir: Path | None, prefix: str) -> Iterator[tuple[Path, list[bool]]]:
    """A work directory; a temporary one is removed unless the campaign failed
    (``keep[0] = True``), so its logs stay for a post-mortem."""
    if workdir is not None:
        workdir.mkdir(parents=True, exist_ok=True)
        yield workdir, [True]
        return
    path = Path(tempfile.mkdtemp(prefix=f"faults-{prefix}-"))
    keep = [False]
    try:
        yield path, keep
    finally:
        if keep[0]:
            print(f"files kept in {path}", file=sys.stderr)
        else:
            shutil.rmtree(path, ignore_errors=True)


def main_with(run: Callable[..., Report], args: argparse.Namespace, **kwargs: Any) -> int:
    """Run a campaign from its CLI arguments, print the report; exit status 0 on PASS."""
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    with workspace(args.workdir, run.__module__.rsplit(".", 1)[-1]) as (workdir, keep):
        report = run(workdir=workdir, cycles=args.cycles, max_s=args.max_s, seed=args.seed,
                     **kwargs)
        keep[0] = keep[0] or not report.ok
    print(report.text())
    if args.json:
        print(json.dumps(report.as_dict(), indent=2))
    return 0 if report.ok else 1

