"""Dynamic Loss Weighting (nullswap.txt Eqs. 2-7) against hand-computed values."""

import json

import pytest
import torch

from nullswap.errors import InputError
from nullswap.losses.dlw import DynamicLossWeighting, IdentityLossAggregator


def test_eq5_beta_schedule():
    d = DynamicLossWeighting(2)  # alpha=3, beta_init=0.5, beta*=2, gamma=0.1 -> t_e* = 15
    assert d.te_max == pytest.approx(15.0)
    assert d.beta(0) == pytest.approx(0.5)
    assert d.beta(4) == pytest.approx(0.5 + 0.1 * 4)
    assert d.beta(15) == pytest.approx(2.0)
    assert d.beta(40) == pytest.approx(2.0)
    # explicit t_e* below the natural cap: min(t_e, t_e*) binds first
    d2 = DynamicLossWeighting(2, te_max=5)
    assert d2.beta(12) == pytest.approx(0.5 + 0.1 * 5)
    # beta* binds first
    d3 = DynamicLossWeighting(2, beta_max=0.7, te_max=100)
    assert d3.beta(12) == pytest.approx(0.7)


def test_eq6_window_variance_and_short_history():
    d = DynamicLossWeighting(2, k=3)
    d.update([1.0, 0.5], 0)
    assert d.variances() == [0.0, 0.0]  # one value: variance 0
    d.update([0.8, 0.5], 0)
    # short history (n=2 < k): population variance of the available values
    m = (1.0 + 0.8) / 2
    assert d.variances()[0] == pytest.approx(((1.0 - m) ** 2 + (0.8 - m) ** 2) / 2)
    d.update([0.9, 0.2], 0)
    d.update([0.5, 0.4], 0)  # window now (0.8, 0.9, 0.5) and (0.5, 0.2, 0.4)
    m0 = (0.8 + 0.9 + 0.5) / 3
    v0 = ((0.8 - m0) ** 2 + (0.9 - m0) ** 2 + (0.5 - m0) ** 2) / 3
    m1 = (0.5 + 0.2 + 0.4) / 3
    v1 = ((0.5 - m1) ** 2 + (0.2 - m1) ** 2 + (0.4 - m1) ** 2) / 3
    assert d.variances() == pytest.approx([v0, v1])


def test_eq7_relative_progress_and_clamp():
    d = DynamicLossWeighting(2, eps_d=1e-6)
    d.update([1.0, 0.1], 0)
    assert d.progress() == [0.0, 0.0]  # no previous value
    d.update([0.5, 0.9], 0)
    eps = 1e-6  # eps_p defaults to eps_d
    assert d.progress()[0] == pytest.approx((1.0 - 0.5) / (1.0 + eps))
    assert d.progress()[1] == -1.0  # (0.1 - 0.9) / 0.1 = -8 -> clamped at -1


def test_eq4_eq3_eq2_weights_by_hand():
    alpha, k, c = 3.0, 3, 2
    d = DynamicLossWeighting(c, alpha=alpha, k=k)
    hist = [[1.0, 0.5], [0.8, 0.6], [0.9, 0.3]]
    for row in hist[:-1]:
        d.update(row, 2)
    losses = [torch.tensor(hist[-1][0], requires_grad=True), torch.tensor(hist[-1][1], requires_grad=True)]
    total, w = d(losses, 2)
    beta = 0.5 + 0.1 * 2
    raw = []
    for i in range(c):
        vals = [r[i] for r in hist]
        m = sum(vals) / 3
        var = sum((v - m) ** 2 for v in vals) / 3
        delta = max((hist[1][i] - hist[2][i]) / (hist[1][i] + 1e-6), -1.0)
        raw.append(max(1.0 / max(alpha * var + beta * (1 + delta), 1e-6), 1e-6))
    expected = [c * r / sum(raw) for r in raw]
    assert d.raw_weights(2) == pytest.approx(raw)
    assert w == pytest.approx(expected)
    assert sum(w) == pytest.approx(c)
    assert float(total.detach()) == pytest.approx(expected[0] * 0.9 + expected[1] * 0.3)
    total.backward()  # Eq. 2: weights are constants, gradients are the weights
    assert float(losses[0].grad) == pytest.approx(expected[0])
    assert float(losses[1].grad) == pytest.approx(expected[1])


def test_eq4_floors():
    # beta = 0 and Delta = -1 make the denominator 0 -> clamped at eps_d, the weight is 1/eps_d
    d = DynamicLossWeighting(2, alpha=0.0, beta_init=0.0, beta_max=0.0, gamma=0.0, eps_d=1e-3, eps_w=1e-6)
    d.update([0.1, 0.1], 0)
    d.update([0.5, 0.1], 0)  # Delta_0 = -1 -> (1 + Delta) = 0
    assert d.raw_weights(0)[0] == pytest.approx(1e3)
    # a huge denominator -> clamped at eps_w
    d = DynamicLossWeighting(1, alpha=1e12, eps_w=1e-3)
    d.update([0.0], 0)
    d.update([10.0], 0)
    assert d.raw_weights(0) == [pytest.approx(1e-3)]


def test_state_dict_round_trip_is_exact():
    g = torch.Generator().manual_seed(0)
    seq = torch.rand(40, 3, generator=g).tolist()
    a = DynamicLossWeighting(3, k=5)
    for row in seq[:20]:
        a.update(row, 1)
    state = json.loads(json.dumps(a.state_dict()))
    b = DynamicLossWeighting(3, k=5)
    b.load_state_dict(state)
    for row in seq[20:]:
        assert a.update(row, 3) == b.update(row, 3)
    assert a.step == b.step == 40


def test_bad_inputs():
    d = DynamicLossWeighting(2)
    with pytest.raises(InputError, match="expected 2 losses"):
        d.update([1.0], 0)
    with pytest.raises(InputError, match="finite"):
        d.update([1.0, float("nan")], 0)
    with pytest.raises(InputError, match="k: expected"):
        DynamicLossWeighting(2, k=0)


def test_aggregator_strategies():
    losses = [torch.tensor(0.9), torch.tensor(0.4)]
    avg, w = IdentityLossAggregator(2, "average")(losses, 0)
    assert w == [1.0, 1.0] and float(avg) == pytest.approx(1.3)
    single, w = IdentityLossAggregator(2, "single", index=1)(losses, 0)
    assert w == [0.0, 1.0] and float(single) == pytest.approx(0.4)
    dlw = IdentityLossAggregator(2, "dlw", k=3)
    _, w = dlw(losses, 0)
    assert w == pytest.approx([1.0, 1.0])  # first step: no variance, no progress -> equal weights
    assert dlw.state_dict()["history"] == [[pytest.approx(0.9), pytest.approx(0.4)]]
    with pytest.raises(InputError, match="strategy"):
        IdentityLossAggregator(2, "median")  # type: ignore[arg-type]
    with pytest.raises(InputError, match="index"):
        IdentityLossAggregator(2, "single", index=2)
