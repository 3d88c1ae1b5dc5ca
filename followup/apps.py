from django.apps import AppConfig


class FollowupConfig(AppConfig):
    name = "followup"
    verbose_name = "Follow-up"

    def ready(self):
        from followup import handlers  # noqa: F401  (connects the receivers)
        from registry.i18n import translate_model_labels

        # followup loads last of the registry's apps: every model of ours exists now.
        translate_model_labels()
