#include "distributed.hpp"

#include "fail.hpp"

#include <torch/csrc/distributed/c10d/ProcessGroup.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>
#ifdef USE_C10D_GLOO
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#endif
#ifdef USE_C10D_NCCL
#include <torch/csrc/distributed/c10d/ProcessGroupNCCL.hpp>
#endif

#include <signal.h>

#include <algorithm>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <mutex>
#include <exception>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string_view>
#include <utility>

namespace tldr::dist {

// Names here are private to this source but share a unity batch with others: dist_ prefix.
namespace {

std::optional<std::string> dist_env(const char* name) {
  const char* value = std::getenv(name);
  if (value == nullptr) return std::nullopt;
  return std::string(value);
}

// An integer environment variable in [low, high]; std::invalid_argument naming it otherwise.
int dist_env_int(const char* name, const std::string& text, long low, long high) {
  std::size_t used = 0;
  long value = 0;
  try {
    value = std::stol(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  if (text.empty() || used != text.size()) fail(name, "=", text, " is not an integer");
  if (value < low || value > high) fail(name, "=", text, " is outside [", low, ", ", high, "]");
  return static_cast<int>(value);
}

bool dist_is_loopback(const std::string& address) {
  return address == "localhost" || address == "::1" || address.rfind("127.", 0) == 0;
}

// Gloo and NCCL sum these dtypes natively (ProcessGroupGloo's GENERATE_ALL_TYPES); the others
// travel widened, which is exact: bfloat16 is a truncated float32, int16 fits in int32.
torch::ScalarType dist_wire_type(const torch::Tensor& tensor, std::string_view operation) {
  switch (tensor.scalar_type()) {
    case torch::kFloat:
    case torch::kDouble:
    case torch::kHalf:
    case torch::kChar:
    case torch::kByte:
    case torch::kInt:
    case torch::kLong:
      return tensor.scalar_type();
    case torch::kBFloat16:
      return torch::kFloat;
    case torch::kShort:
      return torch::kInt;
    default:
      fail("tldr::dist::group::", operation, ": tensors of dtype ", tensor.scalar_type(),
           " cannot be summed or sent (float, double, half, bfloat16, int8, uint8, int16, int32, int64)");
  }
}

// A run of tensors sent as one flat message: one dtype and device, at most bucket_bytes unless a
// single tensor is larger.
struct dist_bucket {
  torch::ScalarType wire;
  torch::Device device;
  std::vector<std::size_t> members;
  std::size_t bytes = 0;
};

// DDP's bucketing, simplified: tensors in order, one open bucket per (dtype, device), closed when
// the next tensor would overflow it. The same layout on every rank gives the same buckets.
std::vector<dist_bucket> dist_make_buckets(const std::vector<torch::Tensor>& tensors, std::size_t bucket_bytes,
                                           std::string_view operation) {
  std::vector<dist_bucket> closed;
  std::vector<dist_bucket> open;
  for (std::size_t i = 0; i < tensors.size(); ++i) {
    const torch::Tensor& t = tensors[i];
    if (!t.defined()) fail("tldr::dist::group::", operation, ": tensor ", i, " is undefined");
    const torch::ScalarType wire = dist_wire_type(t, operation);
    if (t.numel() == 0) continue;
    const std::size_t bytes = static_cast<std::size_t>(t.numel()) * c10::elementSize(wire);
    auto it = std::find_if(open.begin(), open.end(),
                           [&](const dist_bucket& b) { return b.wire == wire && b.device == t.device(); });
    if (it != open.end() && it->bytes + bytes > bucket_bytes) {
      closed.push_back(std::move(*it));
      open.erase(it);
      it = open.end();
    }
    if (it == open.end()) {
      open.push_back(dist_bucket{wire, t.device(), {}, 0});
      it = std::prev(open.end());
    }
    it->members.push_back(i);
    it->bytes += bytes;
  }
  for (auto& b : open) closed.push_back(std::move(b));
  return closed;
}

std::string dist_describe(const std::exception& error) {
  if (const auto* c10_error = dynamic_cast<const c10::Error*>(&error)) return c10_error->what_without_backtrace();
  return error.what();
}

}  // namespace

launch launch_from_env() {
  launch where;
  const auto world = dist_env("WORLD_SIZE");
  const auto rank = dist_env("RANK");
  const auto local_rank = dist_env("LOCAL_RANK");
  const auto addr = dist_env("MASTER_ADDR");
  const auto port = dist_env("MASTER_PORT");
  if (!world) {
    // A single process; RANK or LOCAL_RANK other than 0 without WORLD_SIZE is half a launch.
    if (rank && dist_env_int("RANK", *rank, 0, 1 << 20) != 0)
      fail("RANK=", *rank, " without WORLD_SIZE (a single process is rank 0)");
    if (local_rank) where.local_rank = dist_env_int("LOCAL_RANK", *local_rank, 0, 1 << 20);
    return where;
  }
  where.world = dist_env_int("WORLD_SIZE", *world, 1, 1 << 20);
  if (!rank) fail("WORLD_SIZE=", *world, " without RANK");
  where.rank = dist_env_int("RANK", *rank, 0, where.world - 1);
  where.local_rank = local_rank ? dist_env_int("LOCAL_RANK", *local_rank, 0, where.world - 1) : where.rank;
  if (addr) {
    if (addr->empty()) fail("MASTER_ADDR is empty");
    where.master_addr = *addr;
  }
  if (port) where.master_port = dist_env_int("MASTER_PORT", *port, 1, 65535);
  return where;
}

struct group::state {
  c10::intrusive_ptr<c10d::Store> store;
  c10::intrusive_ptr<c10d::ProcessGroup> pg;
  bool gloo = true;  // Gloo takes CPU tensors; NCCL the group's CUDA device's
};

group::group(const launch& where, torch::Device device, std::chrono::milliseconds timeout)
    : where_(where), device_(device), timeout_(timeout) {
  if (where.world < 1 || where.rank < 0 || where.rank >= where.world)
    fail("tldr::dist::group: rank ", where.rank, " of world ", where.world, " is not a rank");
  if (timeout.count() <= 0) fail("tldr::dist::group: timeout ", timeout.count(), " ms is not positive");
  if (where.world == 1) return;
  if (!device.is_cpu() && !device.is_cuda()) fail("tldr::dist::group: device ", device, " has no process group");
#ifndef USE_C10D_NCCL
  if (device.is_cuda())
    fail("tldr::dist::group: device ", device,
         " needs ProcessGroupNCCL, which this build lacks (a CUDA "
         "LibTorch built with NCCL, compiled with -DUSE_C10D_NCCL); Debian's LibTorch has Gloo only: "
         "use --device cpu");
#endif
#ifndef USE_C10D_GLOO
  if (device.is_cpu())
    fail("tldr::dist::group: a world of ", where.world,
         " on the CPU needs ProcessGroupGloo, which this "
         "build lacks (install libgloo-dev, compile with -DUSE_C10D_GLOO)");
#endif
  // Gloo writes to sockets with writev, which raises SIGPIPE when a peer has died; Python (and so
  // torchrun's usual workers) ignores SIGPIPE, a C++ program dies of it silently. Ignored here,
  // the write fails with EPIPE and the collective throws the error this layer reports.
  struct sigaction previous{};
  if (sigaction(SIGPIPE, nullptr, &previous) == 0 && previous.sa_handler == SIG_DFL) std::signal(SIGPIPE, SIG_IGN);

  state_ = std::make_unique<state>();
  // A peer that never starts, or dies meanwhile, fails the rendezvous (the store's connect and wait,
  // then the group's exchange of addresses through it) within the timeout.
  auto rendezvous_error = [&](std::string_view step, const std::exception& error) {
    std::ostringstream out;
    out << "rank " << where.rank << " of " << where.world << ": rendezvous at " << where.master_addr << ":"
        << where.master_port << " failed (" << step << "): " << dist_describe(error)
        << " (a rank may have died or not started; timeout " << static_cast<double>(timeout.count()) / 1000.0 << " s)";
    return std::runtime_error(out.str());
  };
  try {
    c10d::TCPStoreOptions options;
    options.port = static_cast<std::uint16_t>(where.master_port);
    options.isServer = where.rank == 0;
    options.numWorkers = static_cast<std::size_t>(where.world);
    options.waitWorkers = true;
    options.timeout = timeout;
    state_->store = c10::make_intrusive<c10d::TCPStore>(where.master_addr, options);
  } catch (const std::exception& error) {
    throw rendezvous_error(where.rank == 0 ? "serving the store" : "connecting to the store", error);
  }
  try {
    if (device.is_cuda()) {
#ifdef USE_C10D_NCCL
      auto options = c10d::ProcessGroupNCCL::Options::create();
      options->timeout = timeout;
      state_->pg = c10::make_intrusive<c10d::ProcessGroupNCCL>(state_->store, where.rank, where.world, options);
      state_->gloo = false;
#endif
    } else {
#ifdef USE_C10D_GLOO
      auto options = c10d::ProcessGroupGloo::Options::create(timeout);
      if (const auto ifnames = dist_env("GLOO_SOCKET_IFNAME"); ifnames && !ifnames->empty()) {
        std::stringstream names(*ifnames);
        for (std::string name; std::getline(names, name, ',');)
          if (!name.empty()) options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(name));
      } else if (dist_is_loopback(where.master_addr)) {
        // Every rank is on this machine: loopback, whatever the hostname resolves to.
        options->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
      } else {
        options->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
      }
      state_->pg = c10::make_intrusive<c10d::ProcessGroupGloo>(state_->store, where.rank, where.world, options);
#endif
    }
  } catch (const std::exception& error) {
    throw rendezvous_error(device.is_cuda() ? "creating the NCCL group" : "creating the Gloo group", error);
  }
}

group::~group() = default;

void group::set_bucket_bytes(std::size_t bytes) {
  if (bytes == 0) fail("tldr::dist::group::set_bucket_bytes: 0 bytes");
  bucket_bytes_ = bytes;
}

namespace {

// Runs one communication step, turning whatever c10d or Gloo throws into the layer's error.
template <class Step>
auto dist_checked(const group& g, std::string_view operation, Step&& step) -> decltype(step()) {
  try {
    return step();
  } catch (const std::invalid_argument&) {
    throw;
  } catch (const std::exception& error) {
    std::ostringstream out;
    out << "rank " << g.rank() << " of " << g.world() << ": " << operation << " failed: " << dist_describe(error)
        << " (a rank may have died; timeout " << static_cast<double>(g.timeout().count()) / 1000.0 << " s)";
    throw std::runtime_error(out.str());
  }
}

}  // namespace

void group::all_reduce_sum(std::vector<torch::Tensor>& tensors) {
  const auto buckets = dist_make_buckets(tensors, bucket_bytes_, "all_reduce_sum");  // validates on world 1 too
  if (!state_) return;
  torch::NoGradGuard no_grad;
  dist_checked(*this, "all_reduce_sum", [&] {
    // Every bucket's all-reduce is queued before the first is awaited: Gloo's worker threads send
    // one while the next is flattened.
    std::vector<torch::Tensor> flats;
    std::vector<c10::intrusive_ptr<c10d::Work>> works;
    for (const auto& b : buckets) {
      const torch::Device wire_device = state_->gloo ? torch::Device(torch::kCPU) : device_;
      torch::Tensor flat;
      const torch::Tensor& first = tensors[b.members.front()];
      if (b.members.size() == 1 && first.scalar_type() == b.wire && first.is_contiguous() &&
          first.device() == wire_device) {
        flat = first.view({-1});  // reduced in place: no copy
      } else {
        std::vector<torch::Tensor> parts;
        parts.reserve(b.members.size());
        for (const std::size_t i : b.members) parts.push_back(tensors[i].reshape({-1}).to(wire_device, b.wire));
        flat = torch::cat(parts);
      }
      std::vector<torch::Tensor> one{flat};
      works.push_back(state_->pg->allreduce(one));
      flats.push_back(flat);
    }
    for (std::size_t k = 0; k < buckets.size(); ++k) {
      works[k]->wait();
      std::int64_t offset = 0;
      for (const std::size_t i : buckets[k].members) {
        torch::Tensor& t = tensors[i];
        const torch::Tensor piece = flats[k].slice(0, offset, offset + t.numel());
        offset += t.numel();
        if (piece.data_ptr() != t.data_ptr()) t.copy_(piece.view(t.sizes()));
      }
    }
  });
}

void group::sum_gradients(const std::vector<torch::Tensor>& parameters, double scale) {
  torch::NoGradGuard no_grad;
  // The grads (zeros where undefined), then how many ranks had each grad, in one call.
  std::vector<torch::Tensor> params;
  for (const auto& p : parameters)
    if (p.defined() && p.requires_grad()) params.push_back(p);
  std::vector<torch::Tensor> tensors;
  tensors.reserve(params.size() + 1);
  torch::Tensor had = torch::zeros({static_cast<std::int64_t>(params.size())}, torch::kLong);
  auto had_a = had.accessor<std::int64_t, 1>();
  for (std::size_t i = 0; i < params.size(); ++i) {
    const torch::Tensor grad = params[i].grad();
    had_a[static_cast<std::int64_t>(i)] = grad.defined() ? 1 : 0;
    tensors.push_back(grad.defined() ? grad : torch::zeros_like(params[i]));
  }
  if (state_) {
    tensors.push_back(had);
    all_reduce_sum(tensors);
  }
  for (std::size_t i = 0; i < params.size(); ++i) {
    if (had_a[static_cast<std::int64_t>(i)] == 0) continue;  // undefined on every rank: left so
    torch::Tensor& grad = params[i].mutable_grad();
    if (!grad.defined()) grad = tensors[i];
    if (scale != 1.0) grad.mul_(scale);
  }
}

double group::sum(double value) {
  if (!state_) return value;
  std::vector<torch::Tensor> one{torch::full({1}, value, torch::kDouble)};
  all_reduce_sum(one);
  return one[0].item<double>();
}

std::int64_t group::sum(std::int64_t value) {
  if (!state_) return value;
  std::vector<torch::Tensor> one{torch::full({1}, value, torch::kLong)};
  all_reduce_sum(one);
  return one[0].item<std::int64_t>();
}

std::vector<std::string> group::all_gather(const std::string& value) {
  if (!state_) return {value};
  const torch::Device wire_device = state_->gloo ? torch::Device(torch::kCPU) : device_;
  return dist_checked(*this, "all_gather", [&] {
    const auto world = static_cast<std::size_t>(where_.world);
    auto gather = [&](const torch::Tensor& mine) {
      std::vector<std::vector<torch::Tensor>> out(1);
      for (std::size_t r = 0; r < world; ++r) out[0].push_back(torch::empty_like(mine));
      std::vector<torch::Tensor> in{mine};
      state_->pg->allgather(out, in)->wait();
      return out[0];
    };
    const auto lengths =
        gather(torch::full({1}, static_cast<std::int64_t>(value.size()), torch::kLong).to(wire_device));
    std::vector<std::int64_t> length(world);
    std::int64_t longest = 0;
    for (std::size_t r = 0; r < world; ++r) {
      length[r] = lengths[r].item<std::int64_t>();
      longest = std::max(longest, length[r]);
    }
    std::vector<std::string> result(world);
    if (longest == 0) return result;
    torch::Tensor mine = torch::zeros({longest}, torch::kByte);
    std::memcpy(mine.data_ptr<std::uint8_t>(), value.data(), value.size());
    const auto bytes = gather(mine.to(wire_device));
    for (std::size_t r = 0; r < world; ++r) {
      const torch::Tensor host = bytes[r].cpu();
      result[r].assign(reinterpret_cast<const char*>(host.data_ptr<std::uint8_t>()),
                       static_cast<std::size_t>(length[r]));
    }
    return result;
  });
}

void group::broadcast(std::vector<torch::Tensor>& tensors, int root) {
  if (root < 0 || root >= where_.world)
    fail("tldr::dist::group::broadcast: root ", root, " is not a rank of world ", where_.world);
  const auto buckets = dist_make_buckets(tensors, bucket_bytes_, "broadcast");
  if (!state_) return;
  // Different layouts would be copied into silently (the bytes agree in number or not at all):
  // compare them first, a cheap message next to a model's worth.
  std::ostringstream layout;
  for (const auto& t : tensors) layout << t.scalar_type() << t.sizes() << ';';
  const auto layouts = all_gather(layout.str());
  for (int r = 0; r < where_.world; ++r)
    if (layouts[static_cast<std::size_t>(r)] != layouts[static_cast<std::size_t>(root)])
      fail("tldr::dist::group::broadcast: rank ", r, "'s tensors (", layouts[static_cast<std::size_t>(r)],
           ") differ from root ", root, "'s (", layouts[static_cast<std::size_t>(root)], ")");
  torch::NoGradGuard no_grad;
  dist_checked(*this, "broadcast", [&] {
    const torch::Device wire_device = state_->gloo ? torch::Device(torch::kCPU) : device_;
    c10d::BroadcastOptions options;
    options.rootRank = root;
    for (const auto& b : buckets) {
      std::vector<torch::Tensor> parts;
      for (const std::size_t i : b.members) parts.push_back(tensors[i].reshape({-1}).to(wire_device, b.wire));
      std::vector<torch::Tensor> one{torch::cat(parts)};
      state_->pg->broadcast(one, options)->wait();
      if (where_.rank == root) continue;
      std::int64_t offset = 0;
      for (const std::size_t i : b.members) {
        tensors[i].copy_(one[0].slice(0, offset, offset + tensors[i].numel()).view(tensors[i].sizes()));
        offset += tensors[i].numel();
      }
    }
  });
}

void group::barrier() {
  if (!state_) return;
  dist_checked(*this, "barrier", [&] { state_->pg->barrier()->wait(); });
}

// ---- overlap with backward -----------------------------------------------------------------

struct overlapped_gradients::impl {
  struct bucket {
    std::vector<std::size_t> members;   // indices into parameters_
    std::vector<std::int64_t> offsets;  // each member's place in flat
    torch::Tensor flat;                 // float32, zeroed before each step
    std::size_t pending = 0;            // members whose gradient has not arrived this step
    c10::intrusive_ptr<c10d::Work> work;
  };
  std::mutex mutex;
  std::vector<bucket> buckets;
  std::vector<std::size_t> bucket_of, place_in_bucket;
  std::vector<bool> arrived;
  std::size_t next = 0;   // the first bucket not launched yet
  std::size_t early = 0;  // launched by hooks this step
  std::vector<std::pair<torch::Tensor, unsigned>> hooks;
};

overlapped_gradients::overlapped_gradients(group& g, std::vector<torch::Tensor> parameters) : group_(g) {
  for (auto& p : parameters)
    if (p.defined() && p.requires_grad()) parameters_.push_back(std::move(p));
  if (!g.state_ || !g.state_->gloo || parameters_.empty()) return;
  for (const auto& p : parameters_)
    if (p.scalar_type() != torch::kFloat || !p.device().is_cpu()) return;  // sum_gradients handles the rest
  impl_ = std::make_unique<impl>();
  auto& in = *impl_;
  const std::size_t n = parameters_.size();
  in.bucket_of.resize(n);
  in.place_in_bucket.resize(n);
  in.arrived.assign(n, false);
  std::size_t bytes = 0;
  for (std::size_t k = n; k-- > 0;) {  // reverse order: the last layers' gradients come first
    const auto size = static_cast<std::size_t>(parameters_[k].numel()) * sizeof(float);
    if (in.buckets.empty() || (bytes > 0 && bytes + size > g.bucket_bytes())) {
      in.buckets.emplace_back();
      bytes = 0;
    }
    auto& b = in.buckets.back();
    in.bucket_of[k] = in.buckets.size() - 1;
    in.place_in_bucket[k] = b.members.size();
    b.offsets.push_back(b.members.empty() ? 0 : b.offsets.back() + parameters_[b.members.back()].numel());
    b.members.push_back(k);
    bytes += size;
  }
  for (auto& b : in.buckets) {
    const auto total = b.offsets.back() + parameters_[b.members.back()].numel();
    b.flat = torch::zeros({total}, torch::kFloat);
    b.pending = b.members.size();
  }
  for (std::size_t k = 0; k < n; ++k) {
    auto& p = parameters_[k];
    const unsigned id = p.register_hook([this, k](const torch::Tensor& grad) {
      auto& state = *impl_;
      std::lock_guard<std::mutex> lock(state.mutex);
      auto& b = state.buckets[state.bucket_of[k]];
      torch::NoGradGuard no_grad;
      auto slice = b.flat.narrow(0, b.offsets[state.place_in_bucket[k]], grad.numel());
      if (state.arrived[k]) {  // a second gradient for the same parameter this step: add it
        slice.add_(grad.reshape({-1}));
        return;
      }
      slice.copy_(grad.reshape({-1}));
      state.arrived[k] = true;
      --b.pending;
      // Launch, in bucket order, every bucket that is complete.
      while (state.next < state.buckets.size() && state.buckets[state.next].pending == 0) {
        auto& ready = state.buckets[state.next];
        std::vector<torch::Tensor> one{ready.flat};
        ready.work = dist_checked(group_, "overlapped all-reduce", [&] { return group_.state_->pg->allreduce(one); });
        ++state.next;
        ++state.early;
      }
    });
    in.hooks.emplace_back(p, id);
  }
}

overlapped_gradients::~overlapped_gradients() {
  if (!impl_) return;
  for (auto& [p, id] : impl_->hooks) p.remove_hook(id);
}

std::size_t overlapped_gradients::bucket_count() const { return impl_ ? impl_->buckets.size() : 0; }

void overlapped_gradients::finish(double scale) {
  if (!impl_) {
    group_.sum_gradients(parameters_, scale);
    return;
  }
  auto& in = *impl_;
  std::lock_guard<std::mutex> lock(in.mutex);
  torch::NoGradGuard no_grad;
  dist_checked(group_, "overlapped all-reduce", [&] {
    for (; in.next < in.buckets.size(); ++in.next) {  // what backward did not complete (zeros stand in)
      std::vector<torch::Tensor> one{in.buckets[in.next].flat};
      in.buckets[in.next].work = group_.state_->pg->allreduce(one);
    }
    for (auto& b : in.buckets) b.work->wait();
  });
  for (auto& b : in.buckets) {
    for (std::size_t j = 0; j < b.members.size(); ++j) {
      auto& p = parameters_[b.members[j]];
      const auto sum = b.flat.narrow(0, b.offsets[j], p.numel()).view(p.sizes());
      auto& grad = p.mutable_grad();
      if (grad.defined())
        grad.copy_(sum);
      else
        grad = sum.clone();
      if (scale != 1.0) grad.mul_(scale);
    }
    b.flat.zero_();  // ready for the next step
    b.pending = b.members.size();
    b.work.reset();
  }
  std::fill(in.arrived.begin(), in.arrived.end(), false);
  in.next = 0;
  launched_early_ = std::exchange(in.early, 0);
}

}  // namespace tldr::dist
