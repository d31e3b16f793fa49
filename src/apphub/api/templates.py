"""`/api/v1/templates`: configuration templates (templates/), listed, shown, previewed with the
sync's plan, and applied as one ordinary write of config.ini (audited with the source `template`)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Path, Request
from pydantic import BaseModel, Field
from starlette.responses import Response

from apphub.api.auth import Principal, check_may_change, check_may_compare_secrets, core_of, require_read, require_write
from apphub.api.models import WriteAnswer, ok
from apphub.api.problems import COMMON_RESPONSES, WRITE_RESPONSES, problem_response
from apphub.api.settings import Message, actor_of, write_response
from apphub.api.sync import WAIT_DEFAULT_S, Wait, WaitTimeout, sync_after_write
from apphub.templates.apply import apply, preview
from apphub.templates.catalog import Catalog

router = APIRouter(prefix="/api/v1/templates", tags=["templates"])

Name = Annotated[str, Path(description="A template's name", examples=["hardened-production"])]
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: problem_response("No such template")}
INVALID: dict[int | str, dict[str, Any]] = {
    400: problem_response("The request cannot be read: malformed JSON, a body that is not {\"variables\": {...}}"),
    413: problem_response("The body is over 1 MiB"),
    422: problem_response("A variable is missing, unknown or of the wrong type, or the settings it makes are refused "
                          "by the schema or the rules; `errors` lists every problem"),
}


class Variables(BaseModel):
    variables: dict[str, str | int | bool] = Field(default_factory=dict, description="The template's variables",
                                                   examples=[{"domain": "example.org", "cockpit_port": 9091}])

    def as_text(self) -> dict[str, str]:
        return {name: ("true" if value else "false") if isinstance(value, bool) else str(value)
                for name, value in self.variables.items()}


def _catalog(request: Request) -> Catalog:
    return Catalog(core_of(request).data.root)


@router.get("", summary="The configuration templates (shipped, and the operator's)", responses=COMMON_RESPONSES)
def list_templates(request: Request, _: Annotated[Principal, Depends(require_read)]) -> dict[str, Any]:
    catalog = _catalog(request)
    return {"templates": [template.summary() for template in catalog.all().values()], "errors": catalog.problems}


@router.get("/{name}", summary="A template: its variables and the settings it makes",
            responses={**COMMON_RESPONSES, **NOT_FOUND})
def show_template(name: Name, request: Request, _: Annotated[Principal, Depends(require_read)]) -> dict[str, Any]:
    return _catalog(request).get(name).as_dict(core_of(request).config.schema.is_secret)


@router.post("/{name}/preview", summary="What applying a template would change and do to each service; "
                                        "nothing is written",
             responses={**COMMON_RESPONSES, **NOT_FOUND, **INVALID,
                        403: problem_response("A template that sets secret keys needs an admin key to preview")})
def preview_template(name: Name, request: Request, principal: Annotated[Principal, Depends(require_read)],
                     body: Annotated[Variables | None, Body()] = None) -> dict[str, Any]:
    core = core_of(request)
    template = _catalog(request).get(name)
    check_may_compare_secrets(principal, core.config.schema.is_secret, template.settings, "previewing a template")
    proposed, changes = preview(core.config, template, (body or Variables()).as_text())
    engine = getattr(request.app.state, "engine", None)
    return {"template": name, "version": proposed.version, "changes": [change.__dict__ for change in changes],
            "plan": engine.plan(proposed).to_dict() if engine is not None else None}


@router.post("/{name}/apply", summary="Apply a template: one validated, audited write of config.ini",
             responses={**ok(WriteAnswer), **WRITE_RESPONSES, **NOT_FOUND})
def apply_template(name: Name, request: Request, principal: Annotated[Principal, Depends(require_write)],
                   body: Annotated[Variables | None, Body()] = None, wait: Wait = False,
                   wait_timeout: WaitTimeout = WAIT_DEFAULT_S, message: Message = None) -> Response:
    template = _catalog(request).get(name)
    variables = (body or Variables()).as_text()
    check_may_change(principal, {section: list(keys) for section, keys in template.settings.items()})
    result = apply(core_of(request).config, template, variables, actor_of(request, principal), message)
    return write_response(result, list(template.settings), sync_after_write(request, result.changed, wait,
                                                                            wait_timeout))

