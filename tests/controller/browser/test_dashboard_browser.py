"""The dashboard in a real browser (Debian's headless Chromium, driven by Playwright).

One site for the whole module: a real Mosquitto, the controller (API, ingest, dashboard)
served by uvicorn over real HTTP, and a real irrigation unit on mock pins in its own
process (``tests/controller/unit_process.py``: every valve change is logged). Beside it,
three units whose last ten days come from the field simulators through the ingest path
(``history.py``): a park with a leak going on (alarm), a park that went offline, and
DP3's ponds. The browser runs in London's time zone to show every time is WITA anyway.

``UPDATE_SCREENSHOTS=1`` also writes the screenshots under docs/screenshots/.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from controller_support import add_device, auth, broker_settings, make_token, wait_until
from notify_fakes import PUBLIC_URL, TOKEN, HttpReceiver
from support.unit_toml import write_unit_toml

from controller.api.main import create_app
from controller.store import Store

from .history import (
    ConfigChange,
    example_program,
    fish_plan,
    last_will,
    simulate_fish,
    simulate_irrigation,
    store_history,
)

playwright_api = pytest.importorskip("playwright.sync_api")
httpx = pytest.importorskip("httpx")
uvicorn = pytest.importorskip("uvicorn")

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
ROOT = Path(__file__).resolve().parents[3]
SHOTS = ROOT / "docs" / "screenshots"
UNIT_PROCESS = ROOT / "tests" / "controller" / "unit_process.py"
WITA = ZoneInfo("Asia/Makassar")

REAL, PARK, GONE, PONDS = ("dlh-taman-kota-01", "dlh-taman-bekapai-01",
                           "dlh-median-sudirman-01", "dp3-tambak-manggar-01")
RUN_S = 10  # the irrigation app's shortest manual run
LIVE_WAIT_MS = 10_000
"""How long a pushed change may take to show on an open page in these tests: under the
page's own 15 s refresh, so only the push can show it; generous for a loaded machine (how
long it really takes is measured by bench/live.py, not asserted here)."""
VIEWPORTS = {"desktop": {"width": 1280, "height": 900}, "phone": {"width": 390, "height": 844}}
on_both_screens = pytest.mark.parametrize("screen", list(VIEWPORTS))

pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                reason="Debian's chromium is not installed "
                                       "(scripts/bootstrap --browser)")


def _server(app, port: int) -> tuple[uvicorn.Server, threading.Thread]:
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, lifespan="on",
                                           log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    wait_until(lambda: server.started, timeout=15, what="uvicorn started")
    return server, thread


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """Broker, controller over HTTP, a real unit and simulated history; yields a dict."""
    from support.broker import MosquittoBroker, find_mosquitto, free_port

    if find_mosquitto() is None:
        pytest.skip("mosquitto is not installed")
    tmp = tmp_path_factory.mktemp("site")
    broker = MosquittoBroker(workdir=tmp / "broker").start()
    # alarms reach a local webhook and a fake Telegram Bot API
    hook, bot = HttpReceiver().__enter__(), HttpReceiver(telegram=True).__enter__()
    token_file = tmp / "bot-token"
    token_file.write_text(TOKEN + "\n")
    settings = broker_settings(
        tmp, broker, api={"public_url": PUBLIC_URL},
        notify={"flap_hold_s": 0, "poll_interval_s": 0.1,
                "webhooks": [{"url": hook.url + "/alarm"}],
                "telegram": [{"chat_id": "-100123", "bot_token_file": str(token_file),
                              "api_base": bot.url}]})
    store = Store.open(settings.database.path)
    now = datetime.now(UTC)
    start = now - timedelta(days=10)
    add_device(store, REAL, "dlh")
    store.db.execute("UPDATE devices SET name = 'Taman Kota' WHERE device_id = ?", [REAL])
    for device, opd, kind, name in ((PARK, "dlh", "irrigation", "Taman Bekapai"),
                                    (GONE, "dlh", "irrigation", "Median Jl. Sudirman"),
                                    (PONDS, "dp3", "fish_feeder", "Tambak Manggar")):
        store.add_device(device, opd, kind=kind, name=name, mqtt_password_hash="x",
                         actor="cli:admin", now=start - timedelta(days=1))
    program, plan = example_program(), fish_plan(85)
    store.create_desired_config(PARK, program, actor="cli:admin", now=start)
    store.create_desired_config(PONDS, plan, actor="cli:admin", now=start)
    store_history(store, simulate_irrigation(
        PARK, "dlh", start, 10, name="Taman Bekapai", changes=[ConfigChange(start, 1, program)],
        leaks=[(now - timedelta(hours=4), now + timedelta(hours=1), 4.0)]))
    gone_at = now - timedelta(hours=26)
    store_history(store, simulate_irrigation(GONE, "dlh", gone_at - timedelta(days=2), 2,
                                             name="Median Jl. Sudirman", seed=5))
    store.commit_batch([last_will("dlh", GONE, gone_at, "irrigation")])
    store_history(store, simulate_fish(PONDS, "dp3", start, 10, name="Tambak Manggar",
                                       changes=[ConfigChange(start, 1, plan)],
                                       cloudy_days=[3, 7]))
    tokens = {"op": make_token(store, "op-taman", "operator", "dlh"),
              "op_dp3": make_token(store, "op-tambak", "operator", "dp3"),
              "admin": make_token(store, "diskominfo", "admin"),
              "viewer": make_token(store, "bappeda", "viewer")}
    port = free_port()
    server, thread = _server(create_app(settings, store=store), port)
    base = f"http://127.0.0.1:{port}"
    config = write_unit_toml(tmp / "unit.toml", device_id=REAL, opd="dlh", name="Taman Kota",
                             state_dir=tmp / "unit", host=broker.host, port=broker.port,
                             telemetry_s=2, zones={"rumput-depan": ("valve-rumput", 17),
                                                   "bunga": ("valve-bunga", 27)})
    pins = tmp / "pins.log"
    log = (tmp / "unit.log").open("w")
    # the unit runs this tree's code (not whatever the environment's install points at)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    unit = subprocess.Popen([sys.executable, str(UNIT_PROCESS), str(config), str(pins)],
                            stdout=log, stderr=log, start_new_session=True, env=env)
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield {"base": base, "tokens": tokens, "db": settings.database.path, "pins": pins,
                   "browser": browser, "unit": unit, "tmp": tmp, "hook": hook, "bot": bot}
        finally:
            browser.close()
            unit.terminate()
            try:
                unit.wait(10)
            except subprocess.TimeoutExpired:
                unit.kill()
            log.close()
            server.should_exit = True
            thread.join(15)
            store.close()
            broker.close()
            hook.__exit__(None, None, None)
            bot.__exit__(None, None, None)


@pytest.fixture
def page(site):
    context = site["browser"].new_context(viewport={"width": 1280, "height": 900},
                                          timezone_id="Europe/London", locale="en-GB")
    context.set_default_timeout(10_000)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    yield page
    context.close()
    assert not errors, errors


def sign_in(page, site, who: str) -> None:
    page.goto(site["base"] + "/")
    page.fill("#token", site["tokens"][who])
    page.click("button[type=submit]")
    page.wait_for_selector("nav.tabs")


def api_get(site, path: str, who: str = "admin") -> dict:
    r = httpx.get(site["base"] + "/api/v1" + path, headers=auth(site["tokens"][who]), timeout=10)
    r.raise_for_status()
    return r.json()


def shot(page, name: str, full_page: bool = True) -> None:
    if os.environ.get("UPDATE_SCREENSHOTS") == "1":
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.evaluate("window.scrollTo(0, 0)")
        page.wait_for_timeout(300)
        page.screenshot(path=str(SHOTS / name), full_page=full_page)


def bar_days(site, device: str) -> int:
    """Days of the week chart with water or feed, by the API."""
    charts = api_get(site, f"/dashboard/units/{device}/charts?period=week")["charts"]
    return sum(1 for c in charts if c["kind"] == "bar" for _, v in c["points"] if v > 0)


def real_unit_online(site) -> None:
    wait_until(lambda: api_get(site, f"/devices/{REAL}")["online"], timeout=20,
               what="the real unit online")


def valve_changes(pins: Path, pin: str = "GPIO17") -> list[tuple[float, int]]:
    if not pins.exists():
        return []
    return [(float(t), int(s)) for t, name, s in
            (line.split() for line in pins.read_text().splitlines()) if name == pin]


# --------------------------------------------------------------------------- tests

def test_dashboard_bad_token_is_refused_and_nothing_shown(page, site):
    page.goto(site["base"] + "/")
    page.fill("#token", "not-a-token")
    page.click("button[type=submit]")
    playwright_api.expect(page.locator("[role=alert]")).to_contain_text("Token")
    assert page.locator(".unit").count() == 0


def test_dashboard_operator_sees_only_own_opd_units(page, site):
    real_unit_online(site)
    sign_in(page, site, "op")
    page.wait_for_selector(f".unit[data-device='{REAL}'][data-state='online']", timeout=15_000)
    shown = set(page.locator(".unit").evaluate_all("els => els.map(e => e.dataset.device)"))
    assert shown == {REAL, PARK, GONE}
    states = {d: page.get_attribute(f".unit[data-device='{d}']", "data-state") for d in shown}
    assert states == {REAL: "online", PARK: "alarm", GONE: "offline"}
    assert "Kebocoran air" in page.inner_text(f".unit[data-device='{PARK}']")
    assert page.locator("[data-nav=audit]").count() == 0  # operators: no audit log
    # Another OPD's unit is not found, even by its address.
    page.goto(site["base"] + f"/#/unit/{PONDS}")
    playwright_api.expect(page.locator(".error")).to_be_visible()


def test_dashboard_run_now_confirmed_reaches_done_while_the_valve_runs(page, site):
    real_unit_online(site)
    sign_in(page, site, "op")
    page.click(f".unit[data-device='{REAL}']")
    page.click("[data-action=run_zone][data-zone='rumput-depan']")
    dialog = page.locator("dialog#confirm")
    playwright_api.expect(dialog).to_be_visible()
    assert "rumput-depan" in dialog.inner_text()
    dialog.locator(f"[data-choice='{RUN_S}']").click()
    shot(page, "dashboard-confirm.png", full_page=False)
    clicked = time.time()
    dialog.locator("[data-role=ok]").click()
    command = page.locator(".cmd").first
    playwright_api.expect(command).to_have_attribute("data-status", re.compile("sent|accepted"))
    playwright_api.expect(command).to_have_attribute("data-status", "accepted", timeout=10_000)
    # While the valve is open the unit shows running (the page refreshes every 5 s).
    playwright_api.expect(page.locator(".unit-head")).to_have_attribute(
        "data-state", "running", timeout=RUN_S * 1000)
    shot(page, "dashboard-running.png", full_page=False)
    playwright_api.expect(command).to_have_attribute("data-status", "done",
                                                     timeout=(RUN_S + 15) * 1000)
    assert page.locator(".cmd").first.locator(".steps li.ok").count() == 3
    # Done refreshes the unit at once: it is idle again, not still "running".
    playwright_api.expect(page.locator(".unit-head")).to_have_attribute(
        "data-state", "online", timeout=4_000)
    changes = valve_changes(site["pins"])
    assert [s for _, s in changes] == [1, 0], changes
    assert changes[0][0] >= clicked - 1
    assert changes[1][0] - changes[0][0] == pytest.approx(RUN_S, abs=0.6)
    command_id = command.get_attribute("data-command")
    with sqlite3.connect(site["db"]) as db:
        replies = [r[0] for r in db.execute(
            "SELECT status FROM command_replies WHERE command_id = ? ORDER BY id", [command_id])]
    assert replies == ["accepted", "done"]


def test_dashboard_cancel_sends_nothing_rain_delay_shows_on_the_unit(page, site):
    real_unit_online(site)
    sign_in(page, site, "op")
    page.goto(site["base"] + f"/#/unit/{REAL}")
    before = count_commands(site)
    page.click("[data-action=stop_all]")
    playwright_api.expect(page.locator("dialog#confirm")).to_be_visible()
    page.click("dialog#confirm [data-role=cancel]")
    playwright_api.expect(page.locator("dialog#confirm")).to_be_hidden()
    assert count_commands(site) == before
    page.click(".controls [data-action=rain_delay]")
    page.click("dialog#confirm [data-choice='12']")
    page.click("dialog#confirm [data-role=ok]")
    playwright_api.expect(page.locator(".cmd").first).to_have_attribute("data-status", "done")
    # The unit reports the delay in its telemetry; the unit's page shows it.
    playwright_api.expect(page.locator(".unit-head .tags")).to_contain_text("12", timeout=10_000)
    page.click(".controls [data-action=resume]")
    page.click("dialog#confirm [data-role=ok]")
    playwright_api.expect(page.locator(".cmd").first).to_have_attribute("data-status", "done")
    playwright_api.expect(page.locator(".unit-head .tags")).to_have_count(0, timeout=10_000)


def test_dashboard_feed_now_sends_the_chosen_dose(page, site):
    sign_in(page, site, "op_dp3")
    page.click(f".unit[data-device='{PONDS}']")
    page.click("[data-action=feed_now][data-feeder='pakan-nila']")
    page.fill("dialog#confirm [data-testid=custom]", "320")
    page.click("dialog#confirm [data-role=ok]")
    row = page.locator(".cmd").first
    playwright_api.expect(row).to_contain_text("pakan-nila · 320 g")
    with sqlite3.connect(site["db"]) as db:
        action, params, status = db.execute(
            "SELECT action, params, status FROM commands WHERE id = ?",
            [row.get_attribute("data-command")]).fetchone()
    assert (action, json.loads(params)) == ("feed_now", {"feeder": "pakan-nila", "dose_g": 320})
    assert status in ("pending", "sent")  # the simulated ponds have no daemon to answer


def count_commands(site) -> int:
    with sqlite3.connect(site["db"]) as db:
        return db.execute("SELECT count(*) FROM commands").fetchone()[0]


def test_dashboard_language_switch_persists_and_times_are_wita(page, site):
    sign_in(page, site, "op")
    nav = page.locator("[data-nav=reports]")
    playwright_api.expect(nav).to_have_text("Laporan")  # Indonesian by default
    assert page.evaluate("document.documentElement.lang") == "id"
    page.click("[data-lang=en]")
    playwright_api.expect(nav).to_have_text("Reports")
    shot(page, "dashboard-units-en.png", full_page=False)
    page.reload()
    playwright_api.expect(page.locator("[data-nav=reports]")).to_have_text("Reports")
    assert page.evaluate("localStorage.getItem('sc.lang')") == "en"
    # The park's next start, shown in WITA although the browser is in London.
    unit = api_get(site, f"/dashboard/units/{PARK}", "op")
    assert unit["next"]["known"]
    at = datetime.fromisoformat(unit["next"]["at"].replace("Z", "+00:00")).astimezone(WITA)
    next_text = page.inner_text(f".unit[data-device='{PARK}'] [data-testid=next]")
    assert f"{at:%H:%M} WITA" in next_text
    assert page.evaluate("Intl.DateTimeFormat().resolvedOptions().timeZone") == "Europe/London"
    page.click("[data-lang=id]")
    playwright_api.expect(page.locator("[data-nav=reports]")).to_have_text("Laporan")


def test_dashboard_unit_page_charts_and_screenshots(page, site):
    sign_in(page, site, "admin")
    page.wait_for_selector(f".unit[data-device='{PONDS}']")
    page.wait_for_selector(f".unit[data-device='{REAL}'][data-state='online']", timeout=15_000)
    shot(page, "dashboard-units.png")
    page.goto(site["base"] + f"/#/unit/{PARK}")
    page.click("[data-period=week]")
    page.wait_for_selector(".charts[data-period=week]")
    line = page.locator("[data-chart=moisture_pct] svg path.series")
    playwright_api.expect(line).to_have_count(4)  # one line per zone
    assert page.locator("[data-chart=water_l] svg rect.bar").count() == bar_days(site, PARK) > 0
    shot(page, "dashboard-unit-park.png")
    page.goto(site["base"] + f"/#/unit/{PONDS}")
    page.click("[data-period=week]")
    page.wait_for_selector(".charts[data-period=week]")
    playwright_api.expect(page.locator("[data-chart=do_mg_l] svg path.series")).to_have_count(2)
    assert page.locator("[data-chart=feed_kg] svg rect.bar").count() == bar_days(site, PONDS) >= 5
    shot(page, "dashboard-unit-ponds.png")
    page.set_viewport_size({"width": 390, "height": 844})
    page.goto(site["base"] + "/#/")
    page.wait_for_selector(f".unit[data-device='{PARK}']")
    shot(page, "dashboard-phone.png", full_page=False)


def test_dashboard_report_totals_match_the_database(page, site):
    sign_in(page, site, "viewer")
    month = datetime.now(WITA).strftime("%Y-%m")
    page.goto(site["base"] + f"/#/reports?opd=dlh&month={month}")
    title = page.locator("[data-testid=report-title]")
    playwright_api.expect(title).to_contain_text("Laporan Pelaksanaan Smart City — DLH — ")
    lo = datetime.now(WITA).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    lo_s = lo.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")
    with sqlite3.connect(site["db"]) as db:
        litres, done = db.execute(
            "SELECT sum(json_extract(e.details, '$.litres')), "
            "sum(json_extract(e.details, '$.ended') = 'completed') FROM events e "
            "JOIN devices d USING (device_id) WHERE d.opd = 'dlh' AND e.type = 'run_finished' "
            "AND e.ts >= ?", [lo_s]).fetchone()
        alarms = db.execute(
            "SELECT count(*) FROM events e JOIN devices d USING (device_id) "
            "WHERE d.opd = 'dlh' AND e.type = 'alarm' AND e.ts >= ?", [lo_s]).fetchone()[0]

    def tile(metric):
        return float(page.get_attribute(f"[data-metric={metric}]", "data-value"))

    assert litres and litres > 0
    assert tile("water_l") == pytest.approx(litres, abs=0.05)
    assert tile("runs_done") == done
    assert tile("alarms") == alarms >= 1
    assert "Smart Environment" in page.inner_text("[data-section=watering]")
    shot(page, "dashboard-report.png")


def test_dashboard_schedule_editor_refuses_bad_input_then_syncs(page, site):
    real_unit_online(site)
    sign_in(page, site, "op")
    page.goto(site["base"] + f"/#/unit/{REAL}/schedule")
    playwright_api.expect(page.locator(".warn")).to_be_visible()  # still the local schedule
    page.click("[data-testid=add-program]")
    program = page.locator(".program").last
    program.locator("input[name=start_times]").fill("25:00")
    program.locator("input[data-zone='rumput-depan']").fill("5")
    page.click("[data-testid=save]")
    playwright_api.expect(page.locator("[data-testid=problems]")).to_contain_text("25:00")
    # the server's message, next to the field it names
    playwright_api.expect(program.locator(
        "[data-testid=field-error][data-field='programs.0.start_times']")).to_contain_text("25:00")

    def versions():
        with sqlite3.connect(site["db"]) as db:
            return db.execute("SELECT count(*) FROM desired_configs WHERE device_id = ?",
                              [REAL]).fetchone()[0]

    assert versions() == 0  # nothing was sent
    program.locator("input[name=start_times]").fill("05:30, sunset+00:15")
    page.click("[data-testid=save]")
    sync = page.locator(".sched-result [data-testid=sync]")
    playwright_api.expect(sync).to_have_attribute("data-state", "in_sync", timeout=15_000)
    assert page.get_attribute("[data-testid=sync-top]", "data-state") == "in_sync"
    assert page.locator(".warn").count() == 0
    assert versions() == 1
    body = api_get(site, f"/devices/{REAL}/schedule", "op")["desired"]["body"]
    assert body["programs"][0]["start_times"] == ["05:30", "sunset+00:15"]
    assert body["programs"][0]["zones"] == [{"zone": "rumput-depan", "duration_min": 5}]
    # the page sent If-Match: the audit entry does not say "unchecked"
    audit = api_get(site, "/audit", "admin")
    edit = next(a for a in audit if a["action"] == "schedule.update")
    assert "unchecked" not in edit["after"]
    shot(page, "dashboard-schedule.png")


def test_dashboard_audit_log_for_admins(page, site):
    r = httpx.post(site["base"] + f"/api/v1/devices/{REAL}/commands",
                   headers=auth(site["tokens"]["op"]), json={"action": "skip_next", "params": {}})
    assert r.status_code == 202
    sign_in(page, site, "admin")
    page.click("[data-nav=audit]")
    rows = page.locator("table[data-testid=audit] tbody tr")
    playwright_api.expect(rows.first).to_have_attribute("data-action", "command.create")
    assert "op-taman" in rows.first.inner_text() and "skip_next" in rows.first.inner_text()
    actions = set(rows.evaluate_all("els => els.map(e => e.dataset.action)"))
    assert {"command.create", "device.add", "token.create"} <= actions


def test_dashboard_schedule_stays_pending_while_the_unit_is_offline(page, site):
    sign_in(page, site, "op")
    page.goto(site["base"] + f"/#/unit/{GONE}/schedule")
    page.click("[data-testid=add-program]")
    program = page.locator(".program").last
    program.locator("input[name=start_times]").fill("sunrise-01:00")
    program.locator("input[data-zone='bunga']").fill("12")
    page.click("[data-testid=save]")
    sync = page.locator(".sched-result [data-testid=sync]")
    playwright_api.expect(sync).to_have_attribute("data-state", "pending")
    page.wait_for_timeout(2_500)  # polled meanwhile: an offline unit cannot apply it
    assert sync.get_attribute("data-state") == "pending"
    assert api_get(site, f"/devices/{GONE}/schedule", "op")["state"] == "pending"


def api_command(site, action: str, params: dict | None = None, who: str = "op") -> dict:
    r = httpx.post(site["base"] + f"/api/v1/devices/{REAL}/commands",
                   headers=auth(site["tokens"][who]),
                   json={"action": action, "params": params or {}}, timeout=10)
    assert r.status_code == 202, r.text
    return r.json()


@on_both_screens
def test_dashboard_live_a_pause_sent_elsewhere_shows_on_open_pages_without_reload(page, site,
                                                                                 screen):
    real_unit_online(site)
    page.set_viewport_size(VIEWPORTS[screen])
    sign_in(page, site, "op")
    listing = page.context.new_page()  # the token is per tab: sign in there too
    listing.set_viewport_size(VIEWPORTS[screen])
    sign_in(listing, site, "op")
    page.goto(site["base"] + f"/#/unit/{REAL}")
    page.wait_for_selector(".unit-head")
    for p in (page, listing):  # both pages follow the stream
        playwright_api.expect(p.locator("html")).to_have_attribute("data-live", "on")
    until = datetime.now(UTC) + timedelta(hours=2)
    sent = time.monotonic()
    api_command(site, "pause", {"until": until.isoformat()})
    # Neither page reloads, and their own refresh is every 15 s: only the push shows it.
    paused = page.locator(".unit-head [data-tag=paused]")
    playwright_api.expect(paused).to_be_visible(timeout=LIVE_WAIT_MS)
    shown_s = time.monotonic() - sent
    assert f"{until.astimezone(WITA):%H.%M} WITA" in paused.inner_text()
    assert "Dijeda sampai" in paused.inner_text()
    nxt = page.locator(".schedule-card [data-testid=next]")
    playwright_api.expect(nxt).to_have_attribute("data-reason", "paused")
    assert "dijeda sampai" in nxt.inner_text()
    playwright_api.expect(listing.locator(
        f".unit[data-device='{REAL}'] [data-tag=paused]")).to_be_visible(timeout=LIVE_WAIT_MS)
    assert shown_s < 2.5, shown_s
    api_command(site, "resume")
    playwright_api.expect(paused).to_have_count(0, timeout=LIVE_WAIT_MS)
    playwright_api.expect(listing.locator(
        f".unit[data-device='{REAL}'] [data-tag=paused]")).to_have_count(0, timeout=LIVE_WAIT_MS)
    assert page.evaluate("performance.getEntriesByType('navigation').length") == 1
    listing.close()


@on_both_screens
def test_dashboard_a_run_stopped_by_the_operator_reads_stopped_not_failed(page, site, screen):
    real_unit_online(site)
    page.set_viewport_size(VIEWPORTS[screen])
    sign_in(page, site, "op")
    page.goto(site["base"] + f"/#/unit/{REAL}")
    page.click("[data-action=run_zone][data-zone='bunga']")
    page.click("dialog#confirm [data-choice='600']")
    page.click("dialog#confirm [data-role=ok]")
    playwright_api.expect(page.locator(".cmd").first).to_have_attribute("data-status",
                                                                        "accepted")
    run_id = page.locator(".cmd").first.get_attribute("data-command")
    run = page.locator(f".cmd[data-command='{run_id}']")
    # running: the zone and its time left, from the unit's run_started
    playwright_api.expect(page.locator(".unit-head [data-run=bunga]")).to_contain_text(
        "sisa", timeout=5_000)
    assert re.search(r"sisa (9|10) mnt", page.inner_text(".unit-head [data-run=bunga]"))
    page.click(".controls [data-action=stop_all]")
    page.click("dialog#confirm [data-role=ok]")
    playwright_api.expect(page.locator(".cmd").first).to_have_attribute("data-status", "done")
    playwright_api.expect(run).to_have_attribute("data-outcome", "stopped", timeout=5_000)
    assert run.get_attribute("data-status") == "failed"  # what the unit answered
    assert "Dihentikan" in run.inner_text() and "Gagal" not in run.inner_text()
    assert run.locator(".steps li.bad").count() == 0
    assert "stop_all" not in run.inner_text()  # the unit's English detail stays folded
    changes = valve_changes(site["pins"], "GPIO27")
    assert [s for _, s in changes][-2:] == [1, 0], changes


def open_alarms(site, who: str = "op") -> list[dict]:
    return api_get(site, "/alarms", who)


# each screen acknowledges another alarm: the leak on the desktop, the offline unit's on
# the phone
ACK = {"desktop": (PARK, "leak", "Kebocoran air", "Taman Bekapai"),
       "phone": (GONE, "unit_offline", "Unit luring terlalu lama", "Median Jl. Sudirman")}


@on_both_screens
def test_dashboard_alarm_appears_is_acknowledged_and_reaches_webhook_and_telegram(
        page, site, screen):
    device, code, words, name = ACK[screen]
    wait_until(lambda: any(a["device_id"] == GONE and a["code"] == "unit_offline"
                           for a in open_alarms(site)), timeout=15, what="unit_offline raised")
    alarm = next(a for a in open_alarms(site) if a["device_id"] == device and a["code"] == code)
    raised = None
    if code == "unit_offline":  # raised by the running controller (the leak's came with
        # the history, stored before it started): the raise was notified too
        raised = wait_until(lambda: [r.body for r in site["hook"].answered
                                     if r.body["alarm_id"] == alarm["id"]], timeout=15,
                            what="the raise at the webhook")[0]
        assert (raised["code"], raised["state"], raised["device_id"]) == (code, "open", device)
    page.set_viewport_size(VIEWPORTS[screen])
    sign_in(page, site, "op")
    # the offline unit with an alarm and the leaking park come first, before healthy units
    page.wait_for_selector(f".unit[data-device='{GONE}'] [data-alarm=unit_offline]")
    order = page.locator(".grid[data-opd=dlh] .unit").evaluate_all(
        "els => els.map(e => e.dataset.device)")
    assert order.index(REAL) > max(order.index(GONE), order.index(PARK)), order
    assert page.get_attribute(f".unit[data-device='{GONE}']", "data-state") == "offline"
    counts = api_get(site, "/alarms/counts", "op")
    badge = page.locator("[data-testid=alarm-count]")
    playwright_api.expect(badge).to_have_text(str(counts["open"]))
    assert counts["open"] >= 1 and badge.is_visible()
    page.click("[data-nav=alarms]")
    rows = page.locator("[data-testid=alarms] .alarm-row")
    playwright_api.expect(rows.first).to_be_visible()
    row = page.locator(f".alarm-row[data-device='{device}'][data-code={code}]")
    assert words in row.inner_text() and name in row.inner_text()
    severities = rows.evaluate_all("els => els.map(e => e.className.match(/sev-(\\w+)/)[1])")
    rank = {"critical": 0, "warning": 1, "info": 2}
    assert [rank[s] for s in severities] == sorted(rank[s] for s in severities)
    if screen == "desktop":
        shot(page, "dashboard-alarms.png")
    playwright_api.expect(page.locator("html")).to_have_attribute("data-live", "on")
    row.locator("[data-act=ack]").click()
    page.fill("dialog#confirm [data-testid=note]", "petugas menuju lokasi")
    page.click("dialog#confirm [data-role=ok]")
    playwright_api.expect(page.locator("[data-testid=alarm-done]")).to_contain_text("diakui")
    playwright_api.expect(row).to_have_attribute("data-state", "acknowledged")
    assert "petugas menuju lokasi" in row.inner_text()
    # the header follows at once (other alarms may open meanwhile: the API's count)
    # (hidden at 0: its text is read, not what is shown)
    wait_until(lambda: badge.text_content() == str(api_get(site, "/alarms/counts", "op")["open"]),
               timeout=LIVE_WAIT_MS / 1000, what="the header's count follows the acknowledgement")
    stored = next(a for a in open_alarms(site) if a["id"] == alarm["id"])
    assert stored["state"] == "acknowledged" and stored["acked_by"] == "op-taman"
    assert stored["ack_note"] == "petugas menuju lokasi"
    # the acknowledgement reaches the webhook and Telegram, in Indonesian, with the link
    acked = wait_until(lambda: [r.body for r in site["hook"].answered
                                if r.body["alarm_id"] == alarm["id"]
                                and r.body["state"] == "acknowledged"], timeout=10,
                       what="the acknowledgement at the webhook")[0]
    assert acked["url"] == f"{PUBLIC_URL}/#/unit/{device}" and "op-taman" in acked["text"]
    assert raised is None or acked["notification_id"] != raised["notification_id"]
    assert acked["code"] == code and acked["opd"] == "dlh"
    wait_until(lambda: any(acked["text"] in r.body["text"] for r in site["bot"].answered),
               timeout=10, what="the acknowledgement on Telegram")


def test_dashboard_command_dialogs_show_limits_and_refuse_out_of_range(page, site):
    real_unit_online(site)
    sign_in(page, site, "op")
    page.goto(site["base"] + f"/#/unit/{REAL}")
    max_s = api_get(site, f"/dashboard/units/{REAL}", "op")["limits"]["zones"]["bunga"]["max_on_s"]
    page.click("[data-action=run_zone][data-zone='bunga']")
    dialog = page.locator("dialog#confirm")
    limit = dialog.locator("[data-testid=limit]")
    assert limit.inner_text() == f"maks. {round(min(max_s, 14_400) / 60)} mnt", limit.inner_text()
    before = count_commands(site)
    for bad, words in (("-5", "Minimal"), ("99999", "Maksimal"), ("", None)):
        page.fill("dialog#confirm [data-testid=custom]", bad)
        if words is None:  # empty: the chosen duration is sent (chips), so pick none
            break
        page.click("dialog#confirm [data-role=ok]")
        error = dialog.locator("[data-testid=field-error]")
        playwright_api.expect(error).to_contain_text(words)
        assert dialog.is_visible() and count_commands(site) == before  # nothing sent
    page.click("dialog#confirm [data-role=cancel]")
    assert count_commands(site) == before


def test_dashboard_feed_dialog_refuses_a_dose_over_the_feeders_limit(page, site):
    sign_in(page, site, "op_dp3")
    page.goto(site["base"] + f"/#/unit/{PONDS}")
    page.click("[data-action=feed_now][data-feeder='pakan-nila']")
    dialog = page.locator("dialog#confirm")
    limit = dialog.locator("[data-testid=limit]").inner_text()
    before = count_commands(site)
    page.fill("dialog#confirm [data-testid=custom]", "200000")
    page.click("dialog#confirm [data-role=ok]")
    playwright_api.expect(dialog.locator("[data-testid=field-error]")).to_contain_text("Maksimal")
    assert limit.startswith("maks. ") and (" g" in limit or " kg" in limit), limit
    assert count_commands(site) == before
    page.click("dialog#confirm [data-role=cancel]")


@on_both_screens
def test_dashboard_schedule_editor_refuses_minus_five_minutes_and_an_empty_adjustment(
        page, site, screen):
    real_unit_online(site)
    page.set_viewport_size(VIEWPORTS[screen])
    sign_in(page, site, "op")
    page.goto(site["base"] + f"/#/unit/{REAL}/schedule")
    page.wait_for_selector("[data-testid=add-program]")

    def versions():
        with sqlite3.connect(site["db"]) as db:
            return db.execute("SELECT count(*) FROM desired_configs WHERE device_id = ?",
                              [REAL]).fetchone()[0]

    before = versions()
    page.click("[data-testid=add-program]")
    program = page.locator(".program").last
    program.locator("input[name=start_times]").fill("05:30")
    program.locator("input[data-zone='bunga']").fill("-5")
    # every zone's limit is shown beside its minutes
    assert program.locator(".zone-row [data-testid=limit]").first.inner_text().startswith("maks.")
    page.click("[data-testid=save]")
    error = program.locator("[data-testid=field-error][data-field=bunga]")
    playwright_api.expect(error).to_contain_text("lebih dari 0")
    playwright_api.expect(page.locator("[data-testid=problems]")).to_contain_text(
        "belum ada yang dikirim")
    if screen == "desktop":
        shot(page, "dashboard-schedule-refused.png", full_page=False)
    program.locator("input[data-zone='bunga']").fill("4")
    page.fill("input[name=watering_pct]", "")
    page.click("[data-testid=check]")
    pct_error = page.locator("[data-testid=field-error][data-field=watering_pct]")
    playwright_api.expect(pct_error).to_contain_text("Wajib diisi")
    assert page.locator(".sched-result .ok").count() == 0  # not "Jadwal valid"
    assert versions() == before


def test_dashboard_pond_page_shows_water_now_and_feedings_in_words(page, site):
    sign_in(page, site, "op_dp3")
    page.goto(site["base"] + f"/#/unit/{PONDS}")
    ponds = page.locator("[data-testid=ponds]")
    playwright_api.expect(ponds.locator("[data-reading=do]").first).to_contain_text("mg/L")
    do_text = ponds.locator("[data-reading=do]").first.inner_text()
    assert re.search(r"\d(,\d)? mg/L", do_text) and "." not in do_text, do_text  # comma
    assert "." not in ponds.locator("[data-reading=temp]").first.inner_text()
    assert "°C" in ponds.inner_text()
    assert "Diukur" in ponds.locator("[data-testid=readings-age]").inner_text()
    activity = page.locator("[data-testid=activity]")
    fed = activity.locator("li[data-type=feed_dispensed]").first
    playwright_api.expect(fed).to_contain_text("Pakan ")
    assert re.search(r"\d+( g|,\d kg| kg)$", fed.inner_text()), fed.inner_text()
    # the chart's axis numbers are Indonesian too (no decimal point)
    page.click("[data-period=week]")
    page.wait_for_selector(".charts[data-period=week]")
    labels = page.locator("[data-chart=do_mg_l] svg text.ylab").evaluate_all(
        "els => els.map(e => e.textContent)")
    assert labels and not any("." in x for x in labels), labels


# --------------------------------------------------------------------------- one language

VISIBLE_TEXT = """() => {
  const out = [];
  function walk(node) {
    if (node.nodeType === 3) { out.push(node.textContent); return; }
    if (node.nodeType !== 1) return;
    const e = node;
    if (e.closest('[translate="no"]') || e.matches('code, script, style, noscript')) return;
    if (e.tagName === 'DIALOG' && !e.open) return;
    const cs = getComputedStyle(e);
    if (cs.display === 'none' || cs.visibility === 'hidden') return;
    for (const a of ['placeholder', 'title', 'aria-label']) {
      if (e.getAttribute(a)) out.push(e.getAttribute(a));
    }
    if (e.tagName === 'DETAILS' && !e.open) {
      const s = e.querySelector('summary');
      if (s) walk(s);
      return;
    }
    for (const c of e.childNodes) walk(c);
  }
  walk(document.body);
  return out.join(' ');
}"""
I18N_JS = ROOT / "controller" / "dashboard" / "i18n.js"


def _table(lang: str) -> dict[str, str]:
    text = I18N_JS.read_text()
    block = re.search(r"\n  " + lang + r": \{(.*?)\n  \},", text, re.S).group(1)
    return dict(re.findall(r'\n    "([^"]+)": "((?:[^"\\]|\\.)*)",', block))


def _words(text: str) -> set[str]:
    text = re.sub(r"\{[a-z_]+\}", " ", text)  # a value's placeholders are not words
    return {w.lower() for w in re.findall(r"[A-Za-zÀ-ÿ]+", text)}


def tell_tales(shown: str, other: str) -> set[str]:
    """Words of the `other` language's table (3 letters or more) that the shown
    language's table never uses, plus short tell-tales."""
    mine, theirs = _table(shown), _table(other)
    own = _words(" ".join(mine.values()))
    found = set()
    for key, value in theirs.items():
        if mine.get(key) != value:
            found |= {w for w in _words(value) if len(w) >= 3} - own
    extra = ({"min", "h", "stopped", "failed", "clamped", "feeding", "skipped", "until",
              "next", "left"} if other == "en" else {"mnt", "jam", "dtk", "sejak", "sampai"})
    return found | (extra - own)


def english_in(page, words: set[str]) -> dict[str, str]:
    """Each tell-tale word on the page, with the text around it."""
    text = page.evaluate(VISIBLE_TEXT)
    out = {}
    for word in sorted(_words(text) & words):
        at = re.search(r"(?i)(?<![A-Za-zÀ-ÿ])" + word + r"(?![A-Za-zÀ-ÿ])", text)
        out[word] = text[max(0, at.start() - 40):at.end() + 40] if at else ""
    return out


def test_dashboard_every_page_and_dialog_in_indonesian_has_no_english(page, site):
    english = tell_tales("id", "en") - data_words(site)
    assert {"stopped", "failed", "next", "min"} <= english and "dijeda" not in english
    seen: dict[str, set[str]] = {}

    def check(where: str) -> None:
        page.wait_for_timeout(300)  # let the last fetches land
        found = english_in(page, english)
        if found:
            seen[where] = found

    def dialogs(actions: list[str]) -> None:
        for action in actions:
            page.click(f".controls [data-action={action}] >> nth=0")
            playwright_api.expect(page.locator("dialog#confirm")).to_be_visible()
            check(f"dialog {action}")
            page.click("dialog#confirm [data-role=cancel]")

    real_unit_online(site)
    sign_in(page, site, "admin")
    page.wait_for_selector(f".unit[data-device='{PARK}']")
    check("units")
    page.goto(site["base"] + f"/#/unit/{PARK}")
    page.wait_for_selector("[data-testid=activity] li")
    check("unit park")
    page.goto(site["base"] + f"/#/unit/{REAL}")
    page.wait_for_selector(".controls [data-action=run_zone]")
    check("unit real")
    dialogs(["run_zone", "stop_all", "skip_next", "pause", "rain_delay", "resume"])
    page.click(".controls [data-action=run_zone] >> nth=0")
    page.fill("dialog#confirm [data-testid=custom]", "-5")
    page.click("dialog#confirm [data-role=ok]")
    page.wait_for_selector("dialog#confirm [data-testid=field-error]")
    check("dialog run_zone refused")
    page.click("dialog#confirm [data-role=cancel]")
    page.goto(site["base"] + f"/#/unit/{PONDS}")
    page.wait_for_selector("[data-testid=ponds]")
    check("unit pond")
    dialogs(["feed_now", "stop_all", "skip_next", "pause", "resume"])
    for device in (REAL, PONDS):
        page.goto(site["base"] + f"/#/unit/{device}/schedule")
        page.wait_for_selector("[data-testid=save]")
        check(f"schedule {device}")
    page.goto(site["base"] + f"/#/unit/{REAL}/schedule")
    page.click("[data-testid=add-program]")
    page.locator(".program").last.locator("input[name=start_times]").fill("25:00")
    page.locator(".program").last.locator("input[data-zone='bunga']").fill("5")
    page.click("[data-testid=check]")
    page.wait_for_selector("[data-testid=problems]")
    check("schedule refused by the server")
    page.goto(site["base"] + "/#/alarms")
    page.wait_for_selector(".alarm-row")
    check("alarms")
    page.locator(".alarm-row [data-act=clear]").first.click()
    check("dialog clear alarm")
    page.click("dialog#confirm [data-role=cancel]")
    page.goto(site["base"] + "/#/alarms?state=cleared")
    page.wait_for_selector("[data-testid=alarms] li")
    check("alarms cleared")
    month = datetime.now(WITA).strftime("%Y-%m")
    for opd in ("dlh", "dp3"):
        page.goto(site["base"] + f"/#/reports?opd={opd}&month={month}")
        page.wait_for_selector("[data-testid=report-title]")
        check(f"report {opd}")
    page.goto(site["base"] + "/#/audit")
    page.wait_for_selector("table[data-testid=audit] tbody tr")
    check("audit")
    if seen:
        pytest.fail("English on Indonesian pages: " + json.dumps(seen, ensure_ascii=False, indent=1))


def data_words(site) -> set[str]:
    """Words of the names the units and their schedules carry (data, not the page's)."""
    names = []
    for u in api_get(site, "/dashboard/units")["units"]:
        names += [u["name"], u["device_id"], *(u.get("zones") or []),
                  *(u.get("feeders") or []), *(u.get("ponds") or []),
                  u["next"].get("program") or ""]
    return _words(" ".join(names))


def test_dashboard_english_pages_have_no_indonesian(page, site):
    indonesian = tell_tales("en", "id") - data_words(site)
    assert {"dijeda", "berikutnya", "mnt"} <= indonesian
    sign_in(page, site, "admin")
    page.click("[data-lang=en]")
    seen = {}
    for where, path, ready in (("units", "/#/", f".unit[data-device='{PARK}']"),
                               ("unit park", f"/#/unit/{PARK}", "[data-testid=activity] li"),
                               ("unit pond", f"/#/unit/{PONDS}", "[data-testid=ponds]"),
                               ("alarms", "/#/alarms", ".alarm-row")):
        page.goto(site["base"] + path)
        page.wait_for_selector(ready)
        page.wait_for_timeout(300)
        found = english_in(page, indonesian)
        if found:
            seen[where] = found
    if seen:
        pytest.fail("Indonesian on English pages: " + json.dumps(seen, ensure_ascii=False, indent=1))
