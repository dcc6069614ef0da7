"""Settings of the Django project the adapter tests serve (in-process and under real servers)."""

from __future__ import annotations

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent
SECRET_KEY = "concmon-tests-only"  # a test project, served on 127.0.0.1 only
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "testserver"]
INSTALLED_APPS = ["django.contrib.contenttypes", "concmon_django"]
MIDDLEWARE = [
    "concmon_django.middleware.ConcMonMiddleware",
    "django.middleware.common.CommonMiddleware",
]
ROOT_URLCONF = "tests.django.project.urls"
DATABASES: dict[str, object] = {}
USE_TZ = True
WSGI_APPLICATION = "tests.django.project.wsgi.application"
LOGGING_CONFIG = None  # concmon's own error lines reach the server's output unchanged

CONCMON: dict[str, object] = {"json_path": "/concurrency"}
if os.environ.get("DJANGO_TEST_MAX_CONCURRENCY"):
    CONCMON["max_concurrency"] = int(os.environ["DJANGO_TEST_MAX_CONCURRENCY"])
