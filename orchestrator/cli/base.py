"""The ``workyard`` command's root: its group, its errors, and what every command shares.

Importing it costs click only: the commands that talk to the API start without SQLAlchemy,
Celery or the settings, and those that open the database import what they need when they run.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

import click

from models.errors import WorkyardError

if TYPE_CHECKING:
    from config.settings import Settings
    from orchestrator.service.wiring import Wiring


class Failure(click.ClickException):
    """An error shown as one clear line, exit code 1."""


def current_settings() -> Settings:
    from config.settings import get_settings

    return get_settings()


def open_wiring(require_db: bool = True) -> Wiring:
    from sqlalchemy import inspect
    from sqlalchemy.exc import SQLAlchemyError

    from orchestrator.service.wiring import Wiring

    settings = current_settings()
    wiring = Wiring(settings)
    if not require_db:
        return wiring
    sqlite_file = settings.data_path / "workyard.db"
    if settings.database_url is None and not sqlite_file.exists():
        raise Failure(
            f"no workyard database at {sqlite_file}: run `workyard up` or `workyard db upgrade` "
            "first (or set WORKYARD_DATA_DIR / WORKYARD_DATABASE_URL to the stack you mean)"
        )
    try:
        migrated = inspect(wiring.engine).has_table("saga_runs")
    except SQLAlchemyError as exc:
        raise Failure(
            f"cannot reach the database at {settings.effective_database_url()}: {exc.__class__.__name__}: "
            f"{getattr(exc, 'orig', exc)}"
        ) from exc
    if not migrated:
        raise Failure(
            f"no workyard database at {wiring.settings.effective_database_url()}: run "
            "`workyard up` or `workyard db upgrade` first (or set WORKYARD_DATA_DIR / "
            "WORKYARD_DATABASE_URL to the stack you mean)"
        )
    return wiring


def handlers_from_cwd() -> None:
    """Let --handlers name modules in the current directory, as `python -m` would."""
    if "" not in sys.path and "." not in sys.path:
        sys.path.insert(0, "")


def _database_error(exc: Exception) -> Failure | None:
    """A database error as one line; None when ``exc`` is none (SQLAlchemy is looked at only if
    a command loaded it: the commands over the API never do)."""
    sqlalchemy_exc = sys.modules.get("sqlalchemy.exc")
    if sqlalchemy_exc is None or not isinstance(exc, sqlalchemy_exc.SQLAlchemyError):
        return None
    return Failure(f"database error: {type(exc).__name__}: {getattr(exc, 'orig', None) or exc}")


class _Group(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except WorkyardError as exc:
            raise Failure(exc.message) from exc
        except Exception as exc:
            failure = _database_error(exc)
            if failure is None:
                raise
            raise failure from exc


@click.group(cls=_Group)
@click.option("--log-level", default=None, help="DEBUG, INFO, WARNING (default INFO, or WORKYARD_LOG_LEVEL).")
def main(log_level: str | None) -> None:
    """workyard: sagas of work across AI agents, people and ordinary workers."""
    from config.logging import setup_logging

    setup_logging(log_level)


def admin_token(settings: Settings) -> str:
    """The embedded stack's operator token (made once, kept in the data dir)."""
    from orchestrator.service.wiring import Wiring
    from orchestrator.work.tokens import ensure_admin_token

    wiring = Wiring(settings)
    try:
        with wiring.sessions.begin() as session:
            return ensure_admin_token(session, settings.data_path / "admin-token")
    finally:
        wiring.close()
