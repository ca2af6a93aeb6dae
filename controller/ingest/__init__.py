"""MQTT ingest: units' messages into SQLite, nothing lost, nothing doubled.

One paho-mqtt 2.x client (MQTT 5, ``CallbackAPIVersion.VERSION2``) with a fixed client
id, ``clean_start=False`` and a long session expiry, so the broker keeps our
subscriptions and queues what units publish while the controller is down. It
subscribes (in ``on_connect``, so a reconnect restores them) to every unit's
``status``, ``telemetry``, ``event`` and ``cmd/reply`` with QoS 1.

Acknowledgement is manual (``manual_ack=True``): the paho callbacks only put messages
on a queue; one writer thread takes batches (up to ``ingest.batch_max`` messages or
``ingest.batch_window_ms``; a batch holding a command reply does not wait for the window),
commits each batch in one SQLite transaction, **then** sends the broker its PUBACKs,
**then** publishes each unit's `Ack` (the highest seq up to which every message of that
unit is committed or announced dropped), at most every
``ingest.ack_interval_s`` per unit. A controller killed at any point loses nothing: what
was not committed was not acknowledged, and the broker delivers it again.

A message whose topic does not parse, whose payload is not valid, whose device is not
registered or sits under another OPD, or which answers an unknown command, is counted
by reason (``smartcity_ingest_rejected_total``), logged, acknowledged (so the broker
does not send it forever) and never stored.

Decoding, validating and committing a batch (:func:`store_batch`) runs in a writer
**process** of its own (``ingest.writer = "process"``, the default for a database file):
one CPython process cannot receive with paho and validate and store at the same time, as
both need its one interpreter lock, so the network thread and the store work would take
turns. The writer thread sends each batch's raw messages to that process and waits for
its :class:`Outcome`; PUBACKs still follow the commit. If the process dies, it is started
again and the batch is sent again (what it had committed is found as duplicates); after
three failures in a row the batch is committed in this process. With
``ingest.writer = "thread"`` (and always for an in-memory database) the writer thread
commits itself.

The writer thread also expires unanswered commands, publishes again the commands an
instance left pending, and raises and clears the alarms of offline and stale units
(`controller.alarms.sweep`; all every ``ingest.sweep_interval_s``), and runs telemetry
retention (every ``database.maintenance_interval_s``): only while this instance leads
the periodic work (`controller.leader`), so with several instances on one database each
is done once. ``Ingest(receive=False)`` is the way out alone (``serve --no-ingest``).

The package, one module per part:

- `controller.ingest.client`: `Ingest` (connecting, subscribing, the paho callbacks,
  publishing) and `subscription_filters`.
- `controller.ingest.batch`: `store_batch` and its `Outcome` (decoding, validating and
  committing one batch; the rejected messages).
- `controller.ingest.writer`: the writer thread's loop and the writer process
  (`_writer_main`, which the spawned process finds by this module path).
- `controller.ingest.acks`: after a commit, the PUBACKs and each unit's `Ack`.
- `controller.ingest.housekeeping`: command expiry, the alarm sweep, retention.

Every part logs as ``controller.ingest``.
"""

from __future__ import annotations

from controller.ingest.batch import Outcome, store_batch
from controller.ingest.client import INGEST_CHANNELS, Ingest, subscription_filters
from controller.ingest.writer import _STOP as _STOP
from controller.ingest.writer import _writer_main as _writer_main
from controller.ingest.writer import _WriterProcess as _WriterProcess

__all__ = ["INGEST_CHANNELS", "Ingest", "Outcome", "store_batch", "subscription_filters"]
