"""SQLAlchemy models, grouped by area. Importing this package registers every table."""

from portal.models.accounts import Account, LedgerEntry
from portal.models.agreements import Agreement, AgreementEvent, Plan, PlanInstalment
from portal.models.audit import AuditChain, AuditChainHead, AuditChainPending, AuditEvent
from portal.models.collections import (
    CollectionAction,
    CollectionRun,
    ContactAttempt,
    ContactPreference,
    DebtDispute,
    HomeVisit,
    LegalReferral,
    PromiseToPay,
    StageHistory,
)
from portal.models.finance import (
    DayClose,
    ReconciliationException,
    ReconciliationRun,
    StripeBalanceTxn,
    StripeImport,
)
from portal.models.hardship import (
    AccountPause,
    BudgetLine,
    CaseMessage,
    CaseNote,
    EvidenceFile,
    HardshipCase,
    Offer,
)
from portal.models.integration import (
    ApiToken,
    EventSequence,
    IntegrationEvent,
    WebhookAttempt,
    WebhookDelivery,
    WebhookEndpoint,
)
from portal.models.messages import OutboundMessage
from portal.models.parties import Borrower, Creditor
from portal.models.payments import (
    AutopayMandate,
    CreditEntry,
    Dispute,
    Payment,
    Refund,
    SavedCard,
    StripeCustomer,
    StripeEvent,
    SuspenseItem,
)
from portal.models.placements import PlacementImport, PlacementRejection
from portal.models.policy import PolicyVersion
from portal.models.retention import RetentionErasure, RetentionRun
from portal.models.signin import SigninAttempt, SigninCode
from portal.models.staff import StaffUser

__all__ = [
    "Account",
    "AccountPause",
    "Agreement",
    "AgreementEvent",
    "ApiToken",
    "AuditChain",
    "AuditChainHead",
    "AuditChainPending",
    "AuditEvent",
    "AutopayMandate",
    "Borrower",
    "BudgetLine",
    "CaseMessage",
    "CaseNote",
    "CollectionAction",
    "CollectionRun",
    "ContactAttempt",
    "ContactPreference",
    "CreditEntry",
    "Creditor",
    "DayClose",
    "DebtDispute",
    "Dispute",
    "EventSequence",
    "EvidenceFile",
    "HardshipCase",
    "HomeVisit",
    "IntegrationEvent",
    "LedgerEntry",
    "LegalReferral",
    "Offer",
    "OutboundMessage",
    "Payment",
    "PlacementImport",
    "PlacementRejection",
    "Plan",
    "PlanInstalment",
    "PolicyVersion",
    "PromiseToPay",
    "ReconciliationException",
    "ReconciliationRun",
    "Refund",
    "RetentionErasure",
    "RetentionRun",
    "SavedCard",
    "SigninAttempt",
    "SigninCode",
    "StaffUser",
    "StageHistory",
    "StripeBalanceTxn",
    "StripeCustomer",
    "StripeEvent",
    "StripeImport",
    "SuspenseItem",
    "WebhookAttempt",
    "WebhookDelivery",
    "WebhookEndpoint",
]
