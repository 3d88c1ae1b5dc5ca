from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class QualityConfig(AppConfig):
    name = "quality"
    verbose_name = _("Data quality")

    def ready(self):
        # Source verification, signatures, locks and freezes: the write signals' receivers, the API's
        # status fields and the admin pages.
        from core import record_status
        from quality import (  # noqa: F401
            admin_review,
            handlers,  # noqa: F401  (connects the receivers)
            receivers,
        )
        from quality.services import review

        for label in ("patients.Patient", "followup.Visit", "followup.AdverseEvent"):
            record_status.register(label, annotate=review.status_annotate, read=review.status_of)
