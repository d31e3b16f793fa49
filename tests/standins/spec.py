"""The spec checker: is a request one the product's official API specification allows?

It reads an extract made by `extract_specs.py` (Swagger 2.0 for Gitea, OpenAPI 3 for Portainer and NPM) and
answers, for a recorded request: which operation it is (method + path template), and what is wrong with it:
an unknown operation, a missing required query or header parameter, a path parameter of the wrong type, a
body of a media type the operation does not take, a JSON or form body that does not validate against the
operation's schema, or credentials in none of the schemes its `security` allows. Response bodies can be
checked the same way (`Operation.response_problems`), which is how the stand-ins' own answers are tested.

Product facts that the specs get wrong or leave out are not patched into the extracts: a stand-in passes
them in (`body_overrides`, `security_overrides`, `scheme_checks`) with a comment saying why.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from email.message import Message
from email.parser import BytesParser
from email.policy import HTTP
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

import jsonschema_rs

if TYPE_CHECKING:
    from tests.standins.base import Recorded

SPECS = Path(__file__).resolve().parents[1] / "fixtures" / "standin-specs"
FORM_TYPES = ("multipart/form-data", "application/x-www-form-urlencoded")

# A security scheme's test: does this request carry credentials of that scheme (right or wrong ones)?
SchemeCheck = Callable[["Recorded"], bool]
# The keywords of a Swagger 2 non-body parameter that are JSON Schema.
PARAMETER_SCHEMA_KEYS = ("type", "format", "enum", "pattern", "minimum", "maximum", "minLength", "maxLength", "items")


@functools.cache
def load_document(name: str) -> dict[str, Any]:
    document: dict[str, Any] = json.loads((SPECS / f"{name}.json").read_text(encoding="utf-8"))
    return document


def media_type(request: Recorded) -> str:
    return request.headers.get("content-type", "").split(";")[0].strip().lower()


def form_fields(request: Recorded) -> dict[str, str | bytes] | None:
    """The fields of a multipart or urlencoded body (files as bytes), None when it is neither or is broken."""
    kind = media_type(request)
    if kind == "application/x-www-form-urlencoded":
        return dict(parse_qsl(request.body.decode("utf-8", "replace"), keep_blank_values=True))
    if kind != "multipart/form-data":
        return None
    head = f"Content-Type: {request.headers['content-type']}\r\n\r\n".encode()
    message = BytesParser(policy=HTTP).parsebytes(head + request.body)
    if not message.is_multipart():
        return None
    fields: dict[str, str | bytes] = {}
    for part in message.iter_parts():
        assert isinstance(part, Message)
        name = part.get_param("name", header="content-disposition")
        if not isinstance(name, str):
            return None
        payload = part.get_payload(decode=True)
        raw = payload if isinstance(payload, bytes) else b""
        fields[name] = raw if part.get_filename() else raw.decode("utf-8", "replace")
    return fields


def _coerce(value: str, schema: Mapping[str, Any]) -> Any:
    """A form or path value as the type its schema names (forms carry only strings)."""
    kind = schema.get("type")
    try:
        if kind == "integer":
            return int(value)
        if kind == "number":
            return float(value)
    except ValueError:
        return value
    if kind == "boolean":
        # strconv.ParseBool, which Go servers use for form booleans.
        truth = {"1": True, "t": True, "true": True, "0": False, "f": False, "false": False}
        return truth.get(value.lower(), value)
    return value


@dataclass
class Operation:
    """One method on one path template, with what it takes and who may call it."""

    spec: Spec
    method: str
    template: str
    body: dict[str, Any] = field(repr=False)
    parameters: list[dict[str, Any]] = field(repr=False)

    @property
    def operation_id(self) -> str:
        return str(self.body.get("operationId", f"{self.method} {self.template}"))

    def security(self) -> list[dict[str, Any]]:
        override = self.spec.security_overrides.get(self.operation_id)
        if override is not None:
            return [{name: [] for name in requirement} for requirement in override]
        return list(self.body.get("security", self.spec.document.get("security", [])))

    def problems(self, request: Recorded, path_values: dict[str, str], *, check_auth: bool = True) -> list[str]:
        return [*self._parameter_problems(request, path_values),
                *(f"body: {problem}" for problem in self.body_problems(request)),
                *(self.auth_problems(request) if check_auth else [])]

    def auth_problems(self, request: Recorded) -> list[str]:
        requirements = self.security()
        if not requirements:
            return []
        for requirement in requirements:
            if all(self.spec.carries(request, scheme) for scheme in requirement):
                return []
        wanted = " or ".join("+".join(requirement) or "anonymous" for requirement in requirements)
        scheme = request.headers.get("authorization", "").split(" ")[0]
        got = f"Authorization: {scheme} …" if scheme else "no Authorization header"
        return [f"auth: the spec wants {wanted}; got {got}"]

    def _parameter_problems(self, request: Recorded, path_values: dict[str, str]) -> list[str]:
        problems = []
        for parameter in self.parameters:
            name, where = parameter["name"], parameter["in"]
            schema = parameter.get("schema") or {k: v for k, v in parameter.items() if k in PARAMETER_SCHEMA_KEYS}
            if where == "path":
                value = path_values.get(name, "")
                if not (self.spec.valid(schema, value) or self.spec.valid(schema, _coerce(value, {"type": "integer"}))):
                    problems.append(f"path parameter {name}={value!r} does not match {schema_text(schema)}")
            elif where == "query" and name not in request.query and parameter.get("required"):
                problems.append(f"required query parameter {name!r} is missing")
            elif where == "header" and name.lower() not in request.headers and parameter.get("required"):
                problems.append(f"required header {name!r} is missing")
        return problems

    def body_problems(self, request: Recorded) -> list[str]:
        """What is wrong with the body: its media type, its syntax, or where it breaks the schema and how."""
        override = self.spec.body_overrides.get(self.operation_id)
        accepted = self.request_bodies()
        if not accepted:
            return [] if not request.body else ["the operation takes no body, but one was sent"]
        if not request.body:
            return ["the request body is required but missing"] if self._body_required() else []
        kind = media_type(request)
        if kind not in accepted:
            return [f"body of type {kind or '(none)'} but the operation takes {', '.join(sorted(accepted))}"]
        schema = override if override is not None else accepted[kind]
        if kind in FORM_TYPES:
            fields = form_fields(request)
            if fields is None:
                return [f"body is not valid {kind}"]
            properties = schema.get("properties", {})
            # A file part stands as a string: OpenAPI 3 types it {type: string, format: binary}.
            instance: Any = {name: "<file>" if isinstance(value, bytes) else _coerce(value, properties.get(name, {}))
                             for name, value in fields.items()}
        elif request.json is None:
            return ["body is not valid JSON"]
        else:
            instance = request.json
        return self.spec.errors(schema, instance)

    def request_bodies(self) -> dict[str, dict[str, Any]]:
        """Media type -> schema of the bodies this operation accepts."""
        if "requestBody" in self.body:  # OpenAPI 3
            request_body = self.spec.resolve(self.body["requestBody"])
            return {kind: content.get("schema", {}) for kind, content in request_body.get("content", {}).items()}
        consumes = self.body.get("consumes", self.spec.document.get("consumes", ["application/json"]))
        body = [parameter for parameter in self.parameters if parameter["in"] == "body"]
        if body:
            return {kind: body[0].get("schema", {}) for kind in consumes}
        form = [parameter for parameter in self.parameters if parameter["in"] == "formData"]
        if not form:
            return {}
        schema = {"type": "object", "required": [p["name"] for p in form if p.get("required")],
                  "properties": {p["name"]: {k: v for k, v in p.items() if k in ("type", "enum", "format")}
                                 for p in form if p.get("type") != "file"}}
        return {kind: schema for kind in consumes}

    def _body_required(self) -> bool:
        if "requestBody" in self.body:
            return bool(self.spec.resolve(self.body["requestBody"]).get("required"))
        return any(p["in"] == "body" and p.get("required") for p in self.parameters) or any(
            p["in"] == "formData" and p.get("required") for p in self.parameters)

    def response_problems(self, status: int, body: Any) -> list[str]:
        """What is wrong with a response: a status the operation does not declare, or a body off its schema."""
        responses = self.body.get("responses", {})
        declared = responses.get(str(status), responses.get("default"))
        if declared is None:
            return [f"status {status} is not declared (declared: {', '.join(sorted(responses))})"]
        declared = self.spec.resolve(declared)
        if "content" in declared:
            schema = declared["content"].get("application/json", {}).get("schema")
        else:
            schema = declared.get("schema")
        if schema is None:
            return []
        return [f"response: {message}" for message in self.spec.errors(schema, body)]


def schema_text(schema: Mapping[str, Any]) -> str:
    return json.dumps({key: value for key, value in schema.items() if key not in ("description", "example")})


class Spec:
    """One product's extracted specification, ready to say which operation a request is and what is wrong with it."""

    def __init__(self, name: str, *, body_overrides: Mapping[str, dict[str, Any]] | None = None,
                 security_overrides: Mapping[str, list[list[str]]] | None = None,
                 scheme_checks: Mapping[str, SchemeCheck] | None = None,
                 document: dict[str, Any] | None = None) -> None:
        self.name = name
        self.document = document if document is not None else load_document(name)
        self.body_overrides = dict(body_overrides or {})
        self.security_overrides = dict(security_overrides or {})
        self.scheme_checks = dict(scheme_checks or {})
        self.base_path = self._base_path()
        self._operations = [self._operation(template, method) for template, item in self.document["paths"].items()
                            for method in item if method != "parameters"]
        # Literal paths win over templated ones: /users/admin/check before /users/{id}.
        self._operations.sort(key=lambda op: -len(re.sub(r"\{[^}]+\}", "", op.template)))
        self._draft = jsonschema_rs.Draft202012Validator if str(self.document.get("openapi", "")).startswith(
            "3.1") else jsonschema_rs.Draft4Validator

    def _base_path(self) -> str:
        if "basePath" in self.document:
            return str(self.document["basePath"]).rstrip("/")
        return str(urlsplit(self.document["servers"][0]["url"]).path).rstrip("/")

    def _operation(self, template: str, method: str) -> Operation:
        item = self.document["paths"][template]
        body = item[method]
        shared = {(p["name"], p["in"]): p for p in map(self.resolve, item.get("parameters", []))}
        own = {(p["name"], p["in"]): p for p in map(self.resolve, body.get("parameters", []))}
        return Operation(self, method.upper(), template, body, list({**shared, **own}.values()))

    def resolve(self, node: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in node:
            target: Any = self.document
            for part in node["$ref"][2:].split("/"):
                target = target[part.replace("~1", "/").replace("~0", "~")]
            node = target
        return node

    def find(self, method: str, path: str) -> tuple[Operation, dict[str, str]] | None:
        """The operation a request is for, and the values of its path parameters."""
        if not path.startswith(self.base_path + "/"):
            return None
        relative = path[len(self.base_path):]
        for operation in self._operations:
            if operation.method != method:
                continue
            match = _template_regex(operation.template).fullmatch(relative)
            if match:
                return operation, match.groupdict()
        return None

    def check(self, request: Recorded, *, check_auth: bool = True) -> tuple[Operation | None, list[str]]:
        """The operation a request is for, and its problems, each naming method and path."""
        found = self.find(request.method, request.path)
        if found is None:
            return None, [f"{request.method} {request.path}: no such operation in the {self.name} spec "
                          f"(extract: tests/fixtures/standin-specs/{self.name}.json)"]
        operation, values = found
        problems = operation.problems(request, values, check_auth=check_auth)
        return operation, [f"{request.method} {request.path}: {problem}" for problem in problems]

    def carries(self, request: Recorded, scheme: str) -> bool:
        if scheme in self.scheme_checks:
            return self.scheme_checks[scheme](request)
        schemes = self.document.get("securityDefinitions") or self.document.get("components", {}).get(
            "securitySchemes", {})
        definition = schemes.get(scheme, {})
        authorization = request.headers.get("authorization", "")
        if definition.get("type") == "basic" or definition.get("scheme") == "basic":
            return authorization.lower().startswith("basic ")
        if definition.get("scheme") == "bearer":
            return authorization.lower().startswith("bearer ")
        if definition.get("type") == "apiKey":
            where = definition.get("in")
            name = definition["name"]
            return name.lower() in request.headers if where == "header" else name in request.query
        return False

    def errors(self, schema: Mapping[str, Any], instance: Any) -> list[str]:
        messages = []
        for error in _validator(self, json.dumps(schema, sort_keys=True)).iter_errors(instance):
            where = "/".join(str(part) for part in error.instance_path)
            messages.append(f"{where or '(root)'}: {error.message}")
        return messages

    def valid(self, schema: Mapping[str, Any], instance: Any) -> bool:
        return not self.errors(schema, instance)


@functools.cache
def _template_regex(template: str) -> re.Pattern[str]:
    pattern = re.sub(r"\\\{([^}]+)\\\}", r"(?P<\1>[^/]+)", re.escape(template))
    return re.compile(pattern)


@functools.lru_cache(maxsize=512)
def _validator(spec: Spec, schema_json: str) -> Any:
    # The schema is wrapped so that its "#/definitions/..." or "#/components/..." references resolve in the
    # extract; compiled validators are cached because a benchmark starts the stand-ins many times.
    document = spec.document
    root = {"allOf": [json.loads(schema_json)], **{key: document[key] for key in ("definitions", "components",
                                                                                 "responses") if key in document}}
    return spec._draft(root)
