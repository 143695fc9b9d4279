"""Configuration: settings from the environment, Celery configuration, Redis keys."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from config.settings import Settings, get_settings

__all__ = ["Settings", "get_settings"]


def __getattr__(name: str) -> Any:
    # Settings are loaded when first asked for, not with the package: ``config.keys`` and
    # ``config.logging`` then cost nothing of pydantic-settings (the CLI's commands over the API
    # start without it).
    if name in __all__:
        from config import settings

        return getattr(settings, name)
    raise AttributeError(f"module 'config' has no attribute {name!r}")
