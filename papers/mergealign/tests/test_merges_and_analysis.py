"""Merges equal hand computation; the analysis metrics equal independent formulas."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from papers.mergealign import analysis as an
from papers.mergealign import merges as mk
from shared.lm_family import ModelSpec
from shared.lm_family.train import new_model, save_model
from shared.text.tokenizer import train_bpe

SPEC = ModelSpec(
    hidden_size=16, num_layers=2, num_heads=2, num_kv_heads=2, intermediate_size=32, max_position_embeddings=64
)


@pytest.fixture(scope="module")
def family(tmp_path_factory):
    """Three tiny Llamas sharing a base: expert and instruct are the base plus random deltas."""
    root = tmp_path_factory.mktemp("fam")
    tok = train_bpe(["a small text to train a tokenizer on, twice over."] * 10, 280)
    base = new_model(SPEC, tok, seed=0)
    paths = {"base": save_model(base, tok, root / "base")}
    for i, name in enumerate(("expert", "instruct")):
        m = new_model(SPEC, tok, seed=0)
        g = torch.Generator().manual_seed(10 + i)
        with torch.no_grad():
            for p in m.parameters():
                p.add_(0.05 * torch.randn(p.shape, generator=g))
        paths[name] = save_model(m, tok, root / name)
    return {k: str(v) for k, v in paths.items()}


@pytest.mark.parametrize("alpha", [0.0, 0.3, 0.5, 1.0])
def test_mergealign_equals_hand_task_arithmetic(family, tmp_path, alpha):
    out = mk.run_mergekit(mk.mergealign(family["base"], family["expert"], family["instruct"], alpha), tmp_path / "m")
    got = mk.load_state(out)
    b, e, i = (mk.load_state(family[k]) for k in ("base", "expert", "instruct"))
    ref = mk.hand_task_arithmetic(b, [(e, alpha), (i, 1 - alpha)])
    assert ref and set(got) == set(ref)
    for name in ref:
        assert torch.allclose(got[name], ref[name], atol=1e-6), name
        # weights summing to 1: the same as the linear average of the two parents
        assert torch.allclose(got[name], alpha * e[name] + (1 - alpha) * i[name], atol=1e-6), name


def test_slerp_endpoints_and_ties_run(family, tmp_path):
    e, i = mk.load_state(family["expert"]), mk.load_state(family["instruct"])
    for t, ref in ((0.0, i), (1.0, e)):
        got = mk.load_state(mk.run_mergekit(mk.slerp(family["instruct"], family["expert"], t), tmp_path / f"s{t}"))
        assert ref and set(got) == set(ref)
        assert all(torch.allclose(got[k], ref[k], atol=1e-5) for k in ref)
    for method in ("ties", "dare_ties"):
        cfg = mk.ties(family["base"], family["expert"], family["instruct"], 0.5, method)
        a = mk.load_state(mk.run_mergekit(cfg, tmp_path / f"{method}a", seed=0))
        b = mk.load_state(mk.run_mergekit(cfg, tmp_path / f"{method}b", seed=0))
        assert a and set(a) == set(b)
        assert all(torch.equal(a[k], b[k]) for k in a)  # seeded: DARE's random drop is reproducible
    with pytest.raises(ValueError, match="'ties' or 'dare_ties'"):
        mk.ties("b", "e", "i", 0.5, "dare_linear")


def test_vector_similarity_and_distances_by_hand(family):
    b, e, i = (mk.load_state(family[k]) for k in ("base", "expert", "instruct"))
    sim = an.vector_similarity(b, e, i)
    assert list(sim) == ["embed", "layer0", "layer1", "head", "all"]
    names = [n for n in b if ".layers.1." in n]
    d = np.concatenate([(e[n].double() - b[n].double()).flatten().numpy() for n in sorted(names)])
    a = np.concatenate([(i[n].double() - b[n].double()).flatten().numpy() for n in sorted(names)])
    assert sim["layer1"]["cosine"] == pytest.approx(d @ a / np.linalg.norm(d) / np.linalg.norm(a), rel=1e-9)
    assert sim["layer1"]["sign_agreement"] == pytest.approx(np.mean(np.sign(d) == np.sign(a)), rel=1e-9)
    dist = an.l2_distances(e, {"base": b, "expert": e})
    assert dist["all"]["expert"] == 0.0
    total = np.sqrt(sum(float(((e[n].double() - b[n].double()) ** 2).sum()) for n in b))
    assert dist["all"]["base"] == pytest.approx(total, rel=1e-9)


def _cka_reference(x: np.ndarray, y: np.ndarray) -> float:
    """Kornblith et al. (2019) via HSIC of the linear Gram matrices with the centring matrix H."""
    n = x.shape[0]
    h = np.eye(n) - np.ones((n, n)) / n
    k, lm = x @ x.T, y @ y.T

    def hsic(a, b):
        return np.trace(a @ h @ b @ h)

    return hsic(k, lm) / np.sqrt(hsic(k, k) * hsic(lm, lm))


def test_linear_cka_matches_the_hsic_formula_and_invariances():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(40, 6)), rng.normal(size=(40, 9))
    assert an.linear_cka(x, y) == pytest.approx(_cka_reference(x, y), rel=1e-9)
    q, _ = np.linalg.qr(rng.normal(size=(6, 6)))
    assert an.linear_cka(x, 3.0 * x @ q + 1.0) == pytest.approx(1.0, abs=1e-12)  # rotation, scale, shift
    with pytest.raises(ValueError, match="same rows"):
        an.linear_cka(x, y[:10])


def test_hidden_state_cka_of_a_model_with_itself_is_one(family):
    hs = an.hidden_states(family["base"], ["a small text", "twice over"])
    assert len(hs) == SPEC.num_layers + 1 and hs[0].shape[1] == SPEC.hidden_size
    assert an.cka_by_layer(hs, hs) == pytest.approx([1.0] * len(hs))
