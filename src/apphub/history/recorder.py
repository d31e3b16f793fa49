"""Turning accepted versions into commits, in the order they were made.

A write keeps its version's bytes in its own audit transaction (AuditLog.versions_to_record), so a
version acknowledged is never lost, whatever moment the process dies: `record` commits what is
waiting, oldest first, under the history's lock (the server's worker and a CLI write may both
call it), moves the branch once per batch, then indexes the batch and links its audit events in one
transaction. A process that dies between the branch and the index leaves commits the index lacks:
the next `record` reads them back from their trailers (catch_up). The system files that are not
written through a store (services.yaml, schema.d/, templates/) are committed when they differ from
the last commit.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import re
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pygit2
import yaml

from apphub.audit.log import AuditLog, VersionToRecord, utc_now
from apphub.errors import HistoryError
from apphub.history.gitrepo import CommitInfo, GitRepository
from apphub.history.index import HistoryIndex, NewEntry
from apphub.history.inidiff import KeyChange, SecretRule, key_changes
from apphub.paths import DataDir
from apphub.store.snapshot import version_of

logger = logging.getLogger("apphub.history")

STORE_FILES = ("config.ini", "system.ini", "env.ini")  # written through the stores: their versions come from events
# an environment's overlay (environments/): written through a store too
OVERLAY = re.compile(r"^config\.[a-z0-9][a-z0-9_-]{0,31}\.ini$")


def is_store_file(name: str) -> bool:
    return name in STORE_FILES or OVERLAY.match(name) is not None
CONFIG = "config.ini"
BATCH = 500
COMPACT_EVERY = 1000  # commits between two `git gc --auto`
SUBJECT_KEYS = 8  # changed keys named in a generated subject; the body names them all
_TRAILER = re.compile(r"^Apphub-(?P<name>[A-Za-z-]+): (?P<value>.*)$", re.MULTILINE)

# The schema's secret rule of a store file (None for other files)
SecretRules = Callable[[str], SecretRule | None]


def versioned_system_files(data: DataDir) -> dict[str, bytes]:
    """The files besides config.ini and system.ini that shape what services receive: services.yaml,
    schema.d/ and the manifest's templates folder, by their path in the data folder."""
    found: dict[str, bytes] = {}
    manifest = data.root / "services.yaml"
    if manifest.is_file() and not manifest.is_symlink():
        found["services.yaml"] = manifest.read_bytes()
    for folder in ("schema.d", _templates_folder(found.get("services.yaml"))):
        root = data.root / folder
        if not _inside(root, data.root):
            continue
        for path in sorted(_files_under(root)):
            found[path.relative_to(data.root).as_posix()] = path.read_bytes()
    return found


def _inside(folder: Path, root: Path) -> bool:
    """A folder strictly inside the data folder, and not its state folder: `templates: .` must not
    make config.ini (a hand-typed password in it) or .apphub/secret.key a "system file"."""
    try:
        relative = folder.resolve().relative_to(root.resolve())
    except (OSError, ValueError):
        return False
    return bool(relative.parts) and relative.parts[0] != ".apphub" and not folder.is_symlink()


def system_files_signature(data: DataDir) -> tuple[tuple[str, int, int, int], ...]:
    """The path, size, mtime and inode of every versioned system file and of the folders holding
    them: equal signatures mean no file was changed, added or removed (short of a change in the
    same clock tick with the same size, which the next change catches)."""
    found = []
    for path in [data.root / "services.yaml", data.root / "schema.d", data.root / "templates",
                 *_files_under(data.root / "schema.d"), *_files_under(data.root / "templates")]:
        try:
            status = path.stat()
        except OSError:
            continue
        found.append((str(path), status.st_size, status.st_mtime_ns, status.st_ino))
    return tuple(found)


def _templates_folder(manifest: bytes | None) -> str:
    try:
        loaded = yaml.safe_load(manifest) if manifest else None
    except yaml.YAMLError:
        loaded = None
    folder = loaded.get("templates") if isinstance(loaded, dict) else None
    if isinstance(folder, str) and folder and not folder.startswith("/") and ".." not in Path(folder).parts:
        return folder
    return "templates"


def _files_under(root: Path) -> Iterator[Path]:
    if not root.is_dir():
        return
    for folder, dirs, files in os.walk(root):
        dirs[:] = [name for name in dirs if not name.startswith(".")]
        for name in files:
            path = Path(folder) / name
            if not name.startswith(".") and path.is_file() and not path.is_symlink():  # no link out of the folder
                yield path


def commit_message(subject: str, changes: list[KeyChange], file: str, trailers: Mapping[str, str]) -> str:
    body = "\n".join(f"{change.name} {change.change}" for change in changes)
    tail = "\n".join(f"Apphub-{name}: {value}" for name, value in trailers.items())
    return f"{subject}\n\n" + (f"{file}:\n{body}\n\n" if body else "") + tail + "\n"


def one_line(message: str | None) -> str:
    """A caller's message as a commit's subject: one line (its own lines cannot pass for trailers)."""
    return " ".join((message or "").split())


def generated_subject(file: str, changes: list[KeyChange]) -> str:
    """What a commit made without a message of its caller's says: which keys changed, and how."""
    if not changes:
        return f"{file}: comments or layout changed"
    named = "; ".join(f"{change.name} {change.change}" for change in changes[:SUBJECT_KEYS])
    more = len(changes) - SUBJECT_KEYS
    return named + (f"; and {more} more" if more > 0 else "") + ("" if file == CONFIG else f" ({file})")


class Recorder:
    """Commits the versions waiting in the audit log into `repository`, indexed in `index`."""

    def __init__(self, data: DataDir, audit: AuditLog, index: HistoryIndex, secret_rules: SecretRules) -> None:
        self._data = data
        self._audit = audit
        self._index = index
        self._secret_rules = secret_rules
        self._since_compact = 0
        self._parsed: dict[bytes, dict[tuple[str, str], str]] = {}  # the last versions' values, by bytes
        self._system_seen: tuple[tuple[str, int, int, int], ...] | None = None

    def record(self, repository: GitRepository) -> int:
        """Commit every version waiting, and the system files if they changed; the number of commits."""
        self.catch_up(repository)
        made = 0
        made += self._record_system_files(repository)
        while batch := self._audit.versions_to_record(BATCH):
            made += self._record_batch(repository, batch)
            if len(batch) < BATCH:
                break
        self._since_compact += made
        if self._since_compact >= COMPACT_EVERY:
            repository.compact()
            self._since_compact = 0
        return made

    def _record_batch(self, repository: GitRepository, batch: list[VersionToRecord]) -> int:
        head = repository.head()
        last = self._index.last()
        config_version = last.config_version if last is not None else None
        entries: list[NewEntry] = []
        links: list[tuple[int, str]] = []  # events whose version is the last commit's already
        contents: dict[str, bytes | None] = {}
        for version in batch:
            if not is_store_file(version.file):
                continue
            if version.file not in contents:
                contents[version.file] = repository.read(head, version.file) if head is not None else None
            previous = contents[version.file]
            new_config = version_of(version.content) if version.file == CONFIG else config_version
            if previous == version.content and head is not None:  # recovered at start, say: link only
                links.append((version.event_id, head))
                continue
            changes = key_changes(previous, version.content, self._rule(version.file) or _no_secrets,
                                  parsed=self._parsed)
            subject = one_line(version.message) or generated_subject(version.file, changes)
            trailers = {"File": version.file, "Version": version.version, "Config-Version": new_config or "",
                        "Source": version.source, "Event": str(version.event_id)}
            at = _parse_time(version.at)
            files: dict[str, bytes | None] = {version.file: version.content}
            if head is None:  # the first commit holds the system files as they are
                files = {**versioned_system_files(self._data), **files}
            head = repository.commit(head, files, version.actor,
                                     commit_message(subject, changes, version.file, trailers), at)
            contents[version.file] = version.content
            config_version = new_config
            entries.append(NewEntry(head, version.at, version.actor, version.source, version.file, version.version,
                                    config_version, subject, version.event_id, False,
                                    [(version.file, c.section, c.key, c.change) for c in changes]))
        if head is not None:
            repository.set_head(head)
        self._index.add(entries, links)
        return len(entries)

    def record_files(self, repository: GitRepository, files: Mapping[str, bytes | None], author: str, source: str,
                     message: str | None = None, *, recovered: bool = False) -> str | None:
        """Commit these files (path -> bytes, None: removed) as they are now, if they differ from the
        last commit: what was not made through an audited write (a version recovered at start, a
        system file). Returns the commit, or None if nothing differed."""
        head = repository.head()
        known = repository.files(head)
        changed = {path: data for path, data in files.items()
                   if (data is None and path in known) or (data is not None and known.get(path) != _blob_id(data))}
        if not changed:
            return None
        last = self._index.last()
        config_version = last.config_version if last is not None else None
        all_changes: list[tuple[str, str, str | None, str]] = []
        names: list[KeyChange] = []
        for path, data in changed.items():
            rule = self._rule(path)
            if rule is not None and data is not None:
                found = key_changes(repository.read(head, path) if head and path in known else None, data, rule)
                names += found
                all_changes += [(path, c.section, c.key, c.change) for c in found]
            else:
                kind = "removed" if data is None else "changed" if path in known else "added"
                all_changes.append((path, "", None, kind))
            if path == CONFIG and data is not None:
                config_version = version_of(data)
        subject = message or "; ".join(f"{path} {kind}" for path, _, key, kind in all_changes if key is None) or \
            generated_subject(CONFIG, names)
        trailers = {"File": ",".join(changed), "Config-Version": config_version or "", "Source": source}
        if recovered:
            trailers["Recovered"] = "yes"
        at = utc_now()
        commit = repository.commit(head, changed, author, commit_message(subject, names, ",".join(changed),
                                                                         trailers), _parse_time(at))
        repository.set_head(commit)
        first = next(iter(changed))
        self._index.add([NewEntry(commit, at, author, source, ",".join(changed),
                                  version_of(changed[first] or b""), config_version, subject, None, recovered,
                                  all_changes)])
        return commit

    def _record_system_files(self, repository: GitRepository) -> int:
        head = repository.head()
        if head is None:
            return 0  # the first commit (of the first version, or at start) takes them in
        seen = system_files_signature(self._data)
        if seen == self._system_seen:
            return 0  # nothing of theirs changed since they were last compared (stat, as git's index does)
        on_disk: dict[str, bytes | None] = dict(versioned_system_files(self._data))
        for path in repository.files(head):
            if not is_store_file(path) and path not in on_disk:
                on_disk[path] = None
        made = self.record_files(repository, on_disk, "file", "file")
        self._system_seen = seen
        return 1 if made else 0

    def _rule(self, file: str) -> SecretRule | None:
        return self._secret_rules(file) if is_store_file(file) else None

    def catch_up(self, repository: GitRepository) -> int:
        """Index the commits the branch has and the index lacks (a process died between moving the
        branch and indexing; or the index was lost): read back from their trailers, newest known
        first. If the index knows none of the branch's commits, it is rebuilt from the whole branch."""
        head = repository.head()
        last = self._index.last()
        if head is None or (last is not None and last.commit == head):
            return 0
        missing: list[CommitInfo] = []
        for commit in repository.log(head):
            if self._index.seq_of(commit.id) is not None:
                break
            missing.append(commit)
        else:
            if last is not None:
                logger.warning("history: the index knows no commit of the branch; rebuilding it from git")
                self._index.clear()
        entries = [self._entry_of(repository, commit) for commit in reversed(missing)]
        self._index.add(entries)
        return len(entries)

    def _entry_of(self, repository: GitRepository, commit: CommitInfo) -> NewEntry:
        last_paragraph = commit.message.rstrip("\n").rsplit("\n\n", 1)[-1]  # a caller's message cannot forge them
        trailers = {match["name"]: match["value"] for match in _TRAILER.finditer(last_paragraph)}
        files = [name for name in trailers.get("File", CONFIG).split(",") if name]
        changes: list[tuple[str, str, str | None, str]] = []
        for path in files:
            rule = self._rule(path)
            data = repository.read(commit.id, path)
            if rule is not None and data is not None:
                before = repository.read(commit.parent, path) if commit.parent else None
                changes += [(path, c.section, c.key, c.change) for c in key_changes(before, data, rule)]
            else:
                changes.append((path, "", None, "changed"))
        config = repository.read(commit.id, CONFIG)
        event = trailers.get("Event")
        at = commit.at.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        return NewEntry(commit.id, at, commit.author, trailers.get("Source", "file"), ",".join(files),
                        trailers.get("Version") or version_of(repository.read(commit.id, files[0]) or b""),
                        version_of(config) if config is not None else None, commit.message.split("\n", 1)[0],
                        int(event) if event and event.isdigit() else None, trailers.get("Recovered") == "yes",
                        changes)


def _no_secrets(section: str, key: str) -> bool:
    return False


def _blob_id(data: bytes) -> str:
    return str(pygit2.hash(data))


def _parse_time(at: str) -> dt.datetime:
    try:
        return dt.datetime.fromisoformat(at.replace("Z", "+00:00"))
    except ValueError as exc:
        raise HistoryError(f"an audit event has an unreadable time '{at}'") from exc
