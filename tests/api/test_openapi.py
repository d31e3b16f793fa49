"""The API description: /openapi.json lists the routes and the x-api-key scheme; /docs is Swagger UI."""

from __future__ import annotations

from typing import Any

import httpx

from tests.api.conftest import PROBLEM_JSON, assert_problem
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
    "/api/v1/settings/validate": {"post"},
    "/api/v1/settings/{section}/{key}/explain": {"get"},
    "/api/v1/settings/reload": {"post"},
    "/api/v1/sync/status": {"get"},
    "/api/v1/sync/events": {"get"},
    "/api/v1/schema": {"get"},
    "/api/v1/session": {"get", "post", "delete"},
    "/metrics": {"get"},
    "/api/v1/settings/history": {"get"},
    "/api/v1/settings/history/{version}": {"get"},
    "/api/v1/settings/diff": {"get"},
    "/api/v1/settings/rollback": {"post"},
    "/api/v1/settings/rollback/plan": {"post"},
    "/api/v1/history/status": {"get"},
    "/api/v1/env": {"get"},
    "/api/v1/env/{scope}": {"get", "put"},
    "/api/v1/env/{scope}/{name}": {"put", "delete"},
    "/api/v1/env/{scope}/plan": {"post"},
    "/api/v1/services": {"get"},
    "/api/v1/services/{name}/health": {"get"},
    "/api/v1/services/{name}/dependencies": {"get"},
    "/api/v1/services/{name}/config": {"get"},
    "/api/v1/init/status": {"get"},
    "/api/v1/init": {"post"},
    "/api/v1/environments": {"get"},
    "/api/v1/environments/diff": {"get"},
    "/api/v1/environments/promote": {"post"},
    "/api/v1/environments/{name}": {"get"},
    "/api/v1/environments/{name}/{section}": {"put"},
    "/api/v1/environments/{name}/{section}/{key}": {"delete"},
    "/api/v1/templates": {"get"},
    "/api/v1/templates/{name}": {"get"},
    "/api/v1/templates/{name}/preview": {"post"},
    "/api/v1/templates/{name}/apply": {"post"},
    "/api/v1/notifications/destinations": {"get", "post"},
    "/api/v1/notifications/destinations/{name}": {"delete"},
    "/api/v1/notifications/destinations/{name}/enable": {"post"},
    "/api/v1/notifications/destinations/{name}/disable": {"post"},
    "/api/v1/notifications/destinations/{name}/test": {"post"},
    "/api/v1/notifications/deliveries": {"get"},
    "/api/v1/notifications/deliveries/{delivery}": {"get"},
    "/api/v1/notifications/deliveries/{delivery}/replay": {"post"},
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


def test_openapi_declares_the_x_api_key_header_on_every_route_but_healthz_and_sign_in(
        module_reader: httpx.Client) -> None:
    spec = document(module_reader)
    schemes = spec["components"]["securitySchemes"]

    [(name, scheme)] = schemes.items()
    assert scheme == {**scheme, "type": "apiKey", "in": "header", "name": "x-api-key"}
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            security = operation.get("security", [])
            if path == "/healthz" or (method, path) == ("post", "/api/v1/session"):  # open: the console's sign-in
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


# -- the document says what the server answers -----------------------------------------------------


def test_metrics_is_documented_as_the_prometheus_text_it_serves(module_reader: httpx.Client) -> None:
    ok = document(module_reader)["paths"]["/metrics"]["get"]["responses"]["200"]
    response = module_reader.get("/metrics")

    assert response.status_code == 200
    assert ok["content"] == {"text/plain; version=0.0.4": {}}  # no JSON schema: it is not JSON
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    assert "# TYPE apphub_sync_stage_seconds histogram" in response.text


def test_the_errors_of_a_request_that_cannot_be_read_are_documented(module_reader: httpx.Client,
                                                                     module_admin: httpx.Client) -> None:
    schemas = document(module_reader)["components"]["schemas"]
    variants = schemas["Problem"]["properties"]["errors"]["anyOf"]
    documented = {variant["items"]["$ref"].rsplit("/", 1)[1] for variant in variants if variant.get("type") == "array"}
    unreadable = module_admin.get("/api/v1/audit", params={"limit": "ten"})
    refused = module_admin.put("/api/v1/settings/cockpit", json={"port": "http"})

    assert documented == {"FieldProblem", "RequestProblem"}
    for response, status, item in ((unreadable, 400, "RequestProblem"), (refused, 422, "FieldProblem")):
        errors = assert_problem(response, status)["errors"]
        assert isinstance(errors, list)
        assert errors
        for error in errors:
            assert set(error) == set(schemas[item]["properties"]), (item, error)


def test_every_problem_is_documented_as_problem_json_only(module_reader: httpx.Client) -> None:
    spec = document(module_reader)

    assert "HTTPValidationError" not in spec["components"]["schemas"]  # FastAPI's 422, never sent
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            for status, response in operation["responses"].items():
                content = response.get("content", {})
                if any("Problem" in str(media.get("schema")) for media in content.values()):
                    assert set(content) == {PROBLEM_JSON}, (method, path, status, content)


def test_every_route_behind_a_key_documents_its_401_and_its_500(module_reader: httpx.Client) -> None:
    for path, item in document(module_reader)["paths"].items():
        for method, operation in item.items():
            statuses = set(operation["responses"])
            if path == "/healthz":
                assert statuses == {"200"}
            elif path.startswith("/api/settings"):  # Websoft9 answers 400 to a missing key
                assert {"400", "500"} <= statuses, (method, path)
            else:
                assert {"401", "500"} <= statuses, (method, path)
                assert "WWW-Authenticate" in operation["responses"]["401"]["headers"]


def test_the_audit_route_documents_its_400_and_the_bound_of_before(module_reader: httpx.Client) -> None:
    operation = document(module_reader)["paths"]["/api/v1/audit"]["get"]
    before = next(parameter for parameter in operation["parameters"] if parameter["name"] == "before")

    assert "400" in operation["responses"]
    assert "422" not in operation["responses"]
    assert before["schema"]["anyOf"][0]["maximum"] == 2**63 - 1


def test_reads_document_their_etag_and_304_and_writes_their_412(module_reader: httpx.Client) -> None:
    paths = document(module_reader)["paths"]

    for path in ("/api/v1/settings", "/api/v1/settings/{section}", "/api/v1/system", "/api/v1/system/{section}"):
        read = paths[path]["get"]
        assert "ETag" in read["responses"]["200"]["headers"], path
        assert "ETag" in read["responses"]["304"]["headers"], path
        assert "if-none-match" in {parameter["name"] for parameter in read["parameters"]}, path
    for path, method in (("/api/v1/settings", "put"), ("/api/v1/settings/{section}", "put"),
                         ("/api/v1/settings/{section}/{key}", "delete")):
        write = paths[path][method]
        assert {"412", "413", "422", "507"} <= set(write["responses"]), path
        assert "ETag" in write["responses"]["200"]["headers"], path


def test_the_answers_of_success_are_described(module_reader: httpx.Client) -> None:
    paths = document(module_reader)["paths"]
    described = {
        ("/healthz", "get"): "Health",
        ("/api/v1/settings", "get"): "SettingsRead",
        ("/api/v1/system", "get"): "SettingsRead",
        ("/api/v1/settings/{section}", "get"): "SectionRead",
        ("/api/v1/system/{section}", "get"): "SectionRead",
        ("/api/v1/settings", "put"): "WriteAnswer",
        ("/api/v1/settings/{section}", "put"): "WriteAnswer",
        ("/api/v1/settings/{section}/{key}", "delete"): "WriteAnswer",
        ("/api/v1/audit", "get"): "AuditPage",
    }

    for (path, method), model in described.items():
        schema = paths[path][method]["responses"]["200"]["content"]["application/json"]["schema"]
        assert schema == {"$ref": f"#/components/schemas/{model}"}, (method, path, schema)
