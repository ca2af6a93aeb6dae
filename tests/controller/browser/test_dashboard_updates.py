"""The updates page in a real browser, on a desktop and a phone screen: an admin starts a
rollout, the page shows the canary offered; the test makes the units report their
outcome over a real Mosquitto (fake units answering the update command and publishing
update_applied / update_failed as a unit does); the page shows each unit applied or
failed, and the rollout stopped by its failure threshold, in Indonesian, with each
unit's maintenance window as its status reports it. An operator sees the version its
unit runs, the one offered and the unit's maintenance window on the unit's page.

``UPDATE_SCREENSHOTS=1`` writes docs/screenshots/dashboard-updates.png.
"""

from __future__ import annotations

import pytest
from controller_support import add_device, broker_settings, make_token, wait_until
from fake_units import FakeUnit
from release_support import make_bundle, new_key

from controller.api.main import create_app
from controller.release.keep import keep_bundle
from controller.rollouts import spread_key
from controller.store import Store

from .test_dashboard_browser import (
    CHROMIUM,
    CHROMIUM_ARGS,
    VIEWPORTS,
    _server,
    playwright_api,
    shot,
    sign_in,
)

expect = playwright_api.expect

pytestmark = pytest.mark.skipif(not __import__("pathlib").Path(CHROMIUM).exists(),
                                reason="Debian's chromium is not installed "
                                       "(scripts/bootstrap --browser)")


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    from support.broker import MosquittoBroker, find_mosquitto, free_port

    if find_mosquitto() is None:
        pytest.skip("mosquitto is not installed")
    tmp = tmp_path_factory.mktemp("updates")
    broker = MosquittoBroker(workdir=tmp / "broker").start()
    key, public = new_key()
    settings = broker_settings(tmp, broker, releases={"dir": str(tmp / "releases"),
                                                      "trusted_keys": [public]})
    store = Store.open(settings.database.path)
    store.ensure_opd("dlh")
    tokens = {"admin": make_token(store, "diskominfo", "admin"),
              "op": make_token(store, "op-taman", "operator", "dlh")}
    port = free_port()
    server, thread = _server(create_app(settings, store=store), port)
    with playwright_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield {"base": f"http://127.0.0.1:{port}", "tokens": tokens, "store": store,
                   "settings": settings, "broker": broker, "key": key, "tmp": tmp,
                   "browser": browser}
        finally:
            browser.close()
            server.should_exit = True
            thread.join(15)
            store.close()
            broker.close()


@pytest.fixture
def units(site, request):
    """Three dlh units of this test, silent until the test answers for them; a and b
    install at night (WINDOWS), c any time."""
    screen = request.node.callspec.params["screen"]
    made = []
    for letter in "abc":
        device = f"taman-{screen}-{letter}"
        add_device(site["store"], device, "dlh")
        made.append(FakeUnit(site["broker"].host, site["broker"].port, "dlh", device,
                             outcome="silent", update_window=WINDOWS[letter]))
        wait_until(lambda d=device: (site["store"].get_device(d) or {}).get("fw"),
                   what=f"{device}'s status")
    yield sorted(made, key=lambda u: spread_key(u.device_id))  # the canary first
    for unit in made:
        unit.close()


WINDOWS = {"a": "01:00-05:00", "b": "22:00-04:00", "c": "00:00-24:00"}


def _window_text(unit: FakeUnit) -> str:
    """The unit's window as the Indonesian page says it."""
    return "kapan saja" if unit.update_window == "00:00-24:00" else f"{unit.update_window} WITA"


def _answer(unit: FakeUnit, outcome: str) -> None:
    command = wait_until(lambda: unit.commands and unit.commands[-1],
                         what=f"the offer to {unit.device_id}")
    unit.outcome = outcome
    unit.answer(command)


def _row(page, unit):
    return page.locator(f"[data-testid=rollout-units] tr[data-device='{unit.device_id}']")


@pytest.mark.parametrize("screen", list(VIEWPORTS))
def test_dashboard_updates_rollout_canary_then_stopped_by_threshold(site, units, screen):
    version = {"desktop": "0.2.0", "phone": "0.2.1"}[screen]
    bundle = make_bundle(site["tmp"] / "in", site["key"], version)
    keep_bundle(site["store"], site["settings"], bundle, "cli:admin")
    context = site["browser"].new_context(viewport=VIEWPORTS[screen],
                                          timezone_id="Europe/London", locale="en-GB")
    context.set_default_timeout(15_000)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        sign_in(page, site, "admin")
        page.click("[data-nav=updates]")
        page.wait_for_selector("[data-testid=start-rollout]")
        assert "Mulai peluncuran" in page.inner_text("[data-testid=start-rollout]")
        page.select_option("[data-testid=version]", version)
        page.select_option("[data-testid=target-kind]", "devices")
        page.fill("[data-testid=target-devices]", ", ".join(u.device_id for u in units))
        page.fill("[data-testid=canary]", "1")
        page.fill("[data-testid=stages]", "100")
        page.fill("[data-testid=threshold]", "20")
        page.click("[data-testid=start]")
        canary, first, second = units
        expect(_row(page, canary)).to_have_attribute("data-state", "offered")
        expect(_row(page, canary)).to_contain_text("Ditawarkan")
        expect(_row(page, canary)).to_contain_text("Tahap 0 (kenari)")
        for other in (first, second):
            expect(_row(page, other)).to_have_attribute("data-state", "waiting")
        # each unit's maintenance window, as its status reports it (through the ingest)
        if screen == "desktop":
            expect(page.locator("[data-testid=rollout-units] thead")).to_contain_text(
                "Jendela pemeliharaan")
        for unit in units:
            expect(_row(page, unit).locator("[data-col=window]")).to_have_text(
                _window_text(unit))
            expect(_row(page, unit).locator("[data-col=window]")).to_be_visible()
        assert first.commands == [] and second.commands == []
        expect(page.locator("[data-testid=rollout-state]")).to_have_text("Berjalan")

        _answer(canary, "applied")
        expect(_row(page, canary)).to_have_attribute("data-state", "applied")
        expect(_row(page, canary).locator("[data-col=running]")).to_have_text(version)
        expect(_row(page, first)).to_have_attribute("data-state", "offered")
        expect(_row(page, second)).to_have_attribute("data-state", "offered")

        _answer(first, "failed")
        _answer(second, "applied")
        expect(page.locator("[data-testid=rollout-state]")).to_have_text("Dihentikan")
        expect(page.locator("[data-testid=rollout-reason]")).to_have_text(
            "otomatis: terlalu banyak unit gagal (melewati ambang)")
        expect(_row(page, first)).to_have_attribute("data-state", "failed")
        expect(_row(page, first)).to_contain_text("Pembaruan gagal · langkah pemeriksaan kesehatan")
        expect(_row(page, second)).to_have_attribute("data-state", "applied")
        assert page.locator("[data-testid=stop]").count() == 0  # stopped: nothing to stop
        rollout = site["store"].list_rollouts()[0]
        assert (rollout["state"], rollout["reason"]) == ("stopped", "failure_threshold")
        if screen == "desktop":
            shot(page, "dashboard-updates.png")

        # the operator: the version its unit runs and the one offered, on the unit's page
        page.click("[data-testid=signout]")
        sign_in(page, site, "op")
        page.goto(site["base"] + f"/#/unit/{first.device_id}")
        expect(page.locator("[data-testid=version-running]")).to_have_text("0.1.0")
        expect(page.locator("[data-testid=version-offered]")).to_contain_text(
            f"ditawarkan {version} (gagal)")
        expect(page.locator("[data-testid=update-window]")).to_have_text(
            f"· Jendela pemeliharaan {_window_text(first)}")
        any_time = next(u for u in units if u.update_window == "00:00-24:00")
        page.goto(site["base"] + f"/#/unit/{any_time.device_id}")
        expect(page.locator("[data-testid=update-window]")).to_have_text(
            "· Jendela pemeliharaan kapan saja")
        assert page.locator("[data-nav=updates]").count() == 0  # admins only
    finally:
        context.close()
    assert not errors, errors
