"""Carrying out a plan as a transaction (DESIGN §5).

1. Stage every changed file next to its target, with its final mode and owner, and validate
   them all: the render parses, no file that had bytes is emptied, the file's `check` command
   passes on the staged copy. Any failure: nothing is swapped, the version is refused, and every
   service it would have changed is reported as failed to apply it, with why (`refused`).
2. Journal each service as `applying`, then swap every staged file into place.
3. Reload the services whose bytes changed, in dependency waves, a wave's services in parallel.
4. Health gate. A service that fails its reload or its gate gets its previous bytes back and is
   reloaded again; it is reported as failed to apply the version, running the one before.

Every text a failure quotes (a command's output, a response body, a check's output) goes out
through `redact`: secrets masked first, then shortened (issue 8).
"""

from __future__ import annotations

import contextlib
import grp
import hashlib
import logging
import os
import pwd
import subprocess
import threading
import time
from collections.abc import Iterable
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from apphub.errors import ApphubError, BackendUnavailable, DataDirError, Interrupted, RenderError, SyncError
from apphub.reload.base import Reloaders, Undo
from apphub.reload.health import HealthChecker
from apphub.store.atomic import stage, swap, sync_folders
from apphub.sync.journal import Journal
from apphub.sync.manifest import Manifest, ServiceSpec
from apphub.sync.plan import FilePlan, Plan, ServicePlan
from apphub.sync.redact import redact
from apphub.sync.staging import discard_staged, remove_leftovers
from apphub.sync.targets import resolve

logger = logging.getLogger("apphub.sync")

CHECK_TIMEOUT_S = 60.0
# interrupted: apphub stopped during its reload or gate; the next start takes it up again
Result = Literal["applied", "unchanged", "failed", "refused", "interrupted"]


@dataclass
class ServiceOutcome:
    """What one apply did to one service."""

    service: str
    result: Result
    version: str
    action: str = "none"
    error: str | None = None
    retry: bool = False  # the backend was unreachable: try again later
    unrestored: list[str] = field(default_factory=list)  # a failed service's files left with the new bytes
    timings: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"service": self.service, "result": self.result, "version": self.version, "action": self.action,
                "error": self.error, "timings_ms": {k: round(v * 1000, 3) for k, v in self.timings.items()}}


@dataclass
class ApplyReport:
    version: str
    outcomes: dict[str, ServiceOutcome] = field(default_factory=dict)
    refused: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    # services found edited outside apphub this round -> what was edited (their outcome says
    # whether the sync put them back; one that is only reported has none)
    drift: dict[str, list[str]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.refused and all(o.result in ("applied", "unchanged") for o in self.outcomes.values())


@dataclass
class _Staged:
    service: str
    file: FilePlan
    path: Path


class Applier:
    """Applies plans. Takes its reloads and probes as arguments, never opens a socket itself."""

    def __init__(self, reloaders: Reloaders, health: HealthChecker, journal: Journal,
                 stop: threading.Event | None = None, parallel: int = 8, io: Executor | None = None) -> None:
        """`io`: the threads that stage files and flush folders (the engine keeps one pool for all its
        applies; without it, each apply starts its own)."""
        self._reloaders = reloaders
        self._health = health
        self._journal = journal
        self._stop = stop or threading.Event()
        self._parallel = parallel
        self._io = io

    def apply(self, plan: Plan, manifest: Manifest, waves: list[list[str]], *,
              force: Iterable[str] = ()) -> ApplyReport:
        """Apply `plan`; services in `force` are reloaded even if their bytes did not change
        (they were left between swap and gate by a crash)."""
        report = ApplyReport(plan.version)
        changed = {service.name: service for service in plan.changed()}
        targets = set(changed) | (set(force) & set(plan.services))
        if plan.refused:
            return self._refuse(report, plan, targets | set(plan.failed), list(plan.failed.items()))
        for name in plan.services:
            if name not in targets:
                report.outcomes[name] = ServiceOutcome(name, "unchanged", plan.version)

        # Staging (write + fsync of each file) and the folder flushes after the swaps wait on the
        # disk, not on Python: done on a few threads they overlap, and 50 files take about half
        # the time they take one after another.
        with contextlib.nullcontext(self._io) if self._io is not None else \
                ThreadPoolExecutor(max_workers=self._parallel, thread_name_prefix="apphub-io") as io:
            started = time.monotonic()
            staged, problems = self._stage_all(changed, io)
            report.timings["validate"] = time.monotonic() - started
            if problems:
                for item in (item for items in staged.values() for item in items):
                    discard_staged(item.path)
                # a disk too full to stage on may be full of them
                _remove_leftovers((file for service in changed.values() for file in service.files), io)
                return self._refuse(report, plan, targets, problems)

            started = time.monotonic()
            all_staged = [item for items in staged.values() for item in items]
            try:
                self._journal.applying(sorted(targets), plan.version)
            except DataDirError as exc:
                for item in all_staged:
                    discard_staged(item.path)
                return self._refuse(report, plan, targets,
                                    [(None, f"nothing was written: the apply journal could not be written: {exc}")])
            problem = self._swap_all(all_staged, io)
            report.timings["write"] = time.monotonic() - started
            if problem is not None:
                self._refuse(report, plan, targets, [problem])
                with contextlib.suppress(DataDirError):
                    for name, outcome in report.outcomes.items():
                        self._journal.failed(name, plan.version, outcome.error or "")
                return report

        started = time.monotonic()
        failed: set[str] = set()
        for wave in waves:
            if self._stop.is_set():  # stopping: the journal still says `applying`, the next start goes on
                for name in (name for name in wave if name in targets):
                    report.outcomes[name] = ServiceOutcome(name, "interrupted", plan.version,
                                                           error="apphub stopped before reloading it")
                continue
            todo = []
            for name in (name for name in wave if name in targets):
                blocked = sorted(set(manifest.services[name].depends_on) & failed)
                if blocked:
                    report.outcomes[name] = self._hold_back(plan.services[name], plan.version, blocked)
                    failed.add(name)
                else:
                    todo.append(name)
            if not todo:
                continue
            with ThreadPoolExecutor(max_workers=min(self._parallel, len(todo))) as pool:
                futures = {name: pool.submit(self._reload_and_gate, plan.services[name], manifest.services[name],
                                             plan.version) for name in todo}
                for name, future in futures.items():
                    report.outcomes[name] = future.result()
                    report.outcomes[name].timings["write"] = report.timings["write"]
                    if report.outcomes[name].result == "failed":
                        failed.add(name)
            # One transaction for the wave: a crash before it only means these services get their
            # reload again at the next start, which is what the journal is for.
            try:
                self._journal.applied({name: {f.spec.path: _digest(f.after) for f in plan.services[name].files}
                                       for name in todo if report.outcomes[name].result == "applied"}, plan.version)
            except DataDirError as exc:
                logger.warning("the apply journal could not record version %s as applied (the next start "
                               "reloads these services again): %s", plan.version[:12], exc)
        report.timings["reload"] = time.monotonic() - started
        return report

    def _refuse(self, report: ApplyReport, plan: Plan, services: Iterable[str],
                problems: list[tuple[str | None, str]]) -> ApplyReport:
        """The version is refused: nothing was written, or what was is back. Every service it would
        have changed says so on its own, with its own problems (or else all of the version's), so
        that its status shows the failure and the version it wanted, not `applied`."""
        report.refused = [redact(text, plan.masks) for _, text in problems]
        report.outcomes = {}
        for name in sorted(services):
            own = [redact(text, plan.masks) for owner, text in problems if owner == name] or report.refused
            error = (f"failed to apply version {plan.version[:12]}, running the previous one: the version was "
                     f"refused: {redact('; '.join(own), plan.masks)}")
            report.outcomes[name] = ServiceOutcome(name, "refused", plan.version, error=error)
        return report

    def _swap_all(self, staged: list[_Staged], io: Executor) -> tuple[str, str] | None:
        """Swap every staged file in; if one cannot be, put back those already swapped, discard the
        rest, and say what happened and to which service (the version is then refused as a whole)."""
        folders = []
        for number, item in enumerate(staged):
            try:
                folders.append(swap(item.path, Path(item.file.real), sync_folder=False, follow_symlink=False))
            except DataDirError as exc:
                # The one that failed was removed by swap() if it could be; the rest are not needed.
                # One that cannot be removed now (its folder turned read-only) goes at the next apply.
                for later in staged[number:]:
                    discard_staged(later.path)
                restored = (_restore_file(done.file) for done in staged[:number])
                problems = [problem for problem in restored if problem is not None]
                return item.service, (f"service {item.service}: {exc}; no service was reloaded, and the {number} "
                                      "file(s) already replaced were put back"
                                      + (f", except: {'; '.join(problems)}" if problems else ""))
        try:
            sync_folders(folders, io)
        except DataDirError as exc:
            logger.warning("the files are in place, but flushing their folders failed: %s", exc)
        # What an earlier failed swap of these files left beside them (issue 8): now, when nothing
        # stages them (a rollback stages again, later), and after the swaps, not in their way.
        _remove_leftovers([item.file for item in staged], io)
        return None

    # -- stage and validate ------------------------------------------------------------------

    def _stage_all(self, changed: dict[str, ServicePlan],
                   io: Executor) -> tuple[dict[str, list[_Staged]], list[tuple[str | None, str]]]:
        jobs = [(name, number, file) for name, service in changed.items()
                for number, file in enumerate(service.files, start=1) if file.changed]
        staged: dict[str, list[_Staged]] = {}
        problems: list[tuple[str | None, str]] = []
        for (name, _, file), (path, problem) in zip(jobs, io.map(_stage_one, jobs), strict=True):
            if path is not None:
                staged.setdefault(name, []).append(_Staged(name, file, path))
            if problem is not None:
                problems.append((name, problem))
        return staged, problems

    # -- reload, gate, roll back -----------------------------------------------------------------

    def _reload_and_gate(self, plan: ServicePlan, spec: ServiceSpec, version: str) -> ServiceOutcome:
        outcome = ServiceOutcome(plan.name, "applied", version, plan.action.strategy)
        undo: Undo | None = None
        try:
            started = time.monotonic()
            undo = self._reloaders.run(plan.name, plan.action)
            outcome.timings["reload"] = time.monotonic() - started
            if plan.health is not None:
                outcome.timings["healthy"] = self._health.wait_healthy(plan.name, plan.health, self._stop)
            if undo is not None:
                _keep(plan.name, undo)
        except Interrupted as exc:
            # Neither healthy nor failed: the journal still says `applying`, so the next start
            # reloads it and runs the gate again. Rolling back here would undo a good change.
            outcome.result = "interrupted"
            outcome.error = str(exc)
        except Exception as exc:  # whatever breaks, the service gets its previous files back
            if not isinstance(exc, SyncError):
                logger.error("service %s: unexpected %s during its reload or health gate", plan.name,
                             type(exc).__name__)
            outcome.result = "failed"
            outcome.retry = isinstance(exc, BackendUnavailable)
            cause = _cause(exc, plan.masks)
            rolled_back = self._roll_back(plan, spec, outcome, undo)
            outcome.error = f"failed to apply version {version[:12]}, running the previous one: {cause}{rolled_back}"
            with contextlib.suppress(DataDirError):
                self._journal.failed(plan.name, version, outcome.error, None if outcome.retry else plan.digest)
        return outcome

    def _hold_back(self, plan: ServicePlan, version: str, blocked: list[str]) -> ServiceOutcome:
        """A service whose dependency failed keeps its previous files and is not reloaded: its
        new files would point at what the dependency no longer has (a port, a path)."""
        error = (f"failed to apply version {version[:12]}, running the previous one: held back because "
                 f"{', '.join(blocked)} failed to apply it")
        outcome = ServiceOutcome(plan.name, "failed", version, "none")
        outcome.error = error + self._restore(plan, outcome)
        with contextlib.suppress(DataDirError):
            self._journal.failed(plan.name, version, outcome.error, plan.digest)
        return outcome

    def _restore(self, plan: ServicePlan, outcome: ServiceOutcome) -> str:
        """Put every changed file's previous bytes back, each tried even if another fails; record
        in `outcome.unrestored` the files that still hold the new bytes, and say why."""
        problems = []
        for file in plan.files:
            if file.changed:
                problem = _restore_file(file)
                if problem is not None:
                    problems.append(problem)
                    outcome.unrestored.append(file.spec.path)
        return f" (and restoring {'; '.join(problems)})" if problems else ""

    def _roll_back(self, plan: ServicePlan, spec: ServiceSpec, outcome: ServiceOutcome,
                   undo: Undo | None = None) -> str:
        """Give the service its previous bytes and reload it again (or take back an action that
        can be: the old container put back); say what did not work."""
        problem = self._restore(plan, outcome)
        if undo is not None:
            # The old container goes back whatever became of the files: it does not read them again.
            try:
                undo.undo()
            except Exception as exc:  # reported, whatever it is
                return f"{problem} (and putting the old container back: {_cause(exc, plan.masks)})"
        if problem:
            return problem
        try:
            if undo is None and not plan.action.undoes_itself:
                self._reloaders.run(plan.name, plan.action)
            if plan.health_before is not None:
                self._health.wait_healthy(plan.name, plan.health_before, self._stop)
        except Exception as exc:  # reported, whatever it is
            return (" (the previous files are back, but the service did not come back with them: "
                    f"{_cause(exc, plan.masks)})")
        return ""


def _keep(service: str, undo: Undo) -> None:
    """The new state proved healthy: drop what was kept to go back to. A failure here changes
    nothing the service runs (the next start finishes the job), so it is only logged."""
    try:
        undo.keep()
    except ApphubError as exc:
        logger.warning("service %s: applied, but what was kept to undo it could not be dropped: %s", service, exc)


def _stage_one(job: tuple[str, int, FilePlan]) -> tuple[Path | None, str | None]:
    """Stage one changed file and run its check: (the staged copy or None, a problem or None)."""
    name, number, file = job
    where = f"service {name}, file {number} ({file.spec.path})"
    if file.after.strip() == b"" and file.before is not None and file.before.strip() != b"":
        return None, f"{where}: the render is empty but the file is not; refusing to empty it"
    if resolve(file.spec.path) != file.real:
        return None, f"{where}: the path no longer leads to {file.real} (a symlink changed during the apply)"
    try:
        # A missing folder under a root is created (a systemd drop-in folder, say); the
        # manifest already confined the path to the roots.
        folder = os.path.dirname(file.real)
        if not os.path.isdir(folder):
            os.makedirs(folder, mode=0o755, exist_ok=True)
        # The path was resolved and checked against the roots: a symlink put there since is
        # replaced by the file, never written through.
        path = stage(Path(file.real), file.after, mode=file.spec.mode_bits(),
                     new_mode=0o600 if file.holds_secret else 0o644, owner=_owner(file), follow_symlink=False)
    except (DataDirError, RenderError, OSError) as exc:
        return None, f"{where}: {exc}"
    if file.spec.check is not None:
        return path, _run_check(where, file, path)
    return path, None


def _remove_leftovers(files: Iterable[FilePlan], io: Executor) -> None:
    """Remove the staging files earlier applies left next to these files (sync/staging.py)."""
    for _ in io.map(remove_leftovers, [file.real for file in files]):
        pass


def _cause(exc: Exception, masks: list[str]) -> str:
    """What a reload or a gate said, as shown: it can quote the service's own output, which can
    print a secret it was given. An exception of ours says what happened; any other is a defect
    whose text is not ours to trust (CPython cuts a value it quotes to 200 characters: `%.200R`)."""
    if isinstance(exc, ApphubError):
        return redact(str(exc), masks)
    return f"an unexpected {type(exc).__name__} in apphub (a defect: please report it)"


def _restore_file(file: FilePlan) -> str | None:
    """Put one file's previous bytes back (or remove it if it did not exist); a problem or None."""
    try:
        if file.before is None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(file.real)
        else:
            swap(stage(Path(file.real), file.before, follow_symlink=False), Path(file.real), follow_symlink=False)
    except (OSError, DataDirError) as exc:
        return f"{file.spec.path} failed: {exc}"
    return None


def _owner(file: FilePlan) -> tuple[int, int] | None:
    if file.spec.owner is None:
        return None
    user, _, group = file.spec.owner.partition(":")
    try:
        entry = pwd.getpwnam(user)
        gid = grp.getgrnam(group).gr_gid if group else entry.pw_gid
    except KeyError as exc:
        raise RenderError(f"owner {file.spec.owner!r}: no such user or group on this host") from exc
    return entry.pw_uid, gid


def _run_check(where: str, file: FilePlan, staged: Path) -> str | None:
    argv = file.spec.check_argv(str(staged))
    try:
        result = subprocess.run(argv, capture_output=True, timeout=CHECK_TIMEOUT_S, check=False)
    except FileNotFoundError:
        return f"{where}: the check command {argv[0]!r} is not installed"
    except subprocess.TimeoutExpired:
        return f"{where}: the check command did not finish within {CHECK_TIMEOUT_S:g} s"
    if result.returncode == 0:
        return None
    # Whole lines (a secret never spans two), the staged copy named as its target, then masked and shortened.
    output = (result.stderr or result.stdout).decode("utf-8", errors="replace").strip().splitlines()[-5:]
    shown = redact(" | ".join(output).replace(str(staged), file.spec.path), file.masks)
    return f"{where}: the check `{file.spec.check}` failed (exit {result.returncode}): {shown}"


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
