// train_tldr: the paper's summarisation experiment (brain-math.md §9) end to end on this machine:
// data → tokenizer → SFT → preference pairs → reward model → DPO-sft and BRAIn → evaluation.
// Every stage is cached in --workdir; `train_tldr` runs what is missing and prints the table.
//
//   train_tldr                         # everything, defaults of the README's demo
//   train_tldr --config tldr.toml      # settings from a file (TOML/INI; CLI options override it)
//   train_tldr sft                     # one stage (and nothing after it)

#include "pipeline.hpp"
#include "progress.hpp"

#include <CLI/CLI.hpp>
#include <ATen/Parallel.h>

#include <dlfcn.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <exception>

namespace {

/// One LibTorch thread per core and a single-threaded BLAS below it: the two thread pools on two
/// cores would otherwise oversubscribe them (docs: machine.md measured 10k → 6k tokens/s).
void set_threads(int threads) {
  at::set_num_threads(threads);
  if (auto* set_blas = reinterpret_cast<void (*)(int)>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"))) set_blas(1);
}

/// `--blas-check`: is the BLAS under LibTorch, with the kernels this process got, fast and right?
/// Prints GFLOP/s of a float 1024³ product and the largest error of a float product against a
/// double-precision loop; fails (exit 2) when that error is too large. scripts/train-tldr runs it
/// in child processes to choose OpenBLAS's kernels before the real run (never in tests or CI).
int blas_check() {
  at::manual_seed(0);
  const auto a = at::randn({64, 1024}), b = at::randn({1024, 64});
  const auto c = at::mm(a, b);
  const auto ad = a.to(at::kDouble), bd = b.to(at::kDouble);
  auto pa = ad.accessor<double, 2>(), pb = bd.accessor<double, 2>();
  auto pc = c.accessor<float, 2>();
  double max_error = 0;
  for (int i = 0; i < 64; ++i)
    for (int j = 0; j < 64; ++j) {
      double ref = 0;
      for (int k = 0; k < 1024; ++k) ref += pa[i][k] * pb[k][j];
      max_error = std::max(max_error, std::abs(ref - double(pc[i][j])));
    }
  const auto x = at::randn({1024, 1024}), y = at::randn({1024, 1024});
  at::mm(x, y);  // warm-up
  const auto t0 = std::chrono::steady_clock::now();
  constexpr int reps = 5;
  for (int r = 0; r < reps; ++r) at::mm(x, y);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const double gflops = reps * 2.0 * 1024 * 1024 * 1024 / s / 1e9;
  // Sums of 1024 products of unit normals are ~32 in size; float rounding gives ~1e-5 of that.
  const bool ok = std::isfinite(max_error) && max_error < 1e-3;
  std::printf("gflops=%.1f max_error=%.2e %s\n", gflops, max_error, ok ? "ok" : "WRONG");
  return ok ? 0 : 2;
}

}  // namespace

int main(int argc, char** argv) {
  tldr::config c;
  CLI::App app{"BRAIn on TL;DR-style summarisation: SFT, reward model, DPO-sft and BRAIn, win-rates vs gold"};
  app.set_config("--config", "", "TOML or INI file: any option below as a key, e.g. sft-steps = 1200");
  app.add_option("--workdir", c.workdir, "where every stage caches its output")->capture_default_str();
  app.add_option("--seed", c.seed, "the run is deterministic given this seed and --threads")->capture_default_str();
  app.add_option("--threads", c.threads, "LibTorch threads")->capture_default_str()->check(CLI::Range(1, 256));
  app.add_option("--train-jsonl", c.train_jsonl, "real TL;DR data (CarperAI's format) instead of Debian's");
  app.add_option("--valid-jsonl", c.valid_jsonl);
  app.add_option("--test-jsonl", c.test_jsonl);
  app.add_option("--apt-lists", c.apt_lists, "where apt keeps Translation-en")->capture_default_str();
  app.add_option("--tokenizer-model", c.tokenizer_model, "an existing SentencePiece model instead of training one");
  app.add_option("--vocab", c.vocab)->capture_default_str();
  app.add_option("--max-prompt-tokens", c.max_prompt_tokens)->capture_default_str();
  app.add_option("--max-response-tokens", c.max_response_tokens)->capture_default_str();
  app.add_option("--data-min-words", c.data.min_words)->capture_default_str();
  app.add_option("--data-max-words", c.data.max_words)->capture_default_str();
  app.add_option("--data-valid-fraction", c.data.valid_fraction)->capture_default_str();
  app.add_option("--data-test-fraction", c.data.test_fraction)->capture_default_str();
  app.add_option("--data-max-examples", c.data.max_examples, "cap the training split (0: all)")->capture_default_str();
  app.add_option("--model-context", c.model.context)->capture_default_str();
  app.add_option("--model-d-model", c.model.d_model)->capture_default_str();
  app.add_option("--model-layers", c.model.layers)->capture_default_str();
  app.add_option("--model-heads", c.model.heads)->capture_default_str();
  app.add_option("--sft-steps", c.sft.steps)->capture_default_str();
  app.add_option("--sft-batch", c.sft.batch)->capture_default_str();
  app.add_option("--sft-lr", c.sft.lr)->capture_default_str();
  app.add_option("--sft-checkpoint-every", c.sft.checkpoint_every)->capture_default_str();
  app.add_option("--pairs-train-prompts", c.pairs.train_prompts)->capture_default_str();
  app.add_option("--pairs-valid-prompts", c.pairs.valid_prompts)->capture_default_str();
  app.add_option("--pairs-label-temperature", c.pairs.label_temperature)->capture_default_str();
  app.add_option("--pairs-gold-fraction", c.pairs.gold_fraction)->capture_default_str();
  app.add_option("--rm-epochs", c.rm.epochs)->capture_default_str();
  app.add_option("--rm-batch", c.rm.batch)->capture_default_str();
  app.add_option("--rm-lr", c.rm.lr)->capture_default_str();
  app.add_option("--rm-checkpoint-every", c.rm.checkpoint_every)->capture_default_str();
  app.add_option("--align-refreshes", c.align.refreshes, "T")->capture_default_str();
  app.add_option("--align-prompts", c.align.prompts, "m per refresh")->capture_default_str();
  app.add_option("--align-samples", c.align.samples, "n per prompt")->capture_default_str();
  app.add_option("--align-epochs", c.align.epochs, "passes over each refresh's groups")->capture_default_str();
  app.add_option("--align-groups-per-step", c.align.groups_per_step)->capture_default_str();
  app.add_option("--align-lr", c.align.lr)->capture_default_str();
  app.add_option("--align-clip", c.align.clip)->capture_default_str();
  app.add_option("--align-beta", c.align.beta, "KL coefficient of both methods: log g = r / beta (BRAIn), DPO's beta")->capture_default_str();
  app.add_option("--align-validate-every", c.align.validate_every)->capture_default_str();
  app.add_option("--eval-valid-prompts", c.eval.valid_prompts)->capture_default_str();
  app.add_option("--eval-test-prompts", c.eval.test_prompts, "0: the whole test split")->capture_default_str();
  app.add_option("--eval-bootstrap", c.eval.bootstrap)->capture_default_str();
  app.add_option("--eval-temperature", c.eval.temperature, "0: greedy")->capture_default_str();

  std::string stage = "all";
  app.add_option("stage", stage, "all, data, tokenizer, sft, pairs, rm, dpo_sft, brain, evaluate, report")
      ->check(CLI::IsMember({"all", "data", "tokenizer", "sft", "pairs", "rm", "dpo_sft", "brain", "evaluate", "report"}))
      ->capture_default_str();
  bool print_config = false, check_blas = false;
  app.add_flag("--blas-check", check_blas, "time and check the BLAS kernels under LibTorch, then exit");
  app.add_flag("--print-config", print_config, "print the settings as a config file and exit");
  CLI11_PARSE(app, argc, argv);
  if (check_blas) {
    set_threads(c.threads);
    return blas_check();
  }
  if (print_config) {
    std::printf("%s", app.config_to_str(true, false).c_str());
    return 0;
  }

  try {
    set_threads(c.threads);
    tldr::pipeline p(c);
    if (stage == "all") p.run_all();
    else if (stage == "data") p.prepare_data();
    else if (stage == "tokenizer") p.prepare_tokenizer();
    else if (stage == "sft") p.train_sft();
    else if (stage == "pairs") p.make_pairs();
    else if (stage == "rm") p.train_reward_model();
    else if (stage == "dpo_sft" || stage == "brain") p.align(stage);
    else if (stage == "evaluate") p.evaluate();
    if (stage == "report" || stage == "evaluate") std::printf("%s\n", p.results_markdown().c_str());
  } catch (const std::exception& e) {
    std::fprintf(stderr, "train_tldr: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
