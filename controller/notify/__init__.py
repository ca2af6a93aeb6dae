"""Alarm notifications: Telegram, e-mail and a JSON webhook, through a durable outbox.

- `outbox`: the tables (``outbox.migration``), ``outbox.enqueue`` (the alarms' change
  hook: it writes one row per alarm change and channel, in the alarm's own transaction),
  and the claim/mark steps of delivery. The only module here with SQL.
- `rules`: pure decisions: channel filters, quiet hours, backoff, the unit's link.
- `words`: the texts, in Bahasa Indonesia, from alarm codes.
- `senders`: one function per channel kind (httpx, smtplib).
- `worker`: ``worker.start(store, settings, metrics)`` -> ``DeliveryWorker`` (``stop()``).

Import the modules themselves: this package's ``__init__`` imports nothing, so the store
(which needs ``outbox.migration``) and the ingest's writer process (which runs
``enqueue``) load no HTTP or mail client, and ``rules`` and ``words`` stay free of I/O.
docs/notifications.md explains the settings and the guarantees.
"""
