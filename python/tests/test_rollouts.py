"""Rollouts from an inference engine through the Python module: masks, the sampler correction and
rollout_report (the C++ tests, tests/rollouts_test.cpp, cover every backend; these check the keyword
arguments reach the library and autograd sees only kept samples)."""

import math

import pytest
import torch

import brain
from test_losses import make_samples, brain_loss_ref

ESTIMATORS = ["brain", "no_baseline", "gdc_pp", "dpg", "rloo", "grpo", "ppo_clip"]


def drop_one_per_row(x, drop):
    return torch.stack([torch.cat([row[:j], row[j + 1:]]) for row, j in zip(x, drop)])


@pytest.mark.parametrize("estimator", ESTIMATORS)
def test_masked_batch_equals_dense_batch_without_those_samples(estimator):
    lp, lq, l0, r = make_samples(prompts=3, n=4, seed=3)
    drop = [1, 3, 0]
    mask = torch.ones_like(lp)
    r = r.clone()
    for i, j in enumerate(drop):
        mask[i, j] = 0.0
        r[i, j] = float("nan")  # a reward function that returned nothing
    masked = brain.gradient_coefficients(lp, lq, l0, r, estimator=estimator, mask=mask)
    dense = brain.gradient_coefficients(*(drop_one_per_row(x, drop) for x in (lp, lq, l0, r)), estimator=estimator)
    torch.testing.assert_close(drop_one_per_row(masked, drop), dense, rtol=1e-10, atol=1e-12)
    assert all(masked[i, j] == 0 for i, j in enumerate(drop))


def test_brain_loss_with_a_mask_matches_the_reference_and_backpropagates_to_kept_samples():
    lp, lq, l0, r = make_samples(prompts=2, n=4, seed=5)
    mask = torch.tensor([[1.0, 1.0, 0.0, 1.0], [1.0, 1.0, 1.0, 1.0]])
    lp = lp.clone().requires_grad_(True)
    out = brain.brain_loss(lp, lq, l0, r, mask=mask)
    out.loss.backward()
    keep = [0, 1, 3]
    row0 = brain_loss_ref(lp.detach()[:1, keep], lq[:1, keep], l0[:1, keep], r[:1, keep])[1]
    row1 = brain_loss_ref(lp.detach()[1:], lq[1:], l0[1:], r[1:])[1]
    torch.testing.assert_close(out.loss.detach(), (row0 + row1).sum() / 2)
    torch.testing.assert_close(lp.grad, out.grad_log_policy)
    assert lp.grad[0, 2] == 0


def test_the_exact_sampler_correction_reads_samples_as_drawn_from_the_sampler():
    lp, lq, l0, r = make_samples(prompts=3, n=5, seed=7)
    mu = lq + 0.4 * torch.randn(lq.shape, generator=torch.Generator().manual_seed(1), dtype=lq.dtype)
    corrected = brain.brain_loss(lp, lq, l0, r, log_sampler=mu, sampler_correction="truncate",
                                 sampler_upper=math.inf)
    from_mu = brain.brain_loss(lp, mu, l0, r)
    torch.testing.assert_close(corrected.grad_log_policy, from_mu.grad_log_policy)
    uncorrected = brain.brain_loss(lp, lq, l0, r, log_sampler=mu, sampler_correction="none")
    torch.testing.assert_close(uncorrected.grad_log_policy, brain.brain_loss(lp, lq, l0, r).grad_log_policy)


def test_rollout_report_and_option_errors():
    lp, lq, l0, r = make_samples(prompts=2, n=3, seed=9)
    mu = lq.clone()
    mu[0, 0] -= 2.0  # ratio q/mu = e^2 > 3: masked by the default correction
    mask = torch.tensor([[1.0, 1.0, 1.0], [1.0, 0.0, 0.0]])
    report = brain.rollout_report(lp, lq, l0, r, estimator="rloo", log_sampler=mu, mask=mask)
    assert report["groups"] == 2 and report["skipped_groups"] == 1 and report["masked_samples"] == 2
    assert report["max_abs_log_ratio"] == pytest.approx(2.0)
    assert report["share_masked"] == pytest.approx(1 / 4)
    with pytest.raises(ValueError, match="sampler_correction"):
        brain.brain_loss(lp, lq, l0, r, sampler_correction="clip")
    with pytest.raises(ValueError, match=r"mask\[0, 0\] = 0.5"):
        brain.brain_loss(lp, lq, l0, r, mask=torch.full_like(lp, 0.5))
