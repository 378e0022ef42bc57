"""Starting a SparkSession for chatworks' jobs: `local[N]` on this machine or a cluster URL."""

from __future__ import annotations

import os
import sys
import warnings
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pyspark.sql import SparkSession


def start_session(master: str, app_name: str = "chatworks") -> SparkSession:
    """A session on `master`, without the web UI. Locally it binds to the loopback address
    and its Python workers run this interpreter (the one with chatworks installed); on a
    cluster the executors' Python is the cluster's setting."""
    # PySpark warns about pandas 3 on import; chatworks' jobs use RDDs, never pandas.
    warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas")
    from pyspark.sql import SparkSession

    builder = (
        SparkSession.builder.master(master)
        .appName(app_name)
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")  # the CLI prints its own summary
    )
    if master.startswith("local"):
        # PySpark starts its workers with PYSPARK_PYTHON (default: whatever `python3` is first
        # on PATH, which may lack chatworks' dependencies).
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        # Every local endpoint (block manager, shuffle) on the loopback address, not the
        # first network interface's.
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        cores = master.removeprefix("local").strip("[]") or "1"
        builder = (
            builder.config("spark.driver.host", "127.0.0.1")
            .config("spark.driver.bindAddress", "127.0.0.1")
            # The default 200 shuffle partitions are 200 tiny tasks on a laptop.
            .config("spark.sql.shuffle.partitions", cores if cores.isdigit() else "4")
        )
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("ERROR")
    return session
