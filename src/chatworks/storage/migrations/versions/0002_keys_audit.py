"""API keys, their usage per budget period, the audit log, and an owner on each collection.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-02

Collections existing before keys belong to the default owner (what auth off uses). Names stay
globally unique: the retrieval code names a collection by its name alone, and a second tenant
creating a taken name gets 409 (it learns the name exists, nothing in it; docs/security/).
The audit log refuses UPDATE and DELETE by trigger on both dialects: append-only is enforced
by the database, not by the good manners of the code.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from chatworks.storage.models import RowId

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_SQLITE_APPEND_ONLY = [
    f"""CREATE TRIGGER audit_log_no_{verb.lower()} BEFORE {verb} ON audit_log BEGIN
        SELECT RAISE(ABORT, 'audit_log is append-only');
    END"""
    for verb in ("UPDATE", "DELETE")
]

_POSTGRES_APPEND_ONLY = [
    """CREATE FUNCTION audit_log_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN RAISE EXCEPTION 'audit_log is append-only'; END $$""",
    """CREATE TRIGGER audit_log_append_only BEFORE UPDATE OR DELETE ON audit_log
        FOR EACH ROW EXECUTE FUNCTION audit_log_append_only()""",
]


def upgrade() -> None:
    # A plain ADD COLUMN, not Alembic's batch mode: batch recreates the table on SQLite, and
    # dropping the old one would cascade-delete every document (foreign keys are on).
    op.add_column(
        "collections", sa.Column("owner", sa.String(64), nullable=False, server_default="default")
    )
    op.create_index("ix_collections_owner", "collections", ["owner"])
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False),
        sa.Column("secret_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("prefix", sa.String(16), nullable=False),
        sa.Column("owner", sa.String(64), nullable=False),
        sa.Column("scopes", sa.JSON, nullable=False),
        sa.Column("models", sa.JSON),
        sa.Column("collections", sa.JSON),
        sa.Column("limits", sa.JSON, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True)),
        sa.Column("revoked_at", sa.DateTime(timezone=True)),
    )
    op.create_table(
        "key_usage",
        sa.Column(
            "key_id",
            sa.String(32),
            sa.ForeignKey("api_keys.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("period", sa.String(10), primary_key=True),
        sa.Column("tokens", sa.BigInteger, nullable=False),
        sa.Column("requests", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "audit_log",
        sa.Column("id", RowId, primary_key=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False, index=True),
        sa.Column("actor", sa.String(64), nullable=False),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("resource", sa.String(1024)),
        sa.Column("outcome", sa.String(16), nullable=False),
        sa.Column("client", sa.String(64)),
        sa.Column("detail", sa.JSON, nullable=False),
    )
    postgres = op.get_bind().dialect.name == "postgresql"
    for statement in _POSTGRES_APPEND_ONLY if postgres else _SQLITE_APPEND_ONLY:
        op.execute(statement)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TABLE audit_log")
        op.execute("DROP FUNCTION audit_log_append_only()")
    else:
        op.drop_table("audit_log")
    op.drop_table("key_usage")
    op.drop_table("api_keys")
    op.drop_index("ix_collections_owner", "collections")
    op.drop_column("collections", "owner")
