"""Alarm notifications as the controller's config sets them: read-only, admins only."""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit

from fastapi import APIRouter
from pydantic import BaseModel, Field

from controller.api.deps import AdminUser, StateDep
from controller.notify import outbox
from controller.settings import EmailChannel, TelegramChannel

router = APIRouter(prefix="/api/v1", tags=["notify"])


class ChannelOut(BaseModel):
    name: str = Field(description="keys the channel's notifications in the outbox")
    type: Literal["webhook", "telegram", "email"]
    target: str = Field(description="where it sends: a webhook's scheme and host only (its "
                        "path may hold a key), a chat via the Bot API's host, or an SMTP "
                        "server and recipients")
    opd: list[str] | None = Field(description="only alarms of these OPDs (null: all)")
    min_severity: Literal["critical", "warning", "info"]
    escalation: Literal[0, 1] = Field(description="1: told only of alarms nobody "
                                      "acknowledged in time")
    credential: Literal["set", "unset"] = Field(
        description="a bot token, an SMTP password or webhook headers: whether one is "
        "configured (never the value)")
    header_names: list[str] = Field(default_factory=list,
                                    description="a webhook's extra headers, names only")
    outbox: dict[str, int] = Field(description="this channel's notifications per state "
                                   "(pending, held, sent, failed, cancelled)")


class NotifyOut(BaseModel):
    timezone: str
    quiet_hours: str = Field(description='e.g. "22:00-06:00"; "" for none')
    flap_hold_s: float
    escalate_after_s: float
    public_url: str = Field(description="links in notifications point under it")
    channels: list[ChannelOut]


def _origin(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme}://{host}" + (f":{parts.port}" if parts.port else "")


@router.get("/notify/channels", response_model=NotifyOut)
def notify_channels(state: StateDep, user: AdminUser) -> NotifyOut:
    """The notification channels and policy from ``[notify]`` (read-only; edit the
    config file). Secrets are never shown: only whether one is set. Admins only."""
    notify = state.settings.notify
    with outbox.reading(state.store) as db:
        counts = outbox.channel_counts(db)
    channels = []
    for kind, c in notify.channels():
        header_names: list[str] = []
        if isinstance(c, TelegramChannel):
            target, secret = f"chat {c.chat_id} via {_origin(c.api_base)}", c.bot_token_file
        elif isinstance(c, EmailChannel):
            target = f"{c.host}:{c.port} to {', '.join(c.to)}"
            secret = c.password_file
        else:
            target, secret = _origin(c.url), c.headers or None
            header_names = sorted(c.headers)
        channels.append(ChannelOut(
            name=c.name, type=kind, target=target, opd=c.opd, min_severity=c.min_severity,
            escalation=c.escalation, credential="set" if secret else "unset",
            header_names=header_names, outbox=counts.get(c.name, {})))
    return NotifyOut(timezone=notify.timezone, quiet_hours=notify.quiet_hours,
                     flap_hold_s=notify.flap_hold_s, escalate_after_s=notify.escalate_after_s,
                     public_url=state.settings.api.base_url(), channels=channels)
