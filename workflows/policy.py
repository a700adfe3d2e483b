"""Collections policy: stage thresholds, late fees and when each treatment begins."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from enum import StrEnum
from types import MappingProxyType

from workflows.errors import DomainError
from workflows.money import CURRENCY_EXPONENTS


class Stage(StrEnum):
    CURRENT = "current"
    EARLY = "early"
    MID = "mid"
    LATE = "late"
    LEGAL = "legal"
    CHARGED_OFF = "charged_off"


_MONEY_FIELDS = ("late_fee_amount", "late_fee_cap_per_account")


def _frozen(values: Mapping[str, int]) -> Mapping[str, int]:
    return MappingProxyType(dict(values))


@dataclass(frozen=True)
class Policy:
    """The thresholds and amounts an admin sets; all day counts are days past due."""

    early_from_dpd: int = 1
    mid_from_dpd: int = 31
    late_from_dpd: int = 91
    charge_off_dpd: int = 180
    late_fee_grace_days: int = 5
    late_fee_amount: Mapping[str, int] = field(
        default_factory=lambda: _frozen({"CNY": 5000, "USD": 1500, "EUR": 1500})
    )
    late_fee_cap_per_account: Mapping[str, int] = field(
        default_factory=lambda: _frozen({"CNY": 50000, "USD": 15000, "EUR": 15000})
    )
    call_from_dpd: int = 31
    letter_from_dpd: int = 31
    credit_bureau_report_dpd: int = 90
    home_visit_from_dpd: int = 91
    legal_review_dpd: int = 120

    def __post_init__(self) -> None:
        # Copy the caller's dicts so later edits to them cannot change a policy in force.
        for name in _MONEY_FIELDS:
            value = getattr(self, name)
            if isinstance(value, Mapping):
                object.__setattr__(self, name, _frozen(value))

    def __hash__(self) -> int:
        # MappingProxyType is unhashable, so the fee tables are hashed by their items; this
        # keeps a policy usable as a cache key.
        return hash(
            tuple(
                tuple(sorted(value.items())) if isinstance(value, Mapping) else value
                for value in (getattr(self, f.name) for f in fields(self))
            )
        )

    def validate(self) -> list[str]:
        """A policy is usable only if the stages follow each other and every fee is known and capped."""
        # Each check assumes the ones before it passed, so stop at the first that finds problems.
        for check in (self._day_problems, self._amount_problems, self._cap_problems):
            problems = check()
            if problems:
                return problems
        return []

    def _day_problems(self) -> list[str]:
        problems: list[str] = []
        for name in (f.name for f in fields(self) if f.name not in _MONEY_FIELDS):
            value = getattr(self, name)
            # A grace of zero days is a legitimate (strict) choice; a threshold of zero is not,
            # because day zero is the due date itself.
            minimum = 0 if name == "late_fee_grace_days" else 1
            if isinstance(value, bool) or not isinstance(value, int):
                problems.append(f"{name} must be a whole number of days.")
            elif value < minimum:
                problems.append(f"{name} must be at least {minimum}.")
        if not problems and not (
            self.early_from_dpd < self.mid_from_dpd < self.late_from_dpd < self.charge_off_dpd
        ):
            problems.append(
                "Stage thresholds must increase: early_from_dpd < mid_from_dpd"
                " < late_from_dpd < charge_off_dpd."
            )
        return problems

    def _amount_problems(self) -> list[str]:
        problems: list[str] = []
        for name in _MONEY_FIELDS:
            amounts = getattr(self, name)
            if not isinstance(amounts, Mapping):
                problems.append(f"{name} must map currency codes to amounts.")
                continue
            for currency, amount in amounts.items():
                if currency not in CURRENCY_EXPONENTS:
                    problems.append(f"{name} has an unknown currency {currency!r}.")
                if isinstance(amount, bool) or not isinstance(amount, int):
                    problems.append(f"{name}[{currency!r}] must be whole minor units.")
                elif amount < 0:
                    problems.append(f"{name}[{currency!r}] cannot be negative.")
        return problems

    def _cap_problems(self) -> list[str]:
        problems: list[str] = []
        for currency, fee in self.late_fee_amount.items():
            cap = self.late_fee_cap_per_account.get(currency)
            if cap is None:
                problems.append(f"The late fee in {currency} has no cap per account.")
            elif fee > cap:
                problems.append(f"The late fee in {currency} is larger than its cap per account.")
        return problems

    def to_dict(self) -> dict[str, object]:
        """The policy as plain JSON-ready values."""
        return {
            f.name: dict(value) if isinstance(value := getattr(self, f.name), Mapping) else value
            for f in fields(self)
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, object]) -> Policy:
        """Build a policy from stored values; missing settings take their defaults, and an
        unknown or inconsistent setting refuses the whole policy."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise DomainError(
                "policy_invalid",
                "The policy is invalid: {problems}",
                problems=f"unknown settings {', '.join(map(str, unknown))}.",
            )
        policy = cls(**data)  # type: ignore[arg-type]  # validate() checks every value's type
        problems = policy.validate()
        if problems:
            raise DomainError(
                "policy_invalid",
                "The policy is invalid: {problems}",
                problems=" ".join(problems),
            )
        return policy


DEFAULT_POLICY = Policy()
