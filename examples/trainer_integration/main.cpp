// A LibTorch trainer that aligns a small autoregressive policy with brain::brain_loss: the code a
// user copies into an existing trainer (Algorithm 1 of the paper, docs/math.md §8).
//
// Task: for prompt x (an integer), write L tokens over a vocabulary of V. The reward counts the
// positions t where y_t == (x + 3t) mod V, less a penalty for repeating the previous token. The
// prior p is the policy's frozen initialisation; the target is p(y|x) exp(r(x,y) / beta).
//
//   trainer_integration [refreshes] [seed]
// Prints the mean reward of fresh samples per refresh; exits 1 unless it rose by more than 0.5.

#include <brain/loss.hpp>  // link brain::torch

#include <torch/torch.h>

#include <cstdio>
#include <cstdlib>

namespace {

constexpr int64_t prompts_total = 64, vocabulary = 8, length = 6, width = 64;

// log q(y_t | x, t, y_{t-1}): embeddings of the prompt, the position and the previous token
// (a start token at t = 0), then a two-layer MLP.
struct PolicyImpl : torch::nn::Module {
  torch::nn::Embedding prompt{prompts_total, width}, position{length, width}, previous{vocabulary + 1, width};
  torch::nn::Linear hidden{width, width}, out{width, vocabulary};
  PolicyImpl() {
    register_module("prompt", prompt);
    register_module("position", position);
    register_module("previous", previous);
    register_module("hidden", hidden);
    register_module("out", out);
  }
  // x [B], t [B, T], prev [B, T] -> log-probabilities [B, T, V]
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& t, const torch::Tensor& prev) {
    const auto h = prompt(x).unsqueeze(1) + position(t) + previous(prev);
    return torch::log_softmax(out(torch::gelu(hidden(h))), -1);
  }
};
TORCH_MODULE(Policy);

// The previous-token inputs for sequences y [B, L]: a start token, then y shifted right.
torch::Tensor previous_tokens(const torch::Tensor& y) {
  return torch::cat({torch::full({y.size(0), 1}, vocabulary, y.options()), y.slice(1, 0, length - 1)}, 1);
}

// log q(y|x) of whole sequences: the sum of per-token log-probs, [B].
torch::Tensor sequence_log_prob(Policy& model, const torch::Tensor& x, const torch::Tensor& y) {
  const auto t = torch::arange(length, y.options()).expand({y.size(0), length});
  return model->forward(x, t, previous_tokens(y)).gather(2, y.unsqueeze(2)).squeeze(2).sum(1);
}

// n samples per prompt from `model`, token by token: y [B * n, L], prompts repeated n times.
torch::Tensor sample(Policy& model, const torch::Tensor& x) {
  torch::NoGradGuard no_grad;
  auto y = torch::zeros({x.size(0), length}, torch::kLong);
  for (int64_t t = 0; t < length; ++t) {
    const auto log_probs = model->forward(x, torch::full({x.size(0), length}, t, torch::kLong), previous_tokens(y));
    y.select(1, t).copy_(torch::multinomial(log_probs.select(1, t).exp(), 1).squeeze(1));
  }
  return y;
}

torch::Tensor reward(const torch::Tensor& x, const torch::Tensor& y) {
  const auto t = torch::arange(length).unsqueeze(0);
  const auto wanted = (x.unsqueeze(1) + 3 * t) % vocabulary;
  const auto hits = (y == wanted).sum(1).to(torch::kFloat);
  const auto repeats = (y.slice(1, 1, length) == y.slice(1, 0, length - 1)).sum(1).to(torch::kFloat);
  return hits - 0.5 * repeats;
}

}  // namespace

int main(int argc, char** argv) {
  const int refreshes = argc > 1 ? std::atoi(argv[1]) : 60;
  torch::manual_seed(argc > 2 ? std::atoi(argv[2]) : 0);
  const int64_t m = 32, n = 16, steps_per_refresh = 4;  // prompts per refresh, samples per prompt, K
  const brain::bradley_terry goodness{.beta = 0.25};

  Policy policy, prior, proposal;  // q_theta, p (frozen), q (frozen, refreshed)
  auto copy_weights = [](Policy& from, Policy& to) {
    torch::NoGradGuard no_grad;
    const auto source = from->named_parameters();
    for (auto& item : to->named_parameters()) item.value().copy_(source[item.key()]);
  };
  copy_weights(policy, prior);
  torch::optim::AdamW optimizer(policy->parameters(), torch::optim::AdamWOptions(3e-3).weight_decay(0.0));

  double first = 0, last = 0;
  for (int refresh = 0; refresh < refreshes; ++refresh) {
    copy_weights(policy, proposal);  // q <- q_theta (the proposal update)
    const auto x = torch::randint(prompts_total, {m}, torch::kLong).repeat_interleave(n);
    const auto y = sample(proposal, x);
    torch::Tensor log_proposal, log_prior;
    {
      torch::NoGradGuard no_grad;
      log_proposal = sequence_log_prob(proposal, x, y).view({m, n});
      log_prior = sequence_log_prob(prior, x, y).view({m, n});
    }
    const auto r = reward(x, y).view({m, n});
    for (int64_t k = 0; k < steps_per_refresh; ++k) {
      // ---- the lines that matter --------------------------------------------------------
      brain::samples<torch::Tensor> s{.log_policy = sequence_log_prob(policy, x, y).view({m, n}),
                                      .log_proposal = log_proposal,
                                      .log_prior = log_prior,
                                      .reward = r};
      const auto out = brain::brain_loss(s, goodness);  // ᾱ detached; d loss / d log_policy = (β̄ − ᾱ) / m
      optimizer.zero_grad();
      out.loss.backward();
      torch::nn::utils::clip_grad_norm_(policy->parameters(), 1.0);
      optimizer.step();
      // -------------------------------------------------------------------------------------
    }
    const double mean_reward = r.mean().item<double>();
    if (refresh == 0) first = mean_reward;
    last = mean_reward;
    if (refresh % 10 == 0 || refresh == refreshes - 1)
      std::printf("refresh %3d  mean reward of samples %.3f\n", refresh, mean_reward);
  }
  std::printf("mean reward %.3f -> %.3f (the maximum is %lld)\n", first, last, static_cast<long long>(length));
  return last > first + 0.5 ? 0 : 1;
}
