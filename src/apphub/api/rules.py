"""`POST /api/v1/settings/validate`: would a proposal be accepted, with every problem the schema
and the rules find, writing nothing; `GET .../{key}/explain`: where a key's value comes from."""

from __future__ import annotations

import os
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Query, Request

from apphub.api.auth import (
    Principal,
    check_may_compare_secrets,
    core_of,
    findings_shown_to,
    require_read,
    require_write,
)
from apphub.api.models import Explanation, Validation, ok
from apphub.api.problems import COMMON_RESPONSES, problem_response
from apphub.environments.overlays import BASE
from apphub.errors import FieldError, KeyNotFound
from apphub.store.substitution import explain

router = APIRouter(prefix="/api/v1", tags=["settings"])

VALIDATE_RESPONSES: dict[int | str, dict[str, Any]] = {
    **ok(Validation),
    **COMMON_RESPONSES,
    400: problem_response("The request cannot be read: malformed JSON, a body that is not an object of sections"),
    403: problem_response("The key's role is too weak (write needed; admin to validate secret values)"),
    409: problem_response("config.ini does not parse (a hand edit to fix)"),
    413: problem_response("The body is over 1 MiB"),
}


@router.post("/settings/validate", summary="Check a proposed change (or the files as they are), writing nothing",
             responses=VALIDATE_RESPONSES)
def validate(request: Request, principal: Annotated[Principal, Depends(require_write)],
             body: Annotated[dict[str, dict[str, Any]] | None,
                             Body(description="Proposed {section: {key: value}} for config.ini, judged as a write "
                                              "would be (on the keys it sets); none: config.ini and system.ini "
                                              "as they are, every key",
                                  examples=[{"gitea": {"user_pwd": "admin123"}}])] = None) -> dict[str, Any]:
    core = core_of(request)
    check_may_compare_secrets(principal, core.config.schema.is_secret, _keys_of(body), "validating")
    findings = core.config.judge(body) if body else core.findings()
    schemas = {core.system.name: core.system.schema}
    return answer(findings_shown_to(principal, findings, lambda finding: schemas.get(
        finding.file or "", core.config.schema).is_secret(finding.section, finding.key or "")))


def _keys_of(body: dict[str, dict[str, Any]] | None) -> dict[str, list[str]]:
    return {section: list(keys) for section, keys in (body or {}).items() if isinstance(keys, dict)}


def answer(findings: list[FieldError]) -> dict[str, Any]:
    errors = [finding.as_dict() for finding in findings if finding.severity == "error"]
    warnings = [finding.as_dict() for finding in findings if finding.severity != "error"]
    return {"valid": not errors, "errors": errors, "warnings": warnings}


@router.get("/settings/{section}/{key}/explain", summary="Where a key's effective value comes from",
            responses={**ok(Explanation), **COMMON_RESPONSES,
                       404: problem_response("No such key (and no default), or no such environment"),
                       422: problem_response("`environment` is not an environment's name"),
                       409: problem_response("config.ini does not parse (a hand edit to fix)")})
def explain_key(section: str, key: str, request: Request, _: Annotated[Principal, Depends(require_read)],
                environment: Annotated[str | None, Query(description="As this environment sees it (`base`: "
                                                                     "config.ini alone); default: the one running")]
                = None) -> dict[str, Any]:
    core = core_of(request)
    name = environment or core.environments.active()
    if name is not None and name != BASE:
        core.environments.store(name)  # 404 for an unknown one
    try:
        return explain(core.config.snapshot(), section, key, os.environ, core.environments.overlay(name)).as_dict()
    except KeyError:
        raise KeyNotFound(section, key, "config.ini") from None
