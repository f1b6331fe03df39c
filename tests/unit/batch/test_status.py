from __future__ import annotations

import itertools

import pytest

from llm_stream.batch.status import (
    ALLOWED_TRANSITIONS,
    CANCELLED_STATUSES,
    TERMINAL_STATUSES,
    BatchStatus,
    InvalidTransitionError,
    can_transition,
    check_transition,
)

S = BatchStatus
ALLOWED = {
    (S.VALIDATING, S.IN_PROGRESS),
    (S.VALIDATING, S.FAILED),
    (S.VALIDATING, S.CANCELLING),
    (S.IN_PROGRESS, S.FINALIZING),
    (S.IN_PROGRESS, S.EXPIRED),
    (S.IN_PROGRESS, S.FAILED),
    (S.IN_PROGRESS, S.CANCELLING),
    (S.FINALIZING, S.COMPLETED),
    (S.FINALIZING, S.EXPIRED),
    (S.FINALIZING, S.FAILED),
    (S.CANCELLING, S.CANCELLED),
}
REFUSED = set(itertools.product(BatchStatus, repeat=2)) - ALLOWED


def test_statuses_are_openais_strings() -> None:
    assert [status.value for status in BatchStatus] == [
        "validating",
        "failed",
        "in_progress",
        "finalizing",
        "completed",
        "expired",
        "cancelling",
        "cancelled",
    ]
    assert BatchStatus("in_progress") == "in_progress"


def test_the_terminal_statuses_are_those_nothing_leaves() -> None:
    assert {S.COMPLETED, S.FAILED, S.EXPIRED, S.CANCELLED} == TERMINAL_STATUSES
    assert {s for s in BatchStatus if not ALLOWED_TRANSITIONS[s]} == TERMINAL_STATUSES


def test_every_status_has_its_transitions() -> None:
    assert set(ALLOWED_TRANSITIONS) == set(BatchStatus)


@pytest.mark.parametrize(("current", "target"), sorted(ALLOWED))
def test_an_allowed_transition_is_allowed(current: BatchStatus, target: BatchStatus) -> None:
    assert can_transition(current, target)
    assert check_transition(current, target) is target


@pytest.mark.parametrize(("current", "target"), sorted(REFUSED))
def test_every_other_transition_is_refused(current: BatchStatus, target: BatchStatus) -> None:
    assert not can_transition(current, target)
    with pytest.raises(InvalidTransitionError, match=f"from {current} to {target}") as raised:
        check_transition(current, target)
    assert (raised.value.current, raised.value.target) == (current, target)
    assert isinstance(raised.value, ValueError)


def test_the_aggregators_finalizing_ends_in_completed_expired_or_failed() -> None:
    assert ALLOWED_TRANSITIONS[S.FINALIZING] == {S.COMPLETED, S.EXPIRED, S.FAILED}
    assert can_transition(S.IN_PROGRESS, S.FINALIZING)
    assert not can_transition(S.IN_PROGRESS, S.COMPLETED)  # only through finalizing


def test_a_cancel_asked_for_leads_only_to_cancelled() -> None:
    assert {S.CANCELLING, S.CANCELLED} == CANCELLED_STATUSES
    assert ALLOWED_TRANSITIONS[S.CANCELLING] == {S.CANCELLED}
    assert S.CANCELLED in TERMINAL_STATUSES
