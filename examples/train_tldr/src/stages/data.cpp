// Stages data and tokenizer: the splits (Debian's package descriptions or real TL;DR JSONL files)
// and the SentencePiece model trained on the training split.

#include "checkpoint.hpp"
#include "progress.hpp"
#include "stages.hpp"

#include <nlohmann/json.hpp>

namespace tldr {
namespace fs = std::filesystem;
using nlohmann::json;

void prepare_data(const config& c, spdlog::logger& log) {
  const auto dir = c.workdir / "data";
  if (fs::exists(dir / "test.jsonl")) return;
  fs::create_directories(dir);
  json stats;
  if (!c.train_jsonl.empty()) {
    // Real TL;DR files (CarperAI's openai_summarize_tldr format): used as they are.
    if (c.valid_jsonl.empty() || c.test_jsonl.empty())
      throw std::invalid_argument("--train-jsonl needs --valid-jsonl and --test-jsonl as well");
    const auto train = read_tldr_jsonl(c.train_jsonl), valid = read_tldr_jsonl(c.valid_jsonl),
               test = read_tldr_jsonl(c.test_jsonl);
    write_tldr_jsonl(dir / "train.jsonl", train);
    write_tldr_jsonl(dir / "valid.jsonl", valid);
    write_tldr_jsonl(dir / "test.jsonl", test);
    stats = {{"source", "jsonl"}, {"train", train.size()}, {"valid", valid.size()}, {"test", test.size()}};
  } else {
    log.info("data: Debian package descriptions from {} (long description = post, synopsis = TL;DR)",
             c.apt_lists.string());
    const auto d = build_dataset_from_apt(c.data, c.apt_lists);
    write_tldr_jsonl(dir / "train.jsonl", d.train);
    write_tldr_jsonl(dir / "valid.jsonl", d.valid);
    write_tldr_jsonl(dir / "test.jsonl", d.test);
    stats = {{"source", "Debian Translation-en"}, {"packages_read", d.packages_read},
             {"kept_after_filters", d.kept_after_filters}, {"duplicates_removed", d.duplicates_removed},
             {"train", d.train.size()}, {"valid", d.valid.size()}, {"test", d.test.size()}};
  }
  atomic_write_text(dir / "stats.json", stats.dump(2));
  log.info("data: {}", stats.dump());
}

void prepare_tokenizer(const config& c, spdlog::logger&) {
  const auto file = c.tokenizer_file();
  if (fs::exists(file)) return;
  if (!c.model_dir.empty()) {  // the model folder's own (checked when the run context loads it)
    atomic_write(file, [&](const fs::path& tmp) {
      fs::copy_file(c.model_dir / "tokenizer.json", tmp, fs::copy_options::overwrite_existing);
    });
    return;
  }
  if (!c.tokenizer_model.empty()) {
    atomic_write(file, [&](const fs::path& tmp) { fs::copy_file(c.tokenizer_model, tmp, fs::copy_options::overwrite_existing); });
    return;
  }
  const auto train = read_tldr_jsonl(c.workdir / "data/train.jsonl");
  progress bar("tokenizer", 1, "models");
  // spm_train's pieces depend on its thread count (1 and 2 threads give different vocabularies on
  // the full data), so it is fixed: --threads must not change the tokeniser and everything after it.
  constexpr int spm_threads = 2;
  tokenizer::train(train, c.vocab, file, spm_threads);
  bar.finish("vocabulary " + std::to_string(c.vocab));
}

}  // namespace tldr
