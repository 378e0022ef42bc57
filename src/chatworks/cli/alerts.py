"""`chatworks alerts receive`: a webhook receiver for Alertmanager that prints each alert it
gets (firing or resolved) as one JSON line, to watch alerts arrive without a mail server or a
chat workspace (docs/operations/alerting.md)."""

from __future__ import annotations

from typing import Annotated

import typer

app = typer.Typer(help="Receive the alerts Alertmanager sends.", no_args_is_help=True)


@app.command()
def receive(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 9095,
) -> None:
    """Listen for Alertmanager webhook notifications; print one JSON line per alert."""
    from chatworks.telemetry.alert_receiver import make_server

    server = make_server(host, port)
    # On stderr: stdout carries only the alert lines, for a pipe or a file.
    typer.echo(f"alert receiver on http://{host}:{port}/ (Ctrl-C stops)", err=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
