"""Live updates for open dashboards: what changed on which unit, pushed as it happens.

The ingest's writer commits in its own process; the API process learns of its commits
by polling a few cheap markers (`Store.change_marks`, `controller.alarms.active_marks`)
every ``interval_s`` in ONE task (`LiveHub.run`), however many pages listen, and hands
each change to the subscribers allowed to see the unit (`Subscriber`: an operator only
its OPD's). A change is ``{"device_id", "what"}`` with ``what`` one of:

- ``state``: the unit's status was stored (online or offline, pause, rain delay, skip,
  next start, outputs),
- ``events``: new events (runs, skips, feedings, alarms, ...),
- ``replies``: a command of the unit was answered,
- ``alarms``: an alarm of the unit was raised, raised again, acknowledged, asked to
  clear or cleared (by the unit, the controller or a person).

Telemetry alone is not a change here: it comes every few seconds from every unit, and
the pages read it on a slower clock. Nothing is polled while nobody listens; the first
poll after that only takes the markers. A subscriber that falls ``QUEUE_MAX`` changes
behind is dropped (its stream ends; the page reconnects and reads everything again).

Stream tickets (`Tickets`): a browser's ``EventSource`` cannot send an ``Authorization``
header, so the page first asks for a ticket with its bearer token and opens the stream
with ``?ticket=``: valid once, for ``TICKET_TTL_S``, in this process only.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from controller import alarms
from controller.auth import Principal
from controller.store import Store

logger = logging.getLogger(__name__)

QUEUE_MAX = 1000
TICKET_TTL_S = 30.0
WHATS = ("state", "events", "replies", "alarms")


@dataclass(frozen=True)
class Marks:
    """What one poll saw (see `Store.change_marks`)."""

    devices: dict[str, tuple[str, str | None, int | None]]  # id -> (opd, status_at, max_seq)
    reply_id: int
    alarms: dict[int, tuple[Any, ...]]  # id -> (device_id, opd, state, count, clear_command)


def read_marks(store: Store) -> Marks:
    m = store.change_marks()
    return Marks(m["devices"], m["reply_id"], alarms.active_marks(store))


def changes(store: Store, before: Marks, now: Marks) -> list[tuple[str, str, str]]:
    """``(device_id, opd, what)`` for every change between two polls, in ``WHATS``
    order per device (events are looked up only for devices whose seq moved)."""
    found: set[tuple[str, str, str]] = set()
    for dev, (opd, status_at, max_seq) in now.devices.items():
        old = before.devices.get(dev)
        if old is None:
            continue  # registered since: nobody watches it yet
        if status_at != old[1]:
            found.add((dev, opd, "state"))
        if (max_seq or 0) > (old[2] or 0) and store.events_stored(dev, old[2] or 0, max_seq):
            found.add((dev, opd, "events"))
    if now.reply_id > before.reply_id:
        for dev in store.replies_since(before.reply_id):
            if dev in now.devices:
                found.add((dev, now.devices[dev][0], "replies"))
    for alarm_id in before.alarms.keys() | now.alarms.keys():
        old, new = before.alarms.get(alarm_id), now.alarms.get(alarm_id)
        if old != new:
            dev, opd = (new or old)[0], (new or old)[1]
            found.add((dev, opd, "alarms"))
    return sorted(found, key=lambda c: (c[0], WHATS.index(c[2])))


@dataclass(eq=False)
class Subscriber:
    """One open stream: the OPD it may see (None: all) and its queue of changes."""

    opd_scope: str | None
    queue: asyncio.Queue = field(default_factory=lambda: asyncio.Queue(QUEUE_MAX))
    dropped: bool = False

    def sees(self, opd: str) -> bool:
        return self.opd_scope is None or self.opd_scope == opd


class LiveHub:
    """The one poller and its subscribers (see module doc)."""

    def __init__(self, store: Store, *, interval_s: float = 0.5) -> None:
        self.store = store
        self.interval_s = interval_s
        self._subs: set[Subscriber] = set()
        self._marks: Marks | None = None
        self._task: asyncio.Task | None = None
        self.polls = 0

    @property
    def subscribers(self) -> int:
        return len(self._subs)

    def subscribe(self, opd_scope: str | None) -> Subscriber:
        sub = Subscriber(opd_scope)
        self._subs.add(sub)
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        self._subs.discard(sub)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self.run(), name="live-hub")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        self.end_streams()

    def end_streams(self) -> None:
        """End every open stream (their pages reconnect)."""
        for sub in list(self._subs):
            self._drop(sub)

    async def run(self) -> None:
        while True:
            try:
                await self.poll_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                logger.exception("live updates: polling the database failed")
            await asyncio.sleep(self.interval_s)

    async def poll_once(self) -> None:
        if not self._subs:
            self._marks = None
            return
        found, self._marks = await asyncio.to_thread(self._poll, self._marks)
        self.polls += 1
        self.fan_out(found)

    def _poll(self, before: Marks | None) -> tuple[list[tuple[str, str, str]], Marks]:
        now = read_marks(self.store)
        return ([] if before is None else changes(self.store, before, now)), now

    def fan_out(self, found: list[tuple[str, str, str]]) -> None:
        for dev, opd, what in found:
            for sub in list(self._subs):
                if sub.sees(opd):
                    try:
                        sub.queue.put_nowait({"device_id": dev, "what": what})
                    except asyncio.QueueFull:
                        logger.warning("live updates: a stream fell %d changes behind; "
                                       "ended", QUEUE_MAX)
                        self._drop(sub)

    def _drop(self, sub: Subscriber) -> None:
        self._subs.discard(sub)
        sub.dropped = True
        try:
            sub.queue.put_nowait(None)  # the stream's end
        except asyncio.QueueFull:
            sub.queue.get_nowait()
            sub.queue.put_nowait(None)


class Tickets:
    """One-time stream tickets: ``issue(principal)`` -> ticket; ``redeem(ticket)`` ->
    the principal, once, within ``ttl_s``."""

    def __init__(self, ttl_s: float = TICKET_TTL_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s = ttl_s
        self.clock = clock
        self._live: dict[str, tuple[float, Principal]] = {}

    def issue(self, principal: Principal) -> str:
        now = self.clock()
        self._live = {k: v for k, v in self._live.items() if v[0] > now}
        ticket = secrets.token_urlsafe(24)
        self._live[ticket] = (now + self.ttl_s, principal)
        return ticket

    def redeem(self, ticket: str) -> Principal | None:
        entry = self._live.pop(ticket, None)
        if entry is None or entry[0] <= self.clock():
            return None
        return entry[1]
