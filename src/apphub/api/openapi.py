"""The OpenAPI document: FastAPI's, corrected where FastAPI cannot be told what this server answers.

- Every documented error of `/api/v1` is `application/problem+json`. FastAPI lists a response's
  model under the route's own media type too (`application/json`), where no problem is ever sent.
- FastAPI adds `422 Validation Error` (its `HTTPValidationError`) to every route with a parameter or
  a body. This server answers such a request with a 400 problem (problems.request_validation_response),
  so that 422 is removed, and its schemas with it; a route whose 422 is real documents its own.

tests/api/test_contract.py checks the result against the live server.
"""

from __future__ import annotations

import copy
from typing import Any

from fastapi import FastAPI

from apphub.api.problems import PROBLEM_JSON

_FASTAPI_VALIDATION_ERROR = "#/components/schemas/HTTPValidationError"


def openapi_document(app: FastAPI) -> dict[str, Any]:
    """The document `/openapi.json` serves."""
    document = copy.deepcopy(app.openapi())
    for item in document.get("paths", {}).values():
        for operation in item.values():
            responses: dict[str, Any] = operation.get("responses", {})
            for status, response in list(responses.items()):
                content: dict[str, Any] = response.get("content", {})
                if _is_fastapi_validation_error(content):
                    del responses[status]
                elif PROBLEM_JSON in content:
                    content.pop("application/json", None)
    schemas: dict[str, Any] = document.get("components", {}).get("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    return document


def _is_fastapi_validation_error(content: dict[str, Any]) -> bool:
    return any(media.get("schema", {}).get("$ref") == _FASTAPI_VALIDATION_ERROR for media in content.values())
