"""How fast does a unit download an offered release, and what does a cut connection cost?

``edge.offer.download`` (the unit's own code: urllib, HTTP Range, unbuffered writes,
an fsync per attempt, then the SHA-256 of the whole file) against a local HTTP server
(tests/update/bundle_server.py) over the loopback: a bundle-sized file in one go, then
the same file with the connection cut every quarter of it. Measured: throughput
(the network is not the limit here: this is the unit's own cost, which a Pi's SD card
and CPU set), and the bytes served for a file cut three times (1.00x: nothing twice).

    .venv/bin/python bench/offer_download.py [--mb 12] [--quick] [--json FILE]
"""

from __future__ import annotations

import argparse
import hashlib
import logging
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # the project before bench/
sys.path.insert(0, str(ROOT / "tests" / "update"))
from bundle_server import BundleServer, Fault  # noqa: E402

from bench.common import Figure, machine, print_figures, write_json  # noqa: E402
from edge.offer import DownloadOptions, download  # noqa: E402


def timed(server: BundleServer, data: bytes, part: Path) -> float:
    opts = DownloadOptions(backoff_min_s=0.0)
    t0 = time.monotonic()
    final = download(server.url("/b"), part, len(data), hashlib.sha256(data).hexdigest(),
                     stop=threading.Event(), opts=opts)
    took = time.monotonic() - t0
    final.unlink()
    return took


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mb", type=float, default=12.0, help="file size (default 12 MB, "
                        "about a host bundle)")
    parser.add_argument("--quick", action="store_true", help="a 2 MB file")
    parser.add_argument("--json", help="write the figures to this file")
    args = parser.parse_args(argv)
    logging.getLogger("edge.offer").setLevel(logging.ERROR)  # the cuts are meant
    print(machine())
    data = os.urandom(int((2.0 if args.quick else args.mb) * 1e6))
    server = BundleServer({"/b": data}).start()
    try:
        with tempfile.TemporaryDirectory(prefix="bench-offer-") as tmp:
            part = Path(tmp) / "b.bundle.part"
            whole_s = timed(server, data, part)
            served_before = server.bytes_served
            quarter = len(data) // 4
            server.faults += [Fault(cut_after=quarter)] * 3
            cut_s = timed(server, data, part)
            cut_served = server.bytes_served - served_before
            requests = len(server.requests) - 1
    finally:
        server.close()
    mb = len(data) / 1e6
    figures = [
        Figure("download, one go", "-", f"{mb / whole_s:.0f} MB/s ({whole_s:.2f} s)", None),
        Figure("download, cut 3 times", "-", f"{mb / cut_s:.0f} MB/s ({cut_s:.2f} s, "
               f"{requests} requests)", None),
        Figure("bytes served when cut", "1.00x", f"{cut_served / len(data):.2f}x",
               cut_served == len(data)),
    ]
    print_figures(f"Figures ({mb:.1f} MB)", figures)
    write_json(args.json, {"figures": figures, "mb": mb, "whole_s": whole_s,
                           "cut_s": cut_s, "cut_served": cut_served,
                           "size": len(data), "requests": requests})
    return 0


if __name__ == "__main__":
    sys.exit(main())
