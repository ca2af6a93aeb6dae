"""Local stand-ins for the notification receivers (imported as ``notify_fakes``).

- `HttpReceiver`: an HTTP server on a free port recording each POST's path, headers and
  JSON body. As a webhook it answers 200 (or ``fail_first`` times 503 first, or always
  ``status``); as the Telegram Bot API (`telegram=True`) it answers
  ``POST /bot<TOKEN>/sendMessage`` like the real one (``{"ok": true, "result": {...}}``,
  401 for another token). ``hold`` makes it record a request and then not answer it until
  the event is set (a controller can be killed while it waits).
- `SmtpReceiver`: aiosmtpd on a free port, STARTTLS required before login or mail, with a
  self-signed certificate made with ``cryptography`` (its PEM at ``ca_file``).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import socket
import ssl
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

TOKEN = "123456:TEST-token-abc"


@dataclass
class Request:
    path: str
    headers: dict[str, str]
    body: dict


class HttpReceiver:
    def __init__(self, *, telegram: bool = False, fail_first: int = 0, status: int = 200,
                 hold: threading.Event | None = None):
        self.telegram, self.fail_first, self.status, self.hold = (telegram, fail_first,
                                                                  status, hold)
        self.requests: list[Request] = []
        self.answered: list[Request] = []
        self.received = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                receiver._answer(self, Request(self.path, dict(self.headers), body))

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,),
                                       daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}"

    def _answer(self, handler: BaseHTTPRequestHandler, request: Request) -> None:
        self.requests.append(request)
        self.received.set()
        if self.hold is not None:
            self.hold.wait()
        if self.telegram:
            status, answer = self._telegram(request)
        elif len(self.requests) <= self.fail_first:
            status, answer = 503, {"error": "try later"}
        else:
            status, answer = self.status, {"received": True}
        data = json.dumps(answer).encode()
        try:
            handler.send_response(status)
            handler.send_header("Content-Type", "application/json")
            handler.send_header("Content-Length", str(len(data)))
            handler.end_headers()
            handler.wfile.write(data)
            handler.wfile.flush()
        except OSError:
            return  # the sender is gone (killed while we held the answer)
        if status < 300:
            self.answered.append(request)

    def _telegram(self, request: Request) -> tuple[int, dict]:
        if request.path != f"/bot{TOKEN}/sendMessage":
            return 401, {"ok": False, "error_code": 401, "description": "Unauthorized"}
        return 200, {"ok": True, "result": {
            "message_id": len(self.requests), "date": 0, "text": request.body["text"],
            "chat": {"id": request.body["chat_id"], "type": "group"}}}

    def __enter__(self) -> HttpReceiver:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        if self.hold is not None:
            self.hold.set()
        self.server.shutdown()
        self.server.server_close()


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and localhost and its key (PEM files)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256()))
    cert_file, key_file = directory / "smtp-cert.pem", directory / "smtp-key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return cert_file, key_file


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Mail:
    mail_from: str
    rcpt_tos: list[str]
    content: bytes
    tls: bool
    login: str | None


@dataclass
class SmtpReceiver:
    directory: Path
    username: str = "alarm"
    password: str = "s3cret-smtp"
    mails: list[Mail] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.ca_file, key_file = self_signed(self.directory)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.ca_file, key_file)
        self.port = free_port()
        self.received = threading.Event()
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port,
                                     tls_context=context, require_starttls=True,
                                     authenticator=self._authenticate, auth_require_tls=True)

    def _authenticate(self, server, session, envelope, mechanism, auth_data) -> AuthResult:
        ok = (isinstance(auth_data, LoginPassword)
              and auth_data.login.decode() == self.username
              and auth_data.password.decode() == self.password)
        return AuthResult(success=ok, handled=False, auth_data=auth_data)

    async def handle_DATA(self, server, session, envelope) -> str:
        auth = session.auth_data if session.authenticated else None
        login = auth.login.decode() if isinstance(auth, LoginPassword) else None
        self.mails.append(Mail(envelope.mail_from, list(envelope.rcpt_tos), envelope.content,
                               tls=session.ssl is not None, login=login))
        self.received.set()
        return "250 OK"

    def __enter__(self) -> SmtpReceiver:
        self.controller.start()
        return self

    def __exit__(self, *exc) -> None:
        self.controller.stop()


# --------------------------------------------------------------------------- helpers

PUBLIC_URL = "https://smartcity.example.go.id"


def notify_settings(tmp_path: Path, *, api: dict | None = None, **notify):
    """Controller settings with ``[notify]`` as given (no broker; quick retries)."""
    from controller.settings import parse_settings

    data = {"database": {"path": str(tmp_path / "controller.db")}, "mqtt": {"enabled": False},
            "api": {"public_url": PUBLIC_URL, **(api or {})},
            "notify": {"flap_hold_s": 0, "retry_min_s": 1, "retry_max_s": 8, **notify}}
    return parse_settings(data, tmp_path / "controller.toml", environ={})


def alarm(alarm_id: int = 1, *, change: str = "raised", code: str = "leak",
          severity: str = "critical", opd: str = "dlh", device_id: str = "taman-bekapai-01",
          subject: str = "z2", at: str = "2025-03-14T02:00:00.000000Z", **more) -> dict:
    """An alarm dict as controller.alarms hands it to its change hooks."""
    state = {"raised": "open", "acknowledged": "acknowledged", "cleared": "cleared"}[change]
    record = {"id": alarm_id, "device_id": device_id, "opd": opd,
              "device_name": "Taman Bekapai", "kind": "irrigation", "code": code,
              "subject": subject, "severity": severity, "state": state, "raised_at": at,
              "details": {"code": code, "zone": subject}, "acked_by": None, "acked_at": None,
              "ack_note": None, "cleared_at": None, "cleared_by": None, "count": 1}
    record.update(more)
    return record
