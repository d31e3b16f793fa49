"""References between values (`${section.key}`, `${env:NAME:-default}`, store/substitution.py)
must resolve: a cycle, a key that does not exist, a malformed reference refuse the write, naming
the chain. An environment variable this process lacks (with no default) is a warning only: the
server's environment, which the services are rendered with, may differ from a CLI's.

A write is judged on the values that refer to what it touches: deleting a key another refers to
is refused as surely as writing a reference to a key that is not there.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Mapping

from apphub.errors import FieldError, SecretError
from apphub.rules.base import Candidate, KeyRef
from apphub.store.substitution import ENV_PREFIX, REFERENCE, Resolver, SubstitutionError, has_references
from apphub.store.validate import check_value


class ReferenceRule:
    name = "references"

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self._environ = os.environ if environ is None else environ

    def check(self, candidate: Candidate) -> list[FieldError]:
        findings: list[FieldError] = []
        for file in candidate.file_names():
            resolver = candidate.resolver(file, self._environ)
            referring: dict[KeyRef, list[KeyRef]] = {}  # each value with references -> the keys it names
            for ref in candidate.keys(file):
                value = candidate.text(ref)  # stored: an encrypted secret holds no `${`
                if value is None or not has_references(value) or candidate.is_secret(ref):
                    continue  # a secret's value is never read for references (and not decrypted here)
                referring[ref] = _named(resolver, file, value)
            for ref in _judged(candidate, referring):
                findings += self._judge(candidate, resolver, ref)
        return findings

    def _judge(self, candidate: Candidate, resolver: Resolver, ref: KeyRef) -> list[FieldError]:
        try:
            found = resolver.resolve(ref.section, ref.key)
        except SubstitutionError as exc:
            chain = [KeyRef(ref.file, section, key) for section, key in exc.chain]
            if not candidate.touched(*chain):
                return []
            if exc.variable is not None:  # the server, which renders the services, may have it
                return [candidate.finding(ref, "reference", f"{exc}; apphub's server fails to render it too "
                                          "unless its environment has it", "warning", show=False)]
            return [candidate.finding(ref, "reference", str(exc), show=False)]
        except (KeyError, SecretError):
            return []  # no value, or a secret that does not decrypt: the schema's check says so
        if not candidate.touched(ref, *(KeyRef(ref.file, section, key) for section, key in found.references)):
            return []
        # The schema checked the text as written; what the services get must fit the key's type.
        spec = candidate.spec(ref)
        shown = "(a secret)" if found.secret else repr(found.value)
        return [candidate.finding(ref, problem.rule, f"resolves to {shown}, which {problem.message}", show=False)
                for problem in check_value(spec, found.value, resolved=True)]


def _named(resolver: Resolver, file: str, value: str) -> list[KeyRef]:
    """The keys a value names directly (no resolution: a cheap scan of its text)."""
    named = []
    for match in REFERENCE.finditer(value):
        inner = (match.group(1) or "").strip()
        if inner and not inner.startswith(ENV_PREFIX):
            with contextlib.suppress(SubstitutionError):  # a malformed one: resolving it says so
                named.append(KeyRef(file, *resolver.split(inner, [])))
    return named


def _judged(candidate: Candidate, referring: dict[KeyRef, list[KeyRef]]) -> list[KeyRef]:
    """The values to resolve: all of them in a whole-file check; for a write, those it touches and
    those that refer, at any depth, to a key it touches (a config of thousands of references costs
    a one-key write only the chains through that key)."""
    touched = candidate.touched_keys()
    if touched is None:
        return list(referring)
    by_named: dict[KeyRef, list[KeyRef]] = {}
    for ref, named in referring.items():
        for each in named:
            by_named.setdefault(each, []).append(ref)
    found: dict[KeyRef, None] = {}
    queue = list(touched)
    while queue:
        ref = queue.pop()
        if ref in referring and ref not in found:
            found[ref] = None
        for dependent in by_named.get(ref, []):
            if dependent not in found:
                found[dependent] = None
                queue.append(dependent)
    return list(found)

