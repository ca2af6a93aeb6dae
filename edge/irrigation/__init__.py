"""The irrigation daemon: park watering on a Raspberry Pi.

- ``config``: the unit's TOML sections (zones, master, rain, flow, soil probes, limits)
  and ``IrrigationProgramConfig``, the schedules and thresholds the controller may replace;
- ``rules``: pure decisions (when programs start, cycle-and-soak, hysteresis, what may
  start now);
- ``supply``: the master valve or pump and the zone valves, as one pure function of what
  should water, what is switched and the time;
- ``devices``: valves, the rain switch, the flow meter and soil probes from the config;
- ``inputs``, ``ledger``, ``planning``, ``queue``, ``commands``, ``persist``: the parts of
  the daemon (the inputs and their faults; today's water and the limits; program starts
  and sensor runs; the runs and their reports; remote commands; what is saved);
- ``app``: ``IrrigationApp``, which wires them together.

docs/irrigation.md explains it all for technicians and operators.
"""
