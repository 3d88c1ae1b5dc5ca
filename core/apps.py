from django.apps import AppConfig
from django.db.models.signals import post_migrate


class CoreConfig(AppConfig):
    """Plumbing every app shares (no models): database helpers, audit attribution, i18n, API building blocks."""

    name = "core"
    verbose_name = "Core"

    def ready(self):
        from core import lookups  # noqa: F401  (registers `__any`)
        from core.audit import install_append_only_triggers
        from core.i18n import translate_model_labels

        post_migrate.connect(install_append_only_triggers, dispatch_uid="core.append_only_history")
        # ready() runs once every app's models are loaded, so every label of ours exists now.
        translate_model_labels()
