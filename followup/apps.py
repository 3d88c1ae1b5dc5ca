from django.apps import AppConfig


class FollowupConfig(AppConfig):
    name = "followup"
    verbose_name = "Follow-up"

    def ready(self):
        from followup import handlers  # noqa: F401  (connects the receivers)
