from django.contrib.admin.apps import AdminConfig


class RegistryAdminConfig(AdminConfig):
    default_site = "config.admin.RegistryAdminSite"

    def ready(self):
        super().ready()
        from config.signin import translate_sign_in_labels

        translate_sign_in_labels()
