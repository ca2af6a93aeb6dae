"""Sensor drivers shared by both daemons.

- ``base``: ``Reading`` (a value and its time), ``SensorValue`` (the last good reading,
  ``is_stale(now, max_age_s)``), ``ErrorCounters``, and ``SensorError``.
- ``modbus``: ``ModbusSensor``, a generic Modbus RTU register reader (minimalmodbus on a
  port opened with ``serial.serial_for_url``).
- ``soil``: soil-moisture probes on an MCP3008 ADC, on a serial text line, or on Modbus.
- ``ezo``, ``modbus_wq``: water-quality probes of the fish feeder.

Drivers never decide anything: they read, count failures and raise ``SensorError``; the
apps' rules decide what a missing or stale value means.
"""

from .base import ErrorCounters, Reading, SensorError, SensorValue

__all__ = ["ErrorCounters", "Reading", "SensorError", "SensorValue"]
