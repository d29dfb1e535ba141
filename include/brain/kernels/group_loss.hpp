#pragma once
// The BRAIn loss of [prompts, n] groups over raw memory on the CPU (cpu_group_loss), and what the
// CUDA kernel (brain/backends/cuda/group_loss.cuh) shares with it: the raw-memory arguments, the
// per-sample checks and their error messages. The arithmetic is formula.hpp's.
//
// Three passes over each group, while its values are in cache (n of a row, or a tile of rows):
//   1. log alpha and log beta of every sample (eqs. 6, 11), written to the target and baseline
//      outputs as scratch; the group's maxima; a validity probe (NaN once any input is bad);
//   2. e = exp(log alpha - max), f = exp(log beta - max) over the scratch; their sums and the sum
//      of kl_summand(e, ...) (eq. 14, formula::group_kl);
//   3. alpha-bar = e / sum e, beta-bar = f / sum f (eqs. 6, 11, 21) and the gradient (eq. 12).
// The passes' bodies are written once, for a value V that is a SIMD pack (kernels/simd.hpp) or a
// scalar, and two traversals call them: row-major arrays along each row (a group's samples are
// the lanes, reduced across lanes at the end; the groups' KLs then a pack at a time),
// column-major arrays a tile of rows at a time (the rows are the lanes: every group's running
// values stay in its lane). Scalar tails and the remainder rows of a tile run the same bodies
// with V = T.

#include <brain/config.hpp>
#include <brain/errors.hpp>
#include <brain/formula.hpp>
#include <brain/kernels/simd.hpp>
#include <brain/kernels/token_log_probs.hpp>

#include <algorithm>
#include <cstdint>
#include <limits>
#include <string_view>
#include <vector>

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
    case group_status::ok:
      return "ok";
    case group_status::bad_log_policy:
      return "log_policy holds NaN or an infinity";
    case group_status::bad_log_proposal:
      return "log_proposal holds NaN or an infinity";
    case group_status::bad_log_prior:
      return "log_prior holds NaN or +inf";
    case group_status::bad_reward:
      return "reward (or its log goodness) holds NaN or an infinity";
    case group_status::baseline_overflow:
      return "log_policy - log_proposal overflowed (the log baseline weight of eq. 11 is not finite)";
    case group_status::no_target_support:
      return brain::detail::no_target_support_text;
    case group_status::weight_overflow:
      return brain::detail::weight_overflow_text;
  }
  return "unknown status";
}

/// Pointers to [prompts, n] arrays (host or device memory, as the caller says).
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
/// The outputs must not overlap the inputs (the CPU passes use target and baseline as scratch).
template <class T>
struct group_loss_outputs {
  T* target_weights;    ///< alpha-bar, rows sum to 1
  T* baseline_weights;  ///< beta-bar, rows sum to 1
  T* grad_log_policy;   ///< (beta-bar - alpha-bar) / prompts
  T* per_prompt;        ///< KL(alpha-bar || beta-bar) per group (eq. 14)
  T* loss;              ///< mean of per_prompt; nullptr to skip
};

/// log g(r) for a value V of the kernels (a float, double or SIMD pack): the goodness model's own
/// log_goodness_value<V> when it has one (bradley_terry and log_goodness: the arithmetic of their
/// to_log_goodness in V's precision), else its operator()(double) lane by lane.
template <class V, class G>
BRAIN_HOST_DEVICE BRAIN_INLINE_ELEMENT V log_goodness_value(const G& goodness, V reward) {
  if constexpr (requires { goodness.template log_goodness_value<V>(reward); }) {
    return goodness.template log_goodness_value<V>(reward);
  } else if constexpr (simd::traits<V>::width == 1) {
    return static_cast<V>(goodness(static_cast<double>(reward)));
  } else {
    V out{};
    for (int l = 0; l < simd::traits<V>::width; ++l)
      out[l] = static_cast<simd::element_t<V>>(goodness(static_cast<double>(reward[l])));
    return out;
  }
}

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
  const Acc log_beta = formula::log_baseline_weight(log_policy, log_proposal);
  if (!(log_beta - log_beta == Acc(0))) return group_status::baseline_overflow;
  return group_status::ok;
}

/// A group's status from the largest of its log alpha, or its logsumexp (-inf: every weight is zero;
/// +inf or NaN: overflow).
template <class Acc>
BRAIN_HOST_DEVICE group_status check_group(Acc max_log_alpha) {
  if (max_log_alpha == -std::numeric_limits<Acc>::infinity()) return group_status::no_target_support;
  if (!(max_log_alpha < std::numeric_limits<Acc>::infinity())) return group_status::weight_overflow;
  return group_status::ok;
}

/// Throws for group `row`, whose status is `status`, in brain_loss's words (errors.hpp): the
/// argument, row, column and value of the row's first bad sample, or the row alone for a status
/// of the whole group (no support, overflow of the largest weight). The arguments hold the row's
/// n values of each input, in host memory.
template <class T, class G>
[[noreturn]] void fail_group(std::string_view where, index row, group_status status, const T* log_policy,
                             const T* log_proposal, const T* log_prior, const T* reward, index n, const G& goodness) {
  using acc = accumulate_t<T>;
  namespace d = brain::detail;
  for (index j = 0; j < n; ++j) {
    const acc lp = log_policy[j], lq = log_proposal[j], l0 = log_prior[j], r = reward[j];
    const acc lg = log_goodness_value<acc>(goodness, r);
    switch (check_sample(lp, lq, l0, r, lg)) {
      case group_status::ok:
        continue;
      case group_status::bad_log_policy:
        d::fail_value(where, "log_policy", row, j, lp);
      case group_status::bad_log_proposal:
        d::fail_value(where, "log_proposal", row, j, lq);
      case group_status::bad_log_prior:
        d::fail_value(where, "log_prior", row, j, l0, true);
      case group_status::bad_reward:
        if (!(r - r == acc(0))) d::fail_value(where, "reward", row, j, r);
        d::fail_value(where, "log goodness of reward", row, j, lg);
      default:
        d::fail_baseline_overflow(where, row, j, lp, lq, formula::log_baseline_weight(lp, lq));
    }
  }
  if (status == group_status::no_target_support) d::fail_no_target_support(where, row, n);
  if (status == group_status::weight_overflow) {
    acc largest = -std::numeric_limits<acc>::infinity();
    for (index j = 0; j < n; ++j) {
      const acc la = formula::log_target_weight(log_goodness_value<acc>(goodness, static_cast<acc>(reward[j])),
                                                static_cast<acc>(log_prior[j]), static_cast<acc>(log_proposal[j]));
      if (!(la <= largest)) largest = la;  // NaN and +inf win
    }
    d::fail_weight_overflow(where, row, largest);
  }
  d::fail(where, "row ", row, ": ", describe(status));
}

/// Throws std::invalid_argument for a group-loss call whose sizes or pointers are unusable.
template <class T>
void check_group_loss_arguments(std::string_view where, const group_loss_inputs<T>& in,
                                const group_loss_outputs<T>& out) {
  if (in.prompts < 1) brain::detail::fail(where, "prompts = ", in.prompts, " must be >= 1");
  if (in.n < 1) brain::detail::fail(where, "n = ", in.n, " must be >= 1");
  const void* pointers[] = {in.log_policy,      in.log_proposal,      in.log_prior,        in.reward,
                            out.target_weights, out.baseline_weights, out.grad_log_policy, out.per_prompt};
  const char* names[] = {"log_policy",     "log_proposal",     "log_prior",       "reward",
                         "target_weights", "baseline_weights", "grad_log_policy", "per_prompt"};
  for (int k = 0; k < 8; ++k)
    if (pointers[k] == nullptr) brain::detail::fail(where, names[k], " is a null pointer");
}

/// The first bad group of a cpu_group_loss_unchecked call (row -1 and ok when every group is good).
struct group_loss_report {
  index row = -1;
  group_status status = group_status::ok;
};

namespace detail {

using simd::broadcast;

/// A group's running values, one per lane of V (a pack's lanes are samples of one row in the
/// row-major traversal, rows of a tile in the column-major one).
template <class V>
struct group_state {
  V max_alpha = broadcast<V>(-std::numeric_limits<simd::element_t<V>>::infinity());  // pass 1
  V max_beta = max_alpha;
  V bad = broadcast<V>(0);  // pass 1: 0 while every sample is good, NaN after a bad one
  V sum_alpha = broadcast<V>(0), sum_beta = broadcast<V>(0), kl = broadcast<V>(0);  // pass 2
};

/// v - v: 0 for finite v, NaN for NaN and infinities; summed, "all finite" in one add each.
template <class V>
BRAIN_INLINE_ELEMENT V finite_probe(V v) {
  return v - v;
}
/// 0 where v is below +inf (-inf allowed), else NaN (for NaN too).
template <class V>
BRAIN_INLINE_ELEMENT V prior_probe(V v) {
  using E = simd::element_t<V>;
  return simd::select<V>(v < broadcast<V>(std::numeric_limits<E>::infinity()), broadcast<V>(0),
                         broadcast<V>(std::numeric_limits<E>::quiet_NaN()));
}

/// Pass 1 for the V-wide samples at offset `at`: log alpha (eq. 6) and log beta (eq. 11), stored
/// in the target and baseline outputs; the maxima and the validity probe: check_sample's checks
/// as arithmetic, so the loops stay branch-free (log beta is finite exactly when log_policy and
/// log_proposal are and their difference did not overflow; log alpha is below +inf and not NaN
/// exactly when log_prior is, or the weight overflowed, which check_group reports).
template <class V, class T, class G>
BRAIN_INLINE_ELEMENT void weigh(const group_loss_inputs<T>& in, const group_loss_outputs<T>& out, const G& goodness,
                                index at, group_state<V>& s) {
  const V lp = simd::load<V>(in.log_policy + at), lq = simd::load<V>(in.log_proposal + at);
  const V l0 = simd::load<V>(in.log_prior + at), r = simd::load<V>(in.reward + at);
  const V lg = log_goodness_value<V>(goodness, r);
  const V log_alpha = formula::log_target_weight(lg, l0, lq), log_beta = formula::log_baseline_weight(lp, lq);
  simd::store(out.target_weights + at, log_alpha);
  simd::store(out.baseline_weights + at, log_beta);
  s.max_alpha = simd::larger(s.max_alpha, log_alpha);
  s.max_beta = simd::larger(s.max_beta, log_beta);
  s.bad += finite_probe(log_beta) + finite_probe(r) + finite_probe(lg) + prior_probe(log_alpha);
}

/// Pass 2: the exponentials of the shifted log weights (replacing them in the outputs), their sums
/// and eq. 14's summands.
template <class V, class T>
BRAIN_INLINE_ELEMENT void exponentiate(const group_loss_outputs<T>& out, index at, V max_alpha, V max_beta,
                                       group_state<V>& s) {
  const V a = simd::load<V>(out.target_weights + at) - max_alpha,
          b = simd::load<V>(out.baseline_weights + at) - max_beta;
  const V e = simd::exp_branchless(a), f = simd::exp_branchless(b);
  simd::store(out.target_weights + at, e);
  simd::store(out.baseline_weights + at, f);
  s.sum_alpha += e;
  s.sum_beta += f;
  s.kl += formula::kl_summand(e, a, b);
}

/// Pass 3: alpha-bar and beta-bar (eqs. 6, 11, 21) and the gradient (eq. 12).
template <class V, class T>
BRAIN_INLINE_ELEMENT void normalise(const group_loss_outputs<T>& out, index at, V inv_alpha, V inv_beta, V scale) {
  const V target = simd::load<V>(out.target_weights + at) * inv_alpha;
  const V baseline = simd::load<V>(out.baseline_weights + at) * inv_beta;
  simd::store(out.target_weights + at, target);
  simd::store(out.baseline_weights + at, baseline);
  simd::store(out.grad_log_policy + at, formula::loss_gradient(target, baseline, scale));
}

/// The first bad input among row `row`'s samples (check_sample's code), or ok: the passes only
/// know that some sample of a row is bad, and the error path calls this.
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

/// The status of a group whose probe and largest log alpha the passes found: a bad input names
/// itself; otherwise an all-zero or overflowing target weight.
template <class T, class G>
group_status status_of(const group_loss_inputs<T>& in, const G& goodness, index row, T bad, T max_alpha) {
  const group_status input = bad == T(0) ? group_status::ok : first_bad_sample(in, goodness, row);
  return input != group_status::ok ? input : check_group(max_alpha);
}

/// What a group leaves for eq. 14 (formula::group_kl, computed a pack of groups at a time) and its status.
template <class T>
struct group_result {
  T kl_summands, sum_alpha, sum_beta;
  group_status status;
};

/// Row `row` of row-major arrays: each pass over its n samples in packs, then a scalar tail; the
/// lanes' running values are reduced to the group's at the end of passes 1 and 2.
template <class T, class G>
group_result<T> row_major_group(const group_loss_inputs<T>& in_ref, const group_loss_outputs<T>& out_ref,
                                const G& goodness_ref, index row) {
  using P = simd::pack<T>;
  constexpr index W = simd::width<T>;
  // Local copies: the compiler keeps them in registers (stores to the outputs cannot change them).
  const group_loss_inputs<T> in = in_ref;
  const group_loss_outputs<T> out = out_ref;
  const G goodness = goodness_ref;
  const index at = row * in.n, end = at + in.n, whole = at + (in.n - in.n % W);
  group_state<P> packs;
  group_state<T> tail;
  for (index i = at; i < whole; i += W) weigh<P>(in, out, goodness, i, packs);
  for (index i = whole; i < end; ++i) weigh<T>(in, out, goodness, i, tail);
  const T max_alpha = simd::larger(tail.max_alpha, simd::max_lanes(packs.max_alpha));
  const T max_beta = simd::larger(tail.max_beta, simd::max_lanes(packs.max_beta));
  const T bad = tail.bad + simd::sum_lanes(packs.bad);

  for (index i = at; i < whole; i += W) exponentiate<P>(out, i, broadcast<P>(max_alpha), broadcast<P>(max_beta), packs);
  for (index i = whole; i < end; ++i) exponentiate<T>(out, i, max_alpha, max_beta, tail);
  const T sum_alpha = tail.sum_alpha + simd::sum_lanes(packs.sum_alpha);
  const T sum_beta = tail.sum_beta + simd::sum_lanes(packs.sum_beta);

  const T inv_alpha = T(1) / sum_alpha, inv_beta = T(1) / sum_beta, scale = T(1) / static_cast<T>(in.prompts);
  for (index i = at; i < whole; i += W)
    normalise<P>(out, i, broadcast<P>(inv_alpha), broadcast<P>(inv_beta), broadcast<P>(scale));
  for (index i = whole; i < end; ++i) normalise<T>(out, i, inv_alpha, inv_beta, scale);
  return {tail.kl + simd::sum_lanes(packs.kl), sum_alpha, sum_beta, status_of(in, goodness, row, bad, max_alpha)};
}

/// Rows [begin, begin + count) of row-major arrays, count <= the pack width: each group alone,
/// then their KLs (eq. 14) as one pack. Writes statuses[0..count).
template <class T, class G>
void row_major_groups(const group_loss_inputs<T>& in, const group_loss_outputs<T>& out, const G& goodness, index begin,
                      index count, group_status* statuses) {
  using P = simd::pack<T>;
  constexpr index W = simd::width<T>;
  T summands[W], sum_alpha[W], sum_beta[W], kl[W];
  for (index r = 0; r < W; ++r) summands[r] = 0, sum_alpha[r] = sum_beta[r] = 1;  // lanes past count: log 1
  for (index r = 0; r < count; ++r) {
    const group_result<T> g = row_major_group(in, out, goodness, begin + r);
    summands[r] = g.kl_summands, sum_alpha[r] = g.sum_alpha, sum_beta[r] = g.sum_beta, statuses[r] = g.status;
  }
  simd::store(kl, formula::group_kl(simd::load<P>(summands), simd::load<P>(sum_alpha), simd::load<P>(sum_beta)));
  for (index r = 0; r < count; ++r) out.per_prompt[begin + r] = kl[r];
}

/// Largest column-major tile, in rows: its running values (six per row) stay in L1.
inline constexpr index column_major_max_tile = 512;
/// Elements per column-major tile: its target and baseline columns (the scratch of passes 1-3,
/// 128 KiB each in double) stay in a core's L2 cache between the passes.
inline constexpr index column_major_tile_elements = 16384;

/// Rows per column-major tile for groups of n: a multiple of the pack width.
template <class T>
constexpr index column_major_tile_rows(index n) {
  constexpr index W = simd::width<T>;
  const index rows = std::clamp<index>(column_major_tile_elements / std::max<index>(n, 1), W, column_major_max_tile);
  return rows - rows % W;
}

/// Rows [begin, begin + count) of column-major arrays (element (i, j) at i + j * prompts): each
/// pass over the tile's columns, every pack holding `width` rows (the remainder rows one by one),
/// so that each group's running values stay in its own lane. Writes statuses[0..count).
template <class T, class G>
void column_major_tile(const group_loss_inputs<T>& in_ref, const group_loss_outputs<T>& out_ref, const G& goodness_ref,
                       index begin, index count, group_status* statuses) {
  using P = simd::pack<T>;
  constexpr index W = simd::width<T>;
  const group_loss_inputs<T> in = in_ref;  // local copies, as in row_major_group
  const group_loss_outputs<T> out = out_ref;
  const G goodness = goodness_ref;
  const index packs = count / W, rest = count % W, stride = in.prompts;
  group_state<P> lanes[column_major_max_tile / W];
  group_state<T> rows[W];
  for (index b = 0; b < packs; ++b) lanes[b] = group_state<P>{};
  for (index r = 0; r < rest; ++r) rows[r] = group_state<T>{};
  const auto each = [&](auto&& on_pack, auto&& on_row) BRAIN_INLINE_LAMBDA {
    for (index j = 0; j < in.n; ++j) {
      const index column = begin + j * stride;
      for (index b = 0; b < packs; ++b) on_pack(column + b * W, lanes[b]);
      for (index r = 0; r < rest; ++r) on_row(column + packs * W + r, rows[r]);
    }
  };
  each([&](index at, group_state<P>& s) BRAIN_INLINE_LAMBDA { weigh<P>(in, out, goodness, at, s); },
       [&](index at, group_state<T>& s) BRAIN_INLINE_LAMBDA { weigh<T>(in, out, goodness, at, s); });
  each([&](index at, group_state<P>& s) BRAIN_INLINE_LAMBDA { exponentiate<P>(out, at, s.max_alpha, s.max_beta, s); },
       [&](index at, group_state<T>& s) BRAIN_INLINE_LAMBDA { exponentiate<T>(out, at, s.max_alpha, s.max_beta, s); });
  const T scale = T(1) / static_cast<T>(in.prompts);
  P inv_alpha[column_major_max_tile / W], inv_beta[column_major_max_tile / W];
  T row_inv_alpha[W], row_inv_beta[W];
  for (index b = 0; b < packs; ++b) {
    inv_alpha[b] = broadcast<P>(1) / lanes[b].sum_alpha;
    inv_beta[b] = broadcast<P>(1) / lanes[b].sum_beta;
    simd::store(out.per_prompt + begin + b * W, formula::group_kl(lanes[b].kl, lanes[b].sum_alpha, lanes[b].sum_beta));
  }
  for (index r = 0; r < rest; ++r) {
    row_inv_alpha[r] = T(1) / rows[r].sum_alpha;
    row_inv_beta[r] = T(1) / rows[r].sum_beta;
    out.per_prompt[begin + packs * W + r] = formula::group_kl(rows[r].kl, rows[r].sum_alpha, rows[r].sum_beta);
  }
  const P pack_scale = broadcast<P>(scale);
  each([&](index at, group_state<P>& s)
           BRAIN_INLINE_LAMBDA { normalise<P>(out, at, inv_alpha[&s - lanes], inv_beta[&s - lanes], pack_scale); },
       [&](index at, group_state<T>& s)
           BRAIN_INLINE_LAMBDA { normalise<T>(out, at, row_inv_alpha[&s - rows], row_inv_beta[&s - rows], scale); });
  for (index b = 0; b < packs; ++b)
    for (index l = 0; l < W; ++l)
      statuses[b * W + l] = status_of(in, goodness, begin + b * W + l, simd::lane(lanes[b].bad, int(l)),
                                      simd::lane(lanes[b].max_alpha, int(l)));
  for (index r = 0; r < rest; ++r)
    statuses[packs * W + r] = status_of(in, goodness, begin + packs * W + r, rows[r].bad, rows[r].max_alpha);
}

}  // namespace detail

/// The BRAIn loss of [prompts, n] groups on the CPU (eqs. 6, 11, 12, 14): every output written,
/// bad groups with NaN, and the first bad group returned without throwing, for callers that
/// explain it in their own words (brain_loss). out.loss, when not null, gets the mean. Float and
/// double; the outputs must not overlap the inputs.
template <class T, class G>
group_loss_report cpu_group_loss_unchecked(const group_loss_inputs<T>& in, const group_loss_outputs<T>& out,
                                           const G& goodness) {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double>, "the CPU kernel takes float or double");
  group_loss_report first;
  const auto note = [&](index row, group_status s) {
    if (s != group_status::ok && first.row < 0) first = {row, s};
  };
  if (in.column_major) {
    const index tile = detail::column_major_tile_rows<T>(in.n);
    group_status statuses[detail::column_major_max_tile];
    for (index begin = 0; begin < in.prompts; begin += tile) {
      const index count = std::min(tile, in.prompts - begin);
      detail::column_major_tile(in, out, goodness, begin, count, statuses);
      for (index b = 0; b < count; ++b) note(begin + b, statuses[b]);
    }
  } else {
    constexpr index W = simd::width<T>;
    group_status statuses[W];
    for (index begin = 0; begin < in.prompts; begin += W) {
      const index count = std::min(W, in.prompts - begin);
      detail::row_major_groups(in, out, goodness, begin, count, statuses);
      for (index b = 0; b < count; ++b) note(begin + b, statuses[b]);
    }
  }
  if (out.loss != nullptr) {
    T total = 0;
    for (index row = 0; row < in.prompts; ++row) total += out.per_prompt[row];
    *out.loss = total / static_cast<T>(in.prompts);
  }
  return first;
}

/// cpu_group_loss_unchecked after checking the arguments and the goodness model; then, when
/// `validate`, std::invalid_argument for the first bad group naming its argument, column and value
/// in brain_loss's words (else bad groups give NaN).
template <class T, class G>
void cpu_group_loss(const group_loss_inputs<T>& in, const group_loss_outputs<T>& out, const G& goodness,
                    bool validate = true) {
  constexpr std::string_view where = "kernels::cpu_group_loss";
  check_group_loss_arguments(where, in, out);
  goodness.validate();
  const group_loss_report bad = cpu_group_loss_unchecked(in, out, goodness);
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
