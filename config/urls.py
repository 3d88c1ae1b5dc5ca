from django.contrib import admin
from django.urls import include, path

from config.health import healthz, livez
from config.language import set_language
from config.metrics import metrics

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("livez", livez, name="livez"),
    path("metrics", metrics, name="metrics"),
    path("admin/", admin.site.urls),
    path("api/", include("config.api")),
    path("i18n/setlang/", set_language, name="set_language"),
]

handler400 = "core.api.problems.bad_request"
handler403 = "core.api.problems.permission_denied"
handler404 = "core.api.problems.page_not_found"
handler500 = "core.api.problems.server_error"
