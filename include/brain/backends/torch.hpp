#pragma once
// The LibTorch backend: at::Tensor (= torch::Tensor) of shape [prompts, n], on any device.
//
// - Autograd: the returned loss is a 0-dim tensor whose gradient with respect to log_policy is
//   grad_log_policy; proposal, prior, reward and the target weights are detached.
// - float16 / bfloat16 inputs are computed in float32 (log-softmax in half precision is where
//   users of other libraries get NaNs), and the results are float32.
// - Every new tensor is made with the input's options, so CUDA tensors stay on their device; the
//   only host reads are the scalars of validation (one sync per check) and error messages.
//
// Only ATen is included: it is all the operations need, and it compiles faster than torch/torch.h.

#include <brain/backend.hpp>

#include <ATen/ATen.h>

#include <cmath>
#include <limits>
#include <optional>
#include <utility>

namespace brain::inline v0 {

template <>
struct backend_traits<at::Tensor> {
  using tensor = at::Tensor;
  using vector = at::Tensor;  ///< 1-D, [prompts]
  using scalar = at::Tensor;  ///< 0-dim

  /// The dtype brain computes in: float32 for float16 and bfloat16, else the input's own.
  static at::ScalarType compute_type(const at::Tensor& a) {
    const auto type = a.scalar_type();
    return type == at::kHalf || type == at::kBFloat16 ? at::kFloat : type;
  }
  static at::Tensor in(const at::Tensor& a) { return a.scalar_type() == compute_type(a) ? a : a.to(compute_type(a)); }

  static index dims(const at::Tensor& a) { return a.dim(); }
  static index rows(const at::Tensor& a) { return a.dim() > 0 ? a.size(0) : 0; }
  static index cols(const at::Tensor& a) { return a.dim() > 1 ? a.size(1) : 0; }
  static at::Tensor full(const at::Tensor& like, index rows, index cols, double value) {
    return at::full({rows, cols}, value, like.options().dtype(compute_type(like)));
  }

  static at::Tensor add(const at::Tensor& a, const at::Tensor& b) { return in(a) + in(b); }
  static at::Tensor sub(const at::Tensor& a, const at::Tensor& b) { return in(a) - in(b); }
  static at::Tensor mul(const at::Tensor& a, const at::Tensor& b) { return in(a) * in(b); }
  static at::Tensor affine(const at::Tensor& a, double scale, double shift) { return in(a) * scale + shift; }
  static at::Tensor exp(const at::Tensor& a) { return at::exp(in(a)); }
  static at::Tensor log(const at::Tensor& a) { return at::log(in(a)); }
  static at::Tensor clamp_min(const at::Tensor& a, double lo) { return at::clamp_min(in(a), lo); }

  static at::Tensor row_max(const at::Tensor& a) { return at::amax(in(a), {1}, /*keepdim=*/true); }
  static at::Tensor row_sum(const at::Tensor& a) { return in(a).sum({1}, /*keepdim=*/true); }
  static at::Tensor row_weighted_sum(const at::Tensor& w, const at::Tensor& a) {
    // where() rather than a product alone: 0 * inf must contribute 0. Its backward sends zero
    // gradient to the masked products, so no NaN reaches autograd either.
    const at::Tensor weights = in(w), product = weights * in(a);
    return at::where(weights == 0, at::zeros_like(product), product).sum({1}, /*keepdim=*/true);
  }
  static at::Tensor argmax_one_hot(const at::Tensor& a) {
    const at::Tensor x = in(a);
    return at::zeros_like(x).scatter_(1, x.argmax(1, /*keepdim=*/true), 1.0);
  }
  static at::Tensor sub_per_row(const at::Tensor& a, const at::Tensor& v) { return in(a) - in(v); }
  static at::Tensor regroup(const at::Tensor& a, index k) { return in(a).reshape({-1, k}); }

  static double value_at(const at::Tensor& a, index i, index j) { return a.select(0, i).select(0, j).item<double>(); }
  static at::Tensor to_vector(const at::Tensor& v) { return v.reshape({-1}); }
  static at::Tensor mean(const at::Tensor& v) { return v.mean(); }

  // Optional operations: fused or autograd-aware versions.
  static at::Tensor detach(const at::Tensor& a) { return a.detach(); }
  static at::Tensor row_logsumexp(const at::Tensor& a) { return at::logsumexp(in(a), {1}, /*keepdim=*/true); }
  static at::Tensor row_log_softmax(const at::Tensor& a) { return at::log_softmax(in(a), 1); }
  static at::Tensor log_sigmoid(const at::Tensor& a) { return at::log_sigmoid(in(a)); }
  static at::Tensor div_per_row(const at::Tensor& a, const at::Tensor& v) { return in(a) / in(v); }
  static at::Tensor is_positive(const at::Tensor& a) { return (in(a).detach() > 0).to(compute_type(a)); }
  // One reduction and one host read per check: max propagates NaN and +inf; a sum is finite only
  // without NaN and infinities (or on overflow, which the exact check below then clears).
  static bool all_valid(const at::Tensor& a, bool allow_negative_infinity) {
    const at::Tensor x = in(a).detach();
    if (x.numel() == 0) return true;
    if (allow_negative_infinity) return at::amax(x).item<double>() < std::numeric_limits<double>::infinity();
    return std::isfinite(x.sum().item<double>()) || at::isfinite(x).all().item<bool>();
  }
  /// Position of the first NaN / +inf (/ -inf unless allowed), read in one transfer.
  static std::optional<std::pair<index, index>> first_invalid(const at::Tensor& a, bool allow_negative_infinity) {
    const at::Tensor x = in(a).detach();
    at::Tensor bad = at::isnan(x) | at::isposinf(x);
    if (!allow_negative_infinity) bad = bad | at::isneginf(x);
    const at::Tensor where = at::nonzero(bad);
    if (where.size(0) == 0) return std::nullopt;
    const at::Tensor first = where.select(0, 0).cpu();
    return std::pair<index, index>{first[0].item<int64_t>(), first[1].item<int64_t>()};
  }
};

}  // namespace brain::inline v0
