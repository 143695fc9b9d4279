"""An importable Celery app for tools that want ``-A`` (Flower, ``celery inspect``)."""

from __future__ import annotations

from config.settings import get_settings
from workers.celery.app import create_app

app = create_app(get_settings())
