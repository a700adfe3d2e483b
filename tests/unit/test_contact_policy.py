from dataclasses import replace
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from workflows.contact_policy import (
    CN,
    PACKS,
    UK_CONC,
    US_REG_F,
    Channel,
    ContactAttempt,
    DemandRule,
    Party,
    RefusalCode,
    Restrictions,
    RulePack,
    WeekBasis,
    Window,
    call_counter,
    check,
    check_demand,
    pack,
)
from workflows.errors import DomainError

SHANGHAI = "Asia/Shanghai"
NEW_YORK = "America/New_York"
LONDON = "Europe/London"
LOS_ANGELES = "America/Los_Angeles"
ZONES = (SHANGHAI, NEW_YORK, LONDON, LOS_ANGELES)
NUMBER = "+86 138 0000 0001"
OTHER_NUMBER = "+86 138 0000 0002"
NONE = Restrictions()


def local(tz: str, *args: int, fold: int = 0) -> datetime:
    """A local wall time in `tz`, as the UTC instant a caller would pass."""
    return datetime(*args, tzinfo=ZoneInfo(tz), fold=fold).astimezone(UTC)  # type: ignore[misc]


def call(
    at: datetime, *, number: str = NUMBER, reached: bool = False, conversation: bool = False
) -> ContactAttempt:
    return ContactAttempt(at, Channel.CALL, Party.BORROWER, number, reached or conversation, conversation)


def codes(decision: object) -> set[str]:
    return {str(r.code) for r in decision.reasons}  # type: ignore[attr-defined]


# --- Windows -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rules", "tz"), [(CN, SHANGHAI), (US_REG_F, NEW_YORK), (US_REG_F, LOS_ANGELES), (UK_CONC, LONDON)]
)
@pytest.mark.parametrize(
    ("hour", "minute", "allowed"),
    [(7, 59, False), (8, 0, True), (12, 0, True), (20, 59, True), (21, 0, False), (3, 0, False)],
)
def test_calls_are_allowed_only_in_local_daytime(
    rules: RulePack, tz: str, hour: int, minute: int, allowed: bool
) -> None:
    decision = check(rules, Channel.CALL, Party.BORROWER, local(tz, 2025, 6, 11, hour, minute), tz, [], NONE)
    assert decision.allowed is allowed
    assert codes(decision) == (set() if allowed else {"outside_hours"})


def test_the_last_second_before_the_window_closes_is_inside() -> None:
    at = local(SHANGHAI, 2025, 6, 11, 20, 59, 59)
    assert check(CN, Channel.CALL, Party.BORROWER, at, SHANGHAI, [], NONE).allowed
    assert not check(CN, Channel.CALL, Party.BORROWER, at + timedelta(seconds=1), SHANGHAI, [], NONE).allowed


def test_the_same_instant_is_judged_by_each_borrowers_own_clock() -> None:
    at = datetime(2025, 6, 11, 13, 0, tzinfo=UTC)  # 21:00 in Shanghai, 09:00 in New York
    assert not check(CN, Channel.CALL, Party.BORROWER, at, SHANGHAI, [], NONE).allowed
    assert check(US_REG_F, Channel.CALL, Party.BORROWER, at, NEW_YORK, [], NONE).allowed


@pytest.mark.parametrize(
    ("hour", "minute", "channel", "allowed"),
    [
        (21, 0, Channel.CALL, True),
        (21, 59, Channel.SMS, True),
        (22, 0, Channel.CALL, False),
        (7, 59, Channel.CALL, False),
        (21, 30, Channel.HOME_VISIT, False),
    ],
)
def test_cn_consent_widens_remote_contact_up_to_22_00_only(
    hour: int, minute: int, channel: Channel, allowed: bool
) -> None:
    consent = Restrictions(consent_extended_hours=True)
    decision = check(
        CN, channel, Party.BORROWER, local(SHANGHAI, 2025, 6, 11, hour, minute), SHANGHAI, [], consent,
        collectors=2, identified=True,
    )  # fmt: skip
    assert decision.allowed is allowed


def test_us_consent_does_not_widen_the_window() -> None:
    consent = Restrictions(consent_extended_hours=True)
    at = local(NEW_YORK, 2025, 6, 11, 21, 30)
    assert not check(US_REG_F, Channel.CALL, Party.BORROWER, at, NEW_YORK, [], consent).allowed


def test_a_letter_may_be_posted_at_any_hour() -> None:
    at = local(SHANGHAI, 2025, 6, 11, 3, 0)
    assert check(CN, Channel.LETTER, Party.BORROWER, at, SHANGHAI, [], NONE).allowed


@pytest.mark.parametrize(
    ("hour", "expected"),
    [
        (6, (2025, 6, 11, 8, 0)),  # later the same morning
        (21, (2025, 6, 12, 8, 0)),  # tomorrow morning
        (23, (2025, 6, 12, 8, 0)),
    ],
)
def test_outside_hours_the_next_allowed_time_is_the_next_window_opening(
    hour: int, expected: tuple[int, ...]
) -> None:
    decision = check(
        CN, Channel.CALL, Party.BORROWER, local(SHANGHAI, 2025, 6, 11, hour, 0), SHANGHAI, [], NONE
    )
    assert decision.next_allowed_utc == local(SHANGHAI, *expected)
    refusal = decision.reasons[0]
    assert refusal.params["local_time"] == f"{hour:02d}:00"
    assert "08:00-21:00" in refusal.message


def test_a_window_opening_inside_the_skipped_hour_opens_when_the_clocks_jump() -> None:
    # New York skipped 02:00-03:00 on 9 March 2025; a window from 02:30 opens at 03:00 EDT.
    night = RulePack(code="NIGHT", windows={c: Window.of("02:30", "04:00") for c in Channel})
    at = local(NEW_YORK, 2025, 3, 9, 1, 0)
    decision = check(night, Channel.CALL, Party.BORROWER, at, NEW_YORK, [], NONE)
    assert decision.next_allowed_utc == datetime(2025, 3, 9, 7, 0, tzinfo=UTC)
    assert check(night, Channel.CALL, Party.BORROWER, decision.next_allowed_utc, NEW_YORK, [], NONE).allowed


def test_the_repeated_hour_when_clocks_go_back_is_judged_each_time_by_the_clock() -> None:
    # New York repeated 01:00-02:00 on 2 November 2025; a window 00:30-01:45 is entered twice.
    night = RulePack(code="NIGHT", windows={c: Window.of("00:30", "01:45") for c in Channel})
    first_pass = local(NEW_YORK, 2025, 11, 2, 1, 30, fold=0)
    second_pass = local(NEW_YORK, 2025, 11, 2, 1, 30, fold=1)
    assert second_pass - first_pass == timedelta(hours=1)
    for at in (first_pass, second_pass):
        assert check(night, Channel.CALL, Party.BORROWER, at, NEW_YORK, [], NONE).allowed
    gap = local(NEW_YORK, 2025, 11, 2, 1, 50, fold=0)
    decision = check(night, Channel.CALL, Party.BORROWER, gap, NEW_YORK, [], NONE)
    assert not decision.allowed
    # The clock falls back to 01:00 EST, inside the window again.
    assert decision.next_allowed_utc == datetime(2025, 11, 2, 6, 0, tzinfo=UTC)


def test_london_daytime_follows_summer_time() -> None:
    # 07:30 UTC is 08:30 in June (BST) but 07:30 in December (GMT).
    assert check(
        UK_CONC, Channel.CALL, Party.BORROWER, datetime(2025, 6, 11, 7, 30, tzinfo=UTC), LONDON, []
    ).allowed
    assert not check(
        UK_CONC, Channel.CALL, Party.BORROWER, datetime(2025, 12, 11, 7, 30, tzinfo=UTC), LONDON, []
    ).allowed


# --- CN: six calls a day per number ----------------------------------------------------------------


def _calls_today(count: int, *, number: str = NUMBER) -> list[ContactAttempt]:
    return [
        call(local(SHANGHAI, 2025, 6, 11, 9, 0) + timedelta(minutes=10 * i), number=number)
        for i in range(count)
    ]


@pytest.mark.parametrize(("made", "allowed"), [(0, True), (5, True), (6, False), (9, False)])
def test_cn_allows_six_call_attempts_a_day_per_number(made: int, allowed: bool) -> None:
    at = local(SHANGHAI, 2025, 6, 11, 15, 0)
    decision = check(
        CN, Channel.CALL, Party.BORROWER, at, SHANGHAI, _calls_today(made), NONE, number_or_address=NUMBER
    )
    assert decision.allowed is allowed
    if not allowed:
        assert codes(decision) == {"daily_call_cap"}
        assert decision.next_allowed_utc == local(SHANGHAI, 2025, 6, 12, 8, 0)


def test_cn_daily_cap_is_per_number_and_per_local_day() -> None:
    at = local(SHANGHAI, 2025, 6, 11, 15, 0)
    other = check(
        CN, Channel.CALL, Party.BORROWER, at, SHANGHAI, _calls_today(6), NONE, number_or_address=OTHER_NUMBER
    )
    assert other.allowed
    # "Today" is the borrower's day: six calls at 01:00 local count (UTC still says yesterday),
    # six at 23:00 local yesterday do not.
    early = [call(local(SHANGHAI, 2025, 6, 11, 1, 0) + timedelta(minutes=i)) for i in range(6)]
    late = [call(local(SHANGHAI, 2025, 6, 10, 23, 0) + timedelta(minutes=i)) for i in range(6)]
    assert not check(CN, Channel.CALL, Party.BORROWER, at, SHANGHAI, early, number_or_address=NUMBER).allowed
    assert check(CN, Channel.CALL, Party.BORROWER, at, SHANGHAI, late, number_or_address=NUMBER).allowed
    # Without a number, every call to the borrower counts.
    assert not check(
        CN, Channel.CALL, Party.BORROWER, at, SHANGHAI, _calls_today(6, number=OTHER_NUMBER)
    ).allowed


def test_the_cap_only_counts_calls() -> None:
    texts = [
        ContactAttempt(local(SHANGHAI, 2025, 6, 11, 9, i), Channel.SMS, Party.BORROWER, NUMBER, False)
        for i in range(10)
    ]
    assert check(
        CN, Channel.CALL, Party.BORROWER, local(SHANGHAI, 2025, 6, 11, 15, 0), SHANGHAI, texts
    ).allowed


def test_the_attempt_being_judged_may_already_be_in_the_history() -> None:
    at = local(SHANGHAI, 2025, 6, 11, 15, 0)
    history = [*_calls_today(5), call(at)]
    assert check(CN, Channel.CALL, Party.BORROWER, at, SHANGHAI, history, number_or_address=NUMBER).allowed


# --- US Regulation F: seven calls in seven days, a week's pause after a conversation ---------------


NOW_NY = local(NEW_YORK, 2025, 6, 11, 12, 0)


@pytest.mark.parametrize(("made", "allowed"), [(6, True), (7, False)])
def test_us_allows_seven_calls_in_seven_days(made: int, allowed: bool) -> None:
    history = [call(NOW_NY - timedelta(days=7) + timedelta(hours=1) + timedelta(days=i)) for i in range(made)]
    decision = check(US_REG_F, Channel.CALL, Party.BORROWER, NOW_NY, NEW_YORK, history, NONE)
    assert decision.allowed is allowed
    if not allowed:
        assert codes(decision) == {"weekly_call_cap"}
        # The oldest call leaves the 7 x 24 hours an hour from now.
        assert decision.next_allowed_utc == NOW_NY + timedelta(hours=1)


def test_us_weekly_cap_counts_every_number_of_the_borrower() -> None:
    history = [call(NOW_NY - timedelta(days=i + 1), number=(NUMBER, OTHER_NUMBER)[i % 2]) for i in range(6)]
    history.append(call(NOW_NY - timedelta(hours=3), number=OTHER_NUMBER))
    assert not check(
        US_REG_F, Channel.CALL, Party.BORROWER, NOW_NY, NEW_YORK, history, number_or_address=NUMBER
    ).allowed


def test_a_call_exactly_seven_days_ago_has_left_the_week() -> None:
    history = [call(NOW_NY - timedelta(days=7))] + [call(NOW_NY - timedelta(days=i + 1)) for i in range(6)]
    assert check(US_REG_F, Channel.CALL, Party.BORROWER, NOW_NY, NEW_YORK, history).allowed


@pytest.mark.parametrize(
    ("ago", "allowed"),
    [
        (timedelta(days=6), False),
        (timedelta(days=7) - timedelta(seconds=1), False),
        (timedelta(days=7), True),
    ],
)
def test_us_no_call_within_seven_days_after_a_conversation(ago: timedelta, allowed: bool) -> None:
    history = [call(NOW_NY - ago, conversation=True)]
    decision = check(US_REG_F, Channel.CALL, Party.BORROWER, NOW_NY, NEW_YORK, history)
    assert decision.allowed is allowed
    if not allowed:
        assert codes(decision) == {"after_conversation"}
        assert decision.next_allowed_utc == NOW_NY - ago + timedelta(days=7)


def test_a_conversation_does_not_stop_messages_and_an_unanswered_call_does_not_pause() -> None:
    talked = [call(NOW_NY - timedelta(days=1), conversation=True)]
    assert check(
        US_REG_F, Channel.EMAIL, Party.BORROWER, NOW_NY, NEW_YORK, talked, includes_opt_out=True
    ).allowed
    assert check(
        US_REG_F, Channel.CALL, Party.BORROWER, NOW_NY, NEW_YORK, [call(NOW_NY - timedelta(days=1))]
    ).allowed


def test_the_pause_moves_the_next_call_into_the_window() -> None:
    # Talked at 22:00 a week ago yesterday: the pause ends at 22:00 today, after the window closed.
    late = local(NEW_YORK, 2025, 6, 4, 22, 0)
    decision = check(
        US_REG_F, Channel.CALL, Party.BORROWER, NOW_NY, NEW_YORK, [call(late, conversation=True)]
    )
    assert decision.next_allowed_utc == local(NEW_YORK, 2025, 6, 12, 8, 0)


@pytest.mark.parametrize(("channel", "with_opt_out", "allowed"), [
    (Channel.SMS, False, False), (Channel.SMS, True, True), (Channel.EMAIL, False, False),
    (Channel.EMAIL, True, True), (Channel.CALL, False, True), (Channel.APP, False, True),
])  # fmt: skip
def test_us_every_email_and_sms_carries_an_opt_out(
    channel: Channel, with_opt_out: bool, allowed: bool
) -> None:
    decision = check(US_REG_F, channel, Party.BORROWER, NOW_NY, NEW_YORK, [], includes_opt_out=with_opt_out)
    assert decision.allowed is allowed
    if not allowed:
        assert codes(decision) == {"missing_opt_out"}
        assert decision.next_allowed_utc is None


def test_cn_does_not_require_an_opt_out_text() -> None:
    assert check(CN, Channel.SMS, Party.BORROWER, local(SHANGHAI, 2025, 6, 11, 10, 0), SHANGHAI, []).allowed


# --- CN: third parties and home visits --------------------------------------------------------------


NOW_CN = local(SHANGHAI, 2025, 6, 11, 10, 0)


def _unreached(count: int) -> list[ContactAttempt]:
    return [call(NOW_CN - timedelta(days=count - i)) for i in range(count)]


@pytest.mark.parametrize(("failed", "allowed"), [(0, False), (2, False), (3, True), (5, True)])
def test_cn_third_parties_only_after_three_failed_attempts_in_a_row(failed: int, allowed: bool) -> None:
    decision = check(CN, Channel.CALL, Party.RELATED_THIRD_PARTY, NOW_CN, SHANGHAI, _unreached(failed))
    assert decision.allowed is allowed
    assert decision.may_disclose_debt is False
    if not allowed:
        assert codes(decision) == {"third_party_too_early"}
        assert decision.reasons[0].params == {"required": 3, "in_a_row": failed}
        assert decision.next_allowed_utc is None


def test_reaching_the_borrower_restarts_the_count() -> None:
    history = [
        *_unreached(3),
        call(NOW_CN - timedelta(hours=2), reached=True),
        call(NOW_CN - timedelta(hours=1)),
    ]
    decision = check(CN, Channel.CALL, Party.RELATED_THIRD_PARTY, NOW_CN, SHANGHAI, history)
    assert decision.reasons[0].params["in_a_row"] == 1


def test_delivered_texts_do_not_count_as_failing_to_reach_the_borrower() -> None:
    texts = [
        ContactAttempt(NOW_CN - timedelta(hours=i + 1), Channel.SMS, Party.BORROWER, NUMBER, False)
        for i in range(5)
    ]
    assert not check(CN, Channel.CALL, Party.RELATED_THIRD_PARTY, NOW_CN, SHANGHAI, texts).allowed


def test_cn_never_contacts_unrelated_third_parties_and_nobody_tells_a_third_party_about_the_debt() -> None:
    decision = check(CN, Channel.CALL, Party.UNRELATED_THIRD_PARTY, NOW_CN, SHANGHAI, _unreached(5))
    assert codes(decision) == {"party_not_allowed"}
    for rules, tz, at in ((US_REG_F, NEW_YORK, NOW_NY), (UK_CONC, LONDON, local(LONDON, 2025, 6, 11, 10, 0))):
        for party in (Party.RELATED_THIRD_PARTY, Party.UNRELATED_THIRD_PARTY):
            decision = check(rules, Channel.CALL, party, at, tz, [])
            assert decision.allowed
            assert decision.may_disclose_debt is False
        assert check(rules, Channel.CALL, Party.BORROWER, at, tz, []).may_disclose_debt


@pytest.mark.parametrize(
    ("collectors", "identified", "expected"),
    [
        (0, True, {"home_visit_needs_two"}),
        (1, True, {"home_visit_needs_two"}),
        (2, True, set()),
        (3, True, set()),
        (2, False, {"collectors_not_identified"}),
        (1, False, {"home_visit_needs_two", "collectors_not_identified"}),
    ],
)
def test_cn_home_visits_need_two_collectors_who_identify_themselves(
    collectors: int, identified: bool, expected: set[str]
) -> None:
    decision = check(
        CN,
        Channel.HOME_VISIT,
        Party.BORROWER,
        NOW_CN,
        SHANGHAI,
        [],
        collectors=collectors,
        identified=identified,
    )
    assert codes(decision) == expected
    assert decision.allowed is (not expected)


# --- Restrictions -------------------------------------------------------------------------------------


@pytest.mark.parametrize("restriction", [Restrictions(cease_contact=True), Restrictions(dispute_open=True)])
@pytest.mark.parametrize("rules", list(PACKS.values()))
def test_cease_contact_and_an_open_dispute_stop_every_channel_and_party(
    rules: RulePack, restriction: Restrictions
) -> None:
    at = datetime(2025, 6, 11, 4, 0, tzinfo=UTC)  # noon in Shanghai
    for channel in Channel:
        for party in Party:
            decision = check(
                rules, channel, party, at, SHANGHAI, _unreached(5), restriction,
                collectors=2, identified=True, includes_opt_out=True,
            )  # fmt: skip
            assert not decision.allowed
            assert {"cease_contact", "dispute_open"} & codes(decision)
            assert decision.next_allowed_utc is None


def test_an_opt_out_stops_that_channel_only_for_everyone() -> None:
    opted = Restrictions(opted_out_channels=frozenset({Channel.SMS}))
    decision = check(CN, Channel.SMS, Party.BORROWER, NOW_CN, SHANGHAI, [], opted)
    assert codes(decision) == {"opted_out"}
    assert decision.next_allowed_utc is None
    assert not check(
        CN, Channel.SMS, Party.RELATED_THIRD_PARTY, NOW_CN, SHANGHAI, _unreached(3), opted
    ).allowed
    for channel in (Channel.CALL, Channel.EMAIL, Channel.APP, Channel.LETTER):
        assert check(CN, channel, Party.BORROWER, NOW_CN, SHANGHAI, [], opted).allowed


def test_every_broken_rule_is_listed_and_a_standing_one_means_no_next_time() -> None:
    opted = Restrictions(opted_out_channels=frozenset({Channel.CALL}))
    decision = check(
        CN,
        Channel.CALL,
        Party.BORROWER,
        local(SHANGHAI, 2025, 6, 11, 23, 0),
        SHANGHAI,
        _calls_today(6),
        opted,
    )
    assert codes(decision) == {"opted_out", "outside_hours", "daily_call_cap"}
    assert decision.next_allowed_utc is None
    assert all(r.message for r in decision.reasons)


# --- The collector's counter ---------------------------------------------------------------------------


def test_cn_counter_shows_calls_left_today_for_the_number() -> None:
    counter = call_counter(CN, NUMBER, local(SHANGHAI, 2025, 6, 11, 15, 0), SHANGHAI, _calls_today(4))
    assert counter.attempts_left_today == 2
    assert counter.attempts_left_this_week is None
    assert counter.next_allowed_utc == local(SHANGHAI, 2025, 6, 11, 15, 0)
    spent = call_counter(CN, NUMBER, local(SHANGHAI, 2025, 6, 11, 15, 0), SHANGHAI, _calls_today(8))
    assert spent.attempts_left_today == 0
    assert spent.next_allowed_utc == local(SHANGHAI, 2025, 6, 12, 8, 0)


def test_us_counter_shows_calls_left_this_week() -> None:
    history = [call(NOW_NY - timedelta(days=i + 1), number=OTHER_NUMBER) for i in range(3)]
    counter = call_counter(US_REG_F, NUMBER, NOW_NY, NEW_YORK, history)
    assert (counter.attempts_left_today, counter.attempts_left_this_week) == (None, 4)
    talked = call_counter(
        US_REG_F, NUMBER, NOW_NY, NEW_YORK, [call(NOW_NY - timedelta(days=2), conversation=True)]
    )
    assert talked.attempts_left_this_week == 6
    assert talked.next_allowed_utc == NOW_NY + timedelta(days=5)


def test_a_week_of_local_calendar_days_when_the_pack_says_so() -> None:
    days = replace(US_REG_F, code="US_DAYS", week_basis=WeekBasis.LOCAL_DAYS, pause_days_after_conversation=0)
    # Seven calls, the oldest at 09:00 local six days ago: on the local-days reading it still counts
    # until local midnight; on the rolling reading it left at 09:00 today.
    history = [call(local(NEW_YORK, 2025, 6, 5 + i, 9, 0)) for i in range(7)]
    at = local(NEW_YORK, 2025, 6, 11, 10, 0)
    assert not check(days, Channel.CALL, Party.BORROWER, at, NEW_YORK, history).allowed
    decision = check(days, Channel.CALL, Party.BORROWER, at, NEW_YORK, history)
    assert decision.next_allowed_utc == local(NEW_YORK, 2025, 6, 12, 8, 0)
    assert call_counter(days, NUMBER, at, NEW_YORK, history).attempts_left_this_week == 0
    rolling = check(US_REG_F, Channel.CALL, Party.BORROWER, at + timedelta(days=1), NEW_YORK, history)
    assert rolling.allowed


# --- UK CONC 7.3: demands -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("demand", "days", "affordable", "allowed"),
    [
        (100_000, 7, 20_000, False),  # the whole balance in a week, affordable 200 a month
        (100_000, 29, 20_000, False),
        (100_000, 30, 20_000, True),  # a month or more is not an unreasonably short time
        (50_000, 14, 20_000, False),  # half the balance is large
        (49_999, 14, 20_000, True),  # under half is not
        (20_000, 7, 20_000, True),  # what they can afford this month
        (100_000, 7, 100_000, True),  # affordable
        (100_000, 7, None, True),  # nothing says it is unaffordable
        (100_000, 0, 20_000, False),
    ],
)
def test_uk_no_pressure_to_pay_large_amounts_in_short_times(
    demand: int, days: int, affordable: int | None, allowed: bool
) -> None:
    decision = check_demand(
        UK_CONC, demand=demand, balance=100_000, deadline_days=days, affordable_monthly=affordable
    )
    assert decision.allowed is allowed
    if not allowed:
        assert codes(decision) == {"unreasonable_demand"}
        assert decision.reasons[0].params["affordable_by_deadline"] == affordable
        assert "30 days" in decision.reasons[0].message


def test_affordability_grows_with_the_months_until_the_deadline() -> None:
    rules = replace(UK_CONC, demand_rule=DemandRule(large_share_bp=5000, min_days_for_large=90))
    assert check_demand(
        rules, demand=60_000, balance=100_000, deadline_days=60, affordable_monthly=30_000
    ).allowed
    refused = check_demand(rules, demand=60_001, balance=100_000, deadline_days=60, affordable_monthly=30_000)
    assert not refused.allowed
    assert refused.affordable_by_deadline == 60_000


def test_packs_without_a_demand_rule_allow_any_demand() -> None:
    assert check_demand(CN, demand=100, balance=100, deadline_days=0, affordable_monthly=0).allowed


@pytest.mark.parametrize(
    ("demand", "balance", "days", "affordable"),
    [(-1, 100, 7, None), (101, 100, 7, None), (10, 100, -1, None), (10, 100, 7, -5), (1.5, 100, 7, None)],
)
def test_nonsense_demands_are_refused(demand: int, balance: int, days: int, affordable: int | None) -> None:
    with pytest.raises(DomainError):
        check_demand(
            UK_CONC, demand=demand, balance=balance, deadline_days=days, affordable_monthly=affordable
        )


# --- Packs as data ----------------------------------------------------------------------------------


@pytest.mark.parametrize("code", ["CN", "US_REG_F", "UK_CONC"])
def test_built_in_packs_are_valid_and_survive_storage(code: str) -> None:
    rules = pack(code)
    assert rules.validate() == []
    assert RulePack.from_dict(rules.to_dict()) == rules
    assert hash(RulePack.from_dict(rules.to_dict())) == hash(rules)


def test_stored_hours_read_as_written() -> None:
    stored = CN.to_dict()
    assert stored["windows"]["call"] == {"start": "08:00", "end": "21:00"}  # type: ignore[index]
    assert stored["consent_windows"]["sms"] == {"start": "08:00", "end": "22:00"}  # type: ignore[index]
    assert stored["max_calls_per_day_per_number"] == 6


def test_an_unknown_pack_is_refused() -> None:
    with pytest.raises(DomainError) as caught:
        pack("XX")
    assert caught.value.code == "contact_pack_unknown"


def _broken(change: dict[str, object]) -> dict[str, object]:
    data = CN.to_dict()
    data.update(change)
    return data


WINDOWS = {str(c): {"start": "08:00", "end": "21:00"} for c in Channel}


@pytest.mark.parametrize(
    "data",
    [
        _broken({"windows": {**WINDOWS, "call": {"start": "21:00", "end": "08:00"}}}),  # wraps midnight
        _broken({"windows": {**WINDOWS, "call": {"start": "8:00", "end": "21:00"}}}),
        _broken({"windows": {**WINDOWS, "call": {"start": "08:00", "end": "24:30"}}}),
        _broken({"windows": {k: v for k, v in WINDOWS.items() if k != "sms"}}),  # a channel without hours
        _broken({"windows": {**WINDOWS, "fax": {"start": "08:00", "end": "21:00"}}}),
        _broken({"consent_windows": {"call": {"start": "09:00", "end": "22:00"}}}),  # narrows
        _broken({"max_calls_per_day_per_number": 0}),
        _broken({"max_calls_per_week": True}),
        _broken({"week_basis": "fortnightly"}),
        _broken({"pause_days_after_conversation": -1}),
        _broken({"allowed_parties": ["related_third_party"]}),
        _broken({"allowed_parties": ["borrower", "stranger"]}),
        _broken({"opt_out_required": ["pigeon"]}),
        _broken({"home_visit_min_collectors": 0}),
        _broken({"demand_rule": {"large_share_bp": 0, "min_days_for_large": 30}}),
        _broken({"demand_rule": {"share": 1}}),
        _broken({"code": "cn lower"}),
        _broken({"surprise": 1}),
        {"code": "X"},
    ],
)
def test_a_pack_that_makes_no_sense_is_refused(data: dict[str, object]) -> None:
    with pytest.raises(DomainError) as caught:
        RulePack.from_dict(data)
    assert caught.value.code == "policy_invalid"


@pytest.mark.parametrize(
    ("when", "tz", "code"),
    [
        (datetime(2025, 6, 11, 12, 0), SHANGHAI, "time_not_aware"),
        (datetime(2025, 6, 11, 12, 0, tzinfo=UTC), "Mars/Olympus", "time_zone_unknown"),
        (datetime(2025, 6, 11, 12, 0, tzinfo=UTC), "", "time_zone_unknown"),
        (datetime(2025, 6, 11, 12, 0, tzinfo=UTC), "../etc/passwd", "time_zone_unknown"),
    ],
)
def test_bad_times_and_zones_are_refused(when: datetime, tz: str, code: str) -> None:
    with pytest.raises(DomainError) as caught:
        check(CN, Channel.CALL, Party.BORROWER, when, tz, [])
    assert caught.value.code == code


def test_bad_history_and_inputs_are_refused() -> None:
    naive = ContactAttempt(datetime(2025, 6, 11, 1, 0), Channel.CALL, Party.BORROWER, NUMBER, False)
    talked_unreached = ContactAttempt(
        NOW_CN - timedelta(hours=1), Channel.CALL, Party.BORROWER, NUMBER, False, True
    )
    for history, code in (([naive], "time_not_aware"), ([talked_unreached], "attempt_inconsistent")):
        with pytest.raises(DomainError) as caught:
            check(CN, Channel.CALL, Party.BORROWER, NOW_CN, SHANGHAI, history)
        assert caught.value.code == code
    with pytest.raises(DomainError):
        check(CN, "fax", Party.BORROWER, NOW_CN, SHANGHAI, [])  # type: ignore[arg-type]
    with pytest.raises(DomainError):
        check(CN, Channel.HOME_VISIT, Party.BORROWER, NOW_CN, SHANGHAI, [], collectors=-1)


def test_history_in_any_time_zone_is_read_as_the_instant_it_is() -> None:
    at = local(SHANGHAI, 2025, 6, 11, 15, 0)
    shanghai_times = [replace(a, at=a.at.astimezone(ZoneInfo(SHANGHAI))) for a in _calls_today(6)]
    assert not check(
        CN, Channel.CALL, Party.BORROWER, at.astimezone(ZoneInfo(NEW_YORK)), SHANGHAI, shanghai_times
    ).allowed


# --- Properties across time zones and daylight saving ------------------------------------------------------

TRANSITIONS = (
    datetime(2025, 3, 9, 7, 0, tzinfo=UTC),  # New York forward
    datetime(2025, 11, 2, 6, 0, tzinfo=UTC),  # New York back
    datetime(2025, 3, 9, 10, 0, tzinfo=UTC),  # Los Angeles forward
    datetime(2025, 11, 2, 9, 0, tzinfo=UTC),  # Los Angeles back
    datetime(2025, 3, 30, 1, 0, tzinfo=UTC),  # London forward
    datetime(2025, 10, 26, 1, 0, tzinfo=UTC),  # London back
)

instants = st.one_of(
    st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2030, 12, 31), timezones=st.just(UTC)),
    st.builds(
        lambda t, s: t + timedelta(seconds=s),
        st.sampled_from(TRANSITIONS),
        st.integers(min_value=-3 * 86400, max_value=3 * 86400),
    ),
)


@st.composite
def windows(draw: st.DrawFn) -> Window:
    start = draw(st.integers(min_value=0, max_value=24 * 60 - 1))
    return Window(start, draw(st.integers(min_value=start + 1, max_value=24 * 60)))


@st.composite
def rule_packs(draw: st.DrawFn) -> RulePack:
    """The built-in packs, and made-up ones with odd hours (including the hours clocks skip and repeat)."""
    if draw(st.booleans()):
        return draw(st.sampled_from(list(PACKS.values())))
    hours = {c: draw(windows()) for c in Channel}
    consent = {c: Window(max(0, w.start - 60), min(24 * 60, w.end + 60)) for c, w in hours.items()}
    return RulePack(
        code="MADE_UP",
        windows=hours,
        consent_windows=draw(st.sampled_from([{}, consent])),
        max_calls_per_day_per_number=draw(st.none() | st.integers(min_value=1, max_value=6)),
        max_calls_per_week=draw(st.none() | st.integers(min_value=1, max_value=8)),
        week_basis=draw(st.sampled_from(list(WeekBasis))),
        pause_days_after_conversation=draw(st.integers(min_value=0, max_value=8)),
        third_party_after_unreachable=draw(st.integers(min_value=0, max_value=4)),
    )


@st.composite
def attempts(draw: st.DrawFn, around: datetime) -> ContactAttempt:
    reached = draw(st.booleans())
    return ContactAttempt(
        at=around + timedelta(seconds=draw(st.integers(min_value=-10 * 86400, max_value=86400))),
        channel=draw(
            st.sampled_from([Channel.CALL, Channel.CALL, Channel.CALL, Channel.SMS, Channel.HOME_VISIT])
        ),
        party=draw(st.sampled_from([Party.BORROWER, Party.BORROWER, Party.RELATED_THIRD_PARTY])),
        number_or_address=draw(st.sampled_from([NUMBER, OTHER_NUMBER])),
        reached=reached,
        conversation=reached and draw(st.booleans()),
    )


@st.composite
def scenarios(draw: st.DrawFn) -> dict[str, object]:
    when = draw(instants)
    return {
        "pack": draw(rule_packs()),
        "channel": draw(st.sampled_from(list(Channel))),
        "party": draw(st.sampled_from(list(Party))),
        "when_utc": when,
        "tz": draw(st.sampled_from(ZONES)),
        "history": draw(st.lists(attempts(when), max_size=25)),
        "restrictions": Restrictions(
            opted_out_channels=draw(st.sampled_from([frozenset(), frozenset({Channel.SMS})])),
            consent_extended_hours=draw(st.booleans()),
        ),
        "collectors": draw(st.integers(min_value=0, max_value=3)),
        "identified": draw(st.booleans()),
        "includes_opt_out": draw(st.booleans()),
        "number_or_address": draw(st.sampled_from([None, NUMBER])),
    }


def _check(scenario: dict[str, object], **changes: object) -> object:
    return check(**{**scenario, **changes})  # type: ignore[arg-type]


@settings(max_examples=300, deadline=None)
@given(scenarios())
def test_an_allowed_contact_is_always_inside_the_local_window(scenario: dict[str, object]) -> None:
    decision = _check(scenario)
    if decision.allowed:  # type: ignore[attr-defined]
        rules: RulePack = scenario["pack"]  # type: ignore[assignment]
        restrictions: Restrictions = scenario["restrictions"]  # type: ignore[assignment]
        window = rules.window(scenario["channel"], consent=restrictions.consent_extended_hours)  # type: ignore[arg-type]
        wall = scenario["when_utc"].astimezone(ZoneInfo(scenario["tz"]))  # type: ignore[attr-defined]
        minute = wall.hour * 60 + wall.minute
        assert window.start <= minute < window.end


@settings(max_examples=300, deadline=None)
@given(scenarios())
def test_the_next_allowed_time_is_allowed_and_nothing_earlier_is(scenario: dict[str, object]) -> None:
    decision = _check(scenario)
    when: datetime = scenario["when_utc"]  # type: ignore[assignment]
    following = decision.next_allowed_utc  # type: ignore[attr-defined]
    if decision.allowed:  # type: ignore[attr-defined]
        assert following == when
        return
    time_bound = {"outside_hours", "daily_call_cap", "weekly_call_cap", "after_conversation"}
    if codes(decision) - time_bound:
        assert following is None
    elif all(a.at < when for a in scenario["history"]):  # type: ignore[attr-defined]
        # Only a later attempt already in the history (closing third-party contact) can make
        # waiting useless.
        assert following is not None
    if following is None:
        return
    assert following > when
    assert _check(scenario, when_utc=following).allowed  # type: ignore[attr-defined]
    just_before = following - timedelta(seconds=1)
    if just_before >= when:
        assert not _check(scenario, when_utc=just_before).allowed  # type: ignore[attr-defined]


@settings(max_examples=300, deadline=None)
@given(scenarios(), st.data())
def test_more_history_never_allows_what_was_refused(scenario: dict[str, object], data: st.DataObject) -> None:
    more = data.draw(st.lists(attempts(scenario["when_utc"]), min_size=1, max_size=10))  # type: ignore[arg-type]
    before = codes(_check(scenario))
    after = codes(_check(scenario, history=[*scenario["history"], *more]))  # type: ignore[misc]
    # A failed attempt to reach the borrower is what opens third-party contact; every other
    # refusal only grows with history.
    assert before - {"third_party_too_early"} <= after
    if scenario["party"] == Party.BORROWER:
        assert before <= after


@settings(max_examples=300, deadline=None)
@given(scenarios())
def test_the_counter_never_goes_negative_and_agrees_with_the_check(scenario: dict[str, object]) -> None:
    rules: RulePack = scenario["pack"]  # type: ignore[assignment]
    number = scenario["number_or_address"] or NUMBER
    counter = call_counter(
        rules, number, scenario["when_utc"], scenario["tz"], scenario["history"],  # type: ignore[arg-type]
        restrictions=scenario["restrictions"],  # type: ignore[arg-type]
    )  # fmt: skip
    for left, cap in (
        (counter.attempts_left_today, rules.max_calls_per_day_per_number),
        (counter.attempts_left_this_week, rules.max_calls_per_week),
    ):
        assert (left is None) == (cap is None)
        if left is not None and cap is not None:
            assert 0 <= left <= cap
    decision = _check(scenario, channel=Channel.CALL, party=Party.BORROWER, number_or_address=number)
    assert counter.next_allowed_utc == decision.next_allowed_utc  # type: ignore[attr-defined]
    if counter.attempts_left_today == 0:
        assert "daily_call_cap" in codes(decision)
    if counter.attempts_left_this_week == 0:
        assert "weekly_call_cap" in codes(decision)


@given(st.sampled_from(ZONES), instants)
def test_cease_contact_is_never_lifted_by_waiting(tz: str, when: datetime) -> None:
    for rules in PACKS.values():
        decision = check(
            rules, Channel.LETTER, Party.BORROWER, when, tz, [], Restrictions(cease_contact=True)
        )
        assert not decision.allowed
        assert decision.next_allowed_utc is None


def test_refusal_codes_are_the_documented_ones() -> None:
    assert {str(c) for c in RefusalCode} >= {
        "outside_hours", "daily_call_cap", "weekly_call_cap", "after_conversation", "third_party_too_early",
        "opted_out", "cease_contact", "dispute_open", "home_visit_needs_two", "missing_opt_out",
    }  # fmt: skip
