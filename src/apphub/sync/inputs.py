"""What each round of the sync thread takes in: system.ini's [sync] settings and the backends they
name, the manifest, and config.ini and env.ini as accepted versions (a hand edit validated and
audited, a bad one refused while the last good one stays in force).

`EngineInputs` is a part of `SyncEngine` (sync/engine.py), which holds the state named here.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from apphub.audit.log import Actor
from apphub.core import Core
from apphub.environments.judging import relocated
from apphub.environments.overlays import merged
from apphub.envvars.check import env_problems
from apphub.errors import ApphubError, IniParseError, LockTimeout, ManifestError
from apphub.notify.events import refused
from apphub.reload.base import Backends
from apphub.rules.base import CONFIG, SYSTEM, KeyRef
from apphub.store.check import located_problems
from apphub.store.secrets import is_encrypted
from apphub.store.snapshot import Snapshot, changed_keys
from apphub.sync.apply import Applier, ApplyReport
from apphub.sync.journal import Journal
from apphub.sync.manifest import Manifest, load_manifest
from apphub.sync.plan import Planner, spellings
from apphub.sync.redact import redact
from apphub.sync.settings import SyncSettings
from apphub.sync.status import StatusBoard
from apphub.sync.watcher import Watcher

logger = logging.getLogger("apphub.sync")

FILE_ACTOR = Actor("file", "file")
SYNC_ACTOR = Actor("apphub", "sync")
RETRY_DELAYS_S = (1.0, 2.0, 4.0, 8.0, 15.0, 30.0)
BUSY_RETRY_S = 2.0  # config.ini's write lock held by a writer that stopped: read again after this
AUDIT_MESSAGE_CHARS = 4000

BackendFactory = Callable[[SyncSettings], Backends]


class EngineInputs:
    """The sync engine's inputs, read and accepted once per round (the state is SyncEngine's)."""

    core: Core
    status: StatusBoard
    _backends_factory: BackendFactory
    _environ: dict[str, str]
    _journal: Journal
    _stop: threading.Event
    _io: ThreadPoolExecutor
    _watcher: Watcher | None
    _settings: SyncSettings | None
    _system_version: str | None
    _backends: Backends | None
    _applier: Applier | None
    _manifest: Manifest
    _manifest_key: str | None
    _planner: Planner | None
    _known_secrets: set[str]
    _applied: Snapshot | None
    _last_good: Snapshot | None
    _last_good_env: Snapshot | None
    _refused_by_file: dict[str, str]  # file -> the refusal last told (the bad version, or its error)
    _overlay_refused: str | None
    _last_overlay: dict[str, Snapshot]  # per environment, the overlay last applied
    _running: str | None
    _recovered: bool
    _retry: set[str]
    _retry_at: float | None
    _busy_retry_at: float | None
    _retries: int

    def _refresh_settings_and_manifest(self) -> bool:
        """Reload system.ini's [sync], the backends and the manifest when they changed."""
        changed = False
        try:
            system = self.core.system.snapshot()
        except ApphubError as exc:
            system = None
            self.status.update(manifest_error=f"system.ini: {exc}")
        if system is not None and system.version != self._system_version:
            self._settings = SyncSettings.from_system(system)
            backends = self._backends = self._backends_factory(self._settings)
            self._applier = Applier(backends.reloaders, backends.health, self._journal, self._stop, io=self._io)
            self._system_version = system.version
            self._manifest_key = None  # the roots may have changed
        if self._settings is None:
            self._settings = SyncSettings((), "", "", 0.05, 60)
        if self._applier is None:
            backends = self._backends = self._backends_factory(self._settings)
            self._applier = Applier(backends.reloaders, backends.health, self._journal, self._stop, io=self._io)
        key = self._manifest_fingerprint()
        if key != self._manifest_key:
            self._manifest_key = key
            try:
                self._manifest = load_manifest(self.core.data.root / "services.yaml", self._settings.roots,
                                               self.core.data.root)
                self.status.update(manifest_error=None)
            except ManifestError as exc:
                logger.error("the manifest is refused; the last good one stays in force: %s", exc)
                # the audit event before the status: whoever sees the status can find the event
                self.core.audit.record(SYNC_ACTOR, "sync.manifest_refused", file="services.yaml", message=str(exc))
                self.status.update(manifest_error=str(exc))
            reader = self._backends.container_env if self._backends is not None else None
            self._planner = Planner(self._manifest, self._templates_dir(), self._environ, self._known_secrets, reader)
            self.status.keep_only(list(self._manifest.services))
            if self._watcher is not None:
                self._watcher.watch_targets(f.path for s in self._manifest.services.values() for f in s.files)
            changed = True
        return changed

    def _accepted_snapshot(self) -> Snapshot | None:
        """config.ini now, if it parses and validates (audited if it is a hand edit); else None."""
        try:
            snapshot = self.core.config.settled_snapshot()  # never a version a failing write takes back
        except IniParseError as exc:
            self._refuse("config.ini", hashlib.sha256(str(exc).encode()).hexdigest(), exc.public)
            return None
        except LockTimeout:
            raise  # config.ini is fine, only busy
        except ApphubError as exc:
            self._refuse("config.ini", str(exc), str(exc))
            return None
        if self._last_good is not None and snapshot.version == self._last_good.version:
            if self.status.engine.config_error is not None:  # a refused edit was undone
                self.status.update(config_error=None)
                self._refused_by_file.pop("config.ini", None)
            return snapshot
        problems, warnings = self._new_problems(snapshot)
        if problems:
            self._refuse("config.ini", snapshot.version, "config.ini is refused, the last good version stays applied: "
                         + "; ".join(problems))
            return None
        self.status.update(config_error=None, config_version=snapshot.version)
        self._refused_by_file.pop("config.ini", None)
        if self.core.audit.last_version("config.ini") != snapshot.version:
            # maybe a hand edit; the store decides under its lock (a write in flight is not one)
            self.core.config.account_for_outside_change(self._last_good, warnings)
            for warning in warnings:
                logger.warning("hand edit of config.ini accepted with a warning: %s", warning)
        if any(not is_encrypted(snapshot.document.get(s, k) or "") for s, k in snapshot.secret_keys()):
            snapshot = self.core.config.reencrypt_secrets(FILE_ACTOR, only_plaintext=True).snapshot
        self._last_good = snapshot
        return snapshot

    def _with_environment(self, base: Snapshot) -> Snapshot:
        """What the services get: config.ini with the active environment's overlay over it. A hand
        edit of the overlay is taken as one of config.ini is: audited, judged by the rules on what it
        changed, its plaintext secrets encrypted in place; an overlay that does not parse, fit the
        schema or pass the rules is refused, and so is a name no overlay has: the last good overlay
        stays applied (this environment's, else the one running), and the status, the log and the
        audit say why (once)."""
        environments = self.core.environments
        name = environments.active()
        if name is None:
            self._overlay_refused = None
            self._running = None
            return base
        overlay, problems = environments.checked(name)
        if overlay is not None:
            store = environments.store(name)
            previous = self._last_overlay.get(name)
            if previous is None or previous.version != overlay.version:
                # Judged whatever the audit says: a write through apphub judges only the keys it sets,
                # so a hand edit of an overlay that was not running, written over by such a write, is
                # audited but was never judged; and what an overlay sets is judged when it starts to run.
                problems, warnings = self._overlay_findings(base, overlay, previous)
                if not problems and self.core.audit.last_version(store.name) != overlay.version:  # a hand edit
                    store.account_for_outside_change(previous, warnings)
            if not problems and any(not is_encrypted(overlay.document.get(s, k) or "")
                                    for s, k in overlay.secret_keys()):
                overlay = store.reencrypt_secrets(FILE_ACTOR, only_plaintext=True).snapshot
        if overlay is None or problems:
            # As for config.ini, the last good version stays applied: this environment's, else the one
            # running (a typo in `active`, or a switch to a broken overlay, changes nothing), else none.
            kept_name = name if name in self._last_overlay else self._running
            kept = ("its last good version stays applied" if kept_name == name else
                    f"the environment '{kept_name}' stays applied" if kept_name is not None
                    else "config.ini alone is applied")
            message = redact(f"the environment's overlay is refused, {kept}: "
                             + "; ".join(problems), self._masks(), AUDIT_MESSAGE_CHARS)
            if message != self._overlay_refused:  # once per problem, not every round
                self._overlay_refused = message
                self.core.audit.record(FILE_ACTOR, "settings.invalid", file="environments", message=message)
                logger.error("%s", message)
            self.status.update(config_error=message)
            return merged(base, self._last_overlay.get(kept_name)) if kept_name is not None else base
        self._overlay_refused = None
        self._running = name
        self._last_overlay[name] = overlay
        return merged(base, overlay)

    def _overlay_findings(self, base: Snapshot, overlay: Snapshot,
                          previous: Snapshot | None) -> tuple[list[str], list[str]]:
        """The rules on a new version of an overlay: the merge, judged on the keys it changed since
        the version last applied, or on every key it sets when it starts to run."""
        changed = changed_keys(previous, overlay) if previous is not None else set(overlay.document.flat)
        if changed == set():
            return [], []
        return self._judged_edit(merged(base, overlay), changed, overlay)

    def _judged_edit(self, effective: Snapshot, changed: set[tuple[str, str]] | None,
                     overlay: Snapshot | None) -> tuple[list[str], list[str]]:
        """The rules on a hand edit: config.ini as the services would get it (`effective`), judged
        on the keys the edit `changed` (None: all); its errors and its warnings, one line each. A
        finding about a key `overlay` sets names the overlay's file and line."""
        touched = None if changed is None else [KeyRef(CONFIG, section, key) for section, key in changed]
        system = self.core.system.last_good()
        findings = relocated(self.core.rules.judge({CONFIG: effective, **({SYSTEM: system} if system else {})},
                                                   touched), overlay)
        return ([str(f) for f in findings if f.severity == "error"],
                [str(f) for f in findings if f.severity != "error"])

    def _accepted_env(self) -> Snapshot | None:
        """env.ini now, if it parses and names only valid variables (a hand edit is audited); else
        the last good one stays in force while the status says what is wrong, or None at first."""
        store = self.core.env.store
        try:
            env = store.settled_snapshot()
            if self._last_good_env is not None and env.version == self._last_good_env.version:
                return env  # checked when it was accepted: the same bytes have the same problems
            problems = env_problems(env)
        except IniParseError as exc:
            env, problems = None, [exc.public]
        except LockTimeout:
            raise
        except ApphubError as exc:
            env, problems = None, [str(exc)]
        if problems:
            kept = ("the last good version stays applied" if self._last_good_env is not None
                    else "the services that take an environment wait for a valid one")
            self._refuse("env.ini", "; ".join(problems), f"env.ini is refused, {kept}: " + "; ".join(problems))
            return self._last_good_env
        assert env is not None
        if self.core.audit.last_version(store.name) != env.version:
            store.account_for_outside_change(self._last_good_env)
        self._refused_by_file.pop("env.ini", None)
        self._last_good_env = env
        return env

    def _without_env(self, services: list[str]) -> list[str]:
        """`services` less those taking an environment, each marked pending with why."""
        reason = f"waits for a valid env.ini: {self._config_error()}"
        kept = []
        for name in services:
            if self._manifest.services[name].takes_env:
                self.status.service(name).pending = reason
            else:
                kept.append(name)
        return kept

    def _retry_unknown(self, name: str) -> None:
        """A container whose environment the engine could not tell: asked again on the retry timer
        (its change is pending, not failed, and not drift)."""
        self._retry.add(name)
        if self._retry_at is None:
            self._schedule_retry()

    def _schedule_retry(self) -> float:
        """Set the retry timer one step further along RETRY_DELAYS_S; the delay it set."""
        delay = RETRY_DELAYS_S[min(self._retries, len(RETRY_DELAYS_S) - 1)]
        self._retries += 1
        self._retry_at = time.monotonic() + delay
        return delay

    def _recover_backends(self) -> None:
        """What a killed apphub left half done in a backend (a container kept aside during its
        recreate): put right before anything is planned, every round until the engine answers."""
        if self._recovered or self._backends is None:
            return
        containers = sorted({spec.inject.container for spec in self._manifest.services.values()
                             if spec.inject is not None and spec.inject.container is not None})
        if not containers:
            return  # no service's container is ever recreated: nothing to look for
        try:
            for line in self._backends.recover(containers):
                logger.warning("recovered at start: %s", line)
                self.core.audit.record(SYNC_ACTOR, "sync.recovered", message=line)
        except ApphubError as exc:
            logger.error("what an earlier run left half done could not be recovered yet: %s", exc)
            return
        self._recovered = True

    def _new_problems(self, snapshot: Snapshot) -> tuple[list[str], list[str]]:
        """What makes a hand edit unacceptable: the problems it brings; and the rules' warnings it
        is accepted with. A version written through apphub was validated when written; a problem
        that was already in the last good version (an adopted file's unknown section) does not
        block a valid edit of something else. The rules judge the keys it changed, as for a write."""
        if self.core.audit.last_version("config.ini") == snapshot.version:
            return [], []
        located = located_problems(snapshot.document, snapshot.schema, self.core.box, "config.ini",
                                   plaintext_secrets=False)
        changed = changed_keys(self._last_good, snapshot) if self._last_good is not None else None
        if changed is None:
            problems = [text for _, text in located]
        else:
            sections = {section for section, _ in changed}
            problems = [text for (section, key), text in located
                        if (section, key) in changed or (key is None and section in sections)]
        if problems or changed == set():
            return problems, []
        environments = self.core.environments
        effective = merged(snapshot, environments.overlay(environments.active()))  # what the services would get
        return self._judged_edit(effective, changed, None)

    def _busy(self, exc: LockTimeout) -> ApplyReport:
        """A writer holds config.ini's lock for long (stopped with Ctrl-Z, say): nothing is wrong
        with config.ini, so nothing is refused or audited; the round runs again on the retry timer."""
        self._busy_retry_at = time.monotonic() + BUSY_RETRY_S  # the backends' own retries keep their pace
        logger.warning("config.ini is busy, the sync runs again in %g s: %s", BUSY_RETRY_S, exc)
        return ApplyReport(self._applied.version if self._applied else "",
                           refused=[f"config.ini is busy ({exc}); the sync runs again in {BUSY_RETRY_S:g} s"])

    def _refuse(self, file: str, identity: str, message: str) -> None:
        # The store says where a problem is and masks values; masked again here all the same.
        message = redact(message, self._masks(), AUDIT_MESSAGE_CHARS)
        # The audit and the log first, the status last: whoever polls the status finds them written.
        if identity != self._refused_by_file.get(file):  # say it once per bad version of each file
            self._refused_by_file[file] = identity
            self.core.audit.record(FILE_ACTOR, "settings.invalid", file=file, message=message)
            logger.error("%s", message)
            self.status.metrics.failures.labels("config_invalid").inc()
            # `identity` is the refused version, or the parse error's text when there is no version
            version = identity if re.fullmatch(r"[0-9a-f]{32}", identity) else None
            self.core.notifications.publish(refused(file, message, version))
        self.status.update(config_error=message)

    def _masks(self) -> list[str]:
        """Every secret planned since start, in every spelling: masked in whatever the engine
        shows, before any cut (the texts come masked already; this holds if one did not)."""
        return spellings(sorted(self._known_secrets))

    def _config_error(self) -> str:
        return self.status.engine.config_error or "config.ini is not usable"

    def _templates_dir(self) -> Path:
        return self.core.data.root / self._manifest.templates

    def _manifest_fingerprint(self) -> str:
        digest = hashlib.sha256()
        with contextlib.suppress(OSError):
            digest.update((self.core.data.root / "services.yaml").read_bytes())
        templates = self._templates_dir()
        for folder, _, files in sorted(os.walk(templates)):
            for name in sorted(files):
                path = Path(folder) / name
                with contextlib.suppress(OSError):
                    status = path.stat()
                    digest.update(f"{path}:{status.st_size}:{status.st_mtime_ns}".encode())
        return digest.hexdigest()
