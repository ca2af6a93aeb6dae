"""An alarm from a real unit reaches people: a fish-feeder unit (its own process, mock
pins, a real Mosquitto) jams; the controller's ingest (its writer process) records the
alarm and the notification outbox in one transaction; the delivery worker sends it to a
local webhook and a fake Telegram Bot API; the operator's acknowledgement through the API
is notified too, with its own notification_id."""

from __future__ import annotations

from controller_support import add_device, broker_settings, make_token, wait_until
from fastapi.testclient import TestClient
from notify_fakes import PUBLIC_URL, TOKEN, HttpReceiver

from controller.api.main import create_app
from controller.store import Store


def test_notify_a_real_feeder_jam_reaches_webhook_and_telegram_and_the_ack_too(
        tmp_path, mosquitto, feeder_unit, database):
    token_file = tmp_path / "bot-token"
    token_file.write_text(TOKEN + "\n")
    with HttpReceiver() as hook, HttpReceiver(telegram=True) as bot:
        settings = broker_settings(
            tmp_path, mosquitto, api={"public_url": PUBLIC_URL}, database=database,
            notify={"flap_hold_s": 0, "poll_interval_s": 0.1,
                    "webhooks": [{"url": hook.url + "/alarm"}],
                    "telegram": [{"chat_id": "-100123", "bot_token_file": str(token_file),
                                  "api_base": bot.url}]})
        assert settings.ingest.writer == "process"  # the hook runs in the writer process
        with Store.open(settings.database.target) as store:
            add_device(store, "tambak-e2e", "dp3", kind="fish_feeder", name="Tambak Manggar")
            token = make_token(store, "op-dp3", "operator", "dp3")
            app = create_app(settings, store=store)
            with TestClient(app) as client:
                assert app.state.controller.ingest.wait_connected(10)
                client.headers.update({"Authorization": f"Bearer {token}"})
                wait_until(lambda: client.get("/api/v1/devices/tambak-e2e").json()["online"],
                           timeout=20, what="the unit online")
                r = client.post("/api/v1/devices/tambak-e2e/commands",
                                json={"action": "feed_now",
                                      "params": {"feeder": "pakan-nila", "dose_g": 100}})
                assert r.status_code == 202, r.text
                raised = wait_until(lambda: [q.body for q in hook.answered], timeout=20,
                                    what="the webhook's notification")[0]
                assert (raised["code"], raised["severity"], raised["state"]) == (
                    "feeder_jam", "critical", "open")
                assert raised["device_id"] == "tambak-e2e" and raised["opd"] == "dp3"
                assert raised["url"] == f"{PUBLIC_URL}/#/unit/tambak-e2e"
                assert "Tambak Manggar" in raised["text"] and "pakan-nila" in raised["text"]
                sent = wait_until(lambda: [q.body for q in bot.answered], timeout=10,
                                  what="the Telegram message")[0]
                assert sent["chat_id"] == "-100123" and raised["text"] in sent["text"]

                r = client.post(f"/api/v1/alarms/{raised['alarm_id']}/ack",
                                json={"note": "petugas menuju lokasi"})
                assert r.status_code == 200, r.text
                acked = wait_until(lambda: hook.answered[1:], timeout=10,
                                   what="the acknowledgement's notification")[0].body
                assert (acked["alarm_id"], acked["state"]) == (raised["alarm_id"],
                                                               "acknowledged")
                assert acked["notification_id"] != raised["notification_id"]
                assert "op-dp3" in acked["text"]
