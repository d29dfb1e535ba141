// brain::libtorch::sequence_log_probs and fused_linear_sequence_log_probs
// (backends/torch/log_probs.hpp): values against a double-precision loop, gradients against the
// plain ATen composition, left and right padding, both alignments, an all-masked row, half
// precision, validation, composition with brain_loss, the sampler's temperature / top-k / top-p
// against a plain loop, batch invariance, and the program-wide device registry.

#include <brain/backends/torch/log_probs.hpp>

#include "support/properties.hpp"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

// Defined in odr_torch_registry_test.cpp: sequence_log_probs called from that translation unit.
at::Tensor registered_in_other_unit(const at::Tensor& logits, const at::Tensor& labels, const at::Tensor& mask);

namespace {

namespace bt = brain::libtorch;
using brain_test::random_matrix_host;

/// Per-token log-probs [B, T] by explicit loops in double: the specification of the alignment.
at::Tensor reference_tokens(const at::Tensor& logits, const at::Tensor& labels, const at::Tensor& mask,
                            bt::alignment align) {
  const at::Tensor x = logits.detach().to(at::kDouble).cpu();
  const int64_t batch = x.size(0), time = x.size(1), vocabulary = x.size(2), shift = align == bt::alignment::next_token;
  at::Tensor out = at::zeros({batch, time}, at::kDouble);
  auto xa = x.accessor<double, 3>();
  const at::Tensor l = labels.to(at::kLong).cpu(), mk = mask.to(at::kDouble).cpu();
  auto la = l.accessor<int64_t, 2>();
  auto ma = mk.accessor<double, 2>();
  auto oa = out.accessor<double, 2>();
  for (int64_t b = 0; b < batch; ++b)
    for (int64_t t = shift; t < time; ++t) {
      if (ma[b][t] == 0) continue;
      double m = -INFINITY, s = 0;
      for (int64_t v = 0; v < vocabulary; ++v) m = std::max(m, xa[b][t - shift][v]);
      for (int64_t v = 0; v < vocabulary; ++v) s += std::exp(xa[b][t - shift][v] - m);
      oa[b][t] = xa[b][t - shift][la[b][t]] - m - std::log(s);
    }
  return out;
}

/// A batch with right padding (row 0), left padding (row 1), a prompt-then-response row (row 2)
/// and an all-masked row (row 3): mask marks the response tokens.
struct batch {
  at::Tensor logits, labels, mask;
};
batch make_batch(int64_t vocabulary, at::ScalarType type, unsigned seed = 1) {
  const int64_t b = 4, t = 7;
  at::manual_seed(seed);
  batch out{(at::randn({b, t, vocabulary}, at::kDouble) * 3).to(type), at::randint(vocabulary, {b, t}, at::kLong),
            at::zeros({b, t}, at::kLong)};
  out.mask.select(0, 0).slice(0, 2, 5).fill_(1);  // response at 2..4, right padding after
  out.mask.select(0, 1).slice(0, 4, 7).fill_(1);  // left padding 0..1, prompt 2..3, response 4..6
  out.mask.select(0, 2).slice(0, 1, 7).fill_(1);  // everything after the first token
  return out;
}

double max_rel_diff(const at::Tensor& a, const at::Tensor& b) {
  const at::Tensor x = a.detach().to(at::kDouble).cpu(), y = b.detach().to(at::kDouble).cpu();
  return ((x - y).abs() / y.abs().clamp_min(1.0)).max().item<double>();
}

TEST(SequenceLogProbs, MatchesTheDoubleReferenceForBothAlignmentsAndPaddings) {
  for (const auto align : {bt::alignment::same_position, bt::alignment::next_token})
    for (const int64_t vocabulary : {5, 700, 3000}) {
      const batch in = make_batch(vocabulary, at::kFloat);
      const at::Tensor expect = reference_tokens(in.logits, in.labels, in.mask, align);
      const at::Tensor tokens =
          bt::sequence_log_probs(in.logits, in.labels, in.mask, align, {.reduce = bt::reduction::none});
      EXPECT_EQ(tokens.sizes(), in.mask.sizes());
      EXPECT_LT(max_rel_diff(tokens, expect), 1e-5) << "V = " << vocabulary;
      const at::Tensor sum = bt::sequence_log_probs(in.logits, in.labels, in.mask, align);
      EXPECT_LT(max_rel_diff(sum, expect.sum(1)), 1e-5);
      const at::Tensor mean =
          bt::sequence_log_probs(in.logits, in.labels, in.mask, align, {.reduce = bt::reduction::mean});
      EXPECT_LT(max_rel_diff(mean, expect.sum(1) / in.mask.sum(1).clamp_min(1).to(at::kDouble)), 1e-5);
      EXPECT_EQ(sum[3].item<double>(), 0.0);  // the all-masked row
      EXPECT_EQ(mean[3].item<double>(), 0.0);
    }
}

// The off-by-one of trl#3346: next_token on the model's own input ids equals same_position on
// logits and labels shifted by hand, and differs from forgetting the shift.
TEST(SequenceLogProbs, NextTokenAlignmentIsTheHandShiftedSamePosition) {
  const batch in = make_batch(50, at::kDouble);
  const int64_t t = in.logits.size(1);
  const at::Tensor next = bt::sequence_log_probs(in.logits, in.labels, in.mask, bt::alignment::next_token);
  const at::Tensor shifted = bt::sequence_log_probs(in.logits.slice(1, 0, t - 1), in.labels.slice(1, 1, t),
                                                    in.mask.slice(1, 1, t), bt::alignment::same_position);
  EXPECT_LT(max_rel_diff(next, shifted), 1e-12);
  const at::Tensor unshifted = bt::sequence_log_probs(in.logits, in.labels, in.mask, bt::alignment::same_position);
  EXPECT_GT((unshifted - next).abs().max().item<double>(), 0.1);
}

// Gradients of sum_b w_b * result_b against the plain ATen composition, in double.
TEST(SequenceLogProbs, BackwardEqualsThePlainAtenGradient) {
  for (const auto align : {bt::alignment::same_position, bt::alignment::next_token})
    for (const auto reduce : {bt::reduction::sum, bt::reduction::mean, bt::reduction::none}) {
      const batch in = make_batch(600, at::kDouble);
      const at::Tensor ours_in = in.logits.clone().requires_grad_(true),
                       plain_in = in.logits.clone().requires_grad_(true);
      const at::Tensor ours = bt::sequence_log_probs(ours_in, in.labels, in.mask, align, {.reduce = reduce});
      const auto selection = bt::detail::select_tokens("test", in.labels, in.mask, 4, 7, 600, align, {});
      const at::Tensor plain = bt::detail::reduce_tokens(bt::detail::plain_token_log_probs(plain_in, selection, {}),
                                                         selection.active, reduce);
      const at::Tensor weights = at::randn(ours.sizes(), at::kDouble);
      (ours * weights).sum().backward();
      (plain * weights).sum().backward();
      EXPECT_LT((ours_in.grad() - plain_in.grad()).abs().max().item<double>(), 1e-12);
      EXPECT_EQ(ours_in.grad()[3].abs().max().item<double>(), 0.0);  // the all-masked row
    }
}

TEST(SequenceLogProbs, HalfPrecisionLogitsAccumulateInFloat) {
  for (const auto type : {at::kHalf, at::kBFloat16}) {
    const batch in = make_batch(4000, type);
    const at::Tensor logits = in.logits.clone().requires_grad_(true);
    const at::Tensor out = bt::sequence_log_probs(logits, in.labels, in.mask, bt::alignment::next_token);
    EXPECT_EQ(out.scalar_type(), at::kFloat);
    const at::Tensor expect = reference_tokens(in.logits, in.labels, in.mask, bt::alignment::next_token).sum(1);
    EXPECT_LT(max_rel_diff(out, expect), 1e-5);  // the same rounded inputs, accumulated in float
    out.sum().backward();
    EXPECT_EQ(logits.grad().scalar_type(), type);
    EXPECT_TRUE(at::isfinite(logits.grad()).all().item<bool>());
  }
}

void expect_invalid(const std::function<void()>& f, const std::string& fragment) {
  try {
    f();
    ADD_FAILURE() << "no exception; expected one mentioning " << fragment;
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find(fragment), std::string::npos) << e.what();
  }
}

TEST(SequenceLogProbs, BadInputIsNamed) {
  batch in = make_batch(10, at::kFloat);
  const auto next = bt::alignment::next_token, same = bt::alignment::same_position;
  in.labels[1][5] = 10;
  expect_invalid([&] { bt::sequence_log_probs(in.logits, in.labels, in.mask, next); }, "labels[1, 5] = 10 is outside");
  in.labels[1][5] = 3;
  in.mask[2][0] = 1;
  expect_invalid([&] { bt::sequence_log_probs(in.logits, in.labels, in.mask, next); }, "mask[2, 0] is set");
  EXPECT_NO_THROW(bt::sequence_log_probs(in.logits, in.labels, in.mask, same));
  in.logits[0][2][4] = NAN;
  expect_invalid([&] { bt::sequence_log_probs(in.logits, in.labels, in.mask, same); }, "logits at [0, 2]");
  expect_invalid([&] { bt::sequence_log_probs(in.logits, in.labels.slice(1, 0, 6), in.mask, same); },
                 "labels has shape");
  expect_invalid([&] { bt::sequence_log_probs(in.logits, in.labels.to(at::kFloat), in.mask, same); }, "integer");
  expect_invalid([&] { bt::sequence_log_probs(in.logits[0], in.labels, in.mask, same); }, "logits has 2 dimensions");
}

// The fused path: values and gradients of hidden and weight equal matmul -> log_softmax ->
// gather (plain ATen, double), for chunk sizes that split the tokens unevenly.
TEST(FusedLinearSequenceLogProbs, EqualsMaterialisingTheLogits) {
  const batch in = make_batch(300, at::kDouble);
  at::manual_seed(5);
  const at::Tensor hidden = at::randn({4, 7, 24}, at::kDouble), weight = at::randn({300, 24}, at::kDouble) * 0.5;
  for (const auto align : {bt::alignment::same_position, bt::alignment::next_token})
    for (const int64_t chunk : {0, 1, 3, 1000})
      for (const int64_t tile : {0, 1, 7, 64}) {  // vocabulary tiles: one, and 300, 43 and 5 (uneven)
        const at::Tensor h1 = hidden.clone().requires_grad_(true), w1 = weight.clone().requires_grad_(true);
        const at::Tensor h2 = hidden.clone().requires_grad_(true), w2 = weight.clone().requires_grad_(true);
        const at::Tensor fused =
            bt::fused_linear_sequence_log_probs(h1, w1, in.labels, in.mask, align, chunk, {.vocab_tile = tile});
        const at::Tensor plain = bt::sequence_log_probs(at::matmul(h2, w2.t()), in.labels, in.mask, align);
        EXPECT_LT(
            max_rel_diff(fused, reference_tokens(at::matmul(hidden, weight.t()), in.labels, in.mask, align).sum(1)),
            1e-12);
        const at::Tensor weights = at::randn({4}, at::kDouble);
        (fused * weights).sum().backward();
        (plain * weights).sum().backward();
        EXPECT_LT((h1.grad() - h2.grad()).abs().max().item<double>(), 1e-12) << "chunk " << chunk << " tile " << tile;
        EXPECT_LT((w1.grad() - w2.grad()).abs().max().item<double>(), 1e-12) << "chunk " << chunk << " tile " << tile;
      }
}

// A frozen weight gets no gradient (and no buffer); the hidden gradient, computed during forward
// on that path (rescaled across vocabulary tiles as each token's running maximum moves), equals
// the plain one for every reduction, chunking and tiling. The weight's scale makes the maxima
// move late: logits of a few units.
TEST(FusedLinearSequenceLogProbs, FrozenWeightGetsNoGradient) {
  const batch in = make_batch(50, at::kDouble);
  const at::Tensor hidden = at::randn({4, 7, 8}, at::kDouble), weight = at::randn({50, 8}, at::kDouble);
  for (const auto reduce : {bt::reduction::sum, bt::reduction::mean, bt::reduction::none})
    for (const int64_t chunk : {0, 2})
      for (const int64_t tile : {0, 3, 7}) {
        const at::Tensor h1 = hidden.clone().requires_grad_(true), h2 = hidden.clone().requires_grad_(true);
        const at::Tensor w = weight.clone();
        const at::Tensor fused = bt::fused_linear_sequence_log_probs(
            h1, w, in.labels, in.mask, bt::alignment::next_token, chunk, {.reduce = reduce, .vocab_tile = tile});
        const at::Tensor plain = bt::sequence_log_probs(at::matmul(h2, w.t()), in.labels, in.mask,
                                                        bt::alignment::next_token, {.reduce = reduce});
        EXPECT_LT((fused - plain).abs().max().item<double>(), 1e-12);
        const at::Tensor upstream = at::randn(fused.sizes(), at::kDouble);
        (fused * upstream).sum().backward();
        (plain * upstream).sum().backward();
        EXPECT_FALSE(w.grad().defined());
        EXPECT_LT((h1.grad() - h2.grad()).abs().max().item<double>(), 1e-12);
        EXPECT_EQ(h1.grad()[3].abs().max().item<double>(), 0.0);  // the all-masked row
      }
}

// The tile width: as asked (at most V), the whole vocabulary under top-k / top-p, and by default
// the largest multiple of 64 columns whose [rows, columns] block fits one core's L2 cache, within
// [256, V].
TEST(FusedLinearSequenceLogProbs, VocabularyTilesFollowTheCacheRule) {
  namespace d = bt::detail;
  const bt::sampling plain{}, temperature{0.7, 0, 1.0}, top_k{1.0, 5, 1.0}, top_p{1.0, 0, 0.9};
  EXPECT_EQ(d::vocab_tile_columns(100, 256, 50257, 4, plain), 100);
  EXPECT_EQ(d::vocab_tile_columns(100, 256, 50257, 4, temperature), 100);
  EXPECT_EQ(d::vocab_tile_columns(60000, 256, 50257, 4, plain), 50257);
  EXPECT_EQ(d::vocab_tile_columns(100, 256, 50257, 4, top_k), 50257);
  EXPECT_EQ(d::vocab_tile_columns(0, 256, 50257, 4, top_p), 50257);
  EXPECT_EQ(d::vocab_tile_columns(0, 256, 100, 4, plain), 100);
  const int64_t l2 = d::l2_cache_bytes();
  ASSERT_GT(l2, 0);
  for (const int64_t rows : {1, 64, 256, 2048})
    for (const int64_t bytes : {4, 8}) {
      const int64_t columns = d::vocab_tile_columns(0, rows, 1 << 22, bytes, plain);
      EXPECT_EQ(columns % 64, 0) << rows;
      EXPECT_GE(columns, 256) << rows;
      if (columns > 256) {  // the largest multiple of 64 that fits
        EXPECT_LE(rows * columns * bytes, l2) << rows;
        EXPECT_GT(rows * (columns + 64) * bytes, l2) << rows;
      }
    }
}

TEST(FusedLinearSequenceLogProbs, FloatAgreesWithDoubleTo1e4) {
  const batch in = make_batch(5000, at::kFloat);
  at::manual_seed(9);
  const at::Tensor hidden = at::randn({4, 7, 64}), weight = at::randn({5000, 64}) * 0.2;
  const at::Tensor f =
      bt::fused_linear_sequence_log_probs(hidden, weight, in.labels, in.mask, bt::alignment::next_token);
  const at::Tensor d = reference_tokens(at::matmul(hidden.to(at::kDouble), weight.to(at::kDouble).t()), in.labels,
                                        in.mask, bt::alignment::next_token)
                           .sum(1);
  EXPECT_LT(max_rel_diff(f, d), 1e-4);
}

// Composition with brain_loss by autograd: the gradient reaching the hidden states equals the one
// through materialised logits.
TEST(FusedLinearSequenceLogProbs, ComposesWithBrainLoss) {
  const int64_t m = 2, n = 2;  // 4 sequences = 2 prompts x 2 samples
  const batch in = make_batch(40, at::kDouble);
  const at::Tensor hidden = at::randn({4, 7, 16}, at::kDouble), weight = at::randn({40, 16}, at::kDouble);
  const at::Tensor lq = at::randn({m, n}, at::kDouble) - 20, l0 = at::randn({m, n}, at::kDouble) - 20,
                   r = at::randn({m, n}, at::kDouble);
  at::Tensor grads[2];
  for (int way = 0; way < 2; ++way) {
    const at::Tensor h = hidden.clone().requires_grad_(true);
    const at::Tensor lp =
        way == 0 ? bt::fused_linear_sequence_log_probs(h, weight, in.labels, in.mask, bt::alignment::next_token)
                 : bt::sequence_log_probs(at::matmul(h, weight.t()), in.labels, in.mask, bt::alignment::next_token);
    brain::brain_loss(brain::samples<at::Tensor>{lp.view({m, n}), lq, l0, r}).loss.backward();
    grads[way] = h.grad();
  }
  EXPECT_GT(grads[1].abs().max().item<double>(), 0.0);
  EXPECT_LT((grads[0] - grads[1]).abs().max().item<double>(), 1e-12);
}

/// log p'(label) of one row of logits under the sampler's settings, written directly: divide by
/// T, sort, keep the k largest (ties too), walk the distinct values down keeping each while the
/// mass above it is below top_p, renormalise. In long double.
long double reference_sampled(std::vector<double> row, int64_t label, const bt::sampling& s) {
  using real = long double;
  std::vector<real> v(row.begin(), row.end());
  for (real& x : v) x /= s.temperature;
  std::vector<real> sorted = v;
  std::sort(sorted.begin(), sorted.end(), std::greater<real>());
  real threshold = -INFINITY;
  std::size_t kept = sorted.size();
  if (s.top_k > 0 && std::size_t(s.top_k) < sorted.size()) {
    threshold = sorted[std::size_t(s.top_k) - 1];
    kept = std::size_t(std::count_if(sorted.begin(), sorted.end(), [&](real x) { return x >= threshold; }));
  }
  const auto lse = [&](std::size_t count) {
    real z = 0;
    for (std::size_t i = 0; i < count; ++i) z += std::exp(sorted[i] - sorted[0]);
    return sorted[0] + std::log(z);
  };
  if (s.top_p < 1) {
    const real z = lse(kept);
    real above = 0;
    for (std::size_t i = 0; i < kept && above < s.top_p;) {
      threshold = sorted[i];
      for (; i < kept && sorted[i] == threshold; ++i) above += std::exp(sorted[i] - z);
    }
    kept = std::size_t(std::count_if(sorted.begin(), sorted.end(), [&](real x) { return x >= threshold; }));
  }
  if (v[std::size_t(label)] < threshold) return -INFINITY;
  return v[std::size_t(label)] - lse(kept);
}

/// Logits with ties (every value repeated twice) so that top-k / top-p boundaries fall on ties.
at::Tensor logits_with_ties(int64_t batch, int64_t time, int64_t vocabulary, unsigned seed) {
  at::manual_seed(seed);
  const at::Tensor half = at::randn({batch, time, vocabulary / 2}, at::kDouble) * 2;
  return at::cat({half, half}, 2).contiguous();
}

// The log-probs of the distribution the sampler drew from (trl#4159: temperature; trl#6789: top-k
// and top-p), on the CPU kernels, the plain ATen composition (other devices) and the fused path,
// against the loop above; each token's label is the row's best, so it is always kept.
TEST(SamplingSettings, LogProbsAreThoseOfTheSampledDistribution) {
  const int64_t batch = 3, time = 5, vocabulary = 40, width = 8;
  const at::Tensor mask = at::ones({batch, time}, at::kLong);
  for (const double temperature : {1.0, 0.7, 1.6})
    for (const int64_t top_k : {0, 1, 7, 40})
      for (const double top_p : {1.0, 0.9, 0.35}) {
        const bt::sampling sample{temperature, top_k, top_p};
        const at::Tensor logits = logits_with_ties(batch, time, vocabulary, 11);
        const at::Tensor labels = logits.argmax(2);
        const bt::log_prob_options opt{.reduce = bt::reduction::none, .sample = sample};
        const at::Tensor ours = bt::sequence_log_probs(logits, labels, mask, bt::alignment::same_position, opt);
        const auto selection =
            bt::detail::select_tokens("test", labels, mask, batch, time, vocabulary, bt::alignment::same_position, opt);
        const at::Tensor plain = bt::detail::plain_token_log_probs(logits, selection, sample);
        double worst = 0, worst_plain = 0;
        for (int64_t b = 0; b < batch; ++b)
          for (int64_t t = 0; t < time; ++t) {
            const at::Tensor row = logits[b][t].contiguous();
            const long double expect =
                reference_sampled(std::vector<double>(row.data_ptr<double>(), row.data_ptr<double>() + vocabulary),
                                  labels[b][t].item<int64_t>(), sample);
            worst = std::max(worst, double(std::abs(ours[b][t].item<double>() - expect)));
            worst_plain = std::max(worst_plain, double(std::abs(plain[b][t].item<double>() - expect)));
          }
        EXPECT_LT(worst, 1e-13) << "T " << temperature << " k " << top_k << " p " << top_p;
        EXPECT_LT(worst_plain, 1e-13) << "T " << temperature << " k " << top_k << " p " << top_p;
        // The fused path equals the materialised logits under the same settings.
        at::manual_seed(3);
        const at::Tensor hidden = at::randn({batch, time, width}, at::kDouble),
                         weight = at::randn({vocabulary, width}, at::kDouble);
        const at::Tensor hidden_logits = at::matmul(hidden, weight.t());
        const at::Tensor fused_labels = hidden_logits.argmax(2);
        const at::Tensor materialised =
            bt::sequence_log_probs(hidden_logits, fused_labels, mask, bt::alignment::same_position, opt);
        for (const int64_t tile : {0, 7}) {  // 7: temperature alone is tiled; top-k / top-p take whole rows
          bt::log_prob_options tiled = opt;
          tiled.vocab_tile = tile;
          const at::Tensor fused_ours = bt::fused_linear_sequence_log_probs(hidden, weight, fused_labels, mask,
                                                                            bt::alignment::same_position, 0, tiled);
          EXPECT_LT((fused_ours - materialised).abs().max().item<double>(), 1e-12) << "tile " << tile;
        }
      }
}

// Gradients under the settings: ([j == y] - p'_j) / T on the kept logits, 0 on the dropped ones,
// against autograd through the plain composition (its masks are constants).
TEST(SamplingSettings, GradientsEqualThePlainComposition) {
  const int64_t batch = 2, time = 4, vocabulary = 30;
  const at::Tensor mask = at::ones({batch, time}, at::kLong);
  for (const bt::sampling sample :
       {bt::sampling{0.5, 0, 1.0}, bt::sampling{1.3, 6, 1.0}, bt::sampling{0.8, 0, 0.6}, bt::sampling{1.0, 9, 0.8}}) {
    const at::Tensor logits = logits_with_ties(batch, time, vocabulary, 4);
    const at::Tensor labels = logits.argmax(2);
    const at::Tensor a = logits.clone().requires_grad_(true), b = logits.clone().requires_grad_(true);
    const bt::log_prob_options opt{.sample = sample};
    const at::Tensor ours = bt::sequence_log_probs(a, labels, mask, bt::alignment::same_position, opt);
    const auto selection =
        bt::detail::select_tokens("test", labels, mask, batch, time, vocabulary, bt::alignment::same_position, opt);
    const at::Tensor plain = bt::detail::reduce_tokens(bt::detail::plain_token_log_probs(b, selection, sample),
                                                       selection.active, bt::reduction::sum);
    const at::Tensor weights = at::randn({batch}, at::kDouble);
    (ours * weights).sum().backward();
    (plain * weights).sum().backward();
    EXPECT_LT((a.grad() - b.grad()).abs().max().item<double>(), 1e-13) << "T " << sample.temperature;
    // The fused path's hidden and weight gradients under the same settings.
    at::manual_seed(8);
    const at::Tensor hidden = at::randn({batch, time, 6}, at::kDouble),
                     weight = at::randn({vocabulary, 6}, at::kDouble);
    const at::Tensor h1 = hidden.clone().requires_grad_(true), w1 = weight.clone().requires_grad_(true);
    const at::Tensor h2 = hidden.clone().requires_grad_(true), w2 = weight.clone().requires_grad_(true);
    const at::Tensor hl = at::matmul(hidden, weight.t()).argmax(2);
    bt::log_prob_options tiled = opt;
    tiled.vocab_tile = 7;
    (bt::fused_linear_sequence_log_probs(h1, w1, hl, mask, bt::alignment::same_position, 3, tiled) * weights)
        .sum()
        .backward();
    (bt::sequence_log_probs(at::matmul(h2, w2.t()), hl, mask, bt::alignment::same_position, opt) * weights)
        .sum()
        .backward();
    EXPECT_LT((h1.grad() - h2.grad()).abs().max().item<double>(), 1e-12);
    EXPECT_LT((w1.grad() - w2.grad()).abs().max().item<double>(), 1e-12);
    // A frozen head: the hidden gradient formed during forward, (W_y - Σ p'_j W_j) / T.
    const at::Tensor h3 = hidden.clone().requires_grad_(true);
    (bt::fused_linear_sequence_log_probs(h3, weight, hl, mask, bt::alignment::same_position, 3, tiled) * weights)
        .sum()
        .backward();
    EXPECT_LT((h3.grad() - h2.grad()).abs().max().item<double>(), 1e-12);
  }
}

// The path other devices take (CUDA): chunks of tokens times the whole vocabulary through the
// device's row kernels, or ATen operations when it has none or declines. Run here on CPU tensors
// with three stand-ins for a device: none (ATen), brain's CPU row kernels behind the hook (as
// brain::cuda's are on CUDA: lse and threshold from forward, gradient in place), and one that
// declines. Values and gradients equal the materialised logits' for plain, temperature and
// top-k / top-p settings, trainable and frozen heads, uneven chunks.
bool cpu_rows_forward(const at::Tensor& logits, const at::Tensor& labels, const bt::sampling& s, at::Tensor& lse,
                      at::Tensor& log_prob, at::Tensor& threshold) {
  std::vector<double> scratch;
  for (int64_t r = 0; r < logits.size(0); ++r)
    log_prob.data_ptr<double>()[r] = bt::detail::token_forward(
        logits.data_ptr<double>() + r * logits.size(1), logits.size(1), labels.data_ptr<int64_t>()[r], s, scratch,
        lse.data_ptr<double>()[r], threshold.data_ptr<double>()[r]);
  return true;
}
bool cpu_rows_backward(at::Tensor& logits, const at::Tensor& labels, const bt::sampling& s, const at::Tensor& lse,
                       const at::Tensor& threshold, const at::Tensor& upstream) {
  for (int64_t r = 0; r < logits.size(0); ++r) {
    double* x = logits.data_ptr<double>() + r * logits.size(1);
    brain::kernels::sampled_token_log_prob_backward(
        x, logits.size(1), labels.data_ptr<int64_t>()[r], s,
        brain::kernels::sampled_row<double>{lse.data_ptr<double>()[r], threshold.data_ptr<double>()[r]},
        upstream.data_ptr<double>()[r], x);
  }
  return true;
}
bool decline_forward(const at::Tensor&, const at::Tensor&, const bt::sampling&, at::Tensor&, at::Tensor&, at::Tensor&) {
  return false;
}
bool decline_backward(at::Tensor&, const at::Tensor&, const bt::sampling&, const at::Tensor&, const at::Tensor&,
                      const at::Tensor&) {
  return false;
}

TEST(FusedLinearSequenceLogProbs, DevicePathChunksThroughTheDeviceRowKernels) {
  const bt::detail::device_rows kernels{&cpu_rows_forward, &cpu_rows_backward},
      declining{&decline_forward, &decline_backward};
  const int64_t batch = 3, time = 6, vocabulary = 23, width = 5;
  at::manual_seed(12);
  const at::Tensor hidden = at::randn({batch, time, width}, at::kDouble),
                   weight = at::randn({vocabulary, width}, at::kDouble);
  at::Tensor mask = at::ones({batch, time}, at::kLong);
  mask[1].slice(0, 0, 2).zero_();                                      // left padding
  mask[2].slice(0, 4, time).zero_();                                   // right padding
  const at::Tensor labels = at::matmul(hidden, weight.t()).argmax(2);  // kept under any truncation
  for (const bt::sampling sample : {bt::sampling{}, bt::sampling{0.7, 0, 1.0}, bt::sampling{1.2, 5, 0.8}})
    for (const bt::detail::device_rows* rows :
         {static_cast<const bt::detail::device_rows*>(nullptr), &kernels, &declining})
      for (const int64_t chunk : {1, 4, 100})
        for (const bool frozen : {false, true}) {
          const bt::log_prob_options opt{.sample = sample};
          const auto selection = bt::detail::select_tokens("test", labels, mask, batch, time, vocabulary,
                                                           bt::alignment::same_position, opt);
          const at::Tensor h1 = hidden.clone().requires_grad_(true), w1 = weight.clone().requires_grad_(!frozen);
          const at::Tensor h2 = hidden.clone().requires_grad_(true), w2 = weight.clone().requires_grad_(!frozen);
          const at::Tensor ours = bt::detail::chunked_linear_log_probs(h1, w1, selection, chunk, opt, rows);
          const at::Tensor plain =
              bt::sequence_log_probs(at::matmul(h2, w2.t()), labels, mask, bt::alignment::same_position, opt);
          const std::string where = "T " + std::to_string(sample.temperature) + " k " + std::to_string(sample.top_k) +
                                    " rows " +
                                    (rows == nullptr    ? "ATen"
                                     : rows == &kernels ? "kernels"
                                                        : "declining") +
                                    " chunk " + std::to_string(chunk) + (frozen ? " frozen" : "");
          EXPECT_LT((ours - plain).abs().max().item<double>(), 1e-12) << where;
          const at::Tensor weights = at::randn({batch}, at::kDouble);
          (ours * weights).sum().backward();
          (plain * weights).sum().backward();
          EXPECT_LT((h1.grad() - h2.grad()).abs().max().item<double>(), 1e-12) << where;
          if (!frozen) {
            EXPECT_LT((w1.grad() - w2.grad()).abs().max().item<double>(), 1e-12) << where;
          }
        }
}

TEST(SamplingSettings, ExcludedLabelsAndBadSettingsAreNamed) {
  const at::Tensor logits = logits_with_ties(1, 3, 10, 2), mask = at::ones({1, 3}, at::kLong);
  const at::Tensor worst = logits.argmin(2);  // never in a top-1 set
  expect_invalid(
      [&] { bt::sequence_log_probs(logits, worst, mask, bt::alignment::same_position, {.sample = {1.0, 1, 1.0}}); },
      "labels[0, 0] is outside the top-k / top-p set");
  const at::Tensor out =
      bt::sequence_log_probs(logits, worst, mask, bt::alignment::same_position,
                             {.reduce = bt::reduction::none, .sample = {1.0, 1, 1.0}, .validate = false});
  EXPECT_EQ(out[0][0].item<double>(), -INFINITY);
  expect_invalid(
      [&] { bt::sequence_log_probs(logits, worst, mask, bt::alignment::same_position, {.sample = {0.0, 0, 1.0}}); },
      "temperature = 0");
  expect_invalid(
      [&] { bt::sequence_log_probs(logits, worst, mask, bt::alignment::same_position, {.sample = {1.0, -2, 1.0}}); },
      "top_k = -2");
  expect_invalid(
      [&] { bt::sequence_log_probs(logits, worst, mask, bt::alignment::same_position, {.sample = {1.0, 0, 0.0}}); },
      "top_p = 0");
  // The fused path, unvalidated, on both of its backward routes: an excluded label's log-prob is
  // -inf and its hidden gradient exactly 0 (the weight's too), the other tokens' gradients are
  // those of the materialised logits.
  at::manual_seed(6);
  const at::Tensor hidden = at::randn({1, 3, 4}, at::kDouble), weight = at::randn({10, 4}, at::kDouble);
  const at::Tensor labels = at::matmul(hidden, weight.t()).argmax(2);
  labels[0][1] = at::matmul(hidden, weight.t())[0][1].argmin();
  const bt::log_prob_options top1{.reduce = bt::reduction::none, .sample = {0.5, 1, 1.0}, .validate = false};
  const at::Tensor h0 = hidden.clone().requires_grad_(true), w0 = weight.clone().requires_grad_(true);
  bt::sequence_log_probs(at::matmul(h0, w0.t()), labels, mask, bt::alignment::same_position, top1).sum().backward();
  for (const bool frozen : {false, true}) {
    const at::Tensor h = hidden.clone().requires_grad_(true), w = weight.clone().requires_grad_(!frozen);
    const at::Tensor fused =
        bt::fused_linear_sequence_log_probs(h, w, labels, mask, bt::alignment::same_position, 0, top1);
    EXPECT_EQ(fused[0][1].item<double>(), -INFINITY);
    EXPECT_EQ(fused[0][0].item<double>(), 0.0);  // the argmax is the whole top-1 distribution
    fused.masked_fill(fused == -INFINITY, 0).sum().backward();
    EXPECT_EQ(h.grad()[0][1].abs().max().item<double>(), 0.0) << "frozen " << frozen;
    EXPECT_LT((h.grad() - h0.grad()).abs().max().item<double>(), 1e-12) << "frozen " << frozen;
    if (!frozen) {
      EXPECT_LT((w.grad() - w0.grad()).abs().max().item<double>(), 1e-12);
    }
  }
  expect_invalid(
      [&] {
        bt::fused_linear_sequence_log_probs(hidden, weight, labels, mask, bt::alignment::same_position, 0,
                                            {.vocab_tile = -1});
      },
      "vocab_tile = -1 must be >= 0");
}

// sampled_log_softmax, what a sampler draws from: every entry of every row against the loop
// above (excluded tokens -inf), at V = 300, where peaked rows take the 64-token partial sort and
// flat ones its fall-back to a full sort, and with ties at the top-k and top-p boundaries.
TEST(SampledLogSoftmax, EveryEntryIsTheReferencesOnBothSortPaths) {
  const int64_t vocabulary = 300;
  for (const double scale : {6.0, 0.1})  // peaked: the nucleus is in the top 64; flat: it is not
    for (const bt::sampling sample : {bt::sampling{1.0, 0, 0.9}, bt::sampling{0.7, 0, 0.5}, bt::sampling{1.3, 50, 0.95},
                                      bt::sampling{1.0, 7, 1.0}, bt::sampling{0.6, 0, 1.0}}) {
      const at::Tensor logits = logits_with_ties(2, 3, vocabulary, 9) * scale;
      const at::Tensor ours = bt::sampled_log_softmax(logits, sample);
      ASSERT_EQ(ours.sizes(), logits.sizes());
      double worst = 0;
      int64_t excluded = 0;
      for (int64_t b = 0; b < 2; ++b)
        for (int64_t t = 0; t < 3; ++t) {
          const at::Tensor row = logits[b][t].contiguous();
          const std::vector<double> values(row.data_ptr<double>(), row.data_ptr<double>() + vocabulary);
          for (int64_t v = 0; v < vocabulary; ++v) {
            const long double expect = reference_sampled(values, v, sample);
            const double got = ours[b][t][v].item<double>();
            if (std::isinf(expect)) {
              EXPECT_EQ(got, -INFINITY) << "row " << b << "," << t << " token " << v;
              ++excluded;
            } else {
              worst = std::max(worst, double(std::abs(got - expect)));
            }
          }
        }
      EXPECT_LT(worst, 1e-12) << "scale " << scale << " T " << sample.temperature << " k " << sample.top_k << " p "
                              << sample.top_p;
      if (sample.top_k > 0 || sample.top_p < 1.0) {
        EXPECT_GT(excluded, 0) << "the settings should exclude tokens";
      }
    }
}

// By hand: probabilities 0.1, 0.5, 0.15, 0.25; top-p keeps the smallest most-likely set whose mass
// reaches p, renormalised; top-k applies first.
TEST(SampledLogSoftmax, TopPKeepsTheSmallestSetReachingP) {
  const at::Tensor logits = at::log(at::tensor({0.1, 0.5, 0.15, 0.25}, at::kDouble)).view({1, 4});
  const auto mask = [](std::initializer_list<int64_t> v) { return at::tensor(std::vector<int64_t>(v)).to(at::kBool); };
  const auto kept = [&](int64_t k, double p) { return at::isfinite(bt::sampled_log_softmax(logits, {1.0, k, p})[0]); };
  EXPECT_TRUE(kept(0, 0.3).equal(mask({0, 1, 0, 0})));
  EXPECT_TRUE(kept(0, 0.7).equal(mask({0, 1, 0, 1})));  // 0.75 >= 0.7
  EXPECT_TRUE(kept(0, 0.8).equal(mask({0, 1, 1, 1})));  // 0.9 >= 0.8
  EXPECT_TRUE(kept(0, 0.95).equal(mask({1, 1, 1, 1})));
  EXPECT_TRUE(kept(2, 0.6).equal(mask({0, 1, 0, 0})));  // k = 2: {2/3, 1/3}
  const at::Tensor p = bt::sampled_log_softmax(logits, {1.0, 0, 0.7})[0].exp();
  EXPECT_NEAR(p[1].item<double>(), 0.5 / 0.75, 1e-15);
  EXPECT_NEAR(p[3].item<double>(), 0.25 / 0.75, 1e-15);
  // Temperature 2 on probabilities ∝ 0.1, 0.5, 0.15, 0.25: ∝ their square roots.
  const at::Tensor t = bt::sampled_log_softmax(logits, {2.0, 0, 1.0})[0].exp();
  EXPECT_NEAR(t[1].item<double>(),
              std::sqrt(0.5) / (std::sqrt(0.1) + std::sqrt(0.5) + std::sqrt(0.15) + std::sqrt(0.25)), 1e-15);
  EXPECT_EQ(bt::sampled_log_softmax(logits.to(at::kHalf), {}).scalar_type(), at::kFloat);
  expect_invalid([&] { (void)bt::sampled_log_softmax(logits, {0.0, 0, 1.0}); },
                 "sampled_log_softmax: sampling temperature = 0");
  expect_invalid([&] { (void)bt::sampled_log_softmax(logits, {1.0, -1, 1.0}); }, "top_k = -1");
  expect_invalid([&] { (void)bt::sampled_log_softmax(logits, {1.0, 0, 1.5}); }, "top_p = 1.5");
  expect_invalid([&] { (void)bt::sampled_log_softmax(at::zeros({0}, at::kDouble), {}); },
                 "expected [..., V] with V >= 1");
}

/// A's result bit for bit.
bool bitwise_equal(const at::Tensor& a, const at::Tensor& b) {
  const at::Tensor x = a.detach().contiguous(), y = b.detach().contiguous();
  return x.sizes() == y.sizes() && x.scalar_type() == y.scalar_type() &&
         std::memcmp(x.data_ptr(), y.data_ptr(), std::size_t(x.numel()) * x.element_size()) == 0;
}

// verl#6280: a sequence's log-prob is bitwise the same alone or inside a batch, right- or
// left-padded, for every reduction and both paths, in float32 (where any reordering of a sum
// shows in the last bits).
TEST(BatchInvariance, SequenceLogProbIsBitwiseTheSameAloneOrInAnyBatch) {
  const int64_t vocabulary = 3000, width = 32, length = 9, time = 16, batch = 6;
  at::manual_seed(21);
  const at::Tensor weight = at::randn({vocabulary, width}) * 0.3;
  const at::Tensor own_hidden = at::randn({length, width}), own_labels = at::randint(vocabulary, {length}, at::kLong);
  const at::Tensor own_logits = at::matmul(own_hidden, weight.t()).contiguous();
  for (const bt::sampling sample : {bt::sampling{}, bt::sampling{0.7, 50, 0.95}})
    for (const auto reduce : {bt::reduction::sum, bt::reduction::mean}) {
      const bt::log_prob_options opt{.reduce = reduce, .sample = sample, .validate = false};
      // Alone: exactly its tokens.
      const at::Tensor alone_mask = at::ones({1, length}, at::kLong);
      const at::Tensor alone = bt::sequence_log_probs(own_logits.unsqueeze(0), own_labels.unsqueeze(0), alone_mask,
                                                      bt::alignment::same_position, opt);
      const at::Tensor alone_fused = bt::fused_linear_sequence_log_probs(
          own_hidden.unsqueeze(0), weight, own_labels.unsqueeze(0), alone_mask, bt::alignment::same_position, 4, opt);
      for (const int64_t offset : {int64_t{0}, time - length, int64_t{3}}) {  // right, left, both
        for (const int64_t row : {int64_t{0}, int64_t{4}}) {
          at::Tensor hidden = at::randn({batch, time, width}),
                     labels = at::randint(vocabulary, {batch, time}, at::kLong);
          at::Tensor mask = (at::rand({batch, time}) > 0.3).to(at::kLong);
          hidden[row].zero_();
          hidden[row].slice(0, offset, offset + length).copy_(own_hidden);
          labels[row].slice(0, offset, offset + length).copy_(own_labels);
          mask[row].zero_();
          mask[row].slice(0, offset, offset + length).fill_(1);
          at::Tensor logits = at::matmul(hidden, weight.t()).contiguous();
          logits[row].slice(0, offset, offset + length).copy_(own_logits);  // the same rows, bit for bit
          const at::Tensor batched = bt::sequence_log_probs(logits, labels, mask, bt::alignment::same_position, opt);
          const at::Tensor fused =
              bt::fused_linear_sequence_log_probs(hidden, weight, labels, mask, bt::alignment::same_position, 4, opt);
          EXPECT_TRUE(bitwise_equal(batched[row], alone[0])) << "offset " << offset << " row " << row;
          EXPECT_TRUE(bitwise_equal(fused[row], alone_fused[0])) << "offset " << offset << " row " << row;
        }
      }
    }
}

// The device registry is one per program: an implementation registered by another translation
// unit (odr_torch_registry_test.cpp, which stands for one compiled with brain::cuda) serves this
// one, which registered nothing. Before, a macro chose the dispatch per translation unit, and the
// linker kept one of the differing inline definitions.
TEST(DeviceRegistry, EveryTranslationUnitUsesTheProgramsRegistrations) {
  const at::Tensor logits = at::empty({2, 3, 5}, at::TensorOptions().dtype(at::kFloat).device(at::kMeta));
  const at::Tensor labels = at::zeros({2, 3}, at::kLong), mask = at::ones({2, 3}, at::kLong);
  ASSERT_NE(bt::detail::find_device_log_probs(c10::DeviceType::Meta), nullptr);
  const at::Tensor here = bt::sequence_log_probs(logits, labels, mask, bt::alignment::same_position);
  const at::Tensor there = registered_in_other_unit(logits, labels, mask);
  EXPECT_EQ(here.device().type(), c10::DeviceType::CPU);
  EXPECT_EQ(here.item<double>(), 42.0);
  EXPECT_EQ(there.item<double>(), 42.0);
  EXPECT_EQ(bt::detail::find_device_log_probs(c10::DeviceType::CPU), nullptr);
}

// The registry template both registries are made of (this header's and backends/torch.hpp's
// group loss): one table per entry type, empty until something registers, the last registration
// wins, and a registration is seen through find, all and the named wrappers alike.
struct test_entry {
  int id;
};
TEST(DeviceRegistry, TheTemplateKeepsOneTablePerEntryType) {
  using registry = brain::detail::device_registry<test_entry>;
  constexpr c10::DeviceType type = c10::DeviceType::PrivateUse1;
  const test_entry first{1}, second{2};
  EXPECT_EQ(registry::find(type), nullptr);
  EXPECT_EQ(std::count(registry::all().begin(), registry::all().end(), nullptr),
            static_cast<std::ptrdiff_t>(registry::all().size()));
  EXPECT_TRUE(registry::add(type, &first));
  EXPECT_TRUE(registry::add(type, &second));
  EXPECT_EQ(registry::find(type), &second);
  EXPECT_EQ(registry::all()[static_cast<std::size_t>(type)], &second);
  EXPECT_EQ(registry::find(c10::DeviceType::Meta), nullptr);
  EXPECT_EQ(bt::detail::find_device_log_probs(type), nullptr);  // another entry type: another table
  registry::add(type, nullptr);
  EXPECT_EQ(registry::find(type), nullptr);

  const bt::detail::device_log_probs* meta = bt::detail::find_device_log_probs(c10::DeviceType::Meta);
  ASSERT_NE(meta, nullptr);  // registered by odr_torch_registry_test.cpp
  EXPECT_EQ(bt::detail::log_probs_registry::find(c10::DeviceType::Meta), meta);
  EXPECT_EQ(bt::detail::log_probs_registry::all()[static_cast<std::size_t>(c10::DeviceType::Meta)], meta);
}

}  // namespace
