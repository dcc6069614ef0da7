"""An included URLconf, so names carry the include() prefix."""

from __future__ import annotations

from django.urls import path

from tests.django.project import views

app_name = "items"
urlpatterns = [
    path("items/<int:pk>/", views.item, name="detail"),
    path("missing/", views.missing, name="missing"),
]
