"""Home visits: the order of their steps, notify → evaluate → dispatch → meet → agreement, then
closed. Who may go, and when, is the contact rules' business (workflows.contact_policy)."""

from __future__ import annotations

from workflows.errors import DomainError

VISIT_STEPS: tuple[str, ...] = ("notify", "evaluate", "dispatch", "meet", "agreement")
CLOSED = "closed"


def next_status(status: str, step: str) -> str:
    """The status after doing ``step`` on a visit at ``status``: only the step the visit waits
    for may be done, and the last one closes it."""
    if status not in VISIT_STEPS or step != status:
        raise DomainError(
            "visit_step_out_of_order", "This step cannot be done now: the visit is at another step."
        )
    position = VISIT_STEPS.index(status)
    return VISIT_STEPS[position + 1] if position + 1 < len(VISIT_STEPS) else CLOSED
