// Tests of --device (src/device.hpp): what parses, and the error on a LibTorch without CUDA.
#include "device.hpp"

#include <gtest/gtest.h>

#include <stdexcept>
#include <string>

namespace {

std::string device_error(const std::string& name) {
  try {
    tldr::select_device(name);
  } catch (const std::invalid_argument& e) {
    tldr::select_device("cpu");
    return e.what();
  }
  tldr::select_device("cpu");
  return "";
}

TEST(device, names_are_checked_and_cuda_needs_a_cuda_libtorch) {
  EXPECT_EQ(device_error("cpu"), "");
  EXPECT_EQ(tldr::compute_device(), torch::Device(torch::kCPU));
  EXPECT_NE(device_error("gpu").find("device = 'gpu' is not a device (cpu, cuda or cuda:N)"), std::string::npos);
  EXPECT_NE(device_error("meta").find("only cpu and cuda are supported"), std::string::npos);
  if (torch::cuda::is_available()) {
    EXPECT_EQ(device_error("cuda:0"), "");
    EXPECT_NE(device_error("cuda:999").find("there are"), std::string::npos);
  } else {  // Debian's libtorch-dev: the user is told why, not a LibTorch backtrace mid-stage
    EXPECT_NE(device_error("cuda").find("this LibTorch has no usable CUDA"), std::string::npos) << device_error("cuda");
    EXPECT_NE(device_error("cuda:1").find("this LibTorch has no usable CUDA"), std::string::npos);
  }
  EXPECT_EQ(tldr::compute_device(), torch::Device(torch::kCPU));
}

}  // namespace
