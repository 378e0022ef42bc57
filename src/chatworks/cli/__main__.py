"""`python -m chatworks.cli` (what `torchrun` needs, since it starts modules, not scripts)."""

from chatworks.cli import app

app()
