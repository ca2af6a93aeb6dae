"""Campaign 1: the broker SIGKILLed and restarted under load, over and over.

Several producer units (``faults.unit_process producer``: the real edge link and outbox)
publish telemetry and events at a steady rate to a private Mosquitto configured like the
shipped one (a save every 30 s: a SIGKILL forgets every message and session change since
the last save, PUBACKed or not). ``smartcity-controller serve`` ingests them. Each cycle
lets the load run for a random while, SIGKILLs the broker, waits a random moment and
starts it again on the same port and persistence file.

At the end the producers stop, every outbox drains, and each device's ledger is checked:
every seq the unit assigned is in the controller's database exactly once.

    .venv/bin/python -m faults.broker_kills --cycles 100 [--units 4] [--rate 20]
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


def run(*, workdir: Path, cycles: int = 100, max_s: float = 900.0, seed: int | None = None,
        units: int = 4, rate_per_s: float = 20.0, up_s: tuple[float, float] = (0.5, 2.0),
        down_s: tuple[float, float] = (0.05, 0.5)) -> Report:
    """Run the campaign in ``workdir``; returns what it counted."""
    seed = random.randrange(2**32) if seed is None else seed
    rng = random.Random(seed)
    budget = Budget(max_s)
    report = Report("broker_kills", cycles)
    report.figures["seed"] = seed
    report.figures["load"] = f"{units} units x {rate_per_s:g} msg/s"
    broker = start_broker(workdir)
    controller = ControllerProcess(workdir, broker)
    devices = [f"taman-bk-{i:02d}" for i in range(units)]
    controller.register([(d, "dlh", "irrigation") for d in devices])
    stop_file = workdir / "stop-producing"
    fleet = [producer_unit(workdir, d, "dlh", broker, rate_per_s=rate_per_s,
                           stop_file=stop_file) for d in devices]
    try:
        controller.start()
        for unit in fleet:
            unit.start()
        wait_until(lambda: all(outbox_state(u.outbox)[0] > 0 for u in fleet), 30,
                   "every unit producing")
        grew = 0
        before = stored_rows(controller.db)
        for _ in range(cycles):
            if budget.exhausted(DRAIN_RESERVE_S):
                report.problems.append(f"wall-clock cap: stopped after {report.cycles_done} "
                                       f"cycles")
                break
            broker_up_s = rng.uniform(*up_s)
            time.sleep(broker_up_s)
            now = stored_rows(controller.db)
            grew += now > before  # the controller was storing while the broker was up
            before = now
            broker.kill()
            time.sleep(rng.uniform(*down_s))
            broker.start()
            report.cycles_done += 1
        report.figures["cycles_storing"] = (f"{grew} of {report.cycles_done} cycles saw the "
                                            f"controller store between two kills")
        settle_fleet(report, controller.db, fleet, stop_file,
                     min(DRAIN_RESERVE_S, budget.left_s))
        if not all(u.alive() for u in fleet):
            report.problems.append("a unit process died (see its unit.log)")
        if controller.proc is not None and controller.proc.poll() is not None:
            report.problems.append("the controller process died (see controller.log)")
    finally:
        for unit in fleet:
            unit.stop()
        controller.stop()
        broker.close()
    report.wall_s = budget.elapsed_s
    return report


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__.splitlines()[0], cycles=100, max_s=900)
    p.add_argument("--units", type=int, default=4, help="producer units (default 4)")
    p.add_argument("--rate", type=float, default=20.0,
                   help="messages per second per unit (default 20)")
    args = p.parse_args(argv)
    return main_with(run, args, units=args.units, rate_per_s=args.rate)


if __name__ == "__main__":
    sys.exit(main())
