"""Run by tests/test_engine.py under torchrun: one DDP step through the shared engine, then straight to exit.

Guards the engine's exit hook (shared.engine._destroy_process_group): gloo's worker threads release the
last all-reduce's work item (which holds a Python object) a moment after the main thread stops waiting on
it; without the hook a rank that reaches interpreter shutdown first aborts with SIGABRT. The main thread
here keeps the GIL from its last backward to shutdown (a long switch interval), which widens that window:
4 ranks abort on 8 of 8 launches without the hook, 0 of 8 with it.
"""

from __future__ import annotations

import os
import sys

import torch

from shared.engine import EngineConfig, make_fabric

if __name__ == "__main__":
    torch.set_num_threads(1)
    fabric = make_fabric(
        EngineConfig(accelerator="cpu", devices=int(os.environ["WORLD_SIZE"]), strategy="ddp", precision="32-true")
    )
    model = fabric.setup(torch.nn.Sequential(torch.nn.Linear(16, 16), torch.nn.Linear(16, 16)))
    fabric.backward(model(torch.randn(4, 16)).sum())
    if os.environ.get("DDP_EXIT_WITHOUT_HOOK") == "1":  # to measure the test's power by hand, never in CI
        import atexit

        from shared import engine

        atexit.unregister(engine._destroy_process_group)
    sys.setswitchinterval(100.0)
