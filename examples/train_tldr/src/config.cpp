#include "config.hpp"

#include "fail.hpp"

namespace tldr {
using nlohmann::json;

std::map<std::string, arm_settings> align_config::default_arm_settings() {
  // {β, learning rate, decoding temperature}: the choice of `train_tldr study`'s sweep on the
  // validation split (sweep/choice.json, docs/train_tldr.md), made before any test number existed.
  return {{"sft", {0.0, 0.0, 0.5}},
          {"dpo", {0.1, 1e-4, 0.5}},
          {"dpo_sft", {0.05, 3e-4, 0.3}},
          {"rso", {0.2, 3e-4, 0.7}},
          {"brain", {0.2, 3e-4, 0.7}},
          {"rloo", {0.2, 1e-4, 0.5}},
          {"grpo", {0.05, 1e-4, 0.5}}};  // β: the weight of GRPO's k3 KL term (TRL's `beta`)
}

arm_settings align_config::settings_of(const std::string& arm_id) const {
  const std::string& from = arm_id == "sft" ? arm_id : find_arm(arm_id).settings_from;
  const auto it = settings.find(from);
  if (it == settings.end()) fail("no settings for arm '", from, "' (needed by '", arm_id, "')");
  return it->second;
}

void config::validate() const {
  if (device != "cpu" && device != "cuda" && !device.starts_with("cuda:"))
    fail("device = '", device, "' must be cpu, cuda or cuda:N");
  if (!model_dir.empty() && !tokenizer_model.empty())
    fail("model-dir and tokenizer-model both name a tokenizer: a model folder brings its tokenizer.json");
  if (model.context < max_prompt_tokens + max_response_tokens)
    fail("model-context = ", model.context, " must be >= max-prompt-tokens + max-response-tokens = ",
         max_prompt_tokens + max_response_tokens);
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
    if (id != "sft") {
      if (!(s.beta > 0)) fail(id, "-beta = ", s.beta, " must be > 0");
      if (!(s.lr > 0)) fail(id, "-lr = ", s.lr, " must be > 0");
    }
    if (!(s.temperature >= 0)) fail(id, "-temperature = ", s.temperature, " must be >= 0 (0: greedy)");
  }
  for (auto n : study.samples)
    if (n < 2 || n % 2 != 0) fail("study-samples holds ", n, ": every n must be even and >= 2");
  if (study.seeds < 1) fail("study-seeds = ", study.seeds, " must be >= 1");
  if (study.samples_seeds < 1 || study.samples_seeds > study.seeds)
    fail("study-samples-seeds = ", study.samples_seeds, " must be in [1, study-seeds = ", study.seeds, "]");
  if (study.betas.empty() || study.lrs.empty() || study.temperatures.empty())
    fail("study-betas, study-lrs and study-temperatures need at least one value each");
  const auto& j = judge;
  if (j.kind != "oracle" && j.kind != "llm") fail("judge = '", j.kind, "' must be oracle or llm");
  if (j.kind == "llm" && (j.url.empty() || j.model.empty()))
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
              {"data", {{"min_words", c.data.min_words}, {"max_words", c.data.max_words},
                        {"valid_fraction", c.data.valid_fraction}, {"test_fraction", c.data.test_fraction},
                        {"max_examples", c.data.max_examples}, {"train_jsonl", c.train_jsonl.string()},
                        {"valid_jsonl", c.valid_jsonl.string()}, {"test_jsonl", c.test_jsonl.string()}}},
              {"vocab", c.vocab},
              {"model_dir", c.model_dir.string()},
              {"device", c.device},
              {"max_prompt_tokens", c.max_prompt_tokens},
              {"max_response_tokens", c.max_response_tokens},
              {"model", c.model.to_json()},
              {"sft", {{"steps", c.sft.steps}, {"batch", c.sft.batch}, {"lr", c.sft.lr}}},
              {"pairs", {{"train_prompts", c.pairs.train_prompts}, {"valid_prompts", c.pairs.valid_prompts},
                         {"responses", c.pairs.responses},
                         {"label_temperature", c.pairs.label_temperature}, {"gold_fraction", c.pairs.gold_fraction}}},
              {"rm", {{"epochs", c.rm.epochs}, {"batch", c.rm.batch}, {"lr", c.rm.lr}}},
              {"align", {{"refreshes", c.align.refreshes}, {"prompts", c.align.prompts}, {"samples", c.align.samples},
                         {"epochs", c.align.epochs}, {"groups_per_step", c.align.groups_per_step},
                         {"clip", c.align.clip}, {"arms", c.align.arms}, {"settings", arms}}},
              {"eval", {{"valid_prompts", c.eval.valid_prompts}, {"test_prompts", c.eval.test_prompts},
                        {"bootstrap", c.eval.bootstrap}, {"valid_temperature", c.eval.valid_temperature}}},
              {"study", {{"seeds", c.study.seeds}, {"betas", c.study.betas}, {"lrs", c.study.lrs},
                         {"temperatures", c.study.temperatures}, {"samples", c.study.samples},
                         {"samples_seeds", c.study.samples_seeds}}}};
}

}  // namespace tldr
