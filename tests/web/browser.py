"""A real browser for the console's end-to-end tests: Debian's Chromium driven by Playwright's sync
API (never `playwright install`, which downloads a browser of its own and fails on these machines).

`Tabs` opens the pages of one test, each in a context of its own (its own cookies), and keeps
what a user cannot see but a test must: the uncaught errors of every page, and, when asked, every
response body the page received (the server-sent events included, which no response body holds
while their stream is open).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from playwright.sync_api import Browser, BrowserContext, Page, Playwright, Request, Response, expect

CHROMIUM = "/usr/bin/chromium"
# Headless, and nothing that reaches out of the machine (there is no network but the registries).
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
               "--disable-sync", "--no-first-run"]
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}
# Generous: beside a full parallel test run the page and the server answer slowly; a wait that
# succeeds returns as soon as it can.
WAIT_MS = 20_000
REPO = Path(__file__).resolve().parents[2]

expect.set_options(timeout=WAIT_MS)

# Runs before the console's scripts in every page: each `status` event an EventSource receives is
# kept, so that a test reads what the live stream brought (Playwright gives no body of an open stream).
RECORD_EVENTS = """
(() => {
  const Original = window.EventSource;
  window.__apphubEvents = [];
  window.EventSource = class extends Original {
    constructor(...args) {
      super(...args);
      this.addEventListener("status", (event) => window.__apphubEvents.push(event.data));
    }
  };
})();
"""


def launch(playwright: Playwright) -> Browser:
    return playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=LAUNCH_ARGS)


@dataclass
class Received:
    """One response a page received: where from, and its body as text."""

    url: str
    status: int
    body: str


@dataclass
class Tabs:
    """The pages one test opens, their uncaught errors and (when recorded) what they received."""

    browser: Browser
    base_url: str
    errors: list[str] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)
    _contexts: list[BrowserContext] = field(default_factory=list)
    _pending: set[Request] = field(default_factory=set)  # asked, with no response recorded yet

    def open(self, viewport: dict[str, int] | None = None, *, record: bool = False,
             color_scheme: Literal["light", "dark"] = "light") -> Page:
        context = self.browser.new_context(viewport=viewport or DESKTOP, base_url=self.base_url,  # type: ignore[arg-type]
                                           color_scheme=color_scheme)
        context.set_default_timeout(WAIT_MS)
        self._contexts.append(context)
        page = context.new_page()
        page.on("pageerror", lambda error: self.errors.append(f"{page.url}: {error}"))
        if record:
            page.add_init_script(RECORD_EVENTS)
            page.on("request", lambda request: self._pending.add(request))
            page.on("requestfailed", lambda request: self._pending.discard(request))
            page.on("response", self._keep)
        return page

    def _keep(self, response: Response) -> None:
        try:
            if response.headers.get("content-type", "").startswith("text/event-stream"):
                return  # open until the page closes it: read through RECORD_EVENTS instead
            try:
                body = response.text()
            except Exception as exc:  # a request the page abandoned (a hash change mid-load) has no body
                body = f"(no body: {exc})"
            self.received.append(Received(response.url, response.status, body))
        finally:
            self._pending.discard(response.request)

    def all_received(self, page: Page) -> list[Received]:
        """Every response recorded, once each request the page made so far has its own (or failed):
        Playwright tells of them after the page has them, so a page showing an answer is not enough."""
        for _ in range(WAIT_MS // 50):
            if not self._pending:
                return self.received
            page.wait_for_timeout(50)  # lets Playwright deliver the events it holds
        raise AssertionError(f"no response within {WAIT_MS} ms: {[request.url for request in self._pending]}")

    @staticmethod
    def events(page: Page) -> list[str]:
        """The `status` events the page's EventSources received so far (a page opened with record=True)."""
        found: list[str] = page.evaluate("window.__apphubEvents || []")
        return found

    def close(self) -> None:
        for context in self._contexts:
            context.close()
        self._contexts.clear()


def route_path(route: str) -> str:
    return route.split("?", 1)[0] or "/"


def shown(page: Page, route: str) -> None:
    """Wait until the console shows `route` (a hash route such as /settings/hello_json) with what it
    asked the API for, and did not fail drawing it."""
    main = page.locator(f'main[data-route="{route_path(route)}"]:not([aria-busy])')
    expect(main).to_be_attached()
    assert main.get_attribute("data-failed") is None, main.inner_text()


def visit(page: Page, route: str) -> None:
    """Go to `route` the way a link does (a hash change: same page, same session) and wait for it."""
    page.evaluate("(route) => { location.hash = route; }", f"#{route}")
    shown(page, route)


def sign_in(page: Page, key: str, route: str = "/") -> None:
    """Open `route` (a bookmark): the console asks for a key first, then shows that route."""
    page.goto(f"/#{route}")
    shown(page, "/signin")
    page.fill("#key", key)
    page.click("form.signin button[type=submit]")
    shown(page, route)


def screenshots_dir() -> Path:
    """Where the screenshots go: $APPHUB_SCREENSHOTS, else test-artifacts/console/ in the repository."""
    folder = Path(os.environ.get("APPHUB_SCREENSHOTS") or REPO / "test-artifacts" / "console")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def sideways_scroll(page: Page) -> dict[str, Any]:
    """How wide the document is against the window (a page that scrolls sideways is wider)."""
    found: dict[str, Any] = page.evaluate(
        "({scrollWidth: document.documentElement.scrollWidth, innerWidth: window.innerWidth})")
    return found
