"""Prometheus metrics of one controller, in its own registry (never the global one).

Exposed as text at ``/metrics``. Names:

- ``smartcity_ingest_messages_total{channel}``: messages stored (or applied, for status
  and replies) by channel.
- ``smartcity_ingest_rejected_total{reason}``: messages refused and not stored, by
  reason: ``bad_topic``, ``bad_payload``, ``unknown_device``, ``wrong_opd``,
  ``unknown_command``, ``wrong_device``, ``bad_channel``.
- ``smartcity_ingest_duplicates_total``: redeliveries already stored (harmless).
- ``smartcity_ingest_seq_gaps_total``: times a unit's seq jumped (a hole opened).
- ``smartcity_ingest_dropped_announced_total``: seqs units announced as dropped.
- ``smartcity_ingest_lag_seconds``: from a message's timestamp to its commit.
- ``smartcity_ingest_batch_size`` / ``smartcity_ingest_commit_seconds``: per batch.
- ``smartcity_ingest_queue_depth``: messages received and not yet committed.
- ``smartcity_mqtt_connected``: 1 while the ingest is connected to the broker.
- ``smartcity_devices_online``: devices whose last status said online.
- ``smartcity_commands_expired_total``: commands that got no answer in time.
- ``smartcity_api_login_failures_total{reason}``: bearer tokens refused, by reason:
  ``unknown`` (never issued, or revoked) or ``expired``.
- ``smartcity_api_logins_throttled_total``: requests answered 429 because their address
  failed too many logins within the window (see ``[api] login_failures_max``).
- ``smartcity_notify_sent_total{channel}``: alarm notifications delivered, by channel
  kind (``webhook``, ``telegram``, ``email``).
- ``smartcity_notify_retries_total{channel}``: delivery attempts that failed and will be
  tried again.
- ``smartcity_notify_failed_total{channel}``: notifications given up (``max_attempts``
  reached, or refused for good); each is logged.
- ``smartcity_notify_waiting``: notifications in the outbox not yet sent (due, retrying,
  or held for quiet hours, flapping or escalation).
- ``smartcity_controller_leader``: 1 while this instance leads the periodic work (expiry,
  alarm sweeps, retention, notification delivery, publishing left-over commands;
  `controller.leader`), 0 otherwise.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

CONTENT_TYPE = CONTENT_TYPE_LATEST


class Metrics:
    """Every metric of one controller instance."""

    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        self.messages = Counter("smartcity_ingest_messages", "Messages stored, by channel",
                                ["channel"], registry=r)
        self.rejected = Counter("smartcity_ingest_rejected", "Messages refused, by reason",
                                ["reason"], registry=r)
        self.duplicates = Counter("smartcity_ingest_duplicates",
                                  "Redelivered telemetry/events already stored", registry=r)
        self.seq_gaps = Counter("smartcity_ingest_seq_gaps", "Seq holes opened", registry=r)
        self.dropped = Counter("smartcity_ingest_dropped_announced",
                               "Seqs announced as dropped by units", registry=r)
        self.lag = Histogram("smartcity_ingest_lag_seconds",
                             "Message timestamp to database commit", registry=r,
                             buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300,
                                      900, 3600, 86400))
        self.batch_size = Histogram("smartcity_ingest_batch_size", "Messages per transaction",
                                    registry=r,
                                    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 5000))
        self.commit_seconds = Histogram("smartcity_ingest_commit_seconds",
                                        "Time to commit one batch", registry=r,
                                        buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                                 0.25, 0.5, 1, 2.5))
        self.queue_depth = Gauge("smartcity_ingest_queue_depth",
                                 "Messages received, not yet committed", registry=r)
        self.connected = Gauge("smartcity_mqtt_connected", "1 while connected to the broker",
                               registry=r)
        self.devices_online = Gauge("smartcity_devices_online",
                                    "Devices whose last status said online", registry=r)
        self.commands_expired = Counter("smartcity_commands_expired",
                                        "Commands expired without an answer", registry=r)
        self.login_failures = Counter("smartcity_api_login_failures",
                                      "Bearer tokens refused, by reason", ["reason"],
                                      registry=r)
        for reason in ("unknown", "expired"):
            self.login_failures.labels(reason)
        self.logins_throttled = Counter(
            "smartcity_api_logins_throttled",
            "Requests answered 429 after too many failed logins from their address",
            registry=r)
        self.notify_sent = Counter("smartcity_notify_sent", "Alarm notifications delivered",
                                   ["channel"], registry=r)
        self.notify_retries = Counter("smartcity_notify_retries",
                                      "Notification attempts failed, to be retried",
                                      ["channel"], registry=r)
        self.notify_failed = Counter("smartcity_notify_failed",
                                     "Notifications given up after their last attempt",
                                     ["channel"], registry=r)
        for kind in ("webhook", "telegram", "email"):
            for counter in (self.notify_sent, self.notify_retries, self.notify_failed):
                counter.labels(kind)
        self.notify_waiting = Gauge("smartcity_notify_waiting",
                                    "Notifications in the outbox not yet sent", registry=r)
        self.leader = Gauge("smartcity_controller_leader",
                            "1 while this instance leads the periodic work", registry=r)

    def render(self) -> bytes:
        return generate_latest(self.registry)
