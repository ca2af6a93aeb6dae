"""Alarm notifications: Telegram, e-mail and a JSON webhook, through a durable outbox.

- `outbox`: the tables (`outbox.migration`), `enqueue` (the alarms' change hook: it
  writes one row per alarm change and channel, in the alarm's own transaction), and the
  claim/mark steps of delivery. The only module here with SQL.
- `rules`: pure decisions: channel filters, quiet hours, backoff, the unit's link.
- `words`: the texts, in Bahasa Indonesia, from alarm codes.
- `senders`: one function per channel kind.
- `worker`: ``start(store, settings, metrics)`` -> `DeliveryWorker` (``stop()``).

docs/notifications.md explains the settings and the guarantees.
"""

from controller.notify.outbox import enqueue, migration
from controller.notify.worker import DeliveryWorker, start

__all__ = ["DeliveryWorker", "enqueue", "migration", "start"]
