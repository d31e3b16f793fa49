"""`/api/v1/notifications`: where events go (admin only: a destination's URL is a credential, and
adding one is choosing who learns of every change), the deliveries with their attempts, a test
send, and a replay of a delivery that finally failed."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Depends, Path, Query, Request
from pydantic import BaseModel, Field
from starlette.responses import Response

from apphub.api.auth import Principal, core_of, require
from apphub.api.problems import COMMON_RESPONSES, problem_response
from apphub.notify.destinations import ALL

router = APIRouter(prefix="/api/v1/notifications", tags=["notifications"])
require_admin = require("admin")

Admin = Annotated[Principal, Depends(require_admin)]
Name = Annotated[str, Path(description="A destination's name", examples=["ops-slack"])]
SQLITE_MAX = 2**63 - 1  # SQLite's integers: a larger id is none of ours (not a 500)
DeliveryId = Annotated[int, Path(ge=1, le=SQLITE_MAX, description="A delivery's id")]
FORBIDDEN: dict[int | str, dict[str, Any]] = {
    403: problem_response("Notifications are an admin's: the key's role is too weak")}
RESPONSES: dict[int | str, dict[str, Any]] = {
    **COMMON_RESPONSES, **FORBIDDEN,
    400: problem_response("The request cannot be read: malformed JSON, a missing body, a malformed parameter; "
                          "`errors` names each")}
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: problem_response("No such destination or delivery")}


class NewDestination(BaseModel):
    name: str = Field(description="1-64 lower-case letters, digits, '_' or '-'", examples=["ops-slack"])
    kind: Literal["webhook", "slack", "discord", "wecom"] = Field(
        description="`webhook`: a JSON POST signed as Standard Webhooks says; the others: that service's "
                    "incoming webhook (WeCom: a group robot)")
    url: str = Field(description="Where to POST; stored encrypted, never shown again",
                     examples=["https://hooks.slack.com/services/T000/B000/XXXX"])
    secret: str | None = Field(default=None, description="A webhook's signing secret (whsec_...); none: one is "
                                                         "made and answered once")
    events: list[str] = Field(default=[ALL], description="Event types, or `*` for all",
                              examples=[["settings.changed", "sync.failed"]])
    services: list[str] = Field(default=[], description="Only events about these services (none: all)")
    sections: list[str] = Field(default=[], description="Only events about these sections (none: all)")


@router.get("/destinations", summary="The destinations (URLs and secrets masked)", responses=RESPONSES)
def list_destinations(request: Request, _: Admin) -> dict[str, Any]:
    return {"destinations": [d.public() for d in core_of(request).notifications.destinations.all()]}


@router.post("/destinations", status_code=201, summary="Add a destination",
             responses={**RESPONSES, 422: problem_response("A field is wrong, or the name is taken; `errors` lists "
                                                           "every problem (a URL is never quoted)")})
def add_destination(request: Request, _: Admin, body: Annotated[NewDestination, Body()]) -> dict[str, Any]:
    added = core_of(request).notifications.destinations.add(
        body.name, body.kind, body.url, secret=body.secret, events=body.events, services=body.services,
        sections=body.sections)
    answer: dict[str, Any] = {"destination": added.public()}
    if added.secret is not None and body.secret is None:
        # made here: the receiver needs it to verify the signatures, and it is never shown again
        answer["secret"] = added.secret.reveal()
    return answer


@router.delete("/destinations/{name}", status_code=204, summary="Remove a destination (its pending deliveries "
               "are failed with it)", responses={**RESPONSES, **NOT_FOUND})
def remove_destination(name: Name, request: Request, _: Admin) -> Response:
    core_of(request).notifications.destinations.remove(name)
    return Response(status_code=204)


@router.post("/destinations/{name}/enable", summary="Enable a destination again (after a 410 Gone disabled it)",
             responses={**RESPONSES, **NOT_FOUND})
def enable_destination(name: Name, request: Request, _: Admin) -> dict[str, Any]:
    destinations = core_of(request).notifications.destinations
    destinations.set_enabled(name, True)
    return {"destination": destinations.get(name).public()}


@router.post("/destinations/{name}/disable", summary="Pause a destination: nothing is queued for it until it is "
             "enabled (what is pending stays pending)", responses={**RESPONSES, **NOT_FOUND})
def disable_destination(name: Name, request: Request, _: Admin) -> dict[str, Any]:
    destinations = core_of(request).notifications.destinations
    destinations.set_enabled(name, False, "disabled by an admin")
    return {"destination": destinations.get(name).public()}


@router.post("/destinations/{name}/test", status_code=202, summary="Queue a test event for this destination",
             responses={**RESPONSES, **NOT_FOUND})
def send_test(name: Name, request: Request, _: Admin) -> dict[str, Any]:
    return {"deliveries": core_of(request).notifications.test(name)}


@router.get("/deliveries", summary="Deliveries, newest first, with their last result", responses=RESPONSES)
def list_deliveries(request: Request, _: Admin,
                    destination: Annotated[str | None, Query(description="Only this destination's")] = None,
                    state: Annotated[Literal["pending", "delivered", "failed"] | None, Query()] = None,
                    before_id: Annotated[int | None, Query(ge=1, le=SQLITE_MAX, description="The page after this id")]
                    = None,
                    limit: Annotated[int, Query(ge=1, le=500)] = 50) -> dict[str, Any]:
    found = core_of(request).notifications.outbox.deliveries(destination=destination, state=state,
                                                             before_id=before_id, limit=limit)
    return {"deliveries": [delivery.as_dict() for delivery in found]}


@router.get("/deliveries/{delivery}", summary="A delivery and every attempt", responses={**RESPONSES, **NOT_FOUND})
def read_delivery(delivery: DeliveryId, request: Request, _: Admin) -> dict[str, Any]:
    outbox = core_of(request).notifications.outbox
    return {**outbox.get(delivery).as_dict(),
            "attempts": [attempt.__dict__ for attempt in outbox.attempts(delivery)]}


@router.post("/deliveries/{delivery}/replay", summary="Queue a delivery again, its retries from the start",
             responses={**RESPONSES, **NOT_FOUND})
def replay_delivery(delivery: DeliveryId, request: Request, _: Admin) -> dict[str, Any]:
    notifications = core_of(request).notifications
    found = notifications.outbox.replay(delivery)
    if notifications.sender is not None:
        notifications.sender.wake()
    return found.as_dict()
