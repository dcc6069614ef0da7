"""The project's URLconf."""

from __future__ import annotations

from django.urls import include, path, re_path

from tests.django.project import views

urlpatterns = [
    path("", views.index, name="index"),
    path("api/", include("tests.django.project.items")),
    path("slow/", views.slow),
    path("aslow/", views.aslow),
    path("boom/", views.boom),
    path("status/<int:code>/", views.status),
    path("stream/", views.stream),
    path("astream/", views.astream),
    path("held/", views.held),
    path("aheld/", views.aheld),
    path("endless/", views.endless),
    path("aendless/", views.aendless),
    path("download/", views.download),
    re_path(r"^legacy/(?P<year>[0-9]{4})/$", views.legacy),
]
