"""Each channel against a local fake receiver: Telegram Bot API, SMTP with STARTTLS, a
webhook (also one that fails first); retries with backoff; refused settings; the admins'
read-only view."""

from __future__ import annotations

import email
from datetime import UTC, datetime, timedelta
from email import policy as email_policy

import pytest
from controller_support import auth, seed
from fastapi.testclient import TestClient
from notify_fakes import PUBLIC_URL, TOKEN, HttpReceiver, SmtpReceiver, alarm, notify_settings

from controller.api.main import create_app
from controller.cli import main as cli_main
from controller.errors import SettingsError
from controller.metrics import Metrics
from controller.notify import outbox
from controller.notify.worker import DeliveryWorker, start
from controller.publisher import MemoryTransport
from controller.store import Store

T0 = datetime(2025, 3, 14, 2, 0, tzinfo=UTC)  # 10:00 WITA
RAISED = ("[KRITIS] Alarm: kebocoran air di Taman Bekapai (zona z2) "
          "sejak 14 Maret 2025 pukul 10.00 WITA")
LINK = f"{PUBLIC_URL}/#/unit/taman-bekapai-01"


def deliver_all(settings, records, *, now=T0, metrics=None):
    """Enqueue ``records`` ((alarm, change) pairs) and deliver what is due at ``now``."""
    store = Store.open(settings.database.target)
    clock = {"now": now}
    worker = start(store, settings, metrics, clock=lambda: clock["now"])
    worker.stop()
    with outbox.transaction(store) as db:
        for record, change in records:
            outbox.enqueue(db, record, change, now)
    while worker.deliver_one():
        pass
    return store, worker, clock


def test_notify_webhook_gets_the_json_with_text_and_link(tmp_path):
    with HttpReceiver() as hook:
        settings = notify_settings(tmp_path, webhooks=[
            {"url": hook.url + "/wa", "headers": {"Authorization": "Bearer gw-key"}}])
        store, _, _ = deliver_all(settings, [(alarm(41), "raised")])
    (request,) = hook.answered
    assert request.path == "/wa"
    assert request.headers["Authorization"] == "Bearer gw-key"
    assert request.headers["Idempotency-Key"] == "41-raised-webhook-1"
    assert request.body == {
        "notification_id": "41-raised-webhook-1", "alarm_id": 41,
        "device_id": "taman-bekapai-01", "device_name": "Taman Bekapai", "opd": "dlh",
        "code": "leak", "subject": "z2", "severity": "critical", "state": "open",
        "change": "raised", "escalated": False, "at": "2025-03-14T02:00:00.000000Z",
        "text": RAISED, "url": LINK,
        "title": "[KRITIS] kebocoran air di Taman Bekapai (zona z2)",
        "body": f"{RAISED}\n{LINK}", "type": "failure"}
    (row,) = store.db.query("SELECT * FROM notify_outbox")
    assert (row["state"], row["attempts"], row["sent_at"]) == (
        "sent", 1, "2025-03-14T02:00:00.000000Z")


def test_notify_telegram_gets_send_message_with_text_and_link(tmp_path):
    token_file = tmp_path / "bot.token"
    token_file.write_text(TOKEN + "\n")
    with HttpReceiver(telegram=True) as api:
        settings = notify_settings(tmp_path, telegram=[
            {"chat_id": "-100200300", "bot_token_file": "bot.token", "api_base": api.url}])
        metrics = Metrics()
        deliver_all(settings, [(alarm(5), "raised")], metrics=metrics)
    (request,) = api.answered
    assert request.path == f"/bot{TOKEN}/sendMessage"
    assert request.body == {"chat_id": "-100200300", "text": f"{RAISED}\n{LINK}",
                            "disable_web_page_preview": True}
    assert b'smartcity_notify_sent_total{channel="telegram"} 1.0' in metrics.render()


def test_notify_telegram_refusal_is_failed_and_the_token_never_shows(tmp_path, caplog):
    (tmp_path / "bot.token").write_text("999:wrong-token")
    with HttpReceiver(telegram=True) as api:
        settings = notify_settings(tmp_path, telegram=[
            {"chat_id": "42", "bot_token_file": "bot.token", "api_base": api.url}])
        metrics = Metrics()
        store, _, _ = deliver_all(settings, [(alarm(5), "raised")], metrics=metrics)
    (row,) = store.db.query("SELECT * FROM notify_outbox")
    assert (row["state"], row["attempts"]) == ("failed", 1)  # a 401 is not retried
    assert "401" in row["last_error"] and "wrong-token" not in row["last_error"]
    assert "wrong-token" not in caplog.text
    assert b'smartcity_notify_failed_total{channel="telegram"} 1.0' in metrics.render()


def test_notify_email_over_starttls_with_login(tmp_path):
    (tmp_path / "smtp.secret").write_text("s3cret-smtp\n")
    with SmtpReceiver(tmp_path) as smtp:
        settings = notify_settings(tmp_path, email=[{
            "host": "127.0.0.1", "port": smtp.port, "ca_file": str(smtp.ca_file),
            "username": "alarm", "password_file": "smtp.secret",
            "from": "alarm@smartcity.example.go.id",
            "to": ["dlh@example.go.id", "piket@example.go.id"]}])
        acked = alarm(9, change="acknowledged", acked_by="budi",
                      acked_at="2025-03-14T02:05:00Z", ack_note="tim berangkat")
        store, _, _ = deliver_all(settings, [(alarm(9), "raised"), (acked, "acknowledged")])
    assert [row["state"] for row in store.db.query("SELECT state FROM notify_outbox")] == [
        "sent", "sent"]
    first, second = smtp.mails
    assert first.tls and first.login == "alarm"
    assert first.rcpt_tos == ["dlh@example.go.id", "piket@example.go.id"]
    mail = email.message_from_bytes(first.content, policy=email_policy.default)
    assert mail["Subject"] == RAISED
    assert mail["X-Notification-Id"] == "9-raised-email-1"
    assert mail["Message-ID"] == "<9-raised-email-1@smartcity-controller>"
    body = mail.get_content()
    assert RAISED in body and LINK in body
    ack = email.message_from_bytes(second.content, policy=email_policy.default)
    assert ack["Subject"].startswith("[KRITIS] Diakui oleh budi pada 14 Maret 2025 pukul "
                                     "10.05 WITA: kebocoran air di Taman Bekapai (zona z2)")


def test_notify_email_refuses_a_server_certificate_it_cannot_check(tmp_path):
    with SmtpReceiver(tmp_path) as smtp:
        settings = notify_settings(tmp_path, email=[{
            "host": "127.0.0.1", "port": smtp.port, "from": "a@example.go.id",
            "to": ["b@example.go.id"]}])  # no ca_file: the system's CAs do not know it
        store, _, _ = deliver_all(settings, [(alarm(1), "raised")])
    (row,) = store.db.query("SELECT * FROM notify_outbox")
    assert row["state"] == "pending" and "CERTIFICATE_VERIFY_FAILED" in row["last_error"]
    assert smtp.mails == []


def test_notify_webhook_retried_with_backoff_until_it_answers(tmp_path):
    with HttpReceiver(fail_first=3) as hook:
        settings = notify_settings(tmp_path, retry_min_s=10, retry_max_s=25,
                                   webhooks=[{"url": hook.url}])
        metrics = Metrics()
        store, worker, clock = deliver_all(settings, [(alarm(3), "raised")], metrics=metrics)
        waits = []
        for _ in range(3):
            (row,) = store.db.query("SELECT * FROM notify_outbox")
            assert row["state"] == "pending" and "503" in row["last_error"]
            due = datetime.fromisoformat(row["next_attempt_at"])
            waits.append((due - clock["now"]).total_seconds())
            clock["now"] = due - timedelta(seconds=1)
            assert not worker.deliver_one()  # not before its time
            clock["now"] = due
            assert worker.deliver_one()
    assert waits == [10, 20, 25]  # doubling, up to retry_max_s
    (row,) = store.db.query("SELECT * FROM notify_outbox")
    assert (row["state"], row["attempts"], row["last_error"]) == ("sent", 4, "")
    assert len(hook.requests) == 4 and len(hook.answered) == 1
    assert {r.body["notification_id"] for r in hook.requests} == {"3-raised-webhook-1"}
    assert b'smartcity_notify_retries_total{channel="webhook"} 3.0' in metrics.render()


def test_notify_webhook_given_up_after_max_attempts(tmp_path, caplog):
    with HttpReceiver(status=500) as hook:
        settings = notify_settings(tmp_path, max_attempts=3, webhooks=[{"url": hook.url}])
        metrics = Metrics()
        store, worker, clock = deliver_all(settings, [(alarm(3), "raised")], metrics=metrics)
        for _ in range(5):
            clock["now"] += timedelta(minutes=5)
            worker.deliver_one()
    (row,) = store.db.query("SELECT * FROM notify_outbox")
    assert (row["state"], row["attempts"]) == ("failed", 3)
    assert len(hook.requests) == 3
    assert b'smartcity_notify_failed_total{channel="webhook"} 1.0' in metrics.render()
    assert "3-raised-webhook-1 to webhook-1 failed after 3 attempt(s)" in caplog.text


def test_notify_unreachable_webhook_is_retried(tmp_path):
    settings = notify_settings(tmp_path, webhooks=[{"url": "http://127.0.0.1:9/nothing"}])
    store, _, _ = deliver_all(settings, [(alarm(3), "raised")])
    (row,) = store.db.query("SELECT * FROM notify_outbox")
    assert row["state"] == "pending" and "ConnectError" in row["last_error"]


def test_notify_channel_gone_from_the_config_is_failed(tmp_path):
    with HttpReceiver() as hook:
        settings = notify_settings(tmp_path, webhooks=[{"name": "old", "url": hook.url}])
        store, _, _ = deliver_all(settings, [(alarm(3), "raised")], now=T0 - timedelta(days=1))
        with outbox.transaction(store) as db:
            outbox.enqueue(db, alarm(4), "raised", T0)
        renamed = notify_settings(tmp_path, webhooks=[{"name": "new", "url": hook.url}])
        assert DeliveryWorker(store, renamed, clock=lambda: T0).deliver_one()
    states = [(r["channel"], r["state"], r["last_error"])
              for r in store.db.query("SELECT * FROM notify_outbox")]
    assert states == [("old", "sent", ""),
                      ("old", "failed", "channel 'old' is no longer in the config")]


@pytest.mark.parametrize(("notify", "field"), [
    ({"webhooks": [{"url": "ftp://example.go.id"}]}, "notify.webhooks.0.url"),
    ({"webhooks": [{"url": "https:///path-only"}]}, "notify.webhooks.0.url"),
    ({"webhooks": [{"url": "https://a.example", "min_severity": "loud"}]},
     "notify.webhooks.0.min_severity"),
    ({"webhooks": [{"url": "https://a.example", "escalation": 2}]},
     "notify.webhooks.0.escalation"),
    ({"webhooks": [{"url": "https://a.example", "opd": "DLH Kota"}]}, "notify.webhooks.0.opd.0"),
    ({"telegram": [{"chat_id": "42", "bot_token_file": "missing.token"}]},
     "notify.telegram.0.bot_token_file"),
    ({"telegram": [{"chat_id": "42"}]}, "notify.telegram.0.bot_token_file"),
    ({"email": [{"host": "smtp", "from": "a@b.id", "to": []}]}, "notify.email.0.to"),
    ({"email": [{"host": "smtp", "from": "a@b.id", "to": ["c@d.id"], "starttls": False,
                 "username": "u", "password_file": "pw"}]}, "notify.email.0"),
    ({"email": [{"host": "smtp", "from": "a@b.id", "to": ["c@d.id"], "tls": True}]},
     "notify.email.0.tls"),
    ({"quiet_hours": "22:00-6:00"}, "notify.quiet_hours"),
    ({"timezone": "Asia/Balikpapan"}, "notify.timezone"),
    ({"webhooks": [{"name": "a", "url": "https://a.example"},
                   {"name": "a", "url": "https://b.example"}]}, "notify"),
])
def test_notify_bad_channel_is_refused_naming_the_field(tmp_path, notify, field):
    (tmp_path / "pw").write_text("pw")
    with pytest.raises(SettingsError) as caught:
        notify_settings(tmp_path, **notify)
    assert f"  {field}: " in str(caught.value)


def test_notify_public_url_must_be_an_address(tmp_path):
    with pytest.raises(SettingsError, match="  api.public_url: 'smartcity.go.id' is not an"):
        notify_settings(tmp_path, api={"public_url": "smartcity.go.id"})
    settings = notify_settings(tmp_path, api={"public_url": "https://smartcity.go.id/"})
    assert settings.api.base_url() == "https://smartcity.go.id"
    assert notify_settings(tmp_path, api={"public_url": None, "port": 8081}).api.base_url() \
        == "http://127.0.0.1:8081"


def test_notify_bad_channel_makes_serve_exit_non_zero(tmp_path, capsys):
    config = tmp_path / "controller.toml"
    config.write_text('[database]\npath = "c.db"\n[mqtt]\nenabled = false\n'
                      '[[notify.webhooks]]\nurl = "mailto:piket@example.go.id"\n')
    assert cli_main(["serve", "--config", str(config)]) == 2
    assert "notify.webhooks.0.url: 'mailto:piket@example.go.id' is not an http" in \
        capsys.readouterr().err


def test_notify_channels_shown_to_admins_without_secrets(tmp_path):
    token_file = tmp_path / "bot.token"
    token_file.write_text(TOKEN)
    (tmp_path / "smtp.secret").write_text("s3cret-smtp")
    settings = notify_settings(
        tmp_path, quiet_hours="22:00-06:00",
        webhooks=[{"url": "https://gw.example/send/KEY123?apikey=k",
                   "headers": {"Authorization": "Bearer gw-key"}, "opd": "dlh"}],
        telegram=[{"chat_id": "-1001", "bot_token_file": "bot.token", "escalation": 1,
                   "min_severity": "critical"}],
        email=[{"host": "smtp.example.go.id", "from": "a@example.go.id",
                "to": ["b@example.go.id"], "username": "u", "password_file": "smtp.secret"}])
    with Store.open(settings.database.target) as store:
        tokens = seed(store)
        app = create_app(settings, store=store, mqtt=MemoryTransport())
        with TestClient(app) as client:
            with outbox.transaction(store) as db:
                later = datetime(2035, 3, 14, 2, 0, tzinfo=UTC)  # nothing due while we look
                outbox.enqueue(db, alarm(1, at="2035-03-14T02:00:00Z"), "raised", later)
            answer = client.get("/api/v1/notify/channels", headers=auth(tokens.admin))
            refused = client.get("/api/v1/notify/channels", headers=auth(tokens.op_dlh))
    assert refused.status_code == 403
    assert answer.status_code == 200
    body = answer.json()
    for secret in (TOKEN, "gw-key", "KEY123", "apikey", "s3cret-smtp"):
        assert secret not in answer.text
    assert body["quiet_hours"] == "22:00-06:00" and body["public_url"] == PUBLIC_URL
    assert body["channels"] == [
        {"name": "webhook-1", "type": "webhook", "target": "https://gw.example",
         "opd": ["dlh"], "min_severity": "info", "escalation": 0, "credential": "set",
         "header_names": ["Authorization"], "outbox": {"pending": 1}},
        {"name": "telegram-1", "type": "telegram",
         "target": "chat -1001 via https://api.telegram.org", "opd": None,
         "min_severity": "critical", "escalation": 1, "credential": "set",
         "header_names": [], "outbox": {"held": 1}},
        {"name": "email-1", "type": "email", "target": "smtp.example.go.id:587 to "
         "b@example.go.id", "opd": None, "min_severity": "info", "escalation": 0,
         "credential": "set", "header_names": [], "outbox": {"pending": 1}}]
