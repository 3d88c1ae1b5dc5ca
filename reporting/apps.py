from django.apps import AppConfig


class ReportingConfig(AppConfig):
    name = "reporting"
    verbose_name = "Reporting"

    def ready(self):
        from reporting import freezes  # noqa: F401 (captures a freeze's export and report)
