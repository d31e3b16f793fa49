"""The Gitea stand-in answers as Gitea 1.26.3 does (service-apis.md §1.3-1.5) and as its swagger allows."""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.standins import GiteaStandIn

ADMIN = ("root", "root-password")
CLI_SCRIPT = Path(__file__).resolve().parent / "gitea-cli.sh"
BUSYBOX = Path("/bin/busybox")


@pytest.fixture
def gitea(gitea_standin: GiteaStandIn) -> GiteaStandIn:
    gitea_standin.add_admin(*ADMIN, email="root@corp.example")
    return gitea_standin


@pytest.fixture
def client(gitea_standin: GiteaStandIn) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=gitea_standin.url, timeout=5) as opened:
        yield opened


def make_token(client: httpx.Client, scopes: list[str], name: str = "config-center") -> str:
    answer = client.post(f"/api/v1/users/{ADMIN[0]}/tokens", json={"name": name, "scopes": scopes}, auth=ADMIN)
    assert answer.status_code == 201, answer.text
    return str(answer.json()["sha1"])


def test_health_passes_and_fails_with_424(gitea_standin: GiteaStandIn, client: httpx.Client) -> None:
    answer = client.get("/api/healthz")
    assert answer.status_code == 200
    assert answer.json()["status"] == "pass"
    assert answer.json()["description"] == "Gitea: Git with a cup of tea"
    assert set(answer.json()["checks"]) == {"database:ping", "cache:ping"}
    gitea_standin.unhealthy()
    answer = client.get("/api/healthz")
    assert (answer.status_code, answer.json()["status"]) == (424, "fail")
    assert client.get("/api/v1/version").json() == {"version": "1.26.3"}
    assert gitea_standin.violations == []


def test_the_current_user_takes_basic_or_a_header_token(gitea: GiteaStandIn, client: httpx.Client) -> None:
    user = client.get("/api/v1/user", auth=ADMIN)
    assert user.status_code == 200
    assert (user.json()["login"], user.json()["is_admin"], user.json()["email"]) == ("root", True, "root@corp.example")
    token = make_token(client, ["read:user"])
    for scheme in ("token", "Bearer"):
        assert client.get("/api/v1/user", headers={"Authorization": f"{scheme} {token}"}).status_code == 200
    assert gitea.violations == []
    anonymous = client.get("/api/v1/user")
    assert (anonymous.status_code, anonymous.json()["message"]) == (401, "token is required")
    assert client.get("/api/v1/user", auth=("root", "wrong")).status_code == 401
    assert client.get("/api/v1/user", params={"token": token}).status_code == 200  # deprecated, still served
    assert len(gitea.violations) == 2
    assert gitea.violations[-1] == (
        "GET /api/v1/user: auth: the spec wants AuthorizationHeaderToken or BasicAuth; got no Authorization header")
    assert gitea.answers_off_spec() == []


def test_a_user_who_must_change_the_password_gets_403_everywhere(gitea_standin: GiteaStandIn,
                                                                 client: httpx.Client) -> None:
    gitea_standin.add_admin("root", "root-password", "root@corp.example", must_change_password=True)
    for answer in (client.get("/api/v1/user", auth=ADMIN),
                   client.post("/api/v1/users/root/tokens", json={"name": "t", "scopes": ["all"]}, auth=ADMIN)):
        assert answer.status_code == 403
        assert answer.json()["message"].startswith("You must change your password")


def test_a_token_is_made_with_basic_auth_only(gitea: GiteaStandIn, client: httpx.Client) -> None:
    answer = client.post("/api/v1/users/root/tokens", auth=ADMIN,
                         json={"name": "config-center", "scopes": ["write:repository", "write:user"]})
    assert answer.status_code == 201
    token = answer.json()
    assert set(token) == {"id", "name", "sha1", "token_last_eight", "scopes", "created_at", "last_used_at"}
    assert re.fullmatch(r"[0-9a-f]{40}", token["sha1"])
    assert token["token_last_eight"] == token["sha1"][-8:]
    assert gitea.tokens == {"root": [{"id": token["id"], "name": "config-center",
                                      "scopes": ["write:repository", "write:user"], "sha1": token["sha1"]}]}
    with_token = client.post("/api/v1/users/root/tokens", json={"name": "second", "scopes": ["all"]},
                             headers={"Authorization": f"token {token['sha1']}"})
    assert (with_token.status_code, with_token.json()["message"]) == (401, "auth required")
    assert gitea.violations == [
        "POST /api/v1/users/root/tokens: auth: the spec wants BasicAuth; got Authorization: token …"]
    assert gitea.answers_off_spec() == []


@pytest.mark.parametrize(("body", "message"), [
    ({"name": "t", "scopes": []}, "access token must have a scope"),
    ({"name": "t"}, "access token must have a scope"),
    ({"name": "t", "scopes": ["write:everything"]},
     "invalid access token scope provided: invalid access token scope: write:everything"),
    ({"name": "config-center", "scopes": ["all"]}, "access token name has been used already"),
])
def test_a_token_needs_scopes_and_a_new_name(gitea: GiteaStandIn, client: httpx.Client, body: dict[str, object],
                                             message: str) -> None:
    make_token(client, ["all"])
    answer = client.post("/api/v1/users/root/tokens", json=body, auth=ADMIN)
    assert (answer.status_code, answer.json()["message"]) == (400, message)
    assert len(gitea.tokens["root"]) == 1


def test_tokens_are_listed_without_their_secret_and_deleted_by_id_or_name(gitea: GiteaStandIn,
                                                                          client: httpx.Client) -> None:
    make_token(client, ["all"], "one")
    make_token(client, ["all"], "two")
    listed = client.get("/api/v1/users/root/tokens", auth=ADMIN).json()
    assert [t["name"] for t in listed] == ["one", "two"]
    assert all("sha1" not in t for t in listed)
    assert client.delete("/api/v1/users/root/tokens/two", auth=ADMIN).status_code == 204
    assert client.delete(f"/api/v1/users/root/tokens/{listed[0]['id']}", auth=ADMIN).status_code == 204
    assert client.delete("/api/v1/users/root/tokens/two", auth=ADMIN).status_code == 404
    assert gitea.tokens == {"root": []}
    assert gitea.violations == []
    assert gitea.answers_off_spec() == []


def test_repository_calls_need_repository_scopes(gitea: GiteaStandIn, client: httpx.Client) -> None:
    reader = {"Authorization": f"token {make_token(client, ['read:repository'], 'reader')}"}
    writer = {"Authorization": f"token {make_token(client, ['write:repository'], 'writer')}"}
    refused = client.post("/api/v1/user/repos", json={"name": "configs"}, headers=reader)
    assert refused.status_code == 403
    assert "required=[write:repository]" in refused.json()["message"]
    assert client.get("/api/v1/user", headers=writer).status_code == 403  # needs read:user
    created = client.post("/api/v1/user/repos", json={"name": "configs", "private": True, "auto_init": True,
                                                      "default_branch": "main"}, headers=writer)
    assert created.status_code == 201
    assert (created.json()["full_name"], created.json()["private"], created.json()["empty"]) == (
        "root/configs", True, False)
    assert client.get("/api/v1/repos/root/configs", headers=reader).status_code == 200
    assert client.get("/api/v1/repos/root/configs").status_code == 404  # private, and nobody asked
    assert gitea.violations == []
    assert gitea.answers_off_spec() == []


@pytest.mark.parametrize(("name", "status", "message"), [
    ("configs", 409, "The repository with the same name already exists."),
    ("bad name", 422, "[Name]: AlphaDashDot"),
    ("..", 422, "name is reserved [name: ..]"),
    ("configs.git", 422, "name pattern is not allowed [pattern: *.git]"),
])
def test_a_repository_needs_a_free_and_valid_name(gitea: GiteaStandIn, client: httpx.Client, name: str,
                                                  status: int, message: str) -> None:
    assert client.post("/api/v1/user/repos", json={"name": "configs"}, auth=ADMIN).status_code == 201
    answer = client.post("/api/v1/user/repos", json={"name": name}, auth=ADMIN)
    assert (answer.status_code, answer.json()["message"]) == (status, message)
    assert len(gitea.repos) == 1
    assert client.get("/api/v1/repos/root/missing", auth=ADMIN).status_code == 404


def test_webhooks_are_made_inactive_unless_asked_and_edited_and_deleted(gitea: GiteaStandIn,
                                                                        client: httpx.Client) -> None:
    client.post("/api/v1/user/repos", json={"name": "configs"}, auth=ADMIN)
    hooks = "/api/v1/repos/root/configs/hooks"
    config = {"url": "http://config-center:8080/hooks/gitea", "content_type": "json", "secret": "s3cret"}
    made = client.post(hooks, json={"type": "gitea", "config": config}, auth=ADMIN)
    assert made.status_code == 201
    hook = made.json()
    assert (hook["active"], hook["events"], hook["config"]) == (
        False, ["push"], {"url": config["url"], "content_type": "json"})
    assert gitea.hooks["root/configs"][0]["config"]["secret"] == "s3cret"
    edited = client.patch(f"{hooks}/{hook['id']}", json={"active": True}, auth=ADMIN)
    assert (edited.status_code, edited.json()["active"]) == (200, True)
    assert [h["active"] for h in client.get(hooks, auth=ADMIN).json()] == [True]
    assert client.get(f"{hooks}/{hook['id']}", auth=ADMIN).status_code == 200
    assert client.delete(f"{hooks}/{hook['id']}", auth=ADMIN).status_code == 204
    assert client.delete(f"{hooks}/{hook['id']}", auth=ADMIN).status_code == 404
    assert client.get(hooks, auth=ADMIN).json() == []
    assert gitea.violations == []
    assert gitea.answers_off_spec() == []


@pytest.mark.parametrize(("body", "message"), [
    ({"type": "gitea", "config": {"content_type": "json"}}, "Missing config option: url"),
    ({"type": "gitea", "config": {"url": "http://x/hook"}}, "Missing config option: content_type"),
    ({"type": "jenkins", "config": {"url": "http://x/hook", "content_type": "json"}}, "Invalid hook type"),
    ({"type": "gitea", "config": {"url": "http://x/hook", "content_type": "xml"}}, "Invalid content type"),
])
def test_a_webhook_needs_a_known_type_a_url_and_a_content_type(gitea: GiteaStandIn, client: httpx.Client,
                                                              body: dict[str, object], message: str) -> None:
    client.post("/api/v1/user/repos", json={"name": "configs"}, auth=ADMIN)
    answer = client.post("/api/v1/repos/root/configs/hooks", json=body, auth=ADMIN)
    assert (answer.status_code, answer.json()["message"]) == (422, message)
    assert gitea.hooks == {"root/configs": []}
    if message != "Invalid content type":  # content_type is a free string in the spec
        assert [v for v in gitea.violations if v.startswith("POST /api/v1/repos/root/configs/hooks: body: ")]


# -- the admin, made by the CLI ------------------------------------------------------------------------

def run_cli(gitea: GiteaStandIn, *argv: str) -> dict[str, object]:
    answer = httpx.post(f"{gitea.url}/__standin/admin-user-create", json={"argv": list(argv)})
    assert answer.status_code == 200
    return dict(answer.json())


def test_the_cli_makes_the_first_admin_without_a_forced_password_change(gitea_standin: GiteaStandIn) -> None:
    result = run_cli(gitea_standin, "admin", "user", "create", "--admin", "--username", "root", "--password",
                     "root-password", "--email=root@corp.example")
    assert result == {"exit_code": 0, "output": "New user 'root' has been successfully created!\n"}
    [user] = gitea_standin.users
    assert (user["login"], user["is_admin"], user["must_change_password"]) == ("root", True, False)
    assert httpx.get(f"{gitea_standin.url}/api/v1/user", auth=ADMIN).status_code == 200
    second = run_cli(gitea_standin, "--config", "/data/gitea/conf/app.ini", "admin", "user", "create", "--username",
                     "bob", "--password", "bob-password", "--email", "bob@corp.example")
    assert second["exit_code"] == 0
    assert gitea_standin.users[1]["must_change_password"] is True  # the default for every user but the first
    assert [r.path for r in gitea_standin.requests] == ["/api/v1/user"]  # the bridge is no product call


@pytest.mark.parametrize(("argv", "output"), [
    (["--password", "p", "--email", "a@b.c"], "Command error: must set either username or name flag\n"),
    (["--username", "root", "--password", "p"], "Command error: email is not set\n"),
    (["--username", "root", "--email", "a@b.c"], "Command error: must set either password or random-password flag\n"),
    (["--username", "root", "--password", "p", "--email", "a@b.c"],
     "Command error: CreateUser: user already exists [name: root]\n"),
    (["--username", "x", "--pasword", "p"], "Incorrect Usage: flag provided but not defined: -pasword\n"),
])
def test_the_cli_fails_as_gitea_does(gitea: GiteaStandIn, argv: list[str], output: str) -> None:
    assert run_cli(gitea, "admin", "user", "create", *argv) == {"exit_code": 1, "output": output}
    assert len(gitea.users) == 1


def test_the_cli_can_print_an_access_token(gitea_standin: GiteaStandIn) -> None:
    result = run_cli(gitea_standin, "admin", "user", "create", "--admin", "--username", "root", "--password", "pw",
                     "--email", "r@corp.example", "--access-token", "--access-token-scopes", "write:repository")
    token = gitea_standin.tokens["root"][0]
    assert result["output"] == (f"Access token was successfully created... {token['sha1']}\n"
                                "New user 'root' has been successfully created!\n")
    assert (token["name"], token["scopes"]) == ("gitea-admin", ["write:repository"])


@pytest.mark.skipif(not BUSYBOX.exists(), reason="needs /bin/busybox")
def test_the_busybox_script_forwards_argv_and_exits_with_the_cli_code(gitea_standin: GiteaStandIn,
                                                                      tmp_path: Path) -> None:
    # A busybox container's PATH: the applets, nothing else.
    for applet in ("wget", "sed", "head", "tail"):
        (tmp_path / applet).symlink_to(BUSYBOX)
    env = {"PATH": str(tmp_path), "GITEA_STANDIN_URL": gitea_standin.url}
    password = 'p"w\\ with spaces, $dollar `tick` & {braces}!'

    def gitea(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([str(BUSYBOX), "sh", str(CLI_SCRIPT), *argv], env={**os.environ, **env},
                              capture_output=True, text=True, timeout=30, check=False)

    done = gitea("admin", "user", "create", "--admin", "--username", "root", "--password", password, "--email",
                 "root@corp.example", "--must-change-password=false")
    assert (done.returncode, done.stdout) == (0, "New user 'root' has been successfully created!\n")
    assert gitea_standin.users[0]["password"] == password
    again = gitea("admin", "user", "create", "--username", "root", "--password", "x", "--email", "r@corp.example")
    assert (again.returncode, again.stdout) == (1, "Command error: CreateUser: user already exists [name: root]\n")
    env["GITEA_STANDIN_URL"] = "http://127.0.0.1:9"
    unreachable = gitea("admin", "user", "create")
    assert unreachable.returncode == 2
    assert "did not answer" in unreachable.stderr
