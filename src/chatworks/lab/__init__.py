"""The ML lab: a labelled CSV in; a leaderboard of methods on the same folds, a report with
error analysis, a registered model and a served endpoint (`/v1/classify`) out.

    data.py       the CSV: target, text / categorical / numeric columns (detected or named)
    classic.py    scikit-learn methods: TF-IDF + linear models; linear, forests, boosting
    neural.py     MiniLM: SetFit-style few-shot, full fine-tuning, LoRA
    methods.py    every method by name
    compare.py    seeded stratified folds, the leaderboard, latency and size, time budget
    report.py     Markdown + HTML: confusion matrix, calibration, per class, worst errors
    artifacts.py  skops / safetensors + manifest.json, and loading them back safely
    registry.py   MLflow runs and the Model Registry (versions, aliases)
    train.py      `chatworks lab train` as a function
    serving.py    registered models for /v1/classify
    samples.py    example CSVs from installed packages (BBC News, penguins)
"""
