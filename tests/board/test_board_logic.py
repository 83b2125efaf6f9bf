"""The board's pure logic: password hashes, the user file, sessions and CSRF tokens, SQL
literals, escaping of data in pages, filters, the archive/live merge and the trend window."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from board.archive import alert_from_row, sql_str
from board.pages import alert_page, alerts_page, h, login_page, machines_page
from board.sessions import LoginThrottle, Sessions, cookie, parse_cookies, tokens_match
from board.users import UserFile, add_user, hash_password, parse_users, verify_password
from board.view import Filters, actor_name, fmt_ago, live_payload, merge_latest, ordered, trend_window

from plantstream.errors import ConfigError

NOW = 1_764_000_000_000_000
EVIL = '<script>alert("x")</script>'


def alert(aid: str = "demo/p1/m1/limit/vib#1", revision: int = 1, **kw: object) -> dict:
    a = {"alert_id": aid, "revision": revision, "tenant": "demo", "site": "p1", "machine": "m1",
         "sensors": ["vib"], "rule": "limit", "severity": "warning", "state": "open",
         "title": "Vibration high",
         "first_seen": NOW - 600_000_000, "last_seen": NOW - 60_000_000, "occurrences": 3,
         "escalation_level": 0, "evidence": {"value": 7.3, "limit": 7.1}, "recommended_action": None,
         "actor": None, "note": None, "silenced_until": None, "updated_at": NOW - 60_000_000}
    a.update(kw)
    return a


# ---- passwords and the user file -------------------------------------------------------------
def test_password_hash_is_salted_and_verifies_only_the_right_password() -> None:
    one, two = hash_password("s3cret-pass"), hash_password("s3cret-pass")
    assert one != two and one.startswith("scrypt$16384$8$1$")  # a fresh salt each time
    assert verify_password("s3cret-pass", one) and verify_password("s3cret-pass", two)
    assert not verify_password("s3cret-pasS", one)
    assert not verify_password("s3cret-pass", "scrypt$bad") and not verify_password("x", "md5$1$2$3$4$5")


def test_user_file_round_trip_and_authentication(tmp_path: Path) -> None:
    path = tmp_path / "board-users.yaml"
    add_user(path, "ana", "demo", "long enough")
    add_user(path, "bo", "beta", "another one")
    assert path.stat().st_mode & 0o077 == 0  # only the owner can read the hashes
    assert "long enough" not in path.read_text()
    users = UserFile(path)
    ana = users.authenticate("ana", "long enough")
    assert ana is not None and ana.tenant == "demo"
    assert users.authenticate("ana", "wrong") is None and users.authenticate("nobody", "long enough") is None
    add_user(path, "ana", "demo", "a new password")  # replacing a password is seen without restart
    assert users.authenticate("ana", "long enough") is None and users.authenticate("ana", "a new password")


@pytest.mark.parametrize("text, message", [
    ("users: [ana]", "'users' must map"),
    ("users: {ana: {tenant: demo}}", "needs a tenant and a password hash"),
    ("users: {'a b': {tenant: demo, password: x}}", "user name 'a b'"),
    ("users: {ana: [", "not valid YAML"),
])
def test_broken_user_file_is_a_clear_error(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse_users(text, "board-users.yaml")


def test_add_user_refuses_short_passwords_and_odd_names(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="at least 8"):
        add_user(tmp_path / "u.yaml", "ana", "demo", "short")
    with pytest.raises(ConfigError, match="user name"):
        add_user(tmp_path / "u.yaml", "<ana>", "demo", "long enough")


# ---- sessions, cookies, CSRF -----------------------------------------------------------------
def test_sessions_expire_and_end() -> None:
    sessions = Sessions(lifetime=60)
    s = sessions.create("ana", "demo", now=1000.0)
    assert sessions.get(s.token, now=1059.0) is s
    assert sessions.get(s.token, now=1061.0) is None  # expired
    t = sessions.create("ana", "demo", now=2000.0)
    sessions.end(t.token)
    assert sessions.get(t.token, now=2001.0) is None and sessions.get(None) is None
    assert s.csrf != t.csrf and len(s.token) >= 40


def test_cookie_is_http_only_and_same_site_strict() -> None:
    c = cookie("board_session", "tok", 3600)
    assert "HttpOnly" in c and "SameSite=Strict" in c and "Path=/" in c and "Max-Age=3600" in c
    assert parse_cookies("a=1; board_session=tok; b=") == {"a": "1", "board_session": "tok", "b": ""}


def test_failed_logins_slow_down_guessing_for_that_name_only() -> None:
    throttle = LoginThrottle(limit=3, window=60)
    for t in (0.0, 1.0, 2.0):
        assert not throttle.blocked("ana", now=t)
        throttle.failed("ana", now=t)
    assert throttle.blocked("ana", now=3.0) and not throttle.blocked("bo", now=3.0)
    assert not throttle.blocked("ana", now=61.5)  # the oldest failure left the window
    throttle.failed("bo", now=5.0)
    throttle.failed("bo", now=6.0)
    throttle.succeeded("bo")  # a right password forgets the earlier mistakes
    throttle.failed("bo", now=7.0)
    throttle.failed("bo", now=8.0)
    assert not throttle.blocked("bo", now=9.0)


def test_csrf_tokens_compare_exactly() -> None:
    assert tokens_match("abc", "abc")
    assert not tokens_match("abd", "abc") and not tokens_match("", "") and not tokens_match(None, "abc")


# ---- SQL literals ----------------------------------------------------------------------------
def test_sql_literal_escapes_quotes_and_backslashes() -> None:
    assert sql_str("demo") == "'demo'"
    assert sql_str("x' OR 1=1 --") == "'x\\' OR 1=1 --'"
    assert sql_str("a\\' b") == "'a\\\\\\' b'"  # a backslash cannot un-escape the quote


def test_archived_row_becomes_an_alert_event_shape() -> None:
    import datetime as dt
    row = alert(evidence=[("value", 7.3)], first_seen=dt.datetime(2026, 1, 1, tzinfo=dt.UTC),
                silenced_until=None, updated_at=dt.datetime(2026, 1, 1, 0, 0, 1, 5, tzinfo=dt.UTC))
    a = alert_from_row(row)
    assert a["evidence"] == {"value": 7.3} and a["silenced_until"] is None
    assert a["first_seen"] == 1_767_225_600_000_000 and a["updated_at"] == 1_767_225_601_000_005


# ---- escaping in pages -----------------------------------------------------------------------
def test_every_value_from_data_is_escaped_in_the_pages() -> None:
    evil = alert(aid=f"demo/{EVIL}/m/limit/x#1", site=EVIL, machine=EVIL, title=EVIL, sensors=[EVIL],
                 evidence={EVIL: 1.0}, recommended_action=EVIL, actor=EVIL, note=EVIL)
    pages = [
        alerts_page([evil], [evil], Filters(site=EVIL), NOW, user=EVIL, tenant=EVIL, csrf=EVIL),
        alert_page(evil, [evil], [{"action": "acknowledge", "actor": EVIL, "reason": EVIL, "issued_at": NOW,
                                   "refused": EVIL}],
                   [{"ts": NOW, "kind": EVIL, "sensors": [EVIL], "shares": [1.0], "revisions": 1}],
                   NOW, EVIL, EVIL, message=EVIL, tenant=EVIL),
        machines_page([{"site": EVIL, "machine": EVIL, "last_seen": NOW, "episodes": 2}],
                      {(EVIL, EVIL): {"critical": 1}}, NOW, user=EVIL, tenant=EVIL, csrf=EVIL),
        login_page(EVIL, EVIL),
    ]
    for page in pages:
        assert "<script>" not in page and EVIL not in page
        assert h(EVIL) in page or "%3Cscript%3E" in page
        assert 'src="/static/board.js"' in page
        # scripts only from /static: no inline code with data in it
        assert re.findall(r"<script[^>]*>", page) == [
            f'<script src="/static/{js}" defer>' for js in ("uPlot.iife.min.js", "board.js")
            if js == "board.js" or 'data-page="alert"' in page]


def test_command_forms_follow_the_shared_rule_table() -> None:
    page = alert_page(alert(state="acknowledged"), [], [], [], NOW, "tok", "ana")
    forms = dict(re.findall(r'data-action="(\w+)" data-allowed-in="([\w ]+)"( hidden)?', page)[i][:2]
                 for i in range(3))
    assert forms == {"acknowledge": "open", "silence": "acknowledged open", "resolve": "acknowledged open"}
    assert re.search(r'data-action="acknowledge"[^>]*hidden', page)  # acknowledged: no second ack
    assert not re.search(r'data-action="resolve"[^>]*hidden', page)
    assert page.count('name="csrf" value="tok"') == 4  # three forms + log out


# ---- filters, merge, order -------------------------------------------------------------------
def test_filters_from_the_query_string() -> None:
    f = Filters.from_query({"site": ["p1"], "severity": ["bogus"], "state": ["resolved"]})
    assert f == Filters(site="p1", machine="", severity="", state="resolved")
    assert Filters.from_query({}).state == "unresolved"
    unresolved = Filters()
    assert unresolved.matches(alert(state="acknowledged")) and not unresolved.matches(alert(state="resolved"))
    assert not Filters(machine="m2").matches(alert())
    assert Filters(severity="warning", state="all").matches(alert(state="resolved"))


def test_live_revision_wins_over_an_older_archived_one_and_other_tenants_are_dropped() -> None:
    archived = [alert(revision=1), alert(aid="demo/p1/m2/limit/t#1", machine="m2", revision=4)]
    live = [alert(revision=2, state="acknowledged", actor="ana"),
            alert(aid="demo/p1/m2/limit/t#1", machine="m2", revision=3),  # older than the archive's
            alert(aid="beta/p/m/limit/t#1", tenant="beta", revision=9)]
    merged = merge_latest(archived, live, "demo")
    assert set(merged) == {"demo/p1/m1/limit/vib#1", "demo/p1/m2/limit/t#1"}
    assert merged["demo/p1/m1/limit/vib#1"]["state"] == "acknowledged"
    assert merged["demo/p1/m2/limit/t#1"]["revision"] == 4


def test_most_severe_first_then_machine() -> None:
    got = ordered([alert(aid="a", severity="info"), alert(aid="b", machine="m0", severity="critical"),
                   alert(aid="c", severity="critical")])
    assert [a["alert_id"] for a in got] == ["b", "c", "a"]


def test_actor_is_the_logged_in_user_plus_the_person_on_a_shared_login() -> None:
    assert actor_name("ana", "ana") == "ana" and actor_name("ana", "  ") == "ana"
    assert actor_name("shift-a", "Bo  Berg") == "Bo Berg (shift-a)"


def test_trend_window_covers_the_episode_with_about_300_buckets() -> None:
    start, end, step = trend_window(NOW - 3_600_000_000, NOW - 600_000_000, NOW)
    assert start <= NOW - 3_600_000_000 - 1_800_000_000 and end == NOW
    assert step % 1_000_000 == 0 and 250 <= (end - start) / step <= 310
    start, end, step = trend_window(NOW - 30 * 86_400_000_000, NOW, NOW)  # a month-long episode
    assert end - start == 7 * 86_400_000_000


def test_fmt_ago_and_live_payload() -> None:
    assert fmt_ago(None, NOW) == "never" and fmt_ago(NOW - 30_000_000, NOW) == "30 s ago"
    assert fmt_ago(NOW - 7_200_000_000, NOW) == "2.0 h ago"
    p = live_payload(alert(silenced_until=NOW))
    assert p["alert_id"] == "demo/p1/m1/limit/vib#1" and p["shelved_until"].endswith("UTC")
    assert "tenant" not in p and "evidence" not in p


# ---- the production manifest ------------------------------------------------------------------
def test_k8s_manifest_runs_the_board_with_documented_settings_only() -> None:
    import yaml

    from plantstream.settings import DOCUMENTED

    k8s = Path(__file__).resolve().parents[2] / "deploy" / "k8s"
    doc = yaml.safe_load((k8s / "board.yaml").read_text())
    assert doc["metadata"]["name"] == "board"
    container = doc["spec"]["template"]["spec"]["containers"][0]
    assert container["name"] == "board"
    assert container["command"] + container["args"] == ["plantstream", "board"]
    known = {name for name, _, _ in DOCUMENTED}
    assert {e["name"] for e in container["env"]} <= known
    assert container["readinessProbe"]["httpGet"]["path"] == "/health"
    service = yaml.safe_load((k8s / "board-service.yaml").read_text())
    assert service["spec"]["selector"] == {"service": "board"}
    assert service["spec"]["ports"][0]["port"] == 8126


def test_add_user_command_stores_a_hash_the_board_accepts(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from plantstream.cli.main import cli

    path = tmp_path / "users.yaml"
    monkeypatch.setenv("PLANTSTREAM_HOME", str(tmp_path))
    monkeypatch.setenv("PLANTSTREAM_BOARD_USERS", str(path))
    result = CliRunner().invoke(cli, ["board", "add-user", "ana", "--tenant", "demo", "--password-stdin"],
                                input="long enough\n")
    assert result.exit_code == 0 and "ana (tenant demo) saved" in result.output, result.output
    user = UserFile(path).authenticate("ana", "long enough")
    assert user is not None and user.tenant == "demo"
    short = CliRunner().invoke(cli, ["board", "add-user", "bo", "--tenant", "demo", "--password-stdin"],
                               input="short\n")
    assert short.exit_code == 1 and "at least 8 characters" in short.output


def test_the_demo_login_is_made_once_kept_private_and_works(tmp_path: Path) -> None:
    from dataclasses import replace

    from plantstream.demo import board_login
    from plantstream.settings import Settings

    s = replace(Settings.from_env(), home=tmp_path, board_users=None, board_address="127.0.0.1:8126")
    url, user, password = board_login(s)
    assert url == "http://127.0.0.1:8126/" and user == "demo" and len(password) >= 12
    assert board_login(s) == (url, user, password)  # a later demo says the same login again
    assert (tmp_path / "board-demo-password").stat().st_mode & 0o077 == 0
    assert password not in (tmp_path / "board-users.yaml").read_text()  # only its salted hash
    found = UserFile(tmp_path / "board-users.yaml").authenticate("demo", password)
    assert found is not None and found.tenant == "demo"
    assert UserFile(tmp_path / "board-users.yaml").authenticate("demo", password + "x") is None
