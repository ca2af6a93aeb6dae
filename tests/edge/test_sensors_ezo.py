"""EZO text protocol: strict parsing, timeouts, garbled lines counted, never a made-up value."""

from __future__ import annotations

import random
import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge.sensors.base import SensorError
from edge.sensors.ezo import PLAUSIBLE, EzoSensor, parse_exchange
from edge.sim.fish_feeder import PtyBridge, SimEzoPort

VALUE = re.compile(rb"^-?\d{1,5}(?:\.\d{1,4})?(?:,-?\d{1,5}(?:\.\d{1,4})?){0,3}$")


class ScriptedPort:
    """Answers each request with the next scripted response, cut into chunks."""

    def __init__(self, responses):
        self.responses = list(responses)  # each: list of byte chunks
        self._chunks: list[bytes] = []
        self.timeout = None
        self.port = "scripted"
        self.is_open = True

    def reset_input_buffer(self):
        self._chunks = []

    def write(self, data):
        if data == b"R\r":
            self._chunks = list(self.responses.pop(0)) if self.responses else []
        else:
            self._chunks = [b"*OK\r"]
        return len(data)

    def read(self, size=1):
        if not self._chunks:
            return b""
        chunk = self._chunks.pop(0)
        if len(chunk) > size:
            self._chunks.insert(0, chunk[size:])
            chunk = chunk[:size]
        return chunk

    def close(self):
        pass


def complete_values(data: bytes, quantity: str) -> set[float]:
    """Every value the circuit could have sent whole in ``data``: the test's oracle."""
    low, high = PLAUSIBLE[quantity]
    found = set()
    for line in data.split(b"\r")[:-1]:
        line = line[1:] if line.startswith(b"\n") else line
        if VALUE.match(line):
            v = float(line.split(b",")[0])
            if low <= v <= high:
                found.add(v)
    return found


def test_ezo_reads_value_followed_by_ok():
    port = SimEzoPort("sim", lambda: 8.23, noise=0.0)
    sensor = EzoSensor(port, "do_mg_l")
    assert sensor.read() == 8.23
    assert sensor.counters.errors == 0 and sensor.garbled == 0
    assert port.writes == 3  # C,0 and *OK,1 once, then R


def test_ezo_two_field_do_answer_uses_mg_l():
    sensor = EzoSensor(ScriptedPort([[b"7.91,96.4\r*OK\r"]]), "do_mg_l")
    assert sensor.read() == 7.91


def test_ezo_status_lines_ignored_and_crlf_tolerated():
    sensor = EzoSensor(ScriptedPort([[b"*WA\r\n28.104\r\n*OK\r\n"]]), "temp_c")
    assert sensor.read() == 28.104
    assert sensor.garbled == 0


def test_ezo_error_answer_raises_and_counts():
    sensor = EzoSensor(ScriptedPort([[b"*ER\r"]]), "ph")
    with pytest.raises(SensorError, match=r"\*ER"):
        sensor.read()
    assert sensor.counters.errors == 1


def test_ezo_silent_circuit_times_out_quickly_in_virtual_port():
    sensor = EzoSensor(SimEzoPort("sim", lambda: 7.0, silent=True), "ph", timeout_s=1.0)
    with pytest.raises(SensorError, match="timeout"):
        sensor.read()
    assert sensor.counters.consecutive_errors == 1


def test_ezo_partial_line_is_never_joined_to_the_next_exchange():
    sensor = EzoSensor(ScriptedPort([[b"8.2"], [b"3\r", b"*OK\r"], [b"7.90\r*OK\r"]]),
                       "do_mg_l")
    with pytest.raises(SensorError):
        sensor.read()  # "8.2" cut by the timeout: garbled, no reading
    assert sensor.garbled == 1
    assert sensor.read() == 3.0  # "3" was sent whole in its own exchange, not "8.23"
    assert sensor.read() == 7.90


def test_ezo_value_without_ok_is_not_used():
    sensor = EzoSensor(ScriptedPort([[b"8.23\r"]]), "do_mg_l")
    with pytest.raises(SensorError):
        sensor.read()


@pytest.mark.parametrize("line", [b"8.2x3", b"8..23", b"--1", b"1e3", b"nan", b"99.0",
                                  b"\xff8.23", b"8.23 ", b""])
def test_ezo_garbled_or_implausible_line_counted_and_ignored(line):
    sensor = EzoSensor(ScriptedPort([[line + b"\r*OK\r"]]), "do_mg_l")
    with pytest.raises(SensorError):
        sensor.read()
    assert sensor.garbled == (0 if line == b"" else 1)


@settings(max_examples=300, derandomize=True)
@given(st.binary(max_size=80), st.sampled_from(sorted(PLAUSIBLE)))
def test_ezo_parse_any_bytes_never_crashes_never_invents(data, quantity):
    result = parse_exchange(data, quantity)
    assert result.status in ("ok", "error", "timeout", "no_value")
    if result.value is not None:
        assert result.value in complete_values(data, quantity)


value_line = st.builds(lambda v: f"{v:.2f}\r".encode(),
                       st.floats(min_value=0, max_value=20, allow_nan=False))
segment = st.one_of(
    value_line,
    st.just(b"*OK\r"), st.just(b"*ER\r"), st.just(b"*WA\r"),
    st.binary(min_size=1, max_size=6),  # line noise
    value_line.map(lambda b: b[: max(1, len(b) // 2)]),  # a cut line
)


@settings(max_examples=200, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.lists(segment, max_size=6), min_size=1, max_size=5),
       st.integers(min_value=1, max_value=7))
def test_ezo_noisy_partial_streams_never_a_reading_that_was_not_sent(responses, chunk):
    scripted = []
    for parts in responses:
        data = b"".join(parts)
        scripted.append([data[i:i + chunk] for i in range(0, len(data), chunk)])
    sensor = EzoSensor(ScriptedPort(scripted), "do_mg_l", timeout_s=0.2)
    for parts in responses:
        try:
            v = sensor.read()
        except SensorError:
            continue
        assert v in complete_values(b"".join(parts), "do_mg_l")


def test_ezo_noisy_simulated_circuit_values_all_real():
    rng = random.Random(3)
    port = SimEzoPort("sim", lambda: rng.uniform(2, 9), garble_rate=0.4,
                      rng=random.Random(4))
    sensor = EzoSensor(port, "do_mg_l", timeout_s=0.2)
    got = []
    for _ in range(300):
        try:
            got.append(sensor.read())
        except SensorError:
            pass
    assert 120 < len(got) < 300
    assert set(got) <= set(port.sent_values)
    assert sensor.garbled > 0
    assert sensor.counters.errors == 300 - len(got)


def test_ezo_over_a_real_pty_by_path():
    bridge = PtyBridge(SimEzoPort("pty", lambda: 6.5, noise=0.0))
    try:
        sensor = EzoSensor(bridge.path, "do_mg_l", timeout_s=1.0)
        assert sensor.read() == 6.5
        assert sensor.read() == 6.5
        sensor.close()
    finally:
        bridge.close()


def test_ezo_missing_port_is_a_counted_error_not_a_crash(tmp_path):
    sensor = EzoSensor(str(tmp_path / "no-such-tty"), "temp_c")
    with pytest.raises(SensorError, match="cannot open"):
        sensor.read()
    assert sensor.counters.errors == 1
