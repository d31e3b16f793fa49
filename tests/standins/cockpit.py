"""Cockpit stand-in: the health probe of Cockpit 366, and nothing else (service-apis.md §4.3).

Cockpit has no API spec: `GET /ping` is documented by cockpit.conf(5) (`cockpit-366-cockpit.conf.5.adoc`:
exempt from the HTTPS redirect) and by service-apis.md §4.3 (200 `{"service":"cockpit"}`, CORS `*`). Any
other request is a violation and gets cockpit-ws's plain 404.
"""

from __future__ import annotations

from typing import Any

from tests.standins.base import Call, Recorded, Reply, StandIn


class CockpitStandIn(StandIn):
    """cockpit-ws at `url`, answering its health probe."""

    ROUTES = [("GET", r"/ping", "ping")]
    FACT_OPERATIONS = {("GET", "/ping")}

    def error_body(self, status: int, message: str) -> Any:
        return f"<html><head><title>{message}</title></head><body>{message}</body></html>\n".encode()

    def error(self, status: int, message: str, headers: dict[str, str] | None = None) -> Reply:
        return Reply(status, self.error_body(status, message), headers or {}, content_type="text/html; charset=utf8")

    def problems_of(self, request: Recorded) -> list[str]:
        if (request.method, request.path) in self.FACT_OPERATIONS:
            return []
        return [f"{request.method} {request.path}: Cockpit serves only GET /ping to a health check"]

    def ping(self, call: Call) -> Reply:
        return Reply(200, {"service": "cockpit"}, {"Access-Control-Allow-Origin": "*"})
