"""Credential strength: a password (a secret string key whose schema sets `min_score`) is refused
when it is a well-known default, or when zxcvbn's estimate of it (0-4) is below `min_score`.

zxcvbn is told what an attacker who reads the rest of the section knows: the section's name and
its non-secret values (user name, e-mail...), so `opsadmin2024` is weak for the user `opsadmin`.

A finding's message and value never hold the password or a piece of it: the value shows as the
mask, and a sentence of zxcvbn's feedback (fixed text, some with examples such as "abcabcabc") is
left out when it happens to share four characters with the password.
"""

from __future__ import annotations

import math
import re
import threading
from dataclasses import dataclass

from zxcvbn import zxcvbn
from zxcvbn.matching import L33T_TABLE, enumerate_l33t_subs, relevant_l33t_subtable

from apphub.errors import FieldError
from apphub.rules.base import Candidate, KeyRef

# Refused whatever their score, compared stripped and case-insensitively. Short on purpose: zxcvbn
# knows the common passwords; this list holds what it cannot know, and what an attacker tries first.
PLACEHOLDER_PASSWORDS = frozenset({
    # Nginx Proxy Manager's first-run admin is admin@example.com / changeme (its setup guide,
    # https://nginxproxymanager.com/setup/, "Default Administrator User")
    "changeme",
    # The user_pwd values committed in Websoft9's src/config/config.ini (NPM, Gitea, Portainer):
    # public on GitHub, and meant to be overwritten by each install (reference/websoft9-apphub.md §2.1).
    # zxcvbn scores them strong, so only this list catches a copied one.
    "hjugwrldgqmgglr0", "jgfceaxamjrx", "r@9)qn)t9hjw",
    # The products' and their admin accounts' names (Websoft9's Gitea admin is `websoft9`,
    # Portainer's is `admin`, Cockpit logs in with system accounts such as `root`).
    "websoft9", "portainer", "gitea", "cockpit", "admin", "root",
    # Near the top of every breached-password list (e.g. the NCSC's PwnedPasswordsTop100k.txt).
    "password", "passw0rd", "123456", "admin123", "secret",
    # Java's keystore default (keytool, cacerts), often copied into compose files with the rest.
    "changeit",
})

# zxcvbn raises past this length (its own max_length); a longer password is judged on its start.
MAX_JUDGED_LENGTH = 72

# zxcvbn runs its dictionary matcher once per l33t substitution it tries, each time over every
# substring of the password: about (substitutions + 2) x length² look-ups, ~0.8 µs each. A password
# of l33t-able symbols (`4@1!|7$5+0(3<%`...) has up to 736 substitutions, which takes 3 s at 72
# characters; past this many look-ups (~0.15 s) only a shorter start of the password is judged.
MAX_LOOKUPS = 150_000

# zxcvbn keeps the user inputs of the estimate under way in a module-level dictionary that its
# matchers read (zxcvbn.matching.RANKED_DICTIONARIES["user_inputs"]): two estimates at once
# would each score against the other's user inputs.
_ZXCVBN_LOCK = threading.Lock()

_WORD_SEPARATORS = re.compile(r"[\W_]+")


@dataclass(frozen=True)
class Estimate:
    """zxcvbn's verdict on (the judged start of) a password."""

    score: int
    judged_length: int
    feedback: tuple[str, ...]


class StrengthRule:
    """Every touched password key (schema `min_score` set) with a value: not a known default, and
    zxcvbn's score at least `min_score`."""

    name = "credential_strength"

    def check(self, candidate: Candidate) -> list[FieldError]:
        findings: list[FieldError] = []
        touched = candidate.touched_keys()
        for file in candidate.file_names():
            # a write: only the keys it sets (not every key of a config.ini of thousands)
            refs = candidate.keys(file) if touched is None else sorted(ref for ref in touched if ref.file == file)
            for ref in refs:
                spec = candidate.spec(ref)
                if spec is None or spec.min_score is None or not candidate.touched(ref):
                    continue
                password = candidate.value(ref)
                if not password:  # empty: `required` says whether it may be; undecryptable: the schema check
                    continue
                finding = _judge(candidate, ref, password, spec.min_score)
                if finding is not None:
                    findings.append(finding)
        return findings


def _judge(candidate: Candidate, ref: KeyRef, password: str, min_score: int) -> FieldError | None:
    if password.strip().casefold() in PLACEHOLDER_PASSWORDS:
        return candidate.finding(ref, "placeholder_password", "is a well-known default or placeholder that "
                                 "anyone would try first; choose another", show=True)
    estimate = estimate_strength(password, known_words(candidate, ref))
    if estimate.score >= min_score:
        return None
    judged = f" for its first {estimate.judged_length} characters" if estimate.judged_length < len(password) else ""
    size = min(4, len(password))  # a shorter password is a piece of itself
    pieces = _pieces(password, size)
    advice = " ".join(sentence for sentence in estimate.feedback if not pieces & _pieces(sentence, size))
    message = f"is too weak (strength {estimate.score} of 4{judged}, at least {min_score} wanted)"
    return candidate.finding(ref, "credential_strength", message + (f": {advice}" if advice else ""), show=True)


def known_words(candidate: Candidate, ref: KeyRef) -> list[str]:
    """What zxcvbn should count as known to an attacker: the section's name and its words, and
    every non-secret value of the section (and its words, and an e-mail's local part)."""
    words = [ref.section, *_words(ref.section)]
    for other in candidate.keys(ref.file):
        if other.section != ref.section or other == ref or candidate.is_secret(other):
            continue
        value = candidate.value(other)
        if value:
            words += [value, *_words(value)]
            if "@" in value:
                words.append(value.split("@", 1)[0])
    return list(dict.fromkeys(word for word in words if word))


def _words(text: str) -> list[str]:
    # two-character pieces (`v1`, `81`) tell zxcvbn nothing it should penalise
    return [word for word in _WORD_SEPARATORS.split(text) if len(word) >= 3]


def estimate_strength(password: str, user_inputs: list[str]) -> Estimate:
    """zxcvbn's score of the start of `password` it can judge in bounded time, and its feedback."""
    judged = _judged_start(password)
    with _ZXCVBN_LOCK:
        result = zxcvbn(judged, user_inputs=user_inputs, max_length=MAX_JUDGED_LENGTH)
    feedback = result["feedback"]
    sentences = [feedback["warning"], *feedback["suggestions"]]
    return Estimate(result["score"], len(judged), tuple(sentence for sentence in sentences if sentence))


def _judged_start(password: str) -> str:
    start = password[:MAX_JUDGED_LENGTH]
    substitutions = len(enumerate_l33t_subs(relevant_l33t_subtable(start, L33T_TABLE)))
    if (substitutions + 2) * len(start) ** 2 > MAX_LOOKUPS:
        # a shorter start has no more substitutions, so it is within the budget too
        start = start[:math.isqrt(MAX_LOOKUPS // (substitutions + 2))]
    return start


def _pieces(text: str, size: int) -> set[str]:
    folded = text.casefold()
    return {folded[i:i + size] for i in range(len(folded) - size + 1)}
