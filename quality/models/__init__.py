from quality.models.review import Freeze, Lock, RecordKind, Signature, SourceVerification

__all__ = ["Freeze", "Lock", "RecordKind", "Signature", "SourceVerification"]
