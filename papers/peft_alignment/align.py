"""One alignment run: SFT or DPO (trl) of a pre-trained or instruction-tuned model with a LoRA or QLoRA
adapter (peft, bitsandbytes), with the paper's Table 6 recipe.

SFT trains on the chosen responses (loss on the completion only); DPO on (prompt, chosen, rejected)
with `ref_model=None`, so the reference is the same network with the adapter disabled. QLoRA loads the
base in 4-bit NF4 (bitsandbytes `Linear4bit`) and prepares it with `prepare_model_for_kbit_training`.

bitsandbytes has two CPU paths for a 4-bit layer. A training-mode forward, or one whose input needs gradients,
dequantizes the NF4 weight to the compute dtype and multiplies (the "dequant" path). On a CPU with AVX512-BF16,
a layer's first eval-mode forward without gradients instead repacks its weight for a bfloat16 kernel (the
"packed" path, `bitsandbytes.functional._convert_weight_packed_for_cpu`), for good: the packed kernel has no
backward, so `train` refuses a model that has been evaluated that way. The packed layout holds only layers
whose out_features are a multiple of 32 and whose in_features are a multiple of the quantization blocksize
(64); on any other layer bitsandbytes crashes (`shape '[32, 0]' is invalid`, `N must be divisible by
block_n`), so `load_base` keeps such layers on the dequant path (`fit_packed_cpu_path`). They stay 4-bit NF4.
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
PACKED_ROWS = 32  # the packed CPU layout groups output rows in blocks of 32 (bitsandbytes' block_n)


def packed_cpu_misfit(out_features: int, in_features: int, blocksize: int = 64) -> str:
    """Why bitsandbytes' packed CPU layout cannot hold a 4-bit layer of this shape ('' when it can)."""
    why = [f"out_features {out_features} is not a multiple of {PACKED_ROWS}"] if out_features % PACKED_ROWS else []
    if in_features % blocksize:
        why.append(f"in_features {in_features} is not a multiple of the blocksize {blocksize}")
    return "; ".join(why)


def fit_packed_cpu_path(model) -> list[str]:
    """Keep the 4-bit layers the packed CPU path cannot hold on the dequant path; returns 'name: why' for each.

    bitsandbytes decides per layer, when the layer is built, from `has_avx512bf16()`
    (`Linear4bit.support_avx512bf16_for_cpu`); where that is off (other CPUs, other bitsandbytes versions)
    this changes nothing."""
    import bitsandbytes as bnb

    kept = []
    for name, layer in model.named_modules():
        if isinstance(layer, bnb.nn.Linear4bit) and getattr(layer, "support_avx512bf16_for_cpu", False):
            why = packed_cpu_misfit(layer.out_features, layer.in_features, layer.weight.blocksize)
            if why:
                layer.support_avx512bf16_for_cpu = False
                kept.append(f"{name}: {why}")
    if kept:
        log.info(
            "%d 4-bit layers stay on the dequant CPU path (shapes the packed layout cannot hold): %s",
            len(kept),
            kept[:3],
        )
    return kept


def packed_for_cpu_inference(model) -> list[str]:
    """The 4-bit layers an eval-mode forward has switched to the packed CPU layout."""
    return [
        name
        for name, m in model.named_modules()
        if getattr(getattr(getattr(m, "weight", None), "quant_state", None), "packing_format_for_cpu", False)
    ]


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
    fit_packed_cpu_path(model)
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


def dpo_loss(m: MethodConfig) -> dict:
    """trl's DPO loss settings: plain DPO (the paper's), or DPO plus an SFT term on the chosen reply
    (`sft_weight`, ours), which raises the refusal's likelihood instead of only lowering the compliance's."""
    if not m.sft_weight:
        return {"beta": m.beta}
    return {"beta": m.beta, "loss_type": ["sigmoid", "sft"], "loss_weights": [1.0, m.sft_weight]}


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
        **(dpo_loss(m) if method == "dpo" else {"completion_only_loss": True}),
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

    packed = packed_for_cpu_inference(model)
    if packed:
        raise ValueError(
            f"train: {len(packed)} 4-bit layers (first {packed[0]}) were repacked for CPU inference by an eval-mode "
            "forward; bitsandbytes cannot train through them. Load a fresh base (load_base) to train."
        )
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


def save_adapter(model, directory: str | Path) -> None:
    """Save the adapter's weights only (what `save_pretrained` writes), without reading the whole state dict:
    bitsandbytes 0.50's `Linear4bit.state_dict()` unpacks a packed layer but leaves its block scales in the
    packed order and in bfloat16, so every later output of a layer whose in_features span more than one
    block is wrong (an evaluated QLoRA model saved afterwards would then evaluate differently; tested)."""
    adapter = {name: p.detach() for name, p in model.named_parameters() if "lora_" in name}
    if not adapter:
        raise ValueError("save_adapter: the model has no LoRA weights (was it trained with a peft_config?)")
    model.save_pretrained(str(directory), state_dict=adapter)


def load_adapter(base_path: str, adapter_dir: str | Path, adapter: str, quant: QuantConfig, device: str = "cpu"):
    """A saved adapter on its base (4-bit for QLoRA), in eval mode."""
    from peft import PeftModel

    model = PeftModel.from_pretrained(load_base(base_path, adapter, quant, device), str(adapter_dir))
    model.eval()
    return model
