"""Function preservation of every expansion operator, parameter matching, and bad expansions."""

import pytest
import torch

from papers.manifold_expansion.config import Expansion
from papers.manifold_expansion.expand import ExpansionError, deepen, expand, matched_units, widen
from papers.manifold_expansion.models import ResNet, cnn, mlp, n_params

SHAPES = {"mlp": (1, 8, 8), "cnn": (1, 8, 8), "resnet": (3, 8, 8)}


def trained_like(kind: str) -> torch.nn.Module:
    """A model with non-trivial weights (and BN statistics), as a trained one would have."""
    torch.manual_seed(0)
    if kind == "mlp":
        model = mlp(SHAPES[kind], [12, 10], 5)
    elif kind == "cnn":
        model = cnn(SHAPES[kind], [4, 6], 5)
    else:
        model = ResNet(3, [4, 6], 5)
        model.train()
        with torch.no_grad():
            for _ in range(3):  # move BN running statistics away from their defaults
                model(torch.randn(16, *SHAPES[kind]))
            for m in model.modules():
                if isinstance(m, torch.nn.BatchNorm2d):
                    m.weight.uniform_(0.5, 1.5)
                    m.bias.uniform_(-0.2, 0.2)
    return model


def inputs(kind: str) -> torch.Tensor:
    return torch.randn(32, *SHAPES[kind], generator=torch.Generator().manual_seed(1))


def outputs(model: torch.nn.Module, x: torch.Tensor, train_mode: bool = False) -> torch.Tensor:
    model.train(train_mode)
    with torch.no_grad():
        return model(x)


@pytest.mark.parametrize("kind", ["mlp", "cnn", "resnet"])
@pytest.mark.parametrize("init", ["net2net", "zero"])
@pytest.mark.parametrize("layer", [0, 1])
def test_function_preserving_wider(kind, init, layer):
    model, x = trained_like(kind), inputs(kind)
    before = outputs(model, x)
    grown = widen(model, layer, 5, init, torch.Generator().manual_seed(3), noise=0.05)
    assert n_params(grown) > n_params(model)
    torch.testing.assert_close(outputs(grown, x), before, atol=1e-5, rtol=0)
    torch.testing.assert_close(outputs(model, x), before, atol=0, rtol=0)  # the input model is untouched
    if kind == "resnet":  # batch statistics of replicated channels are equal too: exact in train mode
        torch.testing.assert_close(outputs(grown, x, True), outputs(model, x, True), atol=1e-5, rtol=0)


@pytest.mark.parametrize("kind", ["mlp", "cnn", "resnet"])
@pytest.mark.parametrize("layer", [0, 1])
def test_net2deeper_preserves_the_function(kind, layer):
    model, x = trained_like(kind), inputs(kind)
    before = outputs(model, x)
    deeper = deepen(model, layer, "net2net", torch.Generator().manual_seed(3))
    assert n_params(deeper) > n_params(model)
    torch.testing.assert_close(outputs(deeper, x), before, atol=1e-5, rtol=0)


@pytest.mark.parametrize("kind", ["mlp", "cnn", "resnet"])
def test_random_init_changes_the_function(kind):
    model, x = trained_like(kind), inputs(kind)
    gen = torch.Generator().manual_seed(3)
    for grown in (widen(model, 0, 5, "random", gen), deepen(model, 0, "random", gen)):
        assert (outputs(grown, x) - outputs(model, x)).abs().max() > 1e-3


def test_net2wider_noise_breaks_symmetry_but_not_the_function():
    model, x = trained_like("mlp"), inputs("mlp")
    grown = widen(model, 0, 12, "net2net", torch.Generator().manual_seed(3), noise=0.1)
    w_next = grown[3].weight  # the outgoing weights of the widened layer
    rows = grown[1].weight
    # some new unit duplicates an old one's incoming weights, yet their outgoing columns differ
    dup = [(i, j) for i in range(12) for j in range(12, 24) if torch.equal(rows[i], rows[j])]
    assert dup and all(not torch.allclose(w_next[:, i], w_next[:, j]) for i, j in dup)
    torch.testing.assert_close(outputs(grown, x), outputs(model, x), atol=1e-5, rtol=0)


def test_net2wider_splits_outgoing_weights_by_hand():
    """Without noise: a unit copied once has its outgoing weights halved in both copies."""
    model = mlp((1, 1, 2), [2], 1)
    with torch.no_grad():
        model[1].weight.copy_(torch.tensor([[1.0, 2.0], [3.0, 4.0]]))
        model[3].weight.copy_(torch.tensor([[10.0, 20.0]]))
    gen = torch.Generator().manual_seed(0)
    g = torch.randint(0, 2, (1,), generator=torch.Generator().manual_seed(0)).item()
    grown = widen(model, 0, 1, "net2net", gen)
    assert torch.equal(grown[1].weight[2], model[1].weight[g])
    expected = [10.0, 20.0]
    expected[g] /= 2
    assert grown[3].weight[0].tolist() == [*expected, expected[g]]


def test_equal_parameter_pairs_match():
    model = mlp((1, 28, 28), [64, 32], 10)
    deeper = n_params(deepen(model, 0, "random", torch.Generator())) - n_params(model)  # 64*64 + 64
    units = matched_units(model, 1, 0)
    wider = n_params(widen(model, 1, units, "random", torch.Generator())) - n_params(model)
    assert deeper == 4160 and units == 55 and abs(wider - deeper) / deeper < 0.02
    exp = expand(model, Expansion("wider", "net2net", 1, match=0), torch.Generator())
    assert n_params(exp) - n_params(model) == wider


def test_deeper_two_blocks_adds_two_layers():
    model = mlp((1, 8, 8), [12, 10], 5)
    out = expand(model, Expansion("deeper", "net2net", 1, blocks=2), torch.Generator())
    assert n_params(out) - n_params(model) == 2 * (10 * 10 + 10)


def test_bad_expansions_are_named_errors():
    model = mlp((1, 8, 8), [12, 10], 5)
    gen = torch.Generator()
    with pytest.raises(ExpansionError, match=r"layer 2 is not a hidden layer; valid: 0\.\.1"):
        widen(model, 2, 3, "net2net", gen)
    with pytest.raises(ExpansionError, match="unknown init 'ones'; valid: net2net, random, zero"):
        widen(model, 0, 3, "ones", gen)
    with pytest.raises(ExpansionError, match="init zero would cut the network"):
        deepen(model, 0, "zero", gen)
    with pytest.raises(ExpansionError, match="units must be at least 1"):
        widen(model, 0, 0, "net2net", gen)
    with pytest.raises(ExpansionError, match="block 5 does not exist"):
        deepen(ResNet(3, [4, 6], 5), 5, "net2net", gen)
