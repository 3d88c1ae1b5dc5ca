from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class QualityConfig(AppConfig):
    name = "quality"
    verbose_name = _("Data quality")

    def ready(self):
        from quality import handlers  # noqa: F401  (connects the receivers)
