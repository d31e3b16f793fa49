"""Creating the history's repository through Gitea's API when a push finds none.

As `reference/gitea-v1.26.3-swagger-v1.json` defines it: `GET /repos/{owner}/{repo}` (repoGet),
`GET /user` (userGetCurrent), then `POST /user/repos` (createCurrentUserRepo) when the owner is the
token's user, or `POST /orgs/{org}/repos` (createOrgRepo), with a CreateRepoOption body. The token
goes in the `Authorization: token ...` header (AuthorizationHeaderToken), never in a URL.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

import httpx

from apphub.errors import HistoryError

TIMEOUT_S = 15.0


@dataclass(frozen=True)
class GiteaRepository:
    """Where a repository URL of Gitea points: its API root, owner and name."""

    api: str
    owner: str
    name: str

    @classmethod
    def from_url(cls, url: str) -> GiteaRepository:
        """`http://host:3000[/prefix]/owner/name.git` -> the API at `http://host:3000[/prefix]/api/v1`."""
        parts = urlsplit(url)
        segments = [segment for segment in parts.path.split("/") if segment]
        if len(segments) < 2:
            raise HistoryError(f"history.remote_url {url} does not name a Gitea repository (…/OWNER/NAME.git)")
        owner, name = segments[-2], segments[-1].removesuffix(".git")
        prefix = "/".join(segments[:-2])
        api = urlunsplit((parts.scheme, parts.netloc, f"/{prefix}/api/v1" if prefix else "/api/v1", "", ""))
        return cls(api, owner, name)


def ensure_repository(repository: GiteaRepository, token: str, branch: str) -> bool:
    """Create the repository (private) unless it exists; True if it was created."""
    headers = {"Authorization": f"token {token}", "Accept": "application/json"}
    with httpx.Client(base_url=repository.api, headers=headers, timeout=TIMEOUT_S) as client:
        try:
            found = client.get(f"/repos/{repository.owner}/{repository.name}")
            if found.status_code == 200:
                return False
            _expect(found, 404, "look up the repository")
            user = client.get("/user")
            _expect(user, 200, "read the token's user")
            login = str(user.json().get("login", ""))
            path = "/user/repos" if login.lower() == repository.owner.lower() else f"/orgs/{repository.owner}/repos"
            body = {"name": repository.name, "private": True, "auto_init": False, "default_branch": branch,
                    "description": "Configuration history kept by apphub"}
            created = client.post(path, json=body)
            if created.status_code == 409:
                return False  # made in the meantime
            _expect(created, 201, f"create {repository.owner}/{repository.name}")
            return True
        except httpx.HTTPError as exc:
            raise HistoryError(f"Gitea's API at {repository.api} cannot be reached: {type(exc).__name__}") from exc


def _expect(response: httpx.Response, status: int, what: str) -> None:
    if response.status_code == status:
        return
    try:
        message = str(response.json().get("message", ""))[:200]
    except ValueError:
        message = ""
    raise HistoryError(f"Gitea's API could not {what}: HTTP {response.status_code}"
                       + (f" ({message})" if message else ""))
