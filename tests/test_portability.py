"""Same seed, same numbers on any CPU: each code path PyTorch may pick by CPU, forced in a subprocess.

torch chooses its ATen CPU kernels once, at import, by the CPU's instruction sets; ATEN_CPU_CAPABILITY=default
|avx2|avx512 forces one. torch 2.13 takes a known value without checking the CPU (DispatchStub.cpp), so a path
the CPU lacks would die of SIGILL: those are skipped, by /proc/cpuinfo; an unknown value is ignored with a
warning, which is why each child reports the path it really ran. This file runs the project's representative small
computations under every path this CPU has and compares them:

- bit for bit, what the project claims is CPU-independent: mergekit's merges of given parents (task arithmetic,
  SLERP, TIES, DARE-TIES: DARE's drop mask is drawn serially from torch's mt19937 and its L1 sums agree), the
  fake quantizer of quant_pretraining, and parents built from numpy's generator;
- within a tolerance, what is not: anything through a Llama/GPT forward or backward pass (attention's softmax
  and log-softmax run in lanes as wide as the vector unit) and torch's own normal initialisation (the
  default path draws Box-Muller normals with scalar libm, the AVX2/AVX-512 paths with vectorised Sleef).
  papers/mergealign/README.md ("Same seed, another CPU") says what this does to the published numbers.

Run as a script (`python tests/test_portability.py OUT.json`) it is the child that computes everything once.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import zlib
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # three children of ~8 CPU-seconds each (about 20 s wall on 2 idle cores)
REPO = Path(__file__).resolve().parents[1]
# ATEN_CPU_CAPABILITY value -> /proc/cpuinfo flags torch itself requires before it picks that path.
CAPABILITIES = {
    "default": (),
    "avx2": ("avx2", "fma"),
    "avx512": ("avx512f", "avx512vl", "avx512bw", "avx512dq", "fma"),
}
# Spread measured between the paths here (default, AVX2, AVX-512), times 25 to 100: loose enough for any conforming
# CPU, tight enough that a real change of the computation (one more step, another seed or batch) fails.
LOSS_RTOL = 1e-4  # measured: 2e-7 (lm_family fp32), 4e-6 (quantized GPT: a weight can land on the next level)
WEIGHT_ATOL = 1e-5  # measured: 1.2e-7 after 3 AdamW steps (weights ~0.02, lr 1e-3)
SCORE_ATOL = 1e-4  # measured: 3.8e-6 on summed continuation log-probabilities


def cpu_flags() -> set[str]:
    """The instruction-set flags of this CPU (empty where /proc/cpuinfo has none, e.g. not Linux x86)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.split(":", 1)[1].split())
    return set()


def _digest(tensors: dict) -> str:
    h = hashlib.sha256()
    for name in sorted(tensors):
        h.update(name.encode())
        h.update(tensors[name].contiguous().numpy().tobytes())
    return h.hexdigest()


# ----------------------------------------------------------------------------------------------- the child


def _parents(root: Path) -> dict[str, str]:
    """Base, expert and instruct Llamas whose weights come from numpy's generator (CPU-independent bits)."""
    import numpy as np
    import torch

    from shared.lm_family import ModelSpec
    from shared.lm_family.train import new_model, save_model
    from shared.text.tokenizer import train_bpe

    spec = ModelSpec(
        hidden_size=32, num_layers=2, num_heads=2, num_kv_heads=2, intermediate_size=64, max_position_embeddings=64
    )
    tok = train_bpe(["a small text to train a tokenizer on, twice over."] * 10, 280)
    paths = {}
    for i, name in enumerate(("base", "expert", "instruct")):
        model = new_model(spec, tok, seed=0)
        with torch.no_grad():
            for n, p in model.named_parameters():
                seed = zlib.crc32(n.encode())
                w = 0.05 * np.random.default_rng(seed).standard_normal(p.shape)  # the base's weights
                if i:  # a task vector of its own
                    w += 0.02 * np.random.default_rng([i, seed]).standard_normal(p.shape)
                p.copy_(torch.from_numpy(w.astype(np.float32)))
        paths[name] = str(save_model(model, tok, root / name))
    return paths


def _merges(root: Path) -> dict:
    from papers.mergealign import merges as mk

    fam = _parents(root)
    out = {"parents": _digest({k: t for p in fam.values() for k, t in mk.load_state(p).items()})}
    configs = {
        "task_arithmetic": mk.mergealign(fam["base"], fam["expert"], fam["instruct"], 0.5),
        "ties": mk.ties(fam["base"], fam["expert"], fam["instruct"], 0.5, "ties"),
        "dare_ties": mk.ties(fam["base"], fam["expert"], fam["instruct"], 0.5, "dare_ties"),
        "slerp": mk.slerp(fam["instruct"], fam["expert"], 0.5),
    }
    for name, cfg in configs.items():
        out[name] = _digest(mk.load_state(mk.run_mergekit(cfg, root / name, seed=0)))
    return out


def _lm_family() -> dict:
    """The lm_family training step (init, 3 AdamW steps) and the multiple-choice scores of the result."""
    import numpy as np

    from shared.lm_family import ModelSpec, TrainSpec, world
    from shared.lm_family import evaluate as ev
    from shared.lm_family.train import new_model, pretrain
    from shared.text.tokenizer import train_bpe

    texts = ["The quick brown fox jumps over the lazy dog.", "Question: what? Answer: yes."] * 20
    tok = train_bpe(texts + world.domain_corpus(world.knowledge_base("medical", 6, 0)), 300)
    spec = ModelSpec(
        hidden_size=32, num_layers=2, num_heads=2, num_kv_heads=1, intermediate_size=64, max_position_embeddings=64
    )
    model = new_model(spec, tok, seed=1)
    init = {k: v.detach().clone() for k, v in model.state_dict().items()}
    stream = np.array(tok(" ".join(texts))["input_ids"] * 4)
    losses = pretrain(model, [(stream, 1.0)], TrainSpec(steps=3, batch_size=4, seq_len=32, warmup_steps=1), seed=1)
    qs = world.domain_questions(world.knowledge_base("medical", 6, 0), 0)[:6]
    res = ev.multiple_choice(model, tok, qs, batch_size=4)
    return {
        "init": _digest(init),
        "losses": losses,
        "weights": {k: v.flatten()[:256].tolist() for k, v in model.state_dict().items()},
        "scores": res.scores,
    }


def _quant() -> dict:
    """The quantizer on fixed inputs (every granularity, symmetric or not) and 3 quantized GPT steps."""
    import numpy as np
    import torch

    from papers.quant_pretraining.model import GPT, GPTConfig, lm_loss
    from papers.quant_pretraining.optim import make_optimizer
    from papers.quant_pretraining.quantize import GRANULARITIES, QuantSpec, fake_quantize, quantize_linears

    x = torch.from_numpy(np.random.default_rng(0).standard_normal((64, 96)).astype(np.float32))
    x = x * torch.logspace(-3, 1, 96)
    quantized = {
        f"{bits}-{g}-{sym}": fake_quantize(x, QuantSpec(bits, g, sym))
        for bits in (4, 8)
        for g in GRANULARITIES
        for sym in (True, False)
    }
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=64, n_positions=16, n_layer=2, n_head=2, n_embd=32, dropout=0.0))
    spec = QuantSpec(8, "row")
    quantize_linears(model, w=spec, a=spec, g=spec)
    opt = make_optimizer(model, "adamw", 1e-2, (0.9, 0.95), 1e-8, 0.1, m=spec, v=QuantSpec(8, "tensor"))
    g = torch.Generator().manual_seed(1)
    losses = []
    for _ in range(3):
        ids = torch.randint(0, 64, (4, 17), generator=g)
        loss = lm_loss(model, (ids[:, :-1], ids[:, 1:]))
        loss.backward()
        opt.step()
        opt.zero_grad()
        losses.append(float(loss))
    return {"fake_quantize": _digest(quantized), "n_quantized": len(quantized), "losses": losses}


def child(out: Path) -> None:
    import tempfile

    import torch

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        result = {
            "capability": torch.backends.cpu.get_cpu_capability(),
            "merges": _merges(Path(tmp)),
            "lm_family": _lm_family(),
            "quant": _quant(),
        }
    out.write_text(json.dumps(result))


# ------------------------------------------------------------------------------------------------ the tests


def _available() -> list[str]:
    flags = cpu_flags()
    return [c for c, need in CAPABILITIES.items() if all(f in flags for f in need)]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, dict]:
    """The child's results under every ATEN_CPU_CAPABILITY this CPU has (at least default and one more)."""
    caps = _available()
    if len(caps) < 2:
        pytest.skip(f"only the {caps} kernel paths run on this CPU: nothing to compare")
    tmp = tmp_path_factory.mktemp("portability")
    env = {**os.environ, "PYTHONPATH": str(REPO), "TQDM_DISABLE": "1", "OMP_NUM_THREADS": "1"}
    procs = {  # all at once: each child is single-threaded
        cap: subprocess.Popen(
            [sys.executable, __file__, str(tmp / f"{cap}.json")],
            env={**env, "ATEN_CPU_CAPABILITY": cap},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for cap in caps
    }
    for cap, proc in procs.items():
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, f"ATEN_CPU_CAPABILITY={cap}: {err[-3000:]}"
    return {cap: json.loads((tmp / f"{cap}.json").read_text()) for cap in caps}


@pytest.mark.parametrize("cap", list(CAPABILITIES))
def test_each_capability_is_forced_or_skipped(runs, cap):
    if cap not in runs:
        pytest.skip(f"this CPU lacks {', '.join(CAPABILITIES[cap])}: torch would die of SIGILL on that path")
    assert runs[cap]["capability"] == cap.upper()  # the variable took effect: the comparison is not vacuous


def test_merges_of_given_parents_are_bit_identical_on_every_path(runs):
    merges = {cap: r["merges"] for cap, r in runs.items()}
    first = next(iter(merges.values()))
    assert set(first) == {"parents", "task_arithmetic", "ties", "dare_ties", "slerp"}
    for cap, m in merges.items():
        for name in sorted(first):
            assert m[name] == first[name], f"{name} differs under ATEN_CPU_CAPABILITY={cap}"


def test_the_quantizer_is_bit_identical_and_quantized_training_agrees(runs):
    quant = {cap: r["quant"] for cap, r in runs.items()}
    first = next(iter(quant.values()))
    assert first["n_quantized"] == 12
    for cap, q in quant.items():
        assert q["fake_quantize"] == first["fake_quantize"], cap
        assert q["losses"] == pytest.approx(first["losses"], rel=LOSS_RTOL), cap


def test_lm_family_training_and_scores_agree_within_tolerance(runs):
    fam = {cap: r["lm_family"] for cap, r in runs.items()}
    first = next(iter(fam.values()))
    assert len(first["losses"]) == 3 and len(first["scores"]) == 6 and first["weights"]
    for cap, f in fam.items():
        assert f["losses"] == pytest.approx(first["losses"], rel=LOSS_RTOL), cap
        assert f["weights"].keys() == first["weights"].keys()
        for k, w in f["weights"].items():
            assert w == pytest.approx(first["weights"][k], rel=0, abs=WEIGHT_ATOL), (cap, k)
        for s, t in zip(f["scores"], first["scores"], strict=True):
            assert s == pytest.approx(t, rel=0, abs=SCORE_ATOL), cap


def test_vector_paths_start_from_the_same_initial_weights(runs):
    """AVX2 and AVX-512 draw torch's normals with the same vectorised code: a machine with either starts
    training from identical weights (the scalar default path differs in the last bits)."""
    vector = [r["lm_family"]["init"] for cap, r in runs.items() if cap != "default"]
    if len(vector) < 2:
        pytest.skip("this CPU has fewer than two vector paths")
    assert len(set(vector)) == 1


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    child(Path(sys.argv[1]))
