// The C++ side of tests/hf_gpt2_reference.py (ctest tldr_hf_gpt2_reference and the --model-dir
// pipeline test): logits of a Hugging Face folder or a pipeline checkpoint, and a folder saved back.
//
//   hf_driver logits SOURCE IDS.json OUT.json [FOLDER]
//       SOURCE: a model folder, or a pipeline checkpoint (.pt) of FOLDER's config; IDS: [[id, ...], ...]
//       of equal lengths (no padding); writes the float32 logits [B][T][V] as JSON numbers (exact).
//   hf_driver resave FOLDER OUT
//       load_hf_model(FOLDER) then save_hf_model to OUT (with FOLDER's tokenizer.json).

#include "hf_model.hpp"
#include "training.hpp"

#include <nlohmann/json.hpp>

#include <cstdio>
#include <fstream>
#include <iostream>

namespace {
namespace fs = std::filesystem;

int logits(const fs::path& source, const fs::path& ids_file, const fs::path& out_file, const fs::path& folder) {
  tldr::Gpt model{nullptr};
  if (fs::is_directory(source)) {
    model = tldr::load_hf_model(source);
  } else {
    model = tldr::Gpt(tldr::hf_model_config(folder));
    tldr::load_model(source, *model);
  }
  model->eval();
  const auto rows = nlohmann::json::parse(std::ifstream(ids_file)).get<std::vector<std::vector<std::int64_t>>>();
  const auto batch = tldr::right_pad(rows, 0);
  torch::NoGradGuard no_grad;
  const auto out = model->forward(batch.ids, batch.mask).contiguous();
  const auto* p = out.data_ptr<float>();
  std::vector<float> values(p, p + out.numel());
  nlohmann::json j = nlohmann::json::array();
  std::size_t k = 0;
  for (std::int64_t b = 0; b < out.size(0); ++b) {
    auto& row = j.emplace_back(nlohmann::json::array());
    for (std::int64_t t = 0; t < out.size(1); ++t) {
      auto& token = row.emplace_back(nlohmann::json::array());
      for (std::int64_t v = 0; v < out.size(2); ++v) token.push_back(values[k++]);
    }
  }
  std::ofstream(out_file) << j.dump();  // nlohmann writes floats with round-trip precision
  return 0;
}

int resave(const fs::path& folder, const fs::path& out) {
  const auto model = tldr::load_hf_model(folder);
  const auto config = tldr::read_hf_config(folder);
  tldr::save_hf_model(model, out, folder / "tokenizer.json", config.at("eos_token_id").get<std::int64_t>());
  return 0;
}
}  // namespace

int main(int argc, char** argv) {
  try {
    const std::vector<std::string> args(argv + 1, argv + argc);
    if (args.size() >= 4 && args[0] == "logits")
      return logits(args[1], args[2], args[3], args.size() > 4 ? args[4] : "");
    if (args.size() == 3 && args[0] == "resave") return resave(args[1], args[2]);
    std::fprintf(stderr, "usage: hf_driver logits SOURCE IDS.json OUT.json [FOLDER] | resave FOLDER OUT\n");
    return 2;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "hf_driver: %s\n", e.what());
    return 1;
  }
}
