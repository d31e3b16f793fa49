"""The sync thread: one per process, started and stopped by the FastAPI lifespan.

It wakes on a write through the API (at once), on a file event (after a quiet time: debounce),
on a drift-check timer, and on a retry timer after a backend was unreachable; whatever arrives
while it works is coalesced into the next round. Each round:

1. takes the manifest (reloaded if services.yaml, a template or system.ini changed; an invalid
   one is refused and the last good one stays in force);
2. takes config.ini: a hand edit that does not parse or validate is refused (the last good
   version stays applied; status, audit log and log say what is wrong), a valid one is
   audited, a plaintext secret typed into it is encrypted in place;
3. plans the services the change can touch (those that read a changed key) and applies the plan
   (sync/apply.py). With no config change, a file that differs from its render is drift:
   repaired or reported, per service.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from apphub.audit.log import Change
from apphub.core import Core
from apphub.db import Database
from apphub.environments.overlays import merged
from apphub.envvars.check import env_changes
from apphub.errors import LockTimeout, RenderError
from apphub.reload.base import Backends
from apphub.store.schema import APPLY_STRENGTH
from apphub.store.snapshot import Snapshot, changed_keys
from apphub.store.substitution import dependents
from apphub.sync.apply import Applier, ApplyReport
from apphub.sync.inputs import AUDIT_MESSAGE_CHARS, SYNC_ACTOR, BackendFactory, EngineInputs
from apphub.sync.journal import Journal
from apphub.sync.manifest import ApplyLevel, Manifest, dependency_order
from apphub.sync.plan import Plan, Planner
from apphub.sync.redact import redact
from apphub.sync.settings import SyncSettings
from apphub.sync.staging import remove_leftovers
from apphub.sync.status import StatusBoard
from apphub.sync.targets import read_regular, resolve
from apphub.sync.watcher import Watcher

logger = logging.getLogger("apphub.sync")

STOP_TIMEOUT_S = 5.0
# threads that write and flush target files in parallel: the disk queues their flushes together
IO_THREADS = 8
MAX_DEBOUNCE_FACTOR = 20  # a stream of events delays a sync by at most this many quiet times


class SyncEngine(EngineInputs):
    """Keeps every service's files and state at the latest accepted version of config.ini."""

    def __init__(self, core: Core, backends: BackendFactory, *, environ: Mapping[str, str] | None = None,
                 watch: bool = True) -> None:
        self.core = core
        self.status = StatusBoard()
        self._backends_factory = backends
        self._environ = dict(os.environ if environ is None else environ)
        self._watch = watch
        self._journal_db = Database(core.data.database)  # the sync thread's own connection
        self._journal = Journal(self._journal_db)
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._watcher: Watcher | None = None
        # Requests and their completion: a caller waits until a round that read the files after its
        # request ends. `_served`: the last request the running round answers (known once it reads).
        self._requested = 0
        self._completed = 0
        self._served = 0
        self._immediate = False
        self._full = True
        self._reports: dict[int, ApplyReport] = {}
        self.on_report: list[Callable[[ApplyReport], None]] = []  # told each round's report (notifications)
        self._noticed_at: float | None = None  # monotonic time of the first request not yet served
        # what the sync thread alone reads and writes
        self._settings: SyncSettings | None = None
        self._system_version: str | None = None
        self._manifest = Manifest()
        self._manifest_key: str | None = None
        self._planner: Planner | None = None
        self._known_secrets: set[str] = set()  # every secret planned since start, masked in diffs
        self._applier: Applier | None = None
        # staging and folder flushes of every apply (threads start on first use, then stay)
        self._io = ThreadPoolExecutor(max_workers=IO_THREADS, thread_name_prefix="apphub-io")
        self._applied: Snapshot | None = None  # the last version planned and applied in full
        self._applied_env: Snapshot | None = None  # env.ini's version with it
        self._last_good_env: Snapshot | None = None
        self._backends: Backends | None = None
        self._recovered = False  # what an earlier run left in a backend was put right
        self._last_good: Snapshot | None = None
        self._refused_by_file: dict[str, str] = {}
        self._overlay_refused: str | None = None
        self._last_overlay: dict[str, Snapshot] = {}
        self._running: str | None = None  # the environment whose overlay was last applied (None: config.ini alone)
        # Services left at an older version. A failed gate is not retried with the same bytes
        # (it would restart the service over and over) unless a reload is asked for; an
        # unreachable backend is retried on a timer.
        self._failed: dict[str, str] = {}  # service -> digest of the bytes that failed
        self._retry: set[str] = set()
        # Services a refused version would have changed: planned every round until one applies to
        # them (or finds them unchanged), so that their status cannot stay at a refusal undone since.
        self._refused: set[str] = set()
        self._explicit = False
        # target path -> sha256 of the bytes the engine wrote there (during an apply: the new
        # bytes and the previous ones, which a rollback puts back)
        self._written: dict[str, set[str]] = {}
        self._levels: dict[str, ApplyLevel] = {}  # the level a failed service still needs
        self._drifted: set[str] = set()  # target paths reported as edited behind apphub's back
        self._retry_at: float | None = None
        self._busy_retry_at: float | None = None  # config.ini's lock was held too long: read it again then
        self._retries = 0
        self._drift_at = 0.0
        self._first = True

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="apphub-sync", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        self._stop.set()
        self._wake.set()
        if self._watcher is not None:
            self._watcher.stop()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                logger.error("the sync thread did not stop within %.1f s", timeout)
        self.status.update(running=False)
        with self._cond:
            self._cond.notify_all()
        if self._thread is None or not self._thread.is_alive():
            self._journal_db.close()
            self._io.shutdown(wait=False)

    # -- requests -------------------------------------------------------------------------------

    def request(self, *, immediate: bool = True, full: bool = False, explicit: bool = False) -> int:
        """Ask for a round; returns a ticket for `wait`. `immediate` skips the debounce; `full`
        plans every service; `explicit` (someone asked to sync now) also retries failed ones."""
        with self._cond:
            self._requested += 1
            self._immediate |= immediate
            self._full |= full
            self._explicit |= explicit
            if self._noticed_at is None:
                self._noticed_at = time.monotonic()
            ticket = self._requested
        self._wake.set()
        return ticket

    def wait(self, ticket: int, timeout: float) -> ApplyReport | None:
        """The report of the first round that read the files after `ticket` was taken, or None on timeout."""
        with self._cond:
            self._cond.wait_for(lambda: self._completed >= ticket or self._stop.is_set(), timeout)
            if self._completed < ticket:
                return None
            return next((self._reports[t] for t in sorted(self._reports) if t >= ticket), None)

    def plan(self, snapshot: Snapshot, env: Snapshot | None = None) -> Plan:
        """A plan of every service for `snapshot` of config.ini (under the running environment's
        overlay, as the sync applies it) and env.ini's `env` (default: as it is now), without
        touching anything (for the API and CLI)."""
        environments = self.core.environments
        snapshot = merged(snapshot, environments.overlay(environments.active()))
        manifest = self._manifest
        reader = self._backends.container_env if self._backends is not None else None
        planner = Planner(manifest, self._templates_dir(), self._environ, set(self._known_secrets), reader)
        if env is None:
            env = self._last_good_env or self.core.env.snapshot()
        return planner.plan(snapshot, previous=self._applied, env=env)

    def compare(self, old: Snapshot, new: Snapshot) -> Plan:
        """What going from version `old` of config.ini to `new` does to each service (both under the
        running environment's overlay, with env.ini as it is): the renders of the two compared, and
        the action their changed keys call for. Nothing is read from a container."""
        overlay = self.core.environments.overlay(self.core.environments.active())
        planner = Planner(self._manifest, self._templates_dir(), self._environ, set(self._known_secrets))
        env = self._last_good_env or self.core.env.snapshot()
        return planner.compare(merged(old, overlay), merged(new, overlay), env=env)

    # -- the thread ------------------------------------------------------------------------------

    def _run(self) -> None:
        self.status.update(running=True)
        if self._watch:
            self._watcher = Watcher(self.core.data.root, self._templates_dir(), self._on_file_event)
            with contextlib.suppress(OSError):
                self._watcher.start()
        while not self._stop.is_set():
            with self._cond:
                self._served = self._requested
                full, self._full = self._full, False
                explicit, self._explicit = self._explicit, False
                noticed, self._noticed_at = self._noticed_at, None
                self._immediate = False
            try:
                report = self._round(full, explicit, noticed)
            except Exception:  # the thread must survive anything one round does
                logger.exception("sync round failed")
                report = ApplyReport(self._applied.version if self._applied else "")
                report.refused = ["internal error in the sync engine; see the apphub log"]
                self.status.abandon(report.refused[0])
            with self._cond:
                served = self._completed = self._served
                self._reports[served] = report
                for old in [t for t in self._reports if t < served - 64]:
                    del self._reports[old]
                self._cond.notify_all()
            self._tell(report)
            self._sleep()

    def _tell(self, report: ApplyReport) -> None:
        """Each listener (notifications) hears of every round's report; one that fails does not stop the engine."""
        for listener in self.on_report:
            try:
                listener(report)
            except Exception:
                logger.exception("a listener of the sync reports failed")

    def _sleep(self) -> None:
        """Wait for the next request, file event, drift check or retry; then the debounce."""
        while not self._stop.is_set():
            with self._cond:
                if self._requested > self._completed and self._immediate:
                    return
            timeout = self._next_timer()
            woke = self._wake.wait(timeout)
            self._wake.clear()
            if self._stop.is_set():
                return
            if not woke:  # a timer: drift check, or a retry
                with self._cond:
                    self._requested += 1
                    self._full = True
                return
            with self._cond:
                if self._requested <= self._completed:
                    continue
                if self._immediate:
                    return
            self._debounce()
            return

    def _debounce(self) -> None:
        quiet = self._settings.debounce_s if self._settings is not None else 0.05
        if quiet <= 0:
            return
        deadline = time.monotonic() + quiet * MAX_DEBOUNCE_FACTOR
        while time.monotonic() < deadline and not self._stop.is_set():
            if not self._wake.wait(quiet):
                return
            self._wake.clear()
            with self._cond:
                if self._immediate:
                    return

    def _next_timer(self) -> float | None:
        now = time.monotonic()
        timers = [at for at in (self._retry_at, self._busy_retry_at) if at is not None]
        interval = self._settings.drift_interval_s if self._settings is not None else 0
        if interval > 0:
            timers.append(self._drift_at + interval)
        return max(0.0, min(timers) - now) if timers else None

    def _on_file_event(self, kind: str, path: str) -> None:
        """A file event (watcher thread). The engine's own writes come back as events too: a
        target holding the bytes it wrote, or config.ini at the version it processed, is not news."""
        try:
            data = read_regular(path)
        except RenderError:
            data = None  # not a regular file (a FIFO would block this thread): the plan says what is wrong
        digest = None if data is None else hashlib.sha256(data).hexdigest()  # deleted or unreadable: news
        # A target's path comes from the watcher already resolved, as the keys of `_written` are.
        if kind == "target" and digest is not None and digest in self._written.get(path, ()) \
                and path not in self._drifted:
            return
        if (kind == "config" and digest is not None and os.path.basename(path) == "config.ini"
                and self._last_good is not None and digest[:32] == self._last_good.version
                and self.status.engine.config_error is None):
            return
        self.request(immediate=False, full=(kind == "target"))

    # -- one round -------------------------------------------------------------------------------

    def _serve_requests_made_so_far(self) -> None:
        """Count the requests made since the round began as served by it: each was made after its
        write, and the round reads the files after this. (A watcher's request can come first and
        start the round; the writer's own request must get this round's report, not the next
        round's, which finds nothing left to do.) Not when one asked for a full or explicit
        round: that takes the round it asked for."""
        with self._cond:
            if not (self._full or self._explicit):
                self._served = self._requested
                self._immediate = False
                self._noticed_at = None

    def _round(self, full: bool, explicit: bool = False, noticed: float | None = None) -> ApplyReport:
        """One round. `noticed`: when the first request it serves came (a file event, a write, an
        explicit sync); the `detect` stage runs from then to the plan (debounce, reading, validating
        and auditing config.ini). Timer rounds have none."""
        started = time.monotonic()
        retrying: set[str] = set()
        self._busy_retry_at = None  # any round reads config.ini again
        if self._retry_at is not None and started >= self._retry_at:
            self._retry_at = None
            retrying = set(self._retry)
        interval = self._settings.drift_interval_s if self._settings is not None else 0
        if interval > 0 and started >= self._drift_at + interval:
            full = True  # the periodic drift check
        manifest_changed = self._refresh_settings_and_manifest()
        if self._first:
            self._remove_leftovers()
        self._recover_backends()
        self._serve_requests_made_so_far()
        try:
            snapshot = self._accepted_snapshot()
            env = self._accepted_env()
        except LockTimeout as exc:
            return self._busy(exc)
        if snapshot is None:
            return ApplyReport(self._applied.version if self._applied else "", refused=[self._config_error()])
        snapshot = self._with_environment(snapshot)
        previous = None if manifest_changed or self._first else self._applied
        changed = changed_keys(previous, snapshot)
        if changed:  # a value made of a changed key changed with it
            changed |= dependents(snapshot, changed, self._environ)
        if changed is not None and env is not None:
            changed |= env_changes(self._applied_env, env)
        assert self._planner is not None
        assert self._applier is not None
        if full or changed is None:
            services = list(self._manifest.services)
            self._drift_at = time.monotonic()
        else:
            services = sorted(set(self._planner.affected(changed))
                              | ((retrying | self._refused) & set(self._manifest.services)))
        if env is None:  # env.ini was refused and no version of it was good yet: the others go on
            services = self._without_env(services)
        detect = None if noticed is None else time.monotonic() - noticed
        render_started = time.monotonic()
        plan = self._planner.plan(snapshot, previous=previous, services=services, changed=changed, env=env)
        for service in plan.services.values():
            self.status.service(service.name).pending = service.pending
            if service.env is not None and service.env.unknown is not None:
                self._retry_unknown(service.name)
        render = time.monotonic() - render_started
        force = self._take_up_journal() if self._first else set()
        for service in plan.changed():
            own_change = changed is not None and not service.reads.isdisjoint(changed)
            if not explicit and not own_change:
                if self._failed.get(service.name) == service.digest:
                    del plan.services[service.name]  # the very bytes that failed its gate: not again
                    continue
                if service.name in self._retry and service.name not in retrying:
                    del plan.services[service.name]  # its backend was down: on the retry timer only
                    continue
            if service.name in self._levels and not own_change and not service.action_is_planned:
                # a retry needs what the failed change needed, not the `restart` of an unknown cause
                # (an environment's recreate or supervisor-update is that already: it is kept)
                service.level = self._levels[service.name]
                service.action = self._manifest.services[service.name].action_for(service.level)
        drifted = self._handle_drift(plan, changed) if changed is not None else {}
        for service in plan.services.values():
            for file in service.files:
                self._written[file.real] = {
                    hashlib.sha256(data).hexdigest() for data in (file.after, file.before) if data is not None}
        if not plan.refused:
            self.status.applying(sorted({service.name for service in plan.changed()} | (force & set(plan.services))),
                                 plan.version)
        report = self._applier.apply(plan, self._manifest, dependency_order(self._manifest), force=force)
        report.drift = drifted
        for name, outcome in report.outcomes.items():
            planned = plan.services.get(name)  # None: it could not be rendered (the version is refused)
            for file in planned.files if planned is not None else []:
                # what the files hold now: after, or before (rolled back, or never written: refused)
                kept = outcome.result == "refused" or (outcome.result == "failed"
                                                       and file.spec.path not in outcome.unrestored)
                data = file.before if kept else file.after
                if data is not None:
                    self._written[file.real] = {hashlib.sha256(data).hexdigest()}
            if outcome.result == "refused":
                self._refused.add(name)
                continue
            self._refused.discard(name)
            if planned is None or outcome.result == "interrupted":
                continue  # interrupted: the journal says `applying`, the next start reloads it
            service = planned
            if outcome.result == "failed":
                self._levels[name] = max(service.level, self._levels.get(name, "hot"), key=APPLY_STRENGTH.__getitem__)
                if outcome.retry:
                    self._retry.add(name)
                else:
                    self._failed[name] = service.digest
            else:
                self._drifted.difference_update(file.real for file in service.files)
                self._failed.pop(name, None)
                if service.env is None or service.env.unknown is None:
                    self._retry.discard(name)  # else its environment's change is still pending
                self._levels.pop(name, None)
        if self._watcher is not None and any(o.result == "applied" for o in report.outcomes.values()):
            self._watcher.watch_created_folders()
        times = {"render": render, **report.timings, "total": time.monotonic() - started}
        if detect is not None:
            times["detect"] = max(0.0, detect)
        self._after(report, snapshot, times, env)
        return report

    def _after(self, report: ApplyReport, snapshot: Snapshot, stage_times: dict[str, float],
               env: Snapshot | None = None) -> None:
        self._first = False
        self.status.record(report, stage_times)
        if report.refused:
            refused = redact("; ".join(report.refused), self._masks(), AUDIT_MESSAGE_CHARS)
            logger.error("version %s refused: %s", snapshot.version[:12], refused)
            self.core.audit.record(SYNC_ACTOR, "sync.refused", file="config.ini", version_before=snapshot.version,
                                   message=refused)
            return
        self._applied = snapshot
        self._applied_env = env
        self.status.update(applied_version=snapshot.version)
        failed = [o for o in report.outcomes.values() if o.result == "failed"]
        if any(o.retry for o in failed):
            delay = self._schedule_retry()
            logger.warning("a backend was unreachable; retrying in %.0f s", delay)
        else:
            self._retries = 0
        acted = [o for o in report.outcomes.values() if o.result != "unchanged"]
        if acted:
            errors = "; ".join(o.error for o in failed if o.error)
            for outcome in acted:
                log = logger.info if outcome.result == "applied" else logger.error
                log("service %s: %s (%s)%s", outcome.service, outcome.result, outcome.action,
                    f": {outcome.error}" if outcome.error else "")
            self.core.audit.record(
                SYNC_ACTOR, "sync.apply",
                [Change(f"service:{o.service}", None, o.result, None, o.action) for o in acted],
                file="config.ini", version_before=snapshot.version,
                message=redact(errors, self._masks(), AUDIT_MESSAGE_CHARS) if errors else None)

    def _handle_drift(self, plan: Plan, changed: set[tuple[str, str]]) -> dict[str, list[str]]:
        """A service whose files differ from their render though no key it reads changed was
        edited behind apphub's back: audit it, and take it out of the plan where the service's
        policy is to report only (whatever else the round does). The services found, and what
        of each was edited."""
        found: dict[str, list[str]] = {}
        for service in plan.changed():
            if not service.reads.isdisjoint(changed):
                continue  # a change of its own keys: not drift
            if service.name in self._failed or service.name in self._retry:
                continue  # not drift: a service left at an older version
            paths = [file.spec.path for file in service.files if file.changed]
            if service.env is not None and service.env.changed:
                paths.append(f"the environment of container {service.env.container}")
            spec = self._manifest.services[service.name]
            self.status.metrics.drift.labels(service.name).inc()
            self.core.audit.record(SYNC_ACTOR, "sync.drift", [Change(f"service:{service.name}", path, "drift")
                                                              for path in paths],
                                   message=f"edited outside apphub; policy {spec.drift}")
            logger.warning("service %s: %s edited outside apphub (policy %s)", service.name, ", ".join(paths),
                           spec.drift)
            status = self.status.service(service.name)
            status.drift = found[service.name] = paths
            self._drifted.update(file.real for file in service.files if file.changed)
            if spec.drift == "report":
                status.state = "drifted"
                del plan.services[service.name]  # reported, not repaired
        return found

    def _remove_leftovers(self) -> None:
        """At start: the staged files an earlier run left next to any target (a swap that failed in
        a folder turned read-only, apphub killed between staging and swap)."""
        confinement = self._manifest.confinement
        for service in self._manifest.services.values():
            for file in service.files:
                real = resolve(file.path)
                if confinement is None or confinement.problem(real) is None:  # never outside the roots
                    remove_leftovers(real)

    def _take_up_journal(self) -> set[str]:
        """What the previous run left, from one read of the journal: the services left between
        swapping their files and passing the gate (returned: they get their reload again), and the
        bytes that failed a gate (not tried again unasked; the status shows the failure)."""
        leftovers = set()
        for name, entry in self._journal.entries().items():
            if name not in self._manifest.services:
                continue
            if entry.state == "applying":
                leftovers.add(name)
            elif entry.state == "failed" and entry.failed_digest:
                self._failed[name] = entry.failed_digest
                status = self.status.service(name)
                status.state, status.last_error = "failed", entry.error
        return leftovers

    def status_dict(self) -> dict[str, Any]:
        return self.status.snapshot()


