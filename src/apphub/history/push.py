"""Pushing the history to a remote (Gitea, or any git server over HTTP) in the background.

A thread of the server pushes the branch after new commits, with retries and backoff; the remote
being down, slow or refusing never blocks a write nor loses a commit (the local history is the
source; a later push carries every commit since the last one that landed). A push the remote
rejects (its branch has commits ours lacks) is reported and retried, never forced. The token is
handed to git through its environment (GIT_CONFIG_* names an http.extraHeader): it is in no process
argument, in no file, in no URL; every text that reaches a log or the status is redacted of it.
"""

from __future__ import annotations

import base64
import logging
import os
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from apphub.audit.log import utc_now
from apphub.db import Database
from apphub.errors import ApphubError, HistoryError
from apphub.history.gitea import GiteaRepository, ensure_repository
from apphub.history.service import History
from apphub.store.secrets import MASK
from apphub.store.snapshot import Snapshot

logger = logging.getLogger("apphub.history")

RETRY_DELAYS_S = (1.0, 2.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0)
PUSH_TIMEOUT_S = 60.0
POLL_S = 1.0  # how often the thread looks for new commits (the history process's, a CLI's)
STOP_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class PushSettings:
    """system.ini [history]: where to push, as whom."""

    url: str
    branch: str
    user: str
    token: str
    create: bool

    @classmethod
    def from_system(cls, system: Snapshot) -> PushSettings | None:
        """The settings, or None when no remote is set. HistoryError if they cannot be used."""

        def text(key: str) -> str:
            stored = system.document.get("history", key)
            if stored is None:
                spec = system.schema.key("history", key)
                default = spec.default if spec is not None else None
                return "" if default is None else str(default).lower() if isinstance(default, bool) else str(default)
            return stored.strip()

        url = text("remote_url")
        if not url:
            return None
        try:
            parts = urlsplit(url)
        except ValueError:
            raise HistoryError("system.ini [history] remote_url is not a URL") from None
        if parts.username or parts.password:  # checked first: such a URL is never quoted
            raise HistoryError("system.ini [history] remote_url holds a user or password: put the token in "
                               "remote_token (encrypted) and the user in remote_user, never in the URL")
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise HistoryError(f"system.ini [history] remote_url {url} is not an http(s) URL")
        token = ""
        if system.document.get("history", "remote_token"):
            secret = system.secret("history", "remote_token")
            token = secret.reveal() if secret is not None else ""
        return cls(url, text("remote_branch") or "main", text("remote_user"), token,
                   text("remote_create").lower() in ("true", "1", "yes", "on"))

    def redact(self, text: str) -> str:
        for secret in (self.token, self._basic()):
            if secret:
                text = text.replace(secret, MASK)
        return text

    def _basic(self) -> str:
        return base64.b64encode(f"{self.user or 'apphub'}:{self.token}".encode()).decode() if self.token else ""

    def environment(self) -> dict[str, str]:
        """git's environment: the credential as an extra header, no prompt, no system config."""
        # No configuration but ours (a credential helper there could store the token), no prompt
        # and no askpass program: a missing or refused credential fails at once.
        env = {name: value for name, value in os.environ.items()
               if not name.startswith("GIT_") and name != "SSH_ASKPASS"}
        env.update({"GIT_TERMINAL_PROMPT": "0", "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull})
        if self.token:
            env.update({"GIT_CONFIG_COUNT": "1", "GIT_CONFIG_KEY_0": "http.extraHeader",
                        "GIT_CONFIG_VALUE_0": f"Authorization: Basic {self._basic()}"})
        return env


class Pusher:
    """The push thread and its state (status)."""

    def __init__(self, history: History, settings_of: Callable[[], PushSettings | None]) -> None:
        self._history = history
        self._settings_of = settings_of
        self._db = Database(history.data.database)
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._state = "idle"
        self._last_error: str | None = None
        self._last_attempt: str | None = None
        self._failures = 0
        self._next_attempt = 0.0  # monotonic
        # told of each failure (remote, branch, error, failures in a row): the notifications
        self.on_failure: list[Callable[[str, str | None, str, int], None]] = []
        history.listeners.append(self._wake.set)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="apphub-history-push", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(STOP_TIMEOUT_S)
        self._db.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            delay = max(0.0, self._next_attempt - time.monotonic()) if self._failures else POLL_S
            self._wake.wait(min(delay, POLL_S) if self._failures else POLL_S)
            self._wake.clear()
            if self._stop.is_set() or time.monotonic() < self._next_attempt:
                continue
            try:
                self.push_once()
            except Exception:  # the thread must survive anything; the status says what happened
                logger.exception("history push failed unexpectedly")

    def push_once(self) -> bool:
        """Push the branch if it has commits the remote lacks; True if the remote has them all now."""
        try:
            settings = self._settings_of()
        except ApphubError as exc:
            self._failed(str(exc), None)
            return False
        if settings is None:
            with self._lock:
                self._state, self._failures, self._last_error = "idle", 0, None
            return False
        head = self._history.index.last()
        pushed = self._pushed(settings)
        if head is None or pushed == head.commit:
            with self._lock:
                self._state, self._failures = ("ok" if head else "idle"), 0
            return True
        with self._lock:
            self._state, self._last_attempt = "pushing", utc_now()
        outcome = self._git_push(settings, head.commit)
        if outcome == "missing" and settings.create and settings.token:
            try:
                if ensure_repository(GiteaRepository.from_url(settings.url), settings.token, settings.branch):
                    logger.info("history: created the repository %s through Gitea's API", settings.url)
                outcome = self._git_push(settings, head.commit)
            except HistoryError as exc:
                self._failed(settings.redact(str(exc)), settings)
                return False
            if outcome == "missing":
                self._failed(f"the push to {settings.url} finds no repository, even after asking Gitea's API "
                             "to create it", settings)
                return False
        elif outcome == "missing":
            self._failed(f"the push to {settings.url} finds no repository (create it, or set "
                         "remote_create and a token that may create it)", settings)
            return False
        if outcome == "ok":
            with self._db.transaction() as connection:
                connection.execute(
                    "INSERT INTO history_push (id, remote, branch, pushed_commit, pushed_at) VALUES (1, ?, ?, ?, ?)"
                    " ON CONFLICT (id) DO UPDATE SET remote = excluded.remote, branch = excluded.branch,"
                    " pushed_commit = excluded.pushed_commit, pushed_at = excluded.pushed_at",
                    (settings.url, settings.branch, head.commit, utc_now()))
            with self._lock:
                self._state, self._failures, self._last_error = "ok", 0, None
            return True
        return False

    def _git_push(self, settings: PushSettings, commit: str) -> str:
        """Run git push; 'ok', 'missing' (no such repository), or 'failed' (recorded)."""
        command = ["git", "--git-dir", str(self._history.path), "push", "--porcelain", settings.url,
                   f"{commit}:refs/heads/{settings.branch}"]
        try:
            done = subprocess.run(command, env=settings.environment(), capture_output=True, text=True,
                                  timeout=PUSH_TIMEOUT_S, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            self._failed(f"the push to {settings.url} took more than {PUSH_TIMEOUT_S:g} s and was stopped", settings)
            return "failed"
        except OSError as exc:
            self._failed(f"git cannot be run: {exc}", settings)
            return "failed"
        if done.returncode == 0:
            return "ok"
        said = settings.redact(f"{done.stdout}\n{done.stderr}")
        if "[rejected]" in said or "non-fast-forward" in said or "fetch first" in said:
            self._failed(f"the remote's branch {settings.branch} has commits this history lacks: the push was "
                         "rejected (never forced); move or delete that branch on the remote, or point "
                         "remote_branch elsewhere", settings, state="rejected")
            return "failed"
        errors = "\n".join(line for line in said.splitlines() if line.startswith(("fatal:", "error:", "remote:")))
        if "not found" in errors.lower() or "404" in errors:  # in git's errors, not in the commit ids it printed
            return "missing"
        reason = _first_error_line(said)
        if any(sign in said for sign in ("401", "403", "Authentication failed", "could not read Username",
                                         "terminal prompts disabled")):
            reason = f"the remote refused the credentials of system.ini [history] ({reason})"
        self._failed(f"the push to {settings.url} failed: {reason}", settings)
        return "failed"

    def _failed(self, message: str, settings: PushSettings | None, *, state: str = "failing") -> None:
        text = settings.redact(message) if settings is not None else message
        with self._lock:
            self._failures += 1
            delay = RETRY_DELAYS_S[min(self._failures, len(RETRY_DELAYS_S)) - 1]
            self._next_attempt = time.monotonic() + delay
            self._state, self._last_error = state, text
            failures = self._failures
        logger.warning("history push: %s (next try in %g s)", text, delay)
        for told in self.on_failure:
            try:
                told(settings.url if settings is not None else "(not configured)",
                     settings.branch if settings is not None else None, text, failures)
            except Exception:
                logger.exception("a listener of the history push failed")

    def _pushed(self, settings: PushSettings) -> str | None:
        rows = self._db.query("SELECT remote, branch, pushed_commit FROM history_push WHERE id = 1")
        if not rows or rows[0]["remote"] != settings.url or rows[0]["branch"] != settings.branch:
            return None
        return str(rows[0]["pushed_commit"]) if rows[0]["pushed_commit"] else None

    def status(self) -> dict[str, Any]:
        try:
            settings = self._settings_of()
        except ApphubError as exc:
            return {"configured": False, "state": "failing", "last_error": str(exc)}
        if settings is None:
            return {"configured": False, "state": "idle"}
        rows = self._db.query("SELECT pushed_commit, pushed_at FROM history_push WHERE id = 1")
        pushed = self._pushed(settings)
        seq = self._history.index.seq_of(pushed) if pushed else None
        waiting = self._history.index.count(seq or 0)
        with self._lock:
            retry = max(0.0, self._next_attempt - time.monotonic()) if self._failures else None
            return {
                "configured": True,
                "remote": settings.url,
                "branch": settings.branch,
                "state": self._state if waiting or self._state != "ok" else "ok",
                "last_pushed_commit": pushed,
                "last_pushed_at": rows[0]["pushed_at"] if rows and pushed else None,
                "pending_commits": waiting,
                "last_attempt_at": self._last_attempt,
                "last_error": self._last_error,
                "failures": self._failures,
                "next_attempt_in_s": round(retry, 1) if retry is not None else None,
            }


def _first_error_line(text: str) -> str:
    for line in text.splitlines():
        line = line.strip()
        if line.startswith(("fatal:", "error:", "remote:")):
            return line[:300]
    return next((line.strip()[:300] for line in text.splitlines() if line.strip()), "git failed")
