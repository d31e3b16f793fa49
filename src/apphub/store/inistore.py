"""One INI file under its schema: reads from a cache that is never stale, and safe writes.

A write is, under the file's lock: read the current bytes, check the If-Match version, apply the
changes to the text, validate everything the write touches, encrypt the secrets it sets, record
the audit event (durably, as pending), replace the file atomically, mark the event done. Nothing
is written unless all of it passes, and no step after the replace can make the write untrue.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import threading
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from apphub.audit.log import Actor, AuditLog, Change
from apphub.errors import (
    ApphubError,
    DataDirError,
    FieldError,
    IniParseError,
    KeyNotFound,
    LockTimeout,
    SecretError,
    SectionNotFound,
    ValidationFailed,
    VersionConflict,
)
from apphub.store.atomic import Replacement, exclusive_lock
from apphub.store.check import UNREADABLE, field_errors
from apphub.store.inidoc import DeleteKey, Edit, IniDocument, SetValue
from apphub.store.schema import FileSchema
from apphub.store.secrets import MASK, Secret, SecretBox, is_encrypted, mask
from apphub.store.snapshot import Snapshot, version_changes
from apphub.store.validate import Problem, check_file, check_name, check_text, shown_value, to_ini_text
from apphub.store.versionlog import OUTSIDE_ACTOR, VersionLog

logger = logging.getLogger("apphub.store")

_BOM = "\ufeff"


# How old a file's ctime must be before its stat alone is trusted (well above the kernel's
# timestamp granularity, a clock tick of at most 10 ms).
RACY_NS = 100_000_000


def _stat_key(status: os.stat_result) -> tuple[int, ...]:
    return (status.st_dev, status.st_ino, status.st_size, status.st_mtime_ns, status.st_ctime_ns)


@dataclass(frozen=True)
class WriteResult:
    """What a write did: the new snapshot, the changes (masked) and whether the file changed, and
    the warnings of the rules it was accepted with."""

    snapshot: Snapshot
    changes: list[Change]
    previous_version: str
    warnings: list[FieldError] = field(default_factory=list)
    audit_event: int | None = None  # the audit log's event of the write

    @property
    def changed(self) -> bool:
        return bool(self.changes)


Changes = Mapping[str, Mapping[str, object]]
# What a write would do: the edits, their audit entries, the plaintext of every touched key
# (None: deleted), and the problems found while working that out.
Plan = tuple[list[Edit], list[Change], dict[tuple[str, str], str | None], list[FieldError]]
# The rules beyond the schema (rules/): the findings, errors and warnings, of a version to be
# written, judged on the (section, key)s it touches (None: all). The store knows no more of them.
RuleHook = Callable[[Snapshot, frozenset[tuple[str, str]] | None], list[FieldError]]
LENIENT_RULE = "port_conflict"  # the one a Websoft9 write is let through with (see `update`)


class Edited(NamedTuple):
    """A version a write would make: its snapshot, audit changes and the rules' warnings."""

    snapshot: Snapshot
    changes: list[Change]
    warnings: list[FieldError]


class IniStore:
    """Reads and writes one INI file (`config.ini` or `system.ini`) under its schema."""

    def __init__(
        self,
        path: Path,
        lock_path: Path,
        schema: FileSchema | Callable[[bool], FileSchema],
        box: SecretBox,
        audit: AuditLog,
        *,
        mode: int = 0o600,
    ) -> None:
        """`schema` is the file's schema, or a function giving the current one (True: look now)."""
        self.path = path
        self.name = path.name
        self._schema_of = schema if callable(schema) else (lambda fresh: schema)
        self._lock_path = lock_path
        self._box = box
        self._audit = audit
        self._versions = VersionLog(audit, path)
        self._mode = mode
        self._cache: Snapshot | None = None
        self._cache_stat: tuple[int, ...] | None = None  # set only when the stat alone proves the bytes unchanged
        self._cache_lock = threading.Lock()
        self._known: Snapshot | None = None  # the version this store last wrote or accounted for (audited)
        self.after_write: list[Callable[[], None]] = []  # told after each write made (the history wakes)
        # told what each write made changed, and by whom (notifications); after the write, never in its way
        self.after_change: list[Callable[[str, WriteResult, Actor, str | None], None]] = []
        self.rules: RuleHook | None = None

    @property
    def schema(self) -> FileSchema:
        """The file's schema as a write sees it (freshly checked)."""
        return self._schema_of(True)

    # -- reading ------------------------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        """The file as it is on disk now: never stale, and parsed again only when its bytes changed.

        A read skips even reading the file when its stat (inode, size, mtime, ctime) is the one
        cached and that ctime was older than RACY_NS when the bytes were read: any change since
        would carry a newer ctime. A younger file is "racy" (git's word): its timestamps may not
        tell two writes in one clock tick apart, so its bytes are compared instead.
        """
        try:
            status = os.stat(self.path)
        except OSError:
            status = None
        key = _stat_key(status) if status is not None else None
        schema = self._schema_of(False)
        cached = self._cache
        if cached is not None and cached.schema is schema and key is not None and key == self._cache_stat:
            return cached
        trusted = status is not None and status.st_ctime_ns < time.time_ns() - RACY_NS
        raw = self._read_bytes()
        same = cached is not None and cached.raw == raw and cached.schema is schema
        snapshot = cached if same and cached is not None else self._parse(raw, schema)
        with self._cache_lock:
            self._cache = snapshot
            self._cache_stat = key if trusted else None
        return snapshot

    def settled_snapshot(self, wait: float = 1.0) -> Snapshot:
        """The file as no write in flight leaves it: read under the write lock, so that a version
        a failing write may yet take back (its folder flush failed, see VersionLog.replace) is
        never read. For what acts on a version (the sync engine); a plain read takes no lock.

        A write holds the lock for milliseconds: LockTimeout after `wait` means a writer stopped
        holding it (a CLI write suspended with Ctrl-Z), and the caller had better try again later
        than wait on.
        """
        with exclusive_lock(self._lock_path, timeout=wait, what=self.name):
            return self.snapshot()

    def last_good(self) -> Snapshot | None:
        """The file now if it parses, else the last version that did (None if none has yet).

        What must keep working while a hand edit waits to be fixed (the Websoft9 key check)
        reads this; reads and writes use snapshot() and say that the file does not parse.
        """
        try:
            return self.snapshot()
        except IniParseError:
            return self._cache

    def _read_bytes(self) -> bytes:
        try:
            return self.path.read_bytes()
        except FileNotFoundError as exc:
            raise DataDirError(f"{self.path} does not exist; run `apphub init` or `apphub serve` first") from exc
        except OSError as exc:
            raise DataDirError(f"{self.path} cannot be read: {exc}") from exc

    def parse(self, raw: bytes) -> Snapshot:
        """Other bytes of this file (an earlier version) read under today's schema; IniParseError if
        they do not parse."""
        return self._parse(raw, self.schema)

    def _parse(self, raw: bytes, schema: FileSchema) -> Snapshot:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            line = raw[: exc.start].count(b"\n") + 1
            raise IniParseError(self.name, line, f"is not valid UTF-8 (byte {exc.start})") from exc
        if text.startswith(_BOM):
            text = text[len(_BOM) :]
        return Snapshot(self.name, raw, IniDocument(text, self.name), schema, self._box)

    # -- writing ------------------------------------------------------------------------------

    def update(
        self,
        changes: Changes,
        actor: Actor,
        *,
        deletes: Iterable[tuple[str, str]] = (),
        if_match: Collection[str] | None = None,
        existing_only: bool = False,
        action: str = "settings.update",
        message: str | None = None,
        secret: Collection[tuple[str, str]] = (),
    ) -> WriteResult:
        """Merge `changes` ({section: {key: value}}) and `deletes` into the file, all or nothing.

        Values are JSON values checked against the schema; a secret key sent back as the mask
        keeps its stored value. `existing_only` is Websoft9's rule: only keys that exist change.
        `if_match`: the versions the caller based its change on; any other current version fails.
        `message`: the caller's words for the change (audit log, history). `secret`: keys stored
        encrypted though the schema does not say so (a file without a schema for them: env.ini).
        """

        def plan(snapshot: Snapshot) -> Plan:
            return self._plan(snapshot, changes, list(deletes), existing_only, frozenset(secret))

        def make(current: Snapshot) -> Edited:
            # A hand edit the sync thread has not seen yet is judged with the write: made on top of
            # it, the write would have its version audited, and the hand edit never judged.
            outside = self._versions.unjudged_keys(current, self._known)
            if outside is not None and not outside:
                self._known = current  # audited, or nothing a rule reads changed: the base to compare with
            # Websoft9's writes (existing_only: its setconfig and PUT /api/settings) get a port conflict
            # as a warning: its own upgrade script writes through them and stops at a refusal (2.0's
            # config has [cockpit] port 9000, and the upgrade sets the console's listen_port to 9000).
            return self._edited(current, plan, refuse=not existing_only, outside=outside)

        return self._write(make, actor, if_match=if_match, action=action, message=message)

    def restore(self, raw: bytes, actor: Actor, *, if_match: Collection[str] | None = None, force: bool = False,
                action: str = "settings.rollback", message: str | None = None) -> WriteResult:
        """Make the file hold `raw` again (an earlier version, from the history) as a new version,
        byte for byte. The whole file is checked against today's schema, every problem at once
        (ValidationFailed), unless `force`; its secrets must decrypt with today's keys even so."""

        def make(current: Snapshot) -> Edited:
            target = self._parse(raw, current.schema)
            if force:
                found = [error for error in field_errors(target.document, current.schema, self._box, self.name)
                         if error.rule == UNREADABLE]
            else:
                found = self.restore_findings(current, target)
            if any(finding.severity == "error" for finding in found):
                raise ValidationFailed(found)
            warnings = found
            changes = version_changes(current, target)
            if not changes and target.raw != current.raw:  # comments or layout only: still that version's bytes
                changes = [Change("*", None, "layout")]
            return Edited(target, changes, warnings)

        return self._write(make, actor, if_match=if_match, action=action, message=message)

    def restore_findings(self, current: Snapshot, target: Snapshot) -> list[FieldError]:
        """What `restore` (not forced) finds in `target` over `current`, raising nothing: the whole
        file against today's schema; only if that passes, the rules on the keys it changes. A
        rollback's plan asks this, so that it never says valid to a rollback then refused."""
        errors = field_errors(target.document, current.schema, self._box, self.name)
        if errors or self.rules is None:
            return errors
        touched = frozenset((c.section, c.key) for c in version_changes(current, target) if c.key is not None)
        return self.rules(target, touched) if touched else []

    def reencrypt_secrets(self, actor: Actor, *, only_plaintext: bool) -> WriteResult:
        """Encrypt secrets typed in plaintext, or (rotation) every secret with the primary key."""

        def plan(snapshot: Snapshot) -> Plan:
            edits: list[Edit] = []
            audit: list[Change] = []
            for section, key in snapshot.secret_keys():
                stored = snapshot.document.get(section, key) or ""
                if is_encrypted(stored):
                    if only_plaintext or not self._box.needs_rotation(stored):
                        continue
                    plain = snapshot.section_plaintext_value(section, key)  # a damaged one fails loudly here
                else:
                    plain = stored  # typed by hand: nothing to decrypt, however damaged the others are
                edits.append(SetValue(section, key, self._box.encrypt(plain)))
                audit.append(Change(section, key, "encrypt", MASK, MASK))
            return edits, audit, {}, []  # no value changes: nothing for the rules to judge

        action = "secrets.encrypt" if only_plaintext else "secrets.rotate"
        return self._write(lambda current: self._edited(current, plan), actor, if_match=None, action=action)

    def _write(
        self,
        make: Callable[[Snapshot], Edited],
        actor: Actor,
        *,
        if_match: Collection[str] | None,
        action: str,
        message: str | None = None,
    ) -> WriteResult:
        with exclusive_lock(self._lock_path, what=self.name):
            raw = self._read_bytes()
            schema = self.schema
            cached = self._cache
            same = cached is not None and cached.raw == raw and cached.schema is schema
            current = cached if same and cached is not None else self._parse(raw, schema)
            if if_match is not None and current.version not in if_match:
                raise VersionConflict(", ".join(sorted(if_match)) or "(none)", current.version, self.name)
            written, audit_changes, warnings = make(current)
            if not audit_changes:
                return WriteResult(current, [], current.version)
            written, audit_changes = self._plaintext_encrypted(written, audit_changes)
            # What earlier writers left: their events settled (a staged file they left is how settle
            # knows they did not replace the file), and the made ones marked in this write's own
            # transaction.
            made = self._versions.settle(mark=False)
            self._versions.account_for(current, made=made)
            event = self._versions.replace(
                current, written, actor, action, audit_changes,
                lambda: Replacement.prepare(self.path, written.raw, current.raw, mode=self._mode),
                made=made, message=message, warnings=[str(w) for w in warnings])
            with self._cache_lock:
                self._cache = written
                self._cache_stat = None
            self._known = written
        result = WriteResult(written, audit_changes, current.version, warnings, event)
        for listener in self.after_write:
            listener()
        for told in self.after_change:
            told(self.name, result, actor, message)
        return result

    def write_lock(self, wait: float = 10.0) -> contextlib.AbstractContextManager[None]:
        """The file's write lock (no write is in flight while it is held); LockTimeout after `wait`."""
        return exclusive_lock(self._lock_path, timeout=wait, what=self.name)

    def _plaintext_encrypted(self, written: Snapshot, changes: list[Change]) -> tuple[Snapshot, list[Change]]:
        """A version a write makes holds no secret in plaintext: one typed by hand that the sync
        thread has not encrypted yet is encrypted by the write too (a version with a plaintext
        secret is one the history cannot keep, and every version a write makes is kept)."""
        edits: list[Edit] = []
        for section, key in written.secret_keys():
            stored = written.document.get(section, key) or ""
            if stored and not is_encrypted(stored):
                edits.append(SetValue(section, key, self._box.encrypt(stored)))
                changes = [*changes, Change(section, key, "encrypt", MASK, MASK)]
        if not edits:
            return written, changes
        document = written.document.with_edits(edits)
        data = document.text.encode("utf-8")
        if written.raw.startswith(_BOM.encode("utf-8")):
            data = _BOM.encode("utf-8") + data
        return Snapshot(self.name, data, document, written.schema, self._box), changes

    def settle_made(self, wait: float = 1.0) -> bool:
        """Under the write lock, so that no write is in flight: mark the events of writes that were
        made done, abandon those a dead writer did not make (for the history, which commits only
        done events). False if a writer held the lock longer than `wait` (try again later)."""
        if not self._audit.pending(self.name):
            return True
        try:
            with exclusive_lock(self._lock_path, timeout=wait, what=self.name):
                self._versions.settle(mark=True)
        except LockTimeout:
            return False
        return True

    def settle(self) -> None:
        """At start: abandon the events of writes that a killed writer did not make, and remove
        their staged files. Events of writes that were made need nothing (they count as done; the
        next write marks them), so this takes no lock and writes nothing unless a staged file of
        a pending event is there. Best effort: on a full disk it is left to the next write."""
        if not self._versions.staged_files_left():
            return
        try:
            with exclusive_lock(self._lock_path, what=self.name):
                self._versions.settle(mark=False)
        except ApphubError as exc:
            logger.warning("%s: audit events left pending by a stopped writer stay pending for now: %s",
                           self.name, exc)

    def preview(self, changes: Changes, *, deletes: Iterable[tuple[str, str]] = (),
                secret: Collection[tuple[str, str]] = ()) -> Snapshot:
        """The version `update` would write, validated the same way, without writing it."""
        return self._previewed(changes, deletes, secret).snapshot

    def judge(self, changes: Changes, *, deletes: Iterable[tuple[str, str]] = ()) -> list[FieldError]:
        """Every problem `update` would find in these changes (errors, and the rules' warnings),
        writing nothing: POST /settings/validate."""
        try:
            return self._previewed(changes, deletes).warnings
        except ValidationFailed as exc:
            return exc.errors

    def _previewed(self, changes: Changes, deletes: Iterable[tuple[str, str]] = (),
                   secret: Collection[tuple[str, str]] = ()) -> Edited:
        def plan(snapshot: Snapshot) -> Plan:
            return self._plan(snapshot, changes, list(deletes), existing_only=False, secret_keys=frozenset(secret))

        return self._edited(self.snapshot(), plan)

    def _edited(self, current: Snapshot, plan: Callable[[Snapshot], Plan], *, refuse: bool = True,
                outside: frozenset[tuple[str, str]] | None = frozenset()) -> Edited:
        """The new version a plan makes of `current`, with its audit changes and the rules'
        warnings; ValidationFailed if invalid (the schema's problems, else the rules' errors).
        `outside`: the keys a hand edit changed in `current` that nothing judged yet, judged too
        (None: not known which, so the whole file)."""
        edits, audit_changes, proposed, errors = plan(current)
        if proposed:
            errors += self._validate(current, proposed)
        unjudged = self._unjudged_problems(current, outside, proposed) if edits else []
        errors += [problem for problem in unjudged if problem.severity == "error"]
        if errors:
            raise ValidationFailed(errors)
        if not edits:
            return Edited(current, [], [])
        try:
            document = current.document.with_edits(edits)
        except ValueError as exc:  # the validation above should have caught it; never write
            raise ValidationFailed([FieldError("?", None, "ini", str(exc), file=self.name)]) from exc
        data = document.text.encode("utf-8")
        if current.raw.startswith(_BOM.encode("utf-8")):
            data = _BOM.encode("utf-8") + data
        written = Snapshot(self.name, data, document, current.schema, self._box)
        warnings = [problem for problem in unjudged if problem.severity != "error"]
        return Edited(written, audit_changes, warnings + self._judged(written, frozenset(proposed), refuse=refuse,
                                                                      outside=outside))

    def _unjudged_problems(self, current: Snapshot, outside: frozenset[tuple[str, str]] | None,
                           proposed: Mapping[tuple[str, str], str | None]) -> list[FieldError]:
        """The schema's problems with what a hand edit changed (`outside`), but for the keys the
        write sets anew. With None (which keys is not known: the first write of this process came
        after a hand edit), the whole file's, as warnings: they may have been there before, when
        nothing refused them."""
        if outside is None:
            found = field_errors(current.document, current.schema, self._box, self.name, plaintext_secrets=False)
            return [dataclasses.replace(error, severity="warning", message=f"{error.message} (in the file as it is)")
                    for error in found if (error.section, error.key) not in proposed]
        kept = {pair: current.document.get(*pair) for pair in outside if pair not in proposed}
        return [_by_hand(problem) for problem in
                self._validate(current, {pair: text for pair, text in kept.items() if text is not None})]

    def _judged(self, written: Snapshot, touched: frozenset[tuple[str, str]], *, refuse: bool = True,
                outside: frozenset[tuple[str, str]] | None = frozenset()) -> list[FieldError]:
        """The rules' warnings for `written`; ValidationFailed with every finding if one is an error
        (unless not `refuse`: every finding is then a warning). `outside` as for `_edited`: with
        None, the whole file is judged, and only a finding about a key the write sets can refuse it
        (what else is wrong may have been so before, when nothing refused it)."""
        if self.rules is None or not (touched or outside or outside is None):
            return []
        if outside is None:
            # The write's own keys judged as any write's (a switch of environment on everything it
            # changes); the rest of the file as a whole-file check does, its findings as warnings.
            findings = self.rules(written, touched) if touched else []
            seen = {(f.file, f.section, f.key, f.rule) for f in findings}
            findings += [dataclasses.replace(finding, severity="warning") for finding in self.rules(written, None)
                         if (finding.file, finding.section, finding.key, finding.rule) not in seen]
        else:
            findings = [_by_hand(finding) if (finding.section, finding.key) in outside - touched else finding
                        for finding in self.rules(written, touched | outside)]
        if not refuse:
            findings = [dataclasses.replace(finding, severity="warning") if finding.rule == LENIENT_RULE else finding
                        for finding in findings]
        if any(finding.severity == "error" for finding in findings):
            raise ValidationFailed(findings)
        return findings

    def account_for_outside_change(self, previous: Snapshot | None, warnings: Sequence[str] = ()) -> Snapshot:
        """Under the write lock, record the version on disk if no audit event produced it: a hand
        edit, with its per-key changes against `previous` (the last version the caller knew).

        Under the lock, because a writer replaces the file before it commits its event: read
        outside it, a write in flight would look like a hand edit.
        """
        with exclusive_lock(self._lock_path, what=self.name):
            current = self.snapshot()
            self._versions.settle()
            recorded = self._versions.account_for(current, previous, "settings.file", f"{self.name} edited by hand",
                                                  warnings=warnings)
            self._known = current
        if recorded:
            result = WriteResult(current, version_changes(previous, current) if previous is not None else [],
                                 previous.version if previous is not None else "", audit_event=recorded)
            for told in self.after_change:
                told(self.name, result, OUTSIDE_ACTOR, f"{self.name} edited by hand")
        return current

    def _plan(
        self,
        current: Snapshot,
        changes: Changes,
        deletes: list[tuple[str, str]],
        existing_only: bool,
        secret_keys: frozenset[tuple[str, str]] = frozenset(),
    ) -> Plan:
        document = current.document
        schema = current.schema  # looked up once, as the write began
        errors: list[FieldError] = []
        edits: list[Edit] = []
        audit: list[Change] = []
        proposed: dict[tuple[str, str], str | None] = {}  # plaintext of every touched key; None = deleted

        def problem(section: str, key: str | None, found: Problem, value: object = None) -> None:
            errors.append(FieldError(section, key, found.rule, found.message, shown_value(schema, section, key, value),
                                     self.name, document.line_of(section, key)))

        for section, keys in changes.items():
            if (bad := check_name("section", section)) is not None:
                problem(section, None, bad)
                continue
            if not keys and section not in schema.sections and not schema.extra_sections:
                # With keys, validation names the section; an empty object must not slip through.
                known = ", ".join(schema.sections) or "none"
                problem(section, None, Problem("unknown_section", f"is not a section of {self.name} (known: {known})"))
                continue
            if existing_only and not document.has_section(section):
                raise SectionNotFound(section, self.name)
            for key, value in keys.items():
                if (bad := check_name("key", key)) is not None:
                    problem(section, key, bad)
                    continue
                if existing_only and not document.has_key(section, key):
                    raise KeyNotFound(section, key, self.name)
                spec = schema.key(section, key)
                text = to_ini_text(spec, value)
                if isinstance(text, Problem):
                    problem(section, key, text, value)
                    continue
                if found := check_text(text):  # before anything encrypts or encodes it
                    for bad in found:
                        problem(section, key, bad, value)
                    continue
                stored = document.get(section, key)
                secret = ((spec is not None and spec.secret) or (stored is not None and is_encrypted(stored))
                          or (section, key) in secret_keys)
                if secret:
                    if text == MASK and stored is None:
                        problem(section, key, Problem("masked", f"{MASK} is how a secret is shown; it cannot be "
                                                                "a new secret's value"))
                        continue
                    if text == MASK:
                        continue  # the client sent back what it was shown: keep the stored value
                    if stored is not None and is_encrypted(stored) and self._same_secret(current, section, key, text):
                        continue
                    if text == "" and stored == "":  # an empty secret sent back as it is shown: no change
                        continue
                    new_stored = self._box.encrypt(text) if text else ""
                    old_shown, new_shown = (mask(stored) if stored is not None else None), mask(text)
                else:
                    if stored == text:
                        continue
                    new_stored, old_shown, new_shown = text, stored, text
                proposed[(section, key)] = text
                edits.append(SetValue(section, key, new_stored))
                audit.append(Change(section, key, "add" if stored is None else "set", old_shown, new_shown))

        for section, key in deletes:
            stored = document.get(section, key)
            if stored is None:
                if not document.has_section(section):
                    raise SectionNotFound(section, self.name)
                raise KeyNotFound(section, key, self.name)
            spec = schema.key(section, key)
            if spec is not None and spec.required:
                problem(section, key, Problem("required", "is required and cannot be deleted"))
                continue
            secret = (spec is not None and spec.secret) or is_encrypted(stored)
            proposed[(section, key)] = None
            edits.append(DeleteKey(section, key))
            audit.append(Change(section, key, "delete", mask(stored) if secret else stored, None))

        return edits, audit, proposed, errors

    def _validate(self, current: Snapshot, proposed: Mapping[tuple[str, str], str | None]) -> list[FieldError]:
        document = current.document
        values: dict[str, dict[str, str]] = {}
        for section in dict.fromkeys(section for section, _ in proposed):
            # Untouched keys of a touched section only matter for presence (required keys).
            values[section] = dict(document.items(section)) if document.has_section(section) else {}
        for (section, key), text in proposed.items():
            if text is None:
                values[section].pop(key, None)
            else:
                values[section][key] = text
        touched = [pair for pair, text in proposed.items() if text is not None]

        schema = current.schema

        def shown(section: str, key: str | None, value: object) -> str | None:
            return shown_value(schema, section, key, value)

        return check_file(schema, values, file=self.name, only=touched, line_of=document.line_of, mask=shown)

    @staticmethod
    def _same_secret(current: Snapshot, section: str, key: str, text: str) -> bool:
        try:
            return current.plaintext(section, key) == Secret(text)
        except SecretError:
            return False  # a damaged value: writing a new one is how it gets repaired


def _by_hand(finding: FieldError) -> FieldError:
    """A finding about a value a hand edit set, which the write would have made its own."""
    return dataclasses.replace(finding, message=f"{finding.message} (set by a hand edit apphub has not yet accepted)")
