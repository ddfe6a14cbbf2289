"""One alignment run: SFT or DPO (trl) of a pre-trained or instruction-tuned model with a LoRA or QLoRA
adapter (peft, bitsandbytes), with the paper's Table 6 recipe.

SFT trains on the chosen responses (loss on the completion only); DPO on (prompt, chosen, rejected)
with `ref_model=None`, so the reference is the same network with the adapter disabled. QLoRA loads the
base in 4-bit NF4 (bitsandbytes `Linear4bit`) and prepares it with `prepare_model_for_kbit_training`.
"""

from __future__ import annotations

import tempfile
import time
import warnings
from pathlib import Path

from papers.peft_alignment.config import MethodConfig, QuantConfig
from shared.lm_family.train import cpu_settings
from shared.progress import get_logger
from shared.seeding import seed_everything

log = get_logger(__name__)


def load_base(path: str, adapter: str, quant: QuantConfig, device: str = "cpu", dtype: str = "float32"):
    """The model to align: full precision for LoRA, 4-bit for QLoRA (prepared for k-bit training)."""
    import torch
    from transformers import AutoModelForCausalLM, BitsAndBytesConfig

    if adapter == "lora":
        model = AutoModelForCausalLM.from_pretrained(path, dtype=getattr(torch, dtype))
        return model.to(device)
    if adapter != "qlora":
        raise ValueError(f"unknown adapter {adapter!r}; valid: lora, qlora")
    from peft import prepare_model_for_kbit_training

    bnb = BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=quant.quant_type,
        bnb_4bit_use_double_quant=quant.double_quant,
        bnb_4bit_compute_dtype=getattr(torch, quant.compute_dtype),
    )
    model = AutoModelForCausalLM.from_pretrained(
        path, quantization_config=bnb, device_map=device, dtype=getattr(torch, quant.compute_dtype)
    )
    return prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)


def lora_config(m: MethodConfig):
    from peft import LoraConfig

    return LoraConfig(
        r=m.lora_r,
        lora_alpha=m.lora_alpha,
        lora_dropout=m.lora_dropout,
        target_modules=list(m.target_modules),
        bias="none",
        task_type="CAUSAL_LM",
    )


def training_args(method: str, m: MethodConfig, out: str, seed: int, num_threads: int, device: str) -> dict:
    return {
        "output_dir": out,
        "max_steps": m.steps,
        "per_device_train_batch_size": m.batch_size,
        "learning_rate": m.lr,
        "lr_scheduler_type": m.scheduler,
        "max_grad_norm": m.max_grad_norm,
        "weight_decay": m.weight_decay,
        "optim": m.optimizer,
        "adam_beta1": 0.9,
        "adam_beta2": 0.999,
        "max_length": m.max_length,
        "logging_steps": max(1, m.steps // 10),
        "seed": seed,
        "data_seed": seed,
        **({"beta": m.beta} if method == "dpo" else {"completion_only_loss": True}),
        **cpu_settings(num_threads, device),
    }


def train(
    method: str,
    model,
    tokenizer,
    pairs: list[dict],
    m: MethodConfig,
    seed: int,
    num_threads: int = 1,
    device: str = "cpu",
):
    """Align `model` in place with an adapter; returns (the PEFT model, losses, seconds)."""
    from datasets import Dataset

    from papers.peft_alignment.data import sft_examples

    seed_everything(seed)
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*Paged optimizers are not supported on CPU.*")
        args = training_args(method, m, tmp, seed, num_threads, device)
        if method == "sft":
            from trl import SFTConfig, SFTTrainer

            trainer = SFTTrainer(
                model=model,
                args=SFTConfig(**args),
                train_dataset=Dataset.from_list(sft_examples(pairs)),
                processing_class=tokenizer,
                peft_config=lora_config(m),
            )
        elif method == "dpo":
            from trl import DPOConfig, DPOTrainer

            trainer = DPOTrainer(
                model=model,
                ref_model=None,
                args=DPOConfig(**args),
                train_dataset=Dataset.from_list(pairs),
                processing_class=tokenizer,
                peft_config=lora_config(m),
            )
        else:
            raise ValueError(f"unknown method {method!r}; valid: sft, dpo")
        start = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - start
    logs = trainer.state.log_history
    info = {
        "loss": [float(e["loss"]) for e in logs if "loss" in e],
        "seconds": seconds,
        "steps_per_s": m.steps / seconds,
        "trainable_params": sum(p.numel() for p in trainer.model.parameters() if p.requires_grad),
    }
    if method == "dpo":
        info["reward_accuracy"] = [float(e["rewards/accuracies"]) for e in logs if "rewards/accuracies" in e]
        info["reward_margin"] = [float(e["rewards/margins"]) for e in logs if "rewards/margins" in e]
    peft_model = trainer.model
    for name, param in peft_model.named_parameters():  # trl trains QLoRA adapters in bfloat16: evaluate them in
        if "lora_" in name:  # float32, exactly as the saved adapter reloads, so a resumed run scores the same
            param.data = param.data.float()
    peft_model.eval()
    log.info("%s: %d steps in %.1f s, loss %s", method, m.steps, seconds, [round(x, 3) for x in info["loss"]])
    return peft_model, info


def load_adapter(base_path: str, adapter_dir: str | Path, adapter: str, quant: QuantConfig, device: str = "cpu"):
    """A saved adapter on its base (4-bit for QLoRA), in eval mode."""
    from peft import PeftModel

    model = PeftModel.from_pretrained(load_base(base_path, adapter, quant, device), str(adapter_dir))
    model.eval()
    return model
