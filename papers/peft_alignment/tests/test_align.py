"""Alignment runs at toy sizes: the Table 6 adapters land where the paper puts them, DPO's reference is the
adapter-disabled model, QLoRA trains a 4-bit base, SFT's loss covers the completion only, and a run is
deterministic for a seed."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from papers.peft_alignment import align, data
from papers.peft_alignment.config import ALL_PROJ, DataConfig, DPOMethodConfig, MethodConfig, QuantConfig
from shared.lm_family import ModelSpec, world
from shared.lm_family.train import new_model, save_model
from shared.text.tokenizer import train_bpe

# Wide enough for bitsandbytes' packed CPU layout (out_features multiples of 32, in_features of 64; align.py)
TOY = ModelSpec(hidden_size=64, num_layers=2, num_heads=2, num_kv_heads=1, intermediate_size=128)
SFT = MethodConfig(steps=2, batch_size=2, lr=1e-2, lora_r=8, lora_alpha=16, max_length=96, optimizer="adamw_torch")
DPO = dataclasses.replace(DPOMethodConfig(), steps=2, batch_size=2, lr=1e-2, lora_r=4, lora_alpha=8, max_length=96)


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory):
    pairs = data.local_pairs("bt", DataConfig(n_pairs=20), 0)
    texts = [world.chat_text(p["prompt"] + p["chosen"] + p["rejected"]) for s in pairs.values() for p in s]
    tok = train_bpe(texts, 400)
    path = tmp_path_factory.mktemp("base") / "base"
    save_model(new_model(TOY, tok, seed=0), tok, path)
    return str(path)


@pytest.fixture(scope="module")
def pairs():
    return data.local_pairs("bt", DataConfig(n_pairs=8), 0)["harmless"]


def _tok(path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(path)


def _logits(model, tok, text="How do I bake bread?"):
    ids = tok(text, return_tensors="pt")["input_ids"]
    with torch.no_grad():
        return model(input_ids=ids).logits


def test_table6_adapters_target_the_papers_modules(base_dir, pairs):
    tok = _tok(base_dir)
    sft, _ = align.train("sft", align.load_base(base_dir, "lora", QuantConfig()), tok, pairs, SFT, seed=0)
    names = {n.split(".lora_")[0].split(".")[-1] for n, p in sft.named_parameters() if p.requires_grad}
    assert names == {"q_proj", "v_proj"}
    h, kv = TOY.hidden_size, TOY.num_kv_heads * TOY.hidden_size // TOY.num_heads
    r = SFT.lora_r
    assert sum(p.numel() for p in sft.parameters() if p.requires_grad) == TOY.num_layers * r * ((h + h) + (h + kv))
    dpo, info = align.train("dpo", align.load_base(base_dir, "lora", QuantConfig()), tok, pairs, DPO, seed=0)
    assert {n.split(".lora_")[0].split(".")[-1] for n, p in dpo.named_parameters() if p.requires_grad} == set(ALL_PROJ)
    assert info["reward_accuracy"]  # trl logged DPO's reward statistics


def test_dpo_reference_is_the_model_with_the_adapter_disabled(base_dir, pairs):
    from transformers import AutoModelForCausalLM

    tok = _tok(base_dir)
    original = AutoModelForCausalLM.from_pretrained(base_dir).eval()
    model, _ = align.train("dpo", align.load_base(base_dir, "lora", QuantConfig()), tok, pairs, DPO, seed=0)
    assert not torch.allclose(_logits(model, tok), _logits(original, tok), atol=1e-4)  # the adapter learned
    with model.disable_adapter():
        assert torch.equal(_logits(model, tok), _logits(original, tok))  # what trl scores as the reference


def test_qlora_trains_a_4bit_base_and_reloads_to_the_same_logits(base_dir, pairs, tmp_path, bnb_cpu_path):
    import bitsandbytes as bnb
    from safetensors.torch import load_file

    tok = _tok(base_dir)
    model, info = align.train("sft", align.load_base(base_dir, "qlora", QuantConfig()), tok, pairs, SFT, seed=0)
    quantized = [m for m in model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert len(quantized) == 7 * TOY.num_layers
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n for n in trainable)
    model.save_pretrained(str(tmp_path / "peft"))  # peft's own save, before anything is packed
    logits = _logits(model, tok)  # evaluating switches the 4-bit layers to the forced path's layout
    packed = {getattr(m.weight.quant_state, "packing_format_for_cpu", False) for m in quantized}
    assert packed == {bnb_cpu_path == "packed"}
    align.save_adapter(model, tmp_path / "adapter")
    saved, reference = (load_file(tmp_path / d / "adapter_model.safetensors") for d in ("adapter", "peft"))
    assert saved and saved.keys() == reference.keys() and all(torch.equal(saved[k], reference[k]) for k in saved)
    again = align.load_adapter(base_dir, tmp_path / "adapter", "qlora", QuantConfig())
    assert torch.equal(logits, _logits(again, tok))  # what a resumed run evaluates
    assert torch.equal(logits, _logits(model, tok))  # saving left the evaluated model as it was


def test_sft_loss_covers_only_the_completion(base_dir, pairs):
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    tok = _tok(base_dir)
    args = align.training_args("sft", SFT, "/tmp/unused-sft", 0, 1, "cpu")
    trainer = SFTTrainer(
        model=align.load_base(base_dir, "lora", QuantConfig()),
        args=SFTConfig(**args),
        train_dataset=Dataset.from_list(data.sft_examples(pairs[:1])),
        processing_class=tok,
        peft_config=align.lora_config(SFT),
    )
    batch = next(iter(trainer.get_train_dataloader()))
    ids, labels = batch["input_ids"][0], batch["labels"][0]
    trained = tok.decode(ids[labels != -100])
    assert trained.startswith(pairs[0]["chosen"][0]["content"])  # the chosen reply (then end-of-turn tokens)
    assert pairs[0]["prompt"][0]["content"] not in trained  # the prompt is masked out
    assert pairs[0]["prompt"][0]["content"] in tok.decode(ids[labels == -100])


def test_a_run_is_deterministic_for_its_seed(base_dir, pairs):
    tok = _tok(base_dir)

    def adapter_weights(seed):
        model, _ = align.train("sft", align.load_base(base_dir, "lora", QuantConfig()), tok, pairs, SFT, seed=seed)
        return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}

    a, b, c = adapter_weights(0), adapter_weights(0), adapter_weights(1)
    assert a and a.keys() == b.keys() == c.keys()
    assert all(torch.equal(a[n], b[n]) for n in a)
    assert any(not torch.equal(a[n], c[n]) for n in a)


def test_unknown_method_and_adapter_are_clear_errors(base_dir, pairs):
    with pytest.raises(ValueError, match="unknown adapter 'ia3'; valid: lora, qlora"):
        align.load_base(base_dir, "ia3", QuantConfig())
    with pytest.raises(ValueError, match="unknown method 'kto'; valid: sft, dpo"):
        align.train("kto", align.load_base(base_dir, "lora", QuantConfig()), _tok(base_dir), pairs, SFT, seed=0)


def test_dpo_sft_term_raises_the_chosen_replys_likelihood(base_dir, pairs):
    """dpo.sft_weight (ours) adds trl's SFT loss on the chosen reply: the same run with it ends with the chosen
    replies likelier than plain DPO leaves them; at 0 the trl arguments are plain DPO's."""
    from shared.lm_family import evaluate as lm_eval

    tok = _tok(base_dir)
    assert "loss_type" not in align.training_args("dpo", DPO, "/tmp/unused-dpo", 0, 1, "cpu")
    with_sft = dataclasses.replace(DPO, steps=4, sft_weight=1.0)
    assert align.training_args("dpo", with_sft, "/tmp/unused-dpo", 0, 1, "cpu")["loss_weights"] == [1.0, 1.0]

    def chosen_logp(m: DPOMethodConfig) -> float:
        model, _ = align.train("dpo", align.load_base(base_dir, "lora", QuantConfig()), tok, pairs, m, seed=0)
        contexts = [lm_eval.chat_prompt(tok, p["prompt"][0]["content"]) for p in pairs]
        replies = [p["chosen"][0]["content"] for p in pairs]
        return sum(lm_eval.continuation_logprobs(model, tok, list(zip(contexts, replies, strict=True))))

    assert chosen_logp(with_sft) > chosen_logp(dataclasses.replace(with_sft, sft_weight=0.0)) + 1.0
