"""The API description: /openapi.json lists the routes and the x-api-key scheme; /docs is Swagger UI."""

from __future__ import annotations

from typing import Any

import httpx

from tests.api.conftest import assert_problem
from tests.conftest import LiveServer

ROUTES = {
    "/healthz": {"get"},
    "/api/v1/settings": {"get", "put"},
    "/api/v1/settings/{section}": {"get", "put"},
    "/api/v1/settings/{section}/{key}": {"delete"},
    "/api/v1/system": {"get"},
    "/api/v1/system/{section}": {"get"},
    "/api/v1/audit": {"get"},
    "/api/settings": {"get"},
    "/api/settings/{section}": {"get", "put"},
    "/api/v1/settings/plan": {"post"},
    "/api/v1/settings/reload": {"post"},
    "/api/v1/sync/status": {"get"},
    "/metrics": {"get"},
}


def document(client: httpx.Client) -> dict[str, Any]:
    response = client.get("/openapi.json")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    body: dict[str, Any] = response.json()
    return body


def test_openapi_lists_every_route_and_method(module_reader: httpx.Client) -> None:
    spec = document(module_reader)

    assert spec["openapi"].startswith("3.")
    assert spec["info"]["title"]
    assert {path: set(item) for path, item in spec["paths"].items()} == ROUTES


def test_openapi_declares_the_x_api_key_header_on_every_route_but_healthz(module_reader: httpx.Client) -> None:
    spec = document(module_reader)
    schemes = spec["components"]["securitySchemes"]

    [(name, scheme)] = schemes.items()
    assert scheme == {**scheme, "type": "apiKey", "in": "header", "name": "x-api-key"}
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            security = operation.get("security", [])
            if path == "/healthz":
                assert security == [], (method, path)
            else:
                assert {name: []} in security, (method, path)


def test_openapi_describes_the_parameters_clients_need(module_reader: httpx.Client) -> None:
    paths = document(module_reader)["paths"]

    def parameters(path: str, method: str) -> dict[str, dict[str, Any]]:
        return {p["name"]: p for p in paths[path][method].get("parameters", [])}

    legacy_put = parameters("/api/settings/{section}", "put")
    assert legacy_put["key"]["in"] == legacy_put["value"]["in"] == "query"
    assert legacy_put["key"]["required"]
    assert legacy_put["value"]["required"]
    assert parameters("/api/v1/settings/{section}", "put")["if-match"]["in"] == "header"
    assert parameters("/api/v1/settings", "get")["reveal"]["in"] == "query"
    assert {"section", "key", "actor", "source", "since", "until", "before", "limit"} <= set(
        parameters("/api/v1/audit", "get"))
    assert "requestBody" in paths["/api/v1/settings"]["put"]


def test_openapi_documents_the_status_of_a_rejected_request(module_reader: httpx.Client,
                                                            module_admin: httpx.Client) -> None:
    # A client generated from the document must find the status the server answers a bad body with.
    operation = document(module_reader)["paths"]["/api/v1/settings/{section}"]["put"]
    response = module_admin.put("/api/v1/settings/gitea", json=["not", "an", "object"])

    assert_problem(response, response.status_code)
    assert str(response.status_code) in operation["responses"], sorted(operation["responses"])


def test_docs_is_the_swagger_page_pointing_at_the_document(module_reader: httpx.Client) -> None:
    response = module_reader.get("/docs")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "swagger-ui" in response.text
    assert "/openapi.json" in response.text


def test_docs_and_openapi_need_a_key(module_server: LiveServer) -> None:
    with module_server.client() as client:
        for path in ("/docs", "/openapi.json"):
            assert_problem(client.get(path), 401, "No API Key provided")
