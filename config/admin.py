"""The registry's admin site: its home page is the coordinator's worklist."""

from django.contrib import admin


class RegistryAdminSite(admin.AdminSite):
    site_header = "MSCT registry"
    site_title = "MSCT registry"
    index_title = "Worklist"
    index_template = "admin/registry_index.html"

    def index(self, request, extra_context=None):
        from followup.selectors import worklist

        extra = {"worklist": worklist(user=request.user)} if request.user.is_active else {}
        return super().index(request, {**extra, **(extra_context or {})})
