"""The history's git repository (pygit2): a bare repository whose one branch holds a commit per version.

Only this module speaks pygit2; its errors become HistoryError here. Each commit's tree holds the
versioned files by their path in the data folder (`config.ini`, `system.ini`, `services.yaml`,
`schema.d/...`, `templates/...`), so `git log -p config.ini` in the repository reads as one expects.
"""

from __future__ import annotations

import datetime as dt
import logging
import subprocess
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pygit2
from pygit2.enums import FileMode, ObjectType

from apphub.errors import HistoryError

logger = logging.getLogger("apphub.history")

BRANCH = "main"
REF = f"refs/heads/{BRANCH}"
COMMITTER = ("apphub", "apphub@localhost")
GC_TIMEOUT_S = 600


@dataclass(frozen=True)
class CommitInfo:
    """What the index keeps of a commit, read back from git (see HistoryIndex.rebuild)."""

    id: str
    parent: str | None
    at: dt.datetime
    author: str
    message: str


def unified_diff(old: str, new: str, old_label: str, new_label: str, context: int = 3) -> str:
    """The unified diff of two texts, by git's diff (libgit2: in C, milliseconds for 5,000 lines
    where difflib takes a tenth of a second), with plain `---`/`+++` labels."""
    if old == new:
        return ""
    # The patch points into these buffers (libgit2 does not copy them): they must outlive its text.
    old_bytes, new_bytes = old.encode(), new.encode()
    patch = pygit2.Patch.create_from(old_bytes, new_bytes, old_as_path=old_label, new_as_path=new_label,
                                     context_lines=context)
    text = patch.text or ""
    del patch
    lines = text.splitlines(keepends=True)
    body = next((index for index, line in enumerate(lines) if line.startswith("@@")), len(lines))
    tail = "".join(lines[body:])
    return f"--- {old_label}\n+++ {new_label}\n{tail}" + ("" if not tail or tail.endswith("\n") else "\n")


class GitRepository:
    """A bare repository at `path`, opened (and checked) by `open_checked`."""

    def __init__(self, repository: pygit2.Repository, path: Path) -> None:
        self._repo = repository
        self.path = path

    @classmethod
    def create(cls, path: Path) -> GitRepository:
        try:
            path.mkdir(parents=True, mode=0o700, exist_ok=True)
            repository = pygit2.init_repository(str(path), bare=True, initial_head=BRANCH)
            # No auto-gc inside libgit2 (it has none); `compact` runs `git gc --auto` between commits.
            repository.config["core.logAllRefUpdates"] = False
        except (pygit2.GitError, OSError) as exc:
            raise HistoryError(f"cannot create the history repository {path}: {exc}") from exc
        return cls(repository, path)

    @classmethod
    def open_checked(cls, path: Path) -> GitRepository:
        """Open the repository and read its last commit through to the blobs of its tree: a
        repository that cannot be read that far raises HistoryError (damaged)."""
        try:
            repository = pygit2.Repository(str(path))
            if not repository.is_bare:
                raise HistoryError(f"{path} is not a bare git repository")
            if (path / "HEAD").read_text(encoding="utf-8", errors="replace").strip() != f"ref: {REF}":
                raise HistoryError(f"{path}/HEAD does not point at {REF} (git would not read the repository)")
            opened = cls(repository, path)
            head = opened.head()
            if head is not None:
                commit = repository[head]
                for entry in opened._walk_tree(commit.peel(pygit2.Tree), ""):
                    repository[entry[1]].read_raw()
        except HistoryError:
            raise
        except (pygit2.GitError, KeyError, ValueError, OSError) as exc:
            raise HistoryError(f"the history repository {path} cannot be read: {exc}") from exc
        return opened

    def head(self) -> str | None:
        """The last commit of the branch, or None in a new repository."""
        try:
            reference = self._repo.references.get(REF)
        except pygit2.GitError as exc:
            raise HistoryError(f"the history repository {self.path} has a damaged {REF}: {exc}") from exc
        return None if reference is None else str(reference.target)

    def set_head(self, commit: str) -> None:
        try:
            self._repo.references.create(REF, pygit2.Oid(hex=commit), force=True)
        except pygit2.GitError as exc:
            raise HistoryError(f"cannot move {REF} of {self.path} to {commit}: {exc}") from exc

    def read(self, commit: str, path: str) -> bytes | None:
        """The bytes of `path` at `commit`, or None if the commit has no such file."""
        try:
            tree = self._repo[commit].peel(pygit2.Tree)
            try:
                entry = tree[path]
            except KeyError:
                return None
            return bytes(self._repo[entry.id].read_raw())
        except (pygit2.GitError, KeyError, ValueError) as exc:
            raise HistoryError(f"cannot read {path} at {commit} from {self.path}: {exc}") from exc

    def files(self, commit: str | None) -> dict[str, str]:
        """Every file of a commit's tree: path -> blob id."""
        if commit is None:
            return {}
        try:
            tree = self._repo[commit].peel(pygit2.Tree)
            return dict(self._walk_tree(tree, ""))
        except (pygit2.GitError, KeyError, ValueError) as exc:
            raise HistoryError(f"cannot list the files of {commit} in {self.path}: {exc}") from exc

    def _walk_tree(self, tree: pygit2.Tree, prefix: str) -> Iterator[tuple[str, str]]:
        for entry in tree:
            path = prefix + str(entry.name)
            if entry.type == ObjectType.TREE:
                yield from self._walk_tree(self._repo[entry.id].peel(pygit2.Tree), path + "/")
            else:
                yield path, str(entry.id)

    def blob_id(self, data: bytes) -> str:
        """The id git gives these bytes as a blob (written to the repository)."""
        return str(self._repo.create_blob(data))

    def commit(self, parent: str | None, changes: Mapping[str, bytes | None], author: str, message: str,
               at: dt.datetime) -> str:
        """A new commit on `parent` whose tree is the parent's with `changes` (path -> bytes, None:
        removed). The branch is not moved: set_head does, once for a batch."""
        try:
            index = pygit2.Index()
            if parent is not None:
                index.read_tree(self._repo[parent].peel(pygit2.Tree))
            for path, data in changes.items():
                if data is None:
                    if path in index:
                        index.remove(path)
                else:
                    index.add(pygit2.IndexEntry(path, self._repo.create_blob(data), FileMode.BLOB))
            tree = index.write_tree(self._repo)
            offset = int((at.utcoffset() or dt.timedelta()).total_seconds() // 60)
            who = pygit2.Signature(author, f"{author}@apphub", int(at.timestamp()), offset)
            by = pygit2.Signature(*COMMITTER, int(at.timestamp()), offset)
            parents = [pygit2.Oid(hex=parent)] if parent is not None else []
            return str(self._repo.create_commit(None, who, by, message, tree, parents))
        except (pygit2.GitError, ValueError, OSError) as exc:
            raise HistoryError(f"cannot commit to the history repository {self.path}: {exc}") from exc

    def log(self, start: str | None) -> Iterator[CommitInfo]:
        """Commits from `start` back to the first, newest first (first parents only)."""
        commit_id = start
        while commit_id is not None:
            try:
                commit = self._repo[commit_id].peel(pygit2.Commit)
            except (pygit2.GitError, KeyError, ValueError) as exc:
                raise HistoryError(f"cannot read commit {commit_id} of {self.path}: {exc}") from exc
            parent = str(commit.parent_ids[0]) if commit.parent_ids else None
            zone = dt.timezone(dt.timedelta(minutes=commit.author.offset))
            yield CommitInfo(str(commit.id), parent, dt.datetime.fromtimestamp(commit.author.time, zone),
                             commit.author.name, commit.message)
            commit_id = parent

    def compact(self) -> None:
        """`git gc --auto`: pack loose objects once there are enough (git decides, as it does after
        its own commits), so that the repository stays compact over 100,000 versions."""
        try:
            # Not detached (git's default for --auto): run in the background, its prune of loose
            # objects removed a folder of objects/ while the next commit was writing into it.
            subprocess.run(["git", "-c", "gc.autoDetach=false", "--git-dir", str(self.path), "gc", "--auto",
                            "--quiet"], check=True, capture_output=True, timeout=GC_TIMEOUT_S)
        except (OSError, subprocess.SubprocessError) as exc:
            logger.warning("history: git gc --auto in %s failed: %s", self.path, exc)
