#pragma once
// Checkpoints that survive a crash at any instant: every file is written under a temporary name,
// flushed to disk (fsync) and renamed over the old one, so a reader sees the old file or the new
// one, never half of one. A run killed with SIGKILL resumes from its last checkpoint.

#include <torch/torch.h>

#include <filesystem>
#include <functional>
#include <string_view>

namespace tldr {

/// Calls write(tmp) to produce the file under a temporary name, then fsyncs and renames it to path.
/// On data-parallel ranks other than 0 it does nothing (ranks.hpp).
void atomic_write(const std::filesystem::path& path, const std::function<void(const std::filesystem::path&)>& write);
/// atomic_write of a text file.
void atomic_write_text(const std::filesystem::path& path, std::string_view text);
std::string read_text(const std::filesystem::path& path);

/// An archive of modules, optimisers and tensors, saved atomically.
class checkpoint_writer {
 public:
  void add(const std::string& key, const torch::nn::Module& module);
  void add(const std::string& key, const torch::optim::Optimizer& optimizer);
  void add(const std::string& key, const torch::Tensor& tensor);
  void add(const std::string& key, std::int64_t value);
  void save(const std::filesystem::path& path);

 private:
  torch::serialize::OutputArchive archive_;
};

class checkpoint_reader {
 public:
  explicit checkpoint_reader(const std::filesystem::path& path);
  void load(const std::string& key, torch::nn::Module& module);
  void load(const std::string& key, torch::optim::Optimizer& optimizer);
  torch::Tensor tensor(const std::string& key);
  std::int64_t integer(const std::string& key);

 private:
  std::filesystem::path path_;
  torch::serialize::InputArchive archive_;
};

}  // namespace tldr
