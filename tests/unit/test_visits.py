"""A home visit goes through its steps in order, one at a time, and the last one closes it."""

from __future__ import annotations

import pytest

from workflows.errors import DomainError
from workflows.visits import CLOSED, VISIT_STEPS, next_status


def test_each_step_leads_to_the_next_and_agreement_closes_the_visit() -> None:
    status = VISIT_STEPS[0]
    seen = [status]
    while status != CLOSED:
        status = next_status(status, status)
        seen.append(status)
    assert seen == [*VISIT_STEPS, CLOSED]


@pytest.mark.parametrize("status", [*VISIT_STEPS, CLOSED, "cancelled"])
@pytest.mark.parametrize("step", VISIT_STEPS)
def test_no_step_but_the_one_the_visit_waits_for_can_be_done(status: str, step: str) -> None:
    if status == step:
        return
    with pytest.raises(DomainError) as refused:
        next_status(status, step)
    assert refused.value.code == "visit_step_out_of_order"
