#pragma once
// brain::libtorch's log-prob operations (backends/torch/log_probs.hpp is the header to include):
// the plain ATen composition of the sampler's distribution and of per-token log-probs, which
// sampled_log_softmax returns and every device without a registered implementation (or with a
// dtype it declines) runs.

#include <brain/backends/torch/detail/selection.hpp>

#include <ATen/ATen.h>

#include <algorithm>
#include <cstdint>
#include <limits>

namespace brain::inline v0::libtorch::detail {

/// The sampler's distribution in plain ATen operations (sampled_log_softmax in
/// backends/torch/log_probs.hpp, settings already checked).
inline at::Tensor sampled_log_softmax_unchecked(const at::Tensor& logits, const sampling& s) {
  at::Tensor x = logits.to(accumulate_type(logits.scalar_type()));
  if (s.is_plain()) return at::log_softmax(x, -1);
  x = x / s.temperature;
  const int64_t vocabulary = x.size(-1);
  at::Tensor keep = at::ones_like(x, x.options().dtype(at::kBool));
  if (s.top_k > 0 && s.top_k < vocabulary) keep = x >= std::get<0>(x.topk(s.top_k, -1)).narrow(-1, s.top_k - 1, 1);
  const at::Tensor minus_inf = at::full({}, -std::numeric_limits<double>::infinity(), x.options());
  if (s.top_p < 1.0) {
    const at::Tensor probs = at::softmax(at::where(keep, x, minus_inf), -1);
    // The nucleus is usually short: sort the 64 most likely tokens only, and the whole row when
    // some row's 64 hold less than top_p (a full sort of a sampler's [rows, V] costs more than a
    // small model's decoding step). Both give the same set: the prefix sums are the same.
    for (int64_t k = std::min<int64_t>(vocabulary, 64);; k = vocabulary) {
      const auto [sorted, order] = probs.topk(k, -1, /*largest=*/true, /*sorted=*/true);
      const at::Tensor mass = sorted.cumsum(-1);
      if (k < vocabulary && !(mass.select(-1, k - 1) >= s.top_p).all().item<bool>()) continue;
      // The last sorted position whose mass before it is below top_p; every value >= its value stays.
      const at::Tensor last = (((mass - sorted) < s.top_p).sum(-1, /*keepdim=*/true) - 1).clamp_min(0);
      keep = keep & (x >= x.gather(-1, order.gather(-1, last)));
      break;
    }
  }
  return at::log_softmax(at::where(keep, x, minus_inf), -1);
}

/// Per-token log-probs [B, T] of the plain composition (log_softmax, gather, masked), in the
/// accumulation dtype.
inline at::Tensor plain_token_log_probs(const at::Tensor& logits, const token_selection& s, const sampling& sample) {
  const int64_t time = logits.size(1);
  const at::Tensor log_probs = sampled_log_softmax_unchecked(logits, sample);
  at::Tensor out = at::zeros({logits.size(0), time}, log_probs.options());
  if (time > s.shift) {
    const at::Tensor labels = s.labels.slice(1, s.shift, time).clamp(0, logits.size(2) - 1);
    const at::Tensor picked = log_probs.slice(1, 0, time - s.shift).gather(2, labels.unsqueeze(2)).squeeze(2);
    out.slice(1, s.shift, time).copy_(at::where(s.active.slice(1, s.shift, time), picked, at::zeros_like(picked)));
  }
  return out;
}

}  // namespace brain::inline v0::libtorch::detail
