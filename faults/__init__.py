"""Fault campaigns: kill the broker, the controller or a unit, over and over, and count.

Each campaign is a script with a bounded number of cycles and a wall-clock cap, run from
the repository root::

    .venv/bin/python -m faults.broker_kills --cycles 100      # Mosquitto SIGKILLed under load
    .venv/bin/python -m faults.controller_kills --cycles 20   # controller SIGKILLed mid-ingest
    .venv/bin/python -m faults.unit_kills --cycles 50         # irrigation unit SIGKILLed mid-run
    .venv/bin/python -m faults.instance_kills --kills 20      # one of 3 instances on PostgreSQL
    .venv/bin/python -m faults.fuzz                           # decoders, parsers, API, ingest

Everything runs for real on this machine: a private Mosquitto on a free loopback port
(never the system broker on 1883), ``smartcity-controller serve`` in its own process, and
units in their own processes (``faults.unit_process``) with the real edge link and
outbox. Only the hardware is simulated (gpiozero mock pins).

Each campaign prints what it counted (sent, stored, lost, doubled, the longest time until
a restarted unit had every output off, cycles done) and exits 0 only when nothing was
lost, nothing doubled and every restarted unit had its outputs off within 2 s.
docs/reliability.md has the figures and what each campaign does; tests/faults runs short
versions of the three kill campaigns.
"""
