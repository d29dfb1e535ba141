#include "device.hpp"

#include "fail.hpp"

#include <optional>

namespace tldr {
namespace {
torch::Device& chosen() {
  static torch::Device device(torch::kCPU);
  return device;
}
}  // namespace

torch::Device compute_device() { return chosen(); }

void select_device(const std::string& name) {
  std::optional<torch::Device> device;
  try {
    device.emplace(name);
  } catch (const std::exception&) {
    fail("device = '", name, "' is not a device (cpu, cuda or cuda:N)");
  }
  if (!device->is_cpu() && !device->is_cuda()) fail("device = '", name, "': only cpu and cuda are supported");
  if (device->is_cuda()) {
    if (!torch::cuda::is_available())
      fail("device = '", name,
           "': this LibTorch has no usable CUDA (Debian's libtorch-dev is CPU-only; build against "
           "a CUDA LibTorch from pytorch.org, see README)");
    const auto count = static_cast<std::int64_t>(torch::cuda::device_count());
    if (device->has_index() && device->index() >= count)
      fail("device = '", name, "': there are ", count, " CUDA devices");
  }
  chosen() = *device;
}

}  // namespace tldr
