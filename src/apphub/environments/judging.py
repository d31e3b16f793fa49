"""The rules judge what the services would get: config.ini merged with the active environment's
overlay, whichever of config.ini, an overlay or system.ini a write changes. These are the hooks
each store calls (store/inistore.py RuleHook)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from apphub.environments.overlays import ACTIVE, Environments, file_name, merged
from apphub.errors import FieldError
from apphub.rules.base import CONFIG, SYSTEM, KeyRef
from apphub.rules.book import RuleBook
from apphub.store.inistore import RuleHook
from apphub.store.snapshot import Snapshot, changed_keys

Read = Callable[[], Snapshot | None]


def _refs(file: str, touched: frozenset[tuple[str, str]] | None) -> list[KeyRef] | None:
    return None if touched is None else [KeyRef(file, section, key) for section, key in touched]


def _with(files: dict[str, Snapshot | None]) -> dict[str, Snapshot]:
    return {name: snapshot for name, snapshot in files.items() if snapshot is not None}


def config_hook(book: RuleBook, environments: Environments, system: Read) -> RuleHook:
    """config.ini's: the version to write, under the active environment's overlay. A finding about
    a key the overlay sets names the overlay's file and line (its value is the one judged)."""

    def judge(written: Snapshot, touched: frozenset[tuple[str, str]] | None) -> list[FieldError]:
        overlay = environments.overlay(environments.active())
        findings = book.judge(_with({CONFIG: merged(written, overlay), SYSTEM: system()}), _refs(CONFIG, touched))
        return relocated(findings, overlay)

    return judge


def system_hook(book: RuleBook, environments: Environments, config: Read) -> RuleHook:
    """system.ini's: with config.ini as the environment the version to write makes active sees it.
    A switch of environment is judged as the change of every config.ini value it makes."""

    def judge(written: Snapshot, touched: frozenset[tuple[str, str]] | None) -> list[FieldError]:
        base = config()
        name = (written.document.get(*ACTIVE) or "").strip() or None
        if touched is not None and ACTIVE in touched and name is not None and name not in environments.names():
            line = written.document.line_of(*ACTIVE)
            return [FieldError(ACTIVE[0], ACTIVE[1], "environment", f"there is no environment '{name}' (no "
                               f"{file_name(name)}); `apphub environments set {name} ...` makes one", name,
                               SYSTEM, line)]
        overlay = environments.overlay(name)
        effective = merged(base, overlay) if base is not None else None
        refs = _refs(SYSTEM, touched)
        if refs is not None and ACTIVE in (touched or ()) and base is not None and effective is not None:
            before = merged(base, environments.overlay(environments.active()))
            refs += [KeyRef(CONFIG, section, key) for section, key in changed_keys(before, effective) or ()]
        return relocated(book.judge(_with({SYSTEM: written, CONFIG: effective}), refs), overlay)

    return judge


def overlay_hook(book: RuleBook, config: Read, system: Read) -> RuleHook:
    """An overlay's: config.ini with the overlay version to write over it. A finding about a key
    the overlay sets names the overlay's file and line (it is the one to fix)."""

    def judge(written: Snapshot, touched: frozenset[tuple[str, str]] | None) -> list[FieldError]:
        base = config()
        if base is None:
            return []
        findings = book.judge(_with({CONFIG: merged(base, written), SYSTEM: system()}), _refs(CONFIG, touched))
        return relocated(findings, written)

    return judge


def relocated(findings: list[FieldError], overlay: Snapshot | None) -> list[FieldError]:
    """Findings about the merge, each about a key the overlay sets named at the overlay's file and
    line (the one to fix), not config.ini's."""
    if overlay is None:
        return findings
    moved = []
    for finding in findings:
        if finding.file == CONFIG and finding.key is not None \
                and overlay.document.get(finding.section, finding.key) is not None:
            finding = dataclasses.replace(finding, file=overlay.name,
                                          line=overlay.document.line_of(finding.section, finding.key))
        moved.append(finding)
    return moved
