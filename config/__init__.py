"""Configuration: settings from the environment, Celery configuration, Redis keys."""

from __future__ import annotations

from config.settings import Settings, get_settings

__all__ = ["Settings", "get_settings"]
