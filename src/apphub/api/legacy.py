"""Websoft9's routes, kept as its clients (the Cockpit settings plugin) call them.

`GET /api/settings`, `GET /api/settings/{section}`, `PUT /api/settings/{section}?key=K&value=V`
(existing keys only), errors as `{"message", "details"}` with 400 for client mistakes. One change
on purpose (DESIGN §10): secrets are masked here too, where Websoft9 returned them in plaintext.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request

from apphub.api.auth import Principal, check_may_change, core_of, require_read, require_write
from apphub.api.problems import LEGACY_RESPONSES, LEGACY_WRITE_RESPONSES
from apphub.api.settings import actor_of
from apphub.api.sync import sync_after_write
from apphub.store.snapshot import Snapshot

router = APIRouter(prefix="/api", tags=["websoft9"], responses=LEGACY_RESPONSES)

# Websoft9's AppSettings model (classic 2.2.17): the sections and keys GET /api/settings returns,
# and which of them it types as integers. Everything else in config.ini is left out, as there.
APP_SETTINGS_FIELDS: dict[str, tuple[str, ...]] = {
    "nginx_proxy_manager": ("base_url", "user_name", "user_pwd", "listen_port", "docker0_ip", "ssl_cert", "ssl_key"),
    "gitea": ("base_url", "user_name", "user_pwd"),
    "portainer": ("base_url", "user_name", "user_pwd"),
    "api_key": ("key",),
    "domain": ("wildcard_domain",),
    "cockpit": ("port",),
}
INTEGER_FIELDS = {("nginx_proxy_manager", "listen_port"), ("cockpit", "port")}


def app_settings(snapshot: Snapshot) -> dict[str, dict[str, Any]]:
    shown: dict[str, dict[str, Any]] = {}
    for section, fields in APP_SETTINGS_FIELDS.items():
        if not snapshot.document.has_section(section):
            continue
        values = snapshot.public_section(section, typed=False)
        shown[section] = {}
        for field in fields:
            if field not in values:
                continue
            value = values[field]
            shown[section][field] = int(value) if (section, field) in INTEGER_FIELDS and value.isdigit() else value
    return shown


@router.get("/settings", summary="Websoft9: the AppSettings sections (secrets masked)")
async def legacy_read_all(request: Request, _: Annotated[Principal, Depends(require_read)]) -> dict[str, Any]:
    return app_settings(core_of(request).config.snapshot())


@router.get("/settings/{section}", summary="Websoft9: one section as strings")
async def legacy_read_section(section: str, request: Request,
                              _: Annotated[Principal, Depends(require_read)]) -> dict[str, Any]:
    return core_of(request).config.snapshot().public_section(section, typed=False)


@router.put("/settings/{section}", summary="Websoft9: set one existing key", responses=LEGACY_WRITE_RESPONSES)
def legacy_update(
    section: str,
    request: Request,
    principal: Annotated[Principal, Depends(require_write)],
    key: Annotated[str, Query(description="An existing key of the section")],
    value: Annotated[str, Query(description="Its new value")],
) -> dict[str, Any]:
    check_may_change(principal, {section: [key]})
    result = core_of(request).config.update({section: {key: value}}, actor_of(request, principal),
                                            existing_only=True)
    sync_after_write(request, result.changed, wait=False, timeout=0)
    return result.snapshot.public_section(section, typed=False)
