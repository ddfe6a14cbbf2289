"""Training steps of the family: causal-LM (continued) pretraining on token streams, and SFT with trl.

Pretraining is a plain PyTorch loop (random contiguous blocks of a token stream, AdamW, linear warmup
then cosine decay): deterministic for a seed and free of Trainer overhead at toy sizes. Instruction
tuning uses trl's SFTTrainer on prompt/completion chat data (loss on the completion only), with the CPU
settings that trl 1.16 needs (bf16 off, no gradient checkpointing, no reporting).
"""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from shared.lm_family.spec import ModelSpec, TrainSpec
from shared.progress import get_logger, progress

if TYPE_CHECKING:
    from transformers import LlamaForCausalLM, PreTrainedTokenizerFast

log = get_logger(__name__)


def cpu_settings(num_threads: int, device: str = "cpu") -> dict:
    """TrainingArguments overrides every trl/transformers trainer here needs on a CPU (or on one GPU)."""
    import torch

    if num_threads > 0:
        torch.set_num_threads(num_threads)
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    return {
        "bf16": False,
        "fp16": False,
        "use_cpu": device == "cpu",
        "report_to": "none",
        "gradient_checkpointing": False,
        "save_strategy": "no",
        "dataloader_num_workers": 0,
        "disable_tqdm": True,
    }


def new_model(spec: ModelSpec, tokenizer: PreTrainedTokenizerFast, seed: int) -> LlamaForCausalLM:
    """A freshly initialised LlamaForCausalLM of `spec`'s shape (seeded)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=spec.hidden_size,
        intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.num_layers,
        num_attention_heads=spec.num_heads,
        num_key_value_heads=spec.num_kv_heads,
        max_position_embeddings=spec.max_position_embeddings,
        tie_word_embeddings=False,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return LlamaForCausalLM(config)


def lr_at(step: int, spec: TrainSpec) -> float:
    """Linear warmup to spec.lr, then cosine decay to 10% of it at the last step."""
    if step < spec.warmup_steps:
        return spec.lr * (step + 1) / spec.warmup_steps
    progress_frac = (step - spec.warmup_steps) / max(1, spec.steps - spec.warmup_steps)
    return spec.lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress_frac))))


def sample_blocks(stream: np.ndarray, n: int, seq_len: int, rng: np.random.Generator) -> np.ndarray:
    """n random contiguous windows of seq_len tokens (the stream is repeated when it is shorter)."""
    if len(stream) <= seq_len + 1:
        stream = np.tile(stream, (seq_len + 1) // max(1, len(stream)) + 2)
    starts = rng.integers(0, len(stream) - seq_len, size=n)
    return np.stack([stream[s : s + seq_len] for s in starts]).astype(np.int64)


def pretrain(
    model: LlamaForCausalLM,
    streams: list[tuple[np.ndarray, float]],
    spec: TrainSpec,
    seed: int,
    desc: str = "pretrain",
    device: str = "cpu",
) -> list[float]:
    """Train `model` in place on weighted token streams [(stream, share of each batch)]; returns losses."""
    import torch

    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    counts = _batch_split(spec.batch_size, [w for _, w in streams])
    model.to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=spec.lr, weight_decay=spec.weight_decay, betas=(0.9, 0.95))
    model.train()
    losses = []
    for step in progress(range(spec.steps), desc=desc):
        for group in opt.param_groups:
            group["lr"] = lr_at(step, spec)
        batch = np.concatenate(
            [sample_blocks(s, k, spec.seq_len, rng) for (s, _), k in zip(streams, counts, strict=True) if k]
        )
        ids = torch.from_numpy(batch).to(device)
        loss = model(input_ids=ids, labels=ids).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(float(loss))
        if step % max(1, spec.steps // 5) == 0 or step == spec.steps - 1:
            log.info("%s step %d/%d loss %.3f", desc, step + 1, spec.steps, losses[-1])
    model.eval()
    model.to("cpu")
    return losses


def _batch_split(batch_size: int, weights: list[float]) -> list[int]:
    """Rows per stream: proportional to weights, at least one for a positive weight, summing to batch_size."""
    total = sum(weights)
    counts = [max(1, round(batch_size * w / total)) if w > 0 else 0 for w in weights]
    counts[int(np.argmax(weights))] += batch_size - sum(counts)
    return counts


def sft(
    model: LlamaForCausalLM,
    tokenizer: PreTrainedTokenizerFast,
    examples: list[dict],
    spec: TrainSpec,
    seed: int,
    num_threads: int = 2,
    device: str = "cpu",
    lora: dict | None = None,
) -> tuple[LlamaForCausalLM, list[float]]:
    """Supervised fine-tuning with trl's SFTTrainer on [{prompt, completion}] chat examples (loss on the
    completion) or [{text}] documents (loss on every token). With `lora` ({r, alpha}), a LoRA adapter on every
    linear layer is trained instead and merged back, so the returned model differs from the input by a
    low-rank update per matrix (a task vector of rank <= r)."""
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    with tempfile.TemporaryDirectory() as tmp:
        args = SFTConfig(
            output_dir=tmp,
            max_steps=spec.steps,
            per_device_train_batch_size=spec.batch_size,
            learning_rate=spec.lr,
            lr_scheduler_type="cosine",
            warmup_steps=spec.warmup_steps,
            weight_decay=spec.weight_decay,
            max_length=spec.seq_len,
            logging_steps=max(1, spec.steps // 5),
            seed=seed,
            data_seed=seed,
            completion_only_loss="completion" in examples[0],
            **cpu_settings(num_threads, device),
        )
        peft_config = None
        if lora:
            from peft import LoraConfig

            peft_config = LoraConfig(
                r=lora["r"],
                lora_alpha=lora["alpha"],
                lora_dropout=0.0,
                target_modules="all-linear",
                task_type="CAUSAL_LM",
            )
        trainer = SFTTrainer(
            model=model,
            args=args,
            train_dataset=Dataset.from_list(examples),
            processing_class=tokenizer,
            peft_config=peft_config,
        )
        trainer.train()
    if lora:
        trainer.model = trainer.model.merge_and_unload()
    losses = [e["loss"] for e in trainer.state.log_history if "loss" in e]
    log.info("sft: %d steps, loss %s", spec.steps, " -> ".join(f"{x:.3f}" for x in losses[:1] + losses[-1:]))
    model = trainer.model.to("cpu")
    model.eval()
    return model, losses


def save_model(model, tokenizer, directory: str | Path) -> Path:
    """Save a Hub-style folder (config, model.safetensors, tokenizer) atomically: build in a sibling
    temp folder, then rename, so a crash never leaves a folder that looks complete."""
    from shared.io import atomic_dir

    with atomic_dir(directory) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
    return Path(directory)


def load_model(directory: str | Path):
    """A saved family member in float32, in eval mode."""
    import torch
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(str(directory), dtype=torch.float32)
    model.eval()
    return model
