// The pipeline's own parts: atomic files and checkpoints, the tokeniser
// (Debian's SentencePiece tools) and the progress bar's durations.
#include "checkpoint.hpp"
#include "data.hpp"
#include "progress.hpp"
#include "tokenizer.hpp"

#include <gtest/gtest.h>

#include <fstream>

namespace {
namespace fs = std::filesystem;

fs::path scratch_dir(const std::string& name) {
  auto dir = fs::temp_directory_path() / ("tldr-test-" + name + "-" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

TEST(pipeline_checkpoint, atomic_write_replaces_the_file_and_leaves_no_temporary) {
  const auto dir = scratch_dir("atomic");
  tldr::atomic_write_text(dir / "a/b.txt", "first");
  tldr::atomic_write_text(dir / "a/b.txt", "second");
  EXPECT_EQ(tldr::read_text(dir / "a/b.txt"), "second");
  EXPECT_FALSE(fs::exists(dir / "a/b.txt.tmp"));
  // A writer that fails leaves the old file intact.
  EXPECT_THROW(tldr::atomic_write(dir / "a/b.txt", [](const fs::path&) { throw std::runtime_error("disk full"); }),
               std::runtime_error);
  EXPECT_EQ(tldr::read_text(dir / "a/b.txt"), "second");
  fs::remove_all(dir);
}

TEST(pipeline_checkpoint, modules_optimisers_and_values_round_trip_exactly) {
  const auto dir = scratch_dir("ckpt");
  torch::manual_seed(1);
  torch::nn::Linear a(4, 3), b(4, 3);
  torch::optim::AdamW opt_a(a->parameters(), torch::optim::AdamWOptions(1e-2));
  a(torch::randn({5, 4})).sum().backward();
  opt_a.step();
  tldr::checkpoint_writer w;
  w.add("model", *a);
  w.add("optimizer", opt_a);
  w.add("step", std::int64_t{42});
  w.add("values", torch::arange(5, torch::kFloat64));
  w.save(dir / "state.pt");

  tldr::checkpoint_reader r(dir / "state.pt");
  torch::optim::AdamW opt_b(b->parameters(), torch::optim::AdamWOptions(1e-2));
  r.load("model", *b);
  r.load("optimizer", opt_b);
  EXPECT_TRUE(torch::equal(a->weight, b->weight));
  EXPECT_EQ(r.integer("step"), 42);
  EXPECT_TRUE(torch::equal(r.tensor("values"), torch::arange(5, torch::kFloat64)));
  // The same next step from both: the optimiser's moments came back too.
  const auto x = torch::randn({5, 4});
  opt_a.zero_grad();
  opt_b.zero_grad();
  a(x).sum().backward();
  b(x).sum().backward();
  opt_a.step();
  opt_b.step();
  EXPECT_TRUE(torch::equal(a->weight, b->weight));
  try {
    (void)r.integer("missing");
    FAIL() << "no exception";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("'missing'"), std::string::npos) << e.what();
  }
  fs::remove_all(dir);
}

class pipeline_tokenizer : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new fs::path(scratch_dir("spm"));
    std::ifstream in(std::string(TLDR_TEST_DATA) + "/Translation-en.sample");
    auto packages = tldr::parse_translation(in, "Translation-en.sample");
    tldr::dataset_options o;
    o.min_words = 5;
    o.valid_fraction = o.test_fraction = 0.0;
    corpus_ = new std::vector<tldr::example>(tldr::build_dataset(packages, o).train);
    tok_ = new tldr::tokenizer(tldr::tokenizer::train(*corpus_, 300, *dir_ / "spm.model"));
  }
  static void TearDownTestSuite() {
    delete tok_;
    delete corpus_;
    fs::remove_all(*dir_);
    delete dir_;
  }
  static inline fs::path* dir_ = nullptr;
  static inline std::vector<tldr::example>* corpus_ = nullptr;
  static inline tldr::tokenizer* tok_ = nullptr;
};

TEST_F(pipeline_tokenizer, special_ids_are_fixed_and_text_round_trips) {
  EXPECT_GT(tok_->vocab_size(), 50);
  EXPECT_EQ(tok_->bos_id(), 2);
  EXPECT_EQ(tok_->eos_id(), 3);
  EXPECT_FALSE(tok_->is_byte_level());
  const std::vector<std::string> texts{"a library for reading compressed files", "", "the quick daemon"};
  const auto ids = tok_->encode(texts);
  ASSERT_EQ(ids.size(), 3u);
  EXPECT_TRUE(ids[1].empty());
  for (const auto& seq : ids)
    for (auto id : seq) EXPECT_GT(id, tok_->eos_id());  // plain text never yields specials
  const auto back = tok_->decode(ids);
  EXPECT_EQ(back[0], texts[0]);
  EXPECT_EQ(back[1], "");
  EXPECT_EQ(back[2], texts[2]);
  // decode stops at eos and skips pad and bos.
  auto with_specials = ids[0];
  with_specials.insert(with_specials.begin(), {tok_->bos_id(), tldr::tokenizer::pad_id});
  with_specials.push_back(tok_->eos_id());
  with_specials.insert(with_specials.end(), ids[2].begin(), ids[2].end());
  EXPECT_EQ(tok_->decode(with_specials), texts[0]);
}

TEST_F(pipeline_tokenizer, prompts_keep_their_tail_and_fit_the_budget) {
  const std::string prompt = "TITLE: x\nPOST: " + std::string(2000, 'a') + " b c d e f g\nTL;DR:";
  const auto ids = tok_->encode_prompts(std::vector<std::string>{prompt}, 24).front();
  EXPECT_EQ(static_cast<std::int64_t>(ids.size()), 24);
  EXPECT_EQ(ids.front(), tok_->bos_id());
  const auto tail = tok_->encode(std::string("TL;DR:"));
  ASSERT_FALSE(tail.empty());
  EXPECT_TRUE(std::equal(tail.rbegin(), tail.rend(), ids.rbegin()));
  const auto label = tok_->encode_responses(std::vector<std::string>{" a short summary"}, 100).front();
  EXPECT_EQ(label.back(), tok_->eos_id());
  const auto cut = tok_->encode_responses(std::vector<std::string>{" a short summary"}, 2).front();
  EXPECT_EQ(cut.size(), 2u);
  EXPECT_NE(cut.back(), tok_->eos_id());
}

TEST_F(pipeline_tokenizer, an_existing_model_loads_through_the_same_class_and_bad_ones_are_named) {
  const tldr::tokenizer again(*dir_ / "spm.model");
  EXPECT_EQ(again.vocab_size(), tok_->vocab_size());
  EXPECT_EQ(again.encode(std::string("compressed files")), tok_->encode(std::string("compressed files")));
  try {
    tldr::tokenizer missing(*dir_ / "nope.model");
    FAIL() << "no exception";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("nope.model"), std::string::npos) << e.what();
  }
}

TEST(pipeline_progress, durations_read_naturally) {
  EXPECT_EQ(tldr::format_duration(4.21), "4.2s");
  EXPECT_EQ(tldr::format_duration(83), "1m 23s");
  EXPECT_EQ(tldr::format_duration(7322), "2h 02m");
  EXPECT_EQ(tldr::format_duration(-1), "?");
}

}  // namespace
