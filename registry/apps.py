from django.apps import AppConfig
from django.db.models.signals import post_migrate


class RegistryConfig(AppConfig):
    name = "registry"
    verbose_name = "Registry: studies, sites and cell products"

    def ready(self):
        from registry import lookups  # noqa: F401  (registers `__any`)
        from registry.audit import install_append_only_triggers

        post_migrate.connect(install_append_only_triggers, dispatch_uid="registry.append_only_history")
