"""Environments: one base `config.ini`, and per environment (`dev`, `staging`, `prod`, any name)
an overlay file `config.<name>.ini` next to it holding only what differs. Which one this host
runs is `system.ini [environments] active` (empty: the base alone).

An overlay is an INI file like config.ini, under config.ini's schema with nothing required (it
holds only what differs), written through its own IniStore: locked, atomic, audited, secrets
encrypted with the folder's key. What the services get is the merge: the base with the active
overlay's keys over it (`effective`). The rules judge that merge, whichever file a write goes to.
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
from collections.abc import Callable, Collection, Iterable, Mapping
from pathlib import Path

from apphub.audit.log import Actor, AuditLog
from apphub.errors import ApphubError, FieldError, IniParseError, NotFound, ValidationFailed
from apphub.paths import DataDir
from apphub.store.atomic import Replacement, exclusive_lock
from apphub.store.check import field_errors
from apphub.store.inidoc import SetValue
from apphub.store.inistore import IniStore, RuleHook, WriteResult
from apphub.store.schema import FileSchema, KeySpec, SectionSpec
from apphub.store.secrets import SecretBox
from apphub.store.snapshot import Snapshot

logger = logging.getLogger("apphub.environments")

BASE = "base"  # the name of config.ini itself, where a name is asked for
NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")  # whole names only (fullmatch): `$` lets "prod\n" through
ACTIVE = ("environments", "active")  # system.ini
HEADER = b"# An environment's overlay: only the keys whose value differs from config.ini's (apphub environments)\n"


class EnvironmentNotFound(NotFound):
    """No overlay file of that name."""

    def __init__(self, name: str, known: list[str]) -> None:
        self.name = name
        super().__init__(f"there is no environment '{name}' (known: {', '.join([BASE, *known])})")


RESERVED = {BASE, "diff", "promote"}  # `base` is config.ini; the others are API routes
NAME_RULE = "1-32 lower-case letters, digits, '_' or '-', and not base, diff or promote"


def is_name(name: str) -> bool:
    return name not in RESERVED and NAME.fullmatch(name) is not None


def check_name(name: str) -> str:
    if not is_name(name):
        raise ValidationFailed([FieldError("environments", None, "name", f"{name!r} cannot name an environment: use "
                                           f"{NAME_RULE}", file="environments")])
    return name


def file_name(name: str) -> str:
    return f"config.{name}.ini"


def relaxed(schema: FileSchema) -> FileSchema:
    """config.ini's schema as an overlay's: the same keys and types, none of them required, no
    rules of its own (the rules judge the merge)."""
    sections = {
        name: SectionSpec(description=spec.description, extra_keys=spec.extra_keys,
                          keys={key: KeySpec.model_validate({**key_spec.model_dump(), "required": False})
                                for key, key_spec in spec.keys.items()})
        for name, spec in schema.sections.items()
    }
    return FileSchema(extra_sections=schema.extra_sections, sections=sections)


def merged(base: Snapshot, overlay: Snapshot | None) -> Snapshot:
    """config.ini as an environment sees it: the base with the overlay's keys over it (secrets stay
    encrypted: both files share the folder's key)."""
    if overlay is None:
        return base
    edits = [SetValue(section, key, stored) for section in overlay.sections()
             for key, stored in overlay.document.items(section)]
    if not edits:
        return base
    document = base.document.with_values(edits)
    return Snapshot(base.name, document.text.encode("utf-8"), document, base.schema, base.box)


class Environments:
    """The overlays of one data folder."""

    def __init__(self, data: DataDir, config: IniStore, system: IniStore, box: SecretBox, audit: AuditLog) -> None:
        self._data = data
        self._config = config
        self.base = config  # config.ini's store, which a promotion to "base" writes
        self._system = system
        self._box = box
        self._audit = audit
        self._stores: dict[str, IniStore] = {}
        self._relaxed: tuple[FileSchema, FileSchema] | None = None
        self._lock = threading.Lock()
        self.rules_for: Callable[[str], RuleHook | None] = lambda name: None  # set by Core
        self.on_new_store: list[Callable[[IniStore], None]] = []  # told of each overlay store made (the history)

    # -- which ------------------------------------------------------------------------------

    def names(self) -> list[str]:
        """Every environment with an overlay file, by name."""
        found = []
        for path in self._data.root.glob("config.*.ini"):
            name = path.name[len("config."):-len(".ini")]
            if is_name(name):
                found.append(name)
        return sorted(found)

    def active(self) -> str | None:
        """The environment this host runs (system.ini [environments] active), or None: the base.
        The name as written, even one that cannot name an environment (`active_problem` says what
        is wrong with it)."""
        system = self._system.last_good()
        name = (system.document.get(*ACTIVE) or "").strip() if system is not None else ""
        return None if name in ("", BASE) else name  # `base`, typed by hand, is config.ini alone as elsewhere

    def active_problem(self) -> FieldError | None:
        """What is wrong with system.ini's `active` when it cannot name an environment (a hand edit:
        a write through apphub is refused by system.ini's schema), at its line; None when it can."""
        name = self.active()
        if name is None or is_name(name):
            return None
        system = self._system.last_good()
        line = system.document.line_of(*ACTIVE) if system is not None else None
        return FieldError(ACTIVE[0], ACTIVE[1], "environment",
                          f"{name!r} cannot name an environment (a name is {NAME_RULE}), so config.ini "
                          "alone applies; `apphub environments use base`, or `use NAME` with an existing "
                          "environment's name, sets it", name, self._system.name, line)

    def path(self, name: str) -> Path:
        return self._data.root / file_name(self._checked_name(name))

    def _checked_name(self, name: str) -> str:
        """check_name, except that system.ini's invalid `active` asked for (explain, the sync) is
        blamed where it is written: that line is what the operator has to fix."""
        try:
            return check_name(name)
        except ValidationFailed:
            problem = self.active_problem()
            if problem is not None and problem.value == name:
                raise ValidationFailed([problem]) from None
            raise

    # -- stores -----------------------------------------------------------------------------

    def store(self, name: str, *, create: bool = False) -> IniStore:
        """The overlay's store; EnvironmentNotFound unless it exists or `create` (an empty one)."""
        path = self.path(name)
        with self._lock:
            found = self._stores.get(name)
            if found is not None and path.exists():
                return found
            if not path.exists():
                if not create:
                    raise EnvironmentNotFound(name, self.names())
                # under the file's lock, as its writers: another process may be making it too
                with exclusive_lock(self._data.lock_for(path), what=path.name):
                    if not path.exists():
                        Replacement.prepare(path, HEADER, None, mode=0o600).swap()
            store = IniStore(path, self._data.lock_for(path), self._overlay_schema, self._box, self._audit)
            store.rules = self.rules_for(name)
            self._stores[name] = store
        for listener in self.on_new_store:
            listener(store)
        return store

    def _overlay_schema(self, fresh: bool) -> FileSchema:
        base = self._config.schema if fresh else self._config.snapshot().schema
        cached = self._relaxed
        if cached is not None and cached[0] is base:
            return cached[1]
        made = relaxed(base)
        self._relaxed = (base, made)
        return made

    def stores(self) -> dict[str, IniStore]:
        """Every overlay's store, by file name."""
        found = {}
        for name in self.names():
            with contextlib.suppress(EnvironmentNotFound):  # removed meanwhile
                store = self.store(name)
                found[store.name] = store
        return found

    def update(self, name: str, changes: Mapping[str, Mapping[str, object]], actor: Actor, *,
               deletes: Iterable[tuple[str, str]] = (), action: str = "environments.update",
               message: str | None = None, if_match: Collection[str] | None = None) -> WriteResult:
        """A write of `name`'s overlay, made on first use. A first write that fails, or changes
        nothing (`{}`, a promotion of no keys), leaves no file: an overlay file is an environment, and
        one made by no audited write would be listed with no event or history saying who made it."""
        fresh = not self.path(name).exists()
        store = self.store(name, create=True)
        try:
            result = store.update(changes, actor, deletes=deletes, action=action, message=message, if_match=if_match)
        except BaseException:
            if fresh:
                self._remove_if_unwritten(name, store)
            raise
        if fresh and not result.changed:
            self._remove_if_unwritten(name, store)
        return result

    def _remove_if_unwritten(self, name: str, store: IniStore) -> None:
        """Remove an overlay made for a write that failed or changed nothing, if no write has been
        made to it since (another writer's, or this one's made after all): under its lock, only while
        it holds the bare header it was made with."""
        path = self.path(name)
        with contextlib.suppress(ApphubError, OSError), store.write_lock(), self._lock:
            if path.read_bytes() == HEADER:  # any write made since changed it
                path.unlink()
                self._stores.pop(name, None)

    def overlay(self, name: str | None) -> Snapshot | None:
        """The overlay of `name` as it is now (None: the base, or no file for it).

        system.ini's `active` typed by hand as a name no environment can have is taken as the sync
        takes it: it refuses that overlay and applies config.ini alone, so config.ini alone is what
        is judged (a config.ini write is not blocked by a typo in another file, and a switch away
        from it, `environments use base`, is judged from what runs now). Any other invalid name is
        the caller's error (ValidationFailed)."""
        if name is None or name == BASE:
            return None
        problem = None if is_name(name) else self.active_problem()
        if problem is not None and problem.value == name:
            logger.warning("%s: config.ini alone is judged, as the sync applies it", problem)
            return None
        try:
            return self.store(name).snapshot()
        except EnvironmentNotFound:
            return None
        except IniParseError as exc:
            # A hand edit that does not parse: the sync applies config.ini without it (and says
            # so), so what is judged and explained is config.ini alone too.
            logger.warning("%s does not parse, config.ini alone is judged: %s", file_name(name), exc.public)
            return None

    # -- what the services get --------------------------------------------------------------

    def effective(self, name: str | None, base: Snapshot | None = None) -> Snapshot:
        """config.ini as environment `name` sees it (None or "base": config.ini alone)."""
        base = base if base is not None else self._config.snapshot()
        return merged(base, self.overlay(name))

    def checked(self, name: str) -> tuple[Snapshot | None, list[str]]:
        """`name`'s overlay as it is now, or None with what makes it unusable (no file, a hand edit
        that does not parse or does not fit the schema): the sync then renders config.ini alone,
        never a half-valid merge. A secret typed in plaintext is not a problem (the sync encrypts it)."""
        try:
            overlay = self.store(name).snapshot()
        except EnvironmentNotFound as exc:
            return None, [f"system.ini [environments] active: {exc}"]
        except ValidationFailed as exc:  # system.ini's `active` is no environment's name: its line says so
            return None, [str(error) for error in exc.errors]
        except (IniParseError, ApphubError) as exc:
            return None, [str(exc)]
        problems = field_errors(overlay.document, overlay.schema, self._box, overlay.name, plaintext_secrets=False)
        return (None, [str(problem) for problem in problems]) if problems else (overlay, [])
