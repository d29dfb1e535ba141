#include "model.hpp"

#include "fail.hpp"

#include <cmath>
#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace tldr {
namespace {

// Finite rather than -inf: a query row whose keys are all masked (a padding query) then gets a
// finite softmax instead of NaN; for rows with any real key exp(-1e9 - max) is exactly 0 in
// float, so masked keys contribute nothing.
constexpr double masked_score = -1e9;

// Additive attention bias [B, 1, Tq, Tk] from allowed [B, 1, Tq, Tk] (bool, broadcastable).
torch::Tensor attention_bias(const torch::Tensor& allowed, std::int64_t batch, std::int64_t queries, std::int64_t keys,
                             const torch::TensorOptions& options) {
  return torch::zeros({batch, 1, queries, keys}, options).masked_fill_(allowed.logical_not(), masked_score);
}

std::int64_t config_field(const nlohmann::json& j, const char* name) {
  if (!j.is_object()) fail("gpt_config::from_json: json must be an object, got ", j.dump());
  const auto it = j.find(name);
  if (it == j.end()) fail("gpt_config::from_json: json has no field \"", name, "\" in ", j.dump());
  if (!it->is_number_integer())
    fail("gpt_config::from_json: field \"", name, "\" = ", it->dump(), " is not an integer");
  return it->get<std::int64_t>();
}

batch pad(const char* where, const std::vector<std::vector<std::int64_t>>& sequences, std::int64_t pad_id,
          std::int64_t length, bool left) {
  if (length < 0) fail(where, ": length = ", length, " must be >= 0 (0: the longest sequence)");
  std::int64_t longest = 0;
  for (const auto& s : sequences) longest = std::max<std::int64_t>(longest, static_cast<std::int64_t>(s.size()));
  if (length == 0) length = longest;
  const auto rows = static_cast<std::int64_t>(sequences.size());
  batch out{torch::full({rows, length}, pad_id, torch::kLong), torch::zeros({rows, length}, torch::kBool)};
  auto ids = out.ids.accessor<std::int64_t, 2>();
  auto mask = out.mask.accessor<bool, 2>();
  for (std::int64_t b = 0; b < rows; ++b) {
    const auto& s = sequences[static_cast<std::size_t>(b)];
    const auto n = static_cast<std::int64_t>(s.size());
    if (n > length) fail(where, ": sequences[", b, "] has ", n, " tokens, more than length = ", length);
    const std::int64_t offset = left ? length - n : 0;
    for (std::int64_t t = 0; t < n; ++t) {
      ids[b][offset + t] = s[static_cast<std::size_t>(t)];
      mask[b][offset + t] = true;
    }
  }
  return out;
}

}  // namespace

// ---- config -------------------------------------------------------------------------------

void gpt_config::validate() const {
  if (vocab < 1) fail("gpt_config: vocab = ", vocab, " must be >= 1");
  if (context < 1) fail("gpt_config: context = ", context, " must be >= 1");
  if (d_model < 1) fail("gpt_config: d_model = ", d_model, " must be >= 1");
  if (layers < 1) fail("gpt_config: layers = ", layers, " must be >= 1");
  if (heads < 1 || d_model % heads != 0)
    fail("gpt_config: heads = ", heads, " must be >= 1 and divide d_model = ", d_model);
}

nlohmann::json gpt_config::to_json() const {
  return {{"vocab", vocab}, {"context", context}, {"d_model", d_model}, {"layers", layers}, {"heads", heads}};
}

gpt_config gpt_config::from_json(const nlohmann::json& j) {
  gpt_config c;
  c.vocab = config_field(j, "vocab");
  c.context = config_field(j, "context");
  c.d_model = config_field(j, "d_model");
  c.layers = config_field(j, "layers");
  c.heads = config_field(j, "heads");
  c.validate();
  return c;
}

void to_json(nlohmann::json& j, const gpt_config& c) { j = c.to_json(); }
void from_json(const nlohmann::json& j, gpt_config& c) { c = gpt_config::from_json(j); }

// ---- padding ------------------------------------------------------------------------------

batch left_pad(const std::vector<std::vector<std::int64_t>>& sequences, std::int64_t pad_id, std::int64_t length) {
  return pad("left_pad", sequences, pad_id, length, true);
}

batch right_pad(const std::vector<std::vector<std::int64_t>>& sequences, std::int64_t pad_id, std::int64_t length) {
  return pad("right_pad", sequences, pad_id, length, false);
}

response_batch join_right_pad(const std::vector<std::vector<std::int64_t>>& prompts,
                              const std::vector<std::vector<std::int64_t>>& responses, std::size_t first,
                              std::size_t last, std::int64_t pad_id, std::int64_t context) {
  if (prompts.size() != responses.size())
    fail("join_right_pad: ", prompts.size(), " prompts but ", responses.size(), " responses");
  if (first > last || last > prompts.size())
    fail("join_right_pad: rows [", first, ", ", last, ") outside the ", prompts.size(), " given");
  std::vector<std::vector<std::int64_t>> sequences;
  sequences.reserve(last - first);
  for (std::size_t i = first; i < last; ++i) {
    if (prompts[i].empty()) fail("join_right_pad: prompts[", i, "] is empty");
    const auto length = static_cast<std::int64_t>(prompts[i].size() + responses[i].size());
    if (length > context)
      fail("join_right_pad: prompts[", i, "] + responses[", i, "] has length ", length, " > context = ", context);
    auto& s = sequences.emplace_back(prompts[i]);
    s.insert(s.end(), responses[i].begin(), responses[i].end());
  }
  response_batch out{right_pad(sequences, pad_id), {}};
  // Response positions: [|prompt|, |prompt| + |response|) in each row.
  out.response_mask = torch::zeros_like(out.input.mask);
  auto mark = out.response_mask.accessor<bool, 2>();
  for (std::size_t i = first; i < last; ++i)
    for (std::size_t t = 0; t < responses[i].size(); ++t)
      mark[static_cast<std::int64_t>(i - first)][static_cast<std::int64_t>(prompts[i].size() + t)] = true;
  return out;
}

kv_cache kv_cache::select_rows(const torch::Tensor& rows) const {
  kv_cache out;
  out.keys.reserve(keys.size());
  out.values.reserve(values.size());
  for (const auto& k : keys) out.keys.push_back(k.index_select(0, rows));
  for (const auto& v : values) out.values.push_back(v.index_select(0, rows));
  out.key_mask = key_mask.index_select(0, rows);
  out.real_count = real_count.index_select(0, rows);
  out.length = length;
  return out;
}

// ---- blocks -------------------------------------------------------------------------------

BlockImpl::BlockImpl(std::int64_t d_model, std::int64_t heads) : heads_(heads), d_head_(d_model / heads) {
  ln1 = register_module("ln1", torch::nn::LayerNorm(torch::nn::LayerNormOptions({d_model})));
  qkv = register_module("qkv", torch::nn::Linear(d_model, 3 * d_model));
  proj = register_module("proj", torch::nn::Linear(d_model, d_model));
  ln2 = register_module("ln2", torch::nn::LayerNorm(torch::nn::LayerNormOptions({d_model})));
  fc = register_module("fc", torch::nn::Linear(d_model, 4 * d_model));
  fc_proj = register_module("fc_proj", torch::nn::Linear(4 * d_model, d_model));
}

torch::Tensor BlockImpl::forward(const torch::Tensor& x, const torch::Tensor& bias, torch::Tensor* keys,
                                 torch::Tensor* values, std::int64_t start) {
  const std::int64_t b = x.size(0), t = x.size(1), d = x.size(2);
  // [B, T, 3, h, dh] → [3, B, h, T, dh]: q, k, v as views of one product.
  const auto parts = qkv(ln1(x)).view({b, t, 3, heads_, d_head_}).permute({2, 0, 3, 1, 4});
  // Scaling q (the smaller tensor when decoding) instead of the scores.
  const auto q = parts[0] * (1.0 / std::sqrt(static_cast<double>(d_head_)));
  torch::Tensor k = parts[1], v = parts[2];
  if (keys != nullptr) {
    keys->narrow(2, start, t).copy_(k);
    values->narrow(2, start, t).copy_(v);
    k = keys->narrow(2, 0, start + t);
    v = values->narrow(2, 0, start + t);
  }
  auto scores = torch::matmul(q, k.transpose(-2, -1));  // [B, h, T, Tk]
  scores.add_(bias);
  const auto attended = torch::matmul(torch::softmax(scores, -1), v);  // [B, h, T, dh]
  auto y = x + proj(attended.transpose(1, 2).reshape({b, t, d}));
  return y + fc_proj(torch::gelu(fc(ln2(y)), "tanh"));
}

// ---- GPT ----------------------------------------------------------------------------------

GptImpl::GptImpl(const gpt_config& config) : config_(config) {
  config_.validate();
  token_embedding = register_module("token_embedding", torch::nn::Embedding(config_.vocab, config_.d_model));
  position_embedding = register_module("position_embedding", torch::nn::Embedding(config_.context, config_.d_model));
  blocks = register_module("blocks", torch::nn::ModuleList());
  for (std::int64_t l = 0; l < config_.layers; ++l) blocks->push_back(Block(config_.d_model, config_.heads));
  final_norm = register_module("final_norm", torch::nn::LayerNorm(torch::nn::LayerNormOptions({config_.d_model})));

  // GPT-2 initialisation: N(0, 0.02) everywhere, zero biases, and the two projections that feed
  // the residual stream scaled by 1/sqrt(2·layers) so its variance does not grow with depth.
  torch::NoGradGuard no_grad;
  const double residual_std = 0.02 / std::sqrt(2.0 * static_cast<double>(config_.layers));
  token_embedding->weight.normal_(0.0, 0.02);
  position_embedding->weight.normal_(0.0, 0.02);
  for (std::size_t l = 0; l < blocks->size(); ++l) {
    auto& block = blocks->at<BlockImpl>(l);
    for (auto* linear : {&block.qkv, &block.proj, &block.fc, &block.fc_proj}) {
      (*linear)->weight.normal_(0.0, 0.02);
      (*linear)->bias.zero_();
    }
    block.proj->weight.normal_(0.0, residual_std);
    block.fc_proj->weight.normal_(0.0, residual_std);
  }
}

void GptImpl::check_tokens(const char* where, const torch::Tensor& ids, const torch::Tensor& mask) const {
  if (ids.dim() != 2) fail(where, ": ids has shape ", ids.sizes(), ", expected [B, T]");
  if (ids.scalar_type() != torch::kLong) fail(where, ": ids has dtype ", ids.scalar_type(), ", expected int64");
  if (!mask.sizes().equals(ids.sizes()))
    fail(where, ": mask has shape ", mask.sizes(), " but ids has shape ", ids.sizes());
  if (ids.numel() == 0) return;
  const auto [low, high] = torch::aminmax(ids);
  const auto lo = low.item<std::int64_t>(), hi = high.item<std::int64_t>();
  if (lo < 0 || hi >= config_.vocab)
    fail(where, ": ids holds ", lo < 0 ? lo : hi, ", outside the vocabulary [0, ", config_.vocab, ")");
}

torch::Tensor GptImpl::run_blocks(torch::Tensor x, const torch::Tensor& bias, kv_cache* cache) {
  for (std::size_t l = 0; l < blocks->size(); ++l) {
    auto& block = blocks->at<BlockImpl>(l);
    x = cache == nullptr ? block.forward(x, bias)
                         : block.forward(x, bias, &cache->keys[l], &cache->values[l], cache->length);
  }
  return final_norm(x);
}

torch::Tensor GptImpl::hidden(const torch::Tensor& ids_in, const torch::Tensor& mask_in) {
  check_tokens("Gpt::hidden", ids_in, mask_in);
  const std::int64_t b = ids_in.size(0), t = ids_in.size(1);
  if (t > config_.context) fail("Gpt::hidden: ids has T = ", t, " tokens, more than context = ", config_.context);
  const auto device = token_embedding->weight.device();  // inputs follow the model (device.hpp)
  const auto ids = ids_in.to(device);
  const auto mask = mask_in.to(device, torch::kBool);
  // Positions count real tokens, so padding on either side does not shift them.
  const auto positions = (mask.cumsum(1) - 1).clamp_min(0);
  auto x = token_embedding(ids) + position_embedding(positions);
  const auto causal = torch::ones({t, t}, mask.options()).tril();
  const auto allowed = causal.view({1, 1, t, t}).logical_and(mask.view({b, 1, 1, t}));
  return run_blocks(x, attention_bias(allowed, b, t, t, x.options()), nullptr);
}

torch::Tensor GptImpl::logits(const torch::Tensor& hidden) const {
  return torch::nn::functional::linear(hidden, token_embedding->weight);
}

torch::Tensor GptImpl::forward(const torch::Tensor& ids, const torch::Tensor& mask) {
  return logits(hidden(ids, mask));
}

kv_cache GptImpl::make_cache(std::int64_t batch, std::int64_t capacity) const {
  if (batch < 0) fail("Gpt::make_cache: batch = ", batch, " must be >= 0");
  if (capacity < 1 || capacity > config_.context)
    fail("Gpt::make_cache: capacity = ", capacity, " must be in [1, context = ", config_.context, "]");
  const auto options = token_embedding->weight.options().requires_grad(false);
  kv_cache cache;
  const std::int64_t d_head = config_.d_model / config_.heads;
  for (std::int64_t l = 0; l < config_.layers; ++l) {
    cache.keys.push_back(torch::zeros({batch, config_.heads, capacity, d_head}, options));
    cache.values.push_back(torch::zeros({batch, config_.heads, capacity, d_head}, options));
  }
  cache.key_mask = torch::zeros({batch, capacity}, options.dtype(torch::kBool));
  cache.real_count = torch::zeros({batch}, options.dtype(torch::kLong));
  return cache;
}

torch::Tensor GptImpl::step(const torch::Tensor& ids_in, const torch::Tensor& mask_in, kv_cache& cache) {
  check_tokens("Gpt::step", ids_in, mask_in);
  const auto ids_new = ids_in.to(token_embedding->weight.device());
  const std::int64_t b = ids_new.size(0), t = ids_new.size(1);
  if (static_cast<std::int64_t>(cache.keys.size()) != config_.layers || !cache.key_mask.defined())
    fail("Gpt::step: cache has ", cache.keys.size(), " layers, expected ", config_.layers, " (use make_cache)");
  if (b != cache.batch_size()) fail("Gpt::step: ids_new has B = ", b, " rows but the cache has ", cache.batch_size());
  if (cache.length + t > cache.capacity())
    fail("Gpt::step: ", t, " new tokens after ", cache.length, " exceed the cache capacity = ", cache.capacity());
  const auto mask = mask_in.to(ids_new.device(), torch::kBool);
  const auto positions = (cache.real_count.unsqueeze(1) + mask.cumsum(1) - 1).clamp_min(0);
  cache.real_count.add_(mask.sum(1));
  cache.key_mask.narrow(1, cache.length, t).copy_(mask);
  auto x = token_embedding(ids_new) + position_embedding(positions);
  const std::int64_t keys = cache.length + t;
  auto allowed = cache.key_mask.narrow(1, 0, keys).view({b, 1, 1, keys});
  if (t > 1)  // new token i (slot length + i) sees slots <= length + i; a single one sees all
    allowed = allowed.logical_and(torch::ones({t, keys}, mask.options()).tril(cache.length).view({1, 1, t, keys}));
  const auto out = run_blocks(x, attention_bias(allowed, b, t, keys, x.options()), &cache);
  cache.length += t;
  return out;
}

// ---- reward model -------------------------------------------------------------------------

RewardModelImpl::RewardModelImpl(const gpt_config& config) {
  backbone = register_module("backbone", Gpt(config));
  head = register_module("head", torch::nn::Linear(config.d_model, 1));
  torch::NoGradGuard no_grad;
  head->weight.normal_(0.0, 0.02);
  head->bias.zero_();
}

torch::Tensor RewardModelImpl::forward(const torch::Tensor& ids_in, const torch::Tensor& mask_in) {
  const auto h = backbone->hidden(ids_in, mask_in);  // validates
  const auto ids = ids_in.to(h.device());
  const auto mask = mask_in.to(h.device(), torch::kBool);
  // Index of each row's last real token: the largest t with mask set (0 for padding only).
  const auto steps = torch::arange(ids.size(1), ids.options());
  const auto last = (steps * mask).amax(1);
  const auto picked = h.gather(1, last.view({-1, 1, 1}).expand({h.size(0), 1, h.size(2)})).squeeze(1);
  return head(picked).squeeze(1);
}

torch::Tensor RewardModelImpl::score(const std::vector<std::vector<std::int64_t>>& prompts,
                                     const std::vector<std::vector<std::int64_t>>& responses, std::int64_t pad_id,
                                     std::int64_t max_batch_rows) {
  if (max_batch_rows < 0) fail("RewardModel::score: max_batch_rows = ", max_batch_rows, " must be >= 0 (0: all)");
  const std::size_t total = prompts.size();
  const std::size_t per_chunk = max_batch_rows == 0 ? std::max<std::size_t>(1, total) : std::size_t(max_batch_rows);
  std::vector<torch::Tensor> parts;
  for (std::size_t first = 0; first < total; first += per_chunk) {
    const auto b = join_right_pad(prompts, responses, first, std::min(total, first + per_chunk), pad_id,
                                  backbone->config().context);
    parts.push_back(forward(b.input.ids, b.input.mask).to(torch::kFloat));
  }
  if (parts.empty()) return torch::zeros({0}, head->weight.options().dtype(torch::kFloat));
  return parts.size() == 1 ? parts.front() : torch::cat(parts);
}

void RewardModelImpl::load_backbone(const Gpt& source) {
  if (!(source->config() == backbone->config()))
    fail("RewardModel::load_backbone: source config ", source->config().to_json().dump(),
         " differs from the backbone's ", backbone->config().to_json().dump());
  copy_state(*source, *backbone);
}

// ---- utilities ----------------------------------------------------------------------------

void copy_state(const torch::nn::Module& from, torch::nn::Module& to) {
  const auto source_parameters = from.named_parameters();
  const auto source_buffers = from.named_buffers();
  torch::NoGradGuard no_grad;
  const auto copy_all = [](const char* kind, const auto& source, auto target) {
    if (source.size() != target.size())
      fail("copy_state: from has ", source.size(), " ", kind, " but to has ", target.size());
    for (auto& item : target) {
      const auto* s = source.find(item.key());
      if (s == nullptr) fail("copy_state: from has no ", kind, " named \"", item.key(), "\"");
      if (!s->sizes().equals(item.value().sizes()))
        fail("copy_state: ", kind, " \"", item.key(), "\" has shape ", s->sizes(), " in from but ",
             item.value().sizes(), " in to");
      item.value().copy_(*s);
    }
  };
  copy_all("parameters", source_parameters, to.named_parameters());
  copy_all("buffers", source_buffers, to.named_buffers());
}

Gpt clone(const Gpt& source) {
  Gpt copy(source->config());
  copy->to(source->head_weight().device());
  copy_state(*source, *copy);
  copy->train(source->is_training());
  return copy;
}

std::int64_t parameter_count(const torch::nn::Module& module) {
  std::int64_t total = 0;
  for (const auto& p : module.parameters()) total += p.numel();
  return total;
}

}  // namespace tldr
