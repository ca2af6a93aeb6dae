"""Field simulators: the hardware side of a unit, behaving like the field.

A simulator owns gpiozero mock pins and moves them the way the real world would (a rain
switch closing, a flow meter pulsing while valves are open, soil drying in the sun), on
the same ``VirtualClock`` the daemon runs on. The daemon cannot tell it from a park: it
sees only pins, pulse counts and sensor readings. Tests and ``smartcity-edge simulate``
use them to run days of a unit in seconds.

- ``edge.sim.park``: a park with zones, soil, sun, rain, a rain sensor and a flow meter;
  ``edge.sim.irrigation.simulate(config_path, days)`` runs a unit's config against it.
- ``edge.sim.fish_feeder``: a pond with its water quality, feeders, hoppers and probes
  (``edge.sim.pond``, ``edge.sim.probes``).
"""
