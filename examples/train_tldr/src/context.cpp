#include "context.hpp"

#include "checkpoint.hpp"
#include "fail.hpp"
#include "ranks.hpp"

#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_color_sinks.h>

namespace tldr {
namespace fs = std::filesystem;

std::shared_ptr<spdlog::logger> open_log(const fs::path& workdir, const std::string& file) {
  fs::create_directories(workdir);
  auto console = std::make_shared<spdlog::sinks::stderr_color_sink_mt>();
  // Data parallel: rank 0 reports to the console and the run's log, the others to their own files.
  const bool main = ranks().is_main();
  const auto path = main ? workdir / file : workdir / "logs" / ("rank-" + std::to_string(ranks().rank()) + ".log");
  fs::create_directories(path.parent_path());
  auto sink = std::make_shared<spdlog::sinks::basic_file_sink_mt>(path.string());
  auto log = main ? std::make_shared<spdlog::logger>("tldr", spdlog::sinks_init_list{console, sink})
                  : std::make_shared<spdlog::logger>("tldr", sink);
  log->set_pattern("[%H:%M:%S] %v");
  sink->set_pattern("[%Y-%m-%d %H:%M:%S.%e] %v");
  log->flush_on(spdlog::level::info);
  return log;
}

namespace {
std::vector<encoded_example> encode(const tokenizer& tok, const std::vector<example>& in, const config& c) {
  std::vector<std::string> prompts, labels;
  for (const auto& e : in) {
    prompts.push_back(e.prompt);
    labels.push_back(e.label);
  }
  const auto p = tok.encode_prompts(prompts, c.max_prompt_tokens);
  const auto l = tok.encode_responses(labels, c.max_response_tokens);
  std::vector<encoded_example> out;
  out.reserve(in.size());
  for (std::size_t i = 0; i < in.size(); ++i) out.push_back({in[i].id, post_of(in[i].prompt), in[i].label, p[i], l[i]});
  return out;
}
}  // namespace

run_context::run_context(config settings, std::shared_ptr<spdlog::logger> log, bool write_config)
    : cfg_(std::move(settings)), log_(std::move(log)) {
  cfg_.validate();
  tok_.emplace(cfg_.tokenizer_file());
  if (cfg_.model_dir.empty()) {
    cfg_.model.vocab = tok_->vocab_size();
  } else if (tok_->vocab_size() > cfg_.model.vocab) {  // the model's rows may be padded beyond it
    fail(cfg_.model_dir.string(), ": tokenizer.json has ", tok_->vocab_size(), " tokens but the model's vocab_size is ",
         cfg_.model.vocab);
  }
  cfg_.model.validate();
  const auto train = read_tldr_jsonl(path("data/train.jsonl"));
  oracle_.emplace(train);
  train_ = encode(*tok_, train, cfg_);
  valid_ = encode(*tok_, read_tldr_jsonl(path("data/valid.jsonl")), cfg_);
  test_ = encode(*tok_, read_tldr_jsonl(path("data/test.jsonl")), cfg_);
  if (!write_config) return;
  const auto resolved = to_json(cfg_).dump(2);
  const auto file = path("config.json");
  if (fs::exists(file) && read_text(file) != resolved)
    log_->warn(
        "settings differ from those in {}: cached stages are kept as they are (use a new --workdir to redo them)",
        file.string());
  atomic_write_text(file, resolved);
}

const oracle& run_context::oracle() const {
  if (!sealed_.empty())
    throw std::logic_error("the oracle (the experiment's true reward) was asked for during " + sealed_ +
                           ", which may use the reward model only");
  return *oracle_;
}

sampling_options run_context::decoding(std::int64_t samples_per_prompt, double temperature) const {
  sampling_options so;
  so.samples_per_prompt = samples_per_prompt;
  so.max_new_tokens = cfg_.max_response_tokens;
  so.temperature = temperature;
  so.eos_id = tok_->eos_id();
  so.pad_id = tokenizer::pad_id;
  return so;
}

std::vector<tokens> run_context::prompts_of(const std::vector<encoded_example>& split, std::size_t count) {
  std::vector<tokens> out;
  for (std::size_t i = 0; i < std::min(count, split.size()); ++i) out.push_back(split[i].prompt);
  return out;
}

std::vector<tokens> run_context::golds_of(const std::vector<encoded_example>& split, std::size_t count) {
  std::vector<tokens> out;
  for (std::size_t i = 0; i < std::min(count, split.size()); ++i) out.push_back(split[i].gold);
  return out;
}

}  // namespace tldr
