// The largest difference between the tensors of two checkpoints (checkpoint.hpp's archives, e.g.
// sft/model.pt of two runs), for the data-parallel test: a run on 2 ranks must train what one
// process trains, up to the rounding of sums taken in another order.
//
//   tldr_checkpoint_diff A.pt B.pt TOLERANCE
//       prints the largest absolute difference and the tensor it is in; exits 1 when it exceeds
//       TOLERANCE or when the two hold different tensors (names or shapes), 0 otherwise.

#include <torch/torch.h>

#include <cstdio>
#include <map>
#include <string>

namespace {

void collect(torch::serialize::InputArchive& archive, const std::string& prefix,
             std::map<std::string, torch::Tensor>& out) {
  for (const auto& key : archive.keys()) {
    torch::Tensor t;
    if (archive.try_read(key, t)) {
      out[prefix + key] = t;
      continue;
    }
    torch::serialize::InputArchive nested;
    if (archive.try_read(key, nested)) collect(nested, prefix + key + ".", out);
  }
}

std::map<std::string, torch::Tensor> tensors_of(const std::string& file) {
  torch::serialize::InputArchive archive;
  archive.load_from(file);
  std::map<std::string, torch::Tensor> out;
  collect(archive, "", out);
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 4) {
    std::fprintf(stderr, "usage: tldr_checkpoint_diff A.pt B.pt TOLERANCE\n");
    return 2;
  }
  try {
    const auto a = tensors_of(argv[1]), b = tensors_of(argv[2]);
    const double tolerance = std::stod(argv[3]);
    if (a.empty()) throw std::runtime_error(std::string(argv[1]) + " holds no tensors");
    double worst = 0;
    std::string where;
    for (const auto& [name, t] : a) {
      const auto it = b.find(name);
      if (it == b.end() || !it->second.sizes().equals(t.sizes())) {
        std::printf("%s: tensor %s is missing or has another shape in %s\n", argv[1], name.c_str(), argv[2]);
        return 1;
      }
      const double d =
          t.numel() == 0 ? 0.0 : (t.to(torch::kDouble) - it->second.to(torch::kDouble)).abs().max().item<double>();
      if (d > worst || where.empty()) worst = d, where = name;
    }
    if (a.size() != b.size()) {
      std::printf("%s holds %zu tensors, %s %zu\n", argv[1], a.size(), argv[2], b.size());
      return 1;
    }
    std::printf("%s vs %s: %zu tensors, largest difference %.3g (in %s), tolerance %.3g: %s\n", argv[1], argv[2],
                a.size(), worst, where.c_str(), tolerance, worst <= tolerance ? "ok" : "FAIL");
    return worst <= tolerance ? 0 : 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "tldr_checkpoint_diff: %s\n", e.what());
    return 1;
  }
}
