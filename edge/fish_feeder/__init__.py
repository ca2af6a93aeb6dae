"""The fish-feeder daemon: feeders, feeding plans, water-quality interlocks, hard limits.

- ``config``: the unit's TOML sections (``FishFeederConfig``);
- ``species``: the species presets (nila, lele, bandeng, vaname);
- ``rules``: pure decisions (ration, split, interlocks, dose clamp, rate trim);
- ``devices``: a feeder motor with its physical confirmation, and the hopper gauge;
- ``app``: ``FishFeederApp``, which wires them to the clock, the state and the publisher;
  its parts: ``inputs`` (sensors, hoppers, the interlock), ``ledger`` (daily totals,
  the daily cap, the feed log), ``commands`` (commands, pause and skip, remote config),
  ``pending`` (a feeding waiting to run);
- ``calibrate``: the technician's ``smartcity-edge calibrate`` subcommand.

See docs/fish_feeder.md.
"""
