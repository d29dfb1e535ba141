#include "sampler.hpp"

#include "fail.hpp"
#include "seeds.hpp"

#include <brain/backends/torch/log_probs.hpp>

#include <algorithm>
#include <cmath>
#include <limits>
#include <sstream>
#include <stdexcept>

namespace tldr {
namespace {

// Puts the model in eval mode for the guard's lifetime, then restores its mode.
class eval_mode {
 public:
  explicit eval_mode(Gpt& model) : model_(model), was_training_(model->is_training()) { model_->eval(); }
  ~eval_mode() { model_->train(was_training_); }
  eval_mode(const eval_mode&) = delete;
  eval_mode& operator=(const eval_mode&) = delete;

 private:
  Gpt& model_;
  bool was_training_;
};

void check_options(const sampling_options& o, const gpt_config& c) {
  if (o.samples_per_prompt < 1) fail("sample: samples_per_prompt = ", o.samples_per_prompt, " must be >= 1");
  if (o.max_new_tokens < 1) fail("sample: max_new_tokens = ", o.max_new_tokens, " must be >= 1");
  if (o.max_new_tokens >= c.context)
    fail("sample: max_new_tokens = ", o.max_new_tokens, " leaves no room for a prompt in context = ", c.context);
  if (!(o.temperature >= 0.0) || !std::isfinite(o.temperature))
    fail("sample: temperature = ", o.temperature, " must be finite and >= 0 (0: greedy)");
  if (o.top_k < 0) fail("sample: top_k = ", o.top_k, " must be >= 0 (0: no filter)");
  if (!(o.top_p > 0.0 && o.top_p <= 1.0)) fail("sample: top_p = ", o.top_p, " must be in (0, 1]");
  if (o.eos_id < 0 || o.eos_id >= c.vocab)
    fail("sample: eos_id = ", o.eos_id, " must be in [0, vocab = ", c.vocab, ")");
  if (o.pad_id < 0 || o.pad_id >= c.vocab)
    fail("sample: pad_id = ", o.pad_id, " must be in [0, vocab = ", c.vocab, ")");
  if (o.max_batch_rows < 1) fail("sample: max_batch_rows = ", o.max_batch_rows, " must be >= 1");
}

// The uniform in [0, 1) of draw `step` of sample `j` of the prompt with key `key` (24 bits, as
// torch::rand gives a float).
float sample_uniform(std::uint64_t seed, std::uint64_t key, std::int64_t j, std::int64_t step) {
  const auto h = derive_seed(derive_seed(seed, purpose::sample_draw, key, static_cast<std::uint64_t>(j)),
                             purpose::sample_draw, static_cast<std::uint64_t>(step));
  return static_cast<float>(h >> 40) * 0x1p-24f;
}

/// Where a decoding row's uniforms come from: the prompt's key (or its index), the sample index.
struct draw_keys {
  std::uint64_t seed;
  std::span<const std::uint64_t> keys;
  std::size_t first_prompt;
  std::int64_t samples_per_prompt;
};

/// The tokens of step `step` for the decoding rows (chunk rows `row_of`) from their proposal
/// log-probabilities [active, V]. Inverse-CDF draw: one uniform per row (multinomial draws one
/// exponential per token). u < the row's total, and a token of probability 0 adds nothing to the
/// CDF, so it is never the first index whose CDF exceeds u.
torch::Tensor draw_tokens(const torch::Tensor& proposal, const torch::Tensor& row_of, const draw_keys& k,
                          std::int64_t step) {
  const auto cdf = proposal.exp().cumsum(-1);
  const auto active = proposal.size(0), vocab = proposal.size(1);
  // One uniform per row, from its prompt's key, its sample index and the step (on the CPU).
  const auto rows_now = row_of.cpu();
  const auto row_at = rows_now.accessor<std::int64_t, 1>();
  auto uniforms = torch::empty({active, 1}, torch::kFloat);
  auto* u_at = uniforms.data_ptr<float>();
  const auto n = k.samples_per_prompt;
  for (std::int64_t a = 0; a < active; ++a) {
    const auto prompt = k.first_prompt + static_cast<std::size_t>(row_at[a] / n);
    u_at[a] = sample_uniform(k.seed, k.keys.empty() ? prompt : k.keys[prompt], row_at[a] % n, step);
  }
  const auto u = uniforms.to(proposal.device(), cdf.scalar_type()) * cdf.narrow(1, vocab - 1, 1);
  return torch::searchsorted(cdf, u, /*out_int32=*/false, /*right=*/true).squeeze(1).clamp_max(vocab - 1);
}

/// Rows [offset, offset + rows) of out.responses: each row's first `lengths` tokens.
void write_rows(const torch::Tensor& tokens, const torch::Tensor& lengths, std::int64_t offset, samples& out) {
  const auto cpu_tokens = tokens.cpu();
  const auto cpu_lengths = lengths.cpu();
  const auto token_at = cpu_tokens.accessor<std::int64_t, 2>();
  const auto length_at = cpu_lengths.accessor<std::int64_t, 1>();
  for (std::int64_t r = 0; r < tokens.size(0); ++r) {
    auto& response = out.responses[static_cast<std::size_t>(offset + r)];
    response.resize(static_cast<std::size_t>(length_at[r]));
    for (std::int64_t t = 0; t < length_at[r]; ++t) response[static_cast<std::size_t>(t)] = token_at[r][t];
  }
}

// Decodes the prompts [first, last) into rows [first·n, last·n) of `out`.
void decode_chunk(Gpt& model, const std::vector<std::vector<std::int64_t>>& all_prompts, std::size_t first,
                  std::size_t last, const sampling_options& o, std::uint64_t seed, std::span<const std::uint64_t> keys,
                  samples& out) {
  const std::vector<std::vector<std::int64_t>> prompts(all_prompts.begin() + static_cast<std::ptrdiff_t>(first),
                                                       all_prompts.begin() + static_cast<std::ptrdiff_t>(last));
  const auto n = o.samples_per_prompt;
  const auto prompt_rows = static_cast<std::int64_t>(prompts.size());
  const std::int64_t rows = prompt_rows * n;
  auto input = left_pad(prompts, o.pad_id);
  const auto device = model->head_weight().device();
  input = {input.ids.to(device), input.mask.to(device)};
  const std::int64_t prompt_length = input.ids.size(1);

  // Prefill each prompt once, then copy its cache to its n sample rows. The last generated token
  // is never fed back, hence max_new_tokens - 1 extra slots.
  kv_cache cache = model->make_cache(prompt_rows, prompt_length + o.max_new_tokens - 1);
  auto h = model->step(input.ids, input.mask, cache).select(1, prompt_length - 1);  // left padding: last real
  if (n > 1) {
    const auto expand = torch::arange(prompt_rows, input.ids.options()).repeat_interleave(n);
    cache = cache.select_rows(expand);
    h = h.index_select(0, expand);
  }

  const auto weight = model->head_weight();
  const bool greedy = o.temperature == 0.0;
  const brain::libtorch::sampling settings{o.temperature, o.top_k, o.top_p};
  const bool filtered = !settings.is_plain();
  const auto long_options = input.ids.options();
  // Results per chunk row; the decoding batch shrinks to the unfinished rows (row_of maps a
  // decoding row to its chunk row) once at least half of it has finished.
  auto tokens = torch::full({rows, o.max_new_tokens}, o.pad_id, long_options);
  auto lengths = torch::zeros({rows}, long_options);
  auto log_proposal = torch::zeros({rows}, h.options().dtype(torch::kFloat));
  auto log_model = torch::zeros({rows}, h.options().dtype(torch::kFloat));
  auto row_of = torch::arange(rows, long_options);
  auto alive = torch::ones({rows}, long_options.dtype(torch::kBool));
  std::int64_t active = rows;

  for (std::int64_t s = 0; s < o.max_new_tokens; ++s) {
    const auto logits = torch::nn::functional::linear(h, weight).to(torch::kFloat);  // [active, V]
    const auto raw = torch::log_softmax(logits, -1);
    torch::Tensor token;
    if (greedy) {
      token = logits.argmax(-1);
    } else {
      // Unfiltered sampling reuses `raw`, so log_proposal equals log_model exactly.
      const auto proposal = filtered ? brain::libtorch::sampled_log_softmax(logits, settings) : raw;
      token = draw_tokens(proposal, row_of, {seed, keys, first, n}, s);
      log_proposal.index_add_(0, row_of, proposal.gather(1, token.unsqueeze(1)).squeeze(1).masked_fill(~alive, 0.0));
    }
    log_model.index_add_(0, row_of, raw.gather(1, token.unsqueeze(1)).squeeze(1).masked_fill(~alive, 0.0));
    token.masked_fill_(~alive, o.pad_id);
    tokens.select(1, s).index_copy_(0, row_of, token);
    lengths.index_add_(0, row_of, alive.to(torch::kLong));
    auto next_alive = alive.logical_and(token != o.eos_id);
    const auto remaining = next_alive.sum().item<std::int64_t>();
    if (s + 1 == o.max_new_tokens || remaining == 0) break;
    // The token just drawn is real for rows alive when it was drawn (eos included); finished
    // rows feed padding, masked out of every later attention, until they are dropped.
    auto feed_mask = alive;
    if (2 * remaining <= active) {
      const auto keep = next_alive.nonzero().squeeze(1);
      cache = cache.select_rows(keep);
      token = token.index_select(0, keep);
      row_of = row_of.index_select(0, keep);
      active = remaining;
      feed_mask = next_alive = torch::ones({active}, alive.options());
    }
    h = model->step(token.view({active, 1}), feed_mask.view({active, 1}), cache).squeeze(1);
    alive = next_alive;
  }

  const auto offset = static_cast<std::int64_t>(first) * n;
  write_rows(tokens, lengths, offset, out);
  out.log_proposal.narrow(0, offset, rows).copy_(log_proposal);
  out.log_model.narrow(0, offset, rows).copy_(log_model);
}

}  // namespace

samples sample(Gpt& model, const std::vector<std::vector<std::int64_t>>& prompts, const sampling_options& options,
               std::uint64_t seed, std::span<const std::uint64_t> keys) {
  const auto& config = model->config();
  check_options(options, config);
  if (!keys.empty() && keys.size() != prompts.size())
    fail("sample: ", keys.size(), " keys for ", prompts.size(), " prompts (one per prompt, or none)");
  const std::int64_t longest = config.context - options.max_new_tokens;
  for (std::size_t i = 0; i < prompts.size(); ++i) {
    const auto length = static_cast<std::int64_t>(prompts[i].size());
    if (length == 0) fail("sample: prompts[", i, "] is empty");
    if (length > longest)
      fail("sample: prompts[", i, "] has length ", length, " > context - max_new_tokens = ", config.context, " - ",
           options.max_new_tokens, " = ", longest);
  }
  torch::NoGradGuard no_grad;
  eval_mode eval(model);
  const auto n = options.samples_per_prompt;
  const auto rows = static_cast<std::int64_t>(prompts.size()) * n;
  const auto float_options = model->head_weight().options().dtype(torch::kFloat).requires_grad(false);
  samples out{std::vector<std::vector<std::int64_t>>(static_cast<std::size_t>(rows)),
              torch::zeros({rows}, float_options), torch::zeros({rows}, float_options)};
  const auto per_chunk = static_cast<std::size_t>(std::max<std::int64_t>(1, options.max_batch_rows / n));
  for (std::size_t first = 0; first < prompts.size(); first += per_chunk)
    decode_chunk(model, prompts, first, std::min(prompts.size(), first + per_chunk), options, seed, keys, out);
  return out;
}

torch::Tensor sequence_log_prob(Gpt& model, const std::vector<std::vector<std::int64_t>>& prompts,
                                const std::vector<std::vector<std::int64_t>>& responses, std::int64_t pad_id,
                                std::int64_t max_batch_rows) {
  const auto& config = model->config();
  if (prompts.size() != responses.size())
    fail("sequence_log_prob: ", prompts.size(), " prompts but ", responses.size(), " responses");
  if (pad_id < 0 || pad_id >= config.vocab)
    fail("sequence_log_prob: pad_id = ", pad_id, " must be in [0, vocab = ", config.vocab, ")");
  if (max_batch_rows < 0) fail("sequence_log_prob: max_batch_rows = ", max_batch_rows, " must be >= 0 (0: all)");
  const std::size_t total = prompts.size();
  const std::size_t per_chunk =
      max_batch_rows == 0 ? std::max<std::size_t>(1, total) : static_cast<std::size_t>(max_batch_rows);
  std::vector<torch::Tensor> parts;
  for (std::size_t first = 0; first < total; first += per_chunk) {
    const auto b =
        join_right_pad(prompts, responses, first, std::min(total, first + per_chunk), pad_id, config.context);
    const auto device = model->head_weight().device();
    const auto ids = b.input.ids.to(device);
    const auto hidden = model->hidden(ids, b.input.mask);
    parts.push_back(brain::libtorch::fused_linear_sequence_log_probs(
        hidden, model->head_weight(), ids, b.response_mask.to(device), brain::libtorch::alignment::next_token));
  }
  if (parts.empty()) return torch::zeros({0}, model->head_weight().options().dtype(torch::kFloat));
  return parts.size() == 1 ? parts.front() : torch::cat(parts);
}

}  // namespace tldr
