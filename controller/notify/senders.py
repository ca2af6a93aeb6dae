"""Sending one notification: a JSON webhook, the Telegram Bot API, SMTP with STARTTLS.

Each sender returns when the receiver has taken the message, or raises `SendFailed`
(``permanent`` when trying again cannot help: a 4xx answer other than 408 and 429, an
SMTP 5xx). Secrets (a bot token, an SMTP password) never appear in an error's text.
"""

from __future__ import annotations

import smtplib
import ssl
from email.message import EmailMessage
from email.utils import formatdate
from typing import Any

import httpx

from controller.errors import ControllerError
from controller.settings import EmailChannel, TelegramChannel, WebhookChannel

RETRYABLE_STATUS = {408, 429}
USER_AGENT = "smartcity-controller (notifications)"


class SendFailed(ControllerError, RuntimeError):
    """A notification did not reach its receiver; ``permanent``: do not try again."""

    def __init__(self, message: str, *, permanent: bool = False):
        self.permanent = permanent
        super().__init__(message)


def _http_answer(response: httpx.Response, what: str) -> None:
    if response.is_success:
        return
    body = response.text[:300].replace("\n", " ")
    permanent = 400 <= response.status_code < 500 and response.status_code not in \
        RETRYABLE_STATUS
    raise SendFailed(f"{what} answered {response.status_code}: {body}", permanent=permanent)


def http_client(timeout_s: float) -> httpx.Client:
    """One client for every HTTP send (kept connections; TLS set up once)."""
    return httpx.Client(timeout=timeout_s, headers={"User-Agent": USER_AGENT})


def send_webhook(http: httpx.Client, channel: WebhookChannel, payload: dict) -> None:
    """POST ``payload`` as JSON; any 2xx answer means received. The header
    ``Idempotency-Key`` carries the notification_id too."""
    headers = {**channel.headers, "Idempotency-Key": payload["notification_id"]}
    try:
        response = http.post(channel.url, json=payload, headers=headers)
    except httpx.HTTPError as exc:
        raise SendFailed(f"webhook: {type(exc).__name__}: {exc}") from None
    _http_answer(response, "webhook")


def send_telegram(http: httpx.Client, channel: TelegramChannel, token: str,
                  payload: dict) -> None:
    """``sendMessage`` to the channel's chat: the text and the unit's link."""
    url = f"{channel.api_base}/bot{token}/sendMessage"
    body = {"chat_id": channel.chat_id, "text": f"{payload['text']}\n{payload['url']}",
            "disable_web_page_preview": True}
    try:
        response = http.post(url, json=body)
    except httpx.HTTPError as exc:
        raise SendFailed(f"telegram: {type(exc).__name__}: "
                         f"{str(exc).replace(token, '<token>')}") from None
    _http_answer(response, "telegram")
    try:
        answer: Any = response.json()
    except ValueError:
        answer = None
    if not isinstance(answer, dict) or answer.get("ok") is not True:
        raise SendFailed(f"telegram: not ok: {response.text[:300]}")


def email_message(channel: EmailChannel, payload: dict) -> EmailMessage:
    message = EmailMessage()
    message["Subject"] = payload["text"].split("\n", 1)[0][:200]
    message["From"] = channel.from_
    message["To"] = ", ".join(channel.to)
    message["Date"] = formatdate(localtime=False)
    message["Message-ID"] = f"<{payload['notification_id']}@smartcity-controller>"  # stable
    message["X-Notification-Id"] = payload["notification_id"]
    message.set_content(f"{payload['text']}\n\n{payload['url']}\n\n"
                        f"notification_id: {payload['notification_id']}\n")
    return message


def send_email(channel: EmailChannel, password: str | None, payload: dict, *,
               timeout_s: float) -> None:
    """One message to every ``to``, over STARTTLS (the server's certificate checked)."""
    try:
        with smtplib.SMTP(channel.host, channel.port, timeout=timeout_s) as smtp:
            smtp.ehlo()
            if channel.starttls:
                context = ssl.create_default_context(
                    cafile=str(channel.ca_file) if channel.ca_file else None)
                smtp.starttls(context=context)
                smtp.ehlo()
            if channel.username is not None:
                smtp.login(channel.username, password or "")
            smtp.send_message(email_message(channel, payload))
    except smtplib.SMTPResponseException as exc:
        raise SendFailed(f"smtp: {exc.smtp_code} {exc.smtp_error!r}",
                         permanent=500 <= exc.smtp_code < 600) from None
    except smtplib.SMTPRecipientsRefused as exc:
        raise SendFailed(f"smtp: recipients refused: {exc.recipients}",
                         permanent=True) from None
    except (smtplib.SMTPException, OSError) as exc:
        raise SendFailed(f"smtp: {type(exc).__name__}: {exc}") from None
