"""Live updates: ``GET /api/v1/stream``, server-sent events of what changed on which
unit (`controller.live`), for the units the caller may see.

A browser's ``EventSource`` cannot send an ``Authorization`` header, so the page asks
``POST /api/v1/stream/tickets`` (bearer token; every role, viewers too: it changes
nothing stored) for a one-time ticket valid 30 s, and opens ``/api/v1/stream?ticket=``.
A client that can send headers may open the stream with its bearer token instead. The
token itself is never accepted in the address (addresses end up in proxies' logs).

Each change is one ``data:`` line of JSON ``{"device_id", "what"}``; a comment line every
``HEARTBEAT_S`` keeps proxies from closing an idle stream. A stream ends after
``MAX_STREAM_S`` (the page opens a new one with a new ticket, so a revoked token stops
seeing changes), when the client falls too far behind, or when the server stops.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, Request, status
from fastapi.responses import StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials
from pydantic import BaseModel, Field

from controller.api.deps import CurrentUser, StateDep, bearer, get_principal
from controller.auth import Principal
from controller.live import TICKET_TTL_S
from controller.store import utcnow

router = APIRouter(prefix="/api/v1/stream", tags=["live"])

HEARTBEAT_S = 15.0
MAX_STREAM_S = 900.0


class TicketOut(BaseModel):
    ticket: str = Field(description="open GET /api/v1/stream?ticket=<this> within "
                        f"{TICKET_TTL_S:.0f} s; valid once")
    expires_at: datetime


@router.post("/tickets", response_model=TicketOut, status_code=201)
def ticket(state: StateDep, user: CurrentUser) -> dict:
    """A one-time ticket to open the stream with (every role may follow changes)."""
    return {"ticket": state.tickets.issue(user),
            "expires_at": utcnow() + timedelta(seconds=TICKET_TTL_S)}


def stream_principal(request: Request, state: StateDep,
                     credentials: Annotated[HTTPAuthorizationCredentials | None,
                                            Depends(bearer)],
                     ticket: Annotated[str | None, Query(max_length=100)] = None
                     ) -> Principal:
    if ticket is not None and credentials is None:
        user = state.tickets.redeem(ticket)
        if user is None:
            raise HTTPException(status.HTTP_401_UNAUTHORIZED,
                                detail="unknown, used or expired stream ticket",
                                headers={"WWW-Authenticate": "Bearer"})
        return user
    return get_principal(request, state, credentials)


@router.get("", response_class=StreamingResponse,
            responses={200: {"content": {"text/event-stream": {}},
                             "description": 'server-sent events: `data: {"device_id": '
                             '..., "what": "state|events|replies|alarms"}`'}})
async def stream(state: StateDep,
                 user: Annotated[Principal, Depends(stream_principal)]) -> StreamingResponse:
    """What changes on the units the caller may see, as it happens (see module doc)."""
    hub = state.live
    sub = hub.subscribe(user.opd_scope)

    async def events() -> AsyncIterator[str]:
        loop = asyncio.get_running_loop()
        end = loop.time() + MAX_STREAM_S
        try:
            yield "retry: 2000\n: live\n\n"
            while loop.time() < end:
                try:
                    change = await asyncio.wait_for(sub.queue.get(), HEARTBEAT_S)
                except TimeoutError:
                    yield ": ping\n\n"
                    continue
                if change is None:
                    return
                yield "data: " + json.dumps(change, separators=(",", ":")) + "\n\n"
        finally:
            hub.unsubscribe(sub)

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-store",
                                      "X-Accel-Buffering": "no"})
