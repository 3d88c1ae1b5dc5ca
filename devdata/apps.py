from django.apps import AppConfig


class DevdataConfig(AppConfig):
    """The demo study and the synthetic cohort: installed by the local, test and bench settings only."""

    name = "devdata"
    verbose_name = "Development data"
