#pragma once
// The BRAIn loss of one group (one prompt's n samples) over raw memory, from BRAIN_HOST_DEVICE
// pieces (checks, log weights, per-sample outputs) that the CPU loops below and the CUDA kernels
// (brain/backends/cuda/group_loss.cuh) share. brain_loss runs the CPU loops for Eigen matrices and
// CPU tensors of LibTorch, the CUDA kernel for CUDA tensors.
//
// Per group, with g the goodness model (§4) and i over the n samples:
//   log alpha_i = log g(r_i) + log p_i - log q_i                                 (eq. 6)
//   log beta_i  = log q_theta,i - log q_i                                        (eq. 11)
//   log alpha-bar_i = log alpha_i - logsumexp(log alpha),  likewise beta-bar     (eqs. 6, 11, 21)
//   KL(alpha-bar || beta-bar) = sum_i alpha-bar_i (log alpha-bar_i - log beta-bar_i)  (eq. 14)
//   d loss / d log q_theta,i = (beta-bar_i - alpha-bar_i) / prompts              (eq. 12, Theorem 4.2)
// On the GPU the logsumexps are online (running max and sum), so a group takes one pass for them
// and one for the outputs, split across a warp or a block. On the CPU (group_loss_rows) a group's
// values stay in cache, and three passes (maxima, exponentials and sums, outputs) vectorise: the
// exponential is a branch-free polynomial, the reductions run in independent lanes.
//
// A bad group is reported in brain_loss's words (validate.hpp, weights.hpp): whichever path runs,
// an error names the function, argument, row, column and value the same way.

#include <brain/config.hpp>
#include <brain/errors.hpp>
#include <brain/kernels/token_log_probs.hpp>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <string_view>
#include <vector>

// Before a CPU loop whose iterations touch distinct elements: the compiler may vectorise it
// without run-time alias checks (GCC gives up past 10 pairs of pointers, and ignores __restrict on
// local pointers). Not under nvcc, whose device passes never see these host-only loops.
#if defined(__clang__)
#define BRAIN_INDEPENDENT_ITERATIONS _Pragma("clang loop vectorize(assume_safety)")
#elif defined(__GNUC__) && !defined(__CUDACC__)
#define BRAIN_INDEPENDENT_ITERATIONS _Pragma("GCC ivdep")
#else
#define BRAIN_INDEPENDENT_ITERATIONS
#endif

namespace brain::inline v0::kernels {

/// Why a group has no loss. Input codes name the argument; the order is the order of the checks.
enum class group_status : std::uint8_t {
  ok = 0,
  bad_log_policy,     ///< NaN or ±inf in log_policy
  bad_log_proposal,   ///< NaN or ±inf in log_proposal
  bad_log_prior,      ///< NaN or +inf in log_prior (-inf is allowed: a zero target weight)
  bad_reward,         ///< NaN or ±inf in reward, or its log goodness
  no_target_support,  ///< every target weight is zero (log alpha = -inf for all n samples)
  weight_overflow,    ///< the largest log importance weight is +inf or NaN
  baseline_overflow,  ///< log_policy - log_proposal overflowed (eq. 11's log beta is not finite)
};

/// What group_status means, for error messages.
inline std::string_view describe(group_status s) {
  switch (s) {
    case group_status::ok: return "ok";
    case group_status::bad_log_policy: return "log_policy holds NaN or an infinity";
    case group_status::bad_log_proposal: return "log_proposal holds NaN or an infinity";
    case group_status::bad_log_prior: return "log_prior holds NaN or +inf";
    case group_status::bad_reward: return "reward (or its log goodness) holds NaN or an infinity";
    case group_status::baseline_overflow:
      return "log_policy - log_proposal overflowed (the log baseline weight of eq. 11 is not finite)";
    case group_status::no_target_support:
      return "every target weight is zero (log_prior + log goodness is -inf for all samples); the posterior gives "
             "this group no support";
    case group_status::weight_overflow:
      return "the largest log importance weight overflowed (log goodness + log_prior - log_proposal)";
  }
  return "unknown status";
}

/// Pointers to [prompts, n] row-major arrays (host or device memory, as the caller says).
template <class T>
struct group_loss_inputs {
  const T* log_policy;    ///< log q_theta(y|x): the policy being trained
  const T* log_proposal;  ///< log q(y|x): the proposal the samples came from
  const T* log_prior;     ///< log p(y|x): the SFT prior; -inf allowed
  const T* reward;        ///< r(x, y)
  index prompts;
  index n;
  /// Every [prompts, n] array, inputs and outputs, is column-major (element (i, j) at
  /// i + j * prompts) rather than row-major. The CPU path only; the CUDA kernels need row-major.
  bool column_major = false;
};

/// Where the results go: [prompts, n] arrays, per_prompt [prompts]; loss (one value) may be null.
template <class T>
struct group_loss_outputs {
  T* target_weights;    ///< alpha-bar, rows sum to 1
  T* baseline_weights;  ///< beta-bar, rows sum to 1
  T* grad_log_policy;   ///< (beta-bar - alpha-bar) / prompts
  T* per_prompt;        ///< KL(alpha-bar || beta-bar) per group (eq. 14)
  T* loss;              ///< mean of per_prompt; nullptr to skip
};

/// The first bad input among one sample's values, or ok: the reward itself must be finite (as in
/// brain_loss), not only its log goodness (logistic goodness maps +inf to a finite 0).
template <class Acc>
BRAIN_HOST_DEVICE group_status check_sample(Acc log_policy, Acc log_proposal, Acc log_prior, Acc reward,
                                            Acc log_goodness) {
  constexpr Acc inf = std::numeric_limits<Acc>::infinity();
  // v - v is 0 for finite v, NaN for NaN and ±inf.
  if (!(log_policy - log_policy == Acc(0))) return group_status::bad_log_policy;
  if (!(log_proposal - log_proposal == Acc(0))) return group_status::bad_log_proposal;
  if (!(log_prior < inf)) return group_status::bad_log_prior;
  if (!(reward - reward == Acc(0))) return group_status::bad_reward;
  if (!(log_goodness - log_goodness == Acc(0))) return group_status::bad_reward;
  const Acc log_beta = log_policy - log_proposal;
  if (!(log_beta - log_beta == Acc(0))) return group_status::baseline_overflow;
  return group_status::ok;
}

/// log g(r) in the accumulation type, for a goodness model of brain/goodness.hpp (its
/// operator() is BRAIN_HOST_DEVICE).
template <class Acc, class G>
BRAIN_HOST_DEVICE Acc log_goodness_value(const G& goodness, Acc reward) {
  return static_cast<Acc>(goodness(static_cast<double>(reward)));
}

/// log alpha_i (eq. 6, unnormalised).
template <class Acc>
BRAIN_HOST_DEVICE Acc log_importance_weight(Acc log_goodness, Acc log_prior, Acc log_proposal) {
  return log_goodness + log_prior - log_proposal;
}

/// log beta_i (eq. 11, unnormalised).
template <class Acc>
BRAIN_HOST_DEVICE Acc log_baseline_weight(Acc log_policy, Acc log_proposal) {
  return log_policy - log_proposal;
}

/// A group's status once its log-sum-exps are known.
template <class Acc>
BRAIN_HOST_DEVICE group_status check_group(Acc lse_alpha) {
  if (lse_alpha == -std::numeric_limits<Acc>::infinity()) return group_status::no_target_support;
  if (!(lse_alpha < std::numeric_limits<Acc>::infinity())) return group_status::weight_overflow;
  return group_status::ok;
}

/// One sample's outputs given its group's log-sum-exps.
template <class Acc>
struct sample_terms {
  Acc target;    // alpha-bar_i
  Acc baseline;  // beta-bar_i
  Acc kl;        // alpha-bar_i (log alpha-bar_i - log beta-bar_i), 0 where alpha-bar_i = 0 (eq. 14)
  Acc grad;      // (beta-bar_i - alpha-bar_i) * inv_prompts (eq. 12)
};

template <class Acc>
BRAIN_HOST_DEVICE sample_terms<Acc> sample_outputs(Acc log_alpha, Acc log_beta, Acc lse_alpha, Acc lse_beta,
                                                   Acc inv_prompts) {
  const Acc log_target = log_alpha - lse_alpha, log_baseline = log_beta - lse_beta;
  const Acc target = exp_approx(log_target), baseline = exp_approx(log_baseline);
  const Acc kl = target == Acc(0) ? Acc(0) : target * (log_target - log_baseline);  // 0 log 0 = 0
  return {target, baseline, kl, (baseline - target) * inv_prompts};
}

/// Throws for group `row`, whose status is `status`, in brain_loss's words (validate.hpp,
/// weights.hpp): the argument, row, column and value of the row's first bad sample, or the row
/// alone for a status of the whole group (no support, overflow of the largest weight). The
/// arguments hold the row's n values of each input, in host memory.
template <class T, class G>
[[noreturn]] void fail_group(std::string_view where, index row, group_status status, const T* log_policy,
                             const T* log_proposal, const T* log_prior, const T* reward, index n, const G& goodness) {
  using acc = accumulate_t<T>;
  using brain::detail::describe_value;
  using brain::detail::fail;
  for (index j = 0; j < n; ++j) {
    const acc lp = log_policy[j], lq = log_proposal[j], l0 = log_prior[j], r = reward[j];
    const acc lg = log_goodness_value<acc>(goodness, r);
    switch (check_sample(lp, lq, l0, r, lg)) {
      case group_status::ok: continue;
      case group_status::bad_log_policy: fail(where, "log_policy[", row, ", ", j, "] is ", describe_value(lp), " (must be finite)");
      case group_status::bad_log_proposal:
        fail(where, "log_proposal[", row, ", ", j, "] is ", describe_value(lq), " (must be finite)");
      case group_status::bad_log_prior:
        fail(where, "log_prior[", row, ", ", j, "] is ", describe_value(l0), " (must be a number below +inf)");
      case group_status::bad_reward:
        if (!(r - r == acc(0))) fail(where, "reward[", row, ", ", j, "] is ", describe_value(r), " (must be finite)");
        fail(where, "log goodness of reward[", row, ", ", j, "] is ", describe_value(lg), " (must be finite)");
      default:
        fail(where, "row ", row, ", column ", j, ": log_policy - log_proposal = ", describe_value(lp), " - ",
             describe_value(lq), " overflowed to ", describe_value(log_baseline_weight(lp, lq)),
             " (baseline weight, eq. 11)");
    }
  }
  if (status == group_status::no_target_support)
    fail(where, "row ", row, ": every target weight is zero (log_prior + log goodness is -inf for all ", n,
         " samples); the posterior gives this group no support");
  if (status == group_status::weight_overflow) {
    acc largest = -std::numeric_limits<acc>::infinity();
    for (index j = 0; j < n; ++j) {
      const acc la = log_importance_weight(log_goodness_value<acc>(goodness, static_cast<acc>(reward[j])),
                                           static_cast<acc>(log_prior[j]), static_cast<acc>(log_proposal[j]));
      if (!(la <= largest)) largest = la;  // NaN and +inf win
    }
    fail(where, "row ", row, ": the largest log importance weight is ", describe_value(largest),
         " (log goodness + log_prior - log_proposal overflowed)");
  }
  fail(where, "row ", row, ": ", describe(status));
}

namespace detail {

/// exp(x) in double without a library call, so that the CPU loops below vectorise: x = k ln 2 + r
/// with |r| <= ln 2 / 2 (Cody and Waite's two-part ln 2), exp(r) = 1 + 2 r P(r^2) / (Q(r^2) - r P(r^2))
/// with Cephes' coefficients (about 1 ulp; a division-free Taylor polynomial to r^13 measured no
/// faster here), times 2^k applied as two powers of two so that denormal results are
/// right. Exactly 0 below log(denorm_min) (so exp(-inf) = 0, as the Eigen backend's exp), +inf
/// above log(max), NaN for NaN.
BRAIN_INLINE_ELEMENT double exp_vectorisable(double x) {
  constexpr double log2e = 1.4426950408889634, ln2_hi = 6.93145751953125e-1, ln2_lo = 1.42860682030941723212e-6;
  constexpr double lo = -745.13321910194122, hi = 709.78271289338397;
  constexpr double shifter = 6755399441055744.0;  // 1.5 * 2^52: adding it rounds to an integer
  const double clamped = select(x < lo, lo, select(x > hi, hi, x));
  const double k = (clamped * log2e + shifter) - shifter;
  const double r = (clamped - k * ln2_hi) - k * ln2_lo, r2 = r * r;
  const double p = r * ((1.26177193074810590878e-4 * r2 + 3.02994407707441961300e-2) * r2 + 9.99999999999999999910e-1);
  const double q = ((3.00198505138664455042e-6 * r2 + 2.52448340349684104192e-3) * r2 + 2.27265548208155028766e-1) * r2 +
                   2.00000000000000000009e0;
  const double e = 1.0 + 2.0 * p / (q - p);
  // 2^k as 2^k1 * 2^k2, k1 = round(k / 2): each factor's exponent stays normal for k in [-1075, 1024].
  const double k1 = (k * 0.5 + shifter) - shifter, k2 = k - k1;
  constexpr std::uint64_t shifter_bits = std::bit_cast<std::uint64_t>(shifter);
  const auto bits_of = [](double integer) {  // the integer's two's complement, read off the shifted bits
    return std::bit_cast<std::uint64_t>(integer + 6755399441055744.0) - shifter_bits;
  };
  const double scale1 = std::bit_cast<double>((bits_of(k1) + 1023u) << 52);
  const double scale2 = std::bit_cast<double>((bits_of(k2) + 1023u) << 52);
  const double value = e * scale1 * scale2;
  return select(x < lo, 0.0, select(x > hi, std::numeric_limits<double>::infinity(), select(x != x, x, value)));
}
BRAIN_INLINE_ELEMENT float exp_vectorisable(float x) { return exp_approx(x); }

template <class Acc>
Acc larger(Acc a, Acc b) { return select(b > a, b, a); }  // NaN never wins: the checks catch it

/// Independent accumulators of the reductions along a contiguous row, so the compiler can keep
/// them in vector registers without reordering a sum itself.
inline constexpr index group_lanes = 8;

/// v - v: 0 for finite v, NaN for NaN and infinities; summed, a row's "all finite" in one add each.
template <class Acc>
Acc finite_probe(Acc v) { return v - v; }
/// 0 when v may be a log prior (below +inf, -inf allowed), else NaN.
template <class Acc>
Acc prior_probe(Acc v) { return select(v < std::numeric_limits<Acc>::infinity(), Acc(0), std::numeric_limits<Acc>::quiet_NaN()); }

/// One sample's unnormalised log weights and its validity probe (0 when the sample is good, NaN
/// otherwise: the checks of check_sample as arithmetic, so that the loops stay branch-free).
template <class Acc>
struct sample_weights {
  Acc log_alpha, log_beta, probe;
};
template <class Acc, class G, class T>
sample_weights<Acc> weigh_sample(const G& model, T policy, T proposal, T prior, T reward) {
  const Acc lp = policy, lq = proposal, l0 = prior, r = reward;
  const Acc lg = log_goodness_value<Acc>(model, r);
  const Acc a = log_importance_weight(lg, l0, lq), b = log_baseline_weight(lp, lq);  // eqs. 6, 11
  return {a, b, finite_probe(lp) + finite_probe(lq) + prior_probe(l0) + finite_probe(r) + finite_probe(lg) + finite_probe(b)};
}

/// The first bad input among row `row`'s samples (check_sample's code), or ok: the loops below
/// only know that some sample of a row is bad, and call this on that (error) path.
template <class T, class G>
group_status first_bad_sample(const group_loss_inputs<T>& in, const G& goodness, index row) {
  using acc = accumulate_t<T>;
  for (index j = 0; j < in.n; ++j) {
    const index at = in.column_major ? row + j * in.prompts : row * in.n + j;
    const acc r = in.reward[at];
    const group_status s = check_sample<acc>(in.log_policy[at], in.log_proposal[at], in.log_prior[at], r,
                                             log_goodness_value<acc>(goodness, r));
    if (s != group_status::ok) return s;
  }
  return group_status::ok;
}

/// Scratch for one row (row-major) or one tile of rows (column-major): log alpha, log beta and
/// their exponentials, in the accumulation type.
template <class Acc>
struct group_scratch {
  std::unique_ptr<Acc[]> values;  // uninitialised: every element is written before it is read
  Acc *log_alpha = nullptr, *log_beta = nullptr, *alpha = nullptr, *beta = nullptr;
  explicit group_scratch(index size) : values(std::make_unique_for_overwrite<Acc[]>(static_cast<std::size_t>(4 * size))) {
    log_alpha = values.get(), log_beta = log_alpha + size, alpha = log_beta + size, beta = alpha + size;
  }
};

/// The loss of row `row` of row-major arrays: three passes over the row's n values in cache
/// (weights and maxima, exponentials and sums, outputs), each a vectorisable loop. Returns
/// the row's status; writes its outputs and per_prompt[row] (NaN where the status is not ok).
template <class T, class G>
group_status group_loss_row_major(const group_loss_inputs<T>& in, const group_loss_outputs<T>& out, const G& goodness,
                                  index row, group_scratch<accumulate_t<T>>& scratch) {
  using acc = accumulate_t<T>;
  constexpr acc inf = std::numeric_limits<acc>::infinity();
  const index n = in.n, at = row * n, whole = n - n % group_lanes;
  // A local copy of the model: a store to the scratch could otherwise change it (its beta is a
  // double), and the loops would reload it and not vectorise.
  const G model = goodness;
  const T *const policy = in.log_policy + at, *const proposal = in.log_proposal + at,
                           *const prior = in.log_prior + at, *const reward = in.reward + at;
  acc *const la = scratch.log_alpha, *const lb = scratch.log_beta, *const ea = scratch.alpha, *const eb = scratch.beta;
  acc max_a[group_lanes], max_b[group_lanes], probe[group_lanes];
  for (index l = 0; l < group_lanes; ++l) max_a[l] = max_b[l] = -inf, probe[l] = 0;
  const auto weigh = [&](index j, index l) {
    const sample_weights<acc> w = weigh_sample<acc>(model, policy[j], proposal[j], prior[j], reward[j]);
    la[j] = w.log_alpha;
    lb[j] = w.log_beta;
    max_a[l] = larger(max_a[l], w.log_alpha);
    max_b[l] = larger(max_b[l], w.log_beta);
    probe[l] += w.probe;
  };
  for (index j = 0; j < whole; j += group_lanes) {
    BRAIN_INDEPENDENT_ITERATIONS
    for (index l = 0; l < group_lanes; ++l) weigh(j + l, l);
  }
  for (index j = whole; j < n; ++j) weigh(j, 0);
  acc ma = -inf, mb = -inf, bad = 0;
  for (index l = 0; l < group_lanes; ++l) ma = larger(ma, max_a[l]), mb = larger(mb, max_b[l]), bad += probe[l];

  acc sum_a[group_lanes], sum_b[group_lanes];
  for (index l = 0; l < group_lanes; ++l) sum_a[l] = sum_b[l] = 0;
  const auto exponentiate = [&](index j, index l) {
    sum_a[l] += ea[j] = exp_vectorisable(la[j] - ma);
    sum_b[l] += eb[j] = exp_vectorisable(lb[j] - mb);
  };
  for (index j = 0; j < whole; j += group_lanes) {
    BRAIN_INDEPENDENT_ITERATIONS
    for (index l = 0; l < group_lanes; ++l) exponentiate(j + l, l);
  }
  for (index j = whole; j < n; ++j) exponentiate(j, 0);
  acc sa = 0, sb = 0;
  for (index l = 0; l < group_lanes; ++l) sa += sum_a[l], sb += sum_b[l];

  // alpha-bar = alpha / sum alpha, log alpha-bar = log alpha - logsumexp (eqs. 6, 21); likewise beta-bar (eq. 11).
  const acc lse_a = ma + std::log(sa), lse_b = mb + std::log(sb);
  const acc inv_a = acc(1) / sa, inv_b = acc(1) / sb, inv_prompts = acc(1) / static_cast<acc>(in.prompts);
  acc kl[group_lanes];
  for (index l = 0; l < group_lanes; ++l) kl[l] = 0;
  T *const target_out = out.target_weights + at, *const baseline_out = out.baseline_weights + at,
                     *const grad_out = out.grad_log_policy + at;
  const auto emit = [&](index j, index l) {
    const acc target = ea[j] * inv_a, baseline = eb[j] * inv_b;
    kl[l] += select(target == acc(0), acc(0), target * ((la[j] - lse_a) - (lb[j] - lse_b)));  // eq. 14, 0 log 0 = 0
    target_out[j] = static_cast<T>(target);
    baseline_out[j] = static_cast<T>(baseline);
    grad_out[j] = static_cast<T>((baseline - target) * inv_prompts);  // eq. 12
  };
  for (index j = 0; j < whole; j += group_lanes) {
    BRAIN_INDEPENDENT_ITERATIONS
    for (index l = 0; l < group_lanes; ++l) emit(j + l, l);
  }
  for (index j = whole; j < n; ++j) emit(j, 0);
  acc total = 0;
  for (index l = 0; l < group_lanes; ++l) total += kl[l];
  out.per_prompt[row] = static_cast<T>(total);
  if (!(bad == acc(0))) return first_bad_sample(in, goodness, row);
  return check_group(ma == -inf ? ma : lse_a);  // all -inf: lse_a is NaN, not -inf
}

/// Rows per tile of column-major arrays: the tile's rows are the vector lanes. 256 rows read each
/// column as 2 KiB runs (double), which the prefetchers follow: 64 measured 1.6x slower at 65536x64.
inline constexpr index column_major_tile = 256;

/// The loss of rows [begin, begin + count) of column-major arrays (element (i, j) at i + j * prompts):
/// the same three passes, each over the tile's columns with the rows as the contiguous, vectorised
/// index. Writes statuses[0..count).
template <class T, class G>
void group_loss_column_major(const group_loss_inputs<T>& in, const group_loss_outputs<T>& out, const G& goodness,
                             index begin, index count, group_scratch<accumulate_t<T>>& scratch,
                             group_status* statuses) {
  using acc = accumulate_t<T>;
  constexpr acc inf = std::numeric_limits<acc>::infinity();
  constexpr index B = column_major_tile;
  const index n = in.n, stride = in.prompts;
  acc *const la = scratch.log_alpha, *const lb = scratch.log_beta, *const ea = scratch.alpha, *const eb = scratch.beta;
  const G model = goodness;  // a local copy: stores through the scratch pointers cannot change it
  acc ma[B], mb[B], bad[B], sa[B], sb[B], kl[B];
  for (index b = 0; b < count; ++b) ma[b] = mb[b] = -inf, bad[b] = sa[b] = sb[b] = kl[b] = 0;
  for (index j = 0; j < n; ++j) {
    const index src = begin + j * stride;
    const T *const policy = in.log_policy + src, *const proposal = in.log_proposal + src,
                             *const prior = in.log_prior + src, *const reward = in.reward + src;
    acc *const log_alpha = la + j * B, *const log_beta = lb + j * B;
    BRAIN_INDEPENDENT_ITERATIONS
    for (index b = 0; b < count; ++b) {
      const sample_weights<acc> w = weigh_sample<acc>(model, policy[b], proposal[b], prior[b], reward[b]);
      log_alpha[b] = w.log_alpha;
      log_beta[b] = w.log_beta;
      ma[b] = larger(ma[b], w.log_alpha);
      mb[b] = larger(mb[b], w.log_beta);
      bad[b] += w.probe;
    }
  }
  for (index j = 0; j < n; ++j) {
    BRAIN_INDEPENDENT_ITERATIONS
    for (index b = 0; b < count; ++b) {
      sa[b] += ea[j * B + b] = exp_vectorisable(la[j * B + b] - ma[b]);
      sb[b] += eb[j * B + b] = exp_vectorisable(lb[j * B + b] - mb[b]);
    }
  }
  acc lse_a[B], lse_b[B], inv_a[B], inv_b[B];
  for (index b = 0; b < count; ++b) {
    lse_a[b] = ma[b] + std::log(sa[b]), lse_b[b] = mb[b] + std::log(sb[b]);
    inv_a[b] = acc(1) / sa[b], inv_b[b] = acc(1) / sb[b];
  }
  const acc inv_prompts = acc(1) / static_cast<acc>(in.prompts);
  for (index j = 0; j < n; ++j) {
    const index o = begin + j * stride;
    const acc *const log_alpha = la + j * B, *const log_beta = lb + j * B,
                                *const alpha = ea + j * B, *const beta = eb + j * B;
    T *const target_out = out.target_weights + o, *const baseline_out = out.baseline_weights + o,
                       *const grad_out = out.grad_log_policy + o;
    BRAIN_INDEPENDENT_ITERATIONS
    for (index b = 0; b < count; ++b) {
      const acc target = alpha[b] * inv_a[b], baseline = beta[b] * inv_b[b];
      kl[b] += select(target == acc(0), acc(0), target * ((log_alpha[b] - lse_a[b]) - (log_beta[b] - lse_b[b])));  // eq. 14
      target_out[b] = static_cast<T>(target);
      baseline_out[b] = static_cast<T>(baseline);
      grad_out[b] = static_cast<T>((baseline - target) * inv_prompts);  // eq. 12
    }
  }
  for (index b = 0; b < count; ++b) {
    out.per_prompt[begin + b] = static_cast<T>(kl[b]);
    statuses[b] = bad[b] == acc(0) ? check_group(ma[b] == -inf ? ma[b] : lse_a[b]) : first_bad_sample(in, goodness, begin + b);
  }
}

}  // namespace detail

/// Throws std::invalid_argument for a group_loss call whose sizes or pointers are unusable.
template <class T>
void check_group_loss_arguments(std::string_view where, const group_loss_inputs<T>& in,
                                const group_loss_outputs<T>& out) {
  if (in.prompts < 1) brain::detail::fail(where, "prompts = ", in.prompts, " must be >= 1");
  if (in.n < 1) brain::detail::fail(where, "n = ", in.n, " must be >= 1");
  const void* pointers[] = {in.log_policy, in.log_proposal, in.log_prior, in.reward,
                            out.target_weights, out.baseline_weights, out.grad_log_policy, out.per_prompt};
  const char* names[] = {"log_policy", "log_proposal", "log_prior", "reward",
                         "target_weights", "baseline_weights", "grad_log_policy", "per_prompt"};
  for (int k = 0; k < 8; ++k)
    if (pointers[k] == nullptr) brain::detail::fail(where, names[k], " is a null pointer");
}

/// The first bad group of a group_loss_rows call (row -1 and ok when every group is good).
struct group_loss_report {
  index row = -1;
  group_status status = group_status::ok;
};

/// The BRAIn loss of [prompts, n] groups on the CPU, one group (row-major) or one tile of 256
/// groups (column-major, in.column_major) after another, vectorised along the contiguous index.
/// Every row is computed (bad ones give NaN); returns the first bad row, without throwing, for
/// callers that explain it in their own words (brain_loss). out.loss, when not null, gets the mean.
template <class T, class G>
group_loss_report group_loss_rows(const group_loss_inputs<T>& in, const group_loss_outputs<T>& out, const G& goodness) {
  using acc = accumulate_t<T>;
  group_loss_report first;
  const auto note = [&](index row, group_status s) {
    if (s != group_status::ok && first.row < 0) first = {row, s};
  };
  if (in.column_major) {
    constexpr index tile = detail::column_major_tile;
    detail::group_scratch<acc> scratch(tile * in.n);
    group_status statuses[tile];
    for (index begin = 0; begin < in.prompts; begin += tile) {
      const index count = std::min(tile, in.prompts - begin);
      detail::group_loss_column_major(in, out, goodness, begin, count, scratch, statuses);
      for (index b = 0; b < count; ++b) note(begin + b, statuses[b]);
    }
  } else {
    detail::group_scratch<acc> scratch(in.n);
    for (index row = 0; row < in.prompts; ++row) note(row, detail::group_loss_row_major(in, out, goodness, row, scratch));
  }
  if (out.loss != nullptr) {
    acc total = 0;
    for (index row = 0; row < in.prompts; ++row) total += out.per_prompt[row];
    *out.loss = static_cast<T>(total / static_cast<acc>(in.prompts));
  }
  return first;
}

/// group_loss_rows, then, when `validate`, std::invalid_argument for the first bad row naming
/// its argument, column and value in brain_loss's words (else bad rows give NaN).
template <class T, class G>
void group_loss(const group_loss_inputs<T>& in, const group_loss_outputs<T>& out, const G& goodness,
                bool validate = true) {
  constexpr std::string_view where = "kernels::group_loss";
  check_group_loss_arguments(where, in, out);
  goodness.validate();
  const group_loss_report bad = group_loss_rows(in, out, goodness);
  if (!validate || bad.row < 0) return;
  std::vector<T> values(static_cast<std::size_t>(4 * in.n));  // the bad row's inputs, gathered
  for (index j = 0; j < in.n; ++j) {
    const index at = in.column_major ? bad.row + j * in.prompts : bad.row * in.n + j;
    values[j] = in.log_policy[at], values[in.n + j] = in.log_proposal[at];
    values[2 * in.n + j] = in.log_prior[at], values[3 * in.n + j] = in.reward[at];
  }
  const T* v = values.data();
  fail_group(where, bad.row, bad.status, v, v + in.n, v + 2 * in.n, v + 3 * in.n, in.n, goodness);
}

}  // namespace brain::inline v0::kernels
