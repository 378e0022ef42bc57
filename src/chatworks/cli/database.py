"""`chatworks migrate`: bring the database schema up to date without starting the server."""

from __future__ import annotations

from chatworks.cli.shared import console, settings_from_flags


def migrate() -> None:
    """Apply the database migrations that `serve` would apply at start.

    Run it as a release step (the Kubernetes migration Job, a Cloud Run job) so that new
    replicas start on a schema that is already current and no rollout waits on a migration."""
    from chatworks.storage import open_database

    engine = open_database(settings_from_flags())
    engine.dispose()
    url = engine.url.render_as_string(hide_password=True)
    console.print(f"database schema is current: {url}", highlight=False)
