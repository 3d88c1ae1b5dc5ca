from django.contrib import admin
from django.http import HttpResponse
from django.urls import include, path


def healthz(request):
    return HttpResponse("ok", content_type="text/plain")


admin.site.site_header = "MSCT registry"
admin.site.site_title = "MSCT registry"
admin.site.index_title = "Registry administration"

urlpatterns = [
    path("healthz", healthz),
    path("admin/", admin.site.urls),
    path("api/", include("config.api")),
]
