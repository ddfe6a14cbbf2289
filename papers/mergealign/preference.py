"""The preference-alignment baselines: DPO and ORPO on the domain expert (trl), with LoRA merged back.

As the surveys report for the paper (LoRA r 16, alpha 32), on generated preference pairs at local
scales (harmful -> refusal preferred over compliance; benign -> help preferred over refusal) and on
HH-RLHF at full scale. The LoRA adapter is merged into the expert so the result is a plain model folder.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from papers.mergealign.config import PreferenceConfig
from shared.lm_family import world
from shared.lm_family.train import cpu_settings, load_model, save_model
from shared.progress import get_logger

log = get_logger(__name__)
METHODS = ("dpo", "orpo")


def preference_dataset(cfg: PreferenceConfig, seed: int, pairs: list[dict] | None = None):
    """The generated pairs (local scales) or the given ones (full: HH-RLHF, hub.hh_preference_pairs)."""
    from datasets import Dataset

    return Dataset.from_list(pairs if pairs is not None else world.preference_pairs(cfg.n_pairs, seed))


def train_preference(
    method: str,
    expert_dir: str | Path,
    out_dir: str | Path,
    cfg: PreferenceConfig,
    seed: int,
    num_threads: int = 2,
    pairs: list[dict] | None = None,
    device: str = "cpu",
) -> dict:
    """Align the expert with `method` ('dpo' or 'orpo'); save the merged model; return losses and seconds."""
    from peft import LoraConfig
    from transformers import AutoTokenizer

    if method not in METHODS:
        raise ValueError(f"unknown preference method {method!r}; valid: {', '.join(METHODS)}")
    tok = AutoTokenizer.from_pretrained(str(expert_dir))
    model = load_model(expert_dir)
    lora = LoraConfig(
        r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM"
    )
    common = {
        "max_steps": cfg.steps,
        "per_device_train_batch_size": cfg.batch_size,
        "learning_rate": cfg.lr,
        "lr_scheduler_type": "linear",
        "beta": cfg.beta,
        "max_length": cfg.max_length,
        "logging_steps": max(1, cfg.steps // 5),
        "seed": seed,
        "data_seed": seed,
        **cpu_settings(num_threads, device),
    }
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        if method == "dpo":
            from trl import DPOConfig, DPOTrainer

            trainer = DPOTrainer(
                model=model,
                ref_model=None,
                args=DPOConfig(output_dir=tmp, **common),
                train_dataset=preference_dataset(cfg, seed, pairs),
                processing_class=tok,
                peft_config=lora,
            )
        else:
            from trl.experimental.orpo import ORPOConfig, ORPOTrainer

            trainer = ORPOTrainer(
                model=model,
                args=ORPOConfig(output_dir=tmp, **common),
                train_dataset=preference_dataset(cfg, seed, pairs),
                processing_class=tok,
                peft_config=lora,
            )
        trainer.train()
    seconds = time.perf_counter() - start
    merged = trainer.model.merge_and_unload()
    merged.eval()
    save_model(merged, tok, out_dir)
    losses = [float(e["loss"]) for e in trainer.state.log_history if "loss" in e]
    log.info("%s on %s: %d steps in %.1f s, loss %s", method, Path(expert_dir).name, cfg.steps, seconds, losses)
    return {"loss": losses, "seconds": seconds, "steps": cfg.steps}
