#pragma once
// SentencePiece tokeniser: trained on the training split's prompts and summaries, saved beside the
// models; an existing .model file (e.g. one shipped with real TL;DR checkpoints) loads through the
// same class. Ids 0..3 are fixed: pad, unk, bos, eos.
//
// Why through Debian's SentencePiece tools (spm_train, spm_encode, spm_decode, spm_export_vocab)
// rather than libsentencepiece in this process: Debian's libsentencepiece exports its bundled
// protobuf 3.14 and LibTorch loads the system protobuf 3.21; in one process the two interpose each
// other's symbols and the program dies before main (or at protobuf's version check). A child
// process per batch costs ~20 ms, so the API is batched: the pipeline encodes its data once and
// decodes samples a batch at a time.

#include "data.hpp"

#include <cstdint>
#include <filesystem>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace tldr {

using tokens = std::vector<std::int64_t>;

class tokenizer {
 public:
  static constexpr std::int64_t pad_id = 0, unk_id = 1, bos_id = 2, eos_id = 3;

  /// Loads (and checks) an existing model: its special ids must be pad 0, unk 1, bos 2, eos 3.
  explicit tokenizer(std::filesystem::path model_file);

  /// Trains a unigram model of `vocab_size` pieces on the examples' prompts and labels, writes
  /// `model_file` atomically and returns it loaded. Deterministic for the same input and `threads`
  /// (spm_train's result depends on its thread count).
  static tokenizer train(std::span<const example> corpus, int vocab_size, const std::filesystem::path& model_file,
                         int threads = 1);

  [[nodiscard]] std::vector<tokens> encode(std::span<const std::string> texts) const;
  /// Each sequence up to its first eos, without pad and bos.
  [[nodiscard]] std::vector<std::string> decode(std::span<const tokens> sequences) const;
  [[nodiscard]] tokens encode(const std::string& text) const;
  [[nodiscard]] std::string decode(const tokens& ids) const;
  [[nodiscard]] std::int64_t vocab_size() const { return static_cast<std::int64_t>(pieces_.size()); }
  [[nodiscard]] const std::filesystem::path& model_file() const { return model_; }

  /// Per prompt: bos + the prompt, its post truncated so the whole fits in max_tokens; the
  /// "TL;DR:" tail always survives (cutting it would change the task).
  [[nodiscard]] std::vector<tokens> encode_prompts(std::span<const std::string> prompts, std::int64_t max_tokens) const;
  /// Per label: its tokens + eos, cut at max_tokens (a cut label has no eos).
  [[nodiscard]] std::vector<tokens> encode_responses(std::span<const std::string> labels, std::int64_t max_tokens) const;

 private:
  std::filesystem::path model_;
  std::vector<std::string> pieces_;
};

}  // namespace tldr
