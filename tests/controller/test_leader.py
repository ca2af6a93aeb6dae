"""Leadership of the periodic work: one instance at a time, taken over when it dies.

The locks alone (a file lock beside a SQLite database, a session advisory lock on a real
PostgreSQL server), then two real ``serve`` processes on one database: only the leader
expires commands and delivers notifications, and when it is SIGKILLed the other one
leads within seconds and delivers the rest, each outbox row once.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from controller_support import add_device, wait_until
from notify_fakes import HttpReceiver, alarm
from support.broker import free_port

from controller.leader import FileLeaderLock, Leader, PgLeaderLock
from controller.metrics import Metrics
from controller.notify import outbox
from controller.store import Store
from protocol.models import Command

REPO = Path(__file__).resolve().parents[2]


def test_leader_file_lock_one_holder_until_released(tmp_path):
    first, second = FileLeaderLock(tmp_path / "db.leader"), FileLeaderLock(tmp_path / "db.leader")
    metrics = Metrics()
    changes: list[bool] = []
    leader = Leader(first, gauge=metrics.leader, on_change=changes.append)
    follower = Leader(second)
    assert leader.poll() is True and follower.poll() is False
    assert follower.poll() is False  # still held
    assert "smartcity_controller_leader 1.0" in metrics.render().decode()
    leader.stop()
    assert follower.poll() is True
    assert changes == [True]
    assert "smartcity_controller_leader 0.0" in metrics.render().decode()
    follower.stop()


def test_leader_file_lock_freed_when_the_holder_process_dies(tmp_path):
    path = tmp_path / "db.leader"
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from controller.leader import FileLeaderLock; "
        f"assert FileLeaderLock({str(path)!r}).try_acquire(); print('held', flush=True); "
        "time.sleep(60)")], stdout=subprocess.PIPE, cwd=REPO)
    try:
        assert holder.stdout.readline().strip() == b"held"
        waiting = Leader(FileLeaderLock(path))
        assert waiting.poll() is False
        holder.send_signal(signal.SIGKILL)
        holder.wait(10)
        assert waiting.poll() is True
        waiting.stop()
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()


def test_leader_pg_advisory_lock_taken_over_when_the_session_ends(pg_url):
    import psycopg

    first, second = PgLeaderLock(pg_url), PgLeaderLock(pg_url)
    assert first.try_acquire() is True
    assert second.try_acquire() is False
    assert first.still_held() is True
    # The holder's session dies (as when its process is killed): the server frees it.
    with psycopg.connect(pg_url, autocommit=True) as admin:
        pid = first._conn.info.backend_pid
        admin.execute("SELECT pg_terminate_backend(%s)", [pid])
    assert first.still_held() is False  # noticed at its next check: stops leading
    assert second.try_acquire() is True
    assert first.try_acquire() is False
    second.release()
    assert first.try_acquire() is True
    first.release()


# --------------------------------------------------------------------------- two instances
def _config(tmp_path: Path, broker, name: str, hook_url: str, url: str | None
            ) -> tuple[Path, int]:
    port = free_port()
    path = tmp_path / f"{name}.toml"
    path.write_text(f"""
[database]
path = "{tmp_path / 'controller.db'}"
{f'url = "{url}"' if url else ""}
leader_poll_s = 0.3

[mqtt]
host = "{broker.host}"
port = {broker.port}
client_id = "ctl-{name}"
share_group = "ingest"
reconnect_max_s = 2

[ingest]
sweep_interval_s = 0.2

[api]
port = {port}

[notify]
flap_hold_s = 0
retry_min_s = 1
poll_interval_s = 0.1

[[notify.webhooks]]
url = "{hook_url}/hook"
""")
    return path, port


class Instance:
    def __init__(self, tmp_path: Path, broker, name: str, hook_url: str,
                 url: str | None = None):
        self.config, self.port = _config(tmp_path, broker, name, hook_url, url)
        self.log = tmp_path / f"{name}.log"
        self.proc: subprocess.Popen | None = None

    def start(self) -> Instance:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "controller.cli", "serve", "--config", str(self.config)],
                cwd=REPO, env=dict(os.environ), stdout=out, stderr=out)
        wait_until(lambda: (self.health() or {}).get("mqtt_connected"), timeout=30,
                   what=f"{self.config.stem} up")
        return self

    def health(self) -> dict | None:
        assert self.proc is not None and self.proc.poll() is None, self.log.read_text()[-2000:]
        try:
            return httpx.get(f"http://127.0.0.1:{self.port}/healthz", timeout=2).json()
        except httpx.HTTPError:
            return None

    def leading(self) -> bool:
        return bool((self.health() or {}).get("leader"))

    def metric(self, name: str) -> float:
        text = httpx.get(f"http://127.0.0.1:{self.port}/metrics", timeout=5).text
        return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
                   if line.startswith(name) and not line.startswith("#"))

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _expiring_command(store: Store, device_id: str, n: int) -> str:
    now = datetime.now(UTC)
    command = Command(id=f"cmd-expire-{n}", issued_at=now - timedelta(seconds=30),
                      expires_at=now + timedelta(seconds=1), action="stop_all", params={})
    store.create_command(device_id, command, actor="test")
    store.mark_command_sent(command.id)  # the broker took it; the unit never answers
    return command.id


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_two_instances_one_leads_and_the_other_takes_over_when_it_dies(
        tmp_path, mosquitto, backend, request):
    url = request.getfixturevalue("pg_url") if backend == "postgres" else None
    target = url or tmp_path / "controller.db"
    with Store.open(target) as store:
        add_device(store, "taman-ld-1", "dlh")
    with HttpReceiver() as hook:
        a = Instance(tmp_path, mosquitto, "a", hook.url, url).start()
        b = Instance(tmp_path, mosquitto, "b", hook.url, url).start()
        try:
            wait_until(lambda: a.leading() != b.leading(), timeout=10, what="one leader")
            leader, other = (a, b) if a.leading() else (b, a)
            with Store.open(target, migrate=False) as store:
                ids = [_expiring_command(store, "taman-ld-1", n) for n in range(3)]
                wait_until(lambda: all(store.get_command(i)["status"] == "expired"
                                       for i in ids), timeout=15, what="commands expired")
                with outbox.transaction(store) as db:
                    for n in range(1, 4):
                        outbox.enqueue(db, alarm(n), "raised", datetime.now(UTC))
                wait_until(lambda: len(hook.answered) >= 3, timeout=15, what="3 deliveries")
            assert leader.metric("smartcity_commands_expired_total") == 3
            assert other.metric("smartcity_commands_expired_total") == 0
            assert leader.metric("smartcity_notify_sent_total") == 3
            assert other.metric("smartcity_notify_sent_total") == 0
            assert other.metric("smartcity_controller_leader") == 0

            leader.proc.send_signal(signal.SIGKILL)
            leader.proc.wait(10)
            wait_until(other.leading, timeout=10, what="the survivor leading")
            with Store.open(target, migrate=False) as store:
                more = [_expiring_command(store, "taman-ld-1", n) for n in range(3, 5)]
                with outbox.transaction(store) as db:
                    for n in range(4, 7):
                        outbox.enqueue(db, alarm(n), "raised", datetime.now(UTC))
                wait_until(lambda: all(store.get_command(i)["status"] == "expired"
                                       for i in more), timeout=15, what="expired by survivor")
            wait_until(lambda: len(hook.answered) >= 6, timeout=15, what="6 deliveries")
            assert other.metric("smartcity_commands_expired_total") == 2
            assert other.metric("smartcity_notify_sent_total") == 3
            sent = Counter(r.body["notification_id"] for r in hook.answered)
            assert len(sent) == 6 and set(sent.values()) == {1}, sent
            assert "leading" in other.log.read_text()
        finally:
            a.stop()
            b.stop()


def test_instance_without_ingest_never_leads(tmp_path, mosquitto):
    with HttpReceiver() as hook:
        api = Instance(tmp_path, mosquitto, "api", hook.url)
        with api.log.open("ab") as out:
            api.proc = subprocess.Popen([sys.executable, "-m", "controller.cli", "serve",
                                         "--config", str(api.config), "--no-ingest"],
                                        cwd=REPO, stdout=out, stderr=out)
        try:
            health = wait_until(api.health, timeout=30, what="API up")
            assert health["leader"] is None
            assert not (tmp_path / "controller.db.leader").exists()
        finally:
            api.stop()


def test_left_over_command_published_once_by_the_leader(tmp_path, mosquitto, pg_url,
                                                        mqtt_client_factory):
    """A command an instance stored and died before the broker took it: of two live
    instances, only the leader publishes it again, once; a fresh one is left alone."""
    from protocol.codec import decode
    from protocol.topics import topic

    with Store.open(pg_url) as store:
        add_device(store, "taman-lo-1", "dlh")
        now = datetime.now(UTC)
        for command_id, age_s in (("cmd-left-over", 30), ("cmd-fresh", 0)):
            store.create_command("taman-lo-1", Command(
                id=command_id, issued_at=now - timedelta(seconds=age_s),
                expires_at=now + timedelta(minutes=5), action="stop_all", params={}),
                actor="test")
    unit = mqtt_client_factory(mosquitto)
    unit.subscribe(topic("dlh", "taman-lo-1", "cmd"))
    with HttpReceiver() as hook:
        a = Instance(tmp_path, mosquitto, "a", hook.url, pg_url).start()
        b = Instance(tmp_path, mosquitto, "b", hook.url, pg_url).start()
        try:
            with Store.open(pg_url, migrate=False) as store:
                wait_until(lambda: store.get_command("cmd-left-over")["status"] == "sent",
                           timeout=15, what="the left-over command published")
                # Several sweeps later (0.2 s each), still one copy, and the fresh command
                # (issued less than 5 s before) was not taken for a left-over.
                unit.settle(quiet=1.5, timeout=10)
                ids = [decode(Command, m.payload).id for m in unit.received()]
                assert ids.count("cmd-left-over") == 1, ids
                fresh = store.get_command("cmd-fresh")
                assert ids.count("cmd-fresh") <= 1
                assert fresh["status"] in ("pending", "sent")
        finally:
            a.stop()
            b.stop()
