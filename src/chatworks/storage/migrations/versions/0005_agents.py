"""Agents: registered MCP servers, stored responses, tool approvals; keys' tool lists; audit
entries tied to a response.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-05
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(sa.Column("tools", sa.JSON, nullable=True))
        batch.add_column(sa.Column("auto_approve", sa.JSON, nullable=True))
    # A plain ADD COLUMN: the audit log's triggers refuse the table copy a batch would make.
    op.add_column("audit_log", sa.Column("response_id", sa.String(64), nullable=True))
    op.create_index("ix_audit_log_response_id", "audit_log", ["response_id"])
    op.create_table(
        "mcp_servers",
        sa.Column("label", sa.String(64), primary_key=True),
        sa.Column("transport", sa.String(16), nullable=False),
        sa.Column("target", sa.Text, nullable=False),
        sa.Column("write_tools", sa.JSON, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "responses",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("owner", sa.String(64), nullable=False),
        sa.Column("key_id", sa.String(64), nullable=False),
        sa.Column("previous_id", sa.String(64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("body", sa.JSON, nullable=False),
        sa.Column("state", sa.JSON, nullable=False),
    )
    op.create_index("ix_responses_owner", "responses", ["owner"])
    op.create_table(
        "approvals",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("response_id", sa.String(64), nullable=False),
        sa.Column("owner", sa.String(64), nullable=False),
        sa.Column("server", sa.String(64), nullable=False),
        sa.Column("tool", sa.String(200), nullable=False),
        sa.Column("arguments", sa.Text, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decided_by", sa.String(64), nullable=True),
        sa.Column("reason", sa.Text, nullable=True),
        sa.Column("result", sa.JSON, nullable=True),
    )
    op.create_index("ix_approvals_response_id", "approvals", ["response_id"])


def downgrade() -> None:
    op.drop_index("ix_approvals_response_id", "approvals")
    op.drop_table("approvals")
    op.drop_index("ix_responses_owner", "responses")
    op.drop_table("responses")
    op.drop_table("mcp_servers")
    op.drop_index("ix_audit_log_response_id", "audit_log")
    op.drop_column("audit_log", "response_id")
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_column("auto_approve")
        batch.drop_column("tools")
