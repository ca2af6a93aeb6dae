"""Campaign 2: the controller SIGKILLed mid-ingest and restarted, over and over.

Producer units (the real edge link and outbox) publish at a steady rate to a private
Mosquitto configured like the shipped one; ``smartcity-controller serve`` ingests. Each
cycle starts the controller, waits until it is healthy and has stored something new (so
the kill lands mid-stream, with batches queued, committing or committed but not yet
acknowledged), lets it run a random while, and SIGKILLs it. Between a kill and the next
start the units go on publishing into the broker, which keeps the controller's
persistent session and queues for it.

At the end the producers stop, every outbox drains, and each device's ledger is checked:
every seq the unit assigned is in the controller's database exactly once.

    .venv/bin/python -m faults.controller_kills --cycles 20 [--units 4] [--rate 20]
    .venv/bin/python -m faults.controller_kills --cycles 20 --workers 2   # shared subscription
"""

from __future__ import annotations

import random
import sys
import time
from pathlib import Path

from faults.common import (
    Budget,
    ControllerProcess,
    Report,
    main_with,
    outbox_state,
    parser,
    producer_unit,
    settle_fleet,
    start_broker,
    stored_rows,
    wait_until,
)

DRAIN_RESERVE_S = 60.0


def run(*, workdir: Path, cycles: int = 20, max_s: float = 900.0, seed: int | None = None,
        units: int = 4, rate_per_s: float = 20.0, workers: int = 1,
        up_s: tuple[float, float] = (0.3, 2.5), down_s: tuple[float, float] = (0.0, 1.0)
        ) -> Report:
    """Run the campaign in ``workdir``; returns what it counted.

    ``workers`` > 1 runs that many controllers as ingest workers on one database and an
    MQTT 5 shared subscription (``$share/ingest/...``); each cycle kills one of them in
    turn while the others go on ingesting."""
    seed = random.randrange(2**32) if seed is None else seed
    rng = random.Random(seed)
    budget = Budget(max_s)
    report = Report("controller_kills", cycles)
    report.figures["seed"] = seed
    report.figures["load"] = f"{units} units x {rate_per_s:g} msg/s"
    broker = start_broker(workdir)
    if workers == 1:
        controllers = [ControllerProcess(workdir, broker)]
    else:
        first = ControllerProcess(workdir, broker, name="ingest-0", share_group="ingest")
        controllers = [first] + [
            ControllerProcess(workdir, broker, name=f"ingest-{i}", db=first.db,
                              share_group="ingest") for i in range(1, workers)]
        report.figures["workers"] = (f"{workers} ingest workers, one database, shared "
                                     f"subscription $share/ingest/smartcity/v1/+/+/...")
    db = controllers[0].db
    devices = [f"taman-ck-{i:02d}" for i in range(units)]
    controllers[0].register([(d, "dlh", "irrigation") for d in devices])
    stop_file = workdir / "stop-producing"
    fleet = [producer_unit(workdir, d, "dlh", broker, rate_per_s=rate_per_s,
                           stop_file=stop_file) for d in devices]
    starts_s: list[float] = []
    stored_at_kill: list[int] = []
    try:
        for unit in fleet:
            unit.start()
        wait_until(lambda: all(outbox_state(u.outbox)[0] > 0 for u in fleet), 30,
                   "every unit producing")
        for controller in controllers[1:]:  # the others run throughout; [0] in the loop
            controller.start()
        for cycle in range(cycles):
            if budget.exhausted(DRAIN_RESERVE_S):
                report.problems.append(f"wall-clock cap: stopped after {report.cycles_done} "
                                       f"cycles")
                break
            victim = controllers[cycle % workers]
            before = stored_rows(db)
            if victim.proc is None or victim.proc.poll() is not None:
                starts_s.append(victim.start())
            wait_until(lambda: stored_rows(db) > before, 30,  # noqa: B023
                       "the controller storing")
            time.sleep(rng.uniform(*up_s))
            victim.kill()
            stored_at_kill.append(stored_rows(db))
            report.cycles_done += 1
            time.sleep(rng.uniform(*down_s))
            if workers > 1:
                starts_s.append(victim.start())
        for controller in controllers:
            if controller.proc is None or controller.proc.poll() is not None:
                starts_s.append(controller.start())
        report.figures["restart_s"] = (f"controller healthy and connected in max "
                                       f"{max(starts_s):.2f} s, mean "
                                       f"{sum(starts_s) / len(starts_s):.2f} s")
        report.figures["stored_at_kill"] = (f"{stored_at_kill[:3]} ... {stored_at_kill[-3:]}"
                                            if len(stored_at_kill) > 6 else stored_at_kill)
        settle_fleet(report, db, fleet, stop_file, min(DRAIN_RESERVE_S, budget.left_s))
        if not all(u.alive() for u in fleet):
            report.problems.append("a unit process died (see its unit.log)")
    finally:
        for unit in fleet:
            unit.stop()
        for controller in controllers:
            controller.stop()
        broker.close()
    report.wall_s = budget.elapsed_s
    return report


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__.splitlines()[0], cycles=20, max_s=900)
    p.add_argument("--units", type=int, default=4, help="producer units (default 4)")
    p.add_argument("--rate", type=float, default=20.0,
                   help="messages per second per unit (default 20)")
    p.add_argument("--workers", type=int, default=1,
                   help="ingest workers on a shared subscription, killed in turn (default 1)")
    args = p.parse_args(argv)
    return main_with(run, args, units=args.units, rate_per_s=args.rate, workers=args.workers)


if __name__ == "__main__":
    sys.exit(main())
