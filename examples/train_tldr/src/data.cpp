#include "data.hpp"

#include "hashing.hpp"
#include "text.hpp"

#include <sys/wait.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <fstream>
#include <istream>
#include <map>
#include <sstream>
#include <stdexcept>
#include <tuple>
#include <utility>

#include <nlohmann/json.hpp>

namespace tldr {
namespace {

constexpr std::string_view tldr_marker = "TL;DR:";

// Blanks that separate fields and words in the data files (not '\f' or '\v', unlike text::is_space).
bool is_blank_or_newline(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }
using text::is_alnum;
char to_lower(char c) { return static_cast<char>(std::tolower(static_cast<unsigned char>(c))); }

std::string lowercase(std::string_view s) {
  std::string out(s);
  std::transform(out.begin(), out.end(), out.begin(), to_lower);
  return out;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && is_blank_or_newline(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_blank_or_newline(s.back())) s.remove_suffix(1);
  return s;
}

std::size_t count_words(std::string_view s) {
  std::size_t n = 0;
  bool in_word = false;
  for (char c : s) {
    if (is_blank_or_newline(c)) {
      in_word = false;
    } else if (!in_word) {
      in_word = true;
      ++n;
    }
  }
  return n;
}

// A value for an error message: short enough to read, long enough to recognise.
std::string excerpt(std::string_view s, std::size_t max_chars = 60) {
  if (s.size() <= max_chars) return std::string(s);
  return std::string(s.substr(0, max_chars)) + "...";
}

std::string where(const std::filesystem::path& path, std::size_t line) {
  return path.string() + ":" + std::to_string(line);
}

double unit_interval(std::uint64_t h) { return static_cast<double>(h >> 11) * 0x1.0p-53; }

const nlohmann::json& string_field(const nlohmann::json& object, const char* field, const std::filesystem::path& path,
                                   std::size_t line) {
  auto it = object.find(field);
  if (it == object.end()) throw std::runtime_error(where(path, line) + ": field \"" + field + "\" is missing");
  if (!it->is_string())
    throw std::runtime_error(where(path, line) + ": field \"" + field + "\" is not a string (got " + it->type_name() +
                             " " + excerpt(it->dump()) + ")");
  return *it;
}

}  // namespace

std::vector<example> read_tldr_jsonl(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error(path.string() + ": cannot open for reading");
  std::vector<example> examples;
  std::string text;
  for (std::size_t line = 1; std::getline(in, text); ++line) {
    if (trim(text).empty()) continue;
    nlohmann::json object;
    try {
      object = nlohmann::json::parse(text);
    } catch (const nlohmann::json::parse_error& e) {
      throw std::runtime_error(where(path, line) + ": invalid JSON: " + e.what());
    }
    if (!object.is_object())
      throw std::runtime_error(where(path, line) + ": expected a JSON object, got " + object.type_name() + " " +
                               excerpt(object.dump()));
    example ex;
    ex.prompt = string_field(object, "prompt", path, line).get<std::string>();
    ex.label = string_field(object, "label", path, line).get<std::string>();
    if (object.contains("id")) ex.id = string_field(object, "id", path, line).get<std::string>();
    if (!std::string_view(ex.prompt).ends_with(tldr_marker)) {
      const std::string_view p = ex.prompt;
      throw std::runtime_error(where(path, line) + ": field \"prompt\" does not end in \"TL;DR:\" (ends in \"" +
                               std::string(p.substr(p.size() - std::min<std::size_t>(p.size(), 30))) + "\")");
    }
    if (trim(ex.label).empty())
      throw std::runtime_error(where(path, line) + ": field \"label\" is empty (\"" + ex.label + "\")");
    examples.push_back(std::move(ex));
  }
  if (in.bad()) throw std::runtime_error(path.string() + ": read error");
  return examples;
}

void write_tldr_jsonl(const std::filesystem::path& path, std::span<const example> examples) {
  std::filesystem::path tmp = path;
  tmp += ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    if (!out) throw std::runtime_error(tmp.string() + ": cannot open for writing");
    for (std::size_t i = 0; i < examples.size(); ++i) {
      const example& ex = examples[i];
      nlohmann::ordered_json object;  // ordered: prompt before label, as in CarperAI's files
      if (!ex.id.empty()) object["id"] = ex.id;
      object["prompt"] = ex.prompt;
      object["label"] = ex.label;
      try {
        out << object.dump(-1, ' ', false, nlohmann::json::error_handler_t::strict) << '\n';
      } catch (const nlohmann::json::type_error& e) {
        out.close();
        std::filesystem::remove(tmp);
        throw std::runtime_error(path.string() + ": example " + std::to_string(i) + " (id \"" + excerpt(ex.id) +
                                 "\") is not valid UTF-8: " + e.what());
      }
    }
    out.flush();
    out.close();
    if (!out) {
      std::filesystem::remove(tmp);
      throw std::runtime_error(tmp.string() + ": write error");
    }
  }
  std::filesystem::rename(tmp, path);
}

std::string post_of(std::string_view prompt) {
  std::size_t start = 0;
  bool has_post = false;
  if (prompt.starts_with("POST:")) {
    start = 5;
    has_post = true;
  } else if (auto p = prompt.find("\nPOST:"); p != std::string_view::npos) {
    // Only at a line start, so that a title mentioning "POST:" is not taken for the header.
    start = p + 6;
    has_post = true;
  }
  if (has_post && start < prompt.size() && prompt[start] == ' ') ++start;
  // The last marker: the prompt ends in it, while a post may quote "TL;DR:" itself.
  std::size_t end = prompt.rfind(tldr_marker);
  if (end == std::string_view::npos || end < start) end = prompt.size();
  if (end > start && prompt[end - 1] == '\n') --end;
  return std::string(prompt.substr(start, end - start));
}

namespace {

/// The deb822 reader of parse_translation: one stanza at a time, each line a field, a
/// continuation of the last field or the blank line that ends the stanza.
class translation_reader {
 public:
  explicit translation_reader(std::string source) : source_(std::move(source)) {}

  void read(std::size_t line, std::string_view raw) {
    if (trim(raw).empty()) {  // deb822: a blank (or all-whitespace) line ends the stanza
      finish_stanza();
    } else if (raw.front() == ' ' || raw.front() == '\t') {
      continuation(line, raw);
    } else {
      field_line(line, raw);
    }
  }

  std::vector<package_description> finish() {
    finish_stanza();
    return std::move(out_);
  }

 private:
  [[noreturn]] void fail(std::size_t line, const std::string& what) const {
    throw std::runtime_error(source_ + ":" + std::to_string(line) + ": " + what);
  }
  void flush_paragraph() {
    if (!paragraph_.empty()) lines_.push_back(std::move(paragraph_));
    paragraph_.clear();
  }
  void finish_stanza() {
    if (stanza_line_ == 0) return;
    if (!has_package_) fail(stanza_line_, "stanza has no field \"Package\"");
    if (!has_description_)
      fail(stanza_line_, "stanza of package \"" + current_.package + "\" has no field \"Description-en\"");
    flush_paragraph();
    std::string text;
    for (const std::string& l : lines_) {
      if (!text.empty()) text += '\n';
      text += l;
    }
    current_.description = std::move(text);
    out_.push_back(std::move(current_));
    current_ = {};
    has_package_ = has_description_ = has_md5_ = false;
    stanza_line_ = 0;
    field_.clear();
    lines_.clear();
  }
  /// A line of the description's long text: " ." ends a paragraph, "  verbatim" is a line of
  /// its own, anything else continues the paragraph.
  void continuation(std::size_t line, std::string_view raw) {
    if (stanza_line_ == 0 || field_.empty()) fail(line, "continuation line outside a field: \"" + excerpt(raw) + "\"");
    if (field_ == "package" || field_ == "description-md5")
      fail(line, "field \"" + std::string(field_ == "package" ? "Package" : "Description-md5") +
                     "\" has a continuation line: \"" + excerpt(raw) + "\"");
    if (field_ != "description-en") return;  // another multi-line field: not ours
    const std::string_view content = raw.substr(1);
    if (trim(content) == ".") {
      flush_paragraph();
    } else if (!content.empty() && (content.front() == ' ' || content.front() == '\t')) {
      flush_paragraph();
      if (auto verbatim = trim(content); !verbatim.empty()) lines_.emplace_back(verbatim);
    } else {
      if (!paragraph_.empty()) paragraph_ += ' ';
      paragraph_ += trim(content);
    }
  }
  void field_line(std::size_t line, std::string_view raw) {
    const std::size_t colon = raw.find(':');
    if (colon == std::string::npos || colon == 0 ||
        std::any_of(raw.begin(), raw.begin() + static_cast<std::ptrdiff_t>(colon), is_blank_or_newline))
      fail(line, "expected \"Field: value\" or a continuation line, got \"" + excerpt(raw) + "\"");
    if (stanza_line_ == 0) stanza_line_ = line;
    field_ = lowercase(raw.substr(0, colon));
    const std::string_view value = trim(raw.substr(colon + 1));
    if (field_ == "package") {
      if (has_package_) fail(line, "field \"Package\" repeated in one stanza");
      if (value.empty()) fail(line, "field \"Package\" is empty");
      current_.package = value;
      has_package_ = true;
    } else if (field_ == "description-en") {
      if (has_description_) fail(line, "field \"Description-en\" repeated in one stanza");
      current_.synopsis = value;
      has_description_ = true;
    } else if (field_ == "description-md5") {
      if (has_md5_) fail(line, "field \"Description-md5\" repeated in one stanza");
      has_md5_ = true;
    }
  }

  std::string source_;
  std::vector<package_description> out_;
  package_description current_;  // the stanza being read
  bool has_package_ = false, has_description_ = false, has_md5_ = false;
  std::size_t stanza_line_ = 0;     // 0: between stanzas
  std::string field_;               // lowercase name of the last field, for continuation lines
  std::vector<std::string> lines_;  // the description's finished lines
  std::string paragraph_;
};

}  // namespace

std::vector<package_description> parse_translation(std::istream& in, std::string_view source_name) {
  translation_reader reader{std::string(source_name)};
  std::string raw;
  for (std::size_t line = 1; std::getline(in, raw); ++line) {
    if (!raw.empty() && raw.back() == '\r') raw.pop_back();
    reader.read(line, raw);
  }
  if (in.bad()) throw std::runtime_error(std::string(source_name) + ": read error");
  return reader.finish();
}

namespace {

// s as one word of a /bin/sh command line: in single quotes, each quote as '\''.
std::string shell_quoted(const std::string& s) {
  std::string quoted = "'";
  for (char c : s) quoted += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return quoted + "'";
}

// The standard output of a /bin/sh command line; throws std::runtime_error starting with subject
// when it cannot start or does not exit with status 0.
std::string command_output(const std::string& command, const std::string& subject) {
  FILE* pipe = ::popen(command.c_str(), "r");
  if (pipe == nullptr) throw std::runtime_error(subject + ": cannot run " + command);
  std::string contents;
  std::array<char, 1 << 16> chunk{};
  while (std::size_t n = std::fread(chunk.data(), 1, chunk.size(), pipe)) contents.append(chunk.data(), n);
  const int status = ::pclose(pipe);
  if (status == -1 || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
    throw std::runtime_error(subject + ": `" + command + "` failed (" +
                             (status != -1 && WIFEXITED(status) ? "exit status " + std::to_string(WEXITSTATUS(status))
                                                                : std::string("did not exit normally")) +
                             ")");
  return contents;
}

}  // namespace

std::string read_apt_list(const std::filesystem::path& path) {
  if (!std::filesystem::is_regular_file(path)) throw std::runtime_error(path.string() + ": no such file");
  static constexpr std::array compressed{".lz4", ".gz", ".xz", ".zst", ".bz2", ".lzma"};
  const std::string ext = path.extension().string();
  if (std::find(compressed.begin(), compressed.end(), ext) == compressed.end()) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw std::runtime_error(path.string() + ": cannot open for reading");
    std::ostringstream buffer;
    buffer << in.rdbuf();
    return buffer.str();
  }
  // apt's own decompressor knows every format apt writes.
  return command_output("/usr/lib/apt/apt-helper cat-file " + shell_quoted(path.string()), path.string());
}

std::vector<std::filesystem::path> find_translation_files(const std::filesystem::path& lists_dir) {
  std::vector<std::filesystem::path> files;
  std::error_code ec;
  if (!std::filesystem::is_directory(lists_dir, ec)) return files;
  static constexpr std::string_view marker = "_i18n_Translation-en";
  static constexpr std::array<std::string_view, 7> endings{"", ".lz4", ".gz", ".xz", ".zst", ".bz2", ".lzma"};
  for (const auto& entry : std::filesystem::directory_iterator(lists_dir)) {
    if (!entry.is_regular_file()) continue;
    const std::string name = entry.path().filename().string();
    const std::size_t at = name.find(marker);
    if (at == std::string::npos) continue;
    const std::string_view rest = std::string_view(name).substr(at + marker.size());
    if (std::find(endings.begin(), endings.end(), rest) != endings.end()) files.push_back(entry.path());
  }
  std::sort(files.begin(), files.end());
  return files;
}

std::string package_group(std::string_view package) {
  // Suffixes of binary packages that split one source's files; the list errs towards grouping
  // more, which only makes splits coarser.
  static constexpr std::array<std::string_view, 44> suffixes{
      "dev",    "common",  "data",  "utils",  "util",     "tools",   "tool",    "bin",     "bins",
      "doc",    "docs",    "dbg",   "dbgsym", "perl",     "python",  "python3", "ruby",    "java",
      "jni",    "cil",     "ocaml", "prof",   "examples", "example", "runtime", "headers", "static",
      "plugin", "plugins", "extra", "extras", "core",     "cli",     "lib",     "libs",    "server",
      "client", "gtk",     "gtk3",  "qt",     "qt5",      "l10n",    "i18n",    "locales"};
  static constexpr std::array<std::string_view, 14> prefixes{"python3-", "python-", "ruby-",    "node-", "golang-",
                                                             "r-cran-",  "r-bioc-", "r-other-", "php-",  "lua-",
                                                             "elpa-",    "gir1.2-", "ghc-",     "perl-"};
  static constexpr std::string_view version_chars = "0123456789.+~-";
  std::string s = lowercase(package);
  for (bool changed = true; changed;) {
    changed = false;
    for (std::string_view suffix : suffixes) {
      if (s.size() > suffix.size() + 1 && std::string_view(s).ends_with(suffix) &&
          s[s.size() - suffix.size() - 1] == '-') {
        s.resize(s.size() - suffix.size() - 1);
        changed = true;
      }
    }
    // A trailing soname/version run, as in libfoo1, libpng16-16, libyaml-0-2.
    const std::size_t keep = s.find_last_not_of(version_chars);
    if (keep != std::string::npos && keep + 1 < s.size()) {
      s.resize(keep + 1);
      changed = true;
    }
    for (std::string_view prefix : prefixes) {
      if (s.size() > prefix.size() && s.starts_with(prefix)) {
        s.erase(0, prefix.size());
        changed = true;
      }
    }
    if (s.size() > 3 && s.starts_with("lib")) {
      s.erase(0, 3);
      changed = true;
    }
  }
  return s;
}

namespace {

// Synopses that describe the packaging rather than the software (a poor summary of the text).
bool uninformative(const package_description& p) {
  static constexpr std::array<std::string_view, 4> name_suffixes{"-dbg", "-dbgsym", "-doc", "-docs"};
  static constexpr std::array<std::string_view, 6> synopsis_words{"transitional",  "dummy",       "debug symbols",
                                                                  "documentation", "metapackage", "meta-package"};
  for (std::string_view suffix : name_suffixes)
    if (std::string_view(p.package).ends_with(suffix)) return true;
  const std::string synopsis = lowercase(p.synopsis);
  for (std::string_view word : synopsis_words)
    if (synopsis.find(word) != std::string::npos) return true;
  return false;
}

// The near-duplicate key: the first words of the description, lowercase, alphanumeric only.
// 20 words: long enough that unrelated packages rarely share it, short enough that a family
// whose shared text is followed by "This package contains ..." (after ~20 words) collapses.
constexpr std::size_t duplicate_key_words = 20;

std::string duplicate_key(std::string_view description) {
  std::string key;
  std::size_t words = 0;
  bool in_word = false;
  for (char c : description) {
    if (is_alnum(c)) {
      if (!in_word) {
        if (words == duplicate_key_words) break;
        if (words > 0) key += ' ';
        ++words;
        in_word = true;
      }
      key += to_lower(c);
    } else {
      in_word = false;
    }
  }
  return key;
}

example make_example(const package_description& p) {
  return {p.package, "TITLE: " + p.package + "\nPOST: " + p.description + "\nTL;DR:", " " + p.synopsis};
}

// Keeps `count` examples chosen by a seeded hash of their id, in id order.
void sample(std::vector<example>& split, std::size_t count, std::uint64_t seed) {
  if (count >= split.size()) return;
  const std::uint64_t salt = mix64(seed ^ 0x5851f42d4c957f2dULL);  // independent of the split hash
  std::vector<std::pair<std::uint64_t, std::size_t>> order;
  order.reserve(split.size());
  for (std::size_t i = 0; i < split.size(); ++i) order.emplace_back(mix64(fnv1a64(split[i].id) ^ salt), i);
  std::sort(order.begin(), order.end());  // ties (equal hashes) fall back to the id order
  order.resize(count);
  std::sort(order.begin(), order.end(), [](const auto& a, const auto& b) { return a.second < b.second; });
  std::vector<example> kept;
  kept.reserve(count);
  for (const auto& [hash, i] : order) kept.push_back(std::move(split[i]));
  split = std::move(kept);
}

}  // namespace

namespace {

void check_word_limits(const dataset_options& options) {
  if (options.min_words > options.max_words)
    throw std::invalid_argument("dataset_options: min_words (" + std::to_string(options.min_words) +
                                ") exceeds max_words (" + std::to_string(options.max_words) + ")");
}

void check_fractions(const dataset_options& options) {
  auto check_fraction = [](const char* name, double f) {
    if (!(f >= 0.0 && f < 1.0))
      throw std::invalid_argument(std::string("dataset_options: ") + name + " = " + std::to_string(f) +
                                  " is outside [0, 1)");
  };
  check_fraction("valid_fraction", options.valid_fraction);
  check_fraction("test_fraction", options.test_fraction);
  if (options.valid_fraction + options.test_fraction >= 1.0)
    throw std::invalid_argument("dataset_options: valid_fraction + test_fraction = " +
                                std::to_string(options.valid_fraction + options.test_fraction) +
                                " leaves no train split");
}

}  // namespace

dataset build_dataset(std::vector<package_description> packages, const dataset_options& options) {
  check_word_limits(options);  // both checks before the selection's work
  check_fractions(options);
  return split_dataset(select_descriptions(std::move(packages), options), options);
}

selection select_descriptions(std::vector<package_description> packages, const dataset_options& options) {
  check_word_limits(options);
  selection result;
  // Independent of input order: sort completely, then keep one stanza per package.
  std::sort(packages.begin(), packages.end(), [](const auto& a, const auto& b) {
    return std::tie(a.package, a.synopsis, a.description) < std::tie(b.package, b.synopsis, b.description);
  });
  packages.erase(std::unique(packages.begin(), packages.end(),
                             [](const auto& a, const auto& b) { return a.package == b.package; }),
                 packages.end());
  result.packages_read = packages.size();

  // (a) filters.
  std::erase_if(packages, [&](const package_description& p) {
    const std::size_t words = count_words(p.description);
    const std::size_t synopsis_words = count_words(p.synopsis);
    return words < options.min_words || words > options.max_words || synopsis_words < 2 || synopsis_words > 16 ||
           uninformative(p);
  });
  result.kept_after_filters = packages.size();

  // (b) near-duplicates: the best package per key, shortest name first, then name order.
  std::map<std::string, std::size_t> best;
  for (std::size_t i = 0; i < packages.size(); ++i) {
    auto [it, inserted] = best.try_emplace(duplicate_key(packages[i].description), i);
    if (!inserted && packages[i].package.size() < packages[it->second].package.size()) it->second = i;
  }
  std::vector<bool> keep(packages.size(), false);
  for (const auto& [key, i] : best) keep[i] = true;
  std::size_t survivors = 0;
  for (std::size_t i = 0; i < packages.size(); ++i) {
    if (!keep[i]) continue;
    if (survivors != i) packages[survivors] = std::move(packages[i]);  // self-move would empty it
    ++survivors;
  }
  result.duplicates_removed = packages.size() - survivors;
  packages.resize(survivors);
  result.packages = std::move(packages);
  return result;
}

dataset split_dataset(selection selected, const dataset_options& options) {
  check_fractions(options);
  dataset result;
  result.packages_read = selected.packages_read;
  result.kept_after_filters = selected.kept_after_filters;
  result.duplicates_removed = selected.duplicates_removed;

  // (c) + (d): split by group, still in package order.
  const std::uint64_t salt = mix64(options.seed);
  for (const package_description& p : selected.packages) {
    const double u = unit_interval(mix64(fnv1a64(package_group(p.package)) ^ salt));
    auto& split = u < options.valid_fraction                           ? result.valid
                  : u < options.valid_fraction + options.test_fraction ? result.test
                                                                       : result.train;
    split.push_back(make_example(p));
  }

  // (e) the cap, the same ratio for every split.
  if (options.max_examples > 0 && result.train.size() > options.max_examples) {
    const double ratio = static_cast<double>(options.max_examples) / static_cast<double>(result.train.size());
    auto capped = [&](const std::vector<example>& split) -> std::size_t {
      if (split.empty()) return 0;
      return std::max<std::size_t>(1,
                                   static_cast<std::size_t>(std::llround(static_cast<double>(split.size()) * ratio)));
    };
    const std::size_t valid_cap = capped(result.valid), test_cap = capped(result.test);
    sample(result.train, options.max_examples, options.seed);
    sample(result.valid, valid_cap, options.seed);
    sample(result.test, test_cap, options.seed);
  }
  return result;
}

selection select_from_apt(const dataset_options& options, const std::filesystem::path& lists_dir,
                          std::vector<std::filesystem::path>* files_out) {
  const std::vector<std::filesystem::path> files = find_translation_files(lists_dir);
  if (files.empty())
    throw std::runtime_error("no *_i18n_Translation-en* file in " + lists_dir.string() +
                             ": fetch Debian's English package descriptions first, as root: "
                             "apt-get update -o Acquire::Languages=en");
  std::vector<package_description> packages;
  for (const std::filesystem::path& file : files) {
    std::istringstream in(read_apt_list(file));
    std::vector<package_description> part = parse_translation(in, file.string());
    packages.insert(packages.end(), std::make_move_iterator(part.begin()), std::make_move_iterator(part.end()));
  }
  if (files_out != nullptr) *files_out = files;
  return select_descriptions(std::move(packages), options);
}

dataset build_dataset_from_apt(const dataset_options& options, const std::filesystem::path& lists_dir) {
  return split_dataset(select_from_apt(options, lists_dir), options);
}

// --- the snapshot ---------------------------------------------------------------------------

std::filesystem::path default_snapshot() {
#ifdef TLDR_DEFAULT_SNAPSHOT
  return TLDR_DEFAULT_SNAPSHOT;  // CMakeLists.txt: the source tree's file
#else
  return "examples/train_tldr/data/debian-descriptions.jsonl.xz";
#endif
}

std::filesystem::path snapshot_manifest_path(const std::filesystem::path& snapshot_file) {
  std::string name = snapshot_file.filename().string();
  for (std::string_view ext : {".xz", ".jsonl"})
    if (std::string_view(name).ends_with(ext)) name.resize(name.size() - ext.size());
  return snapshot_file.parent_path() / (name + ".manifest.json");
}

std::string snapshot_text(std::span<const package_description> packages) {
  std::string text;
  for (const package_description& p : packages) {
    nlohmann::ordered_json object;
    object["package"] = p.package;
    object["synopsis"] = p.synopsis;
    object["description"] = p.description;
    try {
      text += object.dump(-1, ' ', false, nlohmann::json::error_handler_t::strict);
    } catch (const nlohmann::json::type_error& e) {
      throw std::runtime_error("package \"" + excerpt(p.package) + "\" is not valid UTF-8: " + e.what());
    }
    text += '\n';
  }
  return text;
}

namespace {

std::string fnv1a64_hex(std::string_view text) {
  std::array<char, 17> digits{};
  std::snprintf(digits.data(), digits.size(), "%016llx", static_cast<unsigned long long>(fnv1a64(text)));
  return digits.data();
}

}  // namespace

std::string text_checksum(std::string_view text) { return "fnv1a64:" + fnv1a64_hex(text); }

description_snapshot read_snapshot(const std::filesystem::path& file) {
  const std::filesystem::path manifest_file = snapshot_manifest_path(file);
  const std::string name = file.string(), manifest_name = manifest_file.string();
  nlohmann::json manifest;
  {
    std::ifstream in(manifest_file, std::ios::binary);
    if (!in) throw std::runtime_error(manifest_name + ": cannot open the manifest of " + name);
    try {
      manifest = nlohmann::json::parse(in);
    } catch (const nlohmann::json::exception& e) {
      throw std::runtime_error(manifest_name + ": invalid JSON: " + e.what());
    }
  }
  auto field = [&](const char* pointer, bool is_count) -> const nlohmann::json& {
    const nlohmann::json::json_pointer at(pointer);
    if (!manifest.is_object() || !manifest.contains(at))
      throw std::runtime_error(manifest_name + ": field " + pointer + " is missing");
    const nlohmann::json& value = manifest.at(at);
    if (is_count ? !value.is_number_unsigned() : !value.is_string())
      throw std::runtime_error(manifest_name + ": field " + pointer + " is not " + (is_count ? "a count" : "a string") +
                               " (got " + excerpt(value.dump()) + ")");
    return value;
  };
  auto count = [&](const char* pointer) { return field(pointer, true).get<std::size_t>(); };
  auto string = [&](const char* pointer) { return field(pointer, false).get<std::string>(); };
  if (const std::string described = string("/file"); described != file.filename().string())
    throw std::runtime_error(manifest_name + ": describes " + described + ", not " + file.filename().string());
  const std::size_t records = count("/records"), text_bytes = count("/text/bytes");
  const std::string expected = string("/text/fnv1a64");
  description_snapshot result;
  result.min_words = count("/selection/min_words");
  result.max_words = count("/selection/max_words");
  result.packages_read = count("/selection/packages_read");
  result.kept_after_filters = count("/selection/kept_after_filters");
  result.duplicates_removed = count("/selection/duplicates_removed");
  result.taken = string("/source/taken");

  if (!std::filesystem::is_regular_file(file)) throw std::runtime_error(name + ": no such file");
  const std::string text = command_output("xz -dc -- " + shell_quoted(name), name);
  const std::string actual = fnv1a64_hex(text);
  if (actual != expected || text.size() != text_bytes)
    throw std::runtime_error(name + ": checksum mismatch: the decompressed text has FNV-1a 64 " + actual + " (" +
                             std::to_string(text.size()) + " bytes), the manifest " + manifest_name + " expects " +
                             expected + " (" + std::to_string(text_bytes) +
                             " bytes); restore the file or regenerate both with `train_tldr snapshot`");
  result.checksum = "fnv1a64:" + actual;

  std::size_t line = 0;
  for (std::size_t start = 0; start < text.size();) {
    ++line;
    std::size_t end = text.find('\n', start);
    if (end == std::string::npos) end = text.size();
    const std::string_view raw = std::string_view(text).substr(start, end - start);
    start = end + 1;
    nlohmann::json object;
    try {
      object = nlohmann::json::parse(raw);
    } catch (const nlohmann::json::parse_error& e) {
      throw std::runtime_error(where(file, line) + ": invalid JSON: " + e.what());
    }
    if (!object.is_object() || object.size() != 3)
      throw std::runtime_error(where(file, line) + ": expected an object with the fields package, synopsis and " +
                               "description, got " + excerpt(object.dump()));
    package_description p;
    p.package = string_field(object, "package", file, line).get<std::string>();
    p.synopsis = string_field(object, "synopsis", file, line).get<std::string>();
    p.description = string_field(object, "description", file, line).get<std::string>();
    if (!result.packages.empty() && !(result.packages.back().package < p.package))
      throw std::runtime_error(where(file, line) + ": package \"" + excerpt(p.package) + "\" comes after \"" +
                               excerpt(result.packages.back().package) +
                               "\": the records must be sorted by package, each package once");
    result.packages.push_back(std::move(p));
  }
  if (result.packages.size() != records)
    throw std::runtime_error(name + ": " + std::to_string(result.packages.size()) + " records, the manifest " +
                             manifest_name + " says " + std::to_string(records));
  return result;
}

namespace {

// Temporary files of write_snapshot, removed unless renamed into place.
struct snapshot_scratch {
  std::vector<std::filesystem::path> paths;
  ~snapshot_scratch() {
    std::error_code ignored;
    for (const auto& p : paths) std::filesystem::remove(p, ignored);
  }
};

void write_snapshot_file(const std::filesystem::path& path, std::string_view text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  if (!out) throw std::runtime_error(path.string() + ": cannot open for writing");
  out.write(text.data(), static_cast<std::streamsize>(text.size()));
  out.close();
  if (!out) throw std::runtime_error(path.string() + ": write error");
}

// The first line of a file that starts with prefix, without it; "" when there is none.
std::string line_starting_with(const std::filesystem::path& path, std::string_view prefix) {
  std::ifstream in(path, std::ios::binary);
  std::string line;
  while (std::getline(in, line))
    if (std::string_view(line).starts_with(prefix))
      return std::string(trim(std::string_view(line).substr(prefix.size())));
  return "";
}

// The Date of the InRelease (or Release) file of a list's suite: the list
// host_path_dists_SUITE_component_i18n_Translation-en.lz4 belongs to host_path_dists_SUITE_InRelease.
std::string release_date(const std::filesystem::path& list) {
  const std::string name = list.filename().string();
  const std::size_t dists = name.find("_dists_");
  if (dists == std::string::npos) return "";
  const std::size_t suite_end = name.find('_', dists + 7);
  if (suite_end == std::string::npos) return "";
  for (const char* release : {"_InRelease", "_Release"}) {
    const auto path = list.parent_path() / (name.substr(0, suite_end) + release);
    if (std::filesystem::is_regular_file(path)) return line_starting_with(path, "Date:");
  }
  return "";
}

std::string host_description() {
  std::string pretty = line_starting_with("/etc/os-release", "PRETTY_NAME=");
  if (pretty.size() >= 2 && pretty.front() == '"' && pretty.back() == '"') pretty = pretty.substr(1, pretty.size() - 2);
  std::ifstream in("/etc/debian_version");
  std::string version;
  std::getline(in, version);
  if (pretty.empty()) pretty = "unknown system";
  return version.empty() ? pretty : pretty + ", /etc/debian_version " + std::string(trim(version));
}

std::string utc_date() {
  const std::time_t now = std::time(nullptr);
  std::tm utc{};
  ::gmtime_r(&now, &utc);
  std::array<char, 16> date{};
  std::strftime(date.data(), date.size(), "%Y-%m-%d", &utc);
  return date.data();
}

}  // namespace

std::string write_snapshot(const std::filesystem::path& file, const selection& selected, const dataset_options& options,
                           const snapshot_source& source) {
  const std::string text = snapshot_text(selected.packages);
  const dataset splits = split_dataset(selected, options);
  const std::filesystem::path manifest_file = snapshot_manifest_path(file);
  std::filesystem::path text_tmp = file, file_tmp = file, manifest_tmp = manifest_file;
  text_tmp += ".text.tmp";
  file_tmp += ".tmp";
  manifest_tmp += ".tmp";
  snapshot_scratch scratch{{text_tmp, file_tmp, manifest_tmp}};
  write_snapshot_file(text_tmp, text);
  // One thread: the multi-threaded encoder's blocks would make the bytes depend on the machine.
  command_output("xz -9 --threads=1 -c -- " + shell_quoted(text_tmp.string()) + " > " + shell_quoted(file_tmp.string()),
                 file.string());
  const std::string sums = command_output(
      "sha256sum -- " + shell_quoted(text_tmp.string()) + " " + shell_quoted(file_tmp.string()), file.string());
  std::istringstream sum_lines(sums);
  std::array<std::string, 2> sha256;
  for (std::string& sum : sha256) {
    std::getline(sum_lines, sum);
    if (!sum.empty() && sum.front() == '\\') sum.erase(0, 1);  // sha256sum's mark of an escaped name
    sum = sum.substr(0, sum.find(' '));
    if (sum.size() != 64)
      throw std::runtime_error(file.string() + ": unexpected output of sha256sum: " + excerpt(sums));
  }

  nlohmann::ordered_json lists = nlohmann::ordered_json::array();
  for (const auto& list : source.lists) lists.push_back({{"file", list.file}, {"release_date", list.release_date}});
  nlohmann::ordered_json manifest;
  manifest["file"] = file.filename().string();
  manifest["format"] =
      "xz-compressed JSONL, one object {package, synopsis, description} per line, sorted by package: Debian's "
      "English package descriptions (Translation-en) as parse_translation reads them, those that "
      "select_descriptions keeps at the word limits below (examples/train_tldr/src/data.hpp)";
  manifest["records"] = selected.packages.size();
  manifest["compressed"] = {{"bytes", std::filesystem::file_size(file_tmp)}, {"sha256", sha256[1]}};
  manifest["text"] = {{"bytes", text.size()}, {"sha256", sha256[0]}, {"fnv1a64", fnv1a64_hex(text)}};
  manifest["selection"] = {{"min_words", options.min_words},
                           {"max_words", options.max_words},
                           {"packages_read", selected.packages_read},
                           {"kept_after_filters", selected.kept_after_filters},
                           {"duplicates_removed", selected.duplicates_removed}};
  manifest["splits"] = {{"seed", options.seed},
                        {"valid_fraction", options.valid_fraction},
                        {"test_fraction", options.test_fraction},
                        {"max_examples", options.max_examples},
                        {"train", splits.train.size()},
                        {"valid", splits.valid.size()},
                        {"test", splits.test.size()}};
  manifest["source"] = {
      {"taken", source.taken}, {"host", source.host}, {"lists_dir", source.lists_dir}, {"lists", lists}};
  const std::string manifest_text = manifest.dump(2) + "\n";
  write_snapshot_file(manifest_tmp, manifest_text);
  std::filesystem::rename(file_tmp, file);
  std::filesystem::rename(manifest_tmp, manifest_file);
  return manifest_text;
}

std::string write_snapshot_from_apt(const std::filesystem::path& file, const std::filesystem::path& lists_dir,
                                    const dataset_options& options) {
  std::vector<std::filesystem::path> files;
  const selection selected = select_from_apt(options, lists_dir, &files);
  snapshot_source source;
  source.taken = utc_date();
  source.host = host_description();
  source.lists_dir = lists_dir.string();
  for (const auto& f : files) source.lists.push_back({f.filename().string(), release_date(f)});
  return write_snapshot(file, selected, options, source);
}

}  // namespace tldr
