from django.apps import AppConfig


class RegistryConfig(AppConfig):
    name = "registry"
    verbose_name = "Registry: studies, sites and cell products"

    def ready(self):
        from django.contrib.auth import get_user_model
        from django.contrib.auth.models import Group, Permission
        from django.db.models.signals import m2m_changed, post_delete

        from registry.templatetags.admin_menu import menus_outdated

        # The admin's side menus show what Django permissions allow: drawn anew once those change.
        user_model = get_user_model()
        for through in (user_model.groups.through, user_model.user_permissions.through, Group.permissions.through):
            m2m_changed.connect(menus_outdated, sender=through, dispatch_uid=f"admin-menu-{through.__name__}")
        for model in (Group, Permission):
            post_delete.connect(menus_outdated, sender=model, dispatch_uid=f"admin-menu-{model.__name__}")
