"""The credential-strength rule: known defaults refused, zxcvbn's score against `min_score` with
the section's names as user inputs, a bounded estimate for any length, and findings that never
hold a piece of the password."""

from __future__ import annotations

import string
import sys
import threading
import time
from collections.abc import Iterator

import pytest

from apphub.bootstrap import default_text, initialise
from apphub.core import Core
from apphub.errors import FieldError
from apphub.paths import DataDir
from apphub.rules.base import CONFIG, Candidate, KeyRef
from apphub.rules.strength import PLACEHOLDER_PASSWORDS, StrengthRule, estimate_strength
from apphub.store.secrets import MASK
from apphub.store.snapshot import Snapshot

# Our own min_score, whatever the built-in schema sets: the three admin passwords must reach 3 of 4.
# No max_length, so that a hand edit can hold a very long one.
SCHEMA = """\
config:
  sections:
    nginx_proxy_manager:
      keys:
        user_pwd: {type: string, secret: true, required: true, min_length: 8, generate: password, min_score: 3}
    gitea:
      keys:
        user_pwd: {type: string, secret: true, required: true, min_length: 8, generate: password, min_score: 3}
    portainer:
      keys:
        user_pwd: {type: string, secret: true, required: true, min_length: 8, generate: password, min_score: 3}
"""

STRONG = "glacier-Tomato-89-orbit"


@pytest.fixture
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> DataDir:
    data = DataDir(tmp_path_factory.mktemp("strength") / "data")
    initialise(data)
    (data.schema_dir / "50-strength.yaml").write_text(SCHEMA, encoding="utf-8")
    return data


@pytest.fixture
def core(data_dir: DataDir) -> Iterator[Core]:
    opened = Core(data_dir)
    # The rule is judged here on its own: with the folder's rule book on (which may hold it too),
    # preview would refuse the weak versions these tests need to build.
    opened.config.rules = None
    try:
        yield opened
    finally:
        opened.close()


def proposed(core: Core, section: str, **values: str) -> Snapshot:
    """The config.ini a write of `values` into `section` would make (secrets encrypted)."""
    return core.config.preview({section: dict(values)})


def hand_edited(core: Core, section: str, key: str, value: str) -> Snapshot:
    """config.ini after a person typed `key = value` into `section` (a plaintext secret, any length)."""
    line = core.config.snapshot().document.line_of(section, key)
    assert line is not None
    lines = core.config.path.read_text(encoding="utf-8").split("\n")
    lines[line - 1] = f"{key} = {value}"
    core.config.path.write_text("\n".join(lines), encoding="utf-8")
    return core.config.snapshot()


def judge(snapshot: Snapshot, *touched: KeyRef) -> list[FieldError]:
    return StrengthRule().check(Candidate({CONFIG: snapshot}, touched=set(touched)))


def judge_password(snapshot: Snapshot, section: str) -> list[FieldError]:
    return judge(snapshot, KeyRef(CONFIG, section, "user_pwd"))


def assert_hides(password: str, finding: FieldError, section: str) -> None:
    """Every field of `finding` is a fixed name (the location the test chose, the rule's name) or
    free of any piece of `password`, the value is the mask, and the finding points at the key's line."""
    assert (finding.file, finding.section, finding.key) == (CONFIG, section, "user_pwd")
    assert finding.rule in ("placeholder_password", "credential_strength")
    assert finding.value == MASK
    assert finding.severity == "error"
    assert isinstance(finding.line, int)
    size = min(4, len(password))
    pieces = {password.casefold()[i:i + size] for i in range(len(password) - size + 1)}
    for name, shown in finding.as_dict().items():
        if name in ("file", "section", "key", "rule") or not isinstance(shown, str):
            continue
        leaked = sorted(piece for piece in pieces if piece in shown.casefold())
        assert not leaked, f"{name} {shown!r} holds {leaked} of the password"


# -- strong passwords pass -------------------------------------------------------------------------


def test_a_strong_password_passes(core: Core) -> None:
    assert judge_password(proposed(core, "portainer", user_pwd=STRONG), "portainer") == []


def test_a_generated_password_passes(core: Core) -> None:
    spec = core.schema.config.key("portainer", "user_pwd")
    assert spec is not None
    assert spec.generate == "password"
    for _ in range(50):
        password = default_text(spec)
        found = judge_password(proposed(core, "portainer", user_pwd=password), "portainer")
        assert found == [], f"a generated password of {len(password)} characters was refused: {found}"


def test_a_placeholder_inside_a_longer_password_is_not_one(core: Core) -> None:
    assert judge_password(proposed(core, "portainer", user_pwd="changeme Vd7#qLp2!xZr"), "portainer") == []


# -- known defaults are refused, whatever their score ---------------------------------------------


@pytest.mark.parametrize("password", ["admin123", "changeme", "CHANGEME", "ChangeMe"])
def test_a_placeholder_is_refused(core: Core, password: str) -> None:
    [finding] = judge_password(proposed(core, "nginx_proxy_manager", user_pwd=password), "nginx_proxy_manager")

    assert finding.rule == "placeholder_password"
    assert_hides(password, finding, "nginx_proxy_manager")


def test_a_placeholder_typed_with_a_trailing_blank_is_refused(core: Core) -> None:
    [finding] = judge_password(hand_edited(core, "portainer", "user_pwd", "Changeme "), "portainer")

    assert finding.rule == "placeholder_password"
    assert_hides("Changeme ", finding, "portainer")


def test_websoft9s_committed_placeholder_is_refused_though_zxcvbn_scores_it_strong(core: Core) -> None:
    # Portainer's user_pwd in Websoft9's own config.ini: public, yet random-looking
    assert estimate_strength("R@9)qn)t9hJW", []).score >= 3
    [finding] = judge_password(proposed(core, "portainer", user_pwd="R@9)qn)t9hJW"), "portainer")

    assert finding.rule == "placeholder_password"


def test_no_placeholder_message_holds_a_piece_of_it(core: Core) -> None:
    for password in sorted(PLACEHOLDER_PASSWORDS):
        [finding] = judge_password(hand_edited(core, "portainer", "user_pwd", password), "portainer")
        assert finding.rule == "placeholder_password"
        assert_hides(password, finding, "portainer")


# -- names an attacker reads in the same section ---------------------------------------------------


def test_a_password_holding_the_user_name_is_too_weak(core: Core) -> None:
    password = "opsadmin2024"
    [finding] = judge_password(proposed(core, "portainer", user_name="opsadmin", user_pwd=password), "portainer")

    assert finding.rule == "credential_strength"
    assert "at least 3 wanted" in finding.message
    assert_hides(password, finding, "portainer")


def test_the_same_password_passes_for_another_user(core: Core) -> None:
    snapshot = proposed(core, "portainer", user_name="keeper", user_pwd="opsadmin2024")
    assert judge_password(snapshot, "portainer") == []


def test_a_password_holding_the_local_part_of_the_users_email_is_too_weak(core: Core) -> None:
    snapshot = proposed(core, "nginx_proxy_manager", user_name="opsadmin@example.com", user_pwd="opsadmin2024")
    [finding] = judge_password(snapshot, "nginx_proxy_manager")

    assert finding.rule == "credential_strength"
    assert_hides("opsadmin2024", finding, "nginx_proxy_manager")


def test_a_password_holding_the_section_name_is_too_weak_there_only(core: Core) -> None:
    password = "Portainer#2024"
    [finding] = judge_password(proposed(core, "portainer", user_pwd=password), "portainer")
    assert finding.rule == "credential_strength"
    # the section's name is the location, chosen by the test; every other field hides the password
    assert_hides(password, finding, "portainer")

    assert judge_password(proposed(core, "gitea", user_pwd=password), "gitea") == []


# -- patterns zxcvbn knows --------------------------------------------------------------------------


@pytest.mark.parametrize(("password", "advice"), [
    ("qwertyuiop", "common password"),
    ("1987-06-14", "Dates are often easy to guess."),
    ("sunflowersunflower", "Avoid repeated words and characters."),
])
def test_a_guessable_pattern_is_too_weak(core: Core, password: str, advice: str) -> None:
    [finding] = judge_password(proposed(core, "portainer", user_pwd=password), "portainer")

    assert finding.rule == "credential_strength"
    assert finding.message.startswith("is too weak (strength ")
    assert advice in finding.message
    assert_hides(password, finding, "portainer")


def test_feedback_that_quotes_a_piece_of_the_password_is_left_out(core: Core) -> None:
    # zxcvbn's warning for it is 'Repeats like "abcabcabc" are only slightly harder...'
    password = "abcabcabcabc"
    [finding] = judge_password(proposed(core, "portainer", user_pwd=password), "portainer")

    assert "Repeats like" not in finding.message
    assert "Avoid repeated words and characters." in finding.message
    assert_hides(password, finding, "portainer")


# -- what is judged --------------------------------------------------------------------------------


def test_an_untouched_weak_key_is_judged_only_in_a_whole_file_check(core: Core) -> None:
    snapshot = proposed(core, "portainer", user_pwd="sunflowersunflower")

    assert judge(snapshot, KeyRef(CONFIG, "gitea", "user_pwd")) == []

    whole = StrengthRule().check(Candidate({CONFIG: snapshot}, touched=None))
    assert [(f.section, f.key, f.rule) for f in whole] == [("portainer", "user_pwd", "credential_strength")]


def test_a_key_without_min_score_is_not_judged(core: Core) -> None:
    # a secret, but not a password the schema asks to be strong
    snapshot = proposed(core, "gitea", webhook_secret="changeme")

    assert StrengthRule().check(Candidate({CONFIG: snapshot}, touched=None)) == []


def test_an_empty_password_is_left_to_the_required_check(core: Core) -> None:
    snapshot = hand_edited(core, "portainer", "user_pwd", "")

    assert StrengthRule().check(Candidate({CONFIG: snapshot}, touched=None)) == []


# -- any length, in bounded time --------------------------------------------------------------------


@pytest.mark.parametrize("password", [
    "a" * 10_000,
    ("4@1!|7$5+0(3<%" * 800)[:10_000],
    # every character zxcvbn tries as a l33t substitution: the slowest input it has
    ("!$%(+0123456789<@[{|" * 500)[:10_000],
    (string.ascii_letters + string.digits + string.punctuation) * 106,
], ids=["repeated", "leet", "every-leet-character", "printable"])
def test_a_very_long_password_is_judged_quickly(core: Core, password: str) -> None:
    snapshot = hand_edited(core, "portainer", "user_pwd", password)

    # The CPU time of this thread, which judges in it: a test on another pytest-xdist worker (or any
    # other process) taking the CPU stretches the wall-clock time (0.2 s alone, 0.7 s seen on a
    # loaded machine), not this; an unbounded judge (zxcvbn on the whole text) takes seconds of it.
    started = time.thread_time()
    found = judge_password(snapshot, "portainer")
    elapsed = time.thread_time() - started

    assert elapsed < 0.5, f"judging {len(password)} characters took {elapsed:.2f} s of CPU"
    for finding in found:
        assert_hides(password, finding, "portainer")


def test_a_long_weak_password_says_which_start_was_judged(core: Core) -> None:
    [finding] = judge_password(hand_edited(core, "portainer", "user_pwd", "a" * 10_000), "portainer")

    assert "for its first 72 characters" in finding.message


# -- concurrent estimates --------------------------------------------------------------------------


@pytest.fixture
def frequent_thread_switches() -> Iterator[None]:
    saved = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)  # so that the threads below interleave inside zxcvbn
    try:
        yield
    finally:
        sys.setswitchinterval(saved)


@pytest.mark.usefixtures("frequent_thread_switches")
def test_estimates_at_once_keep_their_own_user_inputs() -> None:
    # zxcvbn keeps the user inputs in a module-level dictionary; without the rule's lock, one
    # thread's estimate reads the other's
    scores: dict[str, set[int]] = {"knows": set(), "does not know": set()}

    def estimate(label: str, inputs: list[str]) -> None:
        for _ in range(100):
            scores[label].add(estimate_strength("opsadmin2024", inputs).score)

    threads = [threading.Thread(target=estimate, args=("knows", ["opsadmin"])),
               threading.Thread(target=estimate, args=("does not know", []))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert scores == {"knows": {1}, "does not know": {3}}
