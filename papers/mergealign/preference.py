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


def safety_stop(tok, prompts: dict, target: float, every: int, max_new_tokens: int = 16):
    """A TrainerCallback that stops training once the model refuses >= `target` of the check's harmful
    (training) prompts; it records each check's refusal rates (harmful and benign look-alikes) and step."""
    from transformers import TrainerCallback

    from shared.lm_family import evaluate as lm_eval

    class SafetyStop(TrainerCallback):
        def __init__(self) -> None:
            self.history: list[dict] = []
            self.seconds = 0.0

        def on_step_end(self, args, state, control, model=None, **kwargs):
            if every <= 0 or state.global_step % every:
                return control
            t0 = time.perf_counter()
            was_training = model.training
            model.eval()
            harm = lm_eval.generate(model, tok, prompts["check_harmful"], max_new_tokens)
            ben = lm_eval.generate(model, tok, prompts["check_benign"], max_new_tokens)
            if was_training:
                model.train()
            rec = {
                "step": state.global_step,
                "refusal_harmful": lm_eval.refusal_rate(harm),
                "refusal_benign": lm_eval.refusal_rate(ben) if ben else float("nan"),
            }
            self.history.append(rec)
            self.seconds += time.perf_counter() - t0
            log.info("preference check at step %d: %s", state.global_step, rec)
            if rec["refusal_harmful"] >= target:
                control.should_training_stop = True
            return control

    return SafetyStop()


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
    prompts: dict | None = None,
) -> dict:
    """Align the expert with `method` ('dpo' or 'orpo'); save the merged model; return losses and seconds.
    `prompts` (the real-prompt world): its preference pairs and, with `cfg.target_safety`, the stopping check's
    prompts; training then stops at the stated safety or at `cfg.steps`, whichever comes first."""
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
        "lr_scheduler_type": "constant" if cfg.target_safety > 0 else "linear",
        "beta": cfg.beta,
        "max_length": cfg.max_length,
        "logging_steps": max(1, cfg.steps // 5),
        "seed": seed,
        "data_seed": seed,
        **cpu_settings(num_threads, device),
    }
    if prompts is not None and pairs is None:
        pairs = prompts["pairs"]
    stop = safety_stop(tok, prompts, cfg.target_safety, cfg.check_every) if prompts and cfg.target_safety else None
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        if method == "dpo":
            from trl import DPOConfig, DPOTrainer

            trainer = DPOTrainer(
                model=model,
                ref_model=None,
                args=DPOConfig(
                    output_dir=tmp,
                    **common,
                    **(
                        {"loss_type": ["sigmoid", "sft"], "loss_weights": [1.0, cfg.dpo_sft_weight]}
                        if cfg.dpo_sft_weight > 0
                        else {}
                    ),
                ),
                train_dataset=preference_dataset(cfg, seed, pairs),
                processing_class=tok,
                peft_config=lora,
                callbacks=[stop] if stop else None,
            )
        else:
            from trl.experimental.orpo import ORPOConfig, ORPOTrainer

            trainer = ORPOTrainer(
                model=model,
                args=ORPOConfig(output_dir=tmp, **common),
                train_dataset=preference_dataset(cfg, seed, pairs),
                processing_class=tok,
                peft_config=lora,
                callbacks=[stop] if stop else None,
            )
        trainer.train()
    seconds = time.perf_counter() - start
    merged = trainer.model.merge_and_unload()
    merged.eval()
    save_model(merged, tok, out_dir)
    losses = [float(e["loss"]) for e in trainer.state.log_history if "loss" in e]
    steps = int(trainer.state.global_step)
    log.info("%s on %s: %d steps in %.1f s, loss %s", method, Path(expert_dir).name, steps, seconds, losses)
    out = {"loss": losses, "seconds": seconds, "steps": steps, "cap": cfg.steps}
    if stop is not None:
        out["checks"], out["check_seconds"] = stop.history, stop.seconds
        out["reached"] = bool(stop.history and stop.history[-1]["refusal_harmful"] >= cfg.target_safety)
        out["target_safety"] = cfg.target_safety
    return out
