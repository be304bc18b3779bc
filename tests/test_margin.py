"""The HAE-DPO margin m_i = γ_st·s_i·c(t_i) + γ_h·σ((ℓ_ref(y_r) − ℓ_ref(y_w))/τ) against hand-computed values."""
from __future__ import annotations

import math

import pytest
import torch

from editcaption.train.margin import completion_logps, hae_margin, label_indices

# s(P0, P1, P2) = 1, 0.5, 0 and c(orientation, viewpoint, detail) = 0.2, 0.15, 0.1 (paper §3.2)
HAND_ST = {
    ("P0", "orientation"): 0.2, ("P0", "viewpoint"): 0.15, ("P0", "detail"): 0.1,
    ("P1", "orientation"): 0.1, ("P1", "viewpoint"): 0.075, ("P1", "detail"): 0.05,
    ("P2", "orientation"): 0.0, ("P2", "viewpoint"): 0.0, ("P2", "detail"): 0.0,
}


def _zeros(n: int) -> torch.Tensor:
    return torch.zeros(n, dtype=torch.float64)


def test_severity_type_term_for_every_pair_of_labels():
    severity, error_type = zip(*HAND_ST)
    margin, st_term, h_term = hae_margin(list(severity), list(error_type), _zeros(9), _zeros(9), gamma_st=1.0, gamma_h=1.0, tau=1.0)
    assert st_term.tolist() == pytest.approx(list(HAND_ST.values()), abs=1e-12)
    assert h_term.tolist() == [0.5] * 9  # equal likelihoods: σ(0)
    assert margin.tolist() == pytest.approx([v + 0.5 for v in HAND_ST.values()], abs=1e-12)


def test_hardness_sigmoid_with_temperature_and_gammas():
    rejected, chosen = torch.tensor([-1.0, -3.0, -2.0]), torch.tensor([-3.0, -1.0, -2.0])
    for tau in (1.0, 2.0, 0.5):
        _, _, h_term = hae_margin(["P2"] * 3, ["detail"] * 3, rejected, chosen, tau=tau, gamma_st=1.0, gamma_h=1.0)
        expected = [1 / (1 + math.exp(-d / tau)) for d in (2.0, -2.0, 0.0)]
        assert h_term.tolist() == pytest.approx(expected, abs=1e-6)
    # rejected more likely than chosen under the reference = a harder pair = a larger margin
    margin, st_term, h_term = hae_margin(["P0", "P1", "P2"], ["orientation"] * 3, rejected, chosen,
                                         gamma_st=2.0, gamma_h=0.5, tau=2.0)
    assert st_term.tolist() == pytest.approx([0.2, 0.1, 0.0])
    assert margin.tolist() == pytest.approx([2 * 0.2 + 0.5 / (1 + math.exp(-1)), 2 * 0.1 + 0.5 / (1 + math.exp(1)),
                                             0.25], abs=1e-6)
    margin, _, _ = hae_margin(["P0"], ["viewpoint"], rejected[:1], chosen[:1], gamma_st=0.0, gamma_h=0.0, tau=1.0)
    assert margin.tolist() == [0.0]


def test_index_tensors_equal_strings_and_custom_weights():
    rejected, chosen = torch.tensor([-0.5, -4.0]), torch.tensor([-1.5, -2.0])
    by_name = hae_margin(["P1", "P0"], ["detail", "orientation"], rejected, chosen, gamma_st=1.0, gamma_h=1.0, tau=1.0)
    by_index = hae_margin(torch.tensor([1, 0]), torch.tensor([2, 0]), rejected, chosen, gamma_st=1.0, gamma_h=1.0, tau=1.0)
    for a, b in zip(by_name, by_index):
        assert torch.equal(a, b)
    _, st_term, _ = hae_margin(["P1"], ["detail"], rejected[:1], chosen[:1], type_weights={
        "orientation": 1.0, "viewpoint": 1.0, "detail": 0.8}, severity_weights={"P0": 1.0, "P1": 0.25, "P2": 0.0},
        gamma_st=1.0, gamma_h=1.0, tau=1.0)
    assert st_term.tolist() == pytest.approx([0.2])


def test_completion_logps_mean_and_sum():
    per_token = torch.tensor([[-1.0, -2.0, -3.0, -9.0], [-4.0, 0.0, 0.0, 0.0]])
    mask = torch.tensor([[0, 1, 1, 0], [1, 0, 0, 0]])
    assert completion_logps(per_token, mask, "sum").tolist() == [-5.0, -4.0]
    assert completion_logps(per_token, mask, "mean").tolist() == [-2.5, -4.0]
    assert completion_logps(per_token, torch.zeros_like(mask)).tolist() == [0.0, 0.0]  # no tokens: 0, not NaN
    with pytest.raises(ValueError, match="how must be 'mean' or 'sum'"):
        completion_logps(per_token, mask, "max")


def test_margin_is_a_constant_for_the_optimizer():
    rejected = torch.tensor([-1.0, -2.0], requires_grad=True)
    chosen = torch.tensor([-2.0, -1.0], requires_grad=True)
    margin, _, h_term = hae_margin(["P0", "P1"], ["orientation", "detail"], rejected, chosen, gamma_st=1.0, gamma_h=1.0, tau=1.0)
    assert not margin.requires_grad and not h_term.requires_grad


def test_unknown_labels_are_named_with_their_row():
    logps = _zeros(3)
    with pytest.raises(ValueError, match=r"row 2: unknown severity 'P3'; expected one of \('P0', 'P1', 'P2'\)"):
        hae_margin(["P0", "P1", "P3"], ["detail"] * 3, logps, logps, gamma_st=1.0, gamma_h=1.0, tau=1.0)
    with pytest.raises(ValueError, match=r"row 1: unknown error_type 'color'"):
        hae_margin(["P0"] * 3, ["detail", "color", "detail"], logps, logps, gamma_st=1.0, gamma_h=1.0, tau=1.0)
    with pytest.raises(ValueError, match=r"row 0: unknown error_type None"):
        hae_margin(["P0"] * 3, [None, "detail", "detail"], logps, logps, gamma_st=1.0, gamma_h=1.0, tau=1.0)
    with pytest.raises(ValueError, match=r"row 1: unknown error_type index 3; expected 0..2"):
        hae_margin(torch.tensor([0, 0, 0]), torch.tensor([0, 3, -1]), logps, logps, gamma_st=1.0, gamma_h=1.0, tau=1.0)
    with pytest.raises(ValueError, match="2 severity labels for 3 rows"):
        hae_margin(["P0", "P0"], ["detail"] * 3, logps, logps, gamma_st=1.0, gamma_h=1.0, tau=1.0)
    with pytest.raises(ValueError, match="tau must be > 0"):
        hae_margin(["P0"] * 3, ["detail"] * 3, logps, logps, tau=0.0, gamma_st=1.0, gamma_h=1.0)
    with pytest.raises(ValueError, match=r"error_type weights lack \['detail'\]"):
        hae_margin(["P0"] * 3, ["detail"] * 3, logps, logps,
                   type_weights={"orientation": 0.2, "viewpoint": 0.1}, gamma_st=1.0, gamma_h=1.0, tau=1.0)
    assert label_indices(["P2", "P0"], ("P0", "P1", "P2"), "severity").tolist() == [2, 0]
