// A second translation unit for DeviceRegistry.EveryTranslationUnitUsesTheProgramsRegistrations
// (torch_log_probs_test.cpp), compiled apart from the unity build: it registers a device
// implementation for meta tensors at static initialisation, as a translation unit compiled with
// brain::cuda registers the CUDA kernels, and calls sequence_log_probs itself too.

#include <brain/backends/torch/log_probs.hpp>

namespace {

namespace bl = brain::libtorch;

// Answers 42 for every sequence: recognisable, and computed without reading the (meta) logits.
at::Tensor answer(const at::Tensor& logits, const bl::detail::token_selection&, const bl::log_prob_options&) {
  return at::full({logits.size(0)}, 42.0, at::kDouble).sum().div(logits.size(0));
}

const bl::detail::device_log_probs meta_log_probs{&answer};
const bool registered = bl::detail::register_device_log_probs(c10::DeviceType::Meta, &meta_log_probs);

}  // namespace

at::Tensor registered_in_other_unit(const at::Tensor& logits, const at::Tensor& labels, const at::Tensor& mask) {
  (void)registered;
  return bl::sequence_log_probs(logits, labels, mask, bl::alignment::same_position);
}
