#pragma once
// Samples as trainers get them from an inference engine (vLLM, SGLang), in two optional members
// of brain::samples:
//   log_sampler  log mu(y|x), the engine's log-prob of each sample: the samples were drawn from
//                mu, not from the trainer's recomputation q (log_proposal); the estimators then
//                weight each sample by c_i = correction(q_i / mu_i) (options::sampler);
//   mask         1 keeps a sample, 0 drops it (a reward function returned nothing, a filter
//                removed it): a dropped sample is read as absent, so a masked batch computes what
//                the dense batch without those samples computes.
// The derivation (docs/math.md §7.1): the self-normalised weights of eqs. 6 and 11 divide by the
// density the samples were drawn from, so with the sampler's log-prob alpha_i = p g / mu =
// (p g / q) (q / mu) and beta_i = (q_theta / q) (q / mu): the correction multiplies both by
// c_i = q_i / mu_i (exact), by clip(c_i) (truncated, TIS) or by c_i [lower <= c_i <= upper]
// (masked, MIS). The policy-gradient estimators multiply their coefficient by c_i, as TRL does.
// Groups that keep fewer samples than the estimator needs, or (opt in) whose kept rewards are
// all equal, are skipped: zero coefficients, zero value, left out of the mean over prompts, and
// counted by rollout_report().

#include <brain/backend.hpp>
#include <brain/options.hpp>
#include <brain/samples.hpp>
#include <brain/validate.hpp>

#include <cmath>
#include <string_view>

namespace brain::inline v0 {

/// What rollout_report() measures of a batch: the sampler mismatch and the groups used.
struct rollout_diagnostics {
  index groups = 0;                ///< prompts in the batch
  index used_groups = 0;           ///< groups the estimator uses
  index skipped_groups = 0;        ///< groups with fewer kept samples than the estimator needs
  index uninformative_groups = 0;  ///< groups whose kept rewards are all equal (dropped under drop)
  index masked_samples = 0;        ///< samples with mask 0
  // Sampler mismatch over the kept samples (all 0 without log_sampler): d_i = log q_i - log mu_i.
  double mean_abs_log_ratio = 0.0;  ///< mean |d_i| (TRL: sampling_logp_difference/mean, per sequence)
  double max_abs_log_ratio = 0.0;   ///< max |d_i|
  double kl_k3 = 0.0;               ///< mean of exp(d) - 1 - d: the k3 estimate of KL(mu || q) from mu's samples
  double min_ratio = 1.0, mean_ratio = 1.0, max_ratio = 1.0;  ///< of q_i / mu_i (TRL: importance_sampling_ratio)
  double share_truncated = 0.0;                               ///< share of kept samples whose ratio truncation changed
  double share_masked = 0.0;                                  ///< share of kept samples the masked correction dropped
};

namespace detail {

/// The optional backend operation x where keep > 0, else 0 (NaN and infinities included); the
/// fallback multiplies, so a backend without it needs finite values at dropped positions.
template <class T, class K, class X>
tensor_t<T> zero_unless(const K& keep, const X& x) {
  if constexpr (requires { ops<T>::zero_unless(keep, x); })
    return ops<T>::zero_unless(keep, x);
  else
    return ops<T>::mul(keep, x);
}

/// a * v per row (v is [rows, 1]).
template <class T, class X, class V>
tensor_t<T> mul_per_row(const X& a, const V& v) {
  return ops<T>::mul(a, broadcast_column<T>(a, v));
}

/// 1 where a >= b elementwise (b a constant), else 0.
template <class T, class X>
tensor_t<T> at_least(const X& a, double b) {
  return ops<T>::affine(is_positive<T>(ops<T>::affine(a, -1.0, b)), -1.0, 1.0);
}

/// The sampler correction c = correction(exp(log_proposal - log_sampler)) (all of it finite).
template <class T>
struct sampler_factor {
  tensor_t<T> ratio, factor;
};
template <class T>
sampler_factor<T> sampler_correction_factor(const tensor_t<T>& log_proposal, const tensor_t<T>& log_sampler,
                                            const sampler_options& so) {
  tensor_t<T> ratio = ops<T>::exp(ops<T>::sub(detach<T>(log_proposal), detach<T>(log_sampler)));
  switch (so.correction) {
    case sampler_correction::none:
      return {ratio, ops<T>::full(ratio, ops<T>::rows(ratio), ops<T>::cols(ratio), 1.0)};
    case sampler_correction::truncate: {
      // min(max(r, lower), upper), exactly (negation and max are exact).
      tensor_t<T> c = ops<T>::affine(
          ops<T>::clamp_min(ops<T>::affine(ops<T>::clamp_min(ratio, so.lower), -1.0, 0.0), -so.upper), -1.0, 0.0);
      return {std::move(ratio), std::move(c)};
    }
    case sampler_correction::mask:
      break;
  }
  const tensor_t<T> inside =
      ops<T>::mul(at_least<T>(ratio, so.lower), at_least<T>(ops<T>::affine(ratio, -1.0, 0.0), -so.upper));
  tensor_t<T> c = ops<T>::mul(inside, ratio);
  return {std::move(ratio), std::move(c)};
}

/// The samples an estimator uses, when a mask or a sampler's log-probs are given (`active`):
/// inputs with dropped positions set to 0, and
///   keep    [P, n] 1 for a sample in the group's statistics, 0 for a dropped one;
///   factor  [P, n] keep * c_i, the sampler correction (1 without log_sampler);
///   used    [P, 1] 1 for a group the estimator uses, 0 for a skipped one;
///   count   [P, 1] kept samples per group.
/// A skipped group is computed as if it kept all its samples with c = 1 (every number finite) and
/// then multiplied by used = 0.
template <class T>
struct selection {
  bool active = false;
  samples<tensor_t<T>> filled;
  tensor_t<T> keep, factor, used, count;
  double used_groups = 0.0;
  double too_few = 0.0;        ///< groups with fewer samples than the estimator needs
  double uninformative = 0.0;  ///< groups whose kept rewards are all equal (skipped under drop)
};

/// Checks the mask (finite, 0 or 1, the samples' shape) and log_sampler's shape; log_sampler's
/// values are checked with the other inputs once dropped positions are filled.
template <class T, class S>
void check_rollout_members(std::string_view where, const S& s) {
  if (given<T>(s.mask)) {
    check_same_shape<T>(where, "mask", s.mask, "log_policy", s.log_policy);
    check_values<T>(where, "mask", s.mask);
    const tensor_t<T> off = ops<T>::mul(s.mask, ops<T>::affine(s.mask, -1.0, 1.0));  // m (1 - m): 0 iff m is 0 or 1
    if (ops<T>::value_at(total<T>(is_positive<T>(ops<T>::mul(off, off))), 0, 0) > 0.0)
      for (index i = 0; i < ops<T>::rows(off); ++i)
        for (index j = 0; j < ops<T>::cols(off); ++j)
          if (ops<T>::value_at(off, i, j) != 0.0)
            fail(where, "mask[", i, ", ", j, "] = ", describe_value(ops<T>::value_at(s.mask, i, j)),
                 ": a mask holds 0 (drop the sample) or 1 (keep it)");
  }
  if (given<T>(s.log_sampler)) check_same_shape<T>(where, "log_sampler", s.log_sampler, "log_policy", s.log_policy);
}

/// What an estimator needs of a group: at least `min_kept` kept samples, counting only those
/// with c > 0 when `positive_factor` (the self-normalised weights need one nonzero weight).
struct group_needs {
  index min_kept = 1;
  bool positive_factor = true;
  index min_batch = 1;  ///< kept samples in the used groups together; fewer: every group skipped
};

/// 1 per row whose kept rewards are all equal (or that keeps at most one sample), [P, 1].
template <class T>
tensor_t<T> uninformative_rows(const tensor_t<T>& reward, const tensor_t<T>& keep) {
  const tensor_t<T> log_keep = ops<T>::log(keep);  // -inf at dropped samples: left out of the maxima
  const tensor_t<T> high = ops<T>::row_max(ops<T>::add(reward, log_keep));
  const tensor_t<T> low =
      ops<T>::affine(ops<T>::row_max(ops<T>::add(ops<T>::affine(reward, -1.0, 0.0), log_keep)), -1.0, 0.0);
  // high - low is -inf for a row without kept samples, 0 for equal rewards: both "not positive".
  return ops<T>::affine(is_positive<T>(ops<T>::clamp_min(ops<T>::sub(high, low), -1.0)), -1.0, 1.0);
}

/// The selection of samples `s` (tensors) for an estimator with needs `needs`. Inactive (no
/// copies, nothing computed) when neither a mask nor log_sampler is given and uninformative
/// groups are kept.
template <class T, class S>
selection<T> select_samples(std::string_view where, const S& s, group_needs needs, const options& opt,
                            bool count_groups = false) {
  selection<T> out;
  const bool masked = given<T>(s.mask), sampled = given<T>(s.log_sampler);
  out.active = masked || sampled || opt.uninformative == uninformative_groups::drop;
  if (!out.active) return out;
  if (opt.validate) {
    check_rollout_members<T>(where, s);
    opt.sampler.validate();
  }
  const index rows = ops<T>::rows(s.log_policy), cols = ops<T>::cols(s.log_policy);
  const tensor_t<T> keep0 = masked ? detach<T>(s.mask) : ops<T>::full(s.log_policy, rows, cols, 1.0);
  const auto fill = [&](const tensor_t<T>& x) { return masked ? zero_unless<T>(keep0, x) : x; };
  out.filled = {.log_policy = fill(s.log_policy),
                .log_proposal = fill(s.log_proposal),
                .log_prior = fill(s.log_prior),
                .reward = fill(s.reward),
                .log_sampler = sampled ? fill(s.log_sampler) : tensor_t<T>{},
                .mask = {}};
  if (opt.validate && sampled) check_values<T>(where, "log_sampler", out.filled.log_sampler);
  const tensor_t<T> factor0 =
      sampled ? ops<T>::mul(
                    keep0,
                    sampler_correction_factor<T>(out.filled.log_proposal, out.filled.log_sampler, opt.sampler).factor)
              : keep0;
  const tensor_t<T> counted = needs.positive_factor ? is_positive<T>(factor0) : keep0;
  tensor_t<T> used = at_least<T>(ops<T>::row_sum(counted), static_cast<double>(needs.min_kept));
  // The counts are host reads (a device sync on the GPU): made for rollout_report only.
  if (count_groups) out.too_few = static_cast<double>(rows) - ops<T>::value_at(total<T>(used), 0, 0);
  if (count_groups || opt.uninformative == uninformative_groups::drop) {
    const tensor_t<T> flat = uninformative_rows<T>(detach<T>(out.filled.reward), keep0);
    if (count_groups) out.uninformative = ops<T>::value_at(total<T>(flat), 0, 0);
    if (opt.uninformative == uninformative_groups::drop) used = ops<T>::mul(used, ops<T>::affine(flat, -1.0, 1.0));
  }
  if (needs.min_batch > 1 &&
      ops<T>::value_at(total<T>(mul_per_row<T>(keep0, used)), 0, 0) < static_cast<double>(needs.min_batch)) {
    used = ops<T>::full(used, rows, 1, 0.0);
    out.too_few = static_cast<double>(rows);
  }
  // A skipped row computes as a dense one (keep = c = 1) and is multiplied by used = 0 after.
  const tensor_t<T> unused = ops<T>::affine(used, -1.0, 1.0);
  out.keep = ops<T>::add(mul_per_row<T>(keep0, used), broadcast_column<T>(keep0, unused));
  out.factor = ops<T>::add(mul_per_row<T>(factor0, used), broadcast_column<T>(factor0, unused));
  out.count = ops<T>::row_sum(out.keep);
  out.used_groups = ops<T>::value_at(total<T>(used), 0, 0);
  out.used = std::move(used);
  return out;
}

/// The sampler mismatch of samples `s` over kept samples (rollout_diagnostics' second half).
template <class T, class S>
void measure_mismatch(rollout_diagnostics& d, const S& s, const options& opt) {
  const index rows = ops<T>::rows(s.log_policy), cols = ops<T>::cols(s.log_policy);
  const tensor_t<T> keep = given<T>(s.mask) ? detach<T>(s.mask) : ops<T>::full(s.log_policy, rows, cols, 1.0);
  const double kept = ops<T>::value_at(total<T>(keep), 0, 0);
  d.masked_samples = static_cast<index>(std::lround(static_cast<double>(rows * cols) - kept));
  if (!given<T>(s.log_sampler) || kept == 0.0) return;
  const auto fill = [&](const tensor_t<T>& x) { return given<T>(s.mask) ? zero_unless<T>(keep, x) : x; };
  const tensor_t<T> log_proposal = fill(detach<T>(s.log_proposal)), log_sampler = fill(detach<T>(s.log_sampler));
  const tensor_t<T> diff = ops<T>::sub(log_proposal, log_sampler);
  const sampler_factor<T> c = sampler_correction_factor<T>(log_proposal, log_sampler, opt.sampler);
  const tensor_t<T> log_keep = ops<T>::log(keep);
  const auto mean = [&](const tensor_t<T>& x) { return ops<T>::value_at(total<T>(ops<T>::mul(x, keep)), 0, 0) / kept; };
  const auto largest = [&](const tensor_t<T>& x) {  // over kept samples
    const tensor_t<T> per_row = ops<T>::row_max(ops<T>::add(x, log_keep));
    return ops<T>::value_at(ops<T>::row_max(ops<T>::regroup(per_row, rows)), 0, 0);
  };
  const tensor_t<T> abs_diff =
      ops<T>::add(ops<T>::clamp_min(diff, 0.0), ops<T>::clamp_min(ops<T>::affine(diff, -1.0, 0.0), 0.0));
  d.mean_abs_log_ratio = mean(abs_diff);
  d.max_abs_log_ratio = largest(abs_diff);
  d.kl_k3 = mean(ops<T>::sub(ops<T>::affine(c.ratio, 1.0, -1.0), diff));  // r - 1 - log r
  d.mean_ratio = mean(c.ratio);
  d.max_ratio = largest(c.ratio);
  d.min_ratio = -largest(ops<T>::affine(c.ratio, -1.0, 0.0));
  const sampler_options bounds = opt.sampler;
  const tensor_t<T> inside =
      ops<T>::mul(at_least<T>(c.ratio, bounds.lower), at_least<T>(ops<T>::affine(c.ratio, -1.0, 0.0), -bounds.upper));
  const double outside = 1.0 - mean(inside);
  if (bounds.correction == sampler_correction::truncate) d.share_truncated = outside;
  if (bounds.correction == sampler_correction::mask) d.share_masked = outside;
}

}  // namespace detail
}  // namespace brain::inline v0
