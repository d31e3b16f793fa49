"""What the sync engine asks of env.ini: is a hand edit acceptable, and which scopes changed."""

from __future__ import annotations

import contextlib

from apphub.envvars.resolve import ENV_SECTION
from apphub.envvars.store import FILE, NAME, SCOPE
from apphub.errors import SecretError
from apphub.store.snapshot import Snapshot
from apphub.sync.values import Key


def env_problems(env: Snapshot) -> list[str]:
    """Every name env.ini holds that no environment can carry, with its line (never a value)."""
    problems = []
    for scope in env.sections():
        if not SCOPE.fullmatch(scope):
            line = env.document.line_of(scope)
            problems.append(f"{FILE}:{line}: [{scope}] is neither `global` nor a service name")
        for name, _ in env.document.items(scope):
            if not NAME.fullmatch(name):
                problems.append(f"{FILE}:{env.document.line_of(scope, name)}: [{scope}] {name}: is not an "
                                "environment variable name (letters, digits and '_', not starting with a digit)")
        for key in env.secret_keys():
            if key[0] == scope:
                try:
                    env.section_plaintext_value(*key)
                except SecretError as exc:
                    problems.append(str(exc))
    return problems


def env_changes(previous: Snapshot | None, current: Snapshot) -> set[Key]:
    """(ENV_SECTION, scope) for every scope whose variables differ (a secret compared in plaintext)."""
    scopes = set(current.sections()) | (set(previous.sections()) if previous is not None else set())
    changed = set()
    for scope in scopes:
        if previous is None or _values(previous, scope) != _values(current, scope):
            changed.add((ENV_SECTION, scope))
    return changed


def _values(env: Snapshot, scope: str) -> dict[str, str]:
    if not env.document.has_section(scope):
        return {}
    found = {}
    for name, stored in env.document.items(scope):
        found[name] = stored
        if env.holds_secret(scope, name, stored):
            with contextlib.suppress(SecretError):  # a damaged one counts as changed
                found[name] = "secret:" + env.section_plaintext_value(scope, name)
    return found
