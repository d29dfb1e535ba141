"""brain_loss, the estimators, surrogate_loss, DPO and RSO against plain-PyTorch references."""

import pytest
import torch
import torch.nn.functional as F

import brain

DISTILLATION = ["brain", "no_baseline", "gdc_pp", "dpg"]
POLICY_GRADIENT = ["rloo", "grpo", "ppo_clip"]


def make_samples(prompts=3, n=4, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    lq = -5.0 + torch.randn(prompts, n, generator=g, dtype=torch.float64)
    lp = lq + 0.3 * torch.randn(prompts, n, generator=g, dtype=torch.float64)  # near the proposal
    l0 = lq + 0.5 * torch.randn(prompts, n, generator=g, dtype=torch.float64)
    r = torch.randn(prompts, n, generator=g, dtype=torch.float64)
    return [x.to(dtype) for x in (lp, lq, l0, r)]


def log_g_ref(r, goodness, beta):
    return {"bradley_terry": r / beta, "logistic": F.logsigmoid(r), "log_goodness": r}[goodness]


# ---- brain_loss (eqs. 6, 11, 13-14; Theorem 4.2)


def brain_loss_ref(lp, lq, l0, r, beta=1.0, goodness="bradley_terry", target="softmax"):
    log_alpha = log_g_ref(r, goodness, beta) + l0 - lq  # eq. 6
    if target == "softmax":
        alpha_bar = torch.softmax(log_alpha, 1)
    else:
        alpha_bar = F.one_hot(log_alpha.argmax(1), lp.shape[1]).to(lp.dtype)
    log_beta_bar = torch.log_softmax(lp - lq, 1)  # eq. 11
    terms = alpha_bar * (torch.log(alpha_bar) - log_beta_bar)
    per_prompt = torch.where(alpha_bar > 0, terms, torch.zeros_like(terms)).sum(1)
    grad = (log_beta_bar.exp() - alpha_bar) / lp.shape[0]
    return per_prompt.mean(), per_prompt, alpha_bar, log_beta_bar.exp(), grad


@pytest.mark.parametrize("goodness,beta", [("bradley_terry", 1.0), ("bradley_terry", 0.25), ("logistic", 1.0),
                                           ("log_goodness", 1.0)])
@pytest.mark.parametrize("target", ["softmax", "argmax"])
def test_brain_loss_matches_reference(goodness, beta, target):
    lp, lq, l0, r = make_samples()
    out = brain.brain_loss(lp, lq, l0, r, beta=beta, goodness=goodness, target=target)
    loss, per_prompt, alpha_bar, beta_bar, grad = brain_loss_ref(lp, lq, l0, r, beta, goodness, target)
    torch.testing.assert_close(out.loss, loss)
    torch.testing.assert_close(out.per_prompt, per_prompt)
    torch.testing.assert_close(out.target_weights, alpha_bar)
    torch.testing.assert_close(out.baseline_weights, beta_bar)
    torch.testing.assert_close(out.grad_log_policy, grad)


def test_brain_loss_backward_gives_grad_log_policy():
    lp, lq, l0, r = make_samples()
    lp.requires_grad_(True)
    out = brain.brain_loss(lp, lq, l0, r, beta=0.5)
    out.loss.backward()
    torch.testing.assert_close(lp.grad, out.grad_log_policy)
    assert not out.target_weights.requires_grad and not out.grad_log_policy.requires_grad


def test_brain_loss_backward_reaches_model_parameters():
    lp, lq, l0, r = make_samples(dtype=torch.float32)
    shift = torch.zeros(lp.shape[1], requires_grad=True)
    out = brain.brain_loss(lp + shift, lq, l0, r)
    out.loss.backward()
    torch.testing.assert_close(shift.grad, out.grad_log_policy.sum(0))


def test_brain_loss_gradcheck():
    lp, lq, l0, r = make_samples()
    lp.requires_grad_(True)
    assert torch.autograd.gradcheck(lambda x: brain.brain_loss(x, lq, l0, r, beta=0.7).loss, (lp,))
    assert torch.autograd.gradcheck(lambda x: brain.brain_loss(x, lq, l0, r, target="argmax").loss, (lp,))


def test_brain_loss_large_batch_tiled_path():
    # More than 2 x 8192 samples: brain_loss works tile by tile; the result must not change.
    lp, lq, l0, r = make_samples(prompts=300, n=64)
    out = brain.brain_loss(lp, lq, l0, r)
    loss, per_prompt, alpha_bar, beta_bar, grad = brain_loss_ref(lp, lq, l0, r)
    torch.testing.assert_close(out.loss, loss)
    torch.testing.assert_close(out.grad_log_policy, grad)


def test_prior_minus_infinity_gets_zero_weight():
    lp, lq, l0, r = make_samples()
    l0[0, 1] = float("-inf")
    out = brain.brain_loss(lp, lq, l0, r)
    assert out.target_weights[0, 1] == 0
    assert torch.isfinite(out.loss)


@pytest.mark.parametrize("dtype,result", [(torch.float64, torch.float64), (torch.float32, torch.float32),
                                          (torch.float16, torch.float32), (torch.bfloat16, torch.float32)])
def test_dtypes(dtype, result):
    # As in C++: float16 / bfloat16 are computed in float32; other dtypes are kept.
    s = make_samples(dtype=dtype)
    out = brain.brain_loss(*s)
    for t in (out.loss, out.per_prompt, out.target_weights, out.baseline_weights, out.grad_log_policy):
        assert t.dtype == result
    assert brain.surrogate_loss(*s, estimator="grpo").loss.dtype == result
    assert brain.gradient_coefficients(*s, estimator="rloo").dtype == result


# ---- gradient_coefficients and surrogate_loss (estimators.hpp, surrogate.hpp)


def clipped_loss(rho, adv, clip_low, clip_high):
    return -torch.min(rho * adv, torch.clamp(rho, 1 - clip_low, 1 + clip_high) * adv)


def surrogate_ref(lp, lq, l0, r, estimator, beta=1.0, clip_low=0.2, clip_high=0.2, kl_coef=0.0,
                  scale_rewards="group", log_partition=None):
    """(per_prompt, coefficients): the estimator's per-prompt objective (negated), and w = -d/d lp of
    its row sum with the advantages and weights held fixed, both by autograd."""
    n = lp.shape[1]
    x = lp.detach().clone().requires_grad_(True)
    log_g = r / beta
    rho = torch.exp(x - lq)
    if estimator in DISTILLATION:
        log_alpha = log_g + l0 - lq
        alpha_bar = torch.softmax(log_alpha, 1)
        if estimator == "brain":
            per = (alpha_bar * (torch.log(alpha_bar) - torch.log_softmax(x - lq, 1))).sum(1)
        elif estimator == "no_baseline":
            per = -(alpha_bar * x).sum(1)  # eq. 5
        else:
            log_z = (torch.logsumexp(log_alpha, 1, keepdim=True) - torch.log(torch.tensor(float(n), dtype=lp.dtype))
                     if log_partition is None else log_partition)
            a = torch.exp(log_alpha - log_z) / n
            per = -(a * x).sum(1)  # eq. 4
            if estimator == "gdc_pp":
                per = per + (rho / n).sum(1)  # eq. 9's baseline
    elif estimator == "rloo":
        L = (log_g + l0 - lp).detach()
        adv = L - (L.sum(1, keepdim=True) - L) / (n - 1)
        per = -(rho * adv).sum(1) / n
    elif estimator == "grpo":
        centred = log_g - log_g.mean(1, keepdim=True)
        if scale_rewards == "group":
            adv = centred / (log_g.std(1, keepdim=True) + 1e-4)
        elif scale_rewards == "batch":
            adv = centred / (log_g.std() + 1e-4)
        else:
            adv = centred
        per = clipped_loss(rho, adv, clip_low, clip_high)
        if kl_coef > 0:
            log_ratio = l0 - x
            per = per + kl_coef * (torch.exp(log_ratio) - log_ratio - 1)  # k3
        per = per.sum(1) / n
    else:  # ppo_clip
        reward = log_g + l0 - lq
        adv = (reward - reward.mean()) / torch.sqrt(reward.var() + 1e-8)
        per = clipped_loss(rho, adv, clip_low, clip_high).sum(1) / n
    (w,) = torch.autograd.grad(-per.sum(), x)
    return per.detach(), w


CASES = [dict(estimator=e) for e in DISTILLATION + POLICY_GRADIENT] + [
    dict(estimator="brain", beta=0.3),
    dict(estimator="grpo", kl_coef=0.05, clip_high=0.28),
    dict(estimator="grpo", scale_rewards="batch"),
    dict(estimator="grpo", scale_rewards="none", clip_low=0.1),
    dict(estimator="ppo_clip", clip_low=0.05, clip_high=0.05),
    dict(estimator="rloo", beta=0.1),
]


@pytest.mark.parametrize("kwargs", CASES, ids=lambda k: "-".join(f"{a}={b}" for a, b in k.items()))
def test_estimators_match_reference(kwargs):
    s = make_samples(n=6)
    per_prompt, w = surrogate_ref(*s, **kwargs)
    torch.testing.assert_close(brain.gradient_coefficients(*s, **kwargs), w)
    lp = s[0].clone().requires_grad_(True)
    out = brain.surrogate_loss(lp, *s[1:], **kwargs)
    torch.testing.assert_close(out.per_prompt, per_prompt)
    torch.testing.assert_close(out.loss, per_prompt.mean())
    torch.testing.assert_close(out.coefficients, w)
    torch.testing.assert_close(out.grad_log_policy, -w / lp.shape[0])
    out.loss.backward()
    torch.testing.assert_close(lp.grad, -w / lp.shape[0])


def test_brain_estimator_is_minus_brain_loss_gradient():
    s = make_samples()
    w = brain.gradient_coefficients(*s)  # eq. 12: alpha-bar - beta-bar
    torch.testing.assert_close(w, -brain.brain_loss(*s).grad_log_policy * s[0].shape[0])


@pytest.mark.parametrize("estimator", ["gdc_pp", "dpg"])
def test_log_partition(estimator):
    s = make_samples()
    log_z = torch.randn(3, 1, dtype=torch.float64)
    per_prompt, w = surrogate_ref(*s, estimator=estimator, log_partition=log_z)
    torch.testing.assert_close(brain.gradient_coefficients(*s, estimator=estimator, log_partition=log_z), w)
    torch.testing.assert_close(brain.surrogate_loss(*s, estimator=estimator, log_partition=log_z).per_prompt,
                               per_prompt)


def test_log_goodness_and_effective_sample_size():
    r = torch.randn(3, 5, dtype=torch.float64)
    torch.testing.assert_close(brain.log_goodness(r, beta=0.5), r / 0.5)
    torch.testing.assert_close(brain.log_goodness(r, goodness="logistic"), F.logsigmoid(r))
    torch.testing.assert_close(brain.log_goodness(r, goodness="log_goodness"), r)
    w = torch.rand(3, 5, dtype=torch.float64)
    torch.testing.assert_close(brain.effective_sample_size(w), w.sum(1) ** 2 / (w**2).sum(1))


# ---- DPO, pairs and RSO (reductions.hpp, paper §6)


@pytest.mark.parametrize("beta,eps", [(0.1, 0.0), (1.0, 0.0), (0.5, 0.2)])
def test_dpo_loss_matches_reference(beta, eps):
    g = torch.Generator().manual_seed(1)
    cp, rp, cr, rr = (torch.randn(4, 3, generator=g, dtype=torch.float64) for _ in range(4))
    cp.requires_grad_(True)
    rp.requires_grad_(True)
    out = brain.dpo_loss(cp, rp, cr, rr, beta=beta, label_smoothing=eps)
    h = (cp - cr) - (rp - rr)
    per_pair = -(1 - eps) * F.logsigmoid(beta * h) - eps * F.logsigmoid(-beta * h)
    torch.testing.assert_close(out.per_pair, per_pair)
    torch.testing.assert_close(out.loss, per_pair.mean())
    gc, gr = torch.autograd.grad(per_pair.mean(), (cp, rp))
    torch.testing.assert_close(out.grad_chosen, gc)
    torch.testing.assert_close(out.grad_rejected, gr)
    out.loss.backward()
    torch.testing.assert_close(cp.grad, gc)


def test_pairwise_and_regroup():
    s = make_samples(prompts=2, n=6)
    pairs = brain.pairwise(*s)
    for got, x in zip(pairs, s):
        torch.testing.assert_close(got, x.reshape(-1, 2))
    for got, x in zip(brain.regroup(*s, 3), s):
        torch.testing.assert_close(got, x.reshape(-1, 3))


def test_dpo_is_brain_loss_with_argmax_on_pairs():
    # Theorem 6.1: with q = p, beta = 1 and the prior as reference, BRAIn with argmax targets on
    # pairs is DPO with the higher-reward sample chosen.
    lp, _, l0, r = make_samples(prompts=2, n=6)
    plp, plq, pl0, pr = brain.pairwise(lp, l0, l0, r)
    out = brain.brain_loss(plp, plq, pl0, pr, target="argmax")
    win = pr.argmax(1, keepdim=True)
    lose = 1 - win
    dpo = brain.dpo_loss(plp.gather(1, win), plp.gather(1, lose), pl0.gather(1, win), pl0.gather(1, lose), beta=1.0)
    torch.testing.assert_close(out.loss, dpo.loss)


def test_rso():
    g = torch.Generator().manual_seed(2)
    r = torch.randn(4, 8, generator=g, dtype=torch.float64)
    torch.testing.assert_close(brain.rso_log_acceptance(r, beta=0.5), (r - r.max(1, keepdim=True).values) / 0.5)
    a = brain.rso_select(r, beta=0.5, max_accepted=4, seed=7)
    assert a == brain.rso_select(r, beta=0.5, max_accepted=4, seed=7)  # seeded: reproducible
    assert len(a) == 4
    for row, cols in enumerate(a):
        assert 1 <= len(cols) <= 4 and len(set(cols)) == len(cols)
        assert all(0 <= c < 8 for c in cols)
    # Every sample visited (max_accepted = n): the best is always accepted; a tiny beta accepts only it.
    for row, cols in enumerate(brain.rso_select(r, beta=0.5, max_accepted=8, seed=3)):
        assert int(r[row].argmax()) in cols
    assert brain.rso_select(r, beta=1e-9, max_accepted=8, seed=3) == [[int(i)] for i in r.argmax(1)]
    pairs = brain.rso_pairs(r, a)
    assert len(pairs) == sum(len(c) // 2 for c in a)
    for row, chosen, rejected in pairs:
        assert r[row, chosen] >= r[row, rejected]
