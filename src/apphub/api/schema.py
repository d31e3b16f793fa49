"""`/api/v1/schema`: what every section and key of config.ini and system.ini may hold, for the
console's forms and for any client that wants to check before it writes."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request

from apphub.api.auth import Principal, core_of, require_read
from apphub.api.problems import COMMON_RESPONSES
from apphub.store.schema import FileSchema
from apphub.store.secrets import MASK

router = APIRouter(prefix="/api/v1", tags=["schema"], responses=COMMON_RESPONSES)


def public_schema(schema: FileSchema) -> dict[str, Any]:
    """The schema as JSON; a secret's default, if it has one, is masked like any secret."""
    sections = {}
    for name, section in schema.sections.items():
        keys = {}
        for key, spec in section.keys.items():
            found = spec.model_dump(mode="json")
            if spec.secret and spec.default not in (None, ""):
                found["default"] = MASK
            keys[key] = found
        sections[name] = {"description": section.description, "extra_keys": section.extra_keys, "keys": keys}
    return {"extra_sections": schema.extra_sections, "sections": sections,
            "rules": [rule.model_dump(mode="json", by_alias=True, exclude_none=True) for rule in schema.rules]}


@router.get("/schema", summary="The schema: per file, section and key its type, description, default, "
                                "allowed values, whether it is secret and what a change needs")
def read_schema(request: Request, _: Annotated[Principal, Depends(require_read)]) -> dict[str, Any]:
    schema = core_of(request).schema
    return {"files": {"config.ini": public_schema(schema.config), "system.ini": public_schema(schema.system)},
            "sources": list(schema.sources)}
