"""Every variant against exact attention where it should be exact, and against the dense masked
reference of its own pattern where it is sparse."""

from __future__ import annotations

import math

import pytest
import torch

from papers.efficient_transformers.attention import VARIANTS, AttentionParams, available_sdpa_backends, build_attention
from papers.efficient_transformers.attention.common import masked_softmax_attention
from papers.efficient_transformers.attention.kernel import LinearAttention, PerformerAttention
from papers.efficient_transformers.attention.lowrank import LinformerAttention, NystromAttention, iterative_pinv
from papers.efficient_transformers.attention.lsh import LSHAttention
from papers.efficient_transformers.attention.sparse import BigBirdAttention, LocalAttention, LongformerAttention

B, H, N, D = 2, 3, 48, 16


def qkv(n: int = N, seed: int = 0, scale: float = 1.0) -> tuple[torch.Tensor, ...]:
    gen = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(B, H, n, D, generator=gen, dtype=torch.float64) * scale for _ in range(3))


def exact(q, k, v):
    """Hand-written softmax(QK^T / sqrt(d)) V in float64, independent of the modules."""
    return torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1]), dim=-1) @ v


@pytest.mark.parametrize("name", ["naive", "sdpa", "sdpa_math", "sdpa_flash"])
def test_exact_variants_equal_the_formula(name):
    q, k, v = (t.float() for t in qkv())
    out = build_attention(name, AttentionParams(), N, D)(q, k, v)
    assert torch.allclose(out, exact(q, k, v), atol=1e-5)


def test_local_with_full_window_is_exact():
    q, k, v = qkv()
    assert torch.allclose(LocalAttention(window=N)(q, k, v), exact(q, k, v), atol=1e-12)


@pytest.mark.parametrize("n", [48, 50])  # 50: padded to the block
@pytest.mark.parametrize("window", [1, 5, 16])
def test_local_matches_its_dense_pattern(n, window):
    q, k, v = qkv(n)
    m = LocalAttention(window)
    pattern = m.pattern(n)
    assert pattern[10, 10 + window] and not (10 + window + 1 < n and pattern[10, 10 + window + 1])
    assert torch.allclose(m(q, k, v), masked_softmax_attention(q, k, v, pattern), atol=1e-12)


@pytest.mark.parametrize("n", [48, 53])
def test_longformer_matches_its_dense_pattern(n):
    q, k, v = qkv(n)
    m = LongformerAttention(window=4, num_global=2)
    pattern = m.pattern(n)
    assert pattern[:2].all() and pattern[:, :2].all() and not pattern[30, 40]
    assert torch.allclose(m(q, k, v), masked_softmax_attention(q, k, v, pattern), atol=1e-12)


def test_longformer_all_global_is_exact():
    q, k, v = qkv()
    assert torch.allclose(LongformerAttention(window=1, num_global=N)(q, k, v), exact(q, k, v), atol=1e-12)


@pytest.mark.parametrize("n", [48, 60])
def test_bigbird_matches_its_dense_pattern(n):
    q, k, v = qkv(n)
    m = BigBirdAttention(block=6, num_global=1, num_random=2, seed=3)
    pattern = m.pattern(n)
    per_row = pattern.sum(1)[6:]  # non-global rows see at most (3 + 1 + 2) blocks
    assert per_row.max() <= 6 * 6 and per_row.min() >= 2 * 6
    assert torch.allclose(m(q, k, v), masked_softmax_attention(q, k, v, pattern), atol=1e-12)


def test_bigbird_random_blocks_are_fixed_and_seeded():
    a, b, c = BigBirdAttention(6, 1, 2, seed=1), BigBirdAttention(6, 1, 2, seed=1), BigBirdAttention(6, 1, 2, seed=2)
    assert torch.equal(a.pattern(96), b.pattern(96)) and not torch.equal(a.pattern(96), c.pattern(96))


def test_bigbird_covering_every_block_is_exact():
    q, k, v = qkv()
    m = BigBirdAttention(block=8, num_global=1, num_random=N // 8)
    assert m.pattern(N).all()
    assert torch.allclose(m(q, k, v), exact(q, k, v), atol=1e-12)


def test_linformer_with_identity_projections_is_exact():
    q, k, v = qkv()
    m = LinformerAttention(max_len=N, k=N).double()
    m.set_identity()
    assert torch.allclose(m(q, k, v), exact(q, k, v), atol=1e-12)


def test_linformer_projects_to_k_rows_and_rejects_long_inputs():
    q, k, v = qkv()
    m = LinformerAttention(max_len=N, k=8).double()
    expected = exact(q, m.E @ k, m.F @ v)  # softmax(Q (EK)^T / sqrt(d)) FV, by hand
    assert torch.allclose(m(q, k, v), expected, atol=1e-12)
    with pytest.raises(ValueError, match="at most 48 tokens"):
        m(*qkv(N + 8))


def test_nystrom_with_landmarks_equal_to_length_is_exact():
    q, k, v = qkv(scale=0.5)
    out = NystromAttention(landmarks=N, pinv_iterations=0)(q, k, v)
    assert torch.allclose(out, exact(q, k, v), atol=1e-8)


def test_iterative_pinv_converges_to_the_inverse():
    a = torch.softmax(torch.randn(4, 16, 16, generator=torch.Generator().manual_seed(0), dtype=torch.float64), -1)
    errors = [(iterative_pinv(a, it) - torch.linalg.inv(a)).abs().max().item() for it in (2, 6, 20)]
    assert errors[0] > errors[1] > errors[2] and errors[2] < 1e-6


def test_nystrom_rejects_non_dividing_landmarks():
    with pytest.raises(ValueError, match="must divide"):
        NystromAttention(landmarks=7)(*qkv())


def test_linear_attention_equals_its_quadratic_form():
    q, k, v = qkv()
    phi_q, phi_k = torch.nn.functional.elu(q) + 1, torch.nn.functional.elu(k) + 1
    a = phi_q @ phi_k.transpose(-1, -2)
    assert torch.allclose(LinearAttention()(q, k, v), (a / a.sum(-1, keepdim=True)) @ v, atol=1e-6)


def test_performer_error_shrinks_with_more_features():
    q, k, v = qkv(scale=0.5)
    ref = exact(q, k, v)

    def mse(m: int) -> float:
        errs = [(PerformerAttention(D, m, seed=s).double()(q, k, v) - ref).pow(2).mean().item() for s in range(4)]
        return sum(errs) / len(errs)

    e = [mse(m) for m in (8, 64, 512, 4096)]
    assert e[0] > e[1] > e[2] > e[3] and e[3] < e[0] / 50


def test_performer_kernel_estimate_is_unbiased():
    """E[phi(q).phi(k)] = exp(q.k / sqrt(d)) for the positive features (averaged over 64 draws)."""
    q, k, _ = qkv(n=4, scale=0.5)
    target = torch.exp(q @ k.transpose(-1, -2) / math.sqrt(D))
    est = []
    for s in range(64):
        m = PerformerAttention(D, 256, seed=s).double()
        x_q, x_k = q * D**-0.25, k * D**-0.25
        w = m.features

        def f(x, w=w):
            return torch.exp(x @ w.T - (x * x).sum(-1, keepdim=True) / 2) / 256**0.5

        est.append(f(x_q) @ f(x_k).transpose(-1, -2))
    est = torch.stack(est)
    stderr = est.std(0) / len(est) ** 0.5
    assert ((est.mean(0) - target).abs() < 4 * stderr).all()  # unbiased: within 4 standard errors
    assert (stderr / target).max() < 0.1  # and the check is not vacuous


def _shared_qk_reference(q, v):
    k = q / q.norm(dim=-1, keepdim=True)
    scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
    scores = scores.masked_fill(torch.eye(q.shape[-2], dtype=torch.bool), -1e5)
    return torch.softmax(scores, -1) @ v


@pytest.mark.parametrize("n_hashes", [1, 3])
def test_reformer_with_one_chunk_is_shared_qk_attention(n_hashes):
    q, _, v = qkv()
    out = LSHAttention(bucket_size=N, n_hashes=n_hashes)(q, q, v)
    assert torch.allclose(out, _shared_qk_reference(q, v), atol=1e-10)


def test_reformer_chunks_attend_within_sorted_buckets():
    q, _, v = qkv()
    m = LSHAttention(bucket_size=8, n_hashes=1)
    out = m(q, q, v)
    assert out.shape == v.shape and torch.isfinite(out).all()
    assert not torch.allclose(out, _shared_qk_reference(q, v), atol=1e-3)  # an approximation
    assert torch.equal(out, m(q, q, v))  # fixed rotations: deterministic


@pytest.mark.parametrize("name", VARIANTS)
def test_every_variant_keeps_the_shape_and_backpropagates(name):
    p = AttentionParams(window=4, block=8, linformer_k=8, features=16, bucket_size=8, landmarks=8)
    q, k, v = (t.float().requires_grad_(True) for t in qkv(32))
    if name.startswith("sdpa_") and name.removeprefix("sdpa_") not in available_sdpa_backends():
        pytest.skip(f"{name}: this machine has no such SDPA backend")  # e.g. cuDNN on a CPU
    out = build_attention(name, p, 32, D)(q, k, v)
    assert out.shape == v.shape
    out.sum().backward()
    assert torch.isfinite(v.grad).all() and v.grad.abs().sum() > 0


def test_unknown_variant_lists_the_valid_ones():
    with pytest.raises(ValueError, match="unknown attention variant 'nope'; valid: naive"):
        build_attention("nope", AttentionParams(), 8, 8)


def test_bad_shapes_are_one_clear_error():
    with pytest.raises(ValueError, match=r"\(batch, heads, length, head_dim\)"):
        build_attention("naive", AttentionParams(), 8, 8)(
            torch.zeros(2, 8, 8), torch.zeros(2, 8, 8), torch.zeros(2, 8, 8)
        )


def test_budget_follows_flashattention_rule():
    p = AttentionParams().budgeted(4096, 8, 256)
    assert (p.linformer_k, p.features, p.landmarks, p.window) == (256, 256, 256, 128)
    assert AttentionParams().budgeted(512, 8, 256).linformer_k == 64
