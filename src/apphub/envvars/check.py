"""What the sync engine asks of env.ini: is a hand edit acceptable, and which scopes changed."""

from __future__ import annotations

from apphub.envvars.resolve import ENV_SECTION
from apphub.envvars.store import FILE, NAME, SCOPE
from apphub.errors import SecretError
from apphub.store.snapshot import Snapshot, changed_keys
from apphub.sync.values import Key


def env_problems(env: Snapshot) -> list[str]:
    """Every name env.ini holds that no environment can carry, with its line (never a value), and
    every secret that does not decrypt."""
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
        try:
            env.section_plaintext_value(*key)
        except SecretError as exc:
            problems.append(str(exc))
    return problems


def env_changes(previous: Snapshot | None, current: Snapshot) -> set[Key]:
    """(ENV_SECTION, scope) for every scope whose variables differ (a secret compared in plaintext,
    as config.ini's keys are: store.snapshot.changed_keys)."""
    changed = changed_keys(previous, current)
    if changed is None:
        return {(ENV_SECTION, scope) for scope in current.sections()}
    return {(ENV_SECTION, scope) for scope, _ in changed}
