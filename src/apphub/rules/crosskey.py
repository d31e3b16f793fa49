"""Rules about several keys, declared in the schema (`rules:` of `config` or `system`, see
store/schema.py CrossRule): a key that requires another, keys that must differ, a condition that
holds only while another key has some value. Operators add their own in `schema.d/` without code.

A rule is judged when a write touches any key it names (all of them in a whole-file check). Its
findings name the key to fix, and show no value of a secret: `distinct` says which two keys are
equal, never what they hold.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import re

from apphub.errors import FieldError
from apphub.rules.base import Candidate, KeyRef
from apphub.store.schema import Condition, CrossRule, parse_reference


class CrossKeyRule:
    """Every `rules:` entry of each file's schema."""

    name = "cross_key"

    def check(self, candidate: Candidate) -> list[FieldError]:
        findings: list[FieldError] = []
        for file in candidate.file_names():
            schema = candidate.schema(file)
            for rule in schema.rules if schema is not None else []:
                findings += _judge(rule, file, candidate)
        return findings


def _ref(file: str, text: str) -> KeyRef:
    section, key = parse_reference(text) or ("", text)  # the schema checked every reference
    return KeyRef(file, section, key)


def _matching(file: str, pattern: str, candidate: Candidate) -> list[KeyRef]:
    """The keys `pattern` names: itself, or every key of the file its globs match."""
    ref = _ref(file, pattern)
    if not any(c in pattern for c in "*?["):
        return [ref]
    return [each for each in candidate.keys(file)
            if fnmatch.fnmatchcase(each.section, ref.section) and fnmatch.fnmatchcase(each.key, ref.key)]


def _holds(condition: Condition, value: str | None) -> bool:
    text = value or ""
    if condition.set is not None and (text != "") != condition.set:
        return False
    if condition.equals is not None and text != condition.equals:
        return False
    if condition.one_of is not None and text not in condition.one_of:
        return False
    if condition.pattern is not None and not re.search(condition.pattern, text):
        return False
    no_test = condition.set is None and condition.equals is None and condition.one_of is None \
        and condition.pattern is None
    return text != "" if no_test else True


def _wanted(condition: Condition) -> str:
    """What a condition asks, in words (its values are the schema's, never a stored secret)."""
    if condition.equals is not None:
        return f"is {condition.equals!r}"
    if condition.one_of is not None:
        return f"is one of {', '.join(map(repr, condition.one_of))}"
    if condition.pattern is not None:
        return f"matches {condition.pattern}"
    return "is empty" if condition.set is False else "is set"


def _judge(rule: CrossRule, file: str, candidate: Candidate) -> list[FieldError]:
    when = _ref(file, rule.when.key) if rule.when is not None else None
    if rule.distinct is not None:
        return _distinct(rule, file, candidate)
    named = [_ref(file, text) for text in (rule.require or rule.forbid or [])]
    if rule.then is not None:
        named.append(_ref(file, rule.then.key))
    if not candidate.touched(*named, *([when] if when is not None else [])):
        return []
    because = ""
    if rule.when is not None and when is not None:
        if not _holds(rule.when, candidate.value(when)):
            return []
        because = f" while [{when.section}] {when.key} {_wanted(rule.when)}"
    findings = []
    for ref in named:
        value = candidate.value(ref)
        if rule.require is not None and not value:
            broken = f"must be set{because}"
        elif rule.forbid is not None and value:
            broken = f"must be empty{because}"
        elif rule.then is not None and not _holds(rule.then, value):
            broken = f"must be a value that {_wanted(rule.then)}{because}"
        else:
            continue
        findings.append(_finding(rule, ref, broken, candidate))
    return findings


def _distinct(rule: CrossRule, file: str, candidate: Candidate) -> list[FieldError]:
    refs = list(dict.fromkeys(ref for pattern in rule.distinct or [] for ref in _matching(file, pattern, candidate)))
    if not candidate.touched(*refs):
        return []
    first_with: dict[str, KeyRef] = {}
    findings = []
    for ref in refs:
        value = candidate.value(ref)
        if not value:
            continue  # an empty key equals nothing: `require` is for a key that must be set
        earlier = first_with.setdefault(value, ref)
        if earlier != ref and candidate.touched(ref, earlier):
            # on the key the write set, when it set only one of the two
            target, other = (ref, earlier) if candidate.touched(ref) else (earlier, ref)
            finding = _finding(rule, target, f"must differ from [{other.section}] {other.key}, and has the same "
                                             "value", candidate)
            if candidate.is_secret(target) or candidate.is_secret(other):
                # Never a refusal: a refusal of a preview or plan would tell whoever may ask one
                # whether a guess equals a stored secret. A warning is said only by a write (made,
                # audited) or by a validation an admin asks for (api/rules.py).
                finding = dataclasses.replace(finding, severity="warning")
            findings.append(finding)
    return findings


def _finding(rule: CrossRule, ref: KeyRef, broken: str, candidate: Candidate) -> FieldError:
    message = broken + (f": {rule.message}" if rule.message else "")
    return candidate.finding(ref, rule.id, message, rule.severity)
