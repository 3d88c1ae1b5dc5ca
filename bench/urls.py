"""The production URLs plus the bare baseline views of the benchmark."""

from django.urls import path

from bench import views
from config.urls import urlpatterns as production_urlpatterns

urlpatterns = [
    *production_urlpatterns,
    path("bench/bare/visits/", views.bare_visit_list),
    path("bench/bare/visits/<int:visit_id>/record/", views.bare_visit_record),
    path("bench/bare/pages/<str:name>/", views.bare_page),
]
