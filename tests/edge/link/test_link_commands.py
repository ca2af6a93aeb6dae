"""Commands over a real broker: expired, duplicate, clamped, malformed, untrusted clock."""

import threading
from datetime import UTC, datetime, timedelta

from link_helpers import (
    DEVICE,
    MAX_RUN_S,
    command,
    desired_config,
    events,
    replies,
    statuses,
    unit_topic,
    wait_until,
)

from protocol import Channel, ReplyCode
from protocol.logs import Formatter


def send(controller, payload):
    controller.publish(unit_topic(Channel.CMD), payload)


def reply_to(controller, cmd_id, count=1, timeout=10):
    return wait_until(lambda: len(replies(controller, cmd_id)) >= count and
                      replies(controller, cmd_id), timeout, f"reply to {cmd_id}")


def test_link_expired_command_is_refused(make_unit, controller):
    unit = make_unit()
    issued = datetime.now(UTC) - timedelta(minutes=10)
    send(controller, command("run_zone", {"zone": "lawn", "duration_s": 60}, cmd_id="old-1",
                             issued_at=issued, ttl_s=60))
    [reply] = reply_to(controller, "old-1")
    assert (reply.status, reply.code) == ("expired", ReplyCode.EXPIRED)
    assert reply.params["expires_at"] == (issued + timedelta(seconds=60)).isoformat()
    assert unit.app.runs == []
    assert not unit.app.outputs["valve1"].is_active


def test_link_same_command_id_runs_once(make_unit, controller):
    unit = make_unit()
    payload = command("run_zone", {"zone": "lawn", "duration_s": 60}, cmd_id="twice-1")
    send(controller, payload)
    reply_to(controller, "twice-1")
    send(controller, payload)
    first, second = reply_to(controller, "twice-1", count=2)
    assert first.status == "accepted"
    assert (second.status, second.code, second.params) == ("duplicate", ReplyCode.DUPLICATE, {})
    assert unit.app.runs == [("twice-1", 60)]


def test_link_duplicate_detected_after_restart(make_unit, controller, tmp_path):
    state_dir = tmp_path / "unit"
    unit = make_unit(state_dir=state_dir)
    payload = command("run_zone", {"zone": "lawn", "duration_s": 30}, cmd_id="restart-1")
    send(controller, payload)
    reply_to(controller, "restart-1")
    unit.close()
    unit = make_unit(state_dir=state_dir)
    send(controller, payload)
    assert reply_to(controller, "restart-1", count=2)[-1].status == "duplicate"
    # a reply may be delivered twice (sent again after a reconnect); never a third status
    statuses = list(dict.fromkeys(r.status for r in replies(controller, "restart-1")))
    assert statuses == ["accepted", "duplicate"]
    assert unit.app.runs == []


def test_link_command_over_local_limit_runs_clamped_and_says_so(make_unit, controller):
    unit = make_unit()
    send(controller, command("run_zone", {"zone": "lawn", "duration_s": 3600},
                             cmd_id="long-1"))
    [reply] = reply_to(controller, "long-1")
    assert reply.status == "accepted"
    assert reply.clamped is not None
    assert (reply.clamped.field, reply.clamped.asked, reply.clamped.allowed) == \
        ("duration_s", 3600, MAX_RUN_S)
    assert "max_run_s" in reply.detail
    assert unit.app.runs == [("long-1", MAX_RUN_S)]
    assert unit.app.outputs["valve1"].is_active
    [event] = wait_until(lambda: events(controller, "limit_clamped"), 10, "limit_clamped")
    assert event.details["allowed"] == MAX_RUN_S


def test_link_malformed_command_with_id_is_rejected_and_unit_carries_on(make_unit, controller):
    unit = make_unit()
    send(controller, b'{"v":1,"id":"bad-1","action":"run_zone","params":{"zone":"lawn"}}')
    [reply] = reply_to(controller, "bad-1")
    assert (reply.status, reply.code) == ("rejected", ReplyCode.INVALID_COMMAND)
    assert "issued_at" in reply.detail  # the ProtocolError text names the fields
    assert unit.app.runs == []

    # garbage with no usable id: counted and logged, nothing to answer to
    send(controller, b"\xff\xfe not json")
    send(controller, b'{"v":1,"id":"has spaces","action":"nope"}')
    wait_until(lambda: unit.link.counters["bad_commands"] == 3, 10, "bad command count")
    # ... and the count is in the unit's status, where the controller sees it
    wait_until(lambda: [s for s in statuses(controller) if s.bad_commands == 3], 10,
               "bad_commands in the status")

    send(controller, command("run_zone", {"zone": "lawn", "duration_s": 10}, cmd_id="ok-1"))
    assert reply_to(controller, "ok-1")[0].status == "accepted"
    assert {r.id for r in replies(controller)} == {"bad-1", "ok-1"}


def test_link_refuses_commands_on_an_untrusted_clock_except_stop(make_unit, controller):
    unit = make_unit(synced=False)
    send(controller, command("run_zone", {"zone": "lawn", "duration_s": 10}, cmd_id="nc-1"))
    [reply] = reply_to(controller, "nc-1")
    assert (reply.status, reply.detail) == ("rejected", "clock not synchronised")
    assert reply.code == ReplyCode.CLOCK_NOT_SYNCED
    assert unit.app.runs == []
    send(controller, command("stop_all", cmd_id="nc-stop"))
    assert reply_to(controller, "nc-stop")[0].status == "done"
    send(controller, command("stop_zone", {"zone": "lawn"}, cmd_id="nc-stop-zone"))
    [reply] = reply_to(controller, "nc-stop-zone")  # the test app knows no stop_zone
    assert (reply.status, reply.code) == ("rejected", ReplyCode.UNKNOWN_ACTION)


def test_link_app_rejection_and_app_errors_are_answered(make_unit, controller):
    unit = make_unit()
    send(controller, command("run_zone", {"zone": "roses", "duration_s": 10}, cmd_id="rz-1"))
    [reply] = reply_to(controller, "rz-1")
    assert (reply.status, reply.code, reply.params) == (
        "rejected", ReplyCode.UNKNOWN_ZONE, {"zone": "roses"})
    assert reply.detail == "no zone named roses"

    def broken(*_args):
        raise RuntimeError("relay board missing")

    unit.app.handle_command = broken
    send(controller, command("stop_all", cmd_id="boom-1"))
    [reply] = reply_to(controller, "boom-1")
    assert (reply.status, reply.code, reply.params) == (
        "failed", ReplyCode.UNIT_ERROR, {"error": "RuntimeError"})
    assert "relay board missing" in reply.detail
    assert unit.link.counters["replies_without_code"] == 0


def test_link_replies_wait_for_the_broker(make_unit, mosquitto, mqtt_client_factory):
    """A reply made while the broker is down is kept on disk and delivered after it
    returns."""
    session = {"client_id": "ctl-persistent", "clean_start": False, "session_expiry": 600}
    ctl = mqtt_client_factory(mosquitto, **session)
    ctl.subscribe(unit_topic(Channel.CMD_REPLY))
    unit = make_unit()
    mosquitto.stop()  # clean stop: the broker keeps ctl's session
    wait_until(lambda: not unit.link.connected, 10, "disconnection")
    unit.link._reply("offline-1", "done", "finished while offline")
    assert len(unit.link.outbox.pending_replies()) == 1
    mosquitto.start()
    ctl = mqtt_client_factory(mosquitto, **session)
    [reply] = reply_to(ctl, "offline-1", timeout=15)
    assert reply.status == "done"
    wait_until(lambda: not unit.link.outbox.pending_replies(), 5, "reply row deleted")


def test_link_app_code_runs_on_the_service_loop_thread_only(make_unit, controller):
    unit = make_unit()
    threads = []
    handle, apply = unit.app.handle_command, unit.app.apply_remote_config

    def spy_handle(*args):
        threads.append(threading.get_ident())
        handle(*args)

    def spy_apply(*args):
        threads.append(threading.get_ident())
        apply(*args)

    unit.app.handle_command, unit.app.apply_remote_config = spy_handle, spy_apply
    for i in range(5):
        send(controller, command("run_zone", {"zone": "lawn", "duration_s": 15}, cmd_id=f"t-{i}"))
    controller.publish(unit_topic(Channel.CONFIG), desired_config(1, {"interval_min": 5}),
                       retain=True)
    wait_until(lambda: len(threads) == 6, 10, "five commands and a config")
    assert set(threads) == {unit._thread.ident}


def test_link_command_log_lines_carry_device_and_cmd_fields(make_unit, controller, caplog):
    make_unit()
    issued = datetime.now(UTC) - timedelta(minutes=10)
    with caplog.at_level("INFO", logger="edge.link"):
        send(controller, command("run_zone", {"zone": "lawn", "duration_s": 60},
                                 cmd_id="old-log-1", issued_at=issued, ttl_s=60))
        send(controller, command("run_zone", {"zone": "lawn", "duration_s": 30},
                                 cmd_id="new-log-1"))
        reply_to(controller, "old-log-1")
        reply_to(controller, "new-log-1")
    formatter = Formatter(journal=True)
    lines = [formatter.format(r) for r in caplog.records if r.name == "edge.link"]
    assert any(line.startswith("<4>edge.link: command run_zone expired at ") and
               line.endswith(f" device={DEVICE} cmd=old-log-1") for line in lines), lines
    assert (f'<6>edge.link: command run_zone {{"zone":"lawn","duration_s":30}} '
            f"device={DEVICE} cmd=new-log-1") in lines
