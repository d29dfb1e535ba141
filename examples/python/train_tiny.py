#!/usr/bin/env python3
"""Algorithm 1 of the BRAIn paper on a tiny model, with the `brain` Python module.

A one-layer GRU policy over an 8-token vocabulary writes 6-token responses to 2-token prompts.
The reward counts token 3 in the response, and the goodness is Bradley-Terry with beta = 0.5
(log g = r / beta, eq. 21), so the posterior p(y|x, G=1) ∝ p(y|x) exp(2 r) favours token 3.
Each iteration: draw n responses per prompt from the frozen proposal q (eq. 4), score them under
the policy (log q_theta, with gradient), the proposal and the prior (the initial model: the
"SFT" model), take AdamW steps on brain_loss, then refresh the proposal to the policy.

    PYTHONPATH=build/release/python python3 examples/python/train_tiny.py [--check]

--check exits non-zero unless the mean reward rose by at least 1 token (the ctest
python_example_train_tiny).
"""

import argparse
import copy
import sys
import time

import torch

import brain

VOCAB, PROMPT_LEN, RESPONSE_LEN, TARGET_TOKEN = 8, 2, 6, 3


class Policy(torch.nn.Module):
    def __init__(self, dim=32):
        super().__init__()
        self.embed = torch.nn.Embedding(VOCAB, dim)
        self.gru = torch.nn.GRU(dim, dim, batch_first=True)
        self.head = torch.nn.Linear(dim, VOCAB, bias=False)  # its weight feeds the fused log-probs

    def hidden(self, ids, state=None):
        return self.gru(self.embed(ids), state)

    @torch.no_grad()
    def sample(self, prompts, n):
        """n responses per prompt: ids [prompts * n, PROMPT_LEN + RESPONSE_LEN]."""
        ids = prompts.repeat_interleave(n, 0)
        out, state = self.hidden(ids)
        for _ in range(RESPONSE_LEN):
            probs = torch.softmax(self.head(out[:, -1]), -1)
            token = torch.multinomial(probs, 1)
            ids = torch.cat([ids, token], 1)
            out, state = self.hidden(token, state)
        return ids

    def sequence_log_probs(self, ids, mask):
        """log pi(y|x) of the masked response tokens, [B]: hidden states through brain's fused head."""
        hidden, _ = self.hidden(ids)
        return brain.fused_linear_sequence_log_probs(hidden, self.head.weight, ids, mask, "next_token")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--iterations", type=int, default=60)
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--n", type=int, default=8, help="samples per prompt")
    parser.add_argument("--beta", type=float, default=0.5)
    parser.add_argument("--steps", type=int, default=2, help="gradient steps per batch of samples")
    parser.add_argument("--check", action="store_true", help="fail unless the mean reward rose")
    args = parser.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(1)
    start = time.time()

    policy = Policy()
    prior = copy.deepcopy(policy).requires_grad_(False)  # p(y|x): the initial ("SFT") model
    optimiser = torch.optim.AdamW(policy.parameters(), lr=3e-3)
    mask = torch.zeros(args.prompts * args.n, PROMPT_LEN + RESPONSE_LEN, dtype=torch.bool)
    mask[:, PROMPT_LEN:] = True  # label positions of the response tokens
    rewards = []
    for it in range(args.iterations):
        proposal = copy.deepcopy(policy).requires_grad_(False)  # Algorithm 1: q <- q_theta
        prompts = torch.randint(0, VOCAB, (args.prompts, PROMPT_LEN))
        ids = proposal.sample(prompts, args.n)
        reward = (ids[:, PROMPT_LEN:] == TARGET_TOKEN).sum(1).double()
        shape = (args.prompts, args.n)
        with torch.no_grad():
            log_proposal = proposal.sequence_log_probs(ids, mask).view(shape)
            log_prior = prior.sequence_log_probs(ids, mask).view(shape)
        for _ in range(args.steps):
            log_policy = policy.sequence_log_probs(ids, mask).view(shape)
            out = brain.brain_loss(log_policy, log_proposal, log_prior, reward.view(shape).float(), beta=args.beta)
            optimiser.zero_grad()
            out.loss.backward()
            optimiser.step()
        rewards.append(reward.mean().item())
        if it % 10 == 0 or it == args.iterations - 1:
            print(f"iteration {it:3d}  mean reward {rewards[-1]:.3f}  loss {out.loss.item():.4f}", flush=True)

    first, last = sum(rewards[:5]) / 5, sum(rewards[-5:]) / 5
    # What the posterior expects: each response token is 3 with probability e^(1/beta) / (e^(1/beta) + 7)
    # under a uniform prior.
    posterior = RESPONSE_LEN * (2.718281828 ** (1 / args.beta)) / (2.718281828 ** (1 / args.beta) + VOCAB - 1)
    print(f"mean reward: first 5 iterations {first:.3f}, last 5 {last:.3f} "
          f"(posterior under a uniform prior: {posterior:.2f}); {time.time() - start:.1f} s")
    if args.check and not last >= first + 1.0:
        print("FAILED: the mean reward did not rise by 1", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
