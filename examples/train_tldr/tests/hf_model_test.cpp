// Tests of Hugging Face model folders (src/hf_model.hpp) and of the pipeline's tokenizer.json
// path: what each check rejects, the Conv1D layout, the round trip. Logits against an independent
// GPT-2 are tests/hf_gpt2_reference.py's job (ctest tldr_hf_gpt2_reference).
#include "checkpoint.hpp"
#include "hf_model.hpp"
#include "tiny_model.hpp"
#include "tokenizer.hpp"

#include <brain/io/safetensors.hpp>

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <unistd.h>

namespace {
namespace fs = std::filesystem;
using nlohmann::json;

fs::path hf_scratch(const std::string& name) {
  auto dir = fs::temp_directory_path() / ("tldr-hf-" + std::to_string(::getpid()) + "-" + name);
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

json hf_gpt2_json() {
  return {{"model_type", "gpt2"},
          {"vocab_size", 50},
          {"n_positions", 32},
          {"n_embd", 32},
          {"n_layer", 2},
          {"n_head", 4},
          {"n_inner", nullptr},
          {"activation_function", "gelu_new"},
          {"layer_norm_epsilon", 1e-5}};
}

// The message of what `f` throws (std::invalid_argument expected), or "" when it does not throw.
template <class F>
std::string hf_error(F&& f) {
  try {
    f();
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "";
}

// GPT-2's byte-to-character map (its encoder.py's bytes_to_unicode), for a tokenizer.json of the
// 256 bytes, a few merges and an end-of-text token.
std::string hf_byte_char(int b) {
  const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF);
  int code = b;
  if (!printable) {
    int n = 0;
    for (int c = 0; c < b; ++c)
      if (!((c >= '!' && c <= '~') || (c >= 0xA1 && c <= 0xAC) || (c >= 0xAE && c <= 0xFF))) ++n;
    code = 256 + n;
  }
  std::string out;  // UTF-8 of code (< 0x800)
  if (code < 0x80) {
    out += static_cast<char>(code);
  } else {
    out += static_cast<char>(0xC0 | (code >> 6));
    out += static_cast<char>(0x80 | (code & 0x3F));
  }
  return out;
}

fs::path write_byte_tokenizer(const fs::path& dir, const std::string& end_token = "<|endoftext|>") {
  json vocab = json::object();
  for (int b = 0; b < 256; ++b) vocab[hf_byte_char(b)] = b;
  const std::string space = hf_byte_char(' ');
  vocab[space + "t"] = 256;
  vocab["he"] = 257;
  vocab[space + "the"] = 258;  // " t" + "he"
  json tok = {
      {"version", "1.0"},
      {"added_tokens", json::array({{{"id", 259}, {"content", end_token}, {"special", true}}})},
      {"normalizer", nullptr},
      {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}}},
      {"decoder", {{"type", "ByteLevel"}}},
      {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", json::array({space + " t", "h e", space + "t he"})}}}};
  const auto file = dir / "tokenizer.json";
  std::ofstream(file) << tok.dump();
  return file;
}

TEST(hf_model, config_maps_gpt2_fields_and_names_what_it_cannot_honour) {
  const auto c = tldr::gpt2_config_from_hf(hf_gpt2_json(), "cfg");
  EXPECT_EQ(c, tldr::testing::tiny_config());
  auto alternate = json{{"vocab_size", 50},
                        {"max_position_embeddings", 32},
                        {"hidden_size", 32},
                        {"num_hidden_layers", 2},
                        {"num_attention_heads", 4}};
  EXPECT_EQ(tldr::gpt2_config_from_hf(alternate, "cfg"), c);
  const std::vector<std::pair<json, std::string>> bad{
      {{{"activation_function", "relu"}}, "\"activation_function\" = \"relu\" is not supported"},
      {{{"layer_norm_epsilon", 1e-6}}, "\"layer_norm_epsilon\" = 1e-06 is not supported"},
      {{{"n_inner", 100}}, "\"n_inner\" = 100 is not supported"},
      {{{"tie_word_embeddings", false}}, "\"tie_word_embeddings\" = false"},
      {{{"add_cross_attention", true}}, "\"add_cross_attention\" = true"},
      {{{"n_head", 5}}, "heads = 5 must be >= 1 and divide d_model = 32"},
      {{{"vocab_size", "50"}}, "\"vocab_size\" = \"50\" is not an integer"},
  };
  for (const auto& [patch, message] : bad) {
    auto j = hf_gpt2_json();
    j.update(patch);
    const auto what = hf_error([&] { (void)tldr::gpt2_config_from_hf(j, "dir/config.json"); });
    EXPECT_NE(what.find("dir/config.json: "), std::string::npos) << what;
    EXPECT_NE(what.find(message), std::string::npos) << patch.dump() << " gave: " << what;
  }
  auto missing = hf_gpt2_json();
  missing.erase("n_layer");
  EXPECT_NE(hf_error([&] { (void)tldr::gpt2_config_from_hf(missing, "c"); }).find("no \"n_layer\" field"),
            std::string::npos);
  // Written back, the config reads as the same model.
  EXPECT_EQ(tldr::gpt2_config_from_hf(tldr::gpt2_config_to_hf(c, 7), "c"), c);
  EXPECT_EQ(tldr::gpt2_config_to_hf(c, 7).at("eos_token_id"), 7);
}

TEST(hf_model, folders_of_other_architectures_and_broken_configs_are_named) {
  const auto dir = hf_scratch("arch");
  EXPECT_NE(hf_error([&] { (void)tldr::hf_model_config(dir); }).find("config.json: no such file"), std::string::npos);
  std::ofstream(dir / "config.json") << R"({"model_type": "llama"})";
  const auto what = hf_error([&] { (void)tldr::hf_model_config(dir); });
  EXPECT_NE(what.find("model_type \"llama\" is not supported (supported: gpt2)"), std::string::npos) << what;
  std::ofstream(dir / "config.json") << "{";
  EXPECT_NE(hf_error([&] { (void)tldr::hf_model_config(dir); }).find("not valid JSON"), std::string::npos);
  fs::remove_all(dir);
}

TEST(hf_model, saves_and_loads_back_exactly_with_conv1d_layouts) {
  const auto dir = hf_scratch("round");
  const auto model = tldr::testing::tiny_model(3);
  const auto tok = write_byte_tokenizer(dir);
  tldr::save_hf_model(model, dir / "out", tok, 259);
  for (const char* f : {"config.json", "model.safetensors", "tokenizer.json"})
    EXPECT_TRUE(fs::exists(dir / "out" / f)) << f;
  EXPECT_EQ(tldr::read_text(dir / "out/tokenizer.json"), tldr::read_text(tok));
  // Hugging Face's names and layouts: Conv1D weights [in, out], no lm_head (tied).
  const brain::io::safetensors file(dir / "out/model.safetensors");
  EXPECT_EQ(file.tensors().size(), 4u + 12u * 2u);
  EXPECT_FALSE(file.contains("lm_head.weight"));
  const auto& c_attn = file.at("transformer.h.1.attn.c_attn.weight");
  EXPECT_EQ(c_attn.shape, (std::vector<std::int64_t>{32, 96}));
  const auto values = file.floats("transformer.h.1.attn.c_attn.weight");
  const auto& qkv = model->blocks->at<tldr::BlockImpl>(1).qkv->weight;  // [96, 32]
  EXPECT_EQ(values[1], qkv[1][0].item<float>());                        // row 0 (input 0), column 1 (output 1)
  EXPECT_EQ(values[96], qkv[0][1].item<float>());                       // row 1 (input 1), column 0
  const auto again = tldr::load_hf_model(dir / "out");
  EXPECT_EQ(again->config(), model->config());
  const auto a = model->named_parameters(), b = again->named_parameters();
  for (const auto& p : a) EXPECT_TRUE(p.value().equal(b[p.key()])) << p.key();
  for (const auto& entry : fs::directory_iterator(dir / "out"))  // nothing left of the atomic writes
    EXPECT_EQ(entry.path().filename().string().find(".tmp"), std::string::npos) << entry.path();
  fs::remove_all(dir);
}

// Rewrites a folder's model.safetensors with `change` applied to its tensors (name → float data).
void rewrite_weights(
    const fs::path& dir,
    const std::function<void(std::map<std::string, std::pair<std::vector<std::int64_t>, std::vector<float>>>&)>&
        change) {
  std::map<std::string, std::pair<std::vector<std::int64_t>, std::vector<float>>> tensors;
  {
    const brain::io::safetensors file(dir / "model.safetensors");
    for (const auto& t : file.tensors()) tensors[t.name] = {t.shape, file.floats(t.name)};
  }
  change(tensors);
  std::vector<brain::io::tensor_view> views;
  for (const auto& [name, t] : tensors)
    views.push_back({name, brain::io::dtype::f32, t.first, std::as_bytes(std::span(t.second.data(), t.second.size()))});
  brain::io::write_safetensors(dir / "model.safetensors", views);
}

TEST(hf_model, weights_that_do_not_fit_the_config_are_named) {
  const auto dir = hf_scratch("bad");
  const auto model = tldr::testing::tiny_model(4);
  const auto tok = write_byte_tokenizer(dir);
  const auto fresh = [&] {
    fs::remove_all(dir / "m");
    tldr::save_hf_model(model, dir / "m", tok, 259);
  };
  const auto load_error = [&] { return hf_error([&] { (void)tldr::load_hf_model(dir / "m"); }); };
  fresh();
  rewrite_weights(dir / "m", [](auto& t) { t.erase("transformer.h.1.mlp.c_fc.bias"); });
  EXPECT_NE(load_error().find("no tensor 'transformer.h.1.mlp.c_fc.bias'"), std::string::npos) << load_error();
  fresh();
  rewrite_weights(dir / "m", [](auto& t) {
    auto& w = t["transformer.h.0.mlp.c_fc.weight"];  // [32, 128] stored as [128, 32]
    w.first = {128, 32};
  });
  EXPECT_NE(load_error().find("tensor 'transformer.h.0.mlp.c_fc.weight' has shape [128, 32] (Conv1D, [in, out]) but "
                              "the config needs [32, 128]"),
            std::string::npos)
      << load_error();
  fresh();
  rewrite_weights(dir / "m", [](auto& t) { t["transformer.h.0.attn.extra"] = {{2}, {1.f, 2.f}}; });
  EXPECT_NE(load_error().find("unexpected tensor 'transformer.h.0.attn.extra'"), std::string::npos) << load_error();
  // A tied lm_head and the old causal-mask buffers load; an untied lm_head does not.
  fresh();
  rewrite_weights(dir / "m", [](auto& t) {
    t["lm_head.weight"] = t.at("transformer.wte.weight");
    t["transformer.h.0.attn.bias"] = {{1, 1, 2, 2}, {1.f, 0.f, 1.f, 1.f}};
    t["transformer.h.1.attn.masked_bias"] = {{}, {-1e4f}};
  });
  EXPECT_EQ(load_error(), "");
  rewrite_weights(dir / "m", [](auto& t) { t["lm_head.weight"].second[5] += 1.0f; });
  EXPECT_NE(load_error().find("lm_head.weight differs from transformer.wte.weight"), std::string::npos) << load_error();
  // A folder of another model size than the Gpt's.
  fresh();
  auto other = tldr::testing::tiny_config();
  other.layers = 1;
  tldr::Gpt small(other);
  EXPECT_NE(hf_error([&] { tldr::load_hf_weights(dir / "m", small); }).find("differs from the Gpt's"),
            std::string::npos);
  fs::remove_all(dir);
}

TEST(hf_model, pipeline_tokenizer_reads_tokenizer_json_with_its_end_of_text_token) {
  const auto dir = hf_scratch("tok");
  const tldr::tokenizer tok(write_byte_tokenizer(dir));
  EXPECT_TRUE(tok.is_byte_level());
  EXPECT_EQ(tok.vocab_size(), 260);
  EXPECT_EQ(tok.bos_id(), 259);
  EXPECT_EQ(tok.eos_id(), 259);
  // " the" merges to one token; "x" is its byte.
  EXPECT_EQ(tok.encode(std::string("x the")), (tldr::tokens{'x', 258}));
  // A summary follows "TL;DR:" after a space and ends with eos; decoding drops both.
  const auto label = tok.encode_responses(std::vector<std::string>{"the"}, 10).front();
  EXPECT_EQ(label, (tldr::tokens{258, 259}));
  EXPECT_EQ(tok.decode(label), "the");
  // A prompt starts with bos (= eos here), which decode skips once before stopping at eos.
  const auto prompt = tok.encode_prompts(std::vector<std::string>{"the post\nTL;DR:"}, 40).front();
  EXPECT_EQ(prompt.front(), 259);
  EXPECT_EQ(tok.decode(prompt), "the post\nTL;DR:");
  EXPECT_EQ(tok.decode(tldr::tokens{'a', 259, 'b'}), "a");
  // A sample that stops inside a character: its bytes become U+FFFD (valid UTF-8 for the JSON files).
  EXPECT_EQ(tok.decode(tldr::tokens{'a', 0xC3, 'b', 0xE2, 0x82}),
            "a\xEF\xBF\xBD"
            "b\xEF\xBF\xBD\xEF\xBF\xBD");
  EXPECT_EQ(tok.decode(tldr::tokens{0xC3, 0xA9, 0xF0, 0x9F, 0x98, 0x80}), "\xC3\xA9\xF0\x9F\x98\x80");  // é, 😀 kept
  // Without an end-of-text token the pipeline cannot stop its samples.
  const auto none = hf_scratch("tok-none");
  const auto what = [&] {
    try {
      tldr::tokenizer t(write_byte_tokenizer(none, "<|pad|>"));
    } catch (const std::invalid_argument& e) {
      return std::string(e.what());
    }
    return std::string();
  }();
  EXPECT_NE(what.find("no end-of-text token"), std::string::npos) << what;
  fs::remove_all(dir);
  fs::remove_all(none);
}

}  // namespace
