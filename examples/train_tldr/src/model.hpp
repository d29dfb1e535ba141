#pragma once
// The pipeline's models: a small pre-LayerNorm GPT decoder (policy, SFT prior) with a KV cache for
// sampling, a reward model on the same backbone, and the padding helpers both use.
//
// Padding convention: a batch is ids [B, T] int64 plus mask [B, T] bool (true = real token).
// Positions count real tokens only (cumsum(mask) - 1), and padding keys are masked out of
// attention, so a real token's hidden state does not depend on how (or whether) its row is padded.

#include <torch/torch.h>

#include <nlohmann/json.hpp>

#include <cstdint>
#include <vector>

namespace tldr {

struct gpt_config {
  std::int64_t vocab = 2000, context = 160, d_model = 128, layers = 4, heads = 4;

  /// Throws std::invalid_argument naming the first bad field.
  void validate() const;
  nlohmann::json to_json() const;
  /// Reads every field (missing or non-integer → std::invalid_argument), then validates.
  static gpt_config from_json(const nlohmann::json& j);
  bool operator==(const gpt_config&) const = default;
};

// nlohmann's ADL hooks, so that `json j = config;` and `j.get<gpt_config>()` work.
void to_json(nlohmann::json& j, const gpt_config& c);
void from_json(const nlohmann::json& j, gpt_config& c);

struct batch {
  torch::Tensor ids;   ///< [B, T] int64
  torch::Tensor mask;  ///< [B, T] bool, true = real token
};

/// Pads every sequence to `length` tokens (0: the longest sequence) with `pad_id`, padding on the
/// left (prompts for generation: the last column is every row's last real token) or on the
/// right. A sequence longer than `length` → std::invalid_argument (the caller truncates, since
/// only it knows which end to keep).
batch left_pad(const std::vector<std::vector<std::int64_t>>& sequences, std::int64_t pad_id, std::int64_t length = 0);
batch right_pad(const std::vector<std::vector<std::int64_t>>& sequences, std::int64_t pad_id, std::int64_t length = 0);

/// Prompt + response per row, right-padded, with the response tokens marked: what a teacher-forced
/// pass over (prompt, response) needs, for log-probs and for rewards.
struct response_batch {
  batch input;
  torch::Tensor response_mask;  ///< [B, T] bool, true at the response tokens
};
/// Rows [first, last) of prompts[i] + responses[i]. Prompts must be non-empty and each row must fit
/// in `context` tokens (std::invalid_argument naming the row otherwise).
response_batch join_right_pad(const std::vector<std::vector<std::int64_t>>& prompts,
                              const std::vector<std::vector<std::int64_t>>& responses, std::size_t first,
                              std::size_t last, std::int64_t pad_id, std::int64_t context);

/// Per-layer keys and values of the tokens seen so far, preallocated to `capacity` slots so that
/// decoding writes in place (no cat per step). Slots are shared by all rows: slot s holds every
/// row's s-th token, real or padding; key_mask says which.
struct kv_cache {
  std::vector<torch::Tensor> keys, values;  ///< per layer [B, heads, capacity, d_head]
  torch::Tensor key_mask;                   ///< [B, capacity] bool: slot holds a real token
  torch::Tensor real_count;                 ///< [B] int64: real tokens so far (the next position)
  std::int64_t length = 0;                  ///< slots filled

  std::int64_t batch_size() const { return key_mask.size(0); }
  std::int64_t capacity() const { return key_mask.size(1); }
  /// A new cache holding rows `rows` [R] int64 of this one (row r of the result is rows[r]):
  /// repeat_interleave for n samples per prompt, or dropping finished rows.
  kv_cache select_rows(const torch::Tensor& rows) const;
};

class BlockImpl : public torch::nn::Module {
 public:
  BlockImpl(std::int64_t d_model, std::int64_t heads);
  /// x [B, T, d]; bias [B, 1, T, Tk] additive attention mask (0 or a large negative number).
  /// Without a cache Tk = T; with one, the new keys/values go to slots [start, start + T) of
  /// `keys`/`values` and the queries attend to slots [0, start + T).
  torch::Tensor forward(const torch::Tensor& x, const torch::Tensor& bias, torch::Tensor* keys = nullptr,
                        torch::Tensor* values = nullptr, std::int64_t start = 0);

  torch::nn::LayerNorm ln1{nullptr}, ln2{nullptr};
  torch::nn::Linear qkv{nullptr}, proj{nullptr}, fc{nullptr}, fc_proj{nullptr};

 private:
  std::int64_t heads_, d_head_;
};
TORCH_MODULE(Block);

class GptImpl : public torch::nn::Module {
 public:
  explicit GptImpl(const gpt_config& config);

  /// Hidden states after the final LayerNorm, [B, T, d]. ids [B, T] int64 in [0, vocab), mask
  /// [B, T] (bool or integer), T <= context. Rows of padding only give finite (meaningless) output.
  torch::Tensor hidden(const torch::Tensor& ids, const torch::Tensor& mask);
  /// The output layer's weight [V, d], tied to the token embedding.
  torch::Tensor head_weight() const { return token_embedding->weight; }
  /// hidden [..., d] → logits [..., V].
  torch::Tensor logits(const torch::Tensor& hidden) const;
  /// logits(hidden(ids, mask)), [B, T, V].
  torch::Tensor forward(const torch::Tensor& ids, const torch::Tensor& mask);

  /// An empty cache for `batch` rows and `capacity` slots (capacity <= context).
  kv_cache make_cache(std::int64_t batch, std::int64_t capacity) const;
  /// Appends ids_new [B, t] (mask_new [B, t]) to the cache and returns their hidden states
  /// [B, t, d], equal to what hidden() gives for those positions of the whole sequence. Prefill a
  /// left-padded prompt batch with one call, then decode one token per call.
  torch::Tensor step(const torch::Tensor& ids_new, const torch::Tensor& mask_new, kv_cache& cache);

  const gpt_config& config() const { return config_; }

  torch::nn::Embedding token_embedding{nullptr}, position_embedding{nullptr};
  torch::nn::ModuleList blocks{nullptr};
  torch::nn::LayerNorm final_norm{nullptr};

 private:
  void check_tokens(const char* where, const torch::Tensor& ids, const torch::Tensor& mask) const;
  torch::Tensor run_blocks(torch::Tensor x, const torch::Tensor& bias, kv_cache* cache);

  gpt_config config_;
};
TORCH_MODULE(Gpt);

/// Scalar reward: a GPT backbone and Linear(d, 1) read at each row's last real token.
class RewardModelImpl : public torch::nn::Module {
 public:
  explicit RewardModelImpl(const gpt_config& config);
  /// ids, mask [B, T] (left or right padding) → scores [B]. A row of padding only reads position 0.
  torch::Tensor forward(const torch::Tensor& ids, const torch::Tensor& mask);
  /// r(prompts[i], responses[i]) [N] float, max_batch_rows rows at a time (0: all at once);
  /// differentiable when grad mode is on. The model's mode is left as it is.
  torch::Tensor score(const std::vector<std::vector<std::int64_t>>& prompts,
                      const std::vector<std::vector<std::int64_t>>& responses, std::int64_t pad_id,
                      std::int64_t max_batch_rows = 256);
  /// Copies a trained GPT's parameters into the backbone (configs must match); the head keeps its
  /// own initialisation.
  void load_backbone(const Gpt& source);

  Gpt backbone{nullptr};
  torch::nn::Linear head{nullptr};
};
TORCH_MODULE(RewardModel);

/// Copies every parameter and buffer of `from` into `to` (same names and shapes, else
/// std::invalid_argument naming the first mismatch), without recording gradients.
void copy_state(const torch::nn::Module& from, torch::nn::Module& to);
/// A fresh GPT with the same config and a copy of `source`'s parameters (e.g. a frozen SFT prior).
Gpt clone(const Gpt& source);

/// Number of scalar parameters (a tied weight counts once).
std::int64_t parameter_count(const torch::nn::Module& module);

}  // namespace tldr
