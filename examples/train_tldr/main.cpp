// train_tldr: the paper's summarisation experiment (docs/math.md §9) end to end on this machine:
// data → tokenizer → SFT → preference pairs → reward model → every arm of src/arms.hpp →
// evaluation. Every stage is cached in --workdir; a command runs what is missing.
//
//   train_tldr                         # Table 1's analog (SFT, DPO, DPO-sft, RSO, BRAIn), one seed
//   train_tldr study                   # the sweep on validation, then every table with seeds
//   train_tldr judge < in.jsonl        # score {"prompt", "summary"} lines with the oracle
//   train_tldr sft                     # the shared stages up to one of them
//   train_tldr --model-dir gpt2/       # start from a Hugging Face GPT-2 folder (its tokenizer too)
//   train_tldr export --export-from runs/NAME/best.pt --export-to out/   # a Hugging Face folder
//   train_tldr --config tldr.toml      # settings from a file (TOML/INI; CLI options override it)

#include "checkpoint.hpp"
#include "device.hpp"
#include "hf_model.hpp"
#include "oracle.hpp"
#include "progress.hpp"
#include "ranks.hpp"
#include "stages.hpp"

#include <CLI/CLI.hpp>
#include <ATen/Parallel.h>
#include <spdlog/sinks/stdout_color_sinks.h>

#include <dlfcn.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <exception>
#include <fstream>
#include <iostream>

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

/// `--<arm>-beta`, `--<arm>-lr`, `--<arm>-temperature` for every swept arm of the method table.
void add_arm_options(CLI::App& app, tldr::config& c) {
  for (auto& [id, s] : c.align.settings) {
    std::string flag = id;
    std::replace(flag.begin(), flag.end(), '_', '-');
    const std::string what = tldr::find_arm(id).label;
    app.add_option("--" + flag + "-beta", s.beta, what + ": KL coefficient β")->capture_default_str()->group("Arms");
    app.add_option("--" + flag + "-lr", s.lr, what + ": learning rate")->capture_default_str()->group("Arms");
    app.add_option("--" + flag + "-temperature", s.temperature,
                   what + ": decoding temperature of the test summaries (0: greedy)")
        ->capture_default_str()
        ->group("Arms");
  }
  app.add_option("--sft-temperature", c.align.sft_temperature, "SFT: decoding temperature of the test summaries")
      ->capture_default_str()
      ->group("Arms");
}

/// Settings of the data, the tokenizer and the workdir.
void add_data_options(CLI::App& app, tldr::config& c) {
  app.add_option("--workdir", c.workdir, "where every stage caches its output")->capture_default_str();
  app.add_option("--seed", c.seed, "seed of the shared stages and of the main command's runs")->capture_default_str();
  app.add_option("--threads", c.threads, "LibTorch threads of the shared stages")
      ->capture_default_str()
      ->check(CLI::Range(1, 256));
  app.add_option("--jobs", c.jobs, "alignment and evaluation runs at once, each single-threaded (0: --threads)")
      ->capture_default_str()
      ->check(CLI::Range(0, 256));
  app.add_option("--train-jsonl", c.train_jsonl, "real TL;DR data (CarperAI's format) instead of Debian's");
  app.add_option("--valid-jsonl", c.valid_jsonl);
  app.add_option("--test-jsonl", c.test_jsonl);
  app.add_option("--data-snapshot", c.data_snapshot,
                 "Debian's descriptions from this snapshot (default: the repository's, "
                 "data/debian-descriptions.jsonl.xz)");
  app.add_option("--apt-lists", c.apt_lists,
                 "Debian's descriptions from the Translation-en lists in this folder (e.g. /var/lib/apt/lists) instead "
                 "of the snapshot; snapshot: the lists to take it from (default: /var/lib/apt/lists)");
  app.add_option("--tokenizer-model", c.tokenizer_model, "an existing SentencePiece model instead of training one");
  app.add_option("--model-dir", c.model_dir,
                 "a Hugging Face GPT-2 folder (config.json, model.safetensors, tokenizer.json): SFT starts from its "
                 "weights, with its tokenizer and config (the model-* options are ignored)")
      ->check(CLI::ExistingDirectory);
}

/// Settings of the model and of each training stage, the arms and the evaluation.
void add_training_options(CLI::App& app, tldr::config& c) {
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
  app.add_option("--pairs-responses", c.pairs.responses, "k responses the labeller ranks per prompt")
      ->capture_default_str();
  app.add_option("--pairs-label-temperature", c.pairs.label_temperature, "Bradley–Terry noise, in oracle-score units")
      ->capture_default_str();
  app.add_option("--pairs-gold-fraction", c.pairs.gold_fraction)->capture_default_str();
  app.add_option("--pairs-chunk-prompts", c.pairs.chunk_prompts, "prompts per resumable chunk")->capture_default_str();
  app.add_option("--rm-epochs", c.rm.epochs)->capture_default_str();
  app.add_option("--rm-batch", c.rm.batch, "prompts per step, each with its k responses")->capture_default_str();
  app.add_option("--rm-lr", c.rm.lr)->capture_default_str();
  app.add_option("--rm-checkpoint-every", c.rm.checkpoint_every)->capture_default_str();
  app.add_option("--align-refreshes", c.align.refreshes, "T")->capture_default_str();
  app.add_option("--align-prompts", c.align.prompts, "m per refresh")->capture_default_str();
  app.add_option("--align-samples", c.align.samples, "n per prompt")->capture_default_str();
  app.add_option("--align-epochs", c.align.epochs, "passes over each refresh's units")->capture_default_str();
  app.add_option("--align-groups-per-step", c.align.groups_per_step, "units (prompts) per minibatch")
      ->capture_default_str();
  app.add_option("--align-clip", c.align.clip)->capture_default_str();
  app.add_option("--align-validate-every", c.align.validate_every)->capture_default_str();
  app.add_option("--align-patience", c.align.patience,
                 "stop a run after this many validations without a better validation reward (0: never)")
      ->capture_default_str();
  app.add_option("--arms", c.align.arms, "the arms the main command trains")->capture_default_str()->delimiter(',');
  add_arm_options(app, c);
  app.add_option("--eval-valid-prompts", c.eval.valid_prompts)->capture_default_str();
  app.add_option("--eval-test-prompts", c.eval.test_prompts, "0: the whole test split")->capture_default_str();
  app.add_option("--eval-bootstrap", c.eval.bootstrap)->capture_default_str();
  app.add_option("--eval-valid-temperature", c.eval.valid_temperature,
                 "decoding of the checkpoint-selecting validation")
      ->capture_default_str();
}

/// `--judge llm`: the LLM judge's server and its patience.
void add_judge_options(CLI::App& app, tldr::config& c) {
  app.add_option("--judge", c.judge.kind,
                 "oracle: win-rates under the reward model and the oracle; llm: also under an LLM judge "
                 "(an OpenAI-compatible server, the paper's prompt, both orders; docs/train_tldr.md)")
      ->transform(CLI::CheckedTransformer(std::map<std::string, tldr::judge_kind>{{"oracle", tldr::judge_kind::oracle},
                                                                                  {"llm", tldr::judge_kind::llm}}))
      ->capture_default_str()
      ->group("LLM judge");
  app.add_option("--judge-url", c.judge.url, "the server, e.g. http://127.0.0.1:8080 (API key: $BRAIN_JUDGE_API_KEY)")
      ->group("LLM judge");
  app.add_option("--judge-model", c.judge.model, "the model name the server knows")->group("LLM judge");
  app.add_option("--judge-timeout", c.judge.timeout, "seconds to wait for a reply")
      ->capture_default_str()
      ->group("LLM judge");
  app.add_option("--judge-connect-timeout", c.judge.connect_timeout, "seconds to connect")
      ->capture_default_str()
      ->group("LLM judge");
  app.add_option("--judge-retries", c.judge.retries,
                 "retries after timeouts, connection errors, HTTP 429/5xx, malformed answers")
      ->capture_default_str()
      ->group("LLM judge");
  app.add_option("--judge-backoff", c.judge.backoff, "seconds before the first retry, doubling (at most 60)")
      ->capture_default_str()
      ->group("LLM judge");
  app.add_option("--judge-max-tokens", c.judge.max_tokens, "the reply's token limit")
      ->capture_default_str()
      ->group("LLM judge");
  app.add_option("--judge-parallel", c.judge.parallel, "requests at once")->capture_default_str()->group("LLM judge");
}

/// The study (docs/train_tldr.md, "The protocol").
void add_study_options(CLI::App& app, tldr::config& c) {
  const auto study_option = [&app](const std::string& name, auto& field, const std::string& what) {
    return app.add_option("--study-" + name, field, what)->capture_default_str()->group("Study");
  };
  study_option("seeds", c.study.seeds, "seeds of every row in a primary comparison (and SFT)");
  study_option("other-seeds", c.study.other_seeds, "seeds of the other rows");
  study_option("first-seed", c.study.first_seed, "the first study seed (then +1, +2, ...)");
  study_option("sweep-seed", c.study.sweep_seed, "the sweep's seed: never one of the study's seeds");
  study_option("betas", c.study.betas, "the sweep's starting β grid")->delimiter(',');
  study_option("beta-min", c.study.beta_min, "the edge rule's lower limit of β");
  study_option("beta-max", c.study.beta_max, "the edge rule's upper limit of β");
  study_option("lrs", c.study.lrs, "the sweep's starting learning rates")->delimiter(',');
  study_option("lr-min", c.study.lr_min, "the edge rule's lower limit of the learning rate");
  study_option("lr-max", c.study.lr_max, "the edge rule's upper limit of the learning rate");
  study_option("trials", c.study.trials, "runs per swept arm at most (β and learning rate together)");
  study_option("temperatures", c.study.temperatures, "the decoding temperatures tried on validation")->delimiter(',');
  study_option("primaries", c.study.primaries, "pre-registered comparisons, ours:theirs by row id (arm or arm@other)")
      ->delimiter(',');
  study_option("secondaries", c.study.secondaries, "comparisons reported at 95% without correction")->delimiter(',');
  study_option("margin", c.study.margin, "verdict 'level': the interval inside ±margin of oracle score");
  study_option("samples", c.study.samples, "the n sweep")->delimiter(',');
  study_option("samples-seeds", c.study.samples_seeds, "seeds of the n sweep's runs at n other than --align-samples");
  study_option("curve-seeds", c.study.curve_seeds, "seeds whose every checkpoint is evaluated for the curves");
  study_option("curve-prompts", c.study.curve_prompts, "test prompts per curve point");
  study_option("refreshes", c.study.refreshes, "the most refreshes of a study run");
  study_option("patience", c.study.patience, "a study run stops after this many validations without improvement");
}

/// What this invocation does, as opposed to the experiment's settings in tldr::config.
struct command_line {
  std::string stage = "all";
  std::filesystem::path judge_input, judge_output, export_from, export_to;
  double dist_timeout = 300;
  bool print_config = false, check_blas = false;
  std::string worker_task;
};

void add_command_options(CLI::App& app, tldr::config& c, command_line& cmd) {
  app.add_option("--device", c.device, "cpu, cuda or cuda:N (data parallel: cuda is cuda:LOCAL_RANK)")
      ->capture_default_str();
  app.add_option("--dist-timeout", cmd.dist_timeout,
                 "data parallel (torchrun's RANK, WORLD_SIZE, ... set): seconds a rank waits for the others before "
                 "failing (a rank that died stops the run within it)")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  const std::vector<std::string> stages{"all",   "data",   "tokenizer", "sft",    "pairs",   "rm",
                                        "study", "report", "judge",     "export", "snapshot"};
  app.add_option("stage", cmd.stage,
                 "all (Table 1's analog), study (every table, with seeds), judge (score JSONL with the "
                 "oracle), report (print the last table), snapshot (write the pinned data from apt's "
                 "lists to --output), or a shared stage: data, tokenizer, sft, pairs, rm")
      ->check(CLI::IsMember(stages))
      ->capture_default_str();
  app.add_option("--export-from", cmd.export_from,
                 "export: a checkpoint of the run (e.g. runs/NAME/best.pt, sft/model.pt)");
  app.add_option("--export-to", cmd.export_to, "export: the Hugging Face folder to write");
  app.add_option("--input", cmd.judge_input,
                 "judge: JSONL lines with \"prompt\" and \"summary\" (default: standard input)");
  app.add_option("--output", cmd.judge_output,
                 "judge: where the scored lines go (default: standard output); snapshot: the file to write");
  app.add_flag("--blas-check", cmd.check_blas, "time and check the BLAS kernels under LibTorch, then exit");
  app.add_flag("--print-config", cmd.print_config, "print the settings as a config file and exit");
  app.add_option("--worker-task", cmd.worker_task)->group("");  // internal: one run in a worker process
}

/// `snapshot`: the pinned data, regenerated from this host's lists (docs/train_tldr.md).
void write_snapshot(const tldr::config& c, const command_line& cmd) {
  if (cmd.judge_output.empty())
    throw std::invalid_argument(
        "snapshot needs --output FILE, e.g. examples/train_tldr/data/debian-descriptions.jsonl.xz");
  const auto manifest = tldr::write_snapshot_from_apt(
      cmd.judge_output, c.apt_lists.empty() ? std::filesystem::path("/var/lib/apt/lists") : c.apt_lists, c.data);
  std::printf("%s", manifest.c_str());
}

/// `judge`: score {"prompt", "summary"} lines with the oracle built from the training split.
void judge_lines(const tldr::config& c, const command_line& cmd, const std::shared_ptr<spdlog::logger>& log) {
  (void)tldr::run_shared_stages(c, log, tldr::shared_stage::data);
  const tldr::oracle oracle(tldr::read_tldr_jsonl(c.workdir / "data/train.jsonl"));
  std::ifstream in_file;
  std::ofstream out_file;
  if (!cmd.judge_input.empty()) in_file.open(cmd.judge_input);
  if (!cmd.judge_output.empty()) out_file.open(cmd.judge_output);
  if (!cmd.judge_input.empty() && !in_file) throw std::runtime_error("cannot read " + cmd.judge_input.string());
  if (!cmd.judge_output.empty() && !out_file) throw std::runtime_error("cannot write " + cmd.judge_output.string());
  tldr::score_jsonl(oracle, cmd.judge_input.empty() ? std::cin : in_file,
                    cmd.judge_output.empty() ? std::cout : out_file,
                    cmd.judge_input.empty() ? "standard input" : cmd.judge_input.string());
}

/// Data parallel when started torchrun-style (scripts/train-tldr-dp, torchrun, srun): every rank
/// runs every stage on its share of the prompts (src/ranks.hpp); a CUDA rank takes its local GPU.
void join_ranks_if_launched(const tldr::config& c, const command_line& cmd) {
  const auto where = tldr::dist::launch_from_env();
  tldr::select_device(where.world > 1 && c.device == "cuda" ? "cuda:" + std::to_string(where.local_rank) : c.device);
  c.validate();
  if (where.world > 1) {
    if (!cmd.worker_task.empty()) throw std::invalid_argument("--worker-task is not for data-parallel ranks");
    tldr::join_ranks(where, tldr::compute_device(),
                     std::chrono::milliseconds(static_cast<std::int64_t>(cmd.dist_timeout * 1000)));
  }
}

/// The command itself, after the options are read and the ranks joined.
void run_command(const tldr::config& c, const command_line& cmd, const CLI::App& app) {
  if (!cmd.worker_task.empty()) {
    set_threads(1);
    auto log = std::make_shared<spdlog::logger>("tldr", std::make_shared<spdlog::sinks::stderr_color_sink_mt>());
    log->set_pattern("[%H:%M:%S] %v");
    tldr::run_worker(c, cmd.worker_task, log);
    return;
  }
  set_threads(c.threads);
  auto log = tldr::open_log(c.workdir);
  // The exact settings of this command, for its worker processes.
  const auto self_config = c.workdir / "worker.toml";
  tldr::atomic_write_text(self_config, app.config_to_str(false, false));  // what was set; defaults are shared
  const bool report = tldr::ranks().is_main();                            // data parallel: rank 0 prints
  if (cmd.stage == "all" || cmd.stage == "study") {
    const auto md = cmd.stage == "all" ? tldr::run_main(c, self_config, log) : tldr::run_study(c, self_config, log);
    if (report) std::printf("\n%s\n", md.c_str());
  } else if (cmd.stage == "export") {
    if (cmd.export_from.empty() || cmd.export_to.empty())
      throw std::invalid_argument("export needs --export-from and --export-to");
    const auto ctx = tldr::run_shared_stages(c, log, tldr::shared_stage::tokenizer);
    tldr::export_model(*ctx, cmd.export_from, cmd.export_to);
  } else if (cmd.stage == "report") {
    std::printf("%s\n", tldr::read_text(c.workdir / "eval/results.md").c_str());
  } else if (cmd.stage == "judge") {
    judge_lines(c, cmd, log);
  } else {
    (void)tldr::run_shared_stages(c, log, *tldr::shared_stage_of(cmd.stage));  // CLI11 checked the name
  }
}

}  // namespace

int main(int argc, char** argv) {
  tldr::config c;
  command_line cmd;
  CLI::App app{
      "BRAIn on TL;DR-style summarisation: SFT, reward model, DPO, DPO-sft, RSO, BRAIn and its bridge and "
      "ablations; win-rates against gold under the reward model and an oracle"};
  app.set_config("--config", "", "TOML or INI file: any option below as a key, e.g. sft-steps = 1200");
  add_data_options(app, c);
  add_command_options(app, c, cmd);
  add_training_options(app, c);
  add_judge_options(app, c);
  add_study_options(app, c);
  CLI11_PARSE(app, argc, argv);
  if (cmd.check_blas) {
    set_threads(c.threads);
    return blas_check();
  }
  if (cmd.print_config) {
    std::printf("%s", app.config_to_str(true, false).c_str());
    return 0;
  }
  try {
    if (cmd.stage == "snapshot") {
      write_snapshot(c, cmd);
      return 0;
    }
    if (!c.model_dir.empty()) c.model = tldr::hf_model_config(c.model_dir);
    join_ranks_if_launched(c, cmd);
    run_command(c, cmd, app);
  } catch (const std::exception& e) {
    std::fprintf(stderr, "train_tldr: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
