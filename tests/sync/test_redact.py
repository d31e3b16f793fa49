"""What the engine shows of a text that may quote a secret: masked, then shortened (issue 8)."""

from __future__ import annotations

import html
import json
from urllib.parse import quote, quote_plus

import pytest

from apphub.store.secrets import MASK
from apphub.sync.redact import ELISION, SHOWN_CHARS, redact, shorten
from apphub.sync.values import secret_spellings
from tests.sync.conftest import fragments, make_secret


def test_a_short_text_is_shown_whole() -> None:
    assert shorten("exit status 1: boom") == "exit status 1: boom"


def test_a_long_text_keeps_its_beginning_and_its_end() -> None:
    text = "service web: exec `reload` failed: " + "x" * 5000 + " the last line"
    shown = shorten(text)
    assert len(shown) <= SHOWN_CHARS
    assert shown.startswith("service web: exec `reload` failed: xxx")
    assert shown.endswith("xxx the last line")
    assert ELISION in shown


@pytest.mark.parametrize("length", [8, 13, 32])
def test_a_secret_anywhere_in_a_long_text_leaves_no_fragment(length: int) -> None:
    secret = make_secret(length)
    masks = secret_spellings([secret])
    head = int(SHOWN_CHARS * 0.4)
    total = 3000
    tail_start = total - (SHOWN_CHARS - head - len(ELISION))
    # every place across both cuts of the display
    for at in [*range(head - length, head + 1), *range(tail_start - length, tail_start + 1)]:
        text = "a" * at + secret + "b" * (total - at - length)
        shown = redact(text, masks)
        assert fragments(secret, shown) == [], at
        assert len(shown) <= SHOWN_CHARS


@pytest.mark.parametrize("spelled", [
    lambda s: s, lambda s: json.dumps(s)[1:-1], lambda s: json.dumps(s)[1:-1].replace("/", "\\/"),
    lambda s: repr(s)[1:-1], lambda s: html.escape(s), lambda s: quote(s, safe=""), lambda s: quote_plus(s, safe=""),
])
def test_a_secret_is_masked_however_a_service_spells_it(spelled) -> None:
    secret = 'QXZ J/V"W<Y>&Q\'X%Z?'
    text = f"error: the password {spelled(secret)} is refused"
    shown = redact(text, secret_spellings([secret]))
    assert shown == f"error: the password {MASK} is refused"
