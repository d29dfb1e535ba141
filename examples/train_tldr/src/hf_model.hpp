#pragma once
// Hugging Face model folders in and out: config.json + model.safetensors (+ tokenizer.json, which
// the tokenizer reads), so a real checkpoint can start the pipeline and the aligned policy leaves
// it in the format every other tool reads.
//
// Architectures are looked up by config.json's "model_type" (the seam for others): "gpt2" maps
// onto model.hpp's Gpt, which is GPT-2's architecture — pre-LayerNorm blocks (eps 1e-5), learned
// positions, tanh-approximated GELU ("gelu_new"), fused q|k|v, output layer tied to the token
// embedding. Hugging Face stores GPT-2's linear layers as Conv1D, weight [in, out]: they are
// transposed on the way in and out. Another architecture needs its own module and an entry in
// architectures(); the pipeline's stages take a Gpt today.
//
// Reading checks everything a silent mismatch would hide: every tensor the model needs is present
// with its exact shape, no tensor is left unused (the causal-mask buffers "attn.bias" and
// "attn.masked_bias" of older files excepted), an untied lm_head.weight is rejected, and config
// fields the Gpt cannot honour (another activation, epsilon, inner width, cross-attention) are
// named. Names may carry GPT2LMHeadModel's "transformer." prefix or not (the gpt2 repository's
// own file has none). F32, F16 and BF16 files load (widened to float32).

#include "model.hpp"

#include <nlohmann/json.hpp>

#include <filesystem>
#include <functional>
#include <map>
#include <string>
#include <vector>

namespace tldr {

/// The Gpt settings of a Hugging Face GPT-2 config.json (std::invalid_argument naming the file and
/// field for anything missing, mistyped or not supported).
gpt_config gpt2_config_from_hf(const nlohmann::json& hf, const std::string& label);
/// config.json for a Gpt with this config (eos_id: the tokenizer's end-of-text id, written as
/// bos_token_id and eos_token_id as GPT-2's own file does).
nlohmann::json gpt2_config_to_hf(const gpt_config& config, std::int64_t eos_id);

/// Reads `dir`/config.json (any model_type: what architecture_of() dispatches on).
nlohmann::json read_hf_config(const std::filesystem::path& dir);

/// A model folder's architecture: how to read its config and weights into a Gpt and write one back.
struct hf_architecture {
  std::function<gpt_config(const nlohmann::json& hf, const std::string& label)> config;
  std::function<void(const std::filesystem::path& weights, Gpt& model)> load_weights;
  std::function<void(const Gpt& model, const std::filesystem::path& weights)> save_weights;
  std::function<nlohmann::json(const gpt_config& config, std::int64_t eos_id)> config_json;
};
/// The known architectures by model_type ("gpt2").
const std::map<std::string, hf_architecture>& architectures();
/// The entry for a config.json's "model_type" (error naming `label` and listing the supported
/// ones otherwise).
const hf_architecture& architecture_of(const nlohmann::json& hf, const std::string& label);

/// The model config of a folder (architecture_of(dir).config on its config.json).
gpt_config hf_model_config(const std::filesystem::path& dir);
/// A Gpt with the folder's weights, on the CPU in float32.
Gpt load_hf_model(const std::filesystem::path& dir);
/// Copies the folder's weights into an existing Gpt of the same config (e.g. a reward model's
/// backbone).
void load_hf_weights(const std::filesystem::path& dir, Gpt& model);

/// Writes `dir` as a Hugging Face GPT-2 folder: config.json, model.safetensors (float32, names
/// prefixed "transformer.", no lm_head: tied) and a copy of `tokenizer_json`; each file written
/// atomically. The folder is created if needed; other files in it are left alone.
void save_hf_model(const Gpt& model, const std::filesystem::path& dir, const std::filesystem::path& tokenizer_json,
                   std::int64_t eos_id);

}  // namespace tldr
