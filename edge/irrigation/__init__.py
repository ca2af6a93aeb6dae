"""The irrigation daemon: park watering on a Raspberry Pi.

- ``config``: the unit's TOML sections (zones, master, rain, flow, soil probes, limits)
  and ``IrrigationProgramConfig``, the schedules and thresholds the controller may replace;
- ``rules``: pure decisions (when programs start, cycle-and-soak, hysteresis, what may
  start now);
- ``devices``: valves, the rain switch, the flow meter and soil probes from the config;
- ``app``: ``IrrigationApp``, which wires them together.

docs/irrigation.md explains it all for technicians and operators.
"""
