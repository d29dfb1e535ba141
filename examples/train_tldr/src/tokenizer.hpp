#pragma once
// The pipeline's tokeniser, one of two kinds behind one interface:
// - SentencePiece (tokenizer/spm.model): trained on the training split's prompts and summaries, or
//   an existing .model file (e.g. one shipped with real TL;DR checkpoints). Ids 0..3 are fixed:
//   pad, unk, bos, eos.
// - A Hugging Face tokenizer.json (byte-level BPE, brain::io::bpe_tokenizer), the one of a model
//   folder given with --model-dir (tokenizer/tokenizer.json). bos and eos are its end-of-text
//   token ("<|endoftext|>" for GPT-2), as GPT-2 uses it; a summary is encoded after a space, as
//   it follows "TL;DR:" in running text.
// Padding positions hold id 0 in both: they are masked everywhere (attention, losses, rewards),
// so any valid id would do.
//
// Why SentencePiece runs as Debian's tools (spm_train, spm_encode, spm_decode, spm_export_vocab)
// rather than libsentencepiece in this process: Debian's libsentencepiece exports its bundled
// protobuf 3.14 and LibTorch loads the system protobuf 3.21; in one process the two interpose each
// other's symbols and the program dies before main (or at protobuf's version check). A child
// process per batch costs ~20 ms, so the API is batched: the pipeline encodes its data once and
// decodes samples a batch at a time.

#include "data.hpp"

#include <brain/io/bpe_tokenizer.hpp>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace tldr {

using tokens = std::vector<std::int64_t>;

class tokenizer {
 public:
  /// What padding positions hold (masked everywhere).
  static constexpr std::int64_t pad_id = 0;
  /// SentencePiece models' fixed special ids.
  static constexpr std::int64_t spm_unk_id = 1, spm_bos_id = 2, spm_eos_id = 3;

  /// Loads (and checks) an existing model: a file ending in .json is a Hugging Face tokenizer.json
  /// (which must have an end-of-text special token: "<|endoftext|>", "</s>", "<|end_of_text|>" or
  /// "<eos>"); any other a SentencePiece model, whose special ids must be pad 0, unk 1, bos 2, eos 3.
  explicit tokenizer(std::filesystem::path model_file);

  /// Trains a SentencePiece unigram model of `vocab_size` pieces on the examples' prompts and labels, writes
  /// `model_file` atomically and returns it loaded. Deterministic for the same input and `threads`
  /// (spm_train's result depends on its thread count).
  static tokenizer train(std::span<const example> corpus, int vocab_size, const std::filesystem::path& model_file,
                         int threads = 1);

  [[nodiscard]] std::vector<tokens> encode(std::span<const std::string> texts) const;
  /// Each sequence up to its first eos, without a leading bos (SentencePiece: without pad and bos
  /// anywhere; tokenizer.json: without the space encode_responses puts before a summary, and with
  /// each byte outside well-formed UTF-8 replaced by U+FFFD).
  [[nodiscard]] std::vector<std::string> decode(std::span<const tokens> sequences) const;
  [[nodiscard]] tokens encode(const std::string& text) const;
  [[nodiscard]] std::string decode(const tokens& ids) const;
  [[nodiscard]] std::int64_t vocab_size() const;
  [[nodiscard]] std::int64_t bos_id() const { return bos_; }
  [[nodiscard]] std::int64_t eos_id() const { return eos_; }
  /// True for a tokenizer.json (byte-level BPE), false for SentencePiece.
  [[nodiscard]] bool is_byte_level() const { return bpe_ != nullptr; }
  [[nodiscard]] const std::filesystem::path& model_file() const { return model_; }

  /// Per prompt: bos + the prompt, its post truncated so the whole fits in max_tokens; the
  /// "TL;DR:" tail always survives (cutting it would change the task).
  [[nodiscard]] std::vector<tokens> encode_prompts(std::span<const std::string> prompts, std::int64_t max_tokens) const;
  /// Per label: its tokens + eos, cut at max_tokens (a cut label has no eos).
  [[nodiscard]] std::vector<tokens> encode_responses(std::span<const std::string> labels,
                                                     std::int64_t max_tokens) const;

 private:
  std::filesystem::path model_;
  std::vector<std::string> pieces_;                      // SentencePiece
  std::shared_ptr<const brain::io::bpe_tokenizer> bpe_;  // tokenizer.json
  std::int64_t bos_ = spm_bos_id, eos_ = spm_eos_id;
};

}  // namespace tldr
