"""``edge.daemon.run_unit`` spends its loop's pause waiting for inbound messages
(``Link.wait_inbound``): a command or a desired config is handled when it arrives, not on
the next tick. The tick here is far longer than the test's waits, so an answer at all
means it did not wait for the tick."""

from __future__ import annotations

import threading

from link_helpers import (
    FAST,
    command,
    desired_config,
    replies,
    statuses,
    unit_toml,
    unit_topic,
    wait_until,
)

from edge.daemon import run_unit
from protocol import Channel

TICK_S = 600.0  # the unit's loop would tick again only after this
WAIT_S = 10.0  # how long the test waits for an answer


def test_run_unit_answers_a_command_and_applies_a_config_between_ticks(tmp_path, mosquitto,
                                                                       controller):
    config = tmp_path / "unit.toml"
    config.write_text(unit_toml(mosquitto, tmp_path / "state"))
    stop = threading.Event()
    exit_status = []
    daemon = threading.Thread(target=lambda: exit_status.append(run_unit(
        config, pin_factory="mock", stop=stop, link_options=FAST, tick_s=TICK_S,
        install_signals=False)), daemon=True)
    daemon.start()
    try:
        # Online: the unit subscribed before it published this status.
        wait_until(lambda: any(s.online for s in statuses(controller)), WAIT_S, "online")

        controller.publish(unit_topic(Channel.CMD), command("stop_all", cmd_id="cmd-1"), qos=1)
        reply = wait_until(lambda: replies(controller, "cmd-1"), WAIT_S, "reply")[0]
        assert reply.status == "done"

        controller.publish(unit_topic(Channel.CONFIG),
                           desired_config(1, {"watering_pct": 80, "programs": []}), qos=1,
                           retain=True)
        wait_until(lambda: any(s.config_version == 1 for s in statuses(controller)), WAIT_S,
                   "status reporting config 1")
    finally:
        stop.set()
        # The loop is waiting for an inbound message (up to TICK_S): one wakes it, and it
        # sees the stop.
        controller.publish(unit_topic(Channel.CMD), command("stop_all", cmd_id="cmd-2"),
                           qos=1)
        daemon.join(WAIT_S)
    assert not daemon.is_alive() and exit_status == [0]
    assert [r.status for r in replies(controller, "cmd-1")] == ["done"]  # answered once
