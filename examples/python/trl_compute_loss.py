#!/usr/bin/env python3
"""Where brain_loss goes in a TRL-style trainer: an override of compute_loss.

The layout is GRPOTrainer's: each prompt's num_generations completions are consecutive rows of
the batch, sampled at `temperature` by the proposal (the model as it was when generating, eq. 4),
and the inputs carry the proposal's and the reference (prior, "SFT") model's sequence log-probs
and the rewards. Run as a script, it calls the override once on a stand-in model (no TRL needed).
"""

import types

import torch

import brain


class BrainLossMixin:
    """Put before the trainer class: class BrainTrainer(BrainLossMixin, GRPOTrainer)."""

    brain_beta = 1.0  # Bradley-Terry: log g = r / beta (eq. 21)

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        ids = torch.cat([inputs["prompt_ids"], inputs["completion_ids"]], 1)
        attention = torch.cat([inputs["prompt_mask"], inputs["completion_mask"]], 1)
        # Score the completion tokens only; labels are the input ids, unshifted (next_token).
        scored = torch.cat([torch.zeros_like(inputs["prompt_mask"]), inputs["completion_mask"]], 1)
        hidden = model.model(input_ids=ids, attention_mask=attention).last_hidden_state
        # log q_theta(y|x) under the sampler's temperature, without materialising [B, T, V] logits.
        log_policy = brain.fused_linear_sequence_log_probs(hidden, model.lm_head.weight, ids, scored, "next_token",
                                                           temperature=self.temperature)
        groups = (-1, self.num_generations)  # [prompts, n]
        out = brain.brain_loss(log_policy.view(groups), inputs["old_logps"].view(groups),
                               inputs["ref_logps"].view(groups), inputs["rewards"].view(groups),
                               beta=self.brain_beta)
        return (out.loss, out) if return_outputs else out.loss


if __name__ == "__main__":  # a smoke run on a stand-in for a Hugging Face causal LM
    torch.manual_seed(0)
    V, d, prompts, n = 16, 8, 2, 4

    class StandIn(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = torch.nn.Embedding(V, d)
            self.lm_head = torch.nn.Linear(d, V, bias=False)
            self.model = lambda input_ids, attention_mask: types.SimpleNamespace(
                last_hidden_state=self.embed(input_ids) * attention_mask.unsqueeze(-1))

    trainer = BrainLossMixin()
    trainer.temperature, trainer.num_generations = 0.9, n
    completion_mask = torch.ones(prompts * n, 5, dtype=torch.long)
    completion_mask[0, 3:] = 0  # an early end of sequence
    inputs = dict(prompt_ids=torch.randint(0, V, (prompts * n, 3)), prompt_mask=torch.ones(prompts * n, 3, dtype=torch.long),
                  completion_ids=torch.randint(0, V, (prompts * n, 5)), completion_mask=completion_mask,
                  old_logps=-torch.rand(prompts * n) * 10, ref_logps=-torch.rand(prompts * n) * 10,
                  rewards=torch.randn(prompts * n))
    model = StandIn()
    loss, out = trainer.compute_loss(model, inputs, return_outputs=True)
    loss.backward()
    print(f"loss {loss.item():.4f}; lm_head gradient norm {model.lm_head.weight.grad.norm().item():.4f}")
