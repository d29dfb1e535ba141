#!/usr/bin/env python3
"""The same computations as benchmarks/cuda/cuda_benchmark.cu, in PyTorch eager ops on the same
GPU: one line per kernel, `name=<kernel> torch_time_us=<median>`. Called by scripts/gpu-check."""
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
