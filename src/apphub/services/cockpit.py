"""Cockpit: reachable on its configured port, and its cockpit.conf as apphub renders it (service-apis.md §4).

Cockpit has nothing to initialise (it logs in the host's own users) and no version API without
a login: `GET /ping` answering `{"service": "cockpit"}` is the connection test. Its
configuration is a file the sync engine renders (the manifest's service that writes a
cockpit.conf); the step reports whether that file holds what apphub renders now.
"""

from __future__ import annotations

from apphub.errors import ServiceError, ServiceRefused
from apphub.services.base import Check, CheckTimer, ProductContext
from apphub.services.http import ProductClient
from apphub.services.steps import Done, Step


class Cockpit:
    name = "cockpit"
    title = "Cockpit"

    def __init__(self, context: ProductContext) -> None:
        self.context = context

    def secrets(self) -> list[str]:
        return []

    @property
    def url(self) -> str:
        host = str(self.context.system.get("cockpit_host") or "127.0.0.1")
        return f"http://{host}:{self.context.text('port')}"

    def steps(self) -> list[Step]:
        return [
            Step("reach", "GET /ping on its configured port answers as Cockpit", self._reach),
            Step("configuration", "cockpit.conf holds what apphub renders", self._configuration),
        ]

    def _reach(self) -> Done:
        with self.context.client(self.url) as client:
            self._ping(client)
        return Done(False, f"Cockpit answers at {self.url}")

    def _configuration(self) -> Done:
        if self.context.cockpit_conf is None:
            return Done(False, "no service of the manifest renders a cockpit.conf")
        as_rendered, detail = self.context.cockpit_conf()
        if as_rendered is False:
            raise ServiceRefused(f"cockpit: {detail}", 409)
        return Done(False, detail)

    @staticmethod
    def _ping(client: ProductClient) -> None:
        body = client.json(client.call("GET", "/ping", what="its ping"), what="its ping")
        if not isinstance(body, dict) or body.get("service") != "cockpit":
            raise ServiceRefused(f"cockpit: GET /ping answered {body!r}, not Cockpit's {{\"service\": \"cockpit\"}}"
                                 [:300], 200)

    def check(self) -> Check:
        timer = CheckTimer(self.name)
        try:
            with self.context.client(self.url) as client:
                self._ping(client)
        except ServiceError as exc:
            return timer.failed(exc)
        # Cockpit logs in the host's own users (PAM): apphub holds no account to test.
        return timer.result("healthy", authenticated=None, url=self.url)
