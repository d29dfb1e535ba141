// ctest tldr_custom_arm: adding an arm is one entry (src/arms.hpp). This file registers a
// throw-away arm that the library does not know — best-of-n distillation: maximise log q_θ of
// the reward model's best sample of each group — and runs it through the miniature pipeline in
// this process (the committed Debian sample, a one-layer model): shared stages, its alignment
// with the oracle sealed, then its evaluation on the test split. The oracle throws while sealed,
// so the alignment also shows that validation and checkpoint choice never call it.
#include "arms.hpp"
#include "checkpoint.hpp"
#include "model.hpp"
#include "training.hpp"
#include "config.hpp"
#include "context.hpp"
#include "oracle.hpp"
#include "stages.hpp"

#include <gtest/gtest.h>
#include <spdlog/sinks/null_sink.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <stdexcept>

namespace {
namespace fs = std::filesystem;

// The throw-away arm's loss: −mean over the minibatch's groups of log q_θ(best sample), "best" by
// the reward model. Group arms see whole groups ([units, width] after group_samples).
tldr::step_report best_of_n_loss(const tldr::minibatch& batch, const torch::Tensor& log_policy,
                                 const tldr::refresh_buffer& buffer, double /*beta*/) {
  const auto s = tldr::group_samples(batch, log_policy, buffer);
  const auto best = s.reward.argmax(1, /*keepdim=*/true);
  return {-s.log_policy.gather(1, best).mean(), 0.0, 0};
}

tldr::arm best_of_n_arm() {
  tldr::arm a;
  a.id = "best_of_n";
  a.label = "best-of-n distillation";
  a.paper = "not in the paper (a test's throw-away arm)";
  a.proposal = tldr::proposal_rule::prior;
  a.loss = best_of_n_loss;
  a.defaults = {0.1, 1e-3, 0.7};
  a.settings_from = a.id;
  return a;
}

// The miniature settings of tests/mini.toml, fewer steps.
tldr::config miniature(const fs::path& workdir, const fs::path& lists) {
  tldr::config c;
  c.workdir = workdir;
  c.apt_lists = lists;
  c.threads = 1;
  c.seed = 7;
  c.data.min_words = 10;
  c.data.valid_fraction = 0.2;
  c.data.test_fraction = 0.2;
  c.vocab = 250;
  c.max_prompt_tokens = 40;
  c.max_response_tokens = 10;
  c.model.context = 50;
  c.model.d_model = 32;
  c.model.layers = 1;
  c.model.heads = 2;
  c.sft.steps = 12;
  c.sft.batch = 8;
  c.pairs.train_prompts = 24;
  c.pairs.valid_prompts = 8;
  c.rm.epochs = 1;
  c.rm.batch = 8;
  c.align.refreshes = 2;
  c.align.prompts = 4;
  c.align.samples = 4;
  c.align.groups_per_step = 2;
  c.eval.valid_prompts = 8;
  c.eval.test_prompts = 8;
  c.eval.bootstrap = 50;
  c.pairs.chunk_prompts = 8;
  c.align.settings = tldr::align_config::default_arm_settings();  // after registration: has best_of_n
  c.validate();
  return c;
}

TEST(custom_arm, a_throw_away_arm_trains_and_evaluates_through_the_miniature_pipeline) {
  tldr::register_arm(best_of_n_arm());
  const tldr::arm& a = tldr::find_arm("best_of_n");
  EXPECT_TRUE(a.swept());
  EXPECT_FALSE(a.pairs());
  EXPECT_EQ(tldr::align_config::default_arm_settings().at("best_of_n"), (tldr::arm_settings{0.1, 1e-3, 0.7}));
  EXPECT_THROW(tldr::register_arm(best_of_n_arm()), std::invalid_argument);  // the id is taken now

  const fs::path root = fs::temp_directory_path() / ("tldr-custom-arm-" + std::to_string(::getpid()));
  fs::remove_all(root);
  fs::create_directories(root / "lists");
  fs::copy_file(fs::path(TLDR_TEST_DATA) / "Translation-en.sample", root / "lists/sample_i18n_Translation-en");
  const tldr::config c = miniature(root / "work", root / "lists");
  auto log = std::make_shared<spdlog::logger>("custom_arm", std::make_shared<spdlog::sinks::null_sink_mt>());

  const auto ctx = tldr::run_shared_stages(c, log);
  ASSERT_NE(ctx, nullptr);
  const tldr::run_spec run{"best_of_n", c.align.samples, c.seed, c.align.settings_of("best_of_n"), 2, 0};
  ctx->seal_oracle("the custom arm's alignment");
  try {
    (void)ctx->oracle();
    FAIL() << "the sealed oracle answered";
  } catch (const std::logic_error& e) {
    EXPECT_NE(std::string(e.what()).find("the custom arm's alignment"), std::string::npos) << e.what();
  }
  tldr::align(*ctx, run);  // would throw std::logic_error if validation or selection asked the oracle
  ctx->seal_oracle("");

  const fs::path dir = tldr::run_dir(*ctx, run);
  ASSERT_TRUE(fs::exists(dir / "best.pt")) << dir;
  const auto history = tldr::read_history(dir / "history.json");
  ASSERT_EQ(history.size(), 3u);  // before training and after each of the 2 refreshes
  EXPECT_GT(history.back().step, 0);
  // The loss moved the policy: its checkpoint differs from the SFT model it started from.
  tldr::Gpt sft(c.model), trained(c.model);
  tldr::load_model(ctx->path("sft/model.pt"), *sft);
  tldr::load_model(dir / "checkpoints/refresh-2.pt", *trained);
  double moved = 0;
  for (std::size_t i = 0; i < sft->parameters().size(); ++i)
    moved += (sft->parameters()[i] - trained->parameters()[i]).abs().sum().item<double>();
  EXPECT_GT(moved, 0.0);

  tldr::evaluate_model(*ctx, run.eval_name(), dir / "best.pt", run.settings.temperature, run.seed);
  const auto eval = tldr::read_eval(ctx->path("eval/" + run.eval_name() + ".jsonl"));
  EXPECT_EQ(eval.oracle.size(), 8u);
  EXPECT_EQ(eval.rm.size(), 8u);
  fs::remove_all(root);
}

}  // namespace
