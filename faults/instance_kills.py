"""Campaign 4: several controller instances on one PostgreSQL database, one SIGKILLed at
random every few seconds and restarted, while units publish, commands go out and
people read the device list.

A private Mosquitto (MQTT 5, the shipped queue options), a PostgreSQL server of its own
(``tests/support/postgres.PostgresServer``) or ``--database-url`` (an empty database),
and ``--instances`` ``smartcity-controller serve`` processes, each with its own MQTT
client id and HTTP port, all in one share group (``$share/ingest/...``), so each message
goes to one live instance. Producer units (the real edge link and outbox) publish at a
steady rate and answer every command (``rejected``: they run none). A client thread
sends a command every ``--command-every`` seconds and reads the device list, each
through a random instance, retrying on the others when one fails.

Every ``--up`` seconds a random instance is SIGKILLed and started again. The leader of
the periodic work may be the one killed: another takes over (``/healthz`` ``leader``).

At the end the producers stop, every outbox drains and the ledger is checked on the
database: every seq stored once, every command answered exactly once (one reply that is
not ``duplicate`` per command id), no API request failed on every instance, and the
longest delay from a message's timestamp to its commit (what the broker had handed to
a killed instance waits for that instance to return with its session, or for the
unit's resend, which a live instance takes).

    .venv/bin/python -m faults.instance_kills --instances 3 --kills 20
    .venv/bin/python -m faults.instance_kills --database-url postgresql://smartcity@db/faults
"""

from __future__ import annotations

import random
import statistics
import sys
import threading
import time
from collections import Counter
from datetime import datetime
from pathlib import Path

import httpx

from controller.settings import MqttSettings
from faults.common import (
    Budget,
    ControllerProcess,
    Report,
    main_with,
    metric_sum,
    outbox_state,
    parser,
    producer_unit,
    settle_fleet,
    start_broker,
    stored_rows,
    wait_until,
)
from faults.ledger import query
from faults.unit_process import CAMPAIGN_LINK

DRAIN_RESERVE_S = 60.0
TAKEOVER_LIMIT_S = 15.0


class Client:
    """Sends commands and reads the device list through any live instance."""

    def __init__(self, instances: list[ControllerProcess], devices: list[str], token: str,
                 rng: random.Random, every_s: float):
        self.instances, self.devices, self.token = instances, devices, token
        self.rng, self.every_s = rng, every_s
        self.requests = 0
        self.retried = 0  # requests that needed another instance
        self.failed: list[str] = []  # requests no instance answered
        self.commands: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="campaign-client", daemon=True)
        self._http = httpx.Client(timeout=5.0, headers={"Authorization": f"Bearer {token}"})

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(30)
        self._http.close()

    def _run(self) -> None:
        n = 0
        while not self._stop.wait(self.every_s):
            n += 1
            device = self.devices[n % len(self.devices)]
            r = self._request("POST", f"/api/v1/devices/{device}/commands",
                              json={"action": "stop_all"})
            if r is not None:
                self.commands.append(r.json()["id"])
            self._request("GET", "/api/v1/devices")

    def _request(self, method: str, path: str, **kwargs) -> httpx.Response | None:
        """One request, on a random instance, then on each other one until answered."""
        self.requests += 1
        order = self.instances[:]
        self.rng.shuffle(order)
        errors = []
        for attempt, instance in enumerate(order):
            try:
                r = self._http.request(method, f"{instance.url}{path}", **kwargs)
            except httpx.HTTPError as exc:
                errors.append(f"{instance.dir.name}: {type(exc).__name__}")
                continue
            if r.status_code < 300:
                self.retried += attempt > 0
                return r
            errors.append(f"{instance.dir.name}: HTTP {r.status_code} {r.text[:80]}")
        self.failed.append(f"{method} {path}: {'; '.join(errors)}")
        return None


def command_answers(db: str, ids: list[str]) -> dict[str, tuple[str, int]]:
    """command id -> (status, how many times the unit handled it: distinct replies that
    are not ``duplicate``; a reply redelivered by the broker is the same reply)."""
    statuses = dict(query(db, "SELECT id, status FROM commands"))
    handled: Counter[str] = Counter()
    for command_id, _status, _ts in set(query(
            db, "SELECT command_id, status, ts FROM command_replies "
                "WHERE status <> 'duplicate'")):
        handled[command_id] += 1
    return {i: (statuses.get(i, "missing"), handled[i]) for i in ids}


def _seconds(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def commit_delays(db: str) -> list[float]:
    """Seconds from each stored telemetry sample's and event's own timestamp (made by the
    unit) to its arrival in the instance that committed it."""
    rows = query(db, "SELECT ts, received_at FROM telemetry UNION ALL "
                     "SELECT ts, received_at FROM events")
    return [max(0.0, _seconds(received) - _seconds(ts)) for ts, received in rows]


def run(*, workdir: Path, cycles: int = 20, max_s: float = 900.0, seed: int | None = None,
        instances: int = 3, units: int = 4, rate_per_s: float = 20.0,
        database_url: str | None = None, command_every_s: float = 0.5,
        up_s: tuple[float, float] = (2.0, 5.0), down_s: tuple[float, float] = (0.0, 1.0),
        warm_s: float = 0.0) -> Report:
    """Run the campaign in ``workdir`` (``cycles`` kills, after ``warm_s`` seconds of
    traffic with every instance up); returns what it counted."""
    seed = random.randrange(2**32) if seed is None else seed
    rng = random.Random(seed)
    budget = Budget(max_s)
    report = Report("instance_kills", cycles)
    report.figures["seed"] = seed
    report.figures["load"] = (f"{units} units x {rate_per_s:g} msg/s, a command and a "
                              f"device list every {command_every_s:g} s")
    server = None
    if database_url is None:
        from tests.support.postgres import PostgresServer

        server = PostgresServer().start()
        database_url = server.create_database()
    broker = start_broker(workdir)
    controllers = [ControllerProcess(workdir, broker, name=f"instance-{i}", url=database_url,
                                     share_group="ingest", leader_poll_s=1.0)
                   for i in range(instances)]
    report.figures["instances"] = (f"{instances} x serve on one PostgreSQL database, shared "
                                   "subscription $share/ingest/smartcity/v1/+/+/...")
    devices = [f"taman-ik-{i:02d}" for i in range(units)]
    controllers[0].register([(d, "dlh", "irrigation") for d in devices])
    for controller in controllers[1:]:
        controller.token = controllers[0].token
    stop_file = workdir / "stop-producing"
    fleet = [producer_unit(workdir, d, "dlh", broker, rate_per_s=rate_per_s,
                           stop_file=stop_file) for d in devices]
    client = Client(controllers, devices, controllers[0].token or "", random.Random(seed + 1),
                    command_every_s)
    starts_s: list[float] = []
    takeovers_s: list[float] = []
    victims: Counter[str] = Counter()
    try:
        for controller in controllers:  # first: their sessions take the units' first words
            starts_s.append(controller.start())
        for unit in fleet:
            unit.start()
        wait_until(lambda: all(outbox_state(u.outbox)[0] > 0 for u in fleet), 30,
                   "every unit producing")
        wait_until(lambda: stored_rows(database_url) > 0, 30, "the instances storing")
        client.start()
        time.sleep(warm_s)
        for _ in range(cycles):
            if budget.exhausted(DRAIN_RESERVE_S):
                report.problems.append(f"wall-clock cap: stopped after {report.cycles_done} "
                                       "kills")
                break
            time.sleep(rng.uniform(*up_s))
            victim = rng.choice(controllers)
            was_leader = bool((victim.health() or {}).get("leader"))
            victim.kill()
            victims[victim.dir.name + (" (leader)" if was_leader else "")] += 1
            t_kill = time.monotonic()
            if was_leader:
                try:
                    wait_until(lambda: any((c.health() or {}).get("leader")  # noqa: B023
                                           for c in controllers if c.alive()),
                               TAKEOVER_LIMIT_S, "another instance leading", step=0.1)
                    takeovers_s.append(time.monotonic() - t_kill)
                except TimeoutError as exc:
                    report.problems.append(str(exc))
            time.sleep(max(0.0, rng.uniform(*down_s) - (time.monotonic() - t_kill)))
            starts_s.append(victim.start())
            report.cycles_done += 1
        client.stop()
        report.figures["per_instance"] = ", ".join(
            f"{c.dir.name} {metric_sum(c.metrics(), 'smartcity_ingest_messages_total'):.0f}"
            for c in controllers) + " messages stored since its last start"
        leaders = [c.dir.name for c in controllers if (c.health() or {}).get("leader")]
        if len(leaders) != 1:
            report.problems.append(f"{len(leaders)} instances leading at the end: {leaders}")
        report.figures["kills"] = ", ".join(f"{k} x{n}" for k, n in sorted(victims.items()))
        report.figures["restart_s"] = (f"instance healthy and connected in max "
                                       f"{max(starts_s):.2f} s, mean "
                                       f"{statistics.mean(starts_s):.2f} s")
        report.figures["takeover_s"] = (
            f"max {max(takeovers_s):.2f} s, mean {statistics.mean(takeovers_s):.2f} s over "
            f"{len(takeovers_s)} leader kills (poll 1 s)" if takeovers_s
            else "no leader was killed")
        settle_fleet(report, database_url, fleet, stop_file, min(DRAIN_RESERVE_S,
                                                                  budget.left_s))
        _count_commands(report, database_url, client)
        delays = sorted(commit_delays(database_url))
        if delays:
            report.figures["commit_delay"] = (
                f"max {delays[-1]:.1f} s, p99 {delays[int(len(delays) * 0.99)]:.2f} s, "
                f"median {delays[len(delays) // 2]:.2f} s (unit's timestamp to the "
                "instance that stored it)")
        report.figures["bounded_by"] = (
            f"instance MQTT session expiry {MqttSettings().session_expiry_s} s (the broker "
            "keeps what it handed a killed instance for its return), units' resend after "
            f"{CAMPAIGN_LINK.resend_after_s:g} s of stalled acks (a live instance takes it)")
        if not all(u.alive() for u in fleet):
            report.problems.append("a unit process died (see its unit.log)")
    finally:
        client.stop()
        for unit in fleet:
            unit.stop()
        for controller in controllers:
            controller.stop()
        broker.close()
        if server is not None:
            server.close()
    report.wall_s = budget.elapsed_s
    return report


def _count_commands(report: Report, db: str, client: Client) -> None:
    def settled() -> dict[str, tuple[str, int]] | None:
        answers = command_answers(db, client.commands)
        return answers if all(s not in ("pending", "sent", "accepted")
                              for s, _ in answers.values()) else None

    try:
        answers = wait_until(settled, 30, "every command answered", step=0.5)
    except TimeoutError as exc:
        report.problems.append(str(exc))
        answers = command_answers(db, client.commands)
    once = sum(1 for _, n in answers.values() if n == 1)
    never = [i for i, (_, n) in answers.items() if n == 0]
    twice = [i for i, (_, n) in answers.items() if n > 1]
    report.figures["commands"] = (f"{len(answers)} sent, {once} answered exactly once, "
                                  f"{len(twice)} more than once, {len(never)} never")
    report.figures["api_requests"] = (f"{client.requests} ({client.retried} answered by "
                                      f"another instance after one failed, "
                                      f"{len(client.failed)} failed on every instance)")
    if never:
        report.problems.append(f"commands never answered: {never[:10]}")
    if twice:
        report.problems.append(f"commands answered more than once: {twice[:10]}")
    if client.failed:
        report.problems.append(f"API requests failed on every instance: {client.failed[:5]}")
    if len(answers) < 1:
        report.problems.append("no command was sent")


def main(argv: list[str] | None = None) -> int:
    p = parser(__doc__.splitlines()[0], cycles=20, max_s=900)
    p.add_argument("--kills", type=int, dest="cycles",
                   help="instances killed, one at a time (the same as --cycles)")
    p.add_argument("--instances", type=int, default=3, help="controller instances (default 3)")
    p.add_argument("--units", type=int, default=4, help="producer units (default 4)")
    p.add_argument("--rate", type=float, default=20.0,
                   help="messages per second per unit (default 20)")
    p.add_argument("--command-every", type=float, default=0.5,
                   help="seconds between commands (and device list reads; default 0.5)")
    p.add_argument("--database-url", default=None,
                   help="an empty PostgreSQL database (default: a server of its own)")
    args = p.parse_args(argv)
    return main_with(run, args, instances=args.instances, units=args.units,
                     rate_per_s=args.rate, database_url=args.database_url,
                     command_every_s=args.command_every)


if __name__ == "__main__":
    sys.exit(main())
