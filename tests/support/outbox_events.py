"""What a unit left in its outbox file, read the way a restart would (a fresh connection)."""

from __future__ import annotations

import json

from edge.daemon import OUTBOX_FILE
from edge.outbox import Outbox


def stored_events(state_dir, type_: str) -> list[dict]:
    """Every event of ``type_`` in the unit's outbox, in seq order (nothing was acked)."""
    outbox = Outbox(state_dir / OUTBOX_FILE)
    try:
        docs = [json.loads(row.payload) for row in outbox.rows_after(0, 100_000)]
    finally:
        outbox.close()
    return [d for d in docs if d.get("type") == type_]
