"""Fuzzing: every decoder and serial parser, the controller's API, and the ingest path.

Three parts, each printing what it counted:

1. **Decoders and parsers** (Hypothesis, in process). Each target gets arbitrary and
   near-valid input and must either return a good value or raise its one documented
   error type; anything else is a *crash*. Targets: ``protocol.decode`` for every channel,
   ``protocol.parse_topic``, ``edge.sensors.soil.parse_line``,
   ``edge.sensors.ezo.parse_exchange`` and ``EzoSensor.read``,
   ``edge.sensors.hopper.parse_weight_stream`` and ``LoadCell.read``, and Modbus RTU
   answers to ``ModbusSensor.read`` and ``ModbusWaterQuality.read`` through a loopback
   port (``edge.sim.fish_feeder.SimModbusPort``, real frames and CRCs).
   What a target accepts is checked too (a decoded message round-trips; a reading is a
   finite number in its range); a violation counts as *wrong*.
2. **The controller's HTTP API** (schemathesis). Every operation of the OpenAPI schema,
   driven through its Hypothesis strategy with an admin token; schemathesis's checks run
   on each answer. Counts: requests, *server errors* (5xx), *crashes* (an exception out of
   the app), check failures (an answer that does not fit the schema).
3. **The ingest path.** A private Mosquitto and ``smartcity-controller serve``; fuzzed
   payloads are published on real unit topics (garbage payloads on a registered unit's
   topics, valid payloads from unregistered devices, under the wrong OPD, on malformed
   topic levels, replies to unknown commands). Counts: published, rejected by the
   controller (its ``smartcity_ingest_rejected_total``), and *stored garbage* (any row
   that appeared in the controller's database).

    .venv/bin/python -m faults.fuzz                  # the long run (about 10 minutes)
    .venv/bin/python -m faults.fuzz --scale 0.01     # 1% of the examples: a quick look
    .venv/bin/python -m faults.fuzz --only decode.event,modbus --seed 7

Exit status 0 only when there were no crashes, no wrong results, no server errors and
no stored garbage.

The package: ``base`` (a target, its tally, ``Wrong``), one module of targets per area
(``decoders``, ``lines`` for the serial line protocols, ``modbus``), ``runner`` (every
target, and feeding one its examples), ``api``, ``ingest``, and ``cli`` (``main``).
"""

from faults.fuzz.api import ApiTally, fuzz_api
from faults.fuzz.base import Tally, Target, Wrong
from faults.fuzz.cli import main
from faults.fuzz.ingest import IngestTally, fuzz_ingest, ingest_cases
from faults.fuzz.runner import BUFFER_SIZES, run_target, targets

__all__ = ["BUFFER_SIZES", "ApiTally", "IngestTally", "Tally", "Target", "Wrong", "fuzz_api",
           "fuzz_ingest", "ingest_cases", "main", "run_target", "targets"]
