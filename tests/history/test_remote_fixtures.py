"""The loopback git remote and the Gitea stand-in behave as the history's tests rely on.

The real git CLI pushes to them with the credential in its environment; the faults (refused
connections, slowness, a branch that moved on the server) fail git the way a real server does;
the stand-in answers and checks as Gitea's API document says.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.history.gitea_standin import SPEC_CANDIDATES, SPEC_NAME, GiteaSpec, GiteaStandin
from tests.history.remote_server import GitRemote, token_of

IDENTITY = {"GIT_AUTHOR_NAME": "Apphub", "GIT_AUTHOR_EMAIL": "apphub@example.com",
            "GIT_COMMITTER_NAME": "Apphub", "GIT_COMMITTER_EMAIL": "apphub@example.com"}


@pytest.fixture
def remote(tmp_path: Path) -> Iterator[GitRemote]:
    with GitRemote(tmp_path / "remote") as server:
        yield server


@pytest.fixture
def gitea(tmp_path: Path) -> Iterator[GiteaStandin]:
    with GitRemote(tmp_path / "gitea", create=False) as server:
        yield GiteaStandin(server, orgs={"websoft9-org"}, foreign_orgs={"someone-else"})


@pytest.fixture
def work(tmp_path: Path, remote: GitRemote) -> Path:
    """A local repository with one commit on main."""
    path = tmp_path / "work"
    git(remote, "init", "--quiet", "--initial-branch=main", str(path))
    commit(remote, path, "config.ini", "[gitea]\nuser_email = a@example.com\n")
    return path


def git(remote: GitRemote, *args: str, cwd: Path | None = None, token: str | None = None,
        timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False,
                          env={**remote.client_env(token), **IDENTITY})


def commit(remote: GitRemote, work: Path, name: str, text: str) -> str:
    (work / name).write_text(text)
    for args in (("add", name), ("commit", "--quiet", "-m", f"Write {name}")):
        assert git(remote, *args, cwd=work).returncode == 0
    return git(remote, "rev-parse", "HEAD", cwd=work).stdout.strip()


def push(remote: GitRemote, work: Path, url: str | None = None, token: str | None = None,
         timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return git(remote, "push", url or remote.url, "HEAD:refs/heads/main", cwd=work, token=token, timeout=timeout)


def head(remote: GitRemote, work: Path) -> str:
    return git(remote, "rev-parse", "HEAD", cwd=work).stdout.strip()


def api(gitea: GiteaStandin, method: str, path: str, *, authorization: str | None = "token",
        body: object = None) -> httpx.Response:
    headers = {}
    if authorization == "token":
        headers["Authorization"] = f"token {gitea.remote.token}"
    elif authorization is not None:
        headers["Authorization"] = authorization
    with httpx.Client(base_url=gitea.api_url, trust_env=False, timeout=5) as client:
        return client.request(method, path, headers=headers, json=body)


# -- the git remote -------------------------------------------------------------------------------


def test_a_push_with_the_credential_in_the_environment_lands_in_the_bare_repository(
        remote: GitRemote, work: Path) -> None:
    done = push(remote, work)

    assert done.returncode == 0, done.stderr
    assert remote.heads() == {"main": head(remote, work)}
    assert remote.log("main") == git(remote, "log", "--format=%H", cwd=work).stdout.split()
    assert [(seen.method, seen.path, seen.had_valid_auth) for seen in remote.requests] == [
        ("GET", "/websoft9/apphub-config.git/info/refs", True),
        ("POST", "/websoft9/apphub-config.git/git-receive-pack", True)]
    assert {seen.authorization for seen in remote.raw_requests} == {remote.authorization()}
    assert remote.targets_containing() == []
    # The bare repository is git's own: git itself reads it back whole.
    assert subprocess.run(["git", f"--git-dir={remote.bare_path}", "fsck", "--strict"], capture_output=True,
                          check=False).returncode == 0


def test_a_wrong_token_is_refused_with_a_basic_challenge_and_git_fails_at_once(remote: GitRemote, work: Path) -> None:
    started = time.monotonic()
    done = push(remote, work, token="not-the-token", timeout=10)

    assert done.returncode != 0
    assert time.monotonic() - started < 5
    assert "terminal prompts disabled" in done.stderr  # git wanted to ask, and did not
    assert remote.heads() == {}
    assert remote.requests == [("GET", "/websoft9/apphub-config.git/info/refs", False)]
    with httpx.Client(trust_env=False) as client:
        answer = client.get(f"{remote.url}/info/refs?service=git-receive-pack",
                            headers={"Authorization": remote.authorization(token="not-the-token")})
    assert answer.status_code == 401
    assert answer.headers["WWW-Authenticate"] == 'Basic realm="Gitea"'


def test_the_token_is_read_as_gitea_reads_it() -> None:
    assert token_of("token abc") == token_of("Bearer abc") == "abc"
    assert token_of("Basic " + "d2Vic29mdDk6YWJj") == "abc"  # websoft9:abc: the password is the token
    assert token_of("Basic " + "YWJjOg==") == "abc"  # abc: with no password, the user name is
    assert token_of("Basic !!!") is None
    assert token_of(None) is None


def test_down_refuses_connections_and_up_serves_again_on_the_same_port(remote: GitRemote, work: Path) -> None:
    port = remote.port
    remote.down()

    refused = push(remote, work, timeout=10)

    assert refused.returncode != 0
    assert "Failed to connect" in refused.stderr or "Connection refused" in refused.stderr
    remote.up()
    assert remote.port == port
    assert push(remote, work).returncode == 0
    assert remote.heads() == {"main": head(remote, work)}


def test_slow_delays_every_request(remote: GitRemote, work: Path) -> None:
    remote.slow(2)
    started = time.monotonic()

    done = push(remote, work)

    assert done.returncode == 0, done.stderr
    assert time.monotonic() - started >= 2
    remote.slow(0)
    started = time.monotonic()
    assert git(remote, "ls-remote", remote.url, cwd=work).returncode == 0
    assert time.monotonic() - started < 1


def test_after_diverge_the_next_push_is_rejected_as_a_non_fast_forward(remote: GitRemote, work: Path) -> None:
    assert push(remote, work).returncode == 0
    theirs = remote.diverge("main")
    ours = commit(remote, work, "config.ini", "[gitea]\nuser_email = b@example.com\n")

    done = push(remote, work)

    assert done.returncode != 0
    assert "[rejected]" in done.stderr
    assert "fetch first" in done.stderr or "non-fast-forward" in done.stderr
    assert remote.log()[0] == theirs
    assert ours not in remote.log()
    # Once fetched, the same push is refused as what it is.
    assert git(remote, "fetch", "--quiet", remote.url, "main", cwd=work).returncode == 0
    assert "non-fast-forward" in push(remote, work).stderr


def test_reject_pushes_refuses_every_push_until_turned_off(remote: GitRemote, work: Path) -> None:
    assert push(remote, work).returncode == 0
    ours = commit(remote, work, "config.ini", "[gitea]\nuser_email = b@example.com\n")
    remote.reject_pushes(True)

    first, second = push(remote, work), push(remote, work)

    for done in (first, second):
        assert done.returncode != 0
        assert "[rejected]" in done.stderr
    assert remote.log()[:2] == remote.diverged[::-1]
    assert ours not in remote.log()
    remote.reject_pushes(False)
    assert git(remote, "pull", "--quiet", "--no-rebase", "--no-edit", remote.url, "main", cwd=work).returncode == 0
    assert push(remote, work).returncode == 0
    assert remote.log()[0] == head(remote, work)


def test_a_missing_repository_is_not_found_until_created(tmp_path: Path) -> None:
    with GitRemote(tmp_path / "remote", create=False) as remote:
        work = tmp_path / "work"
        git(remote, "init", "--quiet", "--initial-branch=main", str(work))
        commit(remote, work, "a.txt", "a\n")

        missing = push(remote, work)

        assert missing.returncode != 0
        assert "not found" in missing.stderr
        remote.create_repo("websoft9", "apphub-config")
        assert push(remote, work).returncode == 0
        assert remote.log() == [head(remote, work)]


# -- the Gitea stand-in ---------------------------------------------------------------------------


def test_the_api_answers_the_authenticated_user_as_gitea_does(gitea: GiteaStandin) -> None:
    for authorization in ("token", f"Bearer {gitea.remote.token}", gitea.remote.authorization()):
        answer = api(gitea, "GET", "/user", authorization=authorization)
        assert answer.status_code == 200
        assert answer.json()["login"] == "websoft9"
        assert gitea.spec.check("User", answer.json(), strict=True) == []
    assert gitea.spec_violations == []


def test_a_repository_created_through_the_api_takes_a_git_push(gitea: GiteaStandin, tmp_path: Path) -> None:
    remote = gitea.remote
    assert api(gitea, "GET", "/repos/websoft9/apphub-config").status_code == 404

    created = api(gitea, "POST", "/user/repos", body={"name": "apphub-config", "private": True})

    assert created.status_code == 201
    repository = created.json()
    assert gitea.spec.check("Repository", repository, strict=True) == []
    assert (repository["full_name"], repository["private"], repository["empty"]) == ("websoft9/apphub-config", True,
                                                                                    True)
    assert repository["owner"]["login"] == "websoft9"
    assert repository["clone_url"] == remote.url
    assert repository["default_branch"] == "main"
    work = tmp_path / "work"
    git(remote, "init", "--quiet", "--initial-branch=main", str(work))
    commit(remote, work, "config.ini", "[a]\nb = c\n")
    assert push(remote, work, url=repository["clone_url"]).returncode == 0
    found = api(gitea, "GET", "/repos/websoft9/apphub-config")
    assert found.status_code == 200
    assert found.json()["empty"] is False
    assert api(gitea, "GET", "/repos/WebSoft9/APPHUB-config").json()["full_name"] == "websoft9/apphub-config"
    again = api(gitea, "POST", "/user/repos", body={"name": "apphub-config", "private": True})
    assert again.status_code == 409
    assert gitea.spec_violations == []
    assert gitea.remote.targets_containing() == []


def test_organisations_repositories(gitea: GiteaStandin) -> None:
    assert api(gitea, "POST", "/orgs/nope/repos", body={"name": "apphub-config"}).status_code == 404
    assert api(gitea, "POST", "/orgs/someone-else/repos", body={"name": "apphub-config"}).status_code == 403

    created = api(gitea, "POST", "/orgs/websoft9-org/repos", body={"name": "apphub-config", "private": True})

    assert created.status_code == 201
    assert created.json()["full_name"] == "websoft9-org/apphub-config"
    assert gitea.spec.check("Repository", created.json(), strict=True) == []
    assert gitea.remote.has_repo("websoft9-org", "apphub-config")
    assert api(gitea, "GET", "/repos/websoft9-org/apphub-config").status_code == 200
    assert gitea.spec_violations == []


def test_auto_init_makes_a_first_commit_so_our_history_is_not_a_fast_forward(gitea: GiteaStandin,
                                                                            tmp_path: Path) -> None:
    created = api(gitea, "POST", "/user/repos", body={"name": "apphub-config", "auto_init": True})
    assert created.status_code == 201
    assert created.json()["empty"] is False
    work = tmp_path / "work"
    git(gitea.remote, "init", "--quiet", "--initial-branch=main", str(work))
    commit(gitea.remote, work, "config.ini", "[a]\nb = c\n")

    done = push(gitea.remote, work)

    assert "[rejected]" in done.stderr


@pytest.mark.parametrize(("body", "named"), [
    ({"private": True}, "name"),
    ({"name": 5}, "name"),
    ({"name": "apphub-config", "trust_model": "anyone"}, "trust_model"),
    (["apphub-config"], "object"),
])
def test_a_body_the_document_refuses_is_a_spec_violation_and_a_422(gitea: GiteaStandin, body: object,
                                                                   named: str) -> None:
    answer = api(gitea, "POST", "/user/repos", body=body)

    assert answer.status_code == 422
    assert len(gitea.spec_violations) == 1
    assert "CreateRepoOption" in gitea.spec_violations[0]
    assert named in gitea.spec_violations[0]
    assert not gitea.remote.has_repo("websoft9", "apphub-config")


def test_an_undeclared_property_is_recorded_though_gitea_ignores_it(gitea: GiteaStandin) -> None:
    answer = api(gitea, "POST", "/user/repos", body={"name": "apphub-config", "privat": True})

    assert answer.status_code == 201
    assert answer.json()["private"] is False  # the typo made a public repository
    assert len(gitea.spec_violations) == 1
    assert "'privat'" in gitea.spec_violations[0]


def test_what_gitea_refuses_beyond_the_document(gitea: GiteaStandin) -> None:
    assert api(gitea, "POST", "/user/repos", body={"name": "a b"}).status_code == 422
    assert api(gitea, "POST", "/user/repos", body={"name": "config.git"}).status_code == 422
    answer = api(gitea, "POST", "/user/repos")  # no body at all
    assert answer.status_code == 422
    assert gitea.spec_violations == ["POST /api/v1/user/repos: no body; /user/repos takes a CreateRepoOption"]


def test_without_a_valid_credential_the_api_answers_401(gitea: GiteaStandin) -> None:
    assert api(gitea, "GET", "/user", authorization=None).status_code == 401
    assert api(gitea, "GET", "/user", authorization="token wrong").status_code == 401
    assert api(gitea, "POST", "/user/repos", authorization=None, body={"name": "x"}).status_code == 401
    assert not gitea.remote.has_repo("websoft9", "x")
    assert gitea.remote.requests[0] == ("GET", "/api/v1/user", False)


def test_a_token_in_the_url_or_an_unknown_operation_is_a_spec_violation(gitea: GiteaStandin) -> None:
    with httpx.Client(base_url=gitea.api_url, trust_env=False) as client:
        assert client.get("/user", params={"token": gitea.remote.token}).status_code == 401
        assert client.get("/no/such/thing", headers={"Authorization": f"token {gitea.remote.token}"}) \
            .status_code == 404

    assert len(gitea.spec_violations) == 2
    assert "a credential in the URL's query (token)" in gitea.spec_violations[0]
    assert "GET /api/v1/no/such/thing: no such operation" in gitea.spec_violations[1]
    assert gitea.remote.targets_containing() == [f"/api/v1/user?token={gitea.remote.token}"]


def test_the_stand_ins_answers_conform_to_the_document(gitea: GiteaStandin) -> None:
    gitea.remote.create_repo("websoft9", "made-directly")
    repository = gitea.repository("websoft9", "made-directly")

    assert gitea.spec.check("Repository", repository, strict=True) == []
    assert gitea.spec.check("User", gitea.user("websoft9-org"), strict=True) == []
    # The check is not blind: a field Gitea does not declare, or of the wrong type, is named.
    assert gitea.spec.check("Repository", {**repository, "username": "x"}, strict=True) != []
    assert gitea.spec.check("Repository", {**repository, "private": "yes"}) != []


def test_the_extract_in_tests_fixtures_is_gitea_s_document_unchanged() -> None:
    whole, extract = SPEC_CANDIDATES
    if not whole.is_file():
        pytest.skip(f"{SPEC_NAME} is not beside the clone (shared/reference)")
    document, part = json.loads(whole.read_text()), json.loads(extract.read_text())
    for path, item in part["paths"].items():
        for method, operation in item.items():
            assert document["paths"][path][method] == operation
    for section in ("definitions", "responses"):
        for name, value in part[section].items():
            assert document[section][name] == value
    assert GiteaSpec(extract).operation("post", "/user/repos") is not None
