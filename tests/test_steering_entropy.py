"""The Kozachenko–Leonenko k-NN entropy estimator against Gaussian closed forms, and the entropy ratio."""
import math

import pytest
import torch

from lpds_ros.steering.entropy import (
    action_entropy,
    entropy_ratio,
    gaussian_entropy,
    knn_entropy,
)


@pytest.mark.parametrize("dim,scale", [(1, 1.0), (2, 0.3), (4, 2.0)])
def test_knn_entropy_matches_isotropic_gaussians(dim, scale):
    x = torch.randn((4000, dim), generator=torch.Generator().manual_seed(dim)) * scale
    expected = gaussian_entropy(torch.eye(dim) * scale**2)
    assert knn_entropy(x, k=3).item() == pytest.approx(expected, abs=0.05 * dim)


def test_knn_entropy_matches_a_correlated_gaussian_batched_over_states():
    cov = torch.tensor([[1.0, 0.8], [0.8, 1.0]])
    chol = torch.linalg.cholesky(cov)
    x = torch.randn((3, 3000, 2), generator=torch.Generator().manual_seed(0)) @ chol.T
    estimates = knn_entropy(x, k=5)
    assert estimates.shape == (3,)
    assert torch.allclose(estimates, torch.full((3,), gaussian_entropy(cov), dtype=torch.float64), atol=0.08)


def test_entropy_ratio_is_the_per_dimension_spread():
    # scaling every dimension of a distribution by s adds D log s to its entropy: the ratio is s.
    x = torch.randn((1, 512, 4, 2), generator=torch.Generator().manual_seed(1))
    base, wide = action_entropy(x), action_entropy(1.5 * x)
    assert entropy_ratio(wide["first"], base["first"], 2) == pytest.approx(1.5, rel=1e-6)
    assert entropy_ratio(wide["chunk"], base["chunk"], 8) == pytest.approx(1.5, rel=1e-6)
    assert math.isfinite(action_entropy(torch.zeros(1, 16, 2, 2))["first"])  # duplicates: floored, finite


def test_knn_entropy_rejects_bad_k():
    with pytest.raises(ValueError, match="k must be"):
        knn_entropy(torch.randn(4, 2), k=4)
