#include "pipeline.hpp"

#include "checkpoint.hpp"
#include "progress.hpp"
#include "sampler.hpp"

#include <brain/loss.hpp>
#include <brain/reductions.hpp>
#include <brain/torch/log_probs.hpp>

#include <spdlog/sinks/basic_file_sink.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>

#include <ATen/CPUGeneratorImpl.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <iterator>
#include <cmath>
#include <fstream>
#include <map>
#include <numeric>
#include <random>
#include <sstream>

namespace tldr {
namespace fs = std::filesystem;
using nlohmann::json;

nlohmann::json to_json(const config& c) {
  return json{{"seed", c.seed},
              {"threads", c.threads},
              {"data", {{"min_words", c.data.min_words}, {"max_words", c.data.max_words},
                        {"valid_fraction", c.data.valid_fraction}, {"test_fraction", c.data.test_fraction},
                        {"max_examples", c.data.max_examples}, {"train_jsonl", c.train_jsonl.string()},
                        {"valid_jsonl", c.valid_jsonl.string()}, {"test_jsonl", c.test_jsonl.string()}}},
              {"vocab", c.vocab},
              {"max_prompt_tokens", c.max_prompt_tokens},
              {"max_response_tokens", c.max_response_tokens},
              {"model", c.model.to_json()},
              {"sft", {{"steps", c.sft.steps}, {"batch", c.sft.batch}, {"lr", c.sft.lr}}},
              {"pairs", {{"train_prompts", c.pairs.train_prompts}, {"valid_prompts", c.pairs.valid_prompts},
                         {"label_temperature", c.pairs.label_temperature}, {"gold_fraction", c.pairs.gold_fraction}}},
              {"rm", {{"epochs", c.rm.epochs}, {"batch", c.rm.batch}, {"lr", c.rm.lr}}},
              {"align", {{"refreshes", c.align.refreshes}, {"prompts", c.align.prompts}, {"samples", c.align.samples},
                         {"epochs", c.align.epochs}, {"groups_per_step", c.align.groups_per_step},
                         {"lr", c.align.lr}, {"clip", c.align.clip}, {"beta", c.align.beta}}},
              {"eval", {{"valid_prompts", c.eval.valid_prompts}, {"test_prompts", c.eval.test_prompts},
                        {"bootstrap", c.eval.bootstrap}, {"temperature", c.eval.temperature}}}};
}

namespace {

/// splitmix64: independent, reproducible seeds per (purpose, index), so that a resumed run draws
/// exactly what an uninterrupted one would have drawn.
std::uint64_t mix(std::uint64_t seed, std::uint64_t a, std::uint64_t b = 0) {
  std::uint64_t z = seed + 0x9e3779b97f4a7c15ULL * (a + 1) + 0xbf58476d1ce4e5b9ULL * (b + 1);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}
enum purpose : std::uint64_t { p_sft = 1, p_pairs, p_labels, p_rm, p_prompts, p_sample, p_minibatch, p_valid, p_test, p_boot };

std::vector<std::size_t> permutation(std::size_t n, std::uint64_t seed) {
  std::vector<std::size_t> p(n);
  std::iota(p.begin(), p.end(), std::size_t{0});
  std::mt19937_64 rng(seed);
  // Fisher–Yates by hand: std::shuffle's use of the engine is implementation-defined.
  for (std::size_t i = n; i > 1; --i) std::swap(p[i - 1], p[rng() % i]);
  return p;
}

::torch::Generator make_generator(std::uint64_t seed) { return at::detail::createCPUGenerator(seed); }

/// Prompt + response, right-padded: ids, real-token mask and the response (label) positions.
struct sequences {
  ::torch::Tensor ids, mask, response_mask;
};

sequences make_sequences(const std::vector<const tokens*>& prompts, const std::vector<const tokens*>& responses) {
  const auto rows = static_cast<std::int64_t>(prompts.size());
  std::int64_t width = 1;
  for (std::size_t i = 0; i < prompts.size(); ++i)
    width = std::max<std::int64_t>(width, static_cast<std::int64_t>(prompts[i]->size() + responses[i]->size()));
  auto ids = ::torch::full({rows, width}, tokenizer::pad_id, ::torch::kInt64);
  auto mask = ::torch::zeros({rows, width}, ::torch::kBool);
  auto response = ::torch::zeros({rows, width}, ::torch::kBool);
  auto id = ids.accessor<std::int64_t, 2>();
  auto m = mask.accessor<bool, 2>();
  auto r = response.accessor<bool, 2>();
  for (std::int64_t b = 0; b < rows; ++b) {
    std::int64_t t = 0;
    for (auto token : *prompts[b]) { id[b][t] = token; m[b][t++] = true; }
    for (auto token : *responses[b]) { id[b][t] = token; m[b][t] = true; r[b][t++] = true; }
  }
  return {ids, mask, response};
}

/// log q(y|x) of each row's response, differentiable: the fused kernel never forms [B, T, V] logits.
::torch::Tensor response_log_probs(Gpt& model, const sequences& s) {
  const auto hidden = model->hidden(s.ids, s.mask);
  return brain::torch::fused_linear_sequence_log_probs(hidden, model->head_weight(), s.ids, s.response_mask,
                                                       brain::torch::alignment::next_token);
}

sampling_options decoding(std::int64_t samples_per_prompt, std::int64_t max_new_tokens, double temperature) {
  sampling_options so;
  so.samples_per_prompt = samples_per_prompt;
  so.max_new_tokens = max_new_tokens;
  so.temperature = temperature;
  so.eos_id = tokenizer::eos_id;
  so.pad_id = tokenizer::pad_id;
  return so;
}

/// sample() over chunks of 256 prompts, advancing a progress bar (when given) per chunk.
std::vector<tokens> sample_all(Gpt& model, const std::vector<tokens>& prompts, const sampling_options& so,
                               ::torch::Generator& gen, progress* bar = nullptr) {
  std::vector<tokens> responses;
  for (std::size_t i = 0; i < prompts.size(); i += 256) {
    const std::vector<tokens> part(prompts.begin() + long(i), prompts.begin() + long(std::min(prompts.size(), i + 256)));
    auto s = sample(model, part, so, gen);
    for (auto& r : s.responses) responses.push_back(std::move(r));
    if (bar != nullptr) bar->advance(static_cast<std::int64_t>(part.size()));
  }
  return responses;
}

void set_lr(::torch::optim::Optimizer& opt, double lr) {
  for (auto& group : opt.param_groups()) static_cast<::torch::optim::AdamWOptions&>(group.options()).lr(lr);
}

/// The step a stage resumes at: its checkpoint's (model and optimiser restored), or 0 without one.
std::int64_t resume_from(const fs::path& state, ::torch::nn::Module& model, ::torch::optim::Optimizer& opt) {
  if (!fs::exists(state)) return 0;
  checkpoint_reader r(state);
  r.load("model", model);
  r.load("optimizer", opt);
  return r.integer("step");
}

void save_state(const fs::path& state, const ::torch::nn::Module& model, const ::torch::optim::Optimizer& opt,
                std::int64_t step) {
  checkpoint_writer w;
  w.add("model", model);
  w.add("optimizer", opt);
  w.add("step", step);
  w.save(state);
}

/// One AdamW step on `loss` at learning rate `lr`, gradients clipped to norm `clip`.
void optimizer_step(::torch::optim::Optimizer& opt, const ::torch::Tensor& loss,
                    const std::vector<::torch::Tensor>& parameters, double lr, double clip) {
  set_lr(opt, lr);
  opt.zero_grad();
  loss.backward();
  ::torch::nn::utils::clip_grad_norm_(parameters, clip);
  opt.step();
}

/// Linear warm-up over the first 5% of steps, then cosine decay to 10% of the peak.
double schedule(double peak, std::int64_t step, std::int64_t total) {
  const double warm = std::max(1.0, 0.05 * double(total));
  if (double(step) < warm) return peak * double(step + 1) / warm;
  const double progress = (double(step) - warm) / std::max(1.0, double(total) - warm);
  return peak * (0.1 + 0.9 * 0.5 * (1.0 + std::cos(M_PI * std::min(1.0, progress))));
}

::torch::Tensor bytes_tensor(const std::string& s) {
  auto t = ::torch::empty({static_cast<std::int64_t>(s.size())}, ::torch::kUInt8);
  std::memcpy(t.data_ptr(), s.data(), s.size());
  return t;
}
std::string tensor_bytes(const ::torch::Tensor& t) {
  return {static_cast<const char*>(t.data_ptr()), static_cast<std::size_t>(t.numel())};
}

json history_json(const std::vector<validation_point>& h) {
  json a = json::array();
  for (const auto& p : h)
    a.push_back({{"refresh", p.refresh}, {"step", p.step}, {"rm_win", p.rm_win}, {"judge_win", p.judge_win},
                 {"mean_reward", p.mean_reward}, {"mean_length", p.mean_length}});
  return a;
}
std::vector<validation_point> history_from(const json& a) {
  std::vector<validation_point> h;
  for (const auto& p : a)
    h.push_back({p.at("refresh"), p.at("step"), p.at("rm_win"), p.at("judge_win"), p.at("mean_reward"),
                 p.at("mean_length")});
  return h;
}

std::size_t word_count(const std::string& s) {
  std::istringstream in(s);
  return static_cast<std::size_t>(std::distance(std::istream_iterator<std::string>(in), {}));
}

/// Copies b's parameters and buffers into a (same architecture): the proposal refresh.
void copy_weights(::torch::nn::Module& to, const ::torch::nn::Module& from) {
  ::torch::NoGradGuard no_grad;
  auto dst = to.named_parameters(true);
  for (const auto& p : from.named_parameters(true)) dst[p.key()].copy_(p.value());
  auto dst_buffers = to.named_buffers(true);
  for (const auto& b : from.named_buffers(true)) dst_buffers[b.key()].copy_(b.value());
}

}  // namespace

pipeline::pipeline(config cfg) : cfg_(std::move(cfg)) {
  fs::create_directories(cfg_.workdir);
  auto console = std::make_shared<spdlog::sinks::stderr_color_sink_mt>();
  auto file = std::make_shared<spdlog::sinks::basic_file_sink_mt>((cfg_.workdir / "train_tldr.log").string());
  log_ = std::make_shared<spdlog::logger>("tldr", spdlog::sinks_init_list{console, file});
  log_->set_pattern("[%H:%M:%S] %v");
  file->set_pattern("[%Y-%m-%d %H:%M:%S.%e] %v");
  log_->flush_on(spdlog::level::info);
  // The settings of this run, beside its outputs. Cached stages are reused whatever the settings
  // now, so say so when they changed.
  const auto settings = to_json(cfg_).dump(2), config_file = (cfg_.workdir / "config.json").string();
  if (fs::exists(config_file) && read_text(config_file) != settings)
    log_->warn("settings differ from those in {}: cached stages are kept as they are (use a new --workdir to redo them)",
               config_file);
  atomic_write_text(config_file, settings);
  if (cfg_.model.context < cfg_.max_prompt_tokens + cfg_.max_response_tokens)
    throw std::invalid_argument("model.context = " + std::to_string(cfg_.model.context) +
                                " must be >= max_prompt_tokens + max_response_tokens = " +
                                std::to_string(cfg_.max_prompt_tokens + cfg_.max_response_tokens));
}

void pipeline::run_all() {
  const auto start = std::chrono::steady_clock::now();
  auto timed = [&](const char* name, auto&& stage) {
    const auto t0 = std::chrono::steady_clock::now();
    stage();
    log_->info("stage {} finished in {}", name,
               format_duration(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count()));
  };
  timed("data", [&] { prepare_data(); });
  timed("tokenizer", [&] { prepare_tokenizer(); });
  timed("sft", [&] { train_sft(); });
  timed("pairs", [&] { make_pairs(); });
  timed("rm", [&] { train_reward_model(); });
  timed("dpo_sft", [&] { align("dpo_sft"); });
  timed("brain", [&] { align("brain"); });
  timed("evaluate", [&] { evaluate(); });
  log_->info("all stages finished in {}",
             format_duration(std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count()));
  std::printf("\n%s\n", results_markdown().c_str());
}

// ---------------------------------------------------------------------------------------------
// data and tokenizer

void pipeline::prepare_data() {
  const auto dir = path("data");
  if (fs::exists(dir / "test.jsonl")) return;
  fs::create_directories(dir);
  json stats;
  if (!cfg_.train_jsonl.empty()) {
    // Real TL;DR files (CarperAI's openai_summarize_tldr format): used as they are.
    if (cfg_.valid_jsonl.empty() || cfg_.test_jsonl.empty())
      throw std::invalid_argument("--train-jsonl needs --valid-jsonl and --test-jsonl as well");
    const auto train = read_tldr_jsonl(cfg_.train_jsonl), valid = read_tldr_jsonl(cfg_.valid_jsonl),
               test = read_tldr_jsonl(cfg_.test_jsonl);
    write_tldr_jsonl(dir / "train.jsonl", train);
    write_tldr_jsonl(dir / "valid.jsonl", valid);
    write_tldr_jsonl(dir / "test.jsonl", test);
    stats = {{"source", "jsonl"}, {"train", train.size()}, {"valid", valid.size()}, {"test", test.size()}};
  } else {
    log_->info("data: Debian package descriptions from {} (long description = post, synopsis = TL;DR)",
               cfg_.apt_lists.string());
    const auto d = build_dataset_from_apt(cfg_.data, cfg_.apt_lists);
    write_tldr_jsonl(dir / "train.jsonl", d.train);
    write_tldr_jsonl(dir / "valid.jsonl", d.valid);
    write_tldr_jsonl(dir / "test.jsonl", d.test);
    stats = {{"source", "Debian Translation-en"}, {"packages_read", d.packages_read},
             {"kept_after_filters", d.kept_after_filters}, {"duplicates_removed", d.duplicates_removed},
             {"train", d.train.size()}, {"valid", d.valid.size()}, {"test", d.test.size()}};
  }
  atomic_write_text(dir / "stats.json", stats.dump(2));
  log_->info("data: {}", stats.dump());
}

void pipeline::prepare_tokenizer() {
  const auto file = path("tokenizer/spm.model");
  if (fs::exists(file)) return;
  if (!cfg_.tokenizer_model.empty()) {
    atomic_write(file, [&](const fs::path& tmp) { fs::copy_file(cfg_.tokenizer_model, tmp, fs::copy_options::overwrite_existing); });
    return;
  }
  const auto train = read_tldr_jsonl(path("data/train.jsonl"));
  progress bar("tokenizer", 1, "models");
  tokenizer::train(train, cfg_.vocab, file, cfg_.threads);
  bar.finish("vocabulary " + std::to_string(cfg_.vocab));
}

void pipeline::load_data() {
  if (tok_) return;
  tok_.emplace(path("tokenizer/spm.model"));
  if (cfg_.model.vocab != tok_->vocab_size()) cfg_.model.vocab = tok_->vocab_size();
  raw_train_ = read_tldr_jsonl(path("data/train.jsonl"));
  judge_.emplace(raw_train_);
  auto encode = [&](const std::vector<example>& in) {
    std::vector<std::string> prompts, labels;
    for (const auto& e : in) {
      prompts.push_back(e.prompt);
      labels.push_back(e.label);
    }
    const auto p = tok_->encode_prompts(prompts, cfg_.max_prompt_tokens);
    const auto l = tok_->encode_responses(labels, cfg_.max_response_tokens);
    std::vector<encoded_example> out;
    out.reserve(in.size());
    for (std::size_t i = 0; i < in.size(); ++i) out.push_back({in[i].id, post_of(in[i].prompt), in[i].label, p[i], l[i]});
    return out;
  };
  train_ = encode(raw_train_);
  valid_ = encode(read_tldr_jsonl(path("data/valid.jsonl")));
  test_ = encode(read_tldr_jsonl(path("data/test.jsonl")));
}

Gpt pipeline::load_policy(const fs::path& file) {
  Gpt model(cfg_.model);
  checkpoint_reader(file).load("model", *model);
  return model;
}

RewardModel pipeline::load_reward_model() {
  RewardModel rm(cfg_.model);
  checkpoint_reader(path("rm/model.pt")).load("model", *rm);
  rm->eval();
  return rm;
}

::torch::Tensor pipeline::rewards(RewardModel& rm, const std::vector<const tokens*>& prompts,
                                  const std::vector<const tokens*>& responses) {
  ::torch::NoGradGuard no_grad;
  rm->eval();
  std::vector<::torch::Tensor> parts;
  constexpr std::size_t chunk = 256;
  for (std::size_t i = 0; i < prompts.size(); i += chunk) {
    const auto end = std::min(prompts.size(), i + chunk);
    const auto s = make_sequences({prompts.begin() + long(i), prompts.begin() + long(end)},
                                  {responses.begin() + long(i), responses.begin() + long(end)});
    parts.push_back(rm->forward(s.ids, s.mask).to(::torch::kFloat64));
  }
  return ::torch::cat(parts);
}

// ---------------------------------------------------------------------------------------------
// SFT: maximum likelihood of the gold summary given the prompt

void pipeline::train_sft() {
  const auto dir = path("sft");
  if (fs::exists(dir / "model.pt")) return;
  load_data();
  fs::create_directories(dir);
  ::torch::manual_seed(mix(cfg_.seed, p_sft));
  Gpt model(cfg_.model);
  ::torch::optim::AdamW opt(model->parameters(), ::torch::optim::AdamWOptions(cfg_.sft.lr).weight_decay(cfg_.sft.weight_decay));
  const auto state = dir / "state.pt";
  std::int64_t step = resume_from(state, *model, opt);
  if (step > 0) log_->info("sft: resuming at step {}", step);
  else log_->info("sft: GPT with {} parameters, {} training examples", parameter_count(*model), train_.size());
  model->train();
  const auto n = train_.size();
  const auto batch = static_cast<std::size_t>(cfg_.sft.batch);
  std::vector<std::size_t> order;
  std::int64_t order_epoch = -1;
  progress bar("sft", cfg_.sft.steps, "steps", step);
  double smoothed = NAN;
  for (; step < cfg_.sft.steps; ++step) {
    std::vector<const tokens*> prompts, responses;
    for (std::size_t j = 0; j < batch; ++j) {
      const auto g = static_cast<std::size_t>(step) * batch + j;
      if (const auto epoch = static_cast<std::int64_t>(g / n); epoch != order_epoch) {
        order = permutation(n, mix(cfg_.seed, p_sft, static_cast<std::uint64_t>(epoch)));
        order_epoch = epoch;
      }
      const auto& e = train_[order[g % n]];
      prompts.push_back(&e.prompt);
      responses.push_back(&e.gold);
    }
    const auto s = make_sequences(prompts, responses);
    const auto lp = response_log_probs(model, s);
    const auto loss = -lp.sum() / s.response_mask.sum().to(::torch::kFloat32);
    optimizer_step(opt, loss, model->parameters(), schedule(cfg_.sft.lr, step, cfg_.sft.steps), 1.0);
    const double l = loss.item<double>();
    smoothed = std::isnan(smoothed) ? l : 0.95 * smoothed + 0.05 * l;
    char status[64];
    std::snprintf(status, sizeof status, "loss/token %.3f", smoothed);
    bar.advance(1, status);
    if ((step + 1) % cfg_.sft.checkpoint_every == 0 && step + 1 < cfg_.sft.steps) save_state(state, *model, opt, step + 1);
  }
  bar.finish();
  // Held-out per-token loss, to see that SFT learned something transferable.
  model->eval();
  double nll = 0, count = 0;
  {
    ::torch::NoGradGuard no_grad;
    for (std::size_t i = 0; i < std::min<std::size_t>(valid_.size(), 512); i += 64) {
      std::vector<const tokens*> p, r;
      for (std::size_t j = i; j < std::min<std::size_t>({valid_.size(), 512, i + 64}); ++j) {
        p.push_back(&valid_[j].prompt);
        r.push_back(&valid_[j].gold);
      }
      const auto s = make_sequences(p, r);
      nll -= response_log_probs(model, s).sum().item<double>();
      count += s.response_mask.sum().item<double>();
    }
  }
  log_->info("sft: validation loss {:.3f} nats/token", nll / std::max(count, 1.0));
  checkpoint_writer w;
  w.add("model", *model);
  w.save(dir / "model.pt");
  atomic_write_text(dir / "metrics.json", json{{"valid_loss_per_token", nll / std::max(count, 1.0)},
                                                {"parameters", parameter_count(*model)},
                                                {"seconds", bar.elapsed_seconds()}}.dump(2));
  fs::remove(state);
}

// ---------------------------------------------------------------------------------------------
// Preference pairs: two SFT samples per prompt (or one against the gold summary), labelled by the
// judge with Bradley–Terry noise, standing in for human labellers.

void pipeline::make_pairs() {
  const auto dir = path("pairs");
  if (fs::exists(dir / "valid.jsonl")) return;
  load_data();
  fs::create_directories(dir);
  Gpt sft = load_policy(path("sft/model.pt"));
  auto make = [&](const std::vector<encoded_example>& split, std::int64_t count, const std::string& name,
                  std::uint64_t stream) {
    const auto order = permutation(split.size(), mix(cfg_.seed, p_pairs, stream));
    const auto k = std::min<std::size_t>(split.size(), static_cast<std::size_t>(count));
    std::vector<std::vector<std::int64_t>> prompts;
    for (std::size_t i = 0; i < k; ++i) prompts.push_back(split[order[i]].prompt);
    auto gen = make_generator(mix(cfg_.seed, p_pairs, stream + 100));
    progress bar("pairs/" + name, static_cast<std::int64_t>(k), "prompts");
    const auto responses = sample_all(sft, prompts, decoding(2, cfg_.max_response_tokens, 1.0), gen, &bar);
    bar.finish();
    std::mt19937_64 rng(mix(cfg_.seed, p_labels, stream));
    std::uniform_real_distribution<double> u(0.0, 1.0);
    std::string out;
    std::size_t agree = 0;
    const auto texts = tok_->decode(responses);
    for (std::size_t i = 0; i < k; ++i) {
      const auto& e = split[order[i]];
      tokens a = responses[2 * i], b = responses[2 * i + 1];
      std::string ta = texts[2 * i], tb = texts[2 * i + 1];
      if (u(rng) < cfg_.pairs.gold_fraction) {
        b = e.gold;
        tb = e.gold_text;
      }
      const double sa = judge_->score(e.post, ta), sb = judge_->score(e.post, tb);
      // The labeller prefers a with probability sigmoid((s_a - s_b) / temperature) (eq. 16's model).
      const double p_a = 1.0 / (1.0 + std::exp(-(sa - sb) / cfg_.pairs.label_temperature));
      const bool a_wins = u(rng) < p_a;
      agree += (a_wins == (sa >= sb));
      out += json{{"example", e.id}, {"index", order[i]}, {"chosen", a_wins ? a : b}, {"rejected", a_wins ? b : a},
                  {"judge_chosen", a_wins ? sa : sb}, {"judge_rejected", a_wins ? sb : sa}}.dump() + "\n";
    }
    atomic_write_text(dir / (name + ".jsonl"), out);
    log_->info("pairs/{}: {} pairs, labels agree with the noiseless judge on {:.1f}%", name, k,
               100.0 * double(agree) / double(std::max<std::size_t>(k, 1)));
  };
  make(train_, cfg_.pairs.train_prompts, "train", 0);
  make(valid_, cfg_.pairs.valid_prompts, "valid", 1);
}

// ---------------------------------------------------------------------------------------------
// Reward model: Bradley–Terry loss -log sigmoid(r(chosen) - r(rejected)), initialised from SFT.

namespace {
struct pair_record {
  std::size_t index;
  tokens chosen, rejected;
  double judge_chosen, judge_rejected;
};
std::vector<pair_record> read_pairs(const fs::path& file) {
  std::vector<pair_record> out;
  std::ifstream in(file);
  std::string line;
  while (std::getline(in, line)) {
    const auto j = json::parse(line);
    out.push_back({j.at("index").get<std::size_t>(), j.at("chosen").get<tokens>(), j.at("rejected").get<tokens>(),
                   j.at("judge_chosen").get<double>(), j.at("judge_rejected").get<double>()});
  }
  return out;
}
}  // namespace

void pipeline::train_reward_model() {
  const auto dir = path("rm");
  if (fs::exists(dir / "model.pt")) return;
  load_data();
  fs::create_directories(dir);
  const auto train_pairs = read_pairs(path("pairs/train.jsonl")), valid_pairs = read_pairs(path("pairs/valid.jsonl"));
  RewardModel rm(cfg_.model);
  {
    Gpt sft = load_policy(path("sft/model.pt"));
    rm->load_backbone(sft);
  }
  ::torch::optim::AdamW opt(rm->parameters(), ::torch::optim::AdamWOptions(cfg_.rm.lr).weight_decay(cfg_.rm.weight_decay));
  const auto batch = static_cast<std::size_t>(cfg_.rm.batch);
  const auto per_epoch = static_cast<std::int64_t>((train_pairs.size() + batch - 1) / batch);
  const auto total = per_epoch * cfg_.rm.epochs;
  const auto state = dir / "state.pt";
  std::int64_t step = resume_from(state, *rm, opt);
  if (step > 0) log_->info("rm: resuming at step {}", step);
  rm->train();
  progress bar("reward model", total, "steps", step);
  double smoothed = NAN, smoothed_acc = NAN;
  for (; step < total; ++step) {
    const auto epoch = step / per_epoch, within = step % per_epoch;
    const auto order = permutation(train_pairs.size(), mix(cfg_.seed, p_rm, static_cast<std::uint64_t>(epoch)));
    std::vector<const tokens*> prompts, responses;
    std::size_t rows = 0;
    for (std::size_t j = static_cast<std::size_t>(within) * batch; j < std::min(train_pairs.size(), (within + 1) * batch); ++j, ++rows) {
      const auto& p = train_pairs[order[j]];
      prompts.push_back(&train_[p.index].prompt);
      responses.push_back(&p.chosen);
    }
    for (std::size_t j = static_cast<std::size_t>(within) * batch; j < std::min(train_pairs.size(), (within + 1) * batch); ++j) {
      const auto& p = train_pairs[order[j]];
      prompts.push_back(&train_[p.index].prompt);
      responses.push_back(&p.rejected);
    }
    const auto s = make_sequences(prompts, responses);
    const auto r = rm->forward(s.ids, s.mask);
    const auto margin = r.narrow(0, 0, long(rows)) - r.narrow(0, long(rows), long(rows));
    const auto loss = -::torch::log_sigmoid(margin).mean();
    optimizer_step(opt, loss, rm->parameters(), schedule(cfg_.rm.lr, step, total), 1.0);
    const double l = loss.item<double>(), acc = (margin > 0).to(::torch::kFloat64).mean().item<double>();
    smoothed = std::isnan(smoothed) ? l : 0.95 * smoothed + 0.05 * l;
    smoothed_acc = std::isnan(smoothed_acc) ? acc : 0.95 * smoothed_acc + 0.05 * acc;
    char status[80];
    std::snprintf(status, sizeof status, "loss %.3f  accuracy %.1f%%", smoothed, 100 * smoothed_acc);
    bar.advance(1, status);
    if ((step + 1) % cfg_.rm.checkpoint_every == 0 && step + 1 < total) save_state(state, *rm, opt, step + 1);
  }
  bar.finish();
  // Held-out accuracy: against the (noisy) labels, and against the noiseless judge.
  std::vector<const tokens*> prompts, chosen, rejected;
  for (const auto& p : valid_pairs) {
    prompts.push_back(&valid_[p.index].prompt);
    chosen.push_back(&p.chosen);
    rejected.push_back(&p.rejected);
  }
  const auto rc = rewards(rm, prompts, chosen), rr = rewards(rm, prompts, rejected);
  std::size_t label_ok = 0, judge_ok = 0, judge_pairs = 0;
  for (std::size_t i = 0; i < valid_pairs.size(); ++i) {
    const bool rm_prefers_chosen = rc[long(i)].item<double>() > rr[long(i)].item<double>();
    label_ok += rm_prefers_chosen;
    const auto& p = valid_pairs[i];
    if (p.judge_chosen != p.judge_rejected) {
      ++judge_pairs;
      judge_ok += rm_prefers_chosen == (p.judge_chosen > p.judge_rejected);
    }
  }
  const double label_acc = double(label_ok) / double(std::max<std::size_t>(valid_pairs.size(), 1));
  const double judge_acc = double(judge_ok) / double(std::max<std::size_t>(judge_pairs, 1));
  log_->info("rm: held-out pair accuracy {:.1f}% against the labels, {:.1f}% against the noiseless judge ({} pairs)",
             100 * label_acc, 100 * judge_acc, valid_pairs.size());
  checkpoint_writer w;
  w.add("model", *rm);
  w.save(dir / "model.pt");
  atomic_write_text(dir / "metrics.json", json{{"valid_pairs", valid_pairs.size()}, {"accuracy_vs_labels", label_acc},
                                                {"accuracy_vs_judge", judge_acc}, {"seconds", bar.elapsed_seconds()}}.dump(2));
  fs::remove(state);
}

// ---------------------------------------------------------------------------------------------
// Algorithm 1 (brain-math.md §8) for BRAIn, and the same loop for DPO-sft.

void pipeline::align(const std::string& method) {
  const bool is_brain = method == "brain";
  if (!is_brain && method != "dpo_sft") throw std::invalid_argument("align: method '" + method + "' is not brain or dpo_sft");
  const auto dir = path(method);
  if (fs::exists(dir / "history.json")) return;
  load_data();
  fs::create_directories(dir);
  const auto& a = cfg_.align;
  if (a.samples < 2 || (!is_brain && a.samples % 2 != 0))
    throw std::invalid_argument("align.samples = " + std::to_string(a.samples) + " must be >= 2 (and even for dpo_sft)");
  if (a.prompts % a.groups_per_step != 0)
    throw std::invalid_argument("align.groups_per_step = " + std::to_string(a.groups_per_step) +
                                " must divide align.prompts = " + std::to_string(a.prompts));

  Gpt prior = load_policy(path("sft/model.pt"));
  Gpt policy = load_policy(path("sft/model.pt"));
  Gpt proposal = load_policy(path("sft/model.pt"));  // q: the policy frozen at the last refresh
  for (auto& p : prior->parameters()) p.set_requires_grad(false);
  for (auto& p : proposal->parameters()) p.set_requires_grad(false);
  prior->eval();
  proposal->eval();
  RewardModel rm = load_reward_model();
  ::torch::optim::AdamW opt(policy->parameters(), ::torch::optim::AdamWOptions(a.lr).weight_decay(0.0));

  std::int64_t refresh = 0, step = 0;
  std::vector<validation_point> history;
  double best = -1;
  const auto state = dir / "state.pt";
  if (fs::exists(state)) {
    checkpoint_reader r(state);
    r.load("model", *policy);
    r.load("optimizer", opt);
    refresh = r.integer("refresh");
    step = r.integer("step");
    history = history_from(json::parse(tensor_bytes(r.tensor("history"))));
    best = r.tensor("best").item<double>();
    if (is_brain) copy_weights(*proposal, *policy);
    log_->info("{}: resuming at refresh {}", method, refresh);
  }

  // Validation prompts and their gold summaries' rewards, fixed for the whole run.
  const auto nvalid = std::min<std::size_t>(valid_.size(), static_cast<std::size_t>(cfg_.eval.valid_prompts));
  std::vector<const tokens*> vprompts, vgold;
  for (std::size_t i = 0; i < nvalid; ++i) {
    vprompts.push_back(&valid_[i].prompt);
    vgold.push_back(&valid_[i].gold);
  }
  const auto vgold_reward = rewards(rm, vprompts, vgold);
  std::vector<double> vgold_judge;
  for (std::size_t i = 0; i < nvalid; ++i) vgold_judge.push_back(judge_->score(valid_[i].post, valid_[i].gold_text));
  // Validation of the policy as it is after `after_refreshes` refreshes (0: the SFT model).
  auto validate = [&](std::int64_t after_refreshes) {
    policy->eval();
    std::vector<tokens> prompts;
    for (auto* p : vprompts) prompts.push_back(*p);
    auto gen = make_generator(mix(cfg_.seed, p_valid));
    const auto s = sample(policy, prompts, decoding(1, cfg_.max_response_tokens, cfg_.eval.temperature), gen);
    std::vector<const tokens*> resp;
    for (const auto& r : s.responses) resp.push_back(&r);
    const auto r = rewards(rm, vprompts, resp);
    validation_point v{after_refreshes, step, 0, 0, r.mean().item<double>(), 0};
    const auto texts = tok_->decode(s.responses);
    for (std::size_t i = 0; i < nvalid; ++i) {
      const auto& text = texts[i];
      const double ri = r[long(i)].item<double>(), gi = vgold_reward[long(i)].item<double>();
      v.rm_win += ri > gi ? 1.0 : ri == gi ? 0.5 : 0.0;
      const double ji = judge_->score(valid_[i].post, text);
      v.judge_win += ji > vgold_judge[i] ? 1.0 : ji == vgold_judge[i] ? 0.5 : 0.0;
      v.mean_length += double(word_count(text));
    }
    v.rm_win /= double(nvalid);
    v.judge_win /= double(nvalid);
    v.mean_length /= double(nvalid);
    policy->train();
    return v;
  };
  if (history.empty()) {
    history.push_back(validate(0));
    log_->info("{}: refresh 0 (SFT): validation win-rate vs gold {:.1f}% (RM), {:.1f}% (judge)", method,
               100 * history.back().rm_win, 100 * history.back().judge_win);
  }

  const auto m = static_cast<std::size_t>(a.prompts), n = static_cast<std::size_t>(a.samples);
  const auto G = static_cast<std::size_t>(a.groups_per_step);
  const auto K = a.epochs * a.prompts / a.groups_per_step;
  policy->train();
  progress bar(method, a.refreshes, "refreshes", refresh);
  for (; refresh < a.refreshes; ++refresh) {
    // Draw m prompts and n samples each from the proposal q (the SFT prior for DPO-sft). The same
    // prompts for both methods: a paired comparison.
    const auto order = permutation(train_.size(), mix(cfg_.seed, p_prompts, static_cast<std::uint64_t>(refresh)));
    std::vector<std::vector<std::int64_t>> prompts;
    for (std::size_t i = 0; i < m; ++i) prompts.push_back(train_[order[i]].prompt);
    const auto so = decoding(a.samples, cfg_.max_response_tokens, 1.0);
    auto gen = make_generator(mix(cfg_.seed, p_sample, static_cast<std::uint64_t>(refresh)));
    Gpt& q = is_brain ? proposal : prior;
    auto drawn = sample(q, prompts, so, gen);
    // Record r(x, y), log p(y|x) and log q(y|x) for the buffer (Algorithm 1).
    std::vector<const tokens*> row_prompts, row_responses;
    for (std::size_t i = 0; i < m * n; ++i) {
      row_prompts.push_back(&train_[order[i / n]].prompt);
      row_responses.push_back(&drawn.responses[i]);
    }
    const auto reward = rewards(rm, row_prompts, row_responses).to(::torch::kFloat32).view({long(m), long(n)});
    const auto log_q = drawn.log_proposal.to(::torch::kFloat32).view({long(m), long(n)});
    ::torch::Tensor log_p;
    if (!is_brain || refresh == 0) {
      log_p = drawn.log_model.to(::torch::kFloat32).view({long(m), long(n)});  // q is the prior itself
    } else {
      ::torch::NoGradGuard no_grad;
      std::vector<::torch::Tensor> parts;
      for (std::size_t i = 0; i < m * n; i += 256) {
        const auto end = std::min(m * n, i + 256);
        const auto s = make_sequences({row_prompts.begin() + long(i), row_prompts.begin() + long(end)},
                                      {row_responses.begin() + long(i), row_responses.begin() + long(end)});
        parts.push_back(response_log_probs(prior, s));
      }
      log_p = ::torch::cat(parts).to(::torch::kFloat32).view({long(m), long(n)});
    }

    double loss_sum = 0, ess_sum = 0;
    for (std::int64_t k = 0; k < K; ++k) {
      const auto epoch = k * a.groups_per_step / a.prompts;
      const auto within = static_cast<std::size_t>((k * a.groups_per_step) % a.prompts);
      const auto groups = permutation(m, mix(mix(cfg_.seed, p_minibatch, static_cast<std::uint64_t>(refresh)),
                                             static_cast<std::uint64_t>(epoch)));
      std::vector<long> chosen_groups(groups.begin() + long(within), groups.begin() + long(within + G));
      std::vector<const tokens*> bp, br;
      for (auto g : chosen_groups)
        for (std::size_t j = 0; j < n; ++j) {
          bp.push_back(row_prompts[std::size_t(g) * n + j]);
          br.push_back(row_responses[std::size_t(g) * n + j]);
        }
      const auto index = ::torch::tensor(chosen_groups, ::torch::kInt64);
      const auto lp = response_log_probs(policy, make_sequences(bp, br)).view({long(G), long(n)});
      const auto lq = log_q.index_select(0, index), l0 = log_p.index_select(0, index),
                 r = reward.index_select(0, index);
      ::torch::Tensor loss;
      if (is_brain) {
        // eqs. 6, 11, 21: target and baseline weights per group; eq. 12's gradient by autograd.
        const auto out = brain::brain_loss(brain::samples<at::Tensor>{lp, lq, l0, r}, brain::bradley_terry{a.beta});
        loss = out.loss;
        ess_sum += (1.0 / out.target_weights.pow(2).sum(1)).mean().item<double>();
      } else {
        // DPO-sft: samples of the prior in consecutive pairs, chosen = higher reward.
        const auto lp2 = lp.view({-1, 2}), l02 = l0.view({-1, 2}), r2 = r.view({-1, 2});
        const auto first_wins = (r2.select(1, 0) >= r2.select(1, 1));
        auto pick = [&](const ::torch::Tensor& t, bool chosen) {
          return ::torch::where(first_wins == chosen, t.select(1, 0), t.select(1, 1));
        };
        const auto out = brain::dpo_loss(pick(lp2, true).unsqueeze(1), pick(lp2, false).unsqueeze(1),
                                         pick(l02, true).unsqueeze(1), pick(l02, false).unsqueeze(1),
                                         brain::dpo_options{.beta = a.beta});
        loss = out.loss;
      }
      optimizer_step(opt, loss, policy->parameters(), a.lr, a.clip);
      loss_sum += loss.item<double>();
      ++step;
    }
    if (is_brain) copy_weights(*proposal, *policy);  // q ← frozen copy of q_θ (the proposal update)
    char status[96];
    std::snprintf(status, sizeof status, "loss %.4f  reward %.2f", loss_sum / double(K), reward.mean().item<double>());
    if (is_brain)
      std::snprintf(status + std::strlen(status), sizeof status - std::strlen(status), "  ESS %.1f", ess_sum / double(K));
    if ((refresh + 1) % a.validate_every == 0 || refresh + 1 == a.refreshes) {
      history.push_back(validate(refresh + 1));
      log_->info("{}: refresh {}: {}; validation win-rate vs gold {:.1f}% (RM), {:.1f}% (judge)", method, refresh + 1,
                 status, 100 * history.back().rm_win, 100 * history.back().judge_win);
      if (history.back().rm_win > best) {
        best = history.back().rm_win;
        checkpoint_writer w;
        w.add("model", *policy);
        w.save(dir / "best.pt");
      }
    }
    checkpoint_writer w;
    w.add("model", *policy);
    w.add("optimizer", opt);
    w.add("refresh", refresh + 1);
    w.add("step", step);
    w.add("history", bytes_tensor(history_json(history).dump()));
    w.add("best", ::torch::tensor(best, ::torch::kFloat64));
    w.save(state);
    bar.advance(1, status);
  }
  bar.finish();
  if (!fs::exists(dir / "best.pt")) {
    checkpoint_writer w;
    w.add("model", *policy);
    w.save(dir / "best.pt");
  }
  atomic_write_text(dir / "history.json", history_json(history).dump(2));
}

std::vector<validation_point> pipeline::read_history(const std::string& method) const {
  const auto file = path(method + "/history.json");
  if (!fs::exists(file)) return {};
  return history_from(json::parse(read_text(file)));
}

// ---------------------------------------------------------------------------------------------
// Evaluation (brain-math.md §9): win-rate against the gold summary on the test split, under the
// training RM and under the judge, with 95% bootstrap intervals.

win_rate bootstrap_win_rate(const std::vector<double>& ours, const std::vector<double>& theirs, std::int64_t resamples,
                            std::uint64_t seed) {
  if (ours.size() != theirs.size() || ours.empty())
    throw std::invalid_argument("bootstrap_win_rate: " + std::to_string(ours.size()) + " scores against " +
                                std::to_string(theirs.size()) + " (need equal, non-zero counts)");
  std::vector<double> outcome(ours.size());
  for (std::size_t i = 0; i < ours.size(); ++i) outcome[i] = ours[i] > theirs[i] ? 1.0 : ours[i] == theirs[i] ? 0.5 : 0.0;
  win_rate w;
  w.rate = std::accumulate(outcome.begin(), outcome.end(), 0.0) / double(outcome.size());
  std::mt19937_64 rng(seed);
  std::vector<double> means(static_cast<std::size_t>(std::max<std::int64_t>(resamples, 1)));
  for (auto& mean : means) {
    double s = 0;
    for (std::size_t i = 0; i < outcome.size(); ++i) s += outcome[rng() % outcome.size()];
    mean = s / double(outcome.size());
  }
  std::sort(means.begin(), means.end());
  const auto at = [&](double q) { return means[static_cast<std::size_t>(std::floor(q * double(means.size() - 1)))]; };
  w.low = at(0.025);
  w.high = at(0.975);
  return w;
}

void pipeline::evaluate() {
  load_data();
  fs::create_directories(path("eval"));
  RewardModel rm = load_reward_model();
  const auto count = cfg_.eval.test_prompts > 0 ? std::min<std::size_t>(test_.size(), std::size_t(cfg_.eval.test_prompts))
                                                : test_.size();
  std::vector<const tokens*> prompts, gold;
  for (std::size_t i = 0; i < count; ++i) {
    prompts.push_back(&test_[i].prompt);
    gold.push_back(&test_[i].gold);
  }
  const auto gold_reward = rewards(rm, prompts, gold);
  json results = json::object();
  results["test_prompts"] = count;
  std::map<std::string, std::vector<double>> judge_of, rm_of;  // per model, per test prompt
  for (const auto& [name, file] : std::vector<std::pair<std::string, std::string>>{
           {"sft", "sft/model.pt"}, {"dpo_sft", "dpo_sft/best.pt"}, {"brain", "brain/best.pt"}}) {
    const auto cache = path("eval/" + name + ".jsonl");
    std::vector<double> rm_ours, rm_gold, judge_ours, judge_gold;
    double words = 0;
    if (!fs::exists(cache)) {
      Gpt policy = load_policy(path(file));
      policy->eval();
      std::vector<tokens> ps;
      for (auto* p : prompts) ps.push_back(*p);
      auto gen = make_generator(mix(cfg_.seed, p_test));
      progress bar("eval/" + name, static_cast<std::int64_t>(count), "prompts");
      const auto responses =
          sample_all(policy, ps, decoding(1, cfg_.max_response_tokens, cfg_.eval.temperature), gen, &bar);
      std::vector<const tokens*> resp;
      for (const auto& r : responses) resp.push_back(&r);
      const auto reward = rewards(rm, prompts, resp);
      std::string out;
      const auto texts = tok_->decode(responses);
      for (std::size_t i = 0; i < count; ++i) {
        const auto& text = texts[i];
        out += json{{"id", test_[i].id}, {"summary", text}, {"gold", test_[i].gold_text},
                    {"rm", reward[long(i)].item<double>()}, {"rm_gold", gold_reward[long(i)].item<double>()},
                    {"judge", judge_->score(test_[i].post, text)},
                    {"judge_gold", judge_->score(test_[i].post, test_[i].gold_text)}}.dump() + "\n";
      }
      atomic_write_text(cache, out);
      bar.finish();
    }
    std::ifstream in(cache);
    std::string line;
    while (std::getline(in, line)) {
      const auto j = json::parse(line);
      rm_ours.push_back(j.at("rm"));
      rm_gold.push_back(j.at("rm_gold"));
      judge_ours.push_back(j.at("judge"));
      judge_gold.push_back(j.at("judge_gold"));
      words += double(word_count(j.at("summary").get<std::string>()));
    }
    judge_of[name] = judge_ours;
    rm_of[name] = rm_ours;
    const auto rmw = bootstrap_win_rate(rm_ours, rm_gold, cfg_.eval.bootstrap, mix(cfg_.seed, p_boot, 1));
    const auto jw = bootstrap_win_rate(judge_ours, judge_gold, cfg_.eval.bootstrap, mix(cfg_.seed, p_boot, 2));
    results["models"][name] = {
        {"rm_win", rmw.rate}, {"rm_win_low", rmw.low}, {"rm_win_high", rmw.high},
        {"judge_win", jw.rate}, {"judge_win_low", jw.low}, {"judge_win_high", jw.high},
        {"mean_reward", std::accumulate(rm_ours.begin(), rm_ours.end(), 0.0) / double(rm_ours.size())},
        {"mean_judge", std::accumulate(judge_ours.begin(), judge_ours.end(), 0.0) / double(judge_ours.size())},
        {"mean_words", words / double(rm_ours.size())}};
  }
  // Head to head (Table 2's comparison): which model's summary of the same post is better.
  for (const auto& [a, b] : std::vector<std::pair<std::string, std::string>>{
           {"brain", "sft"}, {"brain", "dpo_sft"}, {"dpo_sft", "sft"}}) {
    const auto jw = bootstrap_win_rate(judge_of[a], judge_of[b], cfg_.eval.bootstrap, mix(cfg_.seed, p_boot, 3));
    const auto rw = bootstrap_win_rate(rm_of[a], rm_of[b], cfg_.eval.bootstrap, mix(cfg_.seed, p_boot, 4));
    std::size_t ties = 0;
    for (std::size_t i = 0; i < judge_of[a].size(); ++i) ties += judge_of[a][i] == judge_of[b][i];
    results["head_to_head"].push_back({{"model", a}, {"against", b}, {"judge_win", jw.rate}, {"judge_win_low", jw.low},
                                       {"judge_win_high", jw.high}, {"judge_ties", double(ties) / double(count)},
                                       {"rm_win", rw.rate}, {"rm_win_low", rw.low}, {"rm_win_high", rw.high}});
  }
  results["gold_mean_judge"] = [&] {
    double s = 0;
    for (std::size_t i = 0; i < count; ++i) s += judge_->score(test_[i].post, test_[i].gold_text);
    return s / double(count);
  }();
  for (const auto* m : {"dpo_sft", "brain"}) results["history"][m] = history_json(read_history(m));
  atomic_write_text(path("eval/results.json"), results.dump(2));
  atomic_write_text(path("eval/results.md"), results_markdown());

  // Win-rate against training steps (validation), one PNG via gnuplot when it is installed.
  std::string data;
  for (const auto* m : {"dpo_sft", "brain"}) {
    data += std::string("# ") + m + "\n";
    for (const auto& p : read_history(m))
      data += std::to_string(p.step) + " " + std::to_string(100 * p.rm_win) + " " + std::to_string(100 * p.judge_win) + "\n";
    data += "\n\n";
  }
  atomic_write_text(path("eval/history.dat"), data);
  const auto plot = path("eval/winrate.png");
  const std::string script =
      "set terminal pngcairo size 900,520 noenhanced; set output '" + plot.string() + "';"
      "set title 'Validation win-rate against the gold summary'; set xlabel 'optimiser steps';"
      "set ylabel 'win-rate vs gold (%)'; set key outside right; set grid;"
      "plot '" + path("eval/history.dat").string() + "' index 0 using 1:2 with linespoints title 'DPO-sft, train RM',"
      " '' index 0 using 1:3 with linespoints title 'DPO-sft, judge',"
      " '' index 1 using 1:2 with linespoints title 'BRAIn, train RM',"
      " '' index 1 using 1:3 with linespoints title 'BRAIn, judge'";
  atomic_write_text(path("eval/winrate.gp"), script + "\n");
  if (std::system("command -v gnuplot >/dev/null 2>&1") == 0) {
    if (std::system(("gnuplot " + path("eval/winrate.gp").string()).c_str()) != 0) log_->warn("gnuplot failed; see eval/winrate.gp");
  } else {
    log_->warn("gnuplot not found: eval/winrate.png not drawn (Debian: gnuplot-nox)");
  }
}

std::string pipeline::results_markdown() const {
  const auto file = path("eval/results.json");
  if (!fs::exists(file)) return "(no results yet)";
  const auto r = json::parse(read_text(file));
  std::string md = "Win-rate against the gold summary on " + std::to_string(r.at("test_prompts").get<long>()) +
                   " test prompts (%, 95% bootstrap interval; ties count half)\n\n"
                   "| model | train RM | judge | mean judge score | mean words |\n|---|---|---|---|---|\n";
  for (const auto& [name, label] : std::vector<std::pair<std::string, std::string>>{
           {"sft", "SFT"}, {"dpo_sft", "DPO-sft"}, {"brain", "BRAIn"}}) {
    const auto& m = r.at("models").at(name);
    char row[256];
    std::snprintf(row, sizeof row, "| %s | %.1f [%.1f, %.1f] | %.1f [%.1f, %.1f] | %.3f | %.1f |\n", label.c_str(),
                  100 * m.at("rm_win").get<double>(), 100 * m.at("rm_win_low").get<double>(),
                  100 * m.at("rm_win_high").get<double>(), 100 * m.at("judge_win").get<double>(),
                  100 * m.at("judge_win_low").get<double>(), 100 * m.at("judge_win_high").get<double>(),
                  m.at("mean_judge").get<double>(), m.at("mean_words").get<double>());
    md += row;
  }
  const std::map<std::string, std::string> label_of{{"sft", "SFT"}, {"dpo_sft", "DPO-sft"}, {"brain", "BRAIn"}};
  md += "\nHead to head on the same test prompts (%, ties count half; judge ties shown separately)\n\n"
        "| comparison | judge | judge ties | train RM |\n|---|---|---|---|\n";
  for (const auto& h : r.at("head_to_head")) {
    char row[256];
    std::snprintf(row, sizeof row, "| %s vs %s | %.1f [%.1f, %.1f] | %.1f | %.1f [%.1f, %.1f] |\n",
                  label_of.at(h.at("model").get<std::string>()).c_str(),
                  label_of.at(h.at("against").get<std::string>()).c_str(),
                  100 * h.at("judge_win").get<double>(), 100 * h.at("judge_win_low").get<double>(),
                  100 * h.at("judge_win_high").get<double>(), 100 * h.at("judge_ties").get<double>(),
                  100 * h.at("rm_win").get<double>(), 100 * h.at("rm_win_low").get<double>(),
                  100 * h.at("rm_win_high").get<double>());
    md += row;
  }
  char gold[96];
  std::snprintf(gold, sizeof gold, "\nGold summaries' mean judge score: %.3f\n", r.at("gold_mean_judge").get<double>());
  return md + gold;
}

}  // namespace tldr
