"""C++ std::invalid_argument surfaces as ValueError carrying the C++ message, which names the argument."""

import pytest
import torch

import brain


def good(prompts=2, n=3):
    return [torch.randn(prompts, n, dtype=torch.float64) for _ in range(4)]


def test_invalid_argument_is_value_error_with_cpp_message():
    lp, lq, l0, r = good()
    with pytest.raises(ValueError, match=r"^brain::brain_loss: shape mismatch: log_proposal is 2x4 but log_policy is 2x3$"):
        brain.brain_loss(lp, torch.randn(2, 4, dtype=torch.float64), l0, r)


@pytest.mark.parametrize("name,index", [("log_policy", 0), ("log_proposal", 1), ("reward", 3)])
def test_non_finite_input_names_the_argument(name, index):
    s = good()
    s[index][1, 2] = float("nan")
    with pytest.raises(ValueError, match=name):
        brain.brain_loss(*s)


@pytest.mark.parametrize("call,pattern", [
    (lambda s: brain.brain_loss(*s, beta=0.0), "beta = 0 must be finite and > 0"),
    (lambda s: brain.brain_loss(*s, beta=-1.0, goodness="logistic"), "beta = -1 applies only to goodness"),
    (lambda s: brain.brain_loss(*s, goodness="hinge"), 'goodness = "hinge" must be one of'),
    (lambda s: brain.brain_loss(*s, target="max"), 'target = "max" must be one of'),
    (lambda s: brain.gradient_coefficients(*s, estimator="ppo"), 'estimator = "ppo" must be one of'),
    (lambda s: brain.surrogate_loss(*s, estimator="grpo", clip_low=1.5), "clip_low = 1.5 must be in"),
    (lambda s: brain.surrogate_loss(*s, estimator="grpo", kl_coef=-1.0), "kl_coef = -1 must be"),
    (lambda s: brain.surrogate_loss(*s, estimator="grpo", scale_rewards="x"), 'scale_rewards = "x"'),
    (lambda s: brain.surrogate_loss(*s, estimator="rloo", log_partition=torch.zeros(2, 1)), "log_partition applies"),
    (lambda s: brain.gradient_coefficients(*s, estimator="dpg", log_partition=torch.zeros(3, 1, dtype=torch.float64)),
     "log_partition is 3x1"),
    (lambda s: brain.dpo_loss(*s, label_smoothing=0.75), "label_smoothing = 0.75 must be in"),
    (lambda s: brain.dpo_loss(s[0], s[1][:1], s[2], s[3]), "rejected_log_policy"),
    (lambda s: brain.regroup(*s, 2), "group size k = 2"),
    (lambda s: brain.rso_select(s[3], beta=1.0, max_accepted=0), "max_accepted = 0"),
    (lambda s: brain.rso_log_acceptance(s[3], beta=float("inf")), r"beta = \+inf"),
])
def test_bad_arguments(call, pattern):
    with pytest.raises(ValueError, match=pattern):
        call(good())


def test_rloo_needs_two_samples():
    with pytest.raises(ValueError, match="needs n >= 2"):
        brain.gradient_coefficients(*good(n=1), estimator="rloo")


def test_log_prob_errors_name_the_argument():
    logits = torch.randn(2, 4, 5)
    labels = torch.randint(0, 5, (2, 4))
    mask = torch.ones(2, 4, dtype=torch.bool)
    with pytest.raises(ValueError, match=r"mask\[0, 0\] is set"):
        brain.sequence_log_probs(logits, labels, mask, "next_token")
    mask[:, 0] = False
    with pytest.raises(ValueError, match='alignment = "previous"'):
        brain.sequence_log_probs(logits, labels, mask, "previous")
    with pytest.raises(ValueError, match='reduce = "max"'):
        brain.sequence_log_probs(logits, labels, mask, "next_token", reduce="max")
    with pytest.raises(ValueError, match=r"labels\[1, 2\] = 9 is outside the vocabulary"):
        bad = labels.clone()
        bad[1, 2] = 9
        brain.sequence_log_probs(logits, bad, mask, "next_token")
    with pytest.raises(ValueError, match="labels has shape"):
        brain.sequence_log_probs(logits, labels[:, :3], mask, "next_token")
    with pytest.raises(ValueError, match="top_p = 0 must be in"):
        brain.sequence_log_probs(logits, labels, mask, "next_token", top_p=0.0)
    with pytest.raises(ValueError, match="temperature = 0 must be"):
        brain.sampled_log_softmax(logits, temperature=0.0)
    with pytest.raises(ValueError, match="top_k = -1 must be"):
        brain.sampled_log_softmax(logits, top_k=-1)
    with pytest.raises(ValueError, match="weight has shape"):
        brain.fused_linear_sequence_log_probs(torch.randn(2, 4, 3), torch.randn(5, 2), labels, mask, "next_token")
    with pytest.raises(ValueError, match="chunk_tokens = -1"):
        brain.fused_linear_sequence_log_probs(torch.randn(2, 4, 3), torch.randn(5, 3), labels, mask, "next_token",
                                              chunk_tokens=-1)


def test_alignment_is_required():
    # As in C++: which label a logits position scores is always explicit.
    with pytest.raises(TypeError):
        brain.sequence_log_probs(torch.randn(1, 2, 3), torch.zeros(1, 2, dtype=torch.long),
                                 torch.zeros(1, 2, dtype=torch.bool))
