"""webhook secrets are stored encrypted; webhooks can be deleted

Every existing plain-text secret is encrypted with the key of the settings this process runs with
(``WORKYARD_SECRET_KEY``, or the key in the data dir: run ``workyard db upgrade`` with the same
settings as the API and the orchestrators), then the plain-text column is dropped.

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from config.settings import get_settings
from orchestrator.storage.secret_box import SecretBox, secret_box

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

# The table as this migration sees it, whatever the models say later.
_webhooks = sa.table(
    "webhooks",
    sa.column("id", sa.String),
    sa.column("secret", sa.String),
    sa.column("secret_encrypted", sa.String),
)


def _box() -> SecretBox:
    return secret_box(get_settings())


def upgrade() -> None:
    with op.batch_alter_table("webhooks") as batch:
        batch.add_column(sa.Column("secret_encrypted", sa.String(length=500), nullable=False, server_default=""))
        batch.add_column(sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True))
    connection = op.get_bind()
    rows = connection.execute(sa.select(_webhooks.c.id, _webhooks.c.secret)).all()
    if rows:
        box = _box()
        for hook_id, secret in rows:
            connection.execute(
                sa.update(_webhooks).where(_webhooks.c.id == hook_id).values(secret_encrypted=box.encrypt(secret))
            )
    with op.batch_alter_table("webhooks") as batch:
        batch.alter_column("secret_encrypted", server_default=None)
        batch.drop_column("secret")


def downgrade() -> None:
    with op.batch_alter_table("webhooks") as batch:
        batch.add_column(sa.Column("secret", sa.String(length=200), nullable=False, server_default=""))
    connection = op.get_bind()
    rows = connection.execute(sa.select(_webhooks.c.id, _webhooks.c.secret_encrypted)).all()
    if rows:
        box = _box()
        for hook_id, token in rows:
            # A deleted webhook's secret was wiped: it stays empty.
            secret = box.decrypt(token) if token else ""
            connection.execute(sa.update(_webhooks).where(_webhooks.c.id == hook_id).values(secret=secret))
    with op.batch_alter_table("webhooks") as batch:
        batch.alter_column("secret", server_default=None)
        batch.drop_column("deleted_at")
        batch.drop_column("secret_encrypted")
