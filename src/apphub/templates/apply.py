"""A template's variables checked and its values rendered into a change of config.ini, then
previewed (the version it would make, and what it changes) or applied: an ordinary write,
validated by the schema and the rules, planned by the sync, audited with the source `template`.

Values render in a sandboxed Jinja environment in which an unknown name is an error. A variable
left unset takes its default (which may use the variables declared before it) or, for
`generate: password` / `token_hex`, a fresh credential, as a first start makes one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from jinja2 import StrictUndefined, UndefinedError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from apphub.audit.log import Actor, Change
from apphub.bootstrap import default_text
from apphub.errors import FieldError, ValidationFailed
from apphub.store.inistore import IniStore, WriteResult
from apphub.store.secrets import MASK
from apphub.store.snapshot import Snapshot, version_changes
from apphub.store.validate import check_value
from apphub.templates.catalog import IsSecret, Template, no_secret_keys

SOURCE = "template"  # the audit source of a template's write
# Immutable: a template cannot change what it is given; no loader: no include or import.
_JINJA = ImmutableSandboxedEnvironment(undefined=StrictUndefined, autoescape=False, keep_trailing_newline=False)

Changes = dict[str, dict[str, object]]


def _problem(template: Template, name: str, rule: str, message: str, value: str | None = None) -> FieldError:
    return FieldError("variables", name, rule, message, value, template.source or template.name)


def variables_of(template: Template, given: Mapping[str, str],
                 is_secret: IsSecret = no_secret_keys) -> dict[str, str]:
    """Every variable's value: given, else its default (rendered over the ones before it), else a
    generated credential. ValidationFailed with every problem: an unknown name, a missing required
    one, a value its type refuses (never shown for a variable that feeds a secret key, `is_secret`
    being config.ini's schema: its default may be the password itself)."""
    secret = template.secret_variables(is_secret)
    problems = [_problem(template, name, "unknown_variable", f"is not a variable of the template {template.name} "
                         f"(its variables: {', '.join(template.variables) or 'none'})")
                for name in given if name not in template.variables]
    values: dict[str, str] = {}
    missing: set[str] = set()  # variables with a problem: a default that uses one is not blamed too
    for name, spec in template.variables.items():
        if name in given and not (spec.required and given[name] == ""):
            text = given[name]
        elif spec.generate is not None:
            text = default_text(spec)
        elif spec.default is not None:
            try:
                text = _render(default_text(spec), values)
            except Exception as exc:
                missing.add(name)
                if not (isinstance(exc, UndefinedError) and any(f"'{other}'" in str(exc) for other in missing)):
                    problems.append(_problem(template, name, "default", f"its default cannot be rendered: {exc}"))
                continue
        elif spec.required:
            missing.add(name)
            problems.append(_problem(template, name, "required", "is required: give it with --set "
                                     f"{name}=VALUE (or in the request's variables)"))
            continue
        else:
            text = ""
        found = check_value(spec, text)
        if found:
            missing.add(name)
        for problem in found:
            problems.append(_problem(template, name, problem.rule, problem.message, MASK if name in secret else text))
        values[name] = text
    if problems:
        raise ValidationFailed(problems)
    return values


def render(template: Template, given: Mapping[str, str], is_secret: IsSecret = no_secret_keys) -> Changes:
    """The change of config.ini the template makes with these variables (`is_secret`: config.ini's
    schema, so that a problem with a variable feeding a secret key does not show its value)."""
    values = variables_of(template, given, is_secret)
    changes: Changes = {}
    problems = []
    for section, keys in template.settings.items():
        for key, value in keys.items():
            if not isinstance(value, str):
                changes.setdefault(section, {})[key] = value
                continue
            try:
                changes.setdefault(section, {})[key] = _render(value, values)
            except Exception as exc:
                problems.append(FieldError(section, key, "template", f"cannot be rendered: {exc}",
                                           file=template.source or template.name))
    if problems:
        raise ValidationFailed(problems)
    return changes


def _render(text: str, values: Mapping[str, Any]) -> str:
    if "{{" not in text and "{%" not in text:
        return text
    return _JINJA.from_string(text).render(values)


def preview(store: IniStore, template: Template, given: Mapping[str, str]) -> tuple[Snapshot, list[Change]]:
    """The version applying the template would make (validated as the write would be, rules
    included) and what it changes, secrets masked; nothing is written."""
    current = store.snapshot()
    proposed = store.preview(render(template, given, store.schema.is_secret))
    return proposed, version_changes(current, proposed)


def apply(store: IniStore, template: Template, given: Mapping[str, str], actor: Actor,
          message: str | None = None) -> WriteResult:
    """Apply the template: one write of config.ini, audited with the source `template`."""
    changes = render(template, given, store.schema.is_secret)
    by = Actor(actor.name, SOURCE, actor.request_id)
    return store.update(changes, by, action="template.apply",
                        message=message or f"template {template.name} applied")
