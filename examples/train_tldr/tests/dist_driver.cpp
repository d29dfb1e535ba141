// One rank of tests/distributed_test.sh: run as N processes with torchrun's environment (RANK,
// WORLD_SIZE, MASTER_ADDR, MASTER_PORT), or alone as a world of one.
//
//   tldr_dist_driver collectives      every collective of src/distributed.hpp against known sums
//   tldr_dist_driver die              rank V dies (SIGKILL) before an all-reduce; the others must
//                                     throw the layer's error within the timeout (exit 3)
//   tldr_dist_driver stall            rank V stays alive but silent; the others must time out (exit 3)
//   tldr_dist_driver bench [MB]       all-reduce of MB megabytes of float32 (default 100): GB/s
// Options after the mode: --timeout-ms T (default 10000), --victim V (default 1). Exit 0: every check passed; 1: a
// check failed (printed); 3: the expected communication error (printed to stderr).

#include "distributed.hpp"

#include <torch/torch.h>

#include <chrono>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace {

int failures = 0;

void check(bool ok, const std::string& what) {
  if (!ok) {
    ++failures;
    std::cerr << "FAILED: " << what << "\n";
  }
}

// Forward declaration: defined below check_all_reduce's helpers.
void check_overlapped_gradients(tldr::dist::group& g);

// A tensor whose value on rank r is rank_value(r); integer-valued, so every sum is exact.
torch::Tensor rank_tensor(int r, torch::IntArrayRef shape, torch::ScalarType dtype) {
  const auto n = c10::multiply_integers(shape);
  return (torch::arange(n, torch::kLong).remainder(7) * (r + 1) + r).to(dtype).reshape(shape);
}

void check_all_reduce(tldr::dist::group& g, std::size_t bucket_bytes) {
  g.set_bucket_bytes(bucket_bytes);
  struct spec {
    std::vector<std::int64_t> shape;
    torch::ScalarType dtype;
  };
  const std::vector<spec> specs = {{{3, 5}, torch::kFloat}, {{7}, torch::kDouble},      {{100}, torch::kLong},
                                   {{4}, torch::kBFloat16}, {{33}, torch::kHalf},       {{0}, torch::kInt},
                                   {{10}, torch::kByte},    {{2, 3, 4}, torch::kShort}, {{1000}, torch::kFloat},
                                   {{9}, torch::kChar},     {{6}, torch::kInt},         {{5}, torch::kFloat}};
  std::vector<torch::Tensor> tensors;
  std::vector<torch::Tensor> expected;
  for (const auto& s : specs) {
    tensors.push_back(rank_tensor(g.rank(), s.shape, s.dtype));
    torch::Tensor sum = torch::zeros(s.shape, torch::kDouble);
    for (int r = 0; r < g.world(); ++r) sum += rank_tensor(r, s.shape, torch::kDouble);
    expected.push_back(sum.to(s.dtype));
  }
  // A non-contiguous view: the sum must land in the viewed storage.
  torch::Tensor base = rank_tensor(g.rank(), {4, 6}, torch::kFloat);
  tensors.push_back(base.t());
  torch::Tensor base_sum = torch::zeros({4, 6}, torch::kFloat);
  for (int r = 0; r < g.world(); ++r) base_sum += rank_tensor(r, {4, 6}, torch::kFloat);
  expected.push_back(base_sum.t());

  g.all_reduce_sum(tensors);
  for (std::size_t i = 0; i < tensors.size(); ++i)
    check(tensors[i].scalar_type() == expected[i].scalar_type() && torch::equal(tensors[i], expected[i]),
          "all_reduce_sum (bucket " + std::to_string(bucket_bytes) + " bytes) tensor " + std::to_string(i));
  check(torch::equal(base, base_sum), "all_reduce_sum into a transposed view");
}

// Two linear layers with integer weights: per-rank inputs give per-rank integer gradients, so the
// summed gradients are exact. `spare` is used by ranks > 0 only (undefined grad on rank 0), `idle`
// by none.
struct net_impl : torch::nn::Module {
  torch::nn::Linear first{nullptr}, spare{nullptr}, idle{nullptr};
  net_impl() {
    first = register_module("first", torch::nn::Linear(4, 3));
    spare = register_module("spare", torch::nn::Linear(3, 2));
    idle = register_module("idle", torch::nn::Linear(2, 2));
    torch::NoGradGuard no_grad;
    for (auto& p : parameters()) p.copy_(rank_tensor(0, p.sizes(), torch::kFloat) - 3);
  }
  torch::Tensor loss(int r) {
    const torch::Tensor x = torch::full({2, 4}, r + 1.0) + torch::arange(4, torch::kFloat);
    torch::Tensor h = first(x);
    torch::Tensor out = h.sum() * (r + 1);
    if (r > 0) out = out + spare(h).sum();
    return out;
  }
};

void check_sum_gradients(tldr::dist::group& g) {
  auto model = std::make_shared<net_impl>();
  model->loss(g.rank()).backward();
  const auto params = model->parameters();
  // What each rank's gradients are, computed here for every rank.
  std::vector<torch::Tensor> expected(params.size());
  for (int r = 0; r < g.world(); ++r) {
    auto other = std::make_shared<net_impl>();
    other->loss(r).backward();
    const auto other_params = other->parameters();
    for (std::size_t i = 0; i < params.size(); ++i) {
      const torch::Tensor grad = other_params[i].grad();
      if (!grad.defined()) continue;
      expected[i] = expected[i].defined() ? expected[i] + grad : grad.clone();
    }
  }
  check(!params[2].grad().defined() || g.rank() > 0, "rank 0 has no grad for spare before the sum");
  g.sum_gradients(params, 0.5);
  for (std::size_t i = 0; i < params.size(); ++i) {
    const torch::Tensor grad = params[i].grad();
    if (!expected[i].defined()) {
      check(!grad.defined(), "sum_gradients: parameter " + std::to_string(i) + " unused everywhere keeps no grad");
      continue;
    }
    check(grad.defined() && torch::equal(grad, expected[i] * 0.5),
          "sum_gradients: parameter " + std::to_string(i) + " is half the sum over ranks");
  }
}

void check_scalars_and_strings(tldr::dist::group& g) {
  const int w = g.world();
  check(g.sum(g.rank() + 0.5) == w * (w - 1) / 2.0 + 0.5 * w, "sum(double)");
  const std::int64_t big = 1'000'000'000'000;
  check(g.sum(big * g.rank()) == big * w * (w - 1) / 2, "sum(int64)");

  // Rank r sends 3r bytes (rank 0: none), a NUL among them.
  auto text = [](int r) {
    std::string s(static_cast<std::size_t>(3 * r), static_cast<char>('a' + r));
    if (r > 0) s[1] = '\0';
    return s;
  };
  const auto gathered = g.all_gather(text(g.rank()));
  check(gathered.size() == static_cast<std::size_t>(w), "all_gather: one string per rank");
  for (int r = 0; r < w && r < static_cast<int>(gathered.size()); ++r)
    check(gathered[static_cast<std::size_t>(r)] == text(r), "all_gather: rank " + std::to_string(r) + "'s string");
  const auto empties = g.all_gather("");
  check(empties == std::vector<std::string>(static_cast<std::size_t>(w)), "all_gather of empty strings");
}

void check_broadcast(tldr::dist::group& g) {
  g.set_bucket_bytes(48);
  const int root = g.world() - 1;
  std::vector<torch::Tensor> tensors = {rank_tensor(g.rank(), {5, 3}, torch::kFloat),
                                        rank_tensor(g.rank(), {40}, torch::kLong),
                                        rank_tensor(g.rank(), {3}, torch::kBFloat16)};
  g.broadcast(tensors, root);
  check(torch::equal(tensors[0], rank_tensor(root, {5, 3}, torch::kFloat)) &&
            torch::equal(tensors[1], rank_tensor(root, {40}, torch::kLong)) &&
            torch::equal(tensors[2], rank_tensor(root, {3}, torch::kBFloat16)),
        "broadcast from rank " + std::to_string(root));

  // Rank 1's model differs: every rank must refuse, and the group must still work afterwards.
  if (g.world() > 1) {
    std::vector<torch::Tensor> mismatched = {torch::zeros({g.rank() == 1 ? 4 : 3})};
    bool refused = false;
    try {
      g.broadcast(mismatched);
    } catch (const std::invalid_argument& error) {
      refused = std::string(error.what()).find("rank 1's tensors") != std::string::npos;
    }
    check(refused, "broadcast refuses different layouts on every rank");
  }
  g.barrier();
  check(g.sum(std::int64_t{1}) == g.world(), "the group works after a refused broadcast");
}

// Overlap with backward: two copies of a small model, the same per-rank loss (different on each
// rank; rank 1 has an empty share and runs no backward at all), one summed by sum_gradients after
// backward, one by overlapped_gradients during it with buckets of a few parameters; the sums must
// be equal bit for bit, buckets must have started during backward on ranks that ran one, and
// the hooks must keep working over several steps and leave no gradient behind.
void check_overlapped_gradients(tldr::dist::group& g) {
  g.set_bucket_bytes(600);  // a few parameters per bucket: several buckets
  torch::manual_seed(3);
  auto a = torch::nn::Sequential(torch::nn::Linear(8, 16), torch::nn::Tanh(), torch::nn::Linear(16, 16),
                                 torch::nn::Tanh(), torch::nn::Linear(16, 4));
  auto b = torch::nn::Sequential(torch::nn::Linear(8, 16), torch::nn::Tanh(), torch::nn::Linear(16, 16),
                                 torch::nn::Tanh(), torch::nn::Linear(16, 4));
  {
    torch::NoGradGuard no_grad;
    const auto pa = a->parameters(), pb = b->parameters();
    for (std::size_t i = 0; i < pa.size(); ++i) pb[i].copy_(pa[i]);
  }
  tldr::dist::overlapped_gradients overlap(g, b->parameters());
  // A world of one has nothing to overlap: no hooks, finish() is sum_gradients.
  const bool overlapping = g.world() > 1;
  check(overlapping ? overlap.bucket_count() > 1 : overlap.bucket_count() == 0,
        "overlapped_gradients: bucket count " + std::to_string(overlap.bucket_count()));
  for (int step = 0; step < 3; ++step) {
    for (auto& p : a->parameters()) p.mutable_grad() = torch::Tensor();
    for (auto& p : b->parameters()) p.mutable_grad() = torch::Tensor();
    const bool empty_share = g.rank() == 1;
    torch::manual_seed(100 * step + g.rank());
    const auto x = torch::randn({5, 8});
    // No other collective may run between a backward with hooks and finish(): b first, then a.
    if (!empty_share) b->forward(x).pow(2).sum().backward();
    overlap.finish(0.5);
    if (!empty_share) a->forward(x).pow(2).sum().backward();
    g.sum_gradients(a->parameters(), 0.5);
    const auto pa = a->parameters(), pb = b->parameters();
    for (std::size_t i = 0; i < pa.size(); ++i) {
      const auto ga = pa[i].grad().defined() ? pa[i].grad() : torch::zeros_like(pa[i]);
      check(pb[i].grad().defined() && ga.equal(pb[i].grad()), "overlapped_gradients: step " + std::to_string(step) +
                                                                  ", parameter " + std::to_string(i) +
                                                                  " equals sum_gradients'");
    }
    if (!empty_share && overlapping)
      check(overlap.launched_during_backward() > 0, "overlapped_gradients: buckets launched during backward");
    else
      check(overlap.launched_during_backward() == 0, "overlapped_gradients: nothing launched without backward");
  }
  g.set_bucket_bytes(tldr::dist::group::default_bucket_bytes);
}

int run_collectives(const tldr::dist::launch& where, std::chrono::milliseconds timeout) {
  tldr::dist::group g(where, torch::kCPU, timeout);
  check(g.rank() == where.rank && g.world() == where.world && g.is_main() == (where.rank == 0), "rank and world");
  check_all_reduce(g, 64);   // about one tensor per bucket; the 4000-byte tensor alone
  check_all_reduce(g, 256);  // several buckets per dtype, some of several tensors
  check_all_reduce(g, tldr::dist::group::default_bucket_bytes);
  check_sum_gradients(g);
  check_overlapped_gradients(g);
  check_scalars_and_strings(g);
  check_broadcast(g);
  g.barrier();
  std::cout << "rank " << g.rank() << " of " << g.world() << ": " << (failures ? "FAILED" : "ok") << std::endl;
  return failures ? 1 : 0;
}

// Rank `victim` leaves (dies, or stops answering) after the group is made; the others' next
// all-reduce must throw the layer's std::runtime_error within the timeout. Victim 0 is the store's
// server too.
int run_fault(const tldr::dist::launch& where, std::chrono::milliseconds timeout, bool die, int victim) {
  tldr::dist::group g(where, torch::kCPU, timeout);
  g.barrier();
  if (g.rank() == victim) {
    if (die) std::raise(SIGKILL);
    std::this_thread::sleep_for(timeout * 10);  // the script ends it
    return 0;
  }
  std::vector<torch::Tensor> tensors = {torch::ones({1000})};
  try {
    g.all_reduce_sum(tensors);
  } catch (const std::runtime_error& error) {
    std::cerr << error.what() << std::endl;
    return 3;  // destroys the group: must not hang on the dead peer either
  }
  std::cerr << "FAILED: the all-reduce returned although rank " << victim << " is gone" << std::endl;
  return 1;
}

int run_bench(const tldr::dist::launch& where, std::chrono::milliseconds timeout, double megabytes) {
  tldr::dist::group g(where, torch::kCPU, timeout);
  const auto n = static_cast<std::int64_t>(megabytes * 1e6 / 4);
  const double bytes = static_cast<double>(n) * 4;
  for (const std::size_t bucket : {tldr::dist::group::default_bucket_bytes, static_cast<std::size_t>(bytes)}) {
    g.set_bucket_bytes(bucket);
    std::vector<torch::Tensor> tensors = {torch::ones({n})};
    g.all_reduce_sum(tensors);  // warm-up: connections, buffers
    const int reps = 3;
    g.barrier();
    const auto start = std::chrono::steady_clock::now();
    for (int i = 0; i < reps; ++i) g.all_reduce_sum(tensors);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() / reps;
    const double expected = std::pow(static_cast<double>(g.world()), reps + 1);
    check(tensors[0][0].item<double>() == expected && tensors[0][n - 1].item<double>() == expected, "bench sums");
    const int w = g.world();
    if (g.is_main())
      std::printf(
          "all_reduce_sum of %.0f MB float32, %d ranks, bucket %.1f MiB: %.3f s, %.2f GB/s of tensor "
          "(%.2f GB/s per rank on the wire, ring 2(N-1)/N)\n",
          bytes / 1e6, w, static_cast<double>(bucket) / (1 << 20), seconds, bytes / seconds / 1e9,
          2.0 * (w - 1) / w * bytes / seconds / 1e9);
  }
  return failures ? 1 : 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::cerr << "usage: tldr_dist_driver collectives|die|stall|bench [MB] [--timeout-ms T] [--victim V]\n";
    return 2;
  }
  const std::string mode = argv[1];
  std::chrono::milliseconds timeout{10000};
  double megabytes = 100;
  int victim = 1;
  for (int i = 2; i < argc; ++i) {
    const std::string arg = argv[i];
    if (arg == "--timeout-ms" && i + 1 < argc) {
      timeout = std::chrono::milliseconds(std::stol(argv[++i]));
    } else if (arg == "--victim" && i + 1 < argc) {
      victim = std::stoi(argv[++i]);
    } else if (mode == "bench") {
      megabytes = std::stod(arg);
    } else {
      std::cerr << "unknown argument " << arg << "\n";
      return 2;
    }
  }
  try {
    const auto where = tldr::dist::launch_from_env();
    torch::set_num_threads(1);  // ranks share the machine's cores
    if (mode == "collectives") return run_collectives(where, timeout);
    if (mode == "die" || mode == "stall") return run_fault(where, timeout, mode == "die", victim);
    if (mode == "bench") return run_bench(where, timeout, megabytes);
    std::cerr << "unknown mode " << mode << "\n";
    return 2;
  } catch (const std::exception& error) {
    std::cerr << "FAILED: " << error.what() << std::endl;
    return 1;
  }
}
