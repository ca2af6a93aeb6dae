"""Build the FastAPI app: ``create_app(settings)``.

Nothing is built at import time. ``create_app`` makes the app and its metrics registry;
the lifespan opens the store, starts the MQTT ingest (unless ``mqtt`` is given or MQTT is
disabled) and the publisher, the leadership of the periodic work (`controller.leader`:
one instance at a time expires commands, sweeps alarms, prunes, delivers notifications
and publishes left-over commands again), the alarm notifications' delivery
(`controller.notify`) and the live updates' poller (`controller.live`), and stops them in
reverse order.

Tests pass their own parts: ``create_app(settings, store=store, mqtt=MemoryTransport())``
runs the API with no broker; commands are then "published" into the transport.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from controller.api.deps import AppState
from controller.api.routes import (
    alarms,
    commands,
    dashboard,
    devices,
    enrol,
    health,
    history,
    notify,
    releases,
    reports,
    rollouts,
    schedules,
    stream,
    users,
)
from controller.api.schemas import Problem
from controller.auth import FailedLogins
from controller.errors import Conflict, Invalid, NotFound, StoreError
from controller.ingest import Ingest
from controller.leader import Leader, lock_for
from controller.live import LiveHub
from controller.metrics import Metrics
from controller.notify.worker import start as start_notify
from controller.publisher import REPUBLISH_AFTER_S, MemoryTransport, Publisher, Transport
from controller.settings import Settings
from controller.store import Store

logger = logging.getLogger(__name__)

ERROR_RESPONSES = {
    401: {"model": Problem, "description": "no token, or an unknown, revoked or expired one"},
    403: {"model": Problem, "description": "the caller's role may not do this"},
    404: {"model": Problem, "description": "not found (or in another OPD)"},
    429: {"model": Problem, "description": "too many failed logins from this address",
          "headers": {"Retry-After": {"description": "seconds until logins are accepted "
                                                     "again", "schema": {"type": "integer"}}}},
    503: {"model": Problem, "description": "the database is not available; try again shortly"},
}
CONFLICT = {409: {"model": Problem, "description": "contradicts what is stored"}}


def create_app(settings: Settings, *, store: Store | None = None,
               mqtt: Transport | None = None, metrics: Metrics | None = None,
               logins: FailedLogins | None = None, ingest: bool = True,
               http: bool = True) -> FastAPI:
    """The controller's HTTP API; the lifespan runs the ingest too (see module doc).

    ``logins`` counts failed logins (default: per ``[api] login_failures_max`` and
    ``login_window_s``). The client address is the peer's, or the ``X-Forwarded-For`` one
    when the peer is in ``[api] trusted_proxies``.

    ``ingest`` False (``serve --no-ingest``): no subscription and no periodic work;
    commands and configs go out through an MQTT connection of this instance's own.
    ``http`` False (``serve --no-api``): the lifespan is run without a server, so no live
    updates' poller either.
    """
    metrics = metrics or Metrics()
    if logins is None:
        logins = FailedLogins(settings.api.login_failures_max, settings.api.login_window_s)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        own_store = store is None
        app_store = store or Store.open(settings.database.target)
        client: Ingest | None = None
        client_store: Store | None = None
        leader: Leader | None = None
        transport = mqtt
        publisher = Publisher(app_store, MemoryTransport(auto_sent=False))
        if transport is None and settings.mqtt.enabled:
            client_store = (app_store if app_store.path == ":memory:"
                            else Store.open(app_store.path, migrate=False))
            if ingest:  # one instance at a time runs the periodic work
                leader = Leader(lock_for(app_store.path),
                                poll_s=settings.database.leader_poll_s, gauge=metrics.leader)
            client = Ingest(settings, client_store, metrics,
                            password=settings.mqtt.read_password(), receive=ingest,
                            leader=leader, republish=lambda: publisher.republish_open(
                                REPUBLISH_AFTER_S))
            transport = client.start()
        elif transport is None:
            logger.warning("MQTT is disabled: commands and configs are not sent anywhere")
            transport = MemoryTransport(auto_sent=False)
        publisher.transport = transport
        if leader is not None:
            leader.start()
        notifier = start_notify(app_store, settings, metrics, leader=leader, deliver=ingest)
        live = LiveHub(app_store, interval_s=settings.api.live_poll_s) if http else None
        app.state.controller = AppState(settings, app_store, metrics, publisher, client,
                                        logins, asyncio.get_running_loop(), live,
                                        leader=leader)
        if live is not None:
            live.start()
        if client is None:  # a single instance with no broker of its own: at once
            republished = publisher.republish_open()
            if republished:
                logger.info("published %d pending command(s) again", republished)
        try:
            yield
        finally:
            if live is not None:
                await live.stop()
            if client is not None:
                client.stop()
            notifier.stop()
            if leader is not None:
                leader.stop()
            if client_store is not None and client_store is not app_store:
                client_store.close()
            if own_store:
                app_store.close()

    app = FastAPI(
        title="Balikpapan Smart City controller",
        version="1",
        summary="Park watering and pond feeding units: state, history, schedules, commands.",
        lifespan=lifespan,
    )
    app.state.metrics = metrics
    if settings.api.trusted_proxies:
        app.add_middleware(ProxyHeadersMiddleware, trusted_hosts=settings.api.trusted_proxies)
    for module in (devices, history, schedules, commands, alarms, users, reports, dashboard,
                   notify, stream, releases, rollouts):
        app.include_router(module.router, responses=ERROR_RESPONSES | CONFLICT)
    app.include_router(health.router)
    app.include_router(enrol.router)  # no bearer token: the enrolment token is the proof

    @app.exception_handler(NotFound)
    async def _not_found(request: Request, exc: NotFound) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=404)

    @app.exception_handler(Conflict)
    async def _conflict(request: Request, exc: Conflict) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=409)

    @app.exception_handler(StoreError)
    async def _store_error(request: Request, exc: StoreError) -> JSONResponse:
        logger.error("database not usable: %s", exc)
        return JSONResponse({"detail": "the database is not available; try again shortly"},
                            status_code=503)

    @app.exception_handler(Invalid)
    async def _invalid(request: Request, exc: Invalid) -> JSONResponse:
        loc = ["body", exc.field] if exc.field else ["body"]
        return JSONResponse({"detail": [{"loc": loc, "msg": str(exc), "type": "value_error"}]},
                            status_code=422)

    return app
