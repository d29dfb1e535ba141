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
    // Debian's package descriptions: the pinned snapshot, or with --apt-lists this host's lists.
    // The checksum is that of the selected descriptions in the snapshot's format either way, so
    // that live lists holding the snapshot's text give the snapshot's checksum.
    selection selected;
    std::string checksum;
    if (c.apt_lists.empty()) {
      const auto file = c.data_snapshot.empty() ? default_snapshot() : c.data_snapshot;
      log.info("data: Debian package descriptions from the snapshot {} (long description = post, synopsis = TL;DR)",
               file.string());
      auto s = read_snapshot(file);
      if (s.min_words != c.data.min_words || s.max_words != c.data.max_words)
        throw std::invalid_argument(file.string() + " holds the descriptions selected at --data-min-words " +
                                    std::to_string(s.min_words) + " --data-max-words " + std::to_string(s.max_words) +
                                    "; other word limits need --apt-lists DIR (e.g. /var/lib/apt/lists)");
      checksum = s.checksum;
      stats = {{"source", "snapshot"}, {"snapshot", file.string()}, {"taken", s.taken}};
      selected = {std::move(s.packages), s.packages_read, s.kept_after_filters, s.duplicates_removed};
    } else {
      log.info("data: Debian package descriptions from {} (long description = post, synopsis = TL;DR)",
               c.apt_lists.string());
      std::vector<fs::path> files;
      selected = select_from_apt(c.data, c.apt_lists, &files);
      checksum = text_checksum(snapshot_text(selected.packages));
      json names = json::array();
      for (const auto& f : files) names.push_back(f.filename().string());
      stats = {{"source", "apt lists"}, {"apt_lists", c.apt_lists.string()}, {"lists", names}};
    }
    const std::size_t records = selected.packages.size();
    const auto d = split_dataset(std::move(selected), c.data);
    write_tldr_jsonl(dir / "train.jsonl", d.train);
    write_tldr_jsonl(dir / "valid.jsonl", d.valid);
    write_tldr_jsonl(dir / "test.jsonl", d.test);
    stats.update(json{{"checksum", checksum},
                      {"records", records},
                      {"packages_read", d.packages_read},
                      {"kept_after_filters", d.kept_after_filters},
                      {"duplicates_removed", d.duplicates_removed},
                      {"train", d.train.size()},
                      {"valid", d.valid.size()},
                      {"test", d.test.size()}});
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
    atomic_write(file, [&](const fs::path& tmp) {
      fs::copy_file(c.tokenizer_model, tmp, fs::copy_options::overwrite_existing);
    });
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
