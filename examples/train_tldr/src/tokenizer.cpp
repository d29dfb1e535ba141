#include "tokenizer.hpp"

#include "checkpoint.hpp"

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <optional>
#include <sstream>
#include <stdexcept>

extern char** environ;

namespace tldr {
namespace fs = std::filesystem;
namespace {

/// A scratch directory removed on scope exit.
struct scratch {
  fs::path dir;
  scratch() {
    static std::atomic<int> counter{0};
    dir = fs::temp_directory_path() / ("tldr-spm-" + std::to_string(::getpid()) + "-" + std::to_string(counter++));
    fs::create_directories(dir);
  }
  ~scratch() {
    std::error_code ignored;
    fs::remove_all(dir, ignored);
  }
};

/// Runs a SentencePiece tool without a shell; its stderr goes to a file quoted in the error.
void run_tool(std::vector<std::string> args, const fs::path& log) {
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, STDERR_FILENO, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, "/dev/null", O_WRONLY, 0);
  pid_t pid = 0;
  const int rc = posix_spawnp(&pid, argv[0], &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0)
    throw std::runtime_error("cannot run " + args[0] + " (Debian package 'sentencepiece'): " + std::strerror(rc));
  int status = 0;
  while (waitpid(pid, &status, 0) < 0)
    if (errno != EINTR) throw std::runtime_error("waitpid failed for " + args[0]);
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    std::string tail = fs::exists(log) ? read_text(log) : "";
    if (tail.size() > 2000) tail = tail.substr(tail.size() - 2000);
    throw std::runtime_error(args[0] + " failed (status " + std::to_string(status) + "): " + tail);
  }
}

void write_lines(const fs::path& file, std::span<const std::string> lines) {
  std::ofstream out(file, std::ios::binary);
  for (std::string line : lines) {
    // One sentence per line; SentencePiece normalises whitespace, so a newline becomes a space.
    for (char& c : line)
      if (c == '\n' || c == '\r') c = ' ';
    out << line << '\n';
  }
  if (!out) throw std::runtime_error("cannot write " + file.string());
}

std::vector<std::string> read_lines(const fs::path& file) {
  std::ifstream in(file, std::ios::binary);
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(std::move(line));
  return lines;
}

}  // namespace

tokenizer::tokenizer(fs::path model_file) : model_(std::move(model_file)) {
  if (model_.extension() == ".json") {
    bpe_ = std::make_shared<const brain::io::bpe_tokenizer>(brain::io::bpe_tokenizer::from_file(model_));
    std::optional<std::int64_t> end;
    for (const char* name : {"<|endoftext|>", "</s>", "<|end_of_text|>", "<eos>"})
      if (!end) end = bpe_->token_id(name);
    if (!end)
      throw std::invalid_argument(model_.string() +
                                  ": no end-of-text token (\"<|endoftext|>\", \"</s>\", "
                                  "\"<|end_of_text|>\" or \"<eos>\"), which the pipeline needs as bos and eos");
    bos_ = eos_ = *end;
    return;
  }
  if (!fs::exists(model_)) throw std::runtime_error("SentencePiece model " + model_.string() + " does not exist");
  scratch s;
  run_tool({"spm_export_vocab", "--model=" + model_.string(), "--output=" + (s.dir / "vocab").string()}, s.dir / "log");
  for (const auto& line : read_lines(s.dir / "vocab")) pieces_.push_back(line.substr(0, line.find('\t')));
  const std::vector<std::string> expected{"<pad>", "<unk>", "<s>", "</s>"};
  if (pieces_.size() < expected.size() || !std::equal(expected.begin(), expected.end(), pieces_.begin()))
    throw std::runtime_error(
        "SentencePiece model " + model_.string() +
        " must have ids pad=0 unk=1 bos=2 eos=3 (spm_train --pad_id=0 --unk_id=1 --bos_id=2 --eos_id=3)");
}

tokenizer tokenizer::train(std::span<const example> corpus, int vocab_size, const fs::path& model_file, int threads) {
  if (corpus.empty()) throw std::invalid_argument("tokenizer::train: empty corpus");
  if (vocab_size < 8)
    throw std::invalid_argument("tokenizer::train: vocab_size = " + std::to_string(vocab_size) + " < 8");
  scratch s;
  std::vector<std::string> lines;
  lines.reserve(2 * corpus.size());
  for (const auto& e : corpus) {
    lines.push_back(e.prompt);
    lines.push_back(e.label);
  }
  write_lines(s.dir / "corpus.txt", lines);
  run_tool({"spm_train", "--input=" + (s.dir / "corpus.txt").string(), "--model_prefix=" + (s.dir / "spm").string(),
            "--vocab_size=" + std::to_string(vocab_size), "--model_type=unigram", "--character_coverage=0.9995",
            "--pad_id=0", "--unk_id=1", "--bos_id=2", "--eos_id=3", "--input_sentence_size=2000000",
            "--shuffle_input_sentence=false", "--hard_vocab_limit=false", "--num_threads=" + std::to_string(threads),
            "--minloglevel=1"},
           s.dir / "log");
  if (model_file.has_parent_path()) fs::create_directories(model_file.parent_path());
  atomic_write(model_file, [&](const fs::path& tmp) {
    fs::copy_file(s.dir / "spm.model", tmp, fs::copy_options::overwrite_existing);
  });
  return tokenizer(model_file);
}

std::int64_t tokenizer::vocab_size() const {
  return bpe_ ? bpe_->vocab_size() : static_cast<std::int64_t>(pieces_.size());
}

std::vector<tokens> tokenizer::encode(std::span<const std::string> texts) const {
  if (texts.empty()) return {};
  if (bpe_) {
    std::vector<tokens> out;
    out.reserve(texts.size());
    for (const auto& t : texts) out.push_back(bpe_->encode(t));
    return out;
  }
  scratch s;
  write_lines(s.dir / "in", texts);
  run_tool({"spm_encode", "--model=" + model_.string(), "--output_format=id", "--input=" + (s.dir / "in").string(),
            "--output=" + (s.dir / "out").string()},
           s.dir / "log");
  const auto lines = read_lines(s.dir / "out");
  if (lines.size() != texts.size())
    throw std::runtime_error("spm_encode returned " + std::to_string(lines.size()) + " lines for " +
                             std::to_string(texts.size()) + " texts");
  std::vector<tokens> out(lines.size());
  for (std::size_t i = 0; i < lines.size(); ++i) {
    std::istringstream in(lines[i]);
    for (std::int64_t id; in >> id;) out[i].push_back(id);
  }
  return out;
}

std::vector<std::string> tokenizer::decode(std::span<const tokens> sequences) const {
  if (sequences.empty()) return {};
  if (bpe_) {
    std::vector<std::string> out;
    out.reserve(sequences.size());
    for (const auto& seq : sequences) {
      auto first = seq.begin();
      if (first != seq.end() && *first == bos_) ++first;
      const auto last = std::find(first, seq.end(), eos_);
      std::string text = bpe_->decode(std::span<const std::int64_t>(&*first, static_cast<std::size_t>(last - first)));
      if (text.starts_with(' ')) text.erase(0, 1);  // the space encode_responses adds
      out.push_back(brain::io::valid_utf8(text));   // samples may stop inside a character
    }
    return out;
  }
  scratch s;
  std::vector<std::string> lines;
  std::vector<bool> empty;
  for (const auto& seq : sequences) {
    std::string line;
    for (const auto id : seq) {
      if (id == eos_) break;
      if (id == pad_id || id == bos_) continue;
      if (id < 0 || id >= vocab_size())
        throw std::invalid_argument("tokenizer::decode: id " + std::to_string(id) + " out of range");
      if (!line.empty()) line += ' ';
      line += std::to_string(id);
    }
    empty.push_back(line.empty());
    lines.push_back(line.empty() ? std::to_string(spm_unk_id) : line);  // spm_decode skips empty lines
  }
  write_lines(s.dir / "in", lines);
  run_tool({"spm_decode", "--model=" + model_.string(), "--input_format=id", "--input=" + (s.dir / "in").string(),
            "--output=" + (s.dir / "out").string()},
           s.dir / "log");
  auto out = read_lines(s.dir / "out");
  if (out.size() != sequences.size())
    throw std::runtime_error("spm_decode returned " + std::to_string(out.size()) + " lines for " +
                             std::to_string(sequences.size()) + " sequences");
  for (std::size_t i = 0; i < out.size(); ++i)
    if (empty[i]) out[i].clear();
  return out;
}

tokens tokenizer::encode(const std::string& text) const {
  return encode(std::span<const std::string>(&text, 1)).front();
}
std::string tokenizer::decode(const tokens& ids) const { return decode(std::span<const tokens>(&ids, 1)).front(); }

std::vector<tokens> tokenizer::encode_prompts(std::span<const std::string> prompts, std::int64_t max_tokens) const {
  static const std::string tail = "TL;DR:";
  const tokens tail_ids = encode(tail);
  const auto room = max_tokens - 1 - static_cast<std::int64_t>(tail_ids.size());
  if (room < 1)
    throw std::invalid_argument("encode_prompts: max_tokens = " + std::to_string(max_tokens) + " is too small");
  std::vector<std::string> heads;
  std::vector<bool> has_tail;
  for (const auto& p : prompts) {
    has_tail.push_back(std::string_view(p).ends_with(tail));
    heads.push_back(has_tail.back() ? p.substr(0, p.size() - tail.size()) : p);
  }
  auto out = encode(heads);
  for (std::size_t i = 0; i < out.size(); ++i) {
    auto& t = out[i];
    if (static_cast<std::int64_t>(t.size()) > room) t.resize(static_cast<std::size_t>(room));
    t.insert(t.begin(), bos_);
    if (has_tail[i]) t.insert(t.end(), tail_ids.begin(), tail_ids.end());
  }
  return out;
}

std::vector<tokens> tokenizer::encode_responses(std::span<const std::string> labels, std::int64_t max_tokens) const {
  std::vector<tokens> out;
  if (bpe_) {  // a summary follows "TL;DR:" after a space, as in running text
    std::vector<std::string> spaced;
    spaced.reserve(labels.size());
    for (const auto& l : labels) spaced.push_back(l.empty() || l.front() == ' ' ? l : " " + l);
    out = encode(spaced);
  } else {
    out = encode(labels);
  }
  for (auto& t : out) {
    t.push_back(eos_);
    if (static_cast<std::int64_t>(t.size()) > max_tokens) t.resize(static_cast<std::size_t>(max_tokens));
  }
  return out;
}

}  // namespace tldr
