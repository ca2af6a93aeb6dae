"""Readings, staleness and error counters shared by every sensor driver."""

from datetime import UTC, datetime, timedelta

from edge.sensors.base import ErrorCounters, Reading, SensorError, SensorValue

T = datetime(2026, 9, 7, 1, 0, tzinfo=UTC)


def test_sensor_value_is_stale_without_a_reading_or_when_too_old():
    value = SensorValue()
    assert value.is_stale(T, 60) and value.value is None and value.age_s(T) is None
    value.update(31.4, T)
    assert not value.is_stale(T + timedelta(seconds=60), 60)
    assert value.is_stale(T + timedelta(seconds=61), 60)
    assert value.age_s(T + timedelta(seconds=30)) == 30.0
    assert value.reading == Reading(31.4, T)


def test_a_reading_from_the_future_counts_from_now():
    """After the clock was stepped back, a reading stamped 'later' is re-dated to now."""
    value = SensorValue(Reading(20.0, T + timedelta(hours=5)))
    assert not value.is_stale(T, 60)
    assert value.reading.ts == T
    assert value.is_stale(T + timedelta(seconds=61), 60)


def test_error_counters_count_reads_errors_and_streaks():
    c = ErrorCounters()
    c.failed(SensorError("no answer"))
    c.failed("bad CRC")
    assert c.as_dict() == {"reads": 2, "errors": 2, "consecutive_errors": 2,
                           "last_error": "bad CRC"}
    c.ok()
    assert (c.reads, c.errors, c.consecutive_errors) == (3, 2, 0)


def test_sensor_error_is_an_edge_error_and_an_oserror():
    from edge.errors import EdgeError

    assert issubclass(SensorError, EdgeError) and issubclass(SensorError, OSError)
