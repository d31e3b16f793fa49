"""A compose project's `.env` as apphub keeps it: its variables merged in, the ones it set before
and no longer does taken out, every other line kept byte for byte."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from apphub.sync.envplan import managed_env_file
from apphub.sync.render.envfile import read

NAMES = st.sampled_from(["A", "B", "C_1", "D", "LONG_NAME"])
VALUES = st.text(alphabet=st.sampled_from(list(" \t\n'\"$#\\=ab")), max_size=12)
OPERATOR = "# the operator's own\nexport KEEP='mine'   # a comment\nMULTI=\"two\nlines\"\n\n"


def test_names_apphub_no_longer_sets_are_taken_out_and_the_rest_kept() -> None:
    first = managed_env_file(OPERATOR, {"A": "1", "B": "two words"})
    second = managed_env_file(first, {"B": "2"})
    assert read(second) == {"KEEP": "mine", "MULTI": "two\nlines", "B": "2"}
    assert second.startswith(OPERATOR)
    assert second.endswith("# apphub manages: B\n")
    assert managed_env_file(second, {"B": "2"}) == second  # nothing to do: the same bytes


@settings(max_examples=200, deadline=None, database=None)
@given(st.lists(st.dictionaries(NAMES, VALUES, max_size=4), min_size=1, max_size=4))
def test_any_sequence_of_environments_reads_back_exactly(steps: list[dict[str, str]]) -> None:
    text = OPERATOR
    for env in steps:
        text = managed_env_file(text, env)
        assert read(text) == {"KEEP": "mine", "MULTI": "two\nlines", **env}
        assert text.startswith(OPERATOR)
