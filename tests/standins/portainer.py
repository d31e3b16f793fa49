"""Portainer stand-in: status, first admin, login and environments of Portainer 2.23-2.44 (service-apis.md §2.2-2.3).

Spec: `portainer-ee-2.44.0-openapi-patched.yaml` (OpenAPI 3.0, the newest official one and the only one with
`X-Setup-Token`), extract `tests/fixtures/standin-specs/portainer.json`. Error bodies are libhttp's
`{"message", "details"}`; the spec has no error schema. Middleware as in the real server, in its order: the
admin-init timeout (303), CSRF for cookie-carrying mutations, then the bouncer (Bearer JWT or X-API-KEY).
"""

from __future__ import annotations

import base64
import json
import secrets
import uuid
from typing import Any

from tests.standins.base import Call, Recorded, Reply, StandIn
from tests.standins.spec import Spec, form_fields

COOKIE = "portainer_api_key"
REQUIRED_PASSWORD_LENGTH = 12
LOCAL_DOCKER = "unix:///var/run/docker.sock"
# Exempt from the admin-init timeout (http/adminmonitor: WithRedirect).
TIMEOUT_EXEMPT = {"/api/status", "/api/settings/public"}
SAFE_METHODS = {"GET", "HEAD", "OPTIONS", "TRACE"}


def _sends_bearer(request: Recorded) -> bool:
    # The bouncer trims the exact prefix "Bearer " (extractBearerToken); anything else is no JWT.
    return request.headers.get("authorization", "").startswith("Bearer ")


SPEC = Spec(
    "portainer",
    # The 2.44 spec spells AuthenticateUser's keys in lower case and requires an `apiKey`, a swag artefact
    # (service-apis.md §7): the handler's payload is Go fields without json tags, Username and Password, as
    # the same spec spells them for users/admin/init and as the docs show. Go would match other cases too;
    # the stand-in holds clients to the documented spelling.
    body_overrides={"AuthenticateUser": {"type": "object", "required": ["Username", "Password"],
                                         "properties": {"Username": {"type": "string"},
                                                        "Password": {"type": "string"}}}},
    scheme_checks={"jwt": _sends_bearer},
)


def _go_field(payload: dict[str, Any], name: str) -> Any:
    """A JSON field as Go's decoder finds it for a struct field: the exact key first, else any case."""
    if name in payload:
        return payload[name]
    return next((value for key, value in payload.items() if key.lower() == name.lower()), None)


def _cookies(request: Recorded) -> dict[str, str]:
    pairs = (item.strip().partition("=") for item in request.headers.get("cookie", "").split(";") if item.strip())
    return {name: value for name, _, value in pairs}


class PortainerStandIn(StandIn):
    """Portainer at `url` (the API under /api)."""

    ROUTES = [
        ("GET", r"/api/system/status", "status"),
        ("GET", r"/api/status", "status"),
        ("GET", r"/api/settings/public", "public_settings"),
        ("GET", r"/api/users/admin/check", "admin_check"),
        ("POST", r"/api/users/admin/init", "admin_init"),
        ("POST", r"/api/auth", "authenticate"),
        ("GET", r"/api/endpoints", "list_endpoints"),
        ("POST", r"/api/endpoints", "create_endpoint"),
    ]
    spec = SPEC

    def __init__(self, setup_token: str | None = None, version: str = "2.23.0") -> None:
        super().__init__()  # serves from here on, but nobody knows the port before we return
        self.setup_token = setup_token
        self.version = version
        self.instance_id = str(uuid.uuid4())
        self._admin: dict[str, Any] | None = None
        self._jwts: set[str] = set()
        self._endpoints: list[dict[str, Any]] = []
        self._init_window_expired = False
        self._csrf_token = secrets.token_urlsafe(32)

    # -- test helpers ---------------------------------------------------------------------------------

    def add_admin(self, username: str, password: str) -> None:
        """An admin as if initialised earlier (or by --admin-password-file)."""
        self._admin = {"Id": 1, "Username": username, "Password": password, "Role": 1}

    def expire_init_window(self) -> None:
        """The 5 minutes without an admin are over: /api/* answers 303 until a restart (a new stand-in)."""
        self._init_window_expired = True

    @property
    def admin(self) -> dict[str, Any] | None:
        """{"username", "password"} of the admin, or None while there is none."""
        admin = self._admin
        return None if admin is None else {"username": admin["Username"], "password": admin["Password"]}

    @property
    def endpoints(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(endpoint) for endpoint in self._endpoints]

    # -- the product ------------------------------------------------------------------------------------

    def error_body(self, status: int, message: str) -> Any:
        return {"message": message, "details": message}

    def fail(self, status: int, message: str, details: str) -> Reply:
        return Reply(status, {"message": message, "details": details})

    def problems_of(self, request: Recorded) -> list[str]:
        problems = super().problems_of(request)
        where = f"{request.method} {request.path}"
        if "x-api-key" in request.headers and "authorization" in request.headers:
            problems.append(f"{where}: sends both X-API-KEY and Authorization, which Portainer refuses (403)")
        if COOKIE in _cookies(request) and request.method not in SAFE_METHODS and "x-csrf-token" not in request.headers:
            problems.append(f"{where}: sends the {COOKIE} cookie without X-CSRF-Token, so the CSRF check "
                            "refuses it (403): keep no cookies")
        if (request.path == "/api/users/admin/init" and self.setup_token is not None and self._admin is None
                and "x-setup-token" not in request.headers):
            problems.append(f"{where}: X-Setup-Token is required on an uninitialised Portainer 2.43+ "
                            "(service-apis.md §2.2)")
        return problems

    def dispatch(self, request: Recorded, problems: list[str]) -> Reply:
        if self._init_window_expired and self._admin is None and request.path not in TIMEOUT_EXEMPT:
            return Reply(303, self.error_body(303, "Administrator initialization timeout"),
                         {"redirect-reason": "AdminInitTimeout"})
        if COOKIE in _cookies(request):
            if request.method not in SAFE_METHODS and request.headers.get("x-csrf-token") != self._csrf_token:
                # gorilla/csrf's own failure answer, in plain text.
                return Reply(403, b"Forbidden - CSRF token invalid\n", content_type="text/plain; charset=utf-8")
        elif "x-api-key" in request.headers and "authorization" in request.headers:
            message = "api key and auth header are not allowed at the same time"
            return self.fail(403, message, message)
        reply = super().dispatch(request, problems)
        if 200 <= reply.status < 300:
            reply.headers.setdefault("X-CSRF-Token", self._csrf_token)
        return reply

    def status(self, call: Call) -> Reply:
        return Reply(200, {"Version": self.version, "InstanceID": self.instance_id})

    def public_settings(self, call: Call) -> Reply:
        return Reply(200, {"AuthenticationMethod": 1, "RequiredPasswordLength": REQUIRED_PASSWORD_LENGTH,
                           "RequiresSetupToken": self.setup_token is not None and self._admin is None,
                           "EnableEdgeComputeFeatures": False, "LogoURL": "", "OAuthLoginURI": "",
                           "OAuthLogoutURI": "", "OAuthHideInternalAuth": False, "KubeconfigExpiry": "0",
                           "Features": {}})

    def admin_check(self, call: Call) -> Reply:
        if self._admin is None:
            return self.fail(404, "No administrator account found inside the database",
                             "Object not found inside the database")
        return Reply(204)

    def admin_init(self, call: Call) -> Reply:
        if self._admin is None and self.setup_token is not None and \
                call.request.headers.get("x-setup-token") != self.setup_token:
            return self.fail(403, "Invalid or missing setup token", "Invalid or missing setup token")
        payload = call.request.json
        if not isinstance(payload, dict):
            return self.fail(400, "Invalid request payload", "invalid JSON")
        username, password = _go_field(payload, "Username"), _go_field(payload, "Password")
        if not isinstance(username, str) or not username or any(c.isspace() for c in username):
            return self.fail(400, "Invalid request payload", "Invalid username. Must not contain any whitespace")
        if not isinstance(password, str) or not password:
            return self.fail(400, "Invalid request payload", "Invalid password")
        if self._admin is not None:
            return self.fail(409, "Admin user already initialized", "An administrator user already exists")
        if len(password) < REQUIRED_PASSWORD_LENGTH:
            return self.fail(400, "Password does not meet the requirements",
                             f"Password must be at least {REQUIRED_PASSWORD_LENGTH} characters long")
        self.add_admin(username, password)
        return Reply(200, self._user_json())

    def authenticate(self, call: Call) -> Reply:
        payload = call.request.json
        if not isinstance(payload, dict):
            return self.fail(400, "Invalid request payload", "invalid JSON")
        username, password = _go_field(payload, "Username"), _go_field(payload, "Password")
        if not isinstance(username, str) or not username or not isinstance(password, str) or not password:
            return self.fail(400, "Invalid request payload", "Invalid username or password")
        if self._admin is None or (username, password) != (self._admin["Username"], self._admin["Password"]):
            return self.fail(422, "Invalid credentials", "Unauthorized")
        jwt = self._jwt()
        self._jwts.add(jwt)
        return Reply(200, {"jwt": jwt}, {"Set-Cookie": f"{COOKIE}={jwt}; Path=/; HttpOnly; SameSite=Strict"})

    def list_endpoints(self, call: Call) -> Reply:
        refused = self._bounce(call.request)
        if refused:
            return refused
        reply = Reply(200, [dict(endpoint) for endpoint in self._endpoints])
        reply.headers["X-Total-Count"] = str(len(self._endpoints))
        return reply

    def create_endpoint(self, call: Call) -> Reply:
        refused = self._bounce(call.request)
        if refused:
            return refused
        # Portainer reads the body with r.FormValue, which knows forms only: a JSON body has no Name.
        fields = form_fields(call.request) or {}
        name = fields.get("Name")
        if not isinstance(name, str) or not name:
            return self.fail(400, "Invalid request payload", "Invalid environment name")
        try:
            creation_type = int(fields.get("EndpointCreationType", ""))
        except ValueError:
            creation_type = 0
        if creation_type not in range(1, 6):
            return self.fail(400, "Invalid request payload", "Invalid environment type value. Value must be one "
                             "of: 1 (Docker environment), 2 (Agent environment), 3 (Azure environment), "
                             "4 (Edge Agent environment) or 5 (Local Kubernetes environment)")
        url = str(fields.get("URL") or "")
        if creation_type == 4 and not url:
            return self.fail(400, "Invalid request payload", "Invalid environment URL")
        if any(endpoint["Name"] == name for endpoint in self._endpoints):
            return self.fail(409, "Name is not unique", "Name is not unique")
        try:
            group_id = int(fields.get("GroupID") or 1)
            tag_ids = json.loads(fields.get("TagIds") or "[]")
        except ValueError:
            return self.fail(400, "Invalid request payload", "Invalid GroupID or TagIds")
        url = url or (LOCAL_DOCKER if creation_type == 1 else "")
        tls = str(fields.get("TLS", "")).lower() in ("1", "t", "true")
        endpoint = _endpoint_json(len(self._endpoints) + 1, name, creation_type, url,
                                  str(fields.get("PublicURL") or ""), group_id, tag_ids,
                                  str(fields.get("ContainerEngine") or "docker"), tls)
        self._endpoints.append(endpoint)
        return Reply(200, dict(endpoint))

    # -- helpers ----------------------------------------------------------------------------------------

    def _bounce(self, request: Recorded) -> Reply | None:
        """The bouncer's answer to a caller without a valid JWT or API key, None to let it through."""
        if "x-api-key" in request.headers:
            return self.fail(401, "Invalid API key", "Unauthorized")  # the stand-in issues no API keys
        authorization = request.headers.get("authorization")
        token = authorization[len("Bearer "):] if authorization and _sends_bearer(request) else authorization
        token = token or _cookies(request).get(COOKIE)
        if not token:
            return self.fail(401, "A valid authorization token is missing", "Unauthorized")
        if token not in self._jwts:
            return self.fail(401, "Invalid JWT token", "Invalid JWT token")
        return None

    def _jwt(self) -> str:
        def part(data: dict[str, Any]) -> str:
            return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

        assert self._admin is not None
        claims = {"id": self._admin["Id"], "username": self._admin["Username"], "role": 1, "jti": secrets.token_hex(8)}
        return f"{part({'alg': 'HS256', 'typ': 'JWT'})}.{part(claims)}.{secrets.token_urlsafe(32)}"

    def _user_json(self) -> dict[str, Any]:
        assert self._admin is not None
        return {"Id": self._admin["Id"], "Username": self._admin["Username"], "Role": 1, "TokenIssueAt": 0,
                "UseCache": True, "ThemeSettings": {"color": ""}}


def _endpoint_json(endpoint_id: int, name: str, creation_type: int, url: str, public_url: str, group_id: int,
                   tag_ids: list[int], engine: str, tls: bool) -> dict[str, Any]:
    security = {key: False for key in (
        "allowBindMountsForRegularUsers", "allowContainerCapabilitiesForRegularUsers",
        "allowDeviceMappingForRegularUsers", "allowHostNamespaceForRegularUsers",
        "allowPrivilegedModeForRegularUsers", "allowSecurityOptForRegularUsers", "allowStackManagementForRegularUsers",
        "allowSysctlSettingForRegularUsers", "allowVolumeBrowserForRegularUsers", "enableHostManagementFeatures")}
    return {
        "Id": endpoint_id, "Name": name, "Type": creation_type, "URL": url, "PublicURL": public_url,
        "GroupId": group_id, "TagIds": tag_ids, "Status": 1, "ContainerEngine": engine,
        "TLSConfig": {"TLS": tls, "TLSSkipVerify": False}, "Snapshots": [], "EdgeKey": "", "EdgeCheckinInterval": 0,
        "LastCheckInDate": 0, "LocalTimeZone": "", "ComposeSyntaxMaxVersion": "", "EnableImageNotification": False,
        "Agent": {"Version": ""}, "Edge": {"AsyncMode": False, "CommandInterval": 0, "PingInterval": 0,
                                           "SnapshotInterval": 0},
        "ChangeWindow": {"Enabled": False, "EndTime": "", "StartTime": ""},
        "Kubernetes": {"Configuration": {"AllowNoneIngressClass": False, "IngressAvailabilityPerNamespace": True},
                       "Flags": {"IsServerIngressClassDetected": False, "IsServerMetricsDetected": False,
                                 "IsServerStorageDetected": False}, "Snapshots": []},
        "SecuritySettings": security, "StatusMessage": {"detail": "", "summary": ""},
    }
