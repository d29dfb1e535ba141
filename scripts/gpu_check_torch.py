#!/usr/bin/env python3
"""The same computations as benchmarks/cuda/cuda_benchmark.cu, in PyTorch eager ops on the same
GPU: one line per kernel, `name=<kernel> torch_time_us=<median>`; for the fused linear log-probs
also peak memory, and a Liger-style chunked reference. Called by scripts/gpu-check."""
import sys

import torch


def median_us(fn, repeats=100):
    for _ in range(10):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        stop.record()
        stop.synchronize()
        times.append(start.elapsed_time(stop) * 1000.0)
    times.sort()
    return times[len(times) // 2]


def main():
    if not torch.cuda.is_available():
        print("SKIPPED: PyTorch sees no CUDA device")
        return 77
    dev = torch.device("cuda")
    g = torch.Generator(device=dev).manual_seed(0)
    print(f'torch={torch.__version__} device="{torch.cuda.get_device_name()}"')

    # Group loss, Bradley-Terry (beta = 1), float32 [4096, 32]: the ops brain_loss composes (eqs. 6, 11, 12, 14).
    prompts, n = 4096, 32
    lp, lq, l0 = (torch.randn(prompts, n, device=dev, generator=g) * 3 - 10 for _ in range(3))
    r = torch.randn(prompts, n, device=dev, generator=g)

    def group_loss():
        log_t = torch.log_softmax(r + l0 - lq, dim=1)
        log_b = torch.log_softmax(lp - lq, dim=1)
        t, b = log_t.exp(), log_b.exp()
        kl = torch.where(t > 0, t * (log_t - log_b), torch.zeros_like(t)).sum(1)
        return t, b, (b - t) / prompts, kl, kl.mean()

    print(f"name=group_loss torch_time_us={median_us(group_loss):.2f}")

    # Token log-probs from float32 logits [2048, 50257]: log_softmax + gather, and the backward formula.
    rows, vocabulary = 2048, 50257
    x = torch.randn(rows, vocabulary, device=dev, generator=g) * 2
    labels = (torch.arange(rows, device=dev) * 7919) % vocabulary
    up = torch.randn(rows, device=dev, generator=g)

    def forward():
        return torch.log_softmax(x, dim=1).gather(1, labels[:, None]).squeeze(1)

    def backward():
        grad = -(up[:, None] * torch.softmax(x, dim=1))
        return grad.scatter_add_(1, labels[:, None], up[:, None])

    print(f"name=log_probs_forward torch_time_us={median_us(forward):.2f}")
    print(f"name=log_probs_backward torch_time_us={median_us(backward):.2f}")
    del x
    fused_linear(dev, g)
    return 0


class LigerStyleLinearCrossEntropy(torch.autograd.Function):
    """Liger-Kernel's fused linear cross-entropy scheme in plain PyTorch ops (no Triton): chunks of
    tokens sized next_pow2(ceil(BT / ceil(V / H))); each chunk's logits, softmax gradient and the
    input / weight gradients computed in forward; backward only scales them."""

    @staticmethod
    def forward(ctx, hidden, weight, labels):
        tokens, width = hidden.shape
        vocabulary = weight.shape[0]
        chunk = 1 << max(0, (-(-tokens // -(-vocabulary // width)) - 1).bit_length())
        grad_hidden = torch.empty_like(hidden)
        grad_weight = torch.zeros_like(weight)
        loss = hidden.new_zeros(())
        for start in range(0, tokens, chunk):
            h = hidden[start:start + chunk]
            y = labels[start:start + chunk]
            logits = h @ weight.T
            lse = torch.logsumexp(logits, dim=1)
            loss += (lse - logits.gather(1, y[:, None]).squeeze(1)).sum()
            grad = logits.sub_(lse[:, None]).exp_()  # softmax, in place
            grad.scatter_add_(1, y[:, None], -torch.ones_like(lse)[:, None])
            grad_hidden[start:start + chunk] = grad @ weight
            grad_weight.addmm_(grad.T, h)
        ctx.save_for_backward(grad_hidden, grad_weight)
        return loss

    @staticmethod
    def backward(ctx, grad_output):
        grad_hidden, grad_weight = ctx.saved_tensors
        return grad_hidden * grad_output, grad_weight * grad_output, None


def measure(fn, hidden, weight, repeats=5):
    """(median µs, peak MiB above what exists before) of one forward + backward."""
    def step():
        fn().backward()
        hidden.grad = weight.grad = None
    step()
    torch.cuda.synchronize()
    before = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    us = median_us(step, repeats)
    return us, (torch.cuda.max_memory_allocated() - before) / 2**20


def fused_linear(dev, g):
    # The shape of tests/cuda/torch_cuda_test.cpp's fused_memory(): 8192 tokens x 50257 x 768, float32.
    tokens, vocabulary, width = 8192, 50257, 768
    hidden = torch.randn(tokens, width, device=dev, generator=g).requires_grad_()
    weight = (torch.randn(vocabulary, width, device=dev, generator=g) * 0.03).requires_grad_()
    labels = torch.randint(0, vocabulary, (tokens,), device=dev, generator=g)
    eager_us, eager_mib = measure(lambda: torch.log_softmax(hidden @ weight.T, -1).gather(1, labels[:, None]).sum(),
                                  hidden, weight)
    liger_us, liger_mib = measure(lambda: LigerStyleLinearCrossEntropy.apply(hidden, weight, labels), hidden, weight)
    print(f"name=fused_linear torch_time_us={eager_us:.0f} torch_peak_mib={eager_mib:.1f} "
          f"liger_time_us={liger_us:.0f} liger_peak_mib={liger_mib:.1f}")


if __name__ == "__main__":
    sys.exit(main())
