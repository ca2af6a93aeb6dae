"""A full outbox over the wire: thinned telemetry is announced, the controller's ack moves
past the gap, and the status counts the drops."""

import dataclasses

from link_helpers import FAST, AckingController, statuses, unit_topic, wait_until

from protocol import Channel


def test_link_dropped_telemetry_is_announced_and_acked_past(make_unit, mosquitto,
                                                             mqtt_client_factory):
    options = dataclasses.replace(FAST, outbox_max_rows=40)
    mosquitto.stop()  # offline: everything waits in the outbox
    unit = make_unit(options=options, wait=False)
    events = 0
    for i in range(120):
        if i % 10 == 0:
            unit.link.event("alarm", code="test", message=f"event {i}")
            events += 1
        else:
            unit.link.telemetry({"moisture_pct.lawn": float(i)}, {"valve1": False})
    last = unit.link.outbox.next_seq - 1
    dropped = unit.link.outbox.dropped
    assert dropped > 0
    assert unit.link.outbox.backlog <= 41

    mosquitto.start()
    ingest = AckingController(mosquitto).start()
    try:
        wait_until(lambda: ingest.upto == last, 20, f"ack up to {last}")
        wait_until(lambda: unit.link.outbox.backlog == 0, 10, "an empty outbox")
        received = ingest.payloads()
        assert set(received) | ingest.dropped == set(range(1, last + 1))
        assert set(received).isdisjoint(ingest.dropped)
        assert len(ingest.dropped) == dropped
        kinds = [p.get("type") for p in received.values()]
        assert kinds.count("alarm") == events  # no event was dropped
        assert kinds.count("outbox_dropped") >= 1
        assert all(received[s].get("type") is None for s in ingest.dropped if s in received)
        watcher = mqtt_client_factory(mosquitto, client_id="watcher")
        watcher.subscribe(unit_topic(Channel.STATUS))
        status = wait_until(lambda: [s for s in statuses(watcher)
                                     if s.online and s.backlog == 0], 15, "status")[-1]
        assert status.dropped == dropped
    finally:
        ingest.close()
