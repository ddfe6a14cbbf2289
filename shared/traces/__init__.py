"""Kernel traces of web requests: collect them with tracefs, store them as Parquet, load them.

    python -m shared.traces collect --out DIR [--behaviours all] [--requests N] [--seed S]   (root)
    python -m shared.traces inspect DIR
    python -m shared.traces bench --out DIR                                                 (root)

Three papers read these datasets: syscall_novelty, syscall_args and request_analysis. A small real
dataset ships in shared/traces/sample so their mini runs need neither root nor tracefs.
"""

from pathlib import Path

from shared.traces.behaviours import BEHAVIOURS, NOVELTIES, Behaviour, parse_behaviours
from shared.traces.dataset import TraceDataset, load_dataset
from shared.traces.errors import TraceError

SAMPLE_DIR = Path(__file__).with_name("sample")

__all__ = [
    "BEHAVIOURS",
    "NOVELTIES",
    "SAMPLE_DIR",
    "Behaviour",
    "TraceDataset",
    "TraceError",
    "load_dataset",
    "parse_behaviours",
]
