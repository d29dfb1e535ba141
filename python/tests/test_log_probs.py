"""sequence_log_probs, fused_linear_sequence_log_probs and sampled_log_softmax against plain PyTorch."""

import pytest
import torch

import brain


def sampled_log_softmax_ref(logits, temperature=1.0, top_k=0, top_p=1.0):
    """Hugging Face's order: temperature, top-k (ties with the k-th kept), then top-p on the
    renormalised top-k distribution (the smallest set reaching top_p, ties kept)."""
    v = logits.double() / temperature
    if top_k > 0:
        kth = v.topk(top_k, -1).values[..., -1:]
        v = v.masked_fill(v < kth, float("-inf"))
    if top_p < 1.0:
        p = torch.softmax(v, -1)
        sorted_p, _ = p.sort(-1, descending=True)
        before = sorted_p.cumsum(-1) - sorted_p  # mass strictly above each sorted position
        kept = before < top_p
        threshold = sorted_p.masked_fill(~kept, float("inf")).min(-1, keepdim=True).values
        v = v.masked_fill(p < threshold, float("-inf"))
    return torch.log_softmax(v, -1)


def make_batch(B=3, T=7, V=11, dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(B, T, V, generator=g, dtype=torch.float64).to(dtype)
    labels = torch.randint(0, V, (B, T), generator=g)
    mask = torch.zeros(B, T, dtype=torch.bool)
    for b in range(B):  # left, both-sided and right padding
        mask[b, 1 + b % 3 : T - b % 2] = True
    return logits, labels, mask


def token_log_probs_ref(logits, labels, mask, alignment, **sampling):
    lsm = sampled_log_softmax_ref(logits, **sampling)
    B, T, _ = logits.shape
    out = torch.zeros(B, T, dtype=torch.float64)
    for b in range(B):
        for t in range(T):
            if mask[b, t]:
                row = t - 1 if alignment == "next_token" else t
                out[b, t] = lsm[b, row, labels[b, t]]
    return out


def reduce_ref(tokens, mask, reduce):
    if reduce == "none":
        return tokens
    total = tokens.sum(1)
    return total if reduce == "sum" else total / mask.sum(1).clamp_min(1)


SAMPLING = [dict(), dict(temperature=0.7), dict(top_k=4), dict(temperature=1.3, top_k=6, top_p=0.9)]


@pytest.mark.parametrize("alignment", ["next_token", "same_position"])
@pytest.mark.parametrize("reduce", ["sum", "mean", "none"])
@pytest.mark.parametrize("sampling", SAMPLING, ids=str)
def test_sequence_log_probs_matches_reference(alignment, reduce, sampling):
    logits, labels, mask = make_batch()
    if sampling.get("top_k") or sampling.get("top_p"):
        # Truncation: score only labels the sampler could draw (else -inf, an error).
        keep = torch.isfinite(sampled_log_softmax_ref(logits, **sampling))
        for b, t in mask.nonzero().tolist():
            row = t - 1 if alignment == "next_token" else t
            labels[b, t] = int(keep[b, row].nonzero()[0])
    got = brain.sequence_log_probs(logits, labels, mask, alignment, reduce=reduce, **sampling)
    ref = reduce_ref(token_log_probs_ref(logits, labels, mask, alignment, **sampling), mask, reduce)
    torch.testing.assert_close(got, ref)


@pytest.mark.parametrize("sampling", SAMPLING, ids=str)
def test_sampled_log_softmax_matches_reference(sampling):
    logits, _, _ = make_batch()
    torch.testing.assert_close(brain.sampled_log_softmax(logits, **sampling), sampled_log_softmax_ref(logits, **sampling))


@pytest.mark.parametrize("reduce", ["sum", "mean", "none"])
def test_sequence_log_probs_gradcheck(reduce):
    logits, labels, mask = make_batch(B=2, T=5, V=6)
    logits.requires_grad_(True)
    f = lambda x: brain.sequence_log_probs(x, labels, mask, "next_token", reduce=reduce, temperature=0.8)
    assert torch.autograd.gradcheck(f, (logits,))


@pytest.mark.parametrize("chunk_tokens", [0, 1, 3])
@pytest.mark.parametrize("vocab_tile", [0, 4])
@pytest.mark.parametrize("alignment", ["next_token", "same_position"])
def test_fused_linear_matches_sequence_log_probs(chunk_tokens, vocab_tile, alignment):
    g = torch.Generator().manual_seed(3)
    _, labels, mask = make_batch()
    hidden = torch.randn(3, 7, 5, generator=g, dtype=torch.float64)
    weight = torch.randn(11, 5, generator=g, dtype=torch.float64)
    got = brain.fused_linear_sequence_log_probs(hidden, weight, labels, mask, alignment, chunk_tokens=chunk_tokens,
                                                vocab_tile=vocab_tile)
    torch.testing.assert_close(got, brain.sequence_log_probs(hidden @ weight.T, labels, mask, alignment))
    torch.testing.assert_close(got, reduce_ref(token_log_probs_ref(hidden @ weight.T, labels, mask, alignment), mask, "sum"))


@pytest.mark.parametrize("frozen_weight", [False, True])
def test_fused_linear_gradcheck(frozen_weight):
    g = torch.Generator().manual_seed(4)
    _, labels, mask = make_batch(B=2, T=5, V=6)
    hidden = torch.randn(2, 5, 3, generator=g, dtype=torch.float64, requires_grad=True)
    weight = torch.randn(6, 3, generator=g, dtype=torch.float64, requires_grad=not frozen_weight)
    f = lambda h, w: brain.fused_linear_sequence_log_probs(h, w, labels, mask, "next_token", chunk_tokens=2,
                                                          vocab_tile=4, reduce="mean")
    assert torch.autograd.gradcheck(f, (hidden, weight))


@pytest.mark.parametrize("dtype,result", [(torch.float64, torch.float64), (torch.float32, torch.float32),
                                          (torch.bfloat16, torch.float32)])
def test_log_prob_dtypes(dtype, result):
    logits, labels, mask = make_batch(dtype=dtype)
    assert brain.sequence_log_probs(logits, labels, mask, "next_token").dtype == result
    assert brain.sampled_log_softmax(logits).dtype == result
    hidden, weight = torch.randn(3, 7, 4, dtype=dtype), torch.randn(11, 4, dtype=dtype)
    assert brain.fused_linear_sequence_log_probs(hidden, weight, labels, mask, "next_token").dtype == result


def test_log_probs_compose_with_brain_loss():
    # The pipeline of Algorithm 1: log-probs of n samples per prompt, a [prompts, n] view, the loss.
    logits, labels, mask = make_batch(B=4, T=6, V=9)
    mask[:, 0] = False
    mask[3, 2:] = True
    logits.requires_grad_(True)
    lp = brain.sequence_log_probs(logits, labels, mask, "next_token").view(2, 2)
    lq = lp.detach() + 0.1
    out = brain.brain_loss(lp, lq, lq, torch.randn(2, 2, dtype=torch.float64))
    out.loss.backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all()
