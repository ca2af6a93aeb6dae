"""A local HTTP server for the offer tests: serves files with HTTP Range, records each
request (its ``Range`` header and the bytes sent), and cuts or holds a response on cue.

    server = BundleServer({"/b.bundle": data}).start()
    server.faults.append(Fault(cut_after=1000))   # the next response: 1000 bytes, closed
    server.faults.append(Fault(hold_after=5000))  # then: 5000 bytes, held until release()
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Fault:
    cut_after: int | None = None  # send this many bytes of the body, then close
    hold_after: int | None = None  # send this many, then wait for release(), then close


@dataclass
class Served:
    path: str
    range: str | None
    start: int
    sent: int


@dataclass
class BundleServer:
    files: dict[str, bytes]
    faults: list[Fault] = field(default_factory=list)
    requests: list[Served] = field(default_factory=list)
    released: threading.Event = field(default_factory=threading.Event)

    def start(self) -> BundleServer:
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_GET(self):
                owner._serve(self)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        return self

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    @property
    def bytes_served(self) -> int:
        return sum(r.sent for r in self.requests)

    def release(self) -> None:
        self.released.set()

    def close(self) -> None:
        self.released.set()
        self.httpd.shutdown()
        self.httpd.server_close()

    def _serve(self, handler: BaseHTTPRequestHandler) -> None:
        data = self.files.get(handler.path)
        if data is None:
            handler.send_error(404)
            return
        wanted = handler.headers.get("Range")
        start = 0
        if wanted:
            match = re.fullmatch(r"bytes=(\d+)-", wanted)
            if not match or int(match.group(1)) >= len(data):
                handler.send_response(416)
                handler.send_header("Content-Range", f"bytes */{len(data)}")
                handler.send_header("Content-Length", "0")
                handler.end_headers()
                self.requests.append(Served(handler.path, wanted, 0, 0))
                return
            start = int(match.group(1))
            handler.send_response(206)
            handler.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            handler.send_response(200)
        body = data[start:]
        handler.send_header("Content-Length", str(len(body)))
        handler.send_header("Accept-Ranges", "bytes")
        handler.end_headers()
        served = Served(handler.path, wanted, start, 0)
        self.requests.append(served)
        fault = self.faults.pop(0) if self.faults else Fault()
        limit = fault.cut_after if fault.cut_after is not None else fault.hold_after
        try:
            for at in range(0, len(body), 64 * 1024):
                chunk = body[at:at + 64 * 1024]
                if limit is not None:
                    chunk = chunk[:max(0, limit - served.sent)]
                if chunk:
                    handler.wfile.write(chunk)
                    handler.wfile.flush()
                    served.sent += len(chunk)
                if limit is not None and served.sent >= limit:
                    break
            if fault.hold_after is not None:
                self.released.wait(120)
        except OSError:
            pass
        handler.close_connection = True
