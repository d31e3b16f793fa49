"""The web console end to end, in Chromium, against apphub serving the quickstart: its three demo
services under a real supervisord, the sync engine carrying every change to their files.

One quickstart, one server and one browser serve the whole module (installing the quickstart is
most of its time); each test opens its own browser contexts, so each signs in afresh, and each
starts by waiting for the services to hold the current version, so that it runs alone as well.
Every page a test opens must raise no uncaught error.
"""

from __future__ import annotations

import json
import re
import secrets
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from apphub.core import Core
from tests.conftest import serving
from tests.integration.conftest import APPHUB, cli_environment, eventually, run_cli
from tests.integration.quickstart import Quickstart, health, quickstart_folder, services_status, settled
from tests.web.browser import (
    DESKTOP,
    PHONE,
    Tabs,
    launch,
    screenshots_dir,
    shown,
    sideways_scroll,
    sign_in,
    visit,
)

pytestmark = [
    pytest.mark.xdist_group("browser"),  # one quickstart and one browser for the module: one worker
    pytest.mark.slow,  # about a minute for the module: started first in a parallel run
    pytest.mark.timeout(240),  # the first test installs the quickstart (12 s alone, 40 s seen loaded)
]

SYNC_MS = 60_000  # a restart takes 2 s (supervisord's startsecs), a failed one and its undoing 5 s
INVALID = re.compile(r"\binvalid\b")


@dataclass
class Hub:
    """apphub serving the quickstart, with an admin client of its API and two keys to sign in with."""

    url: str
    quickstart: Quickstart
    admin_key: str
    read_key: str
    api: httpx.Client

    def version(self) -> str:
        return str(self.api.get("/api/v1/settings").json()["version"])

    def settle(self) -> str:
        """Wait until every service holds the current version; that version."""
        version = self.version()
        eventually(lambda: settled(self.api, version), f"every service applied at {version}", 60)
        return version

    def change(self, values: dict[str, dict[str, Any]]) -> str:
        """Change settings through the API and wait until the services have them; the new version."""
        answer = self.api.put("/api/v1/settings", params={"wait": "true"}, json=values)
        assert answer.status_code == 200, answer.text
        assert answer.json()["sync"].get("ok", True) is True, answer.text  # no "ok" when nothing changed
        return str(answer.json()["version"])

    def setting(self, section: str, key: str) -> Any:
        return self.api.get(f"/api/v1/settings/{section}").json()["settings"][key]


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    with quickstart_folder(tmp_path_factory.mktemp("xdg")) as quickstart:
        started = quickstart.start()
        assert started.returncode == 0, started.stderr
        admin_key = quickstart.data.admin_key.read_text().strip()
        # The read key is made by the CLI while the first sync restarts the services (a second each).
        with subprocess.Popen([str(APPHUB), "--data-dir", str(quickstart.data.root), "keys", "create", "--name",
                               "viewer", "--role", "read"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=cli_environment(quickstart.data.root.parent / "xdg")) as creating, \
                serving(quickstart.data) as live, \
                httpx.Client(base_url=live.url, headers={"x-api-key": admin_key}, timeout=90) as api:
            read_key, errors = creating.communicate(timeout=60)
            assert creating.returncode == 0, errors
            made = Hub(live.url, quickstart, admin_key, read_key.strip(), api)
            made.settle()  # the first sync writes the three services' files and restarts them
            yield made


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = launch(playwright)
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def tabs(hub: Hub, browser: Browser) -> Iterator[Tabs]:  # the browser closes first, then the server
    opened = Tabs(browser, hub.url)
    try:
        yield opened
    finally:
        opened.close()
    assert opened.errors == [], "uncaught errors in the page:\n" + "\n".join(opened.errors)


def config_secrets(hub: Hub) -> dict[str, str]:
    """Every secret of config.ini in plaintext, by `[section] key` (the decrypted values)."""
    core = Core(hub.quickstart.data)
    try:
        snapshot = core.config.snapshot()
        return {f"[{section}] {key}": snapshot.section_plaintext_value(section, key)
                for section, key in snapshot.secret_keys()}
    finally:
        core.close()


def service_row(page: Page, service: str) -> Any:
    return page.locator(f"table.services tbody tr[data-service='{service}']")


def test_sign_in_with_an_admin_key_and_a_wrong_key_gets_a_clear_error(hub: Hub, tabs: Tabs) -> None:
    page = tabs.open()
    page.goto("/")
    shown(page, "/signin")
    page.fill("#key", "ahk_this-key-does-not-exist")
    page.click("form.signin button[type=submit]")
    expect(page.locator("form.signin [role=alert]")).to_have_text("Invalid API Key")
    # ...and nothing else: still the sign-in form, no navigation, nobody signed in, no cookie.
    shown(page, "/signin")
    expect(page.locator("#nav a")).to_have_count(0)
    expect(page.locator("#who")).to_be_empty()
    assert page.context.cookies() == []

    page.fill("#key", hub.admin_key)
    page.click("form.signin button[type=submit]")
    shown(page, "/")
    expect(page.locator("table.services tbody tr[data-service]")).to_have_count(3)
    expect(page.locator("#who")).to_contain_text("admin")
    cookie, = page.context.cookies()
    assert (cookie["name"], cookie["httpOnly"], cookie["sameSite"]) == ("apphub_session", True, "Strict")
    assert hub.admin_key not in page.content()  # the page keeps the cookie, not the key

    page.click("#who button:has-text('Sign out')")
    shown(page, "/signin")
    assert page.evaluate("fetch('/api/v1/settings').then((r) => r.status)") == 401


def test_an_edit_is_checked_at_its_field_reviewed_saved_and_reaches_its_service(hub: Hub, tabs: Tabs) -> None:
    hub.settle()
    page = tabs.open()
    sign_in(page, hub.admin_key, "/settings/hello_json")
    color, greeting = page.input_value("#field-color"), f"Hello from the browser {secrets.token_hex(3)}"
    review = page.locator("[data-action=review]")

    # The schema's rule for a color, at the field, as it is typed: nothing can be reviewed.
    page.fill("#field-color", "Not a colour!")
    color_field = page.locator(".field[data-key=color]")
    expect(color_field).to_have_class(INVALID)
    expect(color_field.locator(".message")).to_contain_text("does not match the pattern")
    expect(review).to_be_disabled()

    page.fill("#field-color", color)
    page.fill("#field-greeting", greeting)
    expect(color_field).not_to_have_class(INVALID)
    expect(review).to_be_enabled()
    review.click()
    # The plan: hello-json alone, its file's diff with the new greeting, and the restart it needs.
    plans = page.locator(".plan .service-plan")
    expect(plans).to_have_count(1)
    plan = page.locator(".plan .service-plan[data-service=hello-json]")
    expect(plan.locator("summary")).to_contain_text("supervisor-restart")
    expect(plan.locator(".path")).to_have_text(str(hub.quickstart.json_file))
    expect(plan.locator("td.code.add")).to_contain_text(f'"greeting": "{greeting}"')

    page.click("[data-action=save]")
    expect(page.locator("ul.progress li[data-service=hello-json]")).to_have_attribute("data-state", "applied",
                                                                                       timeout=SYNC_MS)
    expect(page.locator("[data-outcome]")).to_have_attribute("data-outcome", "applied")
    version = page.locator("ul.progress").get_attribute("data-version")
    assert version == hub.version()
    assert json.loads(hub.quickstart.json_file.read_text())["greeting"] == greeting
    assert health(hub.quickstart.json_port)[1]["settings"]["greeting"] == greeting  # restarted with it

    page.click("#nav a:has-text('Overview')")
    shown(page, "/")
    expect(service_row(page, "hello-json")).to_have_attribute("data-state", "applied")
    expect(service_row(page, "hello-json").locator("code").first).to_have_attribute("title", version)


def test_a_change_that_fails_its_health_gate_is_reported_failed_and_undone(hub: Hub, tabs: Tabs) -> None:
    hub.settle()
    quickstart = hub.quickstart
    files_before = quickstart.json_file.read_bytes(), quickstart.ini_file.read_bytes()
    page = tabs.open()
    sign_in(page, hub.admin_key, "/settings/hello_json")
    port_field = page.locator(".field[data-key=port]")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        # The port rule sees who holds the port and says so at the field, before anything is saved...
        page.fill("#field-port", str(busy))
        expect(port_field).to_have_class(INVALID)
        expect(port_field.locator(".message")).to_contain_text(f"port {busy} is already listened on by")
        expect(page.locator("[data-action=review]")).to_be_disabled()
        # ...so, to see a restart fail, its probes go off (system.ini, as an operator does it).
        assert run_cli(quickstart.data, "setsysconfig", "--section", "rules", "--key", "port_probes",
                       "--value", "false").returncode == 0
        try:
            page.fill("#field-port", "")
            page.fill("#field-port", str(busy))
            expect(port_field).not_to_have_class(INVALID)
            page.click("[data-action=review]")
            expect(page.locator(".plan .service-plan[data-service=hello-json] summary")).to_contain_text(
                "supervisor-restart")
            expect(page.locator(".plan .service-plan[data-service=hello-ini]")).to_be_visible()  # its backend line
            page.click("[data-action=save]")

            progress = page.locator("ul.progress")
            expect(progress.locator("li[data-service=hello-json]")).to_have_attribute("data-state", "failed",
                                                                                       timeout=SYNC_MS)
            expect(progress.locator("li[data-service=hello-json]")).to_contain_text(
                f"cannot listen on 127.0.0.1:{busy}: Address already in use")
            expect(progress.locator("li[data-service=hello-ini]")).to_have_attribute("data-state", "failed")
            expect(progress.locator("li[data-service=hello-ini]")).to_contain_text(
                "held back because hello-json failed")
            expect(page.locator("[data-outcome]")).to_have_attribute("data-outcome", "failed")
            # Undone: both files as they were, hello-json answering on its previous port.
            assert (quickstart.json_file.read_bytes(), quickstart.ini_file.read_bytes()) == files_before
            assert health(quickstart.json_port)[0] == 200

            page.click("#nav a:has-text('Overview')")
            shown(page, "/")
            for service in ("hello-json", "hello-ini"):
                expect(service_row(page, service)).to_have_attribute("data-state", "failed")
                expect(service_row(page, service)).to_contain_text("failed, running the previous version")
            expect(service_row(page, "hello-env")).to_have_attribute("data-state", "applied")
            expect(page.locator(".alerts .alert-error")).to_have_count(2)
        finally:
            # Back to the port it runs on (nothing to do), then the probes on again.
            hub.change({"hello_json": {"port": quickstart.json_port}})
            assert run_cli(quickstart.data, "setsysconfig", "--section", "rules", "--key", "port_probes",
                           "--value", "true").returncode == 0
    hub.settle()
    assert {name: service["state"] for name, service in services_status(hub.api).items()} == {
        "hello-json": "applied", "hello-ini": "applied", "hello-env": "applied"}


def test_a_change_made_meanwhile_is_neither_overwritten_nor_undone(hub: Hub, tabs: Tabs) -> None:
    hub.settle()
    page = tabs.open()
    sign_in(page, hub.admin_key, "/settings/hello_json")
    old_color = page.input_value("#field-color")
    mine = "maroon" if old_color != "maroon" else "purple"
    page.fill("#field-color", mine)
    page.click("[data-action=review]")
    expect(page.locator(".plan .service-plan[data-service=hello-json]")).to_be_visible()
    # Someone else changes the same section before this page saves.
    theirs = f"Changed meanwhile {secrets.token_hex(3)}"
    hub.change({"hello_json": {"greeting": theirs}})
    config_before = hub.quickstart.data.config_ini.read_bytes()
    page.click("[data-action=save]")
    expect(page.locator("[data-conflict]")).to_contain_text("Nothing was saved")
    assert hub.quickstart.data.config_ini.read_bytes() == config_before

    # Against the new version: the edit is still there, and the field left alone shows their value.
    page.click("[data-action=load-new-version]")
    expect(page.locator("#field-greeting")).to_have_value(theirs)
    expect(page.locator("#field-color")).to_have_value(mine)
    page.click("[data-action=review]")
    plan = page.locator(".plan .service-plan[data-service=hello-json]")
    expect(plan.locator("td.code.add")).to_have_text(f'  "color": "{mine}"')  # their greeting is not undone
    page.click("[data-action=save]")
    expect(page.locator("[data-outcome]")).to_have_attribute("data-outcome", "applied", timeout=SYNC_MS)
    settings = json.loads(hub.quickstart.json_file.read_text())
    assert (settings["greeting"], settings["color"]) == (theirs, mine)


def test_two_versions_compare_in_keys_file_and_services(hub: Hub, tabs: Tabs) -> None:
    before = hub.settle()
    old = hub.setting("hello_json", "color")
    new = "olive" if old != "olive" else "navy"
    after = hub.change({"hello_json": {"color": new}})
    page = tabs.open()
    sign_in(page, hub.admin_key, "/history")
    for version in (after, before):
        page.locator(f"table.history tbody tr[data-version='{version}']").first.locator("input[type=checkbox]").check()
    page.click("[data-action=compare]")
    shown(page, "/history/compare")
    assert f"from={before}&to={after}" in page.url

    keys = page.locator("section[aria-labelledby=keys-layer]")
    expect(page.locator("#keys-layer")).to_be_visible()
    expect(keys.locator("tbody tr")).to_have_count(1)
    expect(keys.locator("tr[data-key='hello_json.color'] td")).to_have_text(
        ["hello_json", "color", "changed", old, new])
    expect(page.locator("#file-layer")).to_be_visible()
    file = page.locator("section[aria-labelledby=file-layer]")
    expect(file.locator("td.code.del")).to_have_text(f"color = {old}")
    expect(file.locator("td.code.add")).to_have_text(f"color = {new}")
    expect(page.locator("#services-layer")).to_be_visible()
    services = page.locator("section[aria-labelledby=services-layer]")
    expect(services.locator(".service-plan")).to_have_count(1)
    expect(services.locator(".service-plan[data-service=hello-json] summary")).to_contain_text("nothing to reload")
    expect(services.locator(".service-plan[data-service=hello-json] td.code.add")).to_contain_text(f'"color": "{new}"')


def test_a_comparison_says_what_each_service_would_do(hub: Hub, tabs: Tabs) -> None:
    history = hub.api.get("/api/v1/settings/history", params={"file": "config.ini", "limit": 200}).json()["entries"]
    first = history[-1]["file_version"] or history[-1]["version"]  # the quickstart's ports were not chosen yet
    page = tabs.open()
    sign_in(page, hub.admin_key, f"/history/compare?from={first}&file=config.ini")
    services = page.locator("section[aria-labelledby=services-layer]")
    expect(services.locator(".service-plan[data-service=hello-json] summary")).to_contain_text("supervisor-restart")
    expect(services.locator(".service-plan[data-service=hello-env] summary")).to_contain_text("supervisor-update")


def test_a_rollback_in_one_click_shows_its_plan_and_brings_the_files_back(hub: Hub, tabs: Tabs) -> None:
    before = hub.settle()
    quickstart = hub.quickstart
    files_before = quickstart.json_file.read_bytes(), quickstart.ini_file.read_bytes()
    forward = f"Rolled forward {secrets.token_hex(3)}"
    hub.change({"hello_json": {"greeting": forward}, "hello_ini": {"title": forward}})
    assert forward in quickstart.json_file.read_text()
    assert forward in quickstart.ini_file.read_text()

    page = tabs.open()
    sign_in(page, hub.admin_key, "/history")
    page.locator(f"table.history tbody tr[data-version='{before}']").first.locator(
        "button[data-action=rollback]").click()
    dialog = page.locator("dialog[open]")
    expect(dialog.locator("[data-action=confirm-rollback]")).to_be_enabled()
    # The plan: the keys it brings back, each service's file diff and what it does.
    expect(dialog.locator("table.changes tr[data-key='hello_json.greeting']")).to_contain_text(forward)
    expect(dialog.locator("table.changes tr[data-key='hello_ini.title']")).to_contain_text(forward)
    expect(dialog.locator(".service-plan[data-service=hello-json] summary")).to_contain_text("supervisor-restart")
    expect(dialog.locator(".service-plan[data-service=hello-ini] summary")).to_contain_text("supervisor-signal")
    expect(dialog.locator(".service-plan[data-service=hello-json] td.code.del")).to_contain_text(forward)

    dialog.locator("[data-action=confirm-rollback]").click()
    expect(dialog.locator("[data-outcome]")).to_have_attribute("data-outcome", "applied", timeout=SYNC_MS)
    for service in ("hello-json", "hello-ini"):
        expect(dialog.locator(f"ul.progress li[data-service={service}]")).to_have_attribute("data-state", "applied")
    assert (quickstart.json_file.read_bytes(), quickstart.ini_file.read_bytes()) == files_before
    assert hub.version() == before  # the same bytes: the same version
    assert health(quickstart.json_port)[1]["settings"]["greeting"] != forward
    # Closed, the dialog leaves the history showing the version the rollback made.
    dialog.locator("[data-action=close-dialog]").click()
    newest = page.locator("table.history tbody tr[data-version]").first
    expect(newest).to_have_attribute("data-version", before)
    expect(newest.locator("td").nth(3)).to_have_text("rollback")


def test_a_read_key_sees_no_edit_control_and_a_forged_write_is_refused(hub: Hub, tabs: Tabs) -> None:
    config_before = hub.quickstart.data.config_ini.read_bytes()
    page = tabs.open()
    sign_in(page, hub.read_key, "/settings/hello_json")
    for section in ("hello_json", "hello_ini", "api_key"):
        visit(page, f"/settings/{section}")
        expect(page.locator(f"form.settings-form[data-section={section}]")).to_be_visible()
        expect(page.locator(".notice")).to_contain_text("Your key reads only")
        fields = page.locator(".settings-form :is(input, select, textarea)")
        assert fields.count() > 0
        for number in range(fields.count()):
            expect(fields.nth(number)).to_be_disabled()
        expect(page.locator("[data-action=review], [data-action=save], [data-action=reveal]")).to_have_count(0)
    visit(page, "/history")
    expect(page.locator("table.history tbody tr[data-version]").first).to_be_visible()
    expect(page.locator("button[data-action=rollback]")).to_have_count(0)
    page.locator("table.history tbody tr[data-version]").last.locator("a:has-text('Compare with now')").click()
    shown(page, "/history/compare")
    expect(page.locator("#services-layer")).to_be_visible()
    expect(page.locator("button[data-action=rollback]")).to_have_count(0)

    # A write forged from the page: the cookie goes with it, the CSRF header does not...
    forge = """async ([token]) => {
      const headers = { "content-type": "application/json" };
      if (token) headers["x-csrf-token"] = token;
      const answer = await fetch("/api/v1/settings/hello_json", { method: "PUT", headers,
        body: JSON.stringify({ color: "red" }), credentials: "same-origin" });
      return { status: answer.status, body: await answer.json() };
    }"""
    session = page.evaluate("""async () => {
      const app = document.querySelector("script[type=module]").src;  // the page's own api.js module
      return (await import(new URL("api.js", app).href)).currentSession();
    }""")
    assert (session["name"], session["role"]) == ("viewer", "read")
    without = page.evaluate(forge, [None])
    assert without["status"] == 403, without
    assert "x-csrf-token" in without["body"]["detail"]
    # ...and with the read session's own token, its role is too weak.
    with_token = page.evaluate(forge, [session["csrf_token"]])
    assert with_token["status"] == 403, with_token
    assert "has the role 'read'; this needs 'write'" in with_token["body"]["detail"]
    assert hub.quickstart.data.config_ini.read_bytes() == config_before


def test_no_secret_reaches_the_page_unless_an_admin_reveals_it(hub: Hub, tabs: Tabs) -> None:
    hub.settle()
    plaintexts = config_secrets(hub)
    token = plaintexts["[hello_ini] token"]
    assert f"token = {token}" in hub.quickstart.ini_file.read_text()  # hello-ini's file holds it in clear
    watched = {**{name: value for name, value in plaintexts.items() if len(value) >= 8},
               "the admin key": hub.admin_key, "the read key": hub.read_key}
    history = hub.api.get("/api/v1/settings/history", params={"file": "config.ini", "limit": 200}).json()["entries"]
    first = history[-1]["file_version"] or history[-1]["version"]

    page = tabs.open(record=True)
    sign_in(page, hub.admin_key, "/")
    expect(page.locator(".live[data-live=on]")).to_be_attached()
    visit(page, "/settings")
    sections = [str(name) for name in page.locator("nav.sections a").all_inner_texts()]
    assert {"hello_ini", "api_key"} <= set(sections)
    for section in sections:
        visit(page, f"/settings/{section}")
        expect(page.locator(f"form.settings-form[data-section={section}]")).to_be_visible()
    # A new token typed and reviewed, not saved: the plan shows hello-ini's file with it masked.
    visit(page, "/settings/hello_ini")
    typed = secrets.token_hex(20)
    watched["the token typed"] = typed
    page.fill("#field-token", typed)
    expect(page.locator("[data-action=review]")).to_be_enabled()
    page.click("[data-action=review]")
    expect(page.locator(".service-plan[data-service=hello-ini] td.code.add")).to_contain_text("token = ********")
    for route in ("/history", "/env", "/system", "/init", "/notifications", "/audit"):
        visit(page, route)
    # The first version against now, and the plan of a rollback to it (hello-ini's file diff included).
    visit(page, f"/history/compare?from={first}&file=config.ini")
    page.click("button[data-action=rollback]")
    expect(page.locator("dialog[open] .service-plan[data-service=hello-ini]")).to_be_visible()
    page.click("dialog[open] button:has-text('Cancel')")
    visit(page, "/")

    bodies = [(received.url, received.body) for received in tabs.all_received(page)]
    bodies += [("the overview's server-sent events", event) for event in tabs.events(page)]
    assert any("token = ********" in body for _, body in bodies), "no diff of hello-ini's file reached the page"
    leaks = [(name, url) for url, body in bodies for name, value in watched.items() if value in body]
    assert leaks == [], f"secrets the page received: {leaks}"

    # Revealed by an admin, the token is in the form, and only that answer brought it.
    seen = len(tabs.all_received(page))
    visit(page, "/settings/hello_ini")
    page.click("[data-action=reveal]")
    expect(page.locator("#field-token")).to_have_value(token)
    bringing = [received.url for received in tabs.all_received(page)[seen:] if token in received.body]
    assert bringing, "the revealed token came in no answer"
    assert all(url.endswith("/api/v1/settings/hello_ini?reveal=true") for url in bringing), bringing


def test_a_revealed_secret_saved_with_another_key_is_not_counted_as_changed_after(hub: Hub, tabs: Tabs) -> None:
    hub.settle()
    page = tabs.open()
    sign_in(page, hub.admin_key, "/settings/hello_ini?reveal=1")
    expect(page.locator("#field-token")).not_to_have_value("")
    page.fill("#field-title", f"Saved with the token shown {secrets.token_hex(3)}")
    expect(page.locator(".form-status")).to_contain_text("1 key(s) changed")
    page.click("[data-action=review]")
    page.click("[data-action=save]")
    expect(page.locator("[data-outcome]")).to_have_attribute("data-outcome", "applied", timeout=SYNC_MS)
    page.fill("#field-title", f"Edited again {secrets.token_hex(3)}")
    expect(page.locator(".form-status")).to_contain_text("1 key(s) changed")  # the title, not the token


@pytest.mark.parametrize("size", ["desktop", "phone"])
def test_every_page_in_a_screenshot_and_none_scrolls_sideways_on_a_phone(hub: Hub, tabs: Tabs, size: str) -> None:
    folder = screenshots_dir()
    history = hub.api.get("/api/v1/settings/history", params={"file": "config.ini", "limit": 200}).json()["entries"]
    first, newest = (entry["file_version"] or entry["version"] for entry in (history[-1], history[0]))
    page = tabs.open(PHONE if size == "phone" else DESKTOP)
    wide: dict[str, dict[str, Any]] = {}

    def keep(name: str, *, full_page: bool = True) -> None:
        page.screenshot(path=str(folder / f"{name}-{size}.png"), full_page=full_page, animations="disabled")
        measured = sideways_scroll(page)
        if measured["scrollWidth"] > measured["innerWidth"]:
            wide[name] = measured

    page.goto("/")
    shown(page, "/signin")
    keep("sign-in")
    page.fill("#key", hub.admin_key)
    page.click("form.signin button[type=submit]")
    shown(page, "/")
    expect(page.locator(".live[data-live=on]")).to_be_attached()
    keep("overview")
    for name, route in (("settings", "/settings/hello_ini"), ("history", "/history"),
                        ("compare", f"/history/compare?from={first}&to={newest}&file=config.ini"),
                        ("env", "/env"), ("system", "/system"), ("init", "/init"),
                        ("notifications", "/notifications"), ("audit", "/audit")):
        visit(page, route)
        keep(name)
        if name == "compare":
            page.click("button[data-action=rollback]")
            # Its plan shown (the first version may no longer pass the rules: its ports may be taken today).
            expect(page.locator("dialog[open] .plan")).to_be_visible()
            keep("rollback-dialog", full_page=False)
            page.click("dialog[open] button:has-text('Cancel')")
    for name in ("sign-in", "overview", "settings", "history", "compare", "env", "system", "init", "notifications",
                 "audit", "rollback-dialog"):
        assert (folder / f"{name}-{size}.png").stat().st_size > 0
    if size == "phone":
        assert wide == {}, f"pages wider than the phone's screen: {wide}"


def test_the_back_button_and_a_bookmarked_comparison(hub: Hub, tabs: Tabs) -> None:
    page = tabs.open()
    sign_in(page, hub.admin_key, "/settings/hello_ini")
    page.click("#nav a:has-text('History')")
    shown(page, "/history")
    page.go_back()
    shown(page, "/settings/hello_ini")
    assert page.url.endswith("#/settings/hello_ini")
    expect(page.locator("form.settings-form[data-section=hello_ini]")).to_be_visible()
    expect(page.locator("nav.sections a[aria-current=page]")).to_have_text("hello_ini")
    page.go_forward()
    shown(page, "/history")
    page.reload()  # still signed in, on the same page
    shown(page, "/history")

    # A comparison's address, opened in a new browser: the key first, then that comparison.
    history = hub.api.get("/api/v1/settings/history", params={"file": "config.ini", "limit": 2}).json()["entries"]
    newer, older = (entry["file_version"] or entry["version"] for entry in history)
    bookmark = f"/history/compare?from={older}&to={newer}&file=config.ini"
    fresh = tabs.open()
    fresh.goto(f"/#{bookmark}")
    shown(fresh, "/signin")
    assert "next=" in fresh.url
    fresh.fill("#key", hub.admin_key)
    fresh.click("form.signin button[type=submit]")
    shown(fresh, "/history/compare")
    assert fresh.url.endswith(f"#{bookmark}")
    for layer in ("#keys-layer", "#file-layer", "#services-layer"):
        expect(fresh.locator(layer)).to_be_visible()
    expect(fresh.locator("main")).to_contain_text(f"{older[:8]} → {newer[:8]}")



def test_a_diff_shows_a_line_that_looks_like_a_file_header_as_a_line(hub: Hub, tabs: Tabs) -> None:
    # A removed "-- note" reads "--- note" in a unified diff, an added "++x" reads "+++x".
    unified = "--- a.sql (now)\n+++ a.sql (planned)\n@@ -1,3 +1,3 @@\n select 1;\n--- note\n+++x\n end;\n"
    page = tabs.open()
    page.goto("/")
    shown(page, "/signin")
    for mode in ("split", "unified"):
        cells = page.evaluate("""async ([text, mode]) => {
          const app = document.querySelector("script[type=module]").src;  // under /assets/DIGEST/
          const { diffView } = await import(new URL("diff.js", app).href);
          const view = diffView(text, { mode });
          return [...view.querySelectorAll("td.code")].map((cell) => [cell.className, cell.textContent]);
        }""", [unified, mode])
        kinds = {text: kind.split()[1] for kind, text in cells if text}
        assert kinds["-- note" if mode == "split" else "--- note"] == "del", cells
        assert kinds["++x" if mode == "split" else "+++x"] == "add", cells
        assert kinds["--- a.sql (now)"] == kinds["+++ a.sql (planned)"] == "file", cells
        if mode == "split":  # the headers side by side, each once
            assert [text for _, text in cells].count("--- a.sql (now)") == 1, cells


def test_the_keyboard_alone_signs_in_reaches_a_section_and_keeps_a_dialog_modal(hub: Hub, tabs: Tabs) -> None:
    page = tabs.open()
    page.goto("/")
    shown(page, "/signin")
    assert page.evaluate("document.activeElement.id") == "key"  # the field has the focus at once
    page.keyboard.type(hub.admin_key)
    page.keyboard.press("Enter")
    shown(page, "/")

    page.evaluate("document.activeElement.blur()")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to the page"
    page.keyboard.press("Enter")
    shown(page, "/")  # the skip link is no route: the page stays, with the focus in it
    assert page.evaluate("document.activeElement.id") == "main"

    page.focus("#nav a[href='#/settings']")
    page.keyboard.press("Enter")
    shown(page, "/settings")
    page.focus("nav.sections a[href='#/settings/hello_json']")
    page.keyboard.press("Enter")
    shown(page, "/settings/hello_json")

    visit(page, "/history")
    page.focus("table.history tbody tr:not(:first-child) button[data-action=rollback]")
    page.keyboard.press("Enter")
    expect(page.locator("dialog[open] .plan")).to_be_visible()
    # modal: the focus is in the dialog (on its confirmation, when the version still passes the rules)
    assert page.evaluate("document.activeElement.closest('dialog[open]') !== null")
    page.keyboard.press("Escape")
    expect(page.locator("dialog")).to_have_count(0)  # closed by Escape, nothing rolled back
    assert tabs.errors == []


def test_the_console_follows_the_system_dark_mode(hub: Hub, tabs: Tabs) -> None:
    page = tabs.open(color_scheme="dark")
    sign_in(page, hub.admin_key)
    page.screenshot(path=str(screenshots_dir() / "overview-dark-desktop.png"), full_page=True, animations="disabled")

    background = page.evaluate("getComputedStyle(document.documentElement).backgroundColor")
    red, green, blue = (int(part) for part in re.findall(r"\d+", background)[:3])
    assert max(red, green, blue) < 60, background  # dark, not the light theme's near-white
    assert tabs.errors == []
