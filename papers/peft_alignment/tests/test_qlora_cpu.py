"""QLoRA on both of bitsandbytes' CPU paths (align.py's docstring): each forced path trains through a LoRA on
the 4-bit base and evaluates as a float32 model holding the dequantized weights does, the two paths agree,
and the layers the packed layout cannot hold are exactly the ones bitsandbytes' own packing rejects."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from papers.peft_alignment import align, data
from papers.peft_alignment.config import DataConfig, DPOMethodConfig, QuantConfig
from papers.peft_alignment.tests.conftest import CPU_PATHS
from shared.lm_family import ModelSpec, world
from shared.lm_family.train import new_model, save_model
from shared.text.tokenizer import train_bpe

# q, k, v, o, gate and up fit the packed layout; down_proj (in_features 96, not a multiple of 64) does not
SPEC = ModelSpec(hidden_size=64, num_layers=2, num_heads=2, num_kv_heads=1, intermediate_size=96)
LORA = dataclasses.replace(DPOMethodConfig(), lora_r=4, lora_alpha=8, lora_dropout=0.0)  # all seven projections
# The packed kernel computes in bfloat16 (8-bit mantissa): logits within 2% of their range of the float32
# reference (measured: 0.6%; the unquantized weights miss it by 17%); the dequant path computes in float32.
PACKED_TOL = 0.02


@pytest.fixture(scope="module")
def base_dir(tmp_path_factory) -> str:
    """A seeded random Llama whose projections have unit-scale outputs (so logits are O(1), not ~0)."""
    pairs = data.local_pairs("bt", DataConfig(n_pairs=10), 0)
    tok = train_bpe([world.chat_text(p["prompt"] + p["chosen"]) for s in pairs.values() for p in s], 300)
    model = new_model(SPEC, tok, seed=0)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.Linear):
                m.weight.normal_(0.0, m.in_features**-0.5, generator=gen)
    path = tmp_path_factory.mktemp("qlora") / "base"
    save_model(model, tok, path)
    return str(path)


def _ids() -> torch.Tensor:
    return torch.randint(5, 300, (2, 12), generator=torch.Generator().manual_seed(1))


def test_a_model_evaluated_on_the_packed_path_is_not_trained(base_dir):
    """The packed kernel has no backward (gradients would silently stop at those layers): train refuses."""
    import bitsandbytes.functional as bnb_functional

    if not bnb_functional.has_avx512bf16():
        pytest.skip("bitsandbytes' packed CPU path needs AVX512-BF16, which this CPU lacks")
    model = align.load_base(base_dir, "qlora", QuantConfig())
    assert align.packed_for_cpu_inference(model) == []
    with torch.no_grad():
        model.eval()(input_ids=_ids())
    assert len(align.packed_for_cpu_inference(model)) == 6 * SPEC.num_layers  # all but down_proj
    with pytest.raises(ValueError, match=r"train: 12 4-bit layers \(first model.layers.0.self_attn.q_proj\)"):
        align.train("sft", model, None, [], LORA, seed=0)


def packed_layers(model) -> dict[str, bool]:
    """Each 4-bit layer's name -> whether bitsandbytes has switched it to the packed layout."""
    import bitsandbytes as bnb

    return {
        name: bool(getattr(m.weight.quant_state, "packing_format_for_cpu", False))
        for name, m in model.named_modules()
        if isinstance(m, bnb.nn.Linear4bit)
    }


def _reference(base_dir: str, qmodel):
    """The float32 model with each quantized layer's weight replaced by its dequantized NF4 weight."""
    import bitsandbytes as bnb
    from bitsandbytes.functional import dequantize_4bit
    from transformers import AutoModelForCausalLM

    ref = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    quantized = [(n, m) for n, m in qmodel.named_modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert len(quantized) == 7 * SPEC.num_layers  # every projection is 4-bit (the LM head is left float)
    for name, m in quantized:
        assert not getattr(m.weight.quant_state, "packing_format_for_cpu", False)  # not yet repacked
        ref.get_submodule(name).weight.data = dequantize_4bit(m.weight.data, m.weight.quant_state).float()
    return ref


def _with_lora(model):
    """The same seeded, non-zero LoRA (A and B) on all seven projections, whatever the base."""
    from peft import get_peft_model

    model = get_peft_model(model, align.lora_config(LORA))
    gen = torch.Generator().manual_seed(2)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters()):
            if "lora_" in name:
                p.copy_(torch.randn(p.shape, generator=gen) * 0.1)
    return model


def _train_step_and_eval(model, ids):
    """One training-mode forward and backward (loss, LoRA grads), then eval-mode logits without grad."""
    model.train()
    out = model(input_ids=ids, labels=ids)
    out.loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}
    model.eval()
    with torch.no_grad():
        logits = model(input_ids=ids).logits
    return out.loss.detach(), grads, logits


def _assert_close_to_range(a: torch.Tensor, ref: torch.Tensor, tol: float) -> None:
    err, scale = (a - ref).abs().max().item(), (ref.max() - ref.min()).item()
    assert scale > 1.0  # the reference logits are spread (not a near-constant that anything matches)
    assert err <= tol * scale, f"max error {err:.4g} above {tol} x logit range {scale:.4g}"


def test_qlora_on_each_cpu_path_matches_the_dequantized_float32_model(base_dir, bnb_cpu_path):
    qlora = align.load_base(base_dir, "qlora", QuantConfig())
    ref = _with_lora(_reference(base_dir, qlora))
    qlora = _with_lora(qlora)
    ids = _ids()
    loss, grads, logits = _train_step_and_eval(qlora, ids)
    ref_loss, ref_grads, ref_logits = _train_step_and_eval(ref, ids)
    # training always takes the dequant path: the same float32 arithmetic as the reference
    torch.testing.assert_close(loss, ref_loss, rtol=1e-5, atol=1e-6)
    assert len(grads) == 2 * 7 * SPEC.num_layers and grads.keys() == ref_grads.keys()
    for name, g in ref_grads.items():
        assert g.abs().max() > 0, name  # every LoRA matrix gets a gradient
        torch.testing.assert_close(grads[name], g, rtol=1e-4, atol=1e-6)
    # evaluation: the path asked for, on exactly the layers it can hold
    packed = packed_layers(qlora)
    assert len(packed) == 7 * SPEC.num_layers
    assert packed == {n: bnb_cpu_path == "packed" and "down_proj" not in n for n in packed}
    if bnb_cpu_path == "packed":
        _assert_close_to_range(logits, ref_logits, PACKED_TOL)
    else:
        torch.testing.assert_close(logits, ref_logits, rtol=1e-5, atol=1e-5)


def test_the_two_cpu_paths_agree(base_dir, monkeypatch):
    import bitsandbytes.functional as bnb_functional
    import bitsandbytes.nn.modules as bnb_modules

    if not bnb_functional.has_avx512bf16():
        pytest.skip("bitsandbytes' packed CPU path needs AVX512-BF16, which this CPU lacks")
    logits = {}
    for path in CPU_PATHS:
        monkeypatch.setattr(bnb_modules, "has_avx512bf16", lambda path=path: path == "packed")
        model = _with_lora(align.load_base(base_dir, "qlora", QuantConfig())).eval()
        with torch.no_grad():
            logits[path] = model(input_ids=_ids()).logits
        packed = packed_layers(model)
        assert len(packed) == 7 * SPEC.num_layers and any(packed.values()) == (path == "packed")
    assert not torch.equal(logits["packed"], logits["dequant"])  # two different kernels ran
    _assert_close_to_range(logits["packed"], logits["dequant"], PACKED_TOL)


@pytest.mark.parametrize(
    ("out_features", "in_features"), [(32, 32), (16, 64), (32, 64), (48, 128), (64, 96), (96, 192)]
)
def test_packable_is_what_bitsandbytes_can_pack(out_features, in_features):
    """align.packed_cpu_misfit against bitsandbytes' own repacking (plain torch, so it runs on any CPU)."""
    import bitsandbytes as bnb
    from bitsandbytes.functional import _convert_weight_packed_for_cpu

    layer = bnb.nn.Linear4bit(in_features, out_features, bias=False, quant_type="nf4")
    layer.weight = bnb.nn.Params4bit(torch.randn(out_features, in_features), requires_grad=False, quant_type="nf4")
    layer = layer.to("cpu")  # quantizes
    why = align.packed_cpu_misfit(out_features, in_features, layer.weight.blocksize)
    try:
        _convert_weight_packed_for_cpu(layer.weight.data, layer.weight.quant_state)
        packs = True
    except (RuntimeError, AssertionError):
        packs = False
    assert packs == (why == ""), why
    if out_features % 32:
        assert f"out_features {out_features} is not a multiple of 32" in why
    if in_features % 64:
        assert f"in_features {in_features} is not a multiple of the blocksize 64" in why


def test_too_narrow_layers_are_kept_off_the_packed_path(base_dir, monkeypatch):
    """load_base keeps down_proj (in_features 96) on the dequant path where bitsandbytes would pack it; this
    only builds the model (no packed kernel runs), so it checks the choice on any CPU."""
    import bitsandbytes as bnb
    import bitsandbytes.nn.modules as bnb_modules

    monkeypatch.setattr(bnb_modules, "has_avx512bf16", lambda: True)
    model = align.load_base(base_dir, "qlora", QuantConfig())
    on = {n: m.support_avx512bf16_for_cpu for n, m in model.named_modules() if isinstance(m, bnb.nn.Linear4bit)}
    assert len(on) == 7 * SPEC.num_layers
    assert on == {n: not n.endswith("down_proj") for n in on}
