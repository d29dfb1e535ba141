#include "hf_model.hpp"

#include "checkpoint.hpp"
#include "fail.hpp"

#include <brain/io/safetensors.hpp>

#include <cmath>
#include <cstring>
#include <set>
#include <span>

namespace tldr {
namespace fs = std::filesystem;

namespace {

// ---- config.json -------------------------------------------------------------------------------

const nlohmann::json* hf_field(const nlohmann::json& hf, const char* name) {
  const auto it = hf.find(name);
  return it == hf.end() || it->is_null() ? nullptr : &*it;
}

std::int64_t hf_integer(const nlohmann::json& hf, const std::string& label, std::initializer_list<const char*> names) {
  for (const char* name : names)
    if (const auto* v = hf_field(hf, name)) {
      if (!v->is_number_integer()) fail(label, ": \"", name, "\" = ", v->dump(), " is not an integer");
      return v->get<std::int64_t>();
    }
  fail(label, ": no \"", *names.begin(), "\" field");
}

// Optional settings the Gpt has fixed: each must be absent or hold GPT-2's value.
void hf_require(const nlohmann::json& hf, const std::string& label, const char* name, const nlohmann::json& allowed,
                const char* why) {
  const auto* v = hf_field(hf, name);
  if (v == nullptr) return;
  for (const auto& a : allowed)
    if (*v == a || (v->is_number() && a.is_number() && std::abs(v->get<double>() - a.get<double>()) <= 1e-12)) return;
  fail(label, ": \"", name, "\" = ", v->dump(), " is not supported (", why, "; supported: ", allowed.dump(), ")");
}

// ---- weights -------------------------------------------------------------------------------------

// One tensor of the Gpt and its name in a Hugging Face GPT-2 file; conv1d: stored [in, out].
struct weight_name {
  std::string ours, theirs;
  bool conv1d = false;
};

std::vector<weight_name> gpt2_names(std::int64_t layers) {
  std::vector<weight_name> out{{"token_embedding.weight", "wte.weight"},
                               {"position_embedding.weight", "wpe.weight"},
                               {"final_norm.weight", "ln_f.weight"},
                               {"final_norm.bias", "ln_f.bias"}};
  for (std::int64_t l = 0; l < layers; ++l) {
    const std::string o = "blocks." + std::to_string(l) + ".", t = "h." + std::to_string(l) + ".";
    const std::pair<const char*, const char*> norms[] = {{"ln1", "ln_1"}, {"ln2", "ln_2"}};
    for (const auto& [a, b] : norms) {
      out.push_back({o + a + ".weight", t + b + ".weight"});
      out.push_back({o + a + ".bias", t + b + ".bias"});
    }
    const std::pair<const char*, const char*> linears[] = {
        {"qkv", "attn.c_attn"}, {"proj", "attn.c_proj"}, {"fc", "mlp.c_fc"}, {"fc_proj", "mlp.c_proj"}};
    for (const auto& [a, b] : linears) {
      out.push_back({o + a + ".weight", t + b + ".weight", true});
      out.push_back({o + a + ".bias", t + b + ".bias"});
    }
  }
  return out;
}

torch::Tensor read_tensor(const brain::io::safetensors& file, const std::string& name) {
  auto* values = new std::vector<float>(file.floats(name));  // owned by the tensor: no second copy
  return torch::from_blob(values->data(), file.at(name).shape, [values](void*) { delete values; }, torch::kFloat);
}

bool is_mask_buffer(const std::string& name) {
  const auto ends_with = [&](std::string_view s) { return name.size() >= s.size() && name.ends_with(s); };
  return ends_with(".attn.bias") || ends_with(".attn.masked_bias");
}

void load_gpt2_weights(const fs::path& weights, Gpt& model) {
  const brain::io::safetensors file(weights);
  const std::string label = weights.string();
  // GPT2LMHeadModel's state dict prefixes the backbone with "transformer."; GPT2Model's does not.
  const std::string prefix = file.contains("transformer.wte.weight") ? "transformer." : "";
  auto ours = model->named_parameters();
  std::set<std::string> used;
  torch::NoGradGuard no_grad;
  for (const auto& n : gpt2_names(model->config().layers)) {
    const std::string name = prefix + n.theirs;
    if (!file.contains(name))
      fail(label, ": no tensor '", name, "' (a GPT-2 model of ", model->config().layers, " layers needs it)");
    auto* target = ours.find(n.ours);
    if (target == nullptr) fail("load_hf_weights: the Gpt has no parameter ", n.ours);
    auto value = read_tensor(file, name);
    if (n.conv1d) value = value.t();
    if (!value.sizes().equals(target->sizes())) {
      auto wanted = target->sizes().vec();
      if (n.conv1d) std::swap(wanted[0], wanted[1]);
      fail(label, ": tensor '", name, "' has shape ", c10::IntArrayRef(file.at(name).shape),
           n.conv1d ? " (Conv1D, [in, out])" : "", " but the config needs ", c10::IntArrayRef(wanted));
    }
    target->copy_(value);
    used.insert(name);
  }
  for (const auto& entry : file.tensors()) {
    if (used.contains(entry.name) || is_mask_buffer(entry.name)) continue;
    if (entry.name == "lm_head.weight") {  // tied: must equal the token embedding
      const auto head = read_tensor(file, entry.name);
      if (!head.sizes().equals(model->token_embedding->weight.sizes()) || !head.equal(model->token_embedding->weight))
        fail(label, ": lm_head.weight differs from ", prefix, "wte.weight; an untied output layer is not supported");
      continue;
    }
    fail(label, ": unexpected tensor '", entry.name, "' (not part of a GPT-2 model of ", model->config().layers,
         " layers)");
  }
}

void save_gpt2_weights(const Gpt& model, const fs::path& weights) {
  const auto params = model->named_parameters();
  std::vector<torch::Tensor> keep;  // owns the bytes the views point into
  std::vector<brain::io::tensor_view> views;
  for (const auto& n : gpt2_names(model->config().layers)) {
    auto value = params[n.ours].detach().to(torch::kCPU, torch::kFloat);
    if (n.conv1d) value = value.t();
    value = value.contiguous();
    keep.push_back(value);
    views.push_back({"transformer." + n.theirs, brain::io::dtype::f32,
                     std::vector<std::int64_t>(value.sizes().begin(), value.sizes().end()),
                     std::span(reinterpret_cast<const std::byte*>(value.data_ptr<float>()),
                               static_cast<std::size_t>(value.numel()) * sizeof(float))});
  }
  brain::io::write_safetensors(weights, views, {{"format", "pt"}});
}

}  // namespace

gpt_config gpt2_config_from_hf(const nlohmann::json& hf, const std::string& label) {
  if (!hf.is_object()) fail(label, ": expected a JSON object");
  gpt_config c;
  c.vocab = hf_integer(hf, label, {"vocab_size"});
  c.context = hf_integer(hf, label, {"n_positions", "max_position_embeddings"});
  c.d_model = hf_integer(hf, label, {"n_embd", "hidden_size"});
  c.layers = hf_integer(hf, label, {"n_layer", "num_hidden_layers"});
  c.heads = hf_integer(hf, label, {"n_head", "num_attention_heads"});
  hf_require(hf, label, "activation_function", {"gelu_new", "gelu_pytorch_tanh"},
             "the Gpt uses tanh-approximated GELU");
  hf_require(hf, label, "layer_norm_epsilon", {1e-5}, "the Gpt's LayerNorms use eps 1e-5");
  hf_require(hf, label, "n_inner", {4 * c.d_model}, "the Gpt's MLP is 4 x n_embd wide");
  hf_require(hf, label, "tie_word_embeddings", {true}, "the Gpt's output layer is its token embedding");
  hf_require(hf, label, "scale_attn_weights", {true}, "the Gpt scales attention by 1/sqrt(head size)");
  hf_require(hf, label, "scale_attn_by_inverse_layer_idx", {false}, "not implemented");
  hf_require(hf, label, "add_cross_attention", {false}, "the Gpt is a decoder only");
  try {
    c.validate();
  } catch (const std::invalid_argument& e) {
    fail(label, ": ", e.what());
  }
  return c;
}

nlohmann::json gpt2_config_to_hf(const gpt_config& c, std::int64_t eos_id) {
  return {{"architectures", {"GPT2LMHeadModel"}},
          {"model_type", "gpt2"},
          {"vocab_size", c.vocab},
          {"n_positions", c.context},
          {"n_ctx", c.context},
          {"n_embd", c.d_model},
          {"n_layer", c.layers},
          {"n_head", c.heads},
          {"n_inner", nullptr},
          {"activation_function", "gelu_new"},
          {"layer_norm_epsilon", 1e-5},
          {"resid_pdrop", 0.0},
          {"embd_pdrop", 0.0},
          {"attn_pdrop", 0.0},
          {"initializer_range", 0.02},
          {"scale_attn_weights", true},
          {"tie_word_embeddings", true},
          {"bos_token_id", eos_id},
          {"eos_token_id", eos_id},
          {"torch_dtype", "float32"}};
}

nlohmann::json read_hf_config(const fs::path& dir) {
  const auto file = dir / "config.json";
  if (!fs::is_regular_file(file)) fail(file.string(), ": no such file (a Hugging Face model folder has config.json)");
  try {
    return nlohmann::json::parse(read_text(file));
  } catch (const nlohmann::json::exception& e) {
    fail(file.string(), ": not valid JSON: ", e.what());
  }
}

const std::map<std::string, hf_architecture>& architectures() {
  static const std::map<std::string, hf_architecture> known{
      {"gpt2", {gpt2_config_from_hf, load_gpt2_weights, save_gpt2_weights, gpt2_config_to_hf}}};
  return known;
}

const hf_architecture& architecture_of(const nlohmann::json& hf, const std::string& label) {
  const auto* type = hf.is_object() ? hf_field(hf, "model_type") : nullptr;
  if (type == nullptr || !type->is_string()) fail(label, ": no string \"model_type\"");
  const auto it = architectures().find(type->get<std::string>());
  if (it == architectures().end()) {
    std::string known;
    for (const auto& [name, _] : architectures()) known += (known.empty() ? "" : ", ") + name;
    fail(label, ": model_type \"", type->get<std::string>(), "\" is not supported (supported: ", known, ")");
  }
  return it->second;
}

gpt_config hf_model_config(const fs::path& dir) {
  const auto hf = read_hf_config(dir);
  const auto label = (dir / "config.json").string();
  return architecture_of(hf, label).config(hf, label);
}

void load_hf_weights(const fs::path& dir, Gpt& model) {
  const auto hf = read_hf_config(dir);
  const auto label = (dir / "config.json").string();
  const auto& arch = architecture_of(hf, label);
  const auto config = arch.config(hf, label);
  if (!(config == model->config()))
    fail(dir.string(), ": the folder's model ", config.to_json().dump(), " differs from the Gpt's ",
         model->config().to_json().dump());
  arch.load_weights(dir / "model.safetensors", model);
}

Gpt load_hf_model(const fs::path& dir) {
  Gpt model(hf_model_config(dir));  // config.json is read twice (here and to check it): a few hundred bytes
  load_hf_weights(dir, model);
  return model;
}

void save_hf_model(const Gpt& model, const fs::path& dir, const fs::path& tokenizer_json, std::int64_t eos_id) {
  const auto& arch = architectures().at("gpt2");
  fs::create_directories(dir);
  arch.save_weights(model, dir / "model.safetensors");
  atomic_write_text(dir / "tokenizer.json", read_text(tokenizer_json));
  // config.json last: a folder with a config is a complete one.
  atomic_write_text(dir / "config.json", arch.config_json(model->config(), eos_id).dump(2) + "\n");
}

}  // namespace tldr
