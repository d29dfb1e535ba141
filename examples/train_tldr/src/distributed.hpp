#pragma once
// Data-parallel training's communication layer (issue 15) on torch.distributed's C++ core, c10d:
// one process per rank, launched torchrun-style (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR,
// MASTER_PORT), meeting at a c10d::TCPStore served by rank 0, then talking through
// ProcessGroupGloo (CPU tensors; Debian's LibTorch) or ProcessGroupNCCL (CUDA tensors, only in a
// LibTorch built with it). A world of one process needs none of it: every collective is then the
// identity, so the pipeline calls the same code with or without a launcher. See docs/distributed.md.
//
// Every rank must call the same collectives in the same order with the same tensor layouts
// (count, dtypes, shapes), as with torch.distributed. A failure (a timeout, a peer that died: its
// sockets close and Gloo throws) becomes std::runtime_error "rank R of W: <operation> failed:
// <what> (a rank may have died; timeout T s)", so a dead rank stops the others within the timeout.

#include <torch/torch.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace tldr::dist {

/// Where this process sits in the run: torchrun's environment protocol, as torch.distributed's
/// env:// initialisation reads it.
struct launch {
  int rank = 0;
  int world = 1;
  int local_rank = 0;  // the rank on this machine: which CUDA device a rank takes (cuda:local_rank)
  std::string master_addr = "127.0.0.1";
  int master_port = 29500;  // torch's default (TCPStoreOptions::kDefaultPort)
};

/// The launch of this process from RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT.
/// No WORLD_SIZE: a single process (world 1; the other variables must then be unset or describe
/// rank 0). With WORLD_SIZE, RANK is required and LOCAL_RANK defaults to RANK, MASTER_ADDR to
/// 127.0.0.1, MASTER_PORT to 29500. std::invalid_argument naming the variable and its value when
/// one is not an integer, out of range (RANK=2 with WORLD_SIZE=2, a port outside 1..65535) or
/// missing; a run started with half a protocol would otherwise train alone without saying so.
[[nodiscard]] launch launch_from_env();

/// The run's process group: the ranks, and the collectives a data-parallel trainer needs.
class group {
 public:
  /// DistributedDataParallel's default bucket (torch.nn.parallel's bucket_cap_mb = 25).
  static constexpr std::size_t default_bucket_bytes = std::size_t{25} << 20;
  static constexpr std::chrono::milliseconds default_timeout{std::chrono::seconds(120)};

  /// Joins the run described by `where`. World 1: no store, no sockets. World > 1: rank 0 serves
  /// a TCPStore on master_port (the others connect to master_addr:master_port) and every rank
  /// waits up to `timeout` for all to arrive; then a Gloo group (device cpu) or, on a CUDA device,
  /// an NCCL group when this LibTorch has one (USE_C10D_NCCL), otherwise std::invalid_argument
  /// naming what is missing. `timeout` bounds the rendezvous and every collective: a rank that
  /// dies or stops answering makes the others throw std::runtime_error within it.
  /// Gloo's network device: the interfaces in GLOO_SOCKET_IFNAME (comma-separated) as torch does,
  /// else loopback when master_addr is a loopback address (every rank on this machine), else the
  /// address this machine's hostname resolves to (torch's default).
  group(const launch& where, torch::Device device = torch::kCPU, std::chrono::milliseconds timeout = default_timeout);
  ~group();
  group(const group&) = delete;
  group& operator=(const group&) = delete;

  [[nodiscard]] int rank() const { return where_.rank; }
  [[nodiscard]] int world() const { return where_.world; }
  /// Rank 0: the rank that logs, writes checkpoints and reports.
  [[nodiscard]] bool is_main() const { return where_.rank == 0; }
  [[nodiscard]] std::chrono::milliseconds timeout() const { return timeout_; }
  [[nodiscard]] torch::Device device() const { return device_; }
  /// The largest bucket all_reduce_sum and broadcast send at once (a bigger tensor goes alone).
  void set_bucket_bytes(std::size_t bytes);
  [[nodiscard]] std::size_t bucket_bytes() const { return bucket_bytes_; }

  /// Each tensor replaced, in place, by its sum over the ranks. Tensors are flattened into
  /// buckets of one dtype and device of at most bucket_bytes() (DDP's scheme: a few large
  /// messages instead of one per tensor; a tensor larger than a bucket goes alone), one
  /// all-reduce per bucket, and copied back. Float, double, half, int8, uint8, int32, int64 are
  /// summed as they are; bfloat16 and int16, which Gloo lacks, in float32 and int32 (exact);
  /// bool and complex: std::invalid_argument. Every rank must pass the same layout.
  void all_reduce_sum(std::vector<torch::Tensor>& tensors);

  /// Every parameter's .grad() replaced by the sum over the ranks times `scale` (1/world() gives
  /// DDP's average; 1 suits a loss already divided by the global number of examples). A grad
  /// undefined on a rank counts as zeros there, so every rank reduces the same buckets; it stays
  /// undefined only where it is undefined on every rank (so every rank's optimiser skips the same
  /// parameters). Parameters that do not require grad are skipped on every rank alike.
  void sum_gradients(const std::vector<torch::Tensor>& parameters, double scale = 1.0);

  /// The sum over ranks of one number per rank (a loss, a count of tokens).
  [[nodiscard]] double sum(double value);
  [[nodiscard]] std::int64_t sum(std::int64_t value);

  /// Every rank's string, in rank order (any lengths, empty included): lengths are gathered
  /// first, then the bytes padded to the longest.
  [[nodiscard]] std::vector<std::string> all_gather(const std::string& value);

  /// Every tensor replaced by root's, in place (e.g. every rank starts from rank 0's parameters).
  /// Bucketed like all_reduce_sum; the layouts are compared first (one all_gather), so a rank
  /// whose model differs fails with std::invalid_argument on every rank instead of receiving
  /// garbage.
  void broadcast(std::vector<torch::Tensor>& tensors, int root = 0);

  /// Returns when every rank has called it.
  void barrier();

 private:
  friend class overlapped_gradients;
  struct state;
  launch where_;
  torch::Device device_;
  std::chrono::milliseconds timeout_;
  std::size_t bucket_bytes_ = default_bucket_bytes;
  std::unique_ptr<state> state_;  // null in a world of one
};

/// DistributedDataParallel's overlap of communication with backward, for one model: its parameters
/// in buckets (in reverse order, roughly the order backward produces their gradients; at most
/// bucket_bytes() each), a hook on each parameter copying its gradient into its bucket, and a
/// bucket's all-reduce launched as soon as all its gradients are in, while backward goes on.
/// Buckets are launched in the same order on every rank (a bucket waits for those before it), so
/// a rank whose backward produced no gradient at all (an empty share) still matches the others.
/// finish() after backward launches what is left, waits, and sets every parameter's .grad to the
/// sum over ranks times `scale` — zeros where no rank had a gradient (unlike sum_gradients, which
/// leaves those undefined). In a world of one, or for parameters that are not all float32 on the
/// CPU (Gloo's case), it installs no hooks and finish() is sum_gradients. No rank may call another
/// collective between the backward that fires the hooks and finish(): the order of collectives
/// must be the same on every rank.
class overlapped_gradients {
 public:
  overlapped_gradients(group& g, std::vector<torch::Tensor> parameters);
  ~overlapped_gradients();
  overlapped_gradients(const overlapped_gradients&) = delete;
  overlapped_gradients& operator=(const overlapped_gradients&) = delete;

  /// After backward (or in its place on a rank with nothing to back-propagate).
  void finish(double scale = 1.0);
  /// Buckets the gradients go in; 0 when not overlapping.
  [[nodiscard]] std::size_t bucket_count() const;
  /// Buckets whose all-reduce started before finish() in the last step (during backward).
  [[nodiscard]] std::size_t launched_during_backward() const { return launched_early_; }

 private:
  struct impl;
  group& group_;
  std::vector<torch::Tensor> parameters_;
  std::unique_ptr<impl> impl_;  // null when not overlapping
  std::size_t launched_early_ = 0;
};

}  // namespace tldr::dist
