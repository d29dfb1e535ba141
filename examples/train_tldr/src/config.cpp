#include "config.hpp"

#include "fail.hpp"

namespace tldr {
using nlohmann::json;

std::map<std::string, arm_settings> align_config::default_arm_settings() {
  std::map<std::string, arm_settings> out;
  for (const auto& a : all_arms())
    if (a.swept()) out[a.id] = a.defaults;
  return out;
}

arm_settings align_config::settings_of(const std::string& arm_id) const {
  const std::string& from = find_arm(arm_id).settings_from;
  const auto it = settings.find(from);
  if (it == settings.end()) fail("no settings for arm '", from, "' (needed by '", arm_id, "')");
  return it->second;
}

void config::validate() const {
  if (device != "cpu" && device != "cuda" && !device.starts_with("cuda:"))
    fail("device = '", device, "' must be cpu, cuda or cuda:N");
  if (!model_dir.empty() && !tokenizer_model.empty())
    fail("model-dir and tokenizer-model both name a tokenizer: a model folder brings its tokenizer.json");
  if (!apt_lists.empty() && !data_snapshot.empty())
    fail(
        "apt-lists and data-snapshot both name the descriptions to read: give one (neither: the repository's "
        "snapshot)");
  if (model.context < max_prompt_tokens + max_response_tokens)
    fail("model-context = ", model.context,
         " must be >= max-prompt-tokens + max-response-tokens = ", max_prompt_tokens + max_response_tokens);
  if (threads < 1) fail("threads = ", threads, " must be >= 1");
  if (jobs < 0) fail("jobs = ", jobs, " must be >= 0 (0: as many as threads)");
  if (pairs.responses < 2) fail("pairs-responses = ", pairs.responses, " must be >= 2");
  if (pairs.chunk_prompts < 1) fail("pairs-chunk-prompts = ", pairs.chunk_prompts, " must be >= 1");
  const auto& a = align;
  if (a.refreshes < 1) fail("align-refreshes = ", a.refreshes, " must be >= 1");
  if (a.samples < 2 || a.samples % 2 != 0) fail("align-samples = ", a.samples, " must be even and >= 2");
  if (a.groups_per_step < 1 || a.prompts % a.groups_per_step != 0)
    fail("align-groups-per-step = ", a.groups_per_step, " must divide align-prompts = ", a.prompts);
  if (a.epochs < 1) fail("align-epochs = ", a.epochs, " must be >= 1");
  if (a.validate_every < 1) fail("align-validate-every = ", a.validate_every, " must be >= 1");
  for (const auto& id : a.arms) (void)find_arm(id);
  for (const auto& [id, s] : a.settings) {
    if (!(s.beta > 0)) fail(id, "-beta = ", s.beta, " must be > 0");
    if (!(s.lr > 0)) fail(id, "-lr = ", s.lr, " must be > 0");
    if (!(s.temperature >= 0)) fail(id, "-temperature = ", s.temperature, " must be >= 0 (0: greedy)");
  }
  if (!(a.sft_temperature >= 0)) fail("sft-temperature = ", a.sft_temperature, " must be >= 0 (0: greedy)");
  for (auto n : study.samples)
    if (n < 2 || n % 2 != 0) fail("study-samples holds ", n, ": every n must be even and >= 2");
  const auto& st = study;
  if (st.seeds < 1 || st.other_seeds < 1)
    fail("study-seeds = ", st.seeds, " and study-other-seeds = ", st.other_seeds, " must be >= 1");
  if (st.sweep_seed >= st.first_seed &&
      st.sweep_seed < st.first_seed + std::uint64_t(std::max(st.seeds, st.other_seeds)))
    fail("study-sweep-seed = ", st.sweep_seed, " is one of the study's seeds (", st.first_seed,
         "...): the sweep's "
         "runs must not be reported");
  if (st.samples_seeds < 1 || st.samples_seeds > st.seeds)
    fail("study-samples-seeds = ", st.samples_seeds, " must be in [1, study-seeds = ", st.seeds, "]");
  if (st.curve_seeds < 0 || st.curve_seeds > st.seeds)
    fail("study-curve-seeds = ", st.curve_seeds, " must be in [0, study-seeds = ", st.seeds, "]");
  if (st.betas.empty() || st.lrs.empty() || st.temperatures.empty())
    fail("study-betas, study-lrs and study-temperatures need at least one value each");
  if (!(st.beta_min > 0 && st.beta_min <= st.beta_max) || !(st.lr_min > 0 && st.lr_min <= st.lr_max))
    fail("study-beta-min/max and study-lr-min/max must be positive and ordered");
  if (st.trials < std::int64_t(st.betas.size() + st.lrs.size() - 1))
    fail("study-trials = ", st.trials, " cannot hold the starting grids (", st.betas.size() + st.lrs.size() - 1,
         " runs)");
  if (!(st.margin >= 0)) fail("study-margin = ", st.margin, " must be >= 0");
  if (st.refreshes < 1 || st.patience < 0) fail("study-refreshes must be >= 1 and study-patience >= 0");
  for (const auto* list : {&st.primaries, &st.secondaries})
    for (const auto& c : *list)
      if (c.find(':') == std::string::npos) fail("study comparison '", c, "' must read ours:theirs");
  if (align.patience < 0) fail("align-patience = ", align.patience, " must be >= 0");
  const auto& j = judge;
  if (j.kind == judge_kind::llm && (j.url.empty() || j.model.empty()))
    fail("judge = llm needs judge-url (an OpenAI-compatible server, e.g. http://127.0.0.1:8080) and judge-model");
  if (!(j.connect_timeout > 0) || !(j.timeout > 0))
    fail("judge-connect-timeout = ", j.connect_timeout, " and judge-timeout = ", j.timeout, " must be > 0 seconds");
  if (j.retries < 0) fail("judge-retries = ", j.retries, " must be >= 0");
  if (!(j.backoff >= 0)) fail("judge-backoff = ", j.backoff, " must be >= 0 seconds");
  if (j.max_tokens < 1) fail("judge-max-tokens = ", j.max_tokens, " must be >= 1");
  if (j.parallel < 1) fail("judge-parallel = ", j.parallel, " must be >= 1");
}

std::filesystem::path config::tokenizer_file() const {
  return workdir / (model_dir.empty() ? "tokenizer/spm.model" : "tokenizer/tokenizer.json");
}

json to_json(const config& c) {
  json arms = json::object();
  for (const auto& [id, s] : c.align.settings)
    arms[id] = {{"beta", s.beta}, {"lr", s.lr}, {"temperature", s.temperature}};
  return json{{"seed", c.seed},
              {"threads", c.threads},
              {"data",
               {{"min_words", c.data.min_words},
                {"max_words", c.data.max_words},
                {"valid_fraction", c.data.valid_fraction},
                {"test_fraction", c.data.test_fraction},
                {"max_examples", c.data.max_examples},
                {"train_jsonl", c.train_jsonl.string()},
                {"valid_jsonl", c.valid_jsonl.string()},
                {"test_jsonl", c.test_jsonl.string()},
                {"data_snapshot", c.data_snapshot.string()},
                {"apt_lists", c.apt_lists.string()}}},
              {"vocab", c.vocab},
              {"model_dir", c.model_dir.string()},
              {"device", c.device},
              {"max_prompt_tokens", c.max_prompt_tokens},
              {"max_response_tokens", c.max_response_tokens},
              {"model", c.model.to_json()},
              {"sft", {{"steps", c.sft.steps}, {"batch", c.sft.batch}, {"lr", c.sft.lr}}},
              {"pairs",
               {{"train_prompts", c.pairs.train_prompts},
                {"valid_prompts", c.pairs.valid_prompts},
                {"responses", c.pairs.responses},
                {"label_temperature", c.pairs.label_temperature},
                {"gold_fraction", c.pairs.gold_fraction}}},
              {"rm", {{"epochs", c.rm.epochs}, {"batch", c.rm.batch}, {"lr", c.rm.lr}}},
              {"align",
               {{"refreshes", c.align.refreshes},
                {"prompts", c.align.prompts},
                {"samples", c.align.samples},
                {"epochs", c.align.epochs},
                {"groups_per_step", c.align.groups_per_step},
                {"clip", c.align.clip},
                {"patience", c.align.patience},
                {"arms", c.align.arms},
                {"settings", arms},
                {"sft_temperature", c.align.sft_temperature}}},
              {"eval",
               {{"valid_prompts", c.eval.valid_prompts},
                {"test_prompts", c.eval.test_prompts},
                {"bootstrap", c.eval.bootstrap},
                {"valid_temperature", c.eval.valid_temperature}}},
              {"study",
               {{"seeds", c.study.seeds},
                {"other_seeds", c.study.other_seeds},
                {"first_seed", c.study.first_seed},
                {"sweep_seed", c.study.sweep_seed},
                {"betas", c.study.betas},
                {"beta_limits", {c.study.beta_min, c.study.beta_max}},
                {"lrs", c.study.lrs},
                {"lr_limits", {c.study.lr_min, c.study.lr_max}},
                {"trials", c.study.trials},
                {"temperatures", c.study.temperatures},
                {"primaries", c.study.primaries},
                {"secondaries", c.study.secondaries},
                {"margin", c.study.margin},
                {"samples", c.study.samples},
                {"samples_seeds", c.study.samples_seeds},
                {"curve_seeds", c.study.curve_seeds},
                {"curve_prompts", c.study.curve_prompts},
                {"refreshes", c.study.refreshes},
                {"patience", c.study.patience}}}};
}

}  // namespace tldr
