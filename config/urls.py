from django.contrib import admin
from django.http import HttpResponse
from django.urls import include, path
from django.views import defaults

from followup.language import set_language
from registry.api.base import not_found as api_not_found


def healthz(request):
    return HttpResponse("ok", content_type="text/plain")


def not_found(request, exception=None):
    """Problem details under /api/, the site's page elsewhere."""
    if request.path.startswith("/api/"):
        return api_not_found(request, exception)
    return defaults.page_not_found(request, exception)


handler404 = not_found

urlpatterns = [
    path("healthz", healthz),
    path("admin/", admin.site.urls),
    path("api/", include("config.api")),
    path("i18n/setlang/", set_language, name="set_language"),
]
