"""The intake app keeps no table: an import writes through the patients and follow-up services."""

from django.utils.translation import gettext_lazy as _

from registry.models import Study


class CohortImport(Study):
    """A study seen as the target of an import (admin entry point; no table of its own)."""

    class Meta:
        proxy = True
        verbose_name = _("import")
        verbose_name_plural = _("imports")
