"""A release the controller offers: the unit's side of the ``update`` command.

The link answers the command at once (``UpdateOffers.answer``) and, when it accepts,
hands the offer to a worker thread that never blocks the control loop and never touches
an output::

    accepted    <state_dir>/update-offer.json written (fsynced): a restarted daemon
                picks the offer up where it was
    window      wait until the unit's local time is inside [update] window
    download    <state_dir>/downloads/<version>.bundle.part, HTTP Range from the bytes
                already there (a cut download, or one cut by a restart, continues), a
                timeout and retries with backoff, at most ``size`` bytes; then the whole
                file's size and SHA-256 against the command (a mismatch deletes it);
                renamed to <version>.bundle
    launch      inside the window again: <state_dir>/update-request.json written, then
                the update runs as its own process (``smartcity-edge update --request``),
                started by ``smartcity-update@<kind>.path`` on a unit (root, outside the
                daemon's sandbox) or by ``[update] launcher`` (tests, other set-ups)

The update process records its journal under the command's id, so the daemon's
``UpdateReporter`` reports ``update_applied``/``update_failed`` with ``update_id`` = the
command's id, whichever version then runs. A failure before the update process takes
over (download, hash, launch) is reported here as ``update_failed`` under the same key,
once. docs/updates.md, "When the controller offers a release", tells the whole story.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import http.client
import json
import logging
import os
import re
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from .health import write_json_atomic

logger = logging.getLogger(__name__)

OFFER_FILE = "update-offer.json"
REQUEST_FILE = "update-request.json"
DOWNLOADS = "downloads"
LOCK = "update.lock"  # edge.update.LOCK: held while an update process runs
JOURNAL = "update.json"  # edge.update.JOURNAL

ANY_TIME = "00:00-24:00"
_WINDOW_RE = re.compile(r"^(\d\d):(\d\d)-(\d\d):(\d\d)$")


# --------------------------------------------------------------------------------------
# The maintenance window (pure)
# --------------------------------------------------------------------------------------
class WindowError(ValueError):
    """A maintenance window that cannot be read; the message says why."""


@dataclass(frozen=True)
class Window:
    """``HH:MM-HH:MM`` in the unit's local time; the end is excluded; a start after the
    end wraps midnight (``22:00-05:00``); ``00:00-24:00`` is any time."""

    start_min: int
    end_min: int
    text: str

    def _minute(self, local: datetime) -> float:
        return local.hour * 60 + local.minute + local.second / 60 + local.microsecond / 6e7

    def contains(self, local: datetime) -> bool:
        m = self._minute(local)
        if self.start_min < self.end_min:
            return self.start_min <= m < self.end_min
        return m >= self.start_min or m < self.end_min

    def opens_in_s(self, local: datetime) -> float:
        """Seconds until the window opens (0 inside it)."""
        if self.contains(local):
            return 0.0
        return ((self.start_min - self._minute(local)) % 1440) * 60


def parse_window(text: str) -> Window:
    match = _WINDOW_RE.fullmatch(text.strip()) if isinstance(text, str) else None
    if match is None:
        raise WindowError(f"{text!r} is not HH:MM-HH:MM")
    h1, m1, h2, m2 = (int(g) for g in match.groups())
    for h, m in ((h1, m1), (h2, m2)):
        if m > 59 or h > 24 or (h == 24 and m != 0):
            raise WindowError(f"{h:02d}:{m:02d} is not a time of day")
    start, end = h1 * 60 + m1, h2 * 60 + m2
    if start == 1440:
        raise WindowError("the window cannot start at 24:00")
    if start == end:
        raise WindowError("the window is empty (start = end)")
    return Window(start, end, text.strip())


# --------------------------------------------------------------------------------------
# The download
# --------------------------------------------------------------------------------------
class DownloadError(Exception):
    """A download that failed; ``retry``: worth trying again later."""

    def __init__(self, reason: str, *, retry: bool = False):
        super().__init__(reason)
        self.reason = reason
        self.retry = retry


class Stopped(Exception):
    """The daemon is stopping: the worker ends where it is (the offer file stays)."""


@dataclass(frozen=True)
class DownloadOptions:
    timeout_s: float = 30.0  # one read or connect may take this long
    tries: int = 8  # attempts in a row that bring no new byte, then give up
    backoff_min_s: float = 1.0  # wait before the next attempt, doubling ...
    backoff_max_s: float = 120.0  # ... up to this
    block: int = 64 * 1024


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def fetch_once(url: str, part: Path, size: int, *, opts: DownloadOptions,
               stop: threading.Event, user_agent: str = "smartcity-edge") -> int:
    """One HTTP request: append to ``part`` from the bytes it has (``Range``), never past
    ``size``; returns the bytes received. Raises ``DownloadError`` or an ``OSError``."""
    have = _size(part)
    if have > size:
        part.unlink()
        have = 0
    if have == size:
        return 0
    headers = {"User-Agent": user_agent}
    if have:
        headers["Range"] = f"bytes={have}-"
    request = urllib.request.Request(url, headers=headers)
    try:
        response = urllib.request.urlopen(request, timeout=opts.timeout_s)  # noqa: S310
    except urllib.error.HTTPError as exc:
        exc.close()
        if exc.code == 416 and have:
            part.unlink(missing_ok=True)  # the server has no such range: start again
            raise DownloadError(f"HTTP 416 for bytes={have}-: starting again",
                                retry=True) from None
        raise DownloadError(f"HTTP {exc.code} {exc.reason} from {url}",
                            retry=exc.code >= 500 or exc.code in (408, 429)) from None
    except urllib.error.URLError as exc:
        raise DownloadError(f"{url}: {exc.reason}", retry=True) from None
    with response:
        mode = "wb"
        if have and response.status == 206:
            found = re.match(r"bytes (\d+)-", response.headers.get("Content-Range", ""))
            if found and int(found.group(1)) == have:
                mode = "ab"
        elif response.status not in (200, 206):
            raise DownloadError(f"HTTP {response.status} from {url}", retry=True)
        if mode == "wb":
            have = 0
        got = 0
        # unbuffered: what arrived is in the file even if the daemon is killed now
        with open(part, mode, buffering=0) as out:
            while have + got < size:
                if stop.is_set():
                    break
                # read1: what has arrived (a read(n) would wait for all n bytes)
                block = response.read1(min(opts.block, size - have - got))
                if not block:
                    break
                out.write(block)
                got += len(block)
            os.fsync(out.fileno())
    return got


def download(url: str, part: Path, size: int, sha256: str, *, stop: threading.Event,
             opts: DownloadOptions = DownloadOptions(), user_agent: str = "smartcity-edge"
             ) -> Path:
    """Download ``url`` into ``part`` (resuming), check size and SHA-256 of the whole
    file, and rename it without ``.part``; returns the final path. Raises
    ``DownloadError`` (the file deleted when its hash or size is wrong) or ``Stopped``."""
    part.parent.mkdir(parents=True, exist_ok=True)
    failures = 0
    while True:
        if stop.is_set():
            raise Stopped
        before = _size(part)
        reason = ""
        try:
            fetch_once(url, part, size, opts=opts, stop=stop, user_agent=user_agent)
        except DownloadError as exc:
            if not exc.retry:
                raise
            reason = exc.reason
        except (OSError, http.client.HTTPException) as exc:
            reason = f"{type(exc).__name__}: {exc}"
        if stop.is_set():
            raise Stopped
        now = _size(part)
        if not reason:
            if now >= size:
                break
            reason = f"the connection ended at {now} of {size} bytes"
        if now > before:
            failures = 0
        failures += 1
        if failures >= opts.tries:
            raise DownloadError(f"gave up after {failures} tries: {reason}")
        delay = min(opts.backoff_max_s, opts.backoff_min_s * 2 ** (failures - 1))
        logger.warning("download of %s: %s; again in %.0f s from byte %d", url, reason,
                       delay, now)
        if stop.wait(delay):
            raise Stopped
    digest = hashlib.sha256()
    with open(part, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    got_size = _size(part)
    if got_size != size or digest.hexdigest() != sha256:
        part.unlink(missing_ok=True)
        raise DownloadError(f"the downloaded file is not the release offered: sha256 "
                            f"{digest.hexdigest()[:16]}..., {got_size} bytes; expected "
                            f"{sha256[:16]}..., {size} bytes (deleted)")
    final = part.with_name(part.name.removesuffix(".part"))
    os.replace(part, final)
    return final


# --------------------------------------------------------------------------------------
# The offers
# --------------------------------------------------------------------------------------
def _read(path: Path) -> dict[str, Any] | None:
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def lock_held(state_dir: Path) -> bool:
    """Whether an update process holds ``<state_dir>/update.lock`` now."""
    try:
        fd = os.open(Path(state_dir) / LOCK, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return False
    finally:
        os.close(fd)  # closing drops a lock this call took
    return False


class UpdateOffers:
    """The ``update`` command on one daemon: the answer, the worker, the report of a
    failure before the update process takes over.

    ``event_once(key, type, **details)``: the link's; ``check()`` runs on the service
    loop's thread (``Link.poll``), the worker only writes the offer file."""

    LAUNCH_TIMEOUT_S = 120.0
    """An update process that has not taken the lock this long after the request: none
    will (``smartcity-update@<kind>.path`` not enabled, or the launcher failed)."""

    def __init__(self, config, *, clock, fw: str, event_once, kind: str | None = None,
                 download_options: DownloadOptions | None = None):
        self.state_dir = Path(config.state_dir)
        self.path = self.state_dir / OFFER_FILE
        self.request_path = self.state_dir / REQUEST_FILE
        self.downloads = self.state_dir / DOWNLOADS
        self.trusted = bool(config.update.trusted_keys)
        self.window = parse_window(config.update.window)
        self.launcher = config.update.launcher
        self.tz = ZoneInfo(config.site.timezone)
        self.kind = kind or config.kind
        self.clock = clock
        self.fw = fw
        self.event_once = event_once
        self.download_options = download_options or DownloadOptions()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._checked = float("-inf")
        self.offer: dict[str, Any] | None = None

    # -- the loop's side -----------------------------------------------------------------
    def start(self) -> None:
        """Pick up an offer a stopped daemon left (its worker goes on where it was)."""
        offer = _read(self.path)
        if offer is None or not isinstance(offer.get("id"), str):
            return
        self.offer = offer
        logger.info("update offer %s (%s) found in state %s", offer["id"],
                    offer.get("version"), offer.get("state"))
        if offer.get("state") == "accepted":
            self._start_worker()

    def close(self, timeout_s: float = 2.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def answer(self, cmd_id: str, params) -> tuple[str, str, dict[str, Any]]:
        """``(status, reply code, params)`` for an ``update`` command; an accepted offer
        is persisted and its worker started."""
        self.check(force=True)
        version = params.version
        if not self.trusted:
            return "rejected", "update_not_trusted", {"version": version}
        if version == self.fw:
            return "done", "update_current", {"version": version}
        busy = self.busy_with()
        if busy is not None:
            return "rejected", "update_busy", {"version": version, "busy_with": busy}
        offer = {"id": cmd_id, "version": version, "url": params.url,
                 "sha256": params.sha256, "size": params.size,
                 "accepted_at": time.time(), "state": "accepted"}
        self._write(offer)
        self._forget_other_downloads(version)
        self._start_worker()
        logger.info("update offer %s accepted: %s, window %s", cmd_id, version,
                    self.window.text)
        return "accepted", "update_accepted", {"version": version,
                                               "window": self.window.text}

    def busy_with(self) -> str | None:
        """The version of the update under way (an offer being fetched, or an update
        process running), or None."""
        offer = self.offer
        if offer is not None and offer.get("state") != "failed":
            return str(offer.get("version"))
        if lock_held(self.state_dir):
            journal = _read(self.state_dir / JOURNAL) or {}
            return str(journal.get("version") or "unknown")
        return None

    def check(self, force: bool = False) -> None:
        """Report a failed offer; forget one the update process has finished (its
        outcome is the journal's, reported by ``UpdateReporter``); notice an update
        process that never started. At most once a second unless ``force``."""
        now = time.monotonic()
        if not force and now - self._checked < 1.0:
            return
        self._checked = now
        offer = self.offer
        if offer is None:
            return
        state = offer.get("state")
        if state == "failed":
            details = {"version": offer.get("version"), "running": self.fw,
                       "update_id": offer["id"], "step": offer.get("step") or "download",
                       "reason": str(offer.get("reason") or "")[:500], "rolled_back": False}
            self.event_once(f"update:{offer['id']}", "update_failed", **details)
            self._clear(offer)
            return
        if state != "launched":
            return
        journal = _read(self.state_dir / JOURNAL) or {}
        if journal.get("id") == offer["id"]:
            if journal.get("step") == "done":
                self._clear(offer)
            return
        if offer.get("version") == self.fw and not lock_held(self.state_dir):
            self._clear(offer)  # it runs the version offered: nothing more to wait for
            return
        if lock_held(self.state_dir):
            return  # an update process runs (a cut one first, perhaps)
        if time.time() - float(offer.get("launched_at") or 0) > self.LAUNCH_TIMEOUT_S:
            self.request_path.unlink(missing_ok=True)
            how = (f"the launcher {self.launcher[0]}" if self.launcher else
                   f"smartcity-update@{self.kind}.path")
            self._fail(offer, "launch", f"no update process started within "
                       f"{self.LAUNCH_TIMEOUT_S:.0f} s of the request (check {how})")
            self.check(force=True)  # report it now

    # -- the worker ------------------------------------------------------------------------
    def _start_worker(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._thread = threading.Thread(target=self._work, name="edge-update-offer",
                                        daemon=True)
        self._thread.start()

    def _work(self) -> None:
        offer = self.offer
        if offer is None:
            return
        step = "download"
        try:
            self._wait_window()
            bundle = self.downloads / f"{offer['version']}.bundle"
            if not (bundle.is_file() and bundle.stat().st_size == offer["size"]
                    and _sha256(bundle) == offer["sha256"]):
                logger.info("update %s: downloading %s (%d bytes) from %s", offer["id"],
                            offer["version"], offer["size"], offer["url"])
                bundle = download(offer["url"], bundle.with_name(bundle.name + ".part"),
                                  offer["size"], offer["sha256"], stop=self._stop,
                                  opts=self.download_options,
                                  user_agent=f"smartcity-edge/{self.fw}")
                logger.info("update %s: downloaded %s", offer["id"], bundle)
            step = "launch"
            self._wait_window()  # the download may have outlasted it
            self._launch(offer, bundle)
        except Stopped:
            return
        except DownloadError as exc:
            logger.warning("update %s failed: %s", offer["id"], exc.reason)
            self._fail(offer, "download", exc.reason)
        except Exception as exc:  # the loop goes on; the offer says why it ended
            logger.exception("update %s failed at step %s", offer["id"], step)
            self._fail(offer, step, f"{type(exc).__name__}: {exc}")

    def _wait_window(self) -> None:
        told = False
        while True:
            local = self.clock.now().astimezone(self.tz)
            wait_s = self.window.opens_in_s(local)
            if wait_s <= 0:
                return
            if not told:
                logger.info("update: waiting %.0f s for the maintenance window %s",
                            wait_s, self.window.text)
                told = True
            if self._stop.wait(min(wait_s, 30.0)):
                raise Stopped

    def _launch(self, offer: dict[str, Any], bundle: Path) -> None:
        self._write({**offer, "state": "launched", "launched_at": time.time(),
                     "bundle": str(bundle)})
        write_json_atomic(self.request_path, {"id": offer["id"], "version": offer["version"],
                                              "bundle": str(bundle)}, fsync=True)
        if not self.launcher:
            logger.info("update %s: request written for smartcity-update@%s.path",
                        offer["id"], self.kind)
            return
        values = {"{request}": str(self.request_path), "{bundle}": str(bundle),
                  "{id}": offer["id"], "{version}": offer["version"],
                  "{python}": sys.executable}
        argv = []
        for arg in self.launcher:
            for key, value in values.items():
                arg = arg.replace(key, value)
            argv.append(arg)
        logger.info("update %s: starting %s", offer["id"], " ".join(argv))
        with open(self.downloads / f"update-{offer['id']}.log", "ab") as log:
            # its own session: it outlives this daemon, which it restarts
            proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log,
                                    stderr=subprocess.STDOUT, cwd=self.state_dir,
                                    start_new_session=True)
        while proc.poll() is None:  # reap it (unless the update stops this daemon first)
            if self._stop.wait(1.0):
                return

    # -- the offer file --------------------------------------------------------------------
    def _write(self, offer: dict[str, Any]) -> None:
        with self._lock:
            self.state_dir.mkdir(parents=True, exist_ok=True)
            write_json_atomic(self.path, offer, fsync=True)
            self.offer = offer

    def _fail(self, offer: dict[str, Any], step: str, reason: str) -> None:
        self._write({**offer, "state": "failed", "step": step, "reason": reason[:500]})

    def _forget_other_downloads(self, version: str) -> None:
        """Files of earlier offers (a cut download of another version, old logs) go: the
        downloads folder holds one release at most."""
        if not self.downloads.is_dir():
            return
        for path in self.downloads.iterdir():
            if not path.name.startswith(f"{version}.bundle"):
                with contextlib.suppress(OSError):
                    path.unlink()

    def _clear(self, offer: dict[str, Any]) -> None:
        with self._lock:
            if self.offer is not None and self.offer.get("id") != offer.get("id"):
                return
            self.path.unlink(missing_ok=True)
            self.offer = None
        version = offer.get("version")
        for name in (f"{version}.bundle", f"{version}.bundle.part"):
            if offer.get("state") == "failed" and name.endswith(".part"):
                continue  # a cut download: a later offer of this version goes on from it
            with contextlib.suppress(OSError):
                (self.downloads / name).unlink()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
