"""Friendly error pages, and domain errors turned into sentences in the user's language."""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, g, render_template
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l
from flask_wtf.csrf import CSRFError
from werkzeug.exceptions import HTTPException

from workflows.errors import DomainError

log = logging.getLogger("accord")

# One translated sentence per DomainError code a user can cause.
MESSAGES = {
    "email_invalid": _l("Enter a valid e-mail address."),
    "email_taken": _l("A staff user with this e-mail already exists."),
    "name_invalid": _l("Enter a name of 1 to 200 characters."),
    "role_invalid": _l("Choose one of the listed roles."),
    "password_length": _l("The password must have %(min)s to %(max)s characters."),
    "cannot_disable_self": _l("You cannot disable your own account."),
    "query_too_long": _l("Search for at most %(max)s characters."),
    "not_allowed": _l("Your role may not do this."),
    "amount_invalid": _l("Enter an amount such as 1234.50."),
    "amount_too_precise": _l("The amount has too many decimal places."),
    "amount_negative": _l("The amount cannot be negative."),
    "rate_invalid": _l("Enter a rate such as 5.25 (percent a year)."),
    "identifier_invalid": _l("Enter your account reference or mobile number."),
    "signin_expired": _l("That sign-in has expired. Please start again."),
    "resend_wait": _l("Please wait %(minutes)s minutes before asking for another code."),
    "code_format": _l("Enter the 6 digits of the code we sent."),
    "code_wrong": _l("That code is not right. Check it and try again."),
    "code_too_many_tries": _l("Too many wrong codes. Ask for a new code."),
    "code_expired": _l("This code has expired. Ask for a new code."),
    "code_used": _l("This code has already been used. Ask for a new code."),
    # Hardship: the statement
    "amount_too_large": _l("That amount is too large to be right. Check it and try again."),
    "amount_not_integer": _l("Enter an amount such as 1234.50."),
    "household_invalid": _l("Enter a number from %(minimum)s to %(maximum)s."),
    "budget_category_unknown": _l("This line is not part of the form. Reload the page and try again."),
    "category_unknown": _l("This line is not part of the form. Reload the page and try again."),
    "frequency_unknown": _l("Choose how often."),
    "explanation_too_long": _l("Please keep the explanation under %(maximum)s characters."),
    "explanation_missing": _l("Please explain the figures marked above the usual amount."),
    "steps_missing": _l("Please complete every step before sending."),
    "currency_not_supported": _l("We cannot assess a request in this currency online. Please call us."),
    "case_not_editable": _l("This request has been sent and can no longer be changed."),
    "case_unknown": _l("This request was not found."),
    "account_unknown": _l("This account was not found."),
    "transition_not_allowed": _l("This cannot be done at this stage of your request."),
    "actor_not_allowed": _l("This cannot be done at this stage of your request."),
    "case_closed": _l("This request is closed. You can start a new one from “What I owe”."),
    # Hardship: offers and proposals
    "offer_unknown": _l("This offer was not found."),
    "offer_not_open": _l("This offer is no longer open."),
    "offer_expired": _l("This offer has expired. You can ask for help again."),
    "nothing_owed": _l("Nothing is owed on this account."),
    "proposal_amount_invalid": _l("Enter a monthly amount above zero."),
    "proposal_count_invalid": _l("Enter a number of months from 1 to %(maximum)s."),
    "proposal_too_long": _l("With these figures you would repay more than you owe. Choose fewer months."),
    # Hardship: evidence files
    "evidence_too_many": _l("A request can hold at most %(limit)s files."),
    "evidence_name_invalid": _l(
        "This file name cannot be used. Rename the file (no folders or special characters) and try again."
    ),
    "evidence_empty": _l("The file is empty."),
    "evidence_too_large": _l("The file is larger than %(limit_mb)s MB."),
    "evidence_type_not_allowed": _l("This type of file cannot be uploaded. Send a PDF, JPEG or PNG file."),
    "evidence_pdf_active_content": _l(
        "The PDF contains scripts or embedded files, which we cannot accept."
        " Print it to a new PDF or send a photo of it."
    ),
    "evidence_unreadable": _l(
        "The file could not be read: it may be damaged. Try saving or scanning it again."
    ),
    "evidence_image_too_large": _l(
        "The picture is too large (at most %(limit)s megapixels). Send a smaller one."
    ),
    "evidence_unknown": _l("This file is not on your request."),
    "response_required": _l("Write your answer."),
    "response_too_long": _l("Please keep your answer under %(maximum)s characters."),
    # The negotiation desk (staff)
    "case_changed": _l("This case changed while you were looking at it. Reload it and decide again."),
    "case_not_yours": _l("Only the person who claimed this case may decide it."),
    "approver_is_first_approver": _l("Nobody may give the second approval to their own approval."),
    "above_authority": _l("This concession is above your authority."),
    "authority_unknown": _l("Your authority could not be checked. Reload the case."),
    "note_required": _l("Write a short note on why you decide this."),
    "note_too_long": _l("Keep the note under %(maximum)s characters."),
    "message_required": _l("Write the message to the borrower."),
    "reason_invalid": _l("Choose a reason."),
    "proposal_missing": _l("This case has no open proposal to approve."),
    "assignee_invalid": _l("Choose an active agent or supervisor."),
    # Agreements
    "signature_invalid": _l("The drawn signature could not be read. Clear it and draw again."),
    "agreement_not_voidable": _l("Only an agreement that is not signed yet can be voided."),
    "void_reason_required": _l("Write why the agreement is voided, in at most %(maximum)s characters."),
    "agreement_unknown": _l("This agreement was not found."),
    "agreement_signed": _l("This agreement is already signed."),
    "agreement_closed": _l("This agreement can no longer be signed."),
    "agreement_expired": _l("This agreement can no longer be signed: the time to sign it has passed."),
    "agreement_preparing": _l("This agreement is still being prepared. Please wait a moment."),
    "consent_missing": _l("Please agree to use electronic records first."),
    "code_stale": _l("Please confirm with a new code: the last one was confirmed more than 5 minutes ago."),
    "name_mismatch": _l("Type your full name exactly as it appears in the agreement."),
    "agreement_not_ticked": _l("Tick the box to confirm that you agree to sign."),
    "agreement_tampered": _l("This agreement's file does not match what was prepared. Please contact us."),
    "seal_failed": _l("The signature could not be completed just now. Nothing was signed. Please try again."),
    "waiver_exceeds_balance": _l("The account changed since the offer was made. Please contact us."),
    "no_contact": _l("We hold no phone number or e-mail address to send a code to. Please contact us."),
    "offer_terms_invalid": _l("These terms do not work on this account: %(reason)s."),
    # Paying online (the amounts in these messages are formatted by the view)
    "amount_missing": _l("Enter the amount you want to pay."),
    "amount_not_positive": _l("The amount must be more than zero."),
    "amount_above_balance": _l("The amount cannot be more than your whole balance, %(maximum)s."),
    "amount_below_minimum": _l("The amount must be at least %(minimum)s."),
    "payment_choice_invalid": _l("Choose one of the listed options."),
    "account_not_payable": _l("This account cannot be paid online. Please contact us."),
    "payment_unknown": _l("This payment was not found."),
    "payment_not_open": _l("This payment has already been sent."),
    "payment_outdated": _l("Your balance changed since you started this payment. Please start again."),
    "payment_unavailable": _l(
        "We could not reach the card processor. Please do not pay again: check this payment in a few minutes."
    ),
    "card_missing": _l("Enter your card details or choose a saved card."),
    "card_unknown": _l("This card was not found. Choose another card."),
    "card_setup_invalid": _l("Your card could not be set up. Please enter it again."),
    "autopay_no_plan": _l("Automatic payments are only for a repayment plan in force."),
    "autopay_plan_unknown": _l("This repayment plan is not in force."),
    "autopay_consent_missing": _l("Tick the box to agree to automatic payments."),
    "consent_changed": _l("The terms shown have changed. Please read them again and agree."),
    "receipt_not_ready": _l("There is no receipt for this payment yet."),
    # Refunds (finance)
    "refund_not_positive": _l("A refund must be more than zero."),
    "refund_too_large": _l("At most %(refundable)s of this payment can be refunded."),
    "refund_reason_required": _l("Write why this refund is made, in at most %(maximum)s characters."),
    "refund_payment_not_recorded": _l("Only a payment that is recorded as received can be refunded."),
    "refund_unknown": _l("This refund was not found."),
    "refund_not_awaiting": _l("This refund is no longer awaiting approval."),
    "refund_own_request": _l("Nobody may approve their own refund: another finance user must."),
    "refund_refused": _l("Stripe refused this refund. Nothing was refunded."),
    "refund_not_sent": _l("Stripe could not be reached. The refund is kept and will be sent again."),
    # Reconciliation: imports, runs and the exceptions queue
    "period_invalid": _l("The period ends before it starts."),
    "period_too_long": _l("Reconcile at most %(days)s days at a time."),
    "csv_upload_missing": _l("Choose a CSV file exported from Stripe."),
    "exception_unknown": _l("This reconciliation item was not found."),
    "exception_resolved": _l("This item is already resolved. Nothing was changed."),
    "exception_awaiting": _l("This item's write-off is waiting for a second finance user's approval."),
    "exception_not_awaiting": _l("This item is not waiting for a write-off approval."),
    "exception_changed": _l("This item changed since you opened it. Look at it again; nothing was changed."),
    "exception_note_required": _l("Write why, in at most %(maximum)s characters."),
    "exception_not_linkable": _l("Only an item missing from the ledger can be linked to a payment."),
    "exception_currency_differs": _l("This payment is in another currency than the item."),
    "correction_no_account": _l("Enter the payment whose account the correction is for."),
    "correction_component": _l("Choose principal, interest or fees."),
    "correction_direction": _l("Choose whether the balance goes down or up."),
    "correction_not_positive": _l("A correction must be more than zero."),
    "balance_negative": _l("This would take the balance below zero. Check the amount and the component."),
    "write_off_own_request": _l("Nobody may approve their own write-off: another finance user must."),
    # The daily collections run and strategy simulation
    "collections_run_future": _l(
        "The run for %(run_date)s cannot be made before that day (today is %(today)s)."
    ),
    "collections_run_closed": _l("%(run_date)s is closed: the run for %(last)s has already been completed."),
    "simulation_days_invalid": _l("Simulate from 1 to %(maximum)s days."),
    # Daily close and exports (finance)
    "day_close_future": _l("%(day)s has not happened yet: only a past day can be closed."),
    "day_close_not_ended": _l("%(day)s is today: it can be closed once it has ended (Asia/Shanghai)."),
    "day_already_closed": _l("%(day)s is already closed in %(currency)s."),
    "day_close_note_required": _l(
        "%(count)s reconciliation exceptions of %(day)s are still open: write why the day is closed anyway."
    ),
    "day_close_note_too_long": _l("Keep the note under %(maximum)s characters."),
    "day_closed": _l("%(day)s is closed in %(currency)s: date the entry on %(next_open)s instead."),
    "export_range_invalid": _l("Enter both days as YYYY-MM-DD, the first on or before the last."),
    "export_range_too_long": _l("Export at most %(maximum)s days at once."),
    "unknown_currency": _l("Choose one of the listed currencies."),
    # Contact rules
    "contact_refused": _l("The contact rules do not allow this contact now."),
    # Contact preferences and disputes (the borrower), resolving disputes (staff)
    "contact_channel_invalid": _l("Choose from the listed ways to contact you."),
    "opt_out_link_invalid": _l("This link is not valid."),
    "dispute_reason_invalid": _l("Choose why you dispute this debt."),
    "dispute_detail_required": _l("Tell us why you dispute this debt."),
    "dispute_detail_too_long": _l("Please keep it under %(maximum)s characters."),
    "dispute_too_many_files": _l("Send at most %(limit)s files."),
    "dispute_already_open": _l("You already dispute this debt. Our team is looking into it."),
    "dispute_not_open": _l("There is no open dispute on this account."),
    "dispute_closed": _l("This dispute is already closed."),
    "dispute_outcome_invalid": _l("Choose whether the dispute is upheld or rejected."),
    "dispute_unknown": _l("This dispute was not found."),
    # The collector's workspace
    "action_unknown": _l("This task was not found."),
    "action_closed": _l("This task is already done."),
    "action_taken": _l("Another collector is working on this task."),
    "outcome_invalid": _l("Choose what happened."),
    "party_invalid": _l("Choose who was called."),
    "promise_amount_missing": _l("Enter the amount the borrower promises to pay."),
    "promise_amount_zero": _l("The promised amount must be more than zero."),
    "promise_amount_above_balance": _l("The promised amount is more than the balance owed."),
    "promise_date_invalid": _l("Enter the promised date as YYYY-MM-DD."),
    "promise_date_past": _l("The promised date is in the past."),
    "promise_date_too_far": _l("A promise to pay may be at most %(days)s days ahead."),
    "account_closed": _l("This account is closed."),
    "visit_unknown": _l("This home visit was not found."),
    "visit_changed": _l("This visit changed while you were looking at it. Reload it."),
    "visit_already_open": _l("This account already has a home visit under way."),
    "visit_step_out_of_order": _l("This step cannot be done now: the visit is at another step."),
    "visit_needs_two_collectors": _l("Name at least two different collectors for the visit."),
    "visit_collector_invalid": _l("Choose active collectors from the list."),
    "visit_planned_in_past": _l("The visit cannot be planned in the past."),
    "visit_time_invalid": _l("Enter the visit's date and time."),
    "visit_not_identified": _l("Confirm that every collector showed their identification."),
    "visit_closed": _l("This visit is already closed."),
    "referral_reason_missing": _l("Say why the account should be referred."),
    "referral_pending": _l("A referral of this account is already waiting for a decision."),
    "account_already_legal": _l("This account is already referred for legal action."),
    "referral_unknown": _l("This referral was not found."),
    "referral_decided": _l("This referral has already been decided."),
    "referral_changed": _l("This referral changed while you were looking at it. Reload it."),
    "referral_own_request": _l("Nobody may decide their own referral: another supervisor must."),
    # API tokens (admin)
    "token_name_invalid": _l("Enter a name of 1 to %(maximum)s characters."),
    "scope_unknown": _l("Choose what the token may do from the list."),
    "scopes_missing": _l("Choose at least one thing the token may do."),
    "token_expiry_invalid": _l("Enter a number of days from 1 to %(maximum)s, or leave it empty."),
    "token_creditor_unknown": _l("Choose a lender from the list."),
    "api_token_unknown": _l("This API token was not found."),
    # Placements (admin): a lender's file as a whole. The report stores the English sentence with
    # its values filled in and the code, not the values, so these name the column at most.
    "file_too_large": _l("The file is too large: split it into smaller files."),
    "file_empty": _l("The file is empty."),
    "format_unsupported": _l("The file is not a CSV or XLSX file: save it as CSV UTF-8 or as .xlsx."),
    "xlsx_unreadable": _l("The Excel workbook cannot be read: save it again as .xlsx or as CSV."),
    "encoding_unknown": _l("The file is neither UTF-8 nor GB18030 text: save it as CSV UTF-8."),
    "csv_malformed": _l("The file is not valid CSV on the line named: check its quotes."),
    "delimiter_wrong": _l(
        "The columns are not separated by commas: save the file as CSV with commas (Excel: CSV UTF-8)."
    ),
    "header_invalid": _l("The first line names unknown, repeated or missing columns: they are listed below."),
    "too_many_rows": _l("The file has too many rows: split it into smaller files."),
    "no_rows": _l("The file has a header but no rows."),
    "import_failed": _l("The import failed on our side and was rolled back. Please try again later."),
    "import_not_queued": _l(
        "The import could not be queued for a worker. Nothing was applied: upload the file again."
    ),
    "upload_missing": _l("The uploaded file was no longer stored. Nothing was applied: upload it again."),
    "import_interrupted": _l(
        "The import stopped before it finished (its worker or command ended). Nothing was applied."
    ),
    # Placements: the header, and one row
    "column_unknown": _l("%(column)s is not a column of a placement file."),
    "column_duplicated": _l("The column %(column)s appears more than once."),
    "column_missing": _l("The required column %(column)s is missing."),
    "field_count": _l("This line does not have as many fields as the header."),
    "value_missing": _l("%(column)s is required."),
    "too_long": _l("%(column)s has too many characters."),
    "text_invalid": _l("%(column)s contains control characters, which cannot be stored."),
    "type_invalid": _l("%(column)s holds the wrong type of value."),
    "unknown_field": _l("%(column)s is not a field of a placement."),
    "reference_invalid": _l("This is not a reference: use letters, digits and - _ . / : only."),
    "reference_duplicated": _l("This account is already on an earlier line of this file."),
    "borrower_conflict": _l("This borrower is given with other details on an earlier line of this file."),
    "choice_invalid": _l("This is not a valid %(column)s: use one of the values the column lists."),
    "country_invalid": _l("This is not a country code such as CN or HK."),
    "currency_invalid": _l("This is not a currency Accord can hold."),
    "date_invalid": _l("This is not a date for %(column)s: write it as YYYY-MM-DD."),
    "date_of_birth_invalid": _l("This date of birth is not possible: it must be in the past."),
    "balance_date_future": _l("The balance date is in the future."),
    "rate_negative": _l("The yearly rate cannot be negative."),
    "rate_too_high": _l("The yearly rate is above the highest a placement may carry."),
    "phone_invalid": _l(
        "This is not a phone number: write it with its country code, such as +8613800138000."
    ),
    "time_zone_invalid": _l("This is not a time zone such as Asia/Shanghai."),
    "company_name_missing": _l("A business needs its company name."),
    "date_of_birth_missing": _l("A person's date of birth is required: they sign in with it."),
    "contact_missing": _l("Give a phone number or an e-mail address (or both)."),
    "time_zone_missing": _l("Give the time zone: this country has no default one."),
    "opened_after_balance_date": _l("The account was opened after the balance date."),
    "total_mismatch": _l("The total is not principal + interest + fees."),
    "overdue_above_total": _l("The overdue amount is more than the whole balance."),
    "oldest_unpaid_missing": _l("Give the due date of the oldest unpaid instalment: an amount is overdue."),
    "oldest_unpaid_without_overdue": _l("Leave the oldest unpaid due date empty: nothing is overdue."),
    "oldest_unpaid_after_balance_date": _l("The oldest unpaid due date is after the balance date."),
    "next_due_missing": _l("Give the next due date: a next due amount is given."),
    "currency_changed": _l("This account is held in another currency: a placement cannot change it."),
    "borrower_changed": _l("This account belongs to another borrower: a placement cannot move it."),
    "balance_date_stale": _l("These balances are older than those already placed for this account."),
    # Outgoing webhooks (admin)
    "webhook_url_invalid": _l("Enter the full address, such as https://example.com/hooks."),
    "webhook_url_not_https": _l("The address must start with https://."),
    "webhook_event_types_invalid": _l("Choose event types from the list."),
    "webhook_creditor_unknown": _l("Choose a lender from the list."),
    "webhook_endpoint_unknown": _l("This webhook endpoint was not found."),
    "webhook_delivery_unknown": _l("This delivery was not found."),
    "webhook_delivery_not_failed": _l("Only a failed delivery can be sent again."),
}


# Why a counter-offer's terms do not fit the account (DomainError counter_terms_invalid's `problem`).
COUNTER_PROBLEMS = {
    "amount_negative": _l("an amount is negative"),
    "count_out_of_range": _l("the number of payments is out of range"),
    "holiday_out_of_range": _l("the months without payments are out of range"),
    "plan_unknown": _l("choose instalments or a settlement"),
    "rate_above_contract": _l("the rate is above the contract's"),
    "rate_out_of_range": _l("the rate is out of range"),
    "settlement_amount_on_plan": _l("a settlement amount belongs to a settlement only"),
    "settlement_amount_out_of_range": _l("the settlement must be more than zero and less than the balance"),
    "settlement_combined": _l("a settlement stands alone: no other waiver, holiday or rate"),
    "too_little_to_repay": _l("too little is left to repay in every instalment"),
    "waiver_above_balance": _l("more would be waived than is owed"),
}


# Why the contact rules refuse a contact (workflows.contact_policy.RefusalCode), for staff.
CONTACT_REFUSALS = {
    "cease_contact": _l("The borrower asked us to stop contacting them."),
    "dispute_open": _l("The borrower disputes this debt: no contact until the dispute is resolved."),
    "opted_out": _l("The borrower opted out of %(channel)s."),
    "party_not_allowed": _l("These rules do not allow contact with a %(party)s."),
    "third_party_too_early": _l(
        "Third parties may be contacted only after %(required)s failed attempts in a row to reach the"
        " borrower; so far %(in_a_row)s."
    ),
    "home_visit_needs_two": _l("A home visit needs at least %(required)s collectors, not %(collectors)s."),
    "collectors_not_identified": _l("Collectors on a home visit must identify themselves."),
    "missing_opt_out": _l("Every %(channel)s message must include a way to opt out."),
    "outside_hours": _l(
        "It is %(local_time)s for the borrower (%(time_zone)s); %(channel)s is allowed %(window)s only."
    ),
    "daily_call_cap": _l("%(made)s calls already today to this number; at most %(cap)s a day."),
    "weekly_call_cap": _l("%(made)s calls already in the last 7 days; at most %(cap)s."),
    "after_conversation": _l("No call within %(days)s days after a conversation (the last was %(at)s)."),
    "unreasonable_demand": _l(
        "Asking for %(demand)s within %(deadline_days)s days is more than the borrower can afford by then."
    ),
    "breathing_space": _l("A breathing space pauses collection contact until %(until)s."),
}


def contact_refusal_message(refusal: Any) -> str:
    """One reason the contact rules gave, in the staff member's language."""
    template = CONTACT_REFUSALS.get(str(refusal.code))
    if template is None:
        return str(refusal.message) if hasattr(refusal, "message") else str(refusal.code)
    params = dict(refusal.params)
    try:
        return str(template) % params if params else str(template)
    except (KeyError, TypeError, ValueError):
        return str(template)


def user_message(error: DomainError) -> str:
    if error.code == "counter_terms_invalid":
        detail = COUNTER_PROBLEMS.get(str(error.params.get("problem")))
        return _("These terms do not work on this account: %(detail)s.", detail=detail or "")
    template = MESSAGES.get(error.code)
    if template is None:
        log.warning("no translated message for domain error %s", error.code)
        return _("This request could not be completed.")
    return str(template) % error.params if error.params else str(template)


TITLES = {
    400: _l("This request could not be understood"),
    403: _l("You may not open this page"),
    404: _l("Page not found"),
    405: _l("This action is not available here"),
    413: _l("The upload is too large"),
    429: _l("Too many attempts"),
}
DETAILS = {
    400: _l("Please go back, reload the page and try again."),
    403: _l("Your role does not give access to this page."),
    404: _l("The address may be mistyped, or the page no longer exists."),
    429: _l("Please wait a few minutes before trying again."),
}


def init_app(app: Flask) -> None:
    # The API's errors are JSON in the API's own shape, never these pages.
    from portal.api import errors as api_errors

    @app.errorhandler(CSRFError)
    def csrf_error(_exc: CSRFError) -> Any:
        return render_template(
            "error.html",
            title=_("This form has expired"),
            detail=_("Please go back, reload the page and submit the form again."),
        ), 400

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Any:
        if api_errors.is_api_request():
            return api_errors.error_response(exc)
        code = exc.code or 500
        if code >= 500:
            return internal_error(exc)
        return render_template(
            "error.html",
            title=TITLES.get(code, exc.name),
            detail=DETAILS.get(code, ""),
        ), code

    @app.errorhandler(Exception)
    def internal_error(exc: Exception) -> Any:
        if api_errors.is_api_request():
            return api_errors.error_response(exc)
        log.exception("unhandled error, request id %s", g.get("request_id"), exc_info=exc)
        return render_template(
            "error.html",
            title=_("Something went wrong on our side"),
            detail=_("We have logged it. Please try again in a few minutes."),
            request_id=g.get("request_id"),
        ), 500
