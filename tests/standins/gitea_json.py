"""The JSON shapes of Gitea's answers: User, Repository and Hook as the swagger's definitions have them."""

from __future__ import annotations

from typing import Any


def user_json(url: str, user: dict[str, Any]) -> dict[str, Any]:
    return {"id": user["id"], "login": user["login"], "login_name": "", "source_id": 0, "full_name": "",
            "email": user["email"], "avatar_url": f"{url}/avatars/{user['id']}",
            "html_url": f"{url}/{user['login']}", "language": "", "is_admin": user["is_admin"],
            "last_login": user["created"], "created": user["created"], "restricted": False, "active": True,
            "prohibit_login": False, "location": "", "website": "", "description": "", "visibility": "public",
            "followers_count": 0, "following_count": 0, "starred_repos_count": 0}


def repo_json(url: str, repo: dict[str, Any], owner: dict[str, Any], viewer: dict[str, Any] | None) -> dict[str, Any]:
    full_name = f"{repo['owner']}/{repo['name']}"
    is_admin = viewer is not None and (viewer["is_admin"] or viewer is owner)
    return {"id": repo["id"], "owner": user_json(url, owner), "name": repo["name"], "full_name": full_name,
            "description": repo["description"], "empty": repo["empty"], "private": repo["private"],
            "fork": False, "template": repo["template"], "mirror": False, "size": 0, "language": "",
            "languages_url": f"{url}/api/v1/repos/{full_name}/languages",
            "html_url": f"{url}/{full_name}", "url": f"{url}/api/v1/repos/{full_name}", "link": "",
            "ssh_url": f"git@127.0.0.1:{full_name}.git", "clone_url": f"{url}/{full_name}.git",
            "original_url": "", "website": "", "stars_count": 0, "forks_count": 0, "watchers_count": 1,
            "open_issues_count": 0, "open_pr_counter": 0, "release_counter": 0,
            "default_branch": repo["default_branch"], "archived": False, "created_at": repo["created"],
            "updated_at": repo["created"], "archived_at": "1970-01-01T00:00:00Z",
            "permissions": {"admin": is_admin, "push": is_admin, "pull": True}, "has_issues": True,
            "has_wiki": True, "has_pull_requests": True, "has_projects": True, "has_releases": True,
            "has_packages": True, "has_actions": True, "internal": False, "mirror_interval": "",
            "object_format_name": repo["object_format_name"], "avatar_url": "", "topics": [], "licenses": []}


def hook_json(hook: dict[str, Any]) -> dict[str, Any]:
    # Gitea never sends the secret back.
    return {**hook, "config": {k: v for k, v in hook["config"].items() if k != "secret"}}
