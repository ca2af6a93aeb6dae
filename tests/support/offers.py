"""The ``update`` command's answers, for the every-command-path tests of both kinds: the
link answers ``update`` for every kind of unit (``edge.offer.UpdateOffers``), not the app."""

from __future__ import annotations

import base64
from pathlib import Path

from protocol import ReplyCode
from protocol.commands import UpdateParams

KEY = base64.b64encode(bytes(range(32))).decode()


def update_paths(config, state_dir: Path, clock, fw: str = "1.0.0") -> list[tuple]:
    """``(status, code, params)`` of each path through ``update``: no trusted key, the
    version it runs, accepted (for a window closed at ``clock``'s time: nothing is
    fetched), busy; with what each should be."""
    from edge.offer import UpdateOffers

    def offers_for(keys: list[str]) -> UpdateOffers:
        update = config.update.model_copy(update={"trusted_keys": keys,
                                                  "window": "22:00-05:00"})
        unit = config.model_copy(update={"update": update, "state_dir": state_dir})
        return UpdateOffers(unit, clock=clock, fw=fw, event_once=lambda *a, **k: None)

    def params(version: str) -> UpdateParams:
        return UpdateParams(version=version, url="http://127.0.0.1:9/bundle",
                            sha256="0" * 64, size=1000)

    found = []
    untrusted = offers_for([])
    found.append((untrusted.answer("u1", params("2.0.0")),
                  ("rejected", ReplyCode.UPDATE_NOT_TRUSTED, {"version": "2.0.0"})))
    offers = offers_for([KEY])
    try:
        found.append((offers.answer("u2", params(fw)),
                      ("done", ReplyCode.UPDATE_CURRENT, {"version": fw})))
        found.append((offers.answer("u3", params("2.0.0")),
                      ("accepted", ReplyCode.UPDATE_ACCEPTED,
                       {"version": "2.0.0", "window": "22:00-05:00"})))
        found.append((offers.answer("u4", params("2.0.1")),
                      ("rejected", ReplyCode.UPDATE_BUSY,
                       {"version": "2.0.1", "busy_with": "2.0.0"})))
    finally:
        offers.close()
    assert not (state_dir / "downloads").exists()  # outside the window: nothing fetched
    return [((status, ReplyCode(code), p), want) for (status, code, p), want in found]
