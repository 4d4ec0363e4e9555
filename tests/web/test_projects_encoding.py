"""`encode_ref_states` writes exactly the document `ref_state_to_dict` + `json` would: every
field, UTC times with `Z` (with and without microseconds), enums by value, None as null and
any text escaped."""

from __future__ import annotations

import json
from datetime import timedelta

from hypothesis import given
from hypothesis import strategies as st

from ciwatch.domain import RefState, Status
from ciwatch.serialize import ref_state_to_dict
from ciwatch.web.api import encode_ref_states
from factories import at, make_run


def _state(text: str, micros: int, status: Status, since: bool) -> RefState:
    run = make_run(
        project=f"group/{text}",
        ref=text or None,
        author=text,
        status=status,
        updated_at=at(300) + timedelta(microseconds=micros),
        finished_at=None if status is Status.RUNNING else at(300),
    )
    return RefState(
        run.source, run.provider, run.project, text, status, at(5) if since else None, run
    )


@given(
    st.text(max_size=20),
    st.integers(0, 999_999),
    st.sampled_from(list(Status)),
    st.booleans(),
)
def test_the_fast_encoding_is_the_contract_document(
    text: str, micros: int, status: Status, since: bool
) -> None:
    states = [_state(text, micros, status, since), _state("plain", 0, Status.SUCCESS, True)]
    expected = {"projects": [ref_state_to_dict(state) for state in states]}
    assert json.loads(encode_ref_states(states)) == expected


def test_no_refs() -> None:
    assert encode_ref_states([]) == b'{"projects":[]}'
