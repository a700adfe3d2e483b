"""Contact rules: when, how often, by which channel and with whom the lender may contact a borrower
about a debt. The rules are rule packs held as data (China, US Regulation F, UK CONC 7.3) so they
can live in the versioned policy; `check` gates every outbound message, call and visit, and
`call_counter` is what a collector sees before a call.

Time. Every instant is an aware datetime (stored UTC). Allowed hours are local wall-clock hours in
the borrower's IANA time zone, and a check converts the instant to local time with zoneinfo. So a
wall time that does not exist (the hour skipped when clocks go forward) never arises, and a wall
time that happens twice (the hour repeated when clocks go back) is judged by what the clock shows
each time: every real instant is judged exactly once. A window is half-open: with 08:00-21:00,
08:00:00 and 20:59:59 are inside, 21:00:00 is not.

History. A check counts only the attempts strictly before the instant it judges, so logging the
attempt being judged (at the same instant) changes nothing, and a check of a past instant (a call
logged afterwards) sees the history as it was then.

What stops contact:
- A cease-contact request or an open dispute stops everything: every channel, every party,
  letters included. A notice the law itself requires is not collection contact and is not sent
  through this check; anything that is sent through it is refused.
- A channel the borrower opted out of is closed for every party (texting the borrower's mother
  after the borrower opted out of texts would defeat the opt-out); other channels stay open.
- Third parties are never told about the debt (`Decision.may_disclose_debt`).

Counting calls (only the `call` channel is capped):
- The daily cap counts calls to the same number on the borrower's local calendar day (any party,
  since a number is a number); a check without a number counts every call to the same party.
- The weekly cap and the pause after a conversation are per person: for the borrower every call
  to the borrower on any number; for a third party the calls to the same number (or to that kind of
  third party when no number is given). The week is, as the pack says, either the rolling 7 x 24
  hours before the instant (US: Regulation F's "seven consecutive days", counted in the way that
  can only count more calls than a calendar reading) or today and the 6 local calendar days before.
  The pause after a conversation is rolling: a call is allowed again exactly N x 24 hours after it.
  Only a telephone conversation starts that pause (the regulation's words).
- "Unreachable K times in a row" counts the borrower's most recent call and home-visit attempts
  (the channels where reaching someone is observed, not a delivered text): the last K must all
  have failed. Because a failed attempt opens third-party contact, adding history can lift
  `third_party_too_early`; every other refusal only ever grows with history.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import UTC, date, datetime, time, timedelta, tzinfo
from enum import StrEnum
from types import MappingProxyType
from typing import TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from workflows.errors import DomainError
from workflows.money import require_int


class Channel(StrEnum):
    CALL = "call"
    SMS = "sms"
    EMAIL = "email"
    LETTER = "letter"
    APP = "app"
    HOME_VISIT = "home_visit"


class Party(StrEnum):
    """Who is contacted."""

    BORROWER = "borrower"
    RELATED_THIRD_PARTY = "related_third_party"
    """Family, or a contact the borrower named (紧急联系人)."""
    UNRELATED_THIRD_PARTY = "unrelated_third_party"
    """Anyone else: an employer, a colleague, a neighbour."""


class WeekBasis(StrEnum):
    """What "in a week" means for the weekly call cap."""

    ROLLING = "rolling"
    """The 7 x 24 hours before the instant judged."""
    LOCAL_DAYS = "local_days"
    """The borrower's local calendar day and the 6 before it."""


MINUTES_PER_DAY = 24 * 60
DAYS_PER_MONTH = 30
"""A month's affordable amount is what a borrower can pay in this many days."""
BASIS_POINTS = 10_000
WEEK_DAYS = 7
MAX_CALLS = 100
"""No cap may be higher (a typo, not a policy)."""
MAX_PAUSE_DAYS = 30
MAX_UNREACHABLE = 20
MAX_COLLECTORS = 10
MAX_DEMAND_DAYS = 365

_REACHING_CHANNELS = frozenset({Channel.CALL, Channel.HOME_VISIT})
"""Channels whose attempts say whether the borrower was reached (a delivered text does not)."""


def _invalid(problems: str) -> DomainError:
    return DomainError("policy_invalid", "The policy is invalid: {problems}", problems=problems)


def _is_whole(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _range_problems(path: str, value: object, low: int, high: int) -> list[str]:
    if not _is_whole(value):
        return [f"{path} must be a whole number."]
    assert isinstance(value, int)
    if not low <= value <= high:
        return [f"{path} must be from {low} to {high}."]
    return []


def _settings(
    data: object, path: str, known: Iterable[str], required: Iterable[str] = ()
) -> dict[str, object]:
    """Stored settings at `path` as a dict, refusing anything but named, known settings."""
    if not isinstance(data, Mapping):
        raise _invalid(f"{path} must be a set of named settings.")
    unknown = sorted(set(map(str, data)) - set(known))
    if unknown:
        raise _invalid(f"unknown settings {', '.join(f'{path}.{name}' for name in unknown)}.")
    missing = sorted(set(required) - set(map(str, data)))
    if missing:
        raise _invalid(f"missing settings {', '.join(f'{path}.{name}' for name in missing)}.")
    return {str(key): value for key, value in data.items()}


_E = TypeVar("_E", bound=StrEnum)


def _member(kind: type[_E], value: object) -> _E | object:
    """A stored value read as the enum it names; anything else is kept, for validate() to name."""
    if isinstance(value, str) and value in {str(m) for m in kind}:
        return kind(value)
    return value


def _members(kind: type[StrEnum], values: object) -> object:
    if isinstance(values, list | tuple | set | frozenset):
        return frozenset(_member(kind, value) for value in values)
    return values


def _hashable(value: object) -> object:
    if isinstance(value, Mapping):
        return tuple(sorted(((str(k), _hashable(v)) for k, v in value.items()), key=lambda p: p[0]))
    if isinstance(value, frozenset):
        return tuple(sorted(map(str, value)))
    return value


# --- Windows: local wall-clock hours --------------------------------------------------------------

_CLOCK = re.compile(r"(\d{2}):(\d{2})")


def _clock(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"


def _parse_clock(text: object, path: str) -> int:
    match = _CLOCK.fullmatch(text) if isinstance(text, str) else None
    if match:
        hours, minutes = int(match[1]), int(match[2])
        if minutes < 60 and hours * 60 + minutes <= MINUTES_PER_DAY:
            return hours * 60 + minutes
    raise _invalid(f"{path} must be a local time from 00:00 to 24:00, written HH:MM.")


@dataclass(frozen=True)
class Window:
    """Allowed local hours, from `start` up to but not including `end`, in minutes after local
    midnight (`end` may be 24:00). A window never wraps past midnight: contact at night is what
    these rules exist to prevent. Stored as {"start": "08:00", "end": "21:00"}."""

    start: int
    end: int

    @classmethod
    def of(cls, start: str, end: str) -> Window:
        return cls(_parse_clock(start, "start"), _parse_clock(end, "end"))

    def contains(self, local: datetime) -> bool:
        """Whether a local time of day is inside; whole seconds decide, as at 20:59:59.9 < 21:00."""
        second = local.hour * 3600 + local.minute * 60 + local.second
        return self.start * 60 <= second < self.end * 60

    def covers(self, other: Window) -> bool:
        return self.start <= other.start and other.end <= self.end

    def __str__(self) -> str:
        return f"{_clock(self.start)}-{_clock(self.end)}"

    def problems(self, path: str) -> list[str]:
        problems = _range_problems(f"{path}.start", self.start, 0, MINUTES_PER_DAY - 1)
        problems += _range_problems(f"{path}.end", self.end, 1, MINUTES_PER_DAY)
        if not problems and self.start >= self.end:
            problems.append(f"{path} must start before it ends (it cannot wrap past midnight).")
        return problems

    def to_dict(self) -> dict[str, object]:
        return {"start": _clock(self.start), "end": _clock(self.end)}

    @classmethod
    def from_dict(cls, data: object, path: str) -> Window:
        settings = _settings(data, path, ("start", "end"), required=("start", "end"))
        return cls(
            _parse_clock(settings["start"], f"{path}.start"), _parse_clock(settings["end"], f"{path}.end")
        )


# --- UK CONC 7.3: no pressure to pay too much too soon ---------------------------------------------


@dataclass(frozen=True)
class DemandRule:
    """CONC 7.3: a firm must not pressure a borrower to pay unreasonably large amounts in
    unreasonably short times. A proposed demand (an amount due by a deadline) is refused as
    such pressure when all three hold:

    - it is large: at least `large_share_bp` of the balance (5000 = half);
    - it is soon: due in fewer than `min_days_for_large` days;
    - it is unaffordable: the borrower's affordable monthly amount, from their income and
      expenditure statement, says they cannot pay it by then. They can pay that amount for every
      30 days until the deadline, and at least once: affordable x max(days, 30) // 30.

    Without an affordability figure nothing says a demand is unaffordable, so this rule lets it
    through; the remedy for a borrower who says they cannot pay is a hardship case, which
    produces that figure."""

    large_share_bp: int = 5000
    min_days_for_large: int = 30

    def problems(self, path: str) -> list[str]:
        problems = _range_problems(f"{path}.large_share_bp", self.large_share_bp, 1, BASIS_POINTS)
        problems += _range_problems(f"{path}.min_days_for_large", self.min_days_for_large, 1, MAX_DEMAND_DAYS)
        return problems

    def to_dict(self) -> dict[str, object]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_dict(cls, data: object, path: str) -> DemandRule:
        return cls(**_settings(data, path, (f.name for f in fields(cls))))  # type: ignore[arg-type]


# --- Rule packs --------------------------------------------------------------------------------------

_CODE = re.compile(r"[A-Z][A-Z0-9_]{0,31}")


def _windows(value: object) -> object:
    if isinstance(value, Mapping):
        return MappingProxyType({_member(Channel, k): v for k, v in value.items()})
    return value


@dataclass(frozen=True)
class RulePack:
    """One jurisdiction's contact rules. A cap of None means no cap; a count of 0 turns its rule off."""

    code: str
    windows: Mapping[Channel, Window]
    """Allowed local hours for each channel; every channel must have one."""
    consent_windows: Mapping[Channel, Window] = field(default_factory=lambda: MappingProxyType({}))
    """The hours that apply instead when the borrower consented to extended hours; each must
    contain the normal window (consent only widens). A channel not listed is not widened."""
    max_calls_per_day_per_number: int | None = None
    max_calls_per_week: int | None = None
    """Calls to one person in a week, read as `week_basis` says."""
    week_basis: WeekBasis = WeekBasis.ROLLING
    pause_days_after_conversation: int = 0
    """No call to a person within this many days (x 24 hours) after a telephone conversation with them."""
    third_party_after_unreachable: int = 0
    """Third parties may be contacted only once this many of the borrower's latest call or visit
    attempts in a row failed to reach them."""
    allowed_parties: frozenset[Party] = frozenset(Party)
    """Who may be contacted at all; always includes the borrower."""
    home_visit_min_collectors: int = 1
    home_visit_identification: bool = True
    """Visiting collectors must identify themselves."""
    opt_out_required: frozenset[Channel] = frozenset()
    """Channels whose every message must carry a way to opt out."""
    demand_rule: DemandRule | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "windows", _windows(self.windows))
        object.__setattr__(self, "consent_windows", _windows(self.consent_windows))
        object.__setattr__(self, "allowed_parties", _members(Party, self.allowed_parties))
        object.__setattr__(self, "opt_out_required", _members(Channel, self.opt_out_required))
        object.__setattr__(self, "week_basis", _member(WeekBasis, self.week_basis))

    def __hash__(self) -> int:
        return hash(tuple(_hashable(getattr(self, f.name)) for f in fields(self)))

    def window(self, channel: Channel, *, consent: bool) -> Window:
        """The allowed hours for a channel, widened by the borrower's consent where the pack allows."""
        if consent and channel in self.consent_windows:
            return self.consent_windows[channel]
        return self.windows[channel]

    def validate(self) -> list[str]:
        """Every channel has sound hours, consent only widens them, caps and counts are in range."""
        path = f"contact.{self.code}" if isinstance(self.code, str) else "contact"
        problems: list[str] = []
        if not isinstance(self.code, str) or not _CODE.fullmatch(self.code):
            problems.append("contact.code must be capital letters, digits and _ (like US_REG_F).")
        problems += self._window_problems(path)
        for name in ("max_calls_per_day_per_number", "max_calls_per_week"):
            if getattr(self, name) is not None:
                problems += _range_problems(f"{path}.{name}", getattr(self, name), 1, MAX_CALLS)
        if not isinstance(self.week_basis, WeekBasis):
            problems.append(f"{path}.week_basis must be one of {', '.join(WeekBasis)}.")
        problems += _range_problems(
            f"{path}.pause_days_after_conversation", self.pause_days_after_conversation, 0, MAX_PAUSE_DAYS
        )
        problems += _range_problems(
            f"{path}.third_party_after_unreachable", self.third_party_after_unreachable, 0, MAX_UNREACHABLE
        )
        problems += _range_problems(
            f"{path}.home_visit_min_collectors", self.home_visit_min_collectors, 1, MAX_COLLECTORS
        )
        if not isinstance(self.home_visit_identification, bool):
            problems.append(f"{path}.home_visit_identification must be true or false.")
        if not isinstance(self.allowed_parties, frozenset) or not all(
            isinstance(p, Party) for p in self.allowed_parties
        ):
            problems.append(f"{path}.allowed_parties must list parties from {', '.join(Party)}.")
        elif Party.BORROWER not in self.allowed_parties:
            problems.append(f"{path}.allowed_parties must include the borrower.")
        if not isinstance(self.opt_out_required, frozenset) or not all(
            isinstance(c, Channel) for c in self.opt_out_required
        ):
            problems.append(f"{path}.opt_out_required must list channels from {', '.join(Channel)}.")
        if self.demand_rule is not None:
            if isinstance(self.demand_rule, DemandRule):
                problems += self.demand_rule.problems(f"{path}.demand_rule")
            else:
                problems.append(f"{path}.demand_rule must be a demand rule or nothing.")
        return problems

    def _window_problems(self, path: str) -> list[str]:
        problems: list[str] = []
        for name in ("windows", "consent_windows"):
            table = getattr(self, name)
            if not isinstance(table, Mapping):
                problems.append(f"{path}.{name} must map channels to windows.")
                continue
            for channel, window in table.items():
                if not isinstance(channel, Channel):
                    problems.append(f"{path}.{name} has an unknown channel {channel!r}.")
                elif not isinstance(window, Window):
                    problems.append(f"{path}.{name}.{channel} must be a window.")
                else:
                    problems += window.problems(f"{path}.{name}.{channel}")
        if problems:
            return problems
        for channel in Channel:
            if channel not in self.windows:
                problems.append(f"{path}.windows has no hours for {channel}.")
        for channel, wide in self.consent_windows.items():
            normal = self.windows.get(channel)
            if normal is not None and not wide.covers(normal):
                problems.append(f"{path}.consent_windows.{channel} must contain {path}.windows.{channel}.")
        return problems

    def to_dict(self) -> dict[str, object]:
        """Plain JSON values: channel keys and members as strings, hours as HH:MM."""
        return {
            "code": self.code,
            "windows": {str(c): w.to_dict() for c, w in self.windows.items()},
            "consent_windows": {str(c): w.to_dict() for c, w in self.consent_windows.items()},
            "max_calls_per_day_per_number": self.max_calls_per_day_per_number,
            "max_calls_per_week": self.max_calls_per_week,
            "week_basis": str(self.week_basis),
            "pause_days_after_conversation": self.pause_days_after_conversation,
            "third_party_after_unreachable": self.third_party_after_unreachable,
            "allowed_parties": sorted(map(str, self.allowed_parties)),
            "home_visit_min_collectors": self.home_visit_min_collectors,
            "home_visit_identification": self.home_visit_identification,
            "opt_out_required": sorted(map(str, self.opt_out_required)),
            "demand_rule": None if self.demand_rule is None else self.demand_rule.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: object, path: str = "contact") -> RulePack:
        """Build a pack from stored values; a missing setting takes its default, and an unknown
        or inconsistent setting refuses the whole pack."""
        settings = _settings(data, path, (f.name for f in fields(cls)), required=("code", "windows"))
        for name in ("windows", "consent_windows"):
            if name in settings:
                table = _settings(settings[name], f"{path}.{name}", map(str, Channel))
                settings[name] = {c: Window.from_dict(w, f"{path}.{name}.{c}") for c, w in table.items()}
        if settings.get("demand_rule") is not None:
            settings["demand_rule"] = DemandRule.from_dict(settings["demand_rule"], f"{path}.demand_rule")
        pack = cls(**settings)  # type: ignore[arg-type]  # validate() checks every value
        problems = pack.validate()
        if problems:
            raise _invalid(" ".join(problems))
        return pack


def _hours(day: tuple[str, str], *, letter: tuple[str, str] = ("00:00", "24:00")) -> Mapping[Channel, Window]:
    # A letter is posted, not delivered by us at a time of day: its window is the whole day.
    return {c: Window.of(*(letter if c == Channel.LETTER else day)) for c in Channel}


_REMOTE = (Channel.CALL, Channel.SMS, Channel.EMAIL, Channel.APP)

CN = RulePack(
    code="CN",
    # No contact 22:00-08:00 without consent; the default day ends at 21:00 and the borrower's
    # consent may widen remote contact (not visits) up to the hard 22:00 limit.
    windows=_hours(("08:00", "21:00")),
    consent_windows={c: Window.of("08:00", "22:00") for c in _REMOTE},
    max_calls_per_day_per_number=6,
    third_party_after_unreachable=3,
    # Third parties only to find an unreachable borrower: family and named contacts, never people
    # unconnected to the debt.
    allowed_parties=frozenset({Party.BORROWER, Party.RELATED_THIRD_PARTY}),
    home_visit_min_collectors=2,
    home_visit_identification=True,
)

US_REG_F = RulePack(
    code="US_REG_F",
    # 12 CFR 1006.6(b)(1)(i): before 8 a.m. and after 9 p.m. local time are inconvenient.
    windows=_hours(("08:00", "21:00")),
    # 1006.14(b)(2): more than 7 calls in 7 consecutive days, or a call within 7 days after a
    # telephone conversation, is presumed harassment.
    max_calls_per_week=7,
    week_basis=WeekBasis.ROLLING,
    pause_days_after_conversation=7,
    # 1006.6(e): every electronic communication carries a reasonable way to opt out.
    opt_out_required=frozenset({Channel.SMS, Channel.EMAIL}),
)

UK_CONC = RulePack(
    code="UK_CONC",
    # CONC 7.9: no contact at unreasonable hours; 8 a.m. to 9 p.m. is the usual reading.
    windows=_hours(("08:00", "21:00")),
    demand_rule=DemandRule(large_share_bp=5000, min_days_for_large=30),
)

PACKS: Mapping[str, RulePack] = MappingProxyType({p.code: p for p in (CN, US_REG_F, UK_CONC)})


def pack(code: str) -> RulePack:
    """A built-in rule pack by its code."""
    try:
        return PACKS[code]
    except (KeyError, TypeError):
        raise DomainError(
            "contact_pack_unknown", "There are no contact rules called {pack_code}.", pack_code=str(code)
        ) from None


# --- What a check is given ---------------------------------------------------------------------


@dataclass(frozen=True)
class ContactAttempt:
    """One contact already made (or tried): `reached` when someone answered or was met,
    `conversation` when the borrower or third party actually talked with us (implies reached)."""

    at: datetime
    channel: Channel
    party: Party
    number_or_address: str
    reached: bool
    conversation: bool = False


@dataclass(frozen=True)
class Restrictions:
    """What the borrower asked for, or what is open on the account."""

    opted_out_channels: frozenset[Channel] = frozenset()
    cease_contact: bool = False
    dispute_open: bool = False
    consent_extended_hours: bool = False


NO_RESTRICTIONS = Restrictions()


class RefusalCode(StrEnum):
    CEASE_CONTACT = "cease_contact"
    DISPUTE_OPEN = "dispute_open"
    OPTED_OUT = "opted_out"
    PARTY_NOT_ALLOWED = "party_not_allowed"
    THIRD_PARTY_TOO_EARLY = "third_party_too_early"
    HOME_VISIT_NEEDS_TWO = "home_visit_needs_two"
    """Fewer collectors than the pack requires (two in CN)."""
    COLLECTORS_NOT_IDENTIFIED = "collectors_not_identified"
    MISSING_OPT_OUT = "missing_opt_out"
    OUTSIDE_HOURS = "outside_hours"
    DAILY_CALL_CAP = "daily_call_cap"
    WEEKLY_CALL_CAP = "weekly_call_cap"
    AFTER_CONVERSATION = "after_conversation"
    UNREASONABLE_DEMAND = "unreasonable_demand"
    BREATHING_SPACE = "breathing_space"
    """A breathing space that pauses contact is running (the portal adds it; the pack does not)."""


TIME_BOUND = frozenset(
    {
        RefusalCode.OUTSIDE_HOURS,
        RefusalCode.DAILY_CALL_CAP,
        RefusalCode.WEEKLY_CALL_CAP,
        RefusalCode.AFTER_CONVERSATION,
    }
)
"""Refusals that lift as time passes; every other one lasts as long as its cause."""

_MESSAGES: Mapping[RefusalCode, str] = MappingProxyType(
    {
        RefusalCode.CEASE_CONTACT: "The borrower asked us to stop contacting them.",
        RefusalCode.DISPUTE_OPEN: (
            "The borrower disputes this debt: no contact until the dispute is resolved."
        ),
        RefusalCode.OPTED_OUT: "The borrower opted out of {channel}.",
        RefusalCode.PARTY_NOT_ALLOWED: "These rules do not allow contact with a {party}.",
        RefusalCode.THIRD_PARTY_TOO_EARLY: (
            "Third parties may be contacted only after {required} failed attempts in a row to reach"
            " the borrower; so far {in_a_row}."
        ),
        RefusalCode.HOME_VISIT_NEEDS_TWO: (
            "A home visit needs at least {required} collectors, not {collectors}."
        ),
        RefusalCode.COLLECTORS_NOT_IDENTIFIED: "Collectors on a home visit must identify themselves.",
        RefusalCode.MISSING_OPT_OUT: "Every {channel} message must include a way to opt out.",
        RefusalCode.OUTSIDE_HOURS: (
            "It is {local_time} for the borrower ({time_zone}); {channel} is allowed {window} only."
        ),
        RefusalCode.DAILY_CALL_CAP: "{made} calls already today to this number; at most {cap} a day.",
        RefusalCode.WEEKLY_CALL_CAP: "{made} calls already in the last 7 days; at most {cap}.",
        RefusalCode.AFTER_CONVERSATION: (
            "No call within {days} days after a conversation (the last was {at})."
        ),
        RefusalCode.BREATHING_SPACE: "A breathing space pauses collection contact until {until}.",
        RefusalCode.UNREASONABLE_DEMAND: (
            "Asking for {demand} of a {balance} balance within {deadline_days} days is more than the"
            " borrower can afford by then ({affordable_by_deadline}): allow at least {min_days} days"
            " or ask for less."
        ),
    }
)


@dataclass(frozen=True)
class Refusal:
    """One reason a contact is refused: a stable code (the portal translates by it) and the
    values its sentence names."""

    code: RefusalCode
    params: Mapping[str, str | int] = field(default_factory=lambda: MappingProxyType({}))

    def __post_init__(self) -> None:
        object.__setattr__(self, "params", MappingProxyType(dict(self.params)))

    def __hash__(self) -> int:
        return hash((self.code, _hashable(self.params)))

    @property
    def message(self) -> str:
        """The English sentence, for logs and staff screens without a translation."""
        return _MESSAGES[self.code].format(**self.params)


@dataclass(frozen=True)
class Decision:
    allowed: bool
    reasons: tuple[Refusal, ...]
    """Every rule the contact breaks, not just the first."""
    next_allowed_utc: datetime | None
    """The earliest instant, at or after the one judged, when the same contact would be allowed
    with the same history: the instant itself when allowed now; None when waiting alone cannot
    allow it (a cease-contact request, a dispute, an opt-out, a missing opt-out text, too few
    collectors, a third party too early)."""
    may_disclose_debt: bool
    """Only the borrower may be told about the debt."""

    @property
    def codes(self) -> frozenset[RefusalCode]:
        return frozenset(r.code for r in self.reasons)


@dataclass(frozen=True)
class CallCounter:
    """What a collector sees before a call."""

    attempts_left_today: int | None
    """Calls left today to this number (the borrower's local day); None when the pack sets no daily cap."""
    attempts_left_this_week: int | None
    """Calls left to this person in the week the pack counts; None when it sets no weekly cap."""
    next_allowed_utc: datetime | None
    """When the call may be made (now, if allowed); None while something other than time stops it."""


# --- Local time -----------------------------------------------------------------------------------


def _zone(name: object) -> ZoneInfo:
    if isinstance(name, str) and name:
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            pass
    raise DomainError("time_zone_unknown", "{name} is not a known time zone.", name=str(name))


def _utc(value: object, name: str) -> datetime:
    if not isinstance(value, datetime) or value.tzinfo is None or value.utcoffset() is None:
        raise DomainError(
            "time_not_aware", "{name} must be a date and time with its time zone (UTC).", name=name
        )
    return value.astimezone(UTC)


def _wall(instant: datetime, zone: tzinfo) -> datetime:
    return instant.astimezone(zone).replace(tzinfo=None)


def _instants_at(day: date, minute: int, zone: tzinfo) -> list[datetime]:
    """The instants at which the borrower's clock shows `minute` on `day`: one as a rule, two in the
    hour repeated when clocks go back; for a time skipped when clocks go forward, the instant the
    clock jumps past it (the first at which it shows a later time)."""
    wall = datetime.combine(day, time()) + timedelta(minutes=minute)
    found = sorted(
        {
            instant
            for fold in (0, 1)
            if _wall(instant := wall.replace(tzinfo=zone, fold=fold).astimezone(UTC), zone) == wall
        }
    )
    if found:
        return found
    # In a gap the two readings of the wall time straddle the jump: search the whole seconds between.
    low, high = sorted(wall.replace(tzinfo=zone, fold=fold).astimezone(UTC) for fold in (0, 1))
    lo, hi = 0, int((high - low).total_seconds())
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _wall(low + timedelta(seconds=mid), zone) >= wall:
            hi = mid
        else:
            lo = mid
    return [low + timedelta(seconds=hi)]


def _transition(day: date, zone: tzinfo) -> datetime | None:
    """The instant the zone's offset changes during the local `day`, if it does (at most once a day)."""
    start, end = _instants_at(day, 0, zone)[0], _instants_at(day, MINUTES_PER_DAY, zone)[0]
    before, after = start.astimezone(zone).utcoffset(), end.astimezone(zone).utcoffset()
    if before == after:
        return None
    lo, hi = 0, int((end - start).total_seconds())
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if (start + timedelta(seconds=mid)).astimezone(zone).utcoffset() == before:
            lo = mid
        else:
            hi = mid
    return start + timedelta(seconds=hi)


_SEARCH_DAYS = 8


def _next_in_window(after: datetime, window: Window, zone: tzinfo) -> datetime:
    """The first instant later than `after` inside the window. The clock enters a window either by
    reaching its start or by jumping into it when the offset changes, so those are the only
    instants to try."""
    first = _wall(after, zone).date()
    for offset in range(-1, _SEARCH_DAYS):
        day = first + timedelta(days=offset)
        candidates = _instants_at(day, window.start, zone)
        if (jump := _transition(day, zone)) is not None:
            candidates.append(jump)
        inside = [c for c in candidates if c > after and window.contains(c.astimezone(zone))]
        if inside:
            return min(inside)
    raise AssertionError("a valid window opens every day")  # pragma: no cover


def _next_local_day(after: datetime, day: date, zone: tzinfo) -> datetime:
    """The first instant later than `after` at which the borrower's clock shows `day`, 00:00 or later."""
    later = [c for c in _instants_at(day, 0, zone) if c > after]
    return min(later) if later else after + timedelta(seconds=1)


# --- The check -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Contact:
    """A contact being judged, with its inputs validated."""

    pack: RulePack
    channel: Channel
    party: Party
    zone: ZoneInfo
    history: tuple[ContactAttempt, ...]
    """Sorted by time (see `_contact`)."""
    restrictions: Restrictions
    collectors: int
    identified: bool
    includes_opt_out: bool
    number: str | None

    def before(self, instant: datetime) -> list[ContactAttempt]:
        return [a for a in self.history if a.at < instant]

    def same_person(self, attempt: ContactAttempt) -> bool:
        if attempt.party != self.party:
            return False
        return self.party == Party.BORROWER or self.number is None or attempt.number_or_address == self.number

    def same_line(self, attempt: ContactAttempt) -> bool:
        if self.number is None:
            return attempt.party == self.party
        return attempt.number_or_address == self.number


_Finding = tuple[Refusal, datetime | None]
"""A refusal and, for one that lifts with time, the earliest instant it can have lifted."""


def _standing(contact: _Contact, when: datetime) -> list[_Finding]:
    """Refusals that waiting does not lift."""
    pack, channel, party, limits = contact.pack, contact.channel, contact.party, contact.restrictions
    found: list[Refusal] = []
    if limits.cease_contact:
        found.append(Refusal(RefusalCode.CEASE_CONTACT))
    if limits.dispute_open:
        found.append(Refusal(RefusalCode.DISPUTE_OPEN))
    if channel in limits.opted_out_channels:
        found.append(Refusal(RefusalCode.OPTED_OUT, {"channel": str(channel)}))
    if party not in pack.allowed_parties:
        found.append(Refusal(RefusalCode.PARTY_NOT_ALLOWED, {"party": str(party)}))
    elif (too_early := _third_party_too_early(contact, when)) is not None:
        found.append(too_early)
    if channel == Channel.HOME_VISIT:
        if contact.collectors < pack.home_visit_min_collectors:
            found.append(
                Refusal(
                    RefusalCode.HOME_VISIT_NEEDS_TWO,
                    {"required": pack.home_visit_min_collectors, "collectors": contact.collectors},
                )
            )
        if pack.home_visit_identification and not contact.identified:
            found.append(Refusal(RefusalCode.COLLECTORS_NOT_IDENTIFIED))
    if channel in pack.opt_out_required and not contact.includes_opt_out:
        found.append(Refusal(RefusalCode.MISSING_OPT_OUT, {"channel": str(channel)}))
    return [(refusal, None) for refusal in found]


def _third_party_too_early(contact: _Contact, when: datetime) -> Refusal | None:
    """A third party only after the borrower's latest K call or visit attempts all failed."""
    required = contact.pack.third_party_after_unreachable
    if contact.party == Party.BORROWER or not required:
        return None
    in_a_row = 0
    for attempt in reversed(contact.before(when)):
        if attempt.party != Party.BORROWER or attempt.channel not in _REACHING_CHANNELS:
            continue
        if attempt.reached:
            break
        in_a_row += 1
    if in_a_row >= required:
        return None
    return Refusal(RefusalCode.THIRD_PARTY_TOO_EARLY, {"required": required, "in_a_row": in_a_row})


def _timed(contact: _Contact, when: datetime) -> list[_Finding]:
    """Refusals that lift with time, each with the earliest instant it can have lifted."""
    pack, zone = contact.pack, contact.zone
    found: list[_Finding] = []
    window = pack.window(contact.channel, consent=contact.restrictions.consent_extended_hours)
    local = when.astimezone(zone)
    if not window.contains(local):
        params: dict[str, str | int] = {
            "local_time": local.strftime("%H:%M"),
            "time_zone": str(zone.key),
            "channel": str(contact.channel),
            "window": str(window),
        }
        found.append((Refusal(RefusalCode.OUTSIDE_HOURS, params), _next_in_window(when, window, zone)))
    if contact.channel != Channel.CALL:
        return found
    calls = [a for a in contact.before(when) if a.channel == Channel.CALL]
    today = local.date()
    if (cap := pack.max_calls_per_day_per_number) is not None:
        made = sum(1 for a in calls if contact.same_line(a) and a.at.astimezone(zone).date() == today)
        if made >= cap:
            lifts = _next_local_day(when, today + timedelta(days=1), zone)
            found.append((Refusal(RefusalCode.DAILY_CALL_CAP, {"made": made, "cap": cap}), lifts))
    person = [a for a in calls if contact.same_person(a)]
    if (cap := pack.max_calls_per_week) is not None:
        week = _in_week(person, when, pack.week_basis, zone)
        if len(week) >= cap:
            # The call that must leave the week for one more to fit.
            oldest = week[len(week) - cap].at
            if pack.week_basis == WeekBasis.ROLLING:
                lifts = oldest + timedelta(days=WEEK_DAYS)
            else:
                lifts = _next_local_day(
                    when, oldest.astimezone(zone).date() + timedelta(days=WEEK_DAYS), zone
                )
            found.append((Refusal(RefusalCode.WEEKLY_CALL_CAP, {"made": len(week), "cap": cap}), lifts))
    if days := pack.pause_days_after_conversation:
        pause = timedelta(days=days)
        talks = [a.at for a in person if a.conversation and a.at > when - pause]
        if talks:
            last = max(talks)
            refusal = Refusal(RefusalCode.AFTER_CONVERSATION, {"days": days, "at": last.isoformat()})
            found.append((refusal, last + pause))
    return found


def _in_week(
    calls: Sequence[ContactAttempt], when: datetime, basis: WeekBasis, zone: tzinfo
) -> list[ContactAttempt]:
    if basis == WeekBasis.ROLLING:
        since = when - timedelta(days=WEEK_DAYS)
        return [a for a in calls if a.at > since]
    first_day = when.astimezone(zone).date() - timedelta(days=WEEK_DAYS - 1)
    return [a for a in calls if a.at.astimezone(zone).date() >= first_day]


def _findings(contact: _Contact, when: datetime) -> list[_Finding]:
    return _standing(contact, when) + _timed(contact, when)


_MAX_STEPS = 100_000


def _next_allowed(contact: _Contact, when: datetime, findings: list[_Finding]) -> datetime | None:
    """Wait for every time-bound refusal to lift, then look again (a later instant sees more of
    the history and a new day's window), until nothing refuses — or something that waiting does
    not lift does. Each step moves strictly later, and past the last attempt only the window is
    left, so this ends."""
    instant = when
    for _ in range(_MAX_STEPS):
        if not findings:
            return instant
        lifts = [lift for _, lift in findings]
        if any(lift is None for lift in lifts):
            return None
        instant = max(lift for lift in lifts if lift is not None)
        findings = _findings(contact, instant)
    raise AssertionError("the next allowed time was not found")  # pragma: no cover


def _contact(
    pack: RulePack,
    *,
    channel: object,
    party: object,
    tz: object,
    history: Iterable[ContactAttempt],
    restrictions: Restrictions,
    collectors: object,
    identified: bool,
    includes_opt_out: bool,
    number: str | None,
) -> _Contact:
    problems = pack.validate()
    if problems:
        raise _invalid(" ".join(problems))
    if not isinstance(channel, str) or channel not in set(map(str, Channel)):
        raise DomainError("channel_unknown", "{channel} is not a contact channel.", channel=str(channel))
    if not isinstance(party, str) or party not in set(map(str, Party)):
        raise DomainError("party_unknown", "{party} is not a party to contact.", party=str(party))
    count = require_int(collectors, "collectors")
    if count < 0:
        raise DomainError("collectors_negative", "The number of collectors cannot be negative.")
    attempts = []
    for attempt in history:
        at = _utc(attempt.at, "A contact attempt's time")
        if attempt.conversation and not attempt.reached:
            raise DomainError(
                "attempt_inconsistent", "A conversation at {at} must have reached someone.", at=at.isoformat()
            )
        attempts.append(attempt if attempt.at.tzinfo is UTC else _with_time(attempt, at))
    return _Contact(
        pack=pack,
        channel=Channel(channel),
        party=Party(party),
        zone=_zone(tz),
        # At the same instant a reached attempt sorts last, so a tie never counts as "unreachable".
        history=tuple(sorted(attempts, key=lambda a: (a.at, a.reached))),
        restrictions=restrictions,
        collectors=count,
        identified=bool(identified),
        includes_opt_out=bool(includes_opt_out),
        number=number,
    )


def _with_time(attempt: ContactAttempt, at: datetime) -> ContactAttempt:
    return ContactAttempt(
        at, attempt.channel, attempt.party, attempt.number_or_address, attempt.reached, attempt.conversation
    )


def check(  # noqa: PLR0917  # the order reads as the question: which rules, what, whom, when, where
    pack: RulePack,
    channel: Channel,
    party: Party,
    when_utc: datetime,
    tz: str,
    history: Iterable[ContactAttempt],
    restrictions: Restrictions = NO_RESTRICTIONS,
    *,
    collectors: int = 0,
    identified: bool = False,
    includes_opt_out: bool = False,
    number_or_address: str | None = None,
) -> Decision:
    """Whether this contact may happen at `when_utc` under the pack, given the account's contact
    history and the borrower's restrictions, in the borrower's time zone `tz` (IANA name).

    `collectors` and `identified` describe a home visit; `includes_opt_out` says an SMS or e-mail
    carries an opt-out; `number_or_address` is where a call goes (for the per-number daily cap;
    without it every call to the same party counts). Every broken rule is listed."""
    contact = _contact(
        pack,
        channel=channel,
        party=party,
        tz=tz,
        history=history,
        restrictions=restrictions,
        collectors=collectors,
        identified=identified,
        includes_opt_out=includes_opt_out,
        number=number_or_address,
    )
    when = _utc(when_utc, "when_utc")
    findings = _findings(contact, when)
    disclose = contact.party == Party.BORROWER
    if not findings:
        return Decision(allowed=True, reasons=(), next_allowed_utc=when, may_disclose_debt=disclose)
    return Decision(
        allowed=False,
        reasons=tuple(refusal for refusal, _ in findings),
        next_allowed_utc=_next_allowed(contact, when, findings),
        may_disclose_debt=disclose,
    )


def call_counter(
    pack: RulePack,
    number: str,
    when_utc: datetime,
    tz: str,
    history: Iterable[ContactAttempt],
    *,
    party: Party = Party.BORROWER,
    restrictions: Restrictions = NO_RESTRICTIONS,
) -> CallCounter:
    """Calls left today and this week to `number`, and when the next call may be made. Today is
    the borrower's local day; the week is as the pack counts it (rolling 7 x 24 hours, or the
    local day and the 6 before it) and counts calls to the person on any of their numbers."""
    contact = _contact(
        pack,
        channel=Channel.CALL,
        party=party,
        tz=tz,
        history=history,
        restrictions=restrictions,
        collectors=0,
        identified=False,
        includes_opt_out=False,
        number=number,
    )
    when = _utc(when_utc, "when_utc")
    calls = [a for a in contact.before(when) if a.channel == Channel.CALL]
    left_today = left_week = None
    if (cap := pack.max_calls_per_day_per_number) is not None:
        today = when.astimezone(contact.zone).date()
        made = sum(1 for a in calls if contact.same_line(a) and a.at.astimezone(contact.zone).date() == today)
        left_today = max(cap - made, 0)
    if (cap := pack.max_calls_per_week) is not None:
        week = _in_week([a for a in calls if contact.same_person(a)], when, pack.week_basis, contact.zone)
        left_week = max(cap - len(week), 0)
    findings = _findings(contact, when)
    return CallCounter(
        attempts_left_today=left_today,
        attempts_left_this_week=left_week,
        next_allowed_utc=_next_allowed(contact, when, findings),
    )


# --- Demands (UK CONC 7.3) ----------------------------------------------------------------------------


@dataclass(frozen=True)
class DemandDecision:
    allowed: bool
    reasons: tuple[Refusal, ...]
    affordable_by_deadline: int | None
    """What the borrower can pay by the deadline, in minor units; None without an affordability figure."""


def check_demand(
    pack: RulePack, *, demand: int, balance: int, deadline_days: int, affordable_monthly: int | None
) -> DemandDecision:
    """Whether asking the borrower for `demand` (minor units) within `deadline_days` is allowed
    under the pack's demand rule (see DemandRule); a pack without one allows any demand. All
    amounts are in the account's currency."""
    problems = pack.validate()
    if problems:
        raise _invalid(" ".join(problems))
    for value, name in ((demand, "demand"), (balance, "balance")):
        if require_int(value, name) < 0:
            raise DomainError("amount_negative", "{name} cannot be negative.", name=name)
    if demand > balance:
        raise DomainError("demand_above_balance", "A demand cannot be for more than the balance.")
    if require_int(deadline_days, "deadline_days") < 0:
        raise DomainError("deadline_past", "A demand cannot fall due in the past.")
    affordable = None
    if affordable_monthly is not None:
        if require_int(affordable_monthly, "affordable_monthly") < 0:
            raise DomainError("amount_negative", "{name} cannot be negative.", name="affordable_monthly")
        affordable = affordable_monthly * max(deadline_days, DAYS_PER_MONTH) // DAYS_PER_MONTH
    rule = pack.demand_rule
    if (
        rule is None
        or affordable is None
        or demand <= affordable
        or demand * BASIS_POINTS < balance * rule.large_share_bp
        or deadline_days >= rule.min_days_for_large
    ):
        return DemandDecision(allowed=True, reasons=(), affordable_by_deadline=affordable)
    refusal = Refusal(
        RefusalCode.UNREASONABLE_DEMAND,
        {
            "demand": demand,
            "balance": balance,
            "deadline_days": deadline_days,
            "affordable_by_deadline": affordable,
            "min_days": rule.min_days_for_large,
        },
    )
    return DemandDecision(allowed=False, reasons=(refusal,), affordable_by_deadline=affordable)
