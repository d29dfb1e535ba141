#pragma once
// The program-wide registry the LibTorch adapter dispatches non-CPU tensors through, one table per
// kind of entry: the log-prob operations' (device_log_probs, backends/torch/detail/device_chunks.hpp)
// and the fused group loss's (device_group_loss, backends/torch.hpp).
//
// An implementation registers itself at static initialisation from every translation unit that
// can see it (brain::cuda's, guarded by BRAIN_WITH_CUDA and a CUDA build of LibTorch):
//
//   inline const bool registered = device_registry<Entry>::add(c10::DeviceType::CUDA, &entry);
//
// The table lives in an inline function's local static, so it is one per program: every
// translation unit dispatches alike, whatever it was compiled with, and no inline function's
// definition depends on a macro (no ODR hazard; tests/odr_torch_registry_test.cpp checks it).

#include <c10/core/DeviceType.h>

#include <array>
#include <cstddef>

namespace brain::inline v0::detail {

/// One `const Entry*` per c10::DeviceType, nullptr where nothing is registered.
template <class Entry>
class device_registry {
 public:
  using table = std::array<const Entry*, static_cast<std::size_t>(c10::DeviceType::COMPILE_TIME_MAX_DEVICE_TYPES)>;

  /// Registers `entry` (static storage) for tensors of `type`, replacing any earlier one; returns
  /// true, so that the call can initialise an inline variable.
  static bool add(c10::DeviceType type, const Entry* entry) {
    entries()[slot(type)] = entry;
    return true;
  }
  /// The entry registered for tensors of `type`, or nullptr.
  static const Entry* find(c10::DeviceType type) { return entries()[slot(type)]; }
  /// Every device type's entry (nullptr where none), in device-type order.
  static const table& all() { return entries(); }

 private:
  static table& entries() {
    static table t{};  // constant-initialised: ready before any dynamic initialiser registers
    return t;
  }
  static std::size_t slot(c10::DeviceType type) { return static_cast<std::size_t>(type); }
};

}  // namespace brain::inline v0::detail
