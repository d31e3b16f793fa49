"""Per-key changes and unified diffs of two versions, secrets masked."""

from __future__ import annotations

import difflib
import gc
import random

from apphub.history.gitrepo import unified_diff
from apphub.history.inidiff import file_diff, key_changes, masked_text, values_of

OLD = b"""# top comment
[gitea]
user_email = a@example.com
user_pwd = enc:v1:AAAA
note = first line
  second line

[web]
title: Hello
"""
NEW = b"""# top comment
[gitea]
user_email = b@example.com
user_pwd = enc:v1:BBBB
note = first line
  changed second line

[added]
key = value
"""


def secret(section: str, key: str) -> bool:
    return key == "user_pwd"


def test_values_join_continuation_lines_as_configparser_does() -> None:
    assert values_of(OLD)[("gitea", "note")] == "first line\nsecond line"
    assert values_of(OLD)[("web", "title")] == "Hello"


def test_key_changes_name_added_removed_changed_and_mask_secrets() -> None:
    changes = {(c.section, c.key): (c.change, c.old, c.new) for c in key_changes(OLD, NEW, secret)}

    assert changes == {
        ("gitea", "user_email"): ("changed", "a@example.com", "b@example.com"),
        ("gitea", "user_pwd"): ("changed", "********", "********"),
        ("gitea", "note"): ("changed", "first line\nsecond line", "first line\nchanged second line"),
        ("added", "key"): ("added", None, "value"),
        ("web", "title"): ("removed", "Hello", None),
    }


def test_the_unified_diff_masks_both_sides_and_marks_a_changed_secret() -> None:
    _, unified = file_diff(OLD, NEW, secret, "config.ini", "old", "new")

    assert unified.startswith("--- config.ini@old\n+++ config.ini@new\n@@ ")
    assert "-user_pwd = ********\n" in unified
    assert "+user_pwd = ******** (changed)\n" in unified
    assert "AAAA" not in unified
    assert "BBBB" not in unified
    assert "-user_email = a@example.com\n" in unified


def test_a_value_stored_encrypted_is_masked_whatever_the_schema_says() -> None:
    assert "enc:v1" not in masked_text(OLD, lambda section, key: False)


def test_equal_texts_have_no_diff() -> None:
    assert file_diff(OLD, OLD, secret, "config.ini", "a", "b") == ([], "")


def test_the_unified_diff_agrees_with_difflib_on_random_texts() -> None:
    rng = random.Random(7)
    for _ in range(200):
        old = [f"line {rng.randrange(20)}\n" for _ in range(rng.randrange(1, 60))]
        new = list(old)
        for _ in range(rng.randrange(1, 6)):
            new.insert(rng.randrange(len(new) + 1), f"new {rng.randrange(1000)}\n")
        if len(new) > 3 and rng.random() < 0.5:
            del new[rng.randrange(len(new))]
        ours = unified_diff("".join(old), "".join(new), "a", "b")
        if len(old) % 10 == 0:
            gc.collect()  # the texts it read from are gone: what it returned must not change
        removed = [line[1:] for line in ours.splitlines(keepends=True)[2:] if line.startswith("-")]
        added = [line[1:] for line in ours.splitlines(keepends=True)[2:] if line.startswith("+")]
        theirs = list(difflib.unified_diff(old, new, "a", "b"))
        assert (len(removed) - len(added)) == (len(old) - len(new))
        assert all(line in old for line in removed)
        assert all(line in new for line in added)
        assert bool(ours) == bool(theirs)


def test_an_indented_option_and_a_value_across_blank_lines_are_read_as_configparser_does() -> None:
    text = b"[gitea]\n  user_pwd = Typed-PLAIN-indent-1\nuser_pwd2 =\n\n    Typed-PLAIN-blank-2\nother = x\n"

    def rule(section: str, key: str) -> bool:
        return key.startswith("user_pwd")

    shown = masked_text(text, rule)

    assert "Typed-PLAIN" not in shown
    values = values_of(text)
    assert values[("gitea", "user_pwd")] == "Typed-PLAIN-indent-1"
    assert values[("gitea", "user_pwd2")] == "Typed-PLAIN-blank-2"
    assert values[("gitea", "other")] == "x"
