"""What the fault campaigns share: a broker, the controller and units in their own
processes, the ledger that counts lost and doubled messages, and the report.

The pieces, in the order a campaign uses them:

- ``start_broker(workdir)``, ``ControllerProcess``, ``UnitProcess``, ``wait_until`` and
  ``Budget`` (``faults/processes.py``): a private Mosquitto configured like the shipped
  one, ``smartcity-controller serve`` and units (``python -m faults.unit_process``),
  each in its own process with its own files.
- ``count_device`` and ``settle_fleet`` (``faults/ledger.py``): the ledger of one device:
  the seqs its outbox assigned, those still waiting in it, and the rows the controller
  stored, so ``lost`` and ``doubled`` are counted, never guessed.
- ``Report`` and ``main_with`` (``faults/report.py``): the figures a campaign prints,
  whether they pass, and its command line.

Every name stays importable from here.
"""

from faults.ledger import (
    CATCH_UP_S,
    DeviceCount,
    count_device,
    count_numbered,
    drained,
    outbox_state,
    settle_fleet,
    stored_rows,
)
from faults.processes import (
    BROKER_KEYS,
    CONTROLLER_TOML,
    ROOT,
    SHIPPED_BROKER_CONF,
    Budget,
    ControllerProcess,
    MosquittoBroker,
    UnitProcess,
    free_port,
    metric_sum,
    parse_metrics,
    producer_unit,
    shipped_broker_options,
    start_broker,
    wait_until,
    write_unit_toml,
)
from faults.report import OUTPUTS_OFF_LIMIT_S, Report, main_with, parser, workspace

__all__ = ["BROKER_KEYS", "CATCH_UP_S", "CONTROLLER_TOML", "OUTPUTS_OFF_LIMIT_S", "ROOT",
           "SHIPPED_BROKER_CONF", "Budget", "ControllerProcess", "DeviceCount",
           "MosquittoBroker", "Report", "UnitProcess", "count_device", "count_numbered",
           "drained", "free_port", "main_with", "metric_sum", "outbox_state",
           "parse_metrics", "parser", "producer_unit", "settle_fleet",
           "shipped_broker_options", "start_broker", "stored_rows", "wait_until",
           "workspace", "write_unit_toml"]
