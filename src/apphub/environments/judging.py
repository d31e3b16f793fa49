"""The rules judge what the services would get: config.ini merged with the active environment's
overlay, whichever of config.ini, an overlay or system.ini a write changes. These are the hooks
each store calls (store/inistore.py RuleHook)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from apphub.environments.overlays import Environments, merged
from apphub.errors import FieldError
from apphub.rules.base import CONFIG, SYSTEM, KeyRef
from apphub.rules.book import RuleBook
from apphub.store.inistore import RuleHook
from apphub.store.snapshot import Snapshot

Read = Callable[[], Snapshot | None]


def _refs(file: str, touched: frozenset[tuple[str, str]] | None) -> list[KeyRef] | None:
    return None if touched is None else [KeyRef(file, section, key) for section, key in touched]


def _with(files: dict[str, Snapshot | None]) -> dict[str, Snapshot]:
    return {name: snapshot for name, snapshot in files.items() if snapshot is not None}


def config_hook(book: RuleBook, environments: Environments, system: Read) -> RuleHook:
    """config.ini's: the version to write, under the active environment's overlay."""

    def judge(written: Snapshot, touched: frozenset[tuple[str, str]] | None) -> list[FieldError]:
        effective = merged(written, environments.overlay(environments.active()))
        return book.judge(_with({CONFIG: effective, SYSTEM: system()}), _refs(CONFIG, touched))

    return judge


def system_hook(book: RuleBook, environments: Environments, config: Read) -> RuleHook:
    """system.ini's: with config.ini as the environment the version to write makes active sees it."""

    def judge(written: Snapshot, touched: frozenset[tuple[str, str]] | None) -> list[FieldError]:
        base = config()
        name = (written.document.get("environments", "active") or "").strip() or None
        effective = merged(base, environments.overlay(name)) if base is not None else None
        return book.judge(_with({SYSTEM: written, CONFIG: effective}), _refs(SYSTEM, touched))

    return judge


def overlay_hook(book: RuleBook, config: Read, system: Read) -> RuleHook:
    """An overlay's: config.ini with the overlay version to write over it. A finding about a key
    the overlay sets names the overlay's file and line (it is the one to fix)."""

    def judge(written: Snapshot, touched: frozenset[tuple[str, str]] | None) -> list[FieldError]:
        base = config()
        if base is None:
            return []
        findings = book.judge(_with({CONFIG: merged(base, written), SYSTEM: system()}), _refs(CONFIG, touched))
        return [_relocated(finding, written) for finding in findings]

    return judge


def _relocated(finding: FieldError, overlay: Snapshot) -> FieldError:
    if finding.file != CONFIG or finding.key is None or overlay.document.get(finding.section, finding.key) is None:
        return finding
    return dataclasses.replace(finding, file=overlay.name, line=overlay.document.line_of(finding.section, finding.key))
