# ruff: noqa: RUF001  (the Chinese texts use full-width punctuation, as Chinese text does)
"""Sending the messages the daily run asked for: reminders, text messages, e-mails and letters.

``dispatch`` takes the pending message actions whose time has come and asks the contact gate
(``portal.services.contact``) about each one at this moment:

- allowed: the message is written from its template in the borrower's language, recorded in the
  contact history (outcome "sent") and the action marked sent. Text messages and e-mails are
  returned for the caller to hand to the Notifier after the commit (``portal.tasks``); letters
  are laid out together as one PDF (one batch: the run creates a day's letters at once) and kept
  in the document store.
- refused only for a reason time lifts (outside the allowed hours): the action stays pending with
  ``next_allowed_at``, and is not looked at again before then.
- refused for a lasting reason (a request to stop contact, a dispute, an opt-out, a breathing
  space, no address): the action is blocked, with the reason.

What a message may say: a text message never states the amount owed (a phone's lock screen shows
it); an e-mail or a letter may, since it goes to the borrower only. Every text message and e-mail
carries a signed one-click opt-out link for its channel; a letter says where to choose how we
contact, or to ask us to stop.

Templates are data: ``policy.collections.templates[key][language]``, a text with ``{placeholders}``
(``workflows.collections`` validates them); a key the policy lacks falls back to the built-in text
for the action's kind (``DEFAULT_TEMPLATES``). A placeholder the channel may not use (an amount in
a text message) blocks the action as ``template_invalid`` rather than sending it.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from flask import current_app, get_template_attribute, render_template
from flask_babel import force_locale, gettext
from sqlalchemy import or_, select
from sqlalchemy.orm import Session, selectinload

from portal.db import utcnow
from portal.formatting import date as format_date
from portal.formatting import money
from portal.integrations.notify import Message
from portal.integrations.pdf import render_pdf
from portal.integrations.storage import Storage, document_storage_from_config
from portal.models import Account, Borrower, CollectionAction, ContactAttempt
from portal.services import audit
from portal.services import contact as contact_service
from portal.services import policy as policy_service
from portal.services.borrower_contact import opt_out_token
from workflows.contact_policy import TIME_BOUND, Channel, Decision, RefusalCode

log = logging.getLogger("accord.collections")

MESSAGE_KINDS = ("reminder", "sms", "email", "letter")
ELECTRONIC = ("sms", "email")
STALE_AFTER_DAYS = 3
"""A message not sent within this many days of the run that asked for it is cancelled: a
reminder of last week's due date would only confuse."""
BATCH_LIMIT = 2000
"""At most this many actions per call (the job runs every 15 minutes and takes the rest next time)."""
FALLBACK_LANGUAGE = "en"

# Which lasting refusal names a blocked action, when several apply: the borrower's own requests first.
_BLOCK_ORDER = (
    RefusalCode.CEASE_CONTACT,
    RefusalCode.DISPUTE_OPEN,
    RefusalCode.BREATHING_SPACE,
    RefusalCode.OPTED_OUT,
)

# Built-in texts by kind, used only when the policy has no template under the action's key (the
# policy's collections section carries the real ones). Texts shown on a lock screen (SMS) name
# nothing but the creditor; e-mails and letters may state the amount overdue.
DEFAULT_TEMPLATES: Mapping[str, Mapping[str, str]] = {
    "sms": {
        "en": "{creditor}: there is news about your account - please sign in to Accord.",
        "zh_Hans_CN": "{creditor}：您的账户有新的消息，请登录 Accord 查看。",
    },
    "reminder": {
        "en": "{creditor}: a payment falls due soon - please sign in to Accord.",
        "zh_Hans_CN": "{creditor}：您有一笔款项即将到期，请登录 Accord 查看。",
    },
    "email": {
        "en": "Dear {name},\n\n{overdue_amount} is overdue on your account {reference} with {creditor}."
        " Sign in to pay, or to ask for help if you are struggling: {portal_url}\n\nFree, independent"
        " debt advice is also available.",
        "zh_Hans_CN": "{name}，您好：\n\n您在{creditor}的账户 {reference} 已逾期 {overdue_amount}。"
        "登录后您可以还款，如有困难也可以申请帮助：{portal_url}\n\n您也可以获得免费、独立的债务咨询。",
    },
    "letter": {
        "en": "Dear {name},\n\nYour account {reference} with {creditor} is {dpd} days past due;"
        " {overdue_amount} is overdue. Please pay it, or tell us if you cannot: we can agree a plan"
        " you can afford. You can pay or ask for help online: {portal_url}\n\nFree, independent debt"
        " advice is also available.",
        "zh_Hans_CN": "{name}，您好：\n\n您在{creditor}的账户 {reference} 已逾期 {dpd} 天，逾期金额"
        " {overdue_amount}。请您还款；如无法还款，请告诉我们，我们可以商定您负担得起的还款计划。"
        "您可以在网上还款或申请帮助：{portal_url}\n\n您也可以获得免费、独立的债务咨询。",
    },
}
LOCK_SCREEN = ("sms",)
"""Channels a phone's lock screen shows: their texts may name only the creditor (and a link)."""


class TemplateError(Exception):
    """A template that is missing, or names a placeholder its channel may not use."""


@dataclass
class DispatchReport:
    sent: int = 0
    letters: int = 0
    deferred: int = 0
    blocked: int = 0
    cancelled: int = 0
    letter_batch: str | None = None
    """The document-store key of the letters' PDF, when letters went out."""
    blocked_reasons: dict[str, int] = field(default_factory=dict)
    messages: list[Message] = field(default_factory=list)
    """Text messages and e-mails to hand to the Notifier once the transaction is committed."""

    def summary(self) -> str:
        return (
            f"{self.sent} message(s) sent, {self.letters} letter(s) batched, {self.deferred} deferred,"
            f" {self.blocked} blocked, {self.cancelled} cancelled as stale"
        )


@dataclass(frozen=True)
class _Letter:
    action: CollectionAction
    account: Account
    borrower: Borrower
    subject: str
    paragraphs: list[str]
    address_lines: list[str]
    preferences_url: str
    dated: dt.date


def _aware(moment: dt.datetime) -> dt.datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.UTC)


def _public_url() -> str:
    return str(current_app.config.get("PUBLIC_URL") or "").rstrip("/")


def opt_out_url(borrower_id: int, channel: str) -> str:
    token = opt_out_token(str(current_app.config["SECRET_KEY"]), borrower_id, channel)
    return f"{_public_url()}/opt-out/{token}"


def _channel(action: CollectionAction, borrower: Borrower) -> str:
    """The channel a message action goes by: its own, else by its kind; a reminder (or a message
    for the app, which has no transport of its own yet) goes as a text, or an e-mail without a phone."""
    wanted = action.channel or (action.kind if action.kind != "reminder" else None)
    if wanted in ("sms", "email", "letter"):
        return wanted
    return "sms" if borrower.phone else "email"


def _address(channel: str, borrower: Borrower) -> str | None:
    if channel == "sms":
        return borrower.phone or None
    if channel == "email":
        return borrower.email or None
    return borrower.address_line1 or None


def _postal_lines(borrower: Borrower) -> list[str]:
    lines = [borrower.display_name, borrower.address_line1, borrower.address_line2]
    lines.append(" ".join(p for p in (borrower.postal_code, borrower.city, borrower.region) if p))
    return [line for line in lines if line]


def _policy_templates(session: Session, today: dt.date) -> Mapping[str, Any]:
    """The policy's templates, if its collections section has them yet."""
    section = getattr(policy_service.current(session, today), "collections", None)
    templates = getattr(section, "templates", None)
    return templates if isinstance(templates, Mapping) else {}


def _template(templates: Mapping[str, Any], key: str | None, kind: str, language: str) -> str:
    """The text under the action's template key in the borrower's language (else English); the
    built-in text for its kind when the policy has no such template."""
    candidates = [templates.get(key) if key else None, DEFAULT_TEMPLATES.get(kind)]
    for by_language in candidates:
        if isinstance(by_language, Mapping):
            found = by_language.get(language) or by_language.get(FALLBACK_LANGUAGE)
            if isinstance(found, str) and found.strip():
                return found
    raise TemplateError(f"no template {key!r} for {kind}")


class _Values(dict[str, str]):
    def __missing__(self, key: str) -> str:
        raise TemplateError(f"unknown placeholder {{{key}}}")


def _fill(text: str, values: Mapping[str, str]) -> str:
    try:
        return text.format_map(_Values(values))
    except (ValueError, IndexError, AttributeError) as exc:
        raise TemplateError(f"template cannot be filled: {exc}") from None


def _values(account: Account, borrower: Borrower, channel: str) -> dict[str, str]:
    """What a template may say. A lock screen shows a text message to anyone holding the phone:
    it gets the creditor's name and a link, nothing personal and never an amount."""
    values = {
        "creditor": account.creditor.name,
        "portal_url": f"{_public_url()}/accounts/{account.id}",
    }
    if channel in LOCK_SCREEN:
        return values
    due = account.oldest_unpaid_due_on
    return values | {
        "name": borrower.display_name,
        "reference": account.external_reference,
        "dpd": str(account.dpd),
        "oldest_unpaid_due_on": format_date(due) if due else "",
        "overdue_amount": money(account.overdue_amount, account.currency),
        "balance": money(account.total_balance, account.currency),
    }


def _subject(channel: str, account: Account) -> str | None:
    if channel == "sms":
        return None
    return gettext("About your account %(reference)s", reference=account.external_reference)


def _opt_out_line(channel: str, url: str) -> str:
    if channel == "sms":
        return gettext("To stop these text messages: %(url)s", url=url)
    return gettext("To stop these e-mails, open this link: %(url)s", url=url)


def _refusal(decision: Decision) -> tuple[str, dt.datetime | None]:
    """("deferred", when) if only time stands in the way, else ("blocked", None) with the reason."""
    lasting = [r.code for r in decision.reasons if r.code not in TIME_BOUND]
    if not lasting and decision.next_allowed_utc is not None:
        return "deferred", decision.next_allowed_utc
    ranked = sorted(lasting, key=lambda c: _BLOCK_ORDER.index(c) if c in _BLOCK_ORDER else len(_BLOCK_ORDER))
    return (str(ranked[0]) if ranked else "refused"), None


def _pending(session: Session, now: dt.datetime, limit: int) -> list[CollectionAction]:
    return list(
        session.scalars(
            select(CollectionAction)
            .options(
                selectinload(CollectionAction.account).selectinload(Account.borrower),
                selectinload(CollectionAction.account).selectinload(Account.creditor),
            )
            .where(
                CollectionAction.status == "pending",
                CollectionAction.kind.in_(MESSAGE_KINDS),
                or_(CollectionAction.next_allowed_at.is_(None), CollectionAction.next_allowed_at <= now),
            )
            .order_by(CollectionAction.run_date, CollectionAction.priority.desc(), CollectionAction.id)
            .limit(limit)
            .with_for_update(of=CollectionAction, skip_locked=True)
        )
    )


def dispatch(
    session: Session,
    now: dt.datetime | None = None,
    *,
    storage: Storage | None = None,
    limit: int = BATCH_LIMIT,
) -> DispatchReport:
    """Send what may be sent now, defer what must wait, block what must not be sent; commits.
    The text messages and e-mails are in ``report.messages``, for the Notifier after the commit."""
    now = _aware(now or utcnow())
    today = now.date()
    report = DispatchReport()
    templates = _policy_templates(session, today)
    letters: list[_Letter] = []
    for action in _pending(session, now, limit):
        account, borrower = action.account, action.account.borrower
        if action.run_date < today - dt.timedelta(days=STALE_AFTER_DAYS):
            action.status, action.blocked_reason, action.done_at = "cancelled", "stale", now
            report.cancelled += 1
            continue
        channel = _channel(action, borrower)
        address = _address(channel, borrower)
        if address is None:
            _block(action, "no_address", report)
            continue
        decision = contact_service.check(
            session,
            account,
            Channel(channel),
            when=now,
            address=address,
            includes_opt_out=channel in ELECTRONIC,
        )
        if decision.allowed and action.channel == "app":
            # Sent as a text or e-mail for want of an app transport: the borrower's choices about
            # app messages hold as well, so an opt-out of them is not side-stepped.
            decision = contact_service.check(session, account, Channel.APP, when=now)
        if not decision.allowed:
            outcome, when = _refusal(decision)
            if outcome == "deferred":
                action.next_allowed_at = when
                report.deferred += 1
            else:
                _block(action, outcome, report)
            continue
        try:
            with force_locale(borrower.language):
                text = _template(templates, action.template, action.kind, borrower.language)
                body = _fill(text, _values(account, borrower, channel)).strip()
                subject = _subject(channel, account)
                if channel == "letter":
                    letters.append(
                        _Letter(
                            action,
                            account,
                            borrower,
                            subject,
                            [p for p in body.split("\n\n") if p.strip()],
                            _postal_lines(borrower),
                            f"{_public_url()}/contact-preferences",
                            today,
                        )
                    )
                    continue
                url = opt_out_url(borrower.id, channel)
                if url not in body:
                    body = f"{body}\n{_opt_out_line(channel, url)}"
        except TemplateError as exc:
            log.error("collection action %s: %s", action.id, exc)
            _block(action, "template_invalid", report)
            continue
        if (
            _record(
                session, action, account=account, channel=channel, address=address, now=now, report=report
            )
            is not None
        ):
            report.messages.append(
                Message(channel, address, body, f"collection_{action.kind}", subject=subject)
            )
            report.sent += 1
    if letters:
        _send_letters(session, letters, now, storage, report)
    audit.record(
        session,
        audit.SYSTEM,
        "collection_messages.dispatched",
        "collection_run",
        today.isoformat(),
        after={
            "sent": report.sent,
            "letters": report.letters,
            "deferred": report.deferred,
            "blocked": report.blocked,
            "cancelled": report.cancelled,
            "letter_batch": report.letter_batch,
        },
    )
    session.commit()
    return report


def _block(action: CollectionAction, reason: str, report: DispatchReport) -> None:
    action.status, action.blocked_reason, action.next_allowed_at = "blocked", reason[:64], None
    report.blocked += 1
    report.blocked_reasons[reason] = report.blocked_reasons.get(reason, 0) + 1


def _record(
    session: Session,
    action: CollectionAction,
    *,
    account: Account,
    channel: str,
    address: str,
    now: dt.datetime,
    report: DispatchReport,
) -> ContactAttempt | None:
    """The contact history entry and the action marked sent; None (and the action deferred or
    blocked) if the gate refuses after all (it was asked a moment ago, so only a change in between
    does)."""
    try:
        attempt = contact_service.record_attempt(
            session,
            account,
            channel=Channel(channel),
            outcome="sent",
            actor=audit.SYSTEM,
            address=address,
            at=now,
            action_id=action.id,
            includes_opt_out=channel in ELECTRONIC,
        )
    except contact_service.ContactRefusedError as refused:
        outcome, when = _refusal(refused.decision)
        if outcome == "deferred":
            action.next_allowed_at = when
            report.deferred += 1
        else:
            _block(action, outcome, report)
        return None
    action.status, action.done_at, action.next_allowed_at = "sent", now, None
    return attempt


def _send_letters(
    session: Session,
    letters: list[_Letter],
    now: dt.datetime,
    storage: Storage | None,
    report: DispatchReport,
) -> None:
    """One PDF for the batch, a page (or more) per letter, each in its borrower's language. The
    letters are recorded first, so the batch holds exactly the letters the history says were sent."""
    recorded: list[tuple[_Letter, ContactAttempt]] = []
    for letter in letters:
        address = _address("letter", letter.borrower) or ""
        attempt = _record(
            session,
            letter.action,
            account=letter.account,
            channel="letter",
            address=address,
            now=now,
            report=report,
        )
        if attempt is not None:
            recorded.append((letter, attempt))
    if not recorded:
        return
    macro = get_template_attribute("collections/letter.html", "letter")
    parts = []
    for letter, _attempt in recorded:
        with force_locale(letter.borrower.language):
            parts.append(macro(letter))  # a macro's output is already escaped Markup
    html = render_template("collections/letter.html", letters=parts, batch_date=now.date())
    store = storage or document_storage_from_config(current_app.config)
    key = store.put_content(render_pdf(html), suffix="pdf")
    for number, (_letter, attempt) in enumerate(recorded, start=1):
        attempt.notes = f"letter batch {key}, letter {number}"
    report.letters = len(recorded)
    report.letter_batch = key
    audit.record(
        session,
        audit.SYSTEM,
        "collection_letters.batched",
        "document",
        key.partition(".")[0],  # the SHA-256 of the PDF (the key is it plus ".pdf")
        after={"key": key, "actions": [letter.action.id for letter, _ in recorded], "count": len(recorded)},
    )
