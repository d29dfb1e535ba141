#include "checkpoint.hpp"

#include "device.hpp"
#include "ranks.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <stdexcept>

namespace tldr {
namespace {

void fsync_path(const std::filesystem::path& path, int flags) {
  const int fd = ::open(path.c_str(), flags);
  if (fd < 0) throw std::runtime_error("cannot open " + path.string() + " to sync it");
  const int rc = ::fsync(fd);
  ::close(fd);
  if (rc != 0) throw std::runtime_error("fsync failed for " + path.string());
}

}  // namespace

void atomic_write(const std::filesystem::path& path, const std::function<void(const std::filesystem::path&)>& write) {
  if (!ranks().is_main()) return;  // data parallel: rank 0 writes, the others read after a barrier
  if (path.has_parent_path()) std::filesystem::create_directories(path.parent_path());
  std::filesystem::path tmp = path;
  tmp += ".tmp";
  write(tmp);
  fsync_path(tmp, O_RDONLY);
  std::filesystem::rename(tmp, path);
  // The rename itself is durable only once the directory is synced.
  fsync_path(path.has_parent_path() ? path.parent_path() : std::filesystem::path("."), O_RDONLY | O_DIRECTORY);
}

void atomic_write_text(const std::filesystem::path& path, std::string_view text) {
  atomic_write(path, [&](const std::filesystem::path& tmp) {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out.write(text.data(), static_cast<std::streamsize>(text.size()));
    out.close();
    if (!out) throw std::runtime_error("cannot write " + tmp.string());
  });
}

std::string read_text(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + path.string());
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

void checkpoint_writer::add(const std::string& key, const torch::nn::Module& module) {
  torch::serialize::OutputArchive sub;
  module.save(sub);
  archive_.write(key, sub);
}

void checkpoint_writer::add(const std::string& key, const torch::optim::Optimizer& optimizer) {
  torch::serialize::OutputArchive sub;
  optimizer.save(sub);
  archive_.write(key, sub);
}

void checkpoint_writer::add(const std::string& key, const torch::Tensor& tensor) {
  archive_.write(key, tensor.detach().contiguous());
}

void checkpoint_writer::add(const std::string& key, std::int64_t value) {
  archive_.write(key, torch::tensor(value, torch::kInt64));
}

void checkpoint_writer::save(const std::filesystem::path& path) {
  atomic_write(path, [&](const std::filesystem::path& tmp) { archive_.save_to(tmp.string()); });
}

checkpoint_reader::checkpoint_reader(const std::filesystem::path& path) : path_(path) {
  try {
    archive_.load_from(path.string(), compute_device());  // straight to where the models live
  } catch (const std::exception& e) {
    throw std::runtime_error("cannot read checkpoint " + path.string() + ": " + e.what());
  }
}

void checkpoint_reader::load(const std::string& key, torch::nn::Module& module) {
  torch::serialize::InputArchive sub;
  if (!archive_.try_read(key, sub)) throw std::runtime_error("checkpoint " + path_.string() + " has no '" + key + "'");
  module.load(sub);
}

void checkpoint_reader::load(const std::string& key, torch::optim::Optimizer& optimizer) {
  torch::serialize::InputArchive sub;
  if (!archive_.try_read(key, sub)) throw std::runtime_error("checkpoint " + path_.string() + " has no '" + key + "'");
  optimizer.load(sub);
}

torch::Tensor checkpoint_reader::tensor(const std::string& key) {
  torch::Tensor t;
  if (!archive_.try_read(key, t)) throw std::runtime_error("checkpoint " + path_.string() + " has no '" + key + "'");
  return t;
}

std::int64_t checkpoint_reader::integer(const std::string& key) { return tensor(key).item<std::int64_t>(); }

}  // namespace tldr
