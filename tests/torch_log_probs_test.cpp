// brain::torch::sequence_log_probs and fused_linear_sequence_log_probs (torch/log_probs.hpp):
// values against a double-precision loop, gradients against the plain ATen composition, left and
// right padding, both alignments, an all-masked row, half precision, validation, and composition
// with brain_loss.

#include <brain/torch/log_probs.hpp>

#include "support/properties.hpp"

#include <cmath>
#include <string>

namespace {

namespace bt = brain::torch;
using brain_test::random_matrix_host;

/// Per-token log-probs [B, T] by explicit loops in double: the specification of the alignment.
at::Tensor reference_tokens(const at::Tensor& logits, const at::Tensor& labels, const at::Tensor& mask, bt::alignment align) {
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
      const at::Tensor tokens = bt::sequence_log_probs(in.logits, in.labels, in.mask, align, {.reduce = bt::reduction::none});
      EXPECT_EQ(tokens.sizes(), in.mask.sizes());
      EXPECT_LT(max_rel_diff(tokens, expect), 1e-5) << "V = " << vocabulary;
      const at::Tensor sum = bt::sequence_log_probs(in.logits, in.labels, in.mask, align);
      EXPECT_LT(max_rel_diff(sum, expect.sum(1)), 1e-5);
      const at::Tensor mean = bt::sequence_log_probs(in.logits, in.labels, in.mask, align, {.reduce = bt::reduction::mean});
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
      const at::Tensor ours_in = in.logits.clone().requires_grad_(true), plain_in = in.logits.clone().requires_grad_(true);
      const at::Tensor ours = bt::sequence_log_probs(ours_in, in.labels, in.mask, align, {.reduce = reduce});
      const auto selection = bt::detail::select_tokens("test", in.labels, in.mask, 4, 7, 600, align, true);
      const at::Tensor plain = bt::detail::reduce_tokens(bt::detail::plain_token_log_probs(plain_in, selection), selection.active, reduce);
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
  expect_invalid([&] { bt::sequence_log_probs(in.logits, in.labels.slice(1, 0, 6), in.mask, same); }, "labels has shape");
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
    for (const int64_t chunk : {0, 1, 3, 1000}) {
      const at::Tensor h1 = hidden.clone().requires_grad_(true), w1 = weight.clone().requires_grad_(true);
      const at::Tensor h2 = hidden.clone().requires_grad_(true), w2 = weight.clone().requires_grad_(true);
      const at::Tensor fused = bt::fused_linear_sequence_log_probs(h1, w1, in.labels, in.mask, align, chunk);
      const at::Tensor plain = bt::sequence_log_probs(at::matmul(h2, w2.t()), in.labels, in.mask, align);
      EXPECT_LT(max_rel_diff(fused, reference_tokens(at::matmul(hidden, weight.t()), in.labels, in.mask, align).sum(1)), 1e-12);
      const at::Tensor weights = at::randn({4}, at::kDouble);
      (fused * weights).sum().backward();
      (plain * weights).sum().backward();
      EXPECT_LT((h1.grad() - h2.grad()).abs().max().item<double>(), 1e-12) << "chunk " << chunk;
      EXPECT_LT((w1.grad() - w2.grad()).abs().max().item<double>(), 1e-12) << "chunk " << chunk;
    }
}

// A frozen weight gets no gradient (and no buffer); the hidden gradient, computed during forward
// on that path, equals the plain one for every reduction and chunking.
TEST(FusedLinearSequenceLogProbs, FrozenWeightGetsNoGradient) {
  const batch in = make_batch(50, at::kDouble);
  const at::Tensor hidden = at::randn({4, 7, 8}, at::kDouble), weight = at::randn({50, 8}, at::kDouble);
  for (const auto reduce : {bt::reduction::sum, bt::reduction::mean, bt::reduction::none})
    for (const int64_t chunk : {0, 2}) {
      const at::Tensor h1 = hidden.clone().requires_grad_(true), h2 = hidden.clone().requires_grad_(true);
      const at::Tensor w = weight.clone();
      const at::Tensor fused = bt::fused_linear_sequence_log_probs(h1, w, in.labels, in.mask, bt::alignment::next_token,
                                                                   chunk, {.reduce = reduce});
      const at::Tensor plain = bt::sequence_log_probs(at::matmul(h2, w.t()), in.labels, in.mask, bt::alignment::next_token,
                                                      {.reduce = reduce});
      EXPECT_LT((fused - plain).abs().max().item<double>(), 1e-12);
      const at::Tensor upstream = at::randn(fused.sizes(), at::kDouble);
      (fused * upstream).sum().backward();
      (plain * upstream).sum().backward();
      EXPECT_FALSE(w.grad().defined());
      EXPECT_LT((h1.grad() - h2.grad()).abs().max().item<double>(), 1e-12);
      EXPECT_EQ(h1.grad()[3].abs().max().item<double>(), 0.0);  // the all-masked row
    }
}

TEST(FusedLinearSequenceLogProbs, FloatAgreesWithDoubleTo1e4) {
  const batch in = make_batch(5000, at::kFloat);
  at::manual_seed(9);
  const at::Tensor hidden = at::randn({4, 7, 64}), weight = at::randn({5000, 64}) * 0.2;
  const at::Tensor f = bt::fused_linear_sequence_log_probs(hidden, weight, in.labels, in.mask, bt::alignment::next_token);
  const at::Tensor d = reference_tokens(at::matmul(hidden.to(at::kDouble), weight.to(at::kDouble).t()), in.labels, in.mask,
                                        bt::alignment::next_token).sum(1);
  EXPECT_LT(max_rel_diff(f, d), 1e-4);
}

// Composition with brain_loss by autograd: the gradient reaching the hidden states equals the one
// through materialised logits.
TEST(FusedLinearSequenceLogProbs, ComposesWithBrainLoss) {
  const int64_t m = 2, n = 2;  // 4 sequences = 2 prompts x 2 samples
  const batch in = make_batch(40, at::kDouble);
  const at::Tensor hidden = at::randn({4, 7, 16}, at::kDouble), weight = at::randn({40, 16}, at::kDouble);
  const at::Tensor lq = at::randn({m, n}, at::kDouble) - 20, l0 = at::randn({m, n}, at::kDouble) - 20, r = at::randn({m, n}, at::kDouble);
  at::Tensor grads[2];
  for (int way = 0; way < 2; ++way) {
    const at::Tensor h = hidden.clone().requires_grad_(true);
    const at::Tensor lp = way == 0 ? bt::fused_linear_sequence_log_probs(h, weight, in.labels, in.mask, bt::alignment::next_token)
                                   : bt::sequence_log_probs(at::matmul(h, weight.t()), in.labels, in.mask, bt::alignment::next_token);
    brain::brain_loss(brain::samples<at::Tensor>{lp.view({m, n}), lq, l0, r}).loss.backward();
    grads[way] = h.grad();
  }
  EXPECT_GT(grads[1].abs().max().item<double>(), 0.0);
  EXPECT_LT((grads[0] - grads[1]).abs().max().item<double>(), 1e-12);
}

}  // namespace
