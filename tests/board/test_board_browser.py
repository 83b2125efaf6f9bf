"""The maintenance board in a real headless Chromium (Debian's, driven by Playwright) against
the real broker, the archival service with embedded ClickHouse and the maintenance service:
log in, see only the tenant's alerts (an id with HTML in it shown as text), open one, see its
trend, acknowledge it with a comment, and watch the new revision that maintenance makes of
the command arrive over server-sent events without a reload. Takes the README's screenshot."""

from __future__ import annotations

import math
import os
import time
from dataclasses import replace
from pathlib import Path
from urllib.parse import quote

import playwright.sync_api as playwright_sync
from board.app import BoardServer
from board.users import add_user
from receivers import Service, wait_for

from plantstream.avro import AvroCodec
from plantstream.db.query import find_endpoint
from plantstream.kafka import Output, create_topics
from plantstream.settings import Settings
from plantstream.topics import ANOMALIES, READINGS_VALID, TENANT_ALERT_COMMANDS, machine_key

from kafka_io import produce_all, read_topic

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
# The README's picture: rewritten only on request, so a test run leaves the work tree clean.
README_SCREENSHOT = Path(__file__).resolve().parents[2] / "docs" / "board.png"
UPDATE_SCREENSHOT = os.environ.get("PLANTSTREAM_UPDATE_SCREENSHOTS") == "1"
CODEC = AvroCodec()
PASSWORD = "correct horse battery"
SITE = "plant-1"
EVIL = "<img src=x onerror=window.pwned=1>"  # a gateway-controlled machine id
MACHINES = [("demo", "press-07"), ("demo", EVIL), ("beta", "kiln-1")]


def anomalies(s: Settings, tenant: str, machine: str, now_us: int) -> list[Output]:
    out = []
    for i in range(6):
        ts = now_us - (6 - i) * 20_000_000
        ev = {"event_id": f"{machine}-vib-{i}", "tenant": tenant, "site": SITE, "machine": machine, "ts": ts,
              "window_start": ts - 5_000_000, "window_end": ts, "score": 7.5, "threshold": 5.0,
              "kind": "multivariate", "model": "test", "model_version": "1",
              "contributions": [{"sensor": "vib", "share": 0.8, "value": 7.3},
                                {"sensor": "bearing_temp", "share": 0.2, "value": 71.0}]}
        out.append(Output(ANOMALIES.physical(s), machine_key(tenant, SITE, machine),
                          CODEC.encode("anomaly_event", ev)))
    return out


def readings(s: Settings, tenant: str, machine: str, now_us: int) -> list[Output]:
    """40 minutes of vibration, one reading every 10 s, rising in the last 5 minutes."""
    out = []
    for b in range(4):
        rows = []
        for k in range(60):
            ts = now_us - 2_400_000_000 + (b * 60 + k) * 10_000_000
            rise = max(0.0, (ts - (now_us - 300_000_000)) / 60e6)
            rows.append({"reading_id": f"{machine}-r{b}:{k}", "sensor": "vib", "ts": ts, "unit": "mm/s",
                         "value": 3.0 + 0.3 * math.sin(k / 5) + rise, "quality": 192})
        batch = {"batch_id": f"{machine}-r{b}", "tenant": tenant, "site": SITE, "machine": machine,
                 "gateway": "gw-1", "ingest_time": now_us, "readings": rows}
        out.append(Output(READINGS_VALID.physical(s), machine_key(tenant, SITE, machine),
                          CODEC.encode("reading_batch", batch)))
    return out


def archived(s: Settings) -> tuple[int, int]:
    """(machines with an archived alert, archived readings), (-1, -1) before archival answers."""
    endpoint = find_endpoint(s, timeout=1)
    if endpoint is None:
        return -1, -1
    row = endpoint.arrow("SELECT (SELECT uniqExact(machine) FROM alerts), (SELECT count() FROM readings)")
    return int(row.column(0)[0].as_py()), int(row.column(1)[0].as_py())


def test_board_shows_the_tenants_alerts_and_an_acknowledgement_arrives_live(
        settings: Settings, service_env: dict[str, str], tmp_path: Path) -> None:
    s = replace(settings, board_users=tmp_path / "board-users.yaml")
    add_user(s.board_users, "ana", "demo", PASSWORD)
    add_user(s.board_users, "bo", "beta", PASSWORD)
    env = service_env | {"PLANTSTREAM_QUERY_PORT": "0", "PLANTSTREAM_ARCHIVAL_MAX_WAIT": "0.2",
                         "PLANTSTREAM_ALERT_TICK_SECONDS": "0.5", "PLANTSTREAM_ALERT_UPDATE_SECONDS": "1",
                         "PLANTSTREAM_NO_DATA_SECONDS": "0", "PLANTSTREAM_CLOCK_SKEW_SECONDS": "0",
                         "PLANTSTREAM_BATCH_WAIT_SECONDS": "0.2"}
    create_topics(s, tenants=["demo", "beta"])  # what publishing their machines does
    archival = Service(env, tmp_path / "archival.log", "archival").start()
    maintenance = Service(env, tmp_path / "maintenance.log", "maintenance").start()
    server: BoardServer | None = None
    try:
        now = int(time.time() * 1e6)
        produce_all(s, [o for t, m in MACHINES for o in (*readings(s, t, m, now), *anomalies(s, t, m, now))])

        def alive() -> None:
            archival.assert_running()
            maintenance.assert_running()

        wait_for(lambda: archived(s) == (3, 3 * 240), 60,
                 "the 3 machines' alerts and readings in the archive", alive)
        server = BoardServer(s, "127.0.0.1:0").start()
        assert server.board.feed.ready.wait(15), "the board's alert feed did not start"
        url = server.url
        press = f"demo/{SITE}/press-07/persistent_anomaly/vib#1"

        with playwright_sync.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": 1000, "height": 900})
                page.goto(url + "/")
                assert page.url.endswith("/login")
                page.fill("input[name=user]", "ana")
                page.fill("input[name=password]", "wrong password")
                page.click("button[type=submit]")
                assert "Wrong name or password" in page.inner_text("main")
                page.fill("input[name=user]", "ana")
                page.fill("input[name=password]", PASSWORD)
                page.click("button[type=submit]")
                page.wait_for_selector("table.alerts")
                cookie = next(c for c in page.context.cookies() if c["name"] == "board_session")
                assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"

                rows = page.locator("tr[data-alert-id]")
                ids = {rows.nth(i).get_attribute("data-alert-id") for i in range(rows.count())}
                assert ids == {press, f"demo/{SITE}/{EVIL}/persistent_anomaly/vib#1"}  # not beta's kiln
                assert EVIL in page.inner_text("table.alerts")  # shown as text ...
                assert page.evaluate("window.pwned") is None  # ... not run
                assert page.locator("main img").count() == 0
                page.wait_for_selector("#live[data-state=live]")

                # another tenant's alert is not there for ana, not even by its id
                resp = page.goto(url + "/alert?id=" + quote(f"beta/{SITE}/kiln-1/persistent_anomaly/vib#1"))
                assert resp is not None and resp.status == 404

                page.goto(url + "/alert?id=" + quote(press))
                page.wait_for_selector("#trend[data-points]", state="attached")
                assert int(page.get_attribute("#trend", "data-points")) > 100  # 40 min of 10 s readings
                # plotted by uPlot: one chart (a canvas) per sensor of the alert, episode and legend
                charts = int(page.get_attribute("#trend", "data-charts"))
                assert charts >= 1 and page.locator("#trend .uplot canvas").count() == charts
                assert "could not be loaded" not in page.inner_text("#trend-legend")
                assert page.inner_text("article .badges [data-field=state]") == "open"
                # a forged form (no CSRF token of this session) is refused and sends nothing
                forged = page.request.post(url + "/alert/command", form={
                    "id": press, "action": "resolve", "name": "mallory", "csrf": "guessed"})
                assert forged.status == 403

                page.wait_for_selector("#live[data-state=live]")  # subscribed before the command goes out
                page.evaluate("window.__notReloaded = true")
                ack = page.locator("form[data-action=acknowledge]")
                ack.locator("textarea[name=comment]").fill("bearing ordered, checking <b>today</b>")
                ack.locator("button").click()
                page.wait_for_selector("#command-result:not([hidden])")
                playwright_sync.expect(page.locator("article .badges [data-field=state]")).to_have_text(
                    "acknowledged", timeout=20_000)
                assert page.evaluate("window.__notReloaded") is True  # it came over server-sent events
                history = page.inner_text("#history")
                assert "bearing ordered, checking <b>today</b>" in history and "ana" in history
                assert page.locator("form[data-action=acknowledge]").is_hidden()
                assert page.locator("form[data-action=resolve]").is_visible()
                # a second acknowledgement is refused by the shared rule table before anything is sent
                token = page.get_attribute("form[data-action=resolve] input[name=csrf]", "value")
                again = page.request.post(url + "/alert/command", headers={"Accept": "application/json"},
                                          form={"id": press, "action": "acknowledge", "csrf": token or ""})
                assert again.status == 409
                refusal = again.json()["message"]
                assert "is acknowledged (by ana); only open alerts can be acknowledged" in refusal
                page.wait_for_selector("article.alert:not(.flash)")  # the highlight of the change has faded
                shot = README_SCREENSHOT if UPDATE_SCREENSHOT else tmp_path / "board.png"
                page.screenshot(path=str(shot), full_page=True)
                assert shot.stat().st_size > 10_000  # a real picture of the page

                # phone width: the list becomes cards, nothing wider than the screen
                page.set_viewport_size({"width": 390, "height": 844})
                page.goto(url + "/?state=all")
                assert page.inner_text(f"tr[data-alert-id='{press}'] [data-field=state]") == "acknowledged"
                assert page.evaluate("document.documentElement.scrollWidth") <= 390
                page.goto(url + "/machines")
                assert "press-07" in page.inner_text("table.machines")
            finally:
                browser.close()

        commands = [CODEC.decode(m.value(), "alert_command") for m in read_topic(
            s, TENANT_ALERT_COMMANDS.for_tenant(s, "demo"), timeout=10, until=lambda ms: len(ms) >= 1)]
        assert [(c["alert_id"], c["action"], c["actor"], c["reason"]) for c in commands] == [
            (press, "acknowledge", "ana", "bearing ordered, checking <b>today</b>")]
    finally:
        if server is not None:
            server.stop()
        maintenance.stop()
        archival.stop()
