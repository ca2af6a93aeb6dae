"""What the ingest logs for a message it refuses: reason, the unit as a field, and the
payload as truncated JSON, never a Python repr."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

from controller_support import add_device

from controller.ingest import store_batch
from protocol.logs import ELLIPSIS, PAYLOAD_CHARS, Formatter
from protocol.topics import topic

NOW = datetime(2026, 1, 5, tzinfo=UTC)


def rejected_lines(caplog) -> list[str]:
    formatter = Formatter(journal=True)
    return [formatter.format(r) for r in caplog.records
            if r.name == "controller.ingest" and "rejected" in r.getMessage()]


def payload_of(line: str) -> str:
    return re.search(r"; payload (.*) device=", line)[1]


def test_ingest_logs_malformed_payload_as_json_without_repr(store, caplog):
    add_device(store, "taman-01", "dlh")
    where = topic("dlh", "taman-01", "telemetry")
    raws = [(where, b"{'seq': 1, 'raw': b'\\x00'}", NOW),        # a Python repr, not JSON
            (where, b'{"v": 1, "seq": "one", "ts": 5}', NOW),     # JSON, wrong fields
            (where, b'{"v": 1, "junk": "' + b"x" * 1000 + b'"}', NOW)]
    with caplog.at_level("WARNING"):
        outcome = store_batch(store, raws)
    assert [reason for _, reason, _ in outcome.rejected] == ["bad_payload"] * 3
    python_repr, wrong_fields, long = rejected_lines(caplog)

    assert python_repr.startswith("<4>controller.ingest: rejected message (bad_payload): ")
    assert python_repr.endswith(f" device=taman-01 topic={where}")
    shown = payload_of(python_repr)
    assert json.loads(shown) == "{'seq': 1, 'raw': b'\\x00'}"  # a JSON string of the text
    assert not shown.startswith("b'")
    assert json.loads(payload_of(wrong_fields)) == {"v": 1, "seq": "one", "ts": 5}
    assert len(payload_of(long)) == PAYLOAD_CHARS and payload_of(long).endswith(ELLIPSIS)
