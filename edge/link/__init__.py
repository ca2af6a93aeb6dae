"""The unit's MQTT link: one client per daemon, the outbox behind it, commands and config in.

``Link`` is the app's publisher (``event(type, **details)``, ``telemetry(readings,
outputs)``): each message is written to the outbox (``edge.outbox``) with its seq, then
published with QoS 1 when the link is up, and deleted only when the controller's ``ack``
covers it. See docs/edge-link.md for the whole story.

Threads, and what runs where:

- paho's network thread (``loop_start``) runs the callbacks. They only put what arrived
  on a queue: no SQLite, no app code, no ``wait_for_publish()``.
- the link's worker thread publishes: outbox rows through a ``Drain`` (bounded window and
  rate), command replies (a durable table, resent until PUBACK), the retained status; and
  applies the controller's acks to the outbox.
- the daemon's service loop calls ``poll()`` each tick: commands and config updates are
  handled there, so ``app.handle_command`` and ``app.apply_remote_config`` always run on
  that one thread and apps need no locks. ``poll()`` also refreshes the status.

Wiring (``edge.daemon.run_unit`` does this)::

    link = Link(config, outbox=Outbox(...), state=state, clock=clock, clock_synced=check)
    app = AppClass(config, ..., publisher=link, state=state, clock_synced=check)
    link.bind(app)
    link.start()          # connects in the background; never blocks on the network
    ... every tick: link.poll(); app.tick()
    app.close(); link.close()

The package: ``client`` (``Link``: connection, paho callbacks, the worker thread),
``publishing`` (events, telemetry, status), ``inbound`` (commands and config),
``options`` (``LinkOptions``, ``LinkError``).
"""

from .client import Link
from .inbound import SAFE_WITHOUT_CLOCK, RecentCommands
from .options import (
    KEY_CONFIG_REJECTED,
    KEY_CONFIG_VERSION,
    KEY_RECENT_COMMANDS,
    LinkError,
    LinkOptions,
    firmware_version,
)

__all__ = ["KEY_CONFIG_REJECTED", "KEY_CONFIG_VERSION", "KEY_RECENT_COMMANDS",
           "SAFE_WITHOUT_CLOCK", "Link", "LinkError", "LinkOptions", "RecentCommands",
           "firmware_version"]
