"""The data quality tables: queries and their messages, edit checks, source data verification,
signatures, locks and freezes. One module per concern; each is imported here so Django finds its models."""

from quality.models.queries import EditCheckSettings, Query, QueryMessage
from quality.models.review import Freeze, Lock, RecordKind, Signature, SigningFailure, SourceVerification

__all__ = [
    "EditCheckSettings",
    "Freeze",
    "Lock",
    "Query",
    "QueryMessage",
    "RecordKind",
    "Signature",
    "SigningFailure",
    "SourceVerification",
]
