"""The `chatworks` command line: a thin shell over the packages (parse, call, print).

One module per group of commands; this file is the whole command tree.
"""

from __future__ import annotations

import typer

from chatworks.cli import (
    alerts,
    bench,
    database,
    documents,
    eval_suites,
    evals,
    keys,
    lab,
    mcp,
    serving,
    spark,
    training,
    usage,
)

app = typer.Typer(
    help="chatworks: train, serve, ground and observe a chat model.", no_args_is_help=True
)
app.command()(serving.serve)
app.command()(serving.models)
app.command()(serving.chat)
app.command()(documents.ingest)
app.command()(documents.collections)
app.command()(documents.ask)
evals.app.command("run")(eval_suites.run)
evals.app.command("new")(eval_suites.new)
evals.app.command("judge-agreement")(eval_suites.judge_agreement)
app.add_typer(evals.app, name="eval")
app.add_typer(training.app, name="train")
app.add_typer(keys.app, name="keys")
app.add_typer(lab.app, name="lab")
app.add_typer(mcp.app, name="mcp")
app.add_typer(bench.app, name="bench")
app.add_typer(alerts.app, name="alerts")
app.add_typer(spark.app, name="spark")
app.command("export")(training.export_model)
app.command("usage")(usage.usage)
app.command()(database.migrate)
