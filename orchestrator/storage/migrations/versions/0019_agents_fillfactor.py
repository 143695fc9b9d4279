"""agents: room on each page for a row's next version (fillfactor 50), so heartbeats update in place

Revision ID: 0019
Revises: 0018

Every heartbeat and every recorded spend rewrites an agent's row. With the pages full (the default
fillfactor, 100), the new version goes to another page, and every index of the table gets an entry
for it: between two vacuums the router's lookup of a hundred agents by id walked several index
entries and heap pages per agent. With room left on the page, PostgreSQL writes the new version
there (a HOT update: no index entry, since no indexed column changes) and prunes the old ones as
it reads the page, vacuum or not. Pages filled before this keep their rows until those move.
"""

from __future__ import annotations

from alembic import op

revision = "0019"
down_revision = "0018"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE agents SET (fillfactor = 50)")


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("ALTER TABLE agents RESET (fillfactor)")
