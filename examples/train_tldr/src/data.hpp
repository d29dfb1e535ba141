// Data for the summarisation experiment: TL;DR JSONL files (the format of CarperAI's
// openai_summarize_tldr) and a stand-in data set built from Debian's package descriptions,
// whose long description plays the reddit post and whose synopsis plays the TL;DR.
#pragma once

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <iosfwd>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace tldr {

// One summarisation example. prompt ends in "TL;DR:"; label is the gold summary, with a leading
// space as in CarperAI's files (so that prompt + label reads as one text).
struct example {
  std::string id;
  std::string prompt;
  std::string label;

  friend bool operator==(const example&, const example&) = default;
};

// Reads a JSONL file, one object per line with string fields "prompt" and "label" and an
// optional string "id"; other fields are ignored. Blank lines are skipped. Throws
// std::runtime_error naming file:line and the field for a missing or non-string field, a prompt
// that does not end in "TL;DR:", an empty label or a line that is not JSON.
std::vector<example> read_tldr_jsonl(const std::filesystem::path& path);

// Writes the examples as JSONL (fields id, prompt, label; id omitted when empty). Atomic: writes
// <path>.tmp and renames it over path, so that a reader never sees half a file.
void write_tldr_jsonl(const std::filesystem::path& path, std::span<const example> examples);

// The post inside a prompt: the text after "POST: " up to "\nTL;DR:" (or up to "TL;DR:");
// without "POST:", everything before "TL;DR:" (the whole prompt if that is missing too).
std::string post_of(std::string_view prompt);

// One stanza of a Debian Translation-en file.
struct package_description {
  std::string package;
  std::string synopsis;     // the text after "Description-en: "
  std::string description;  // the long description as plain text, see parse_translation

  friend bool operator==(const package_description&, const package_description&) = default;
};

// Parses a Translation-en file (deb822 stanzas separated by blank lines, fields Package,
// Description-md5 and Description-en, the latter continued by lines starting with a space).
// The long description becomes plain text:
//  - the lines of a paragraph are joined with single spaces;
//  - paragraphs (separated by " .") are joined with "\n";
//  - verbatim lines (starting with two spaces: lists, code) keep their own line, without their
//    leading spaces, so that a list item "  * foo" becomes the line "* foo".
// Unknown fields are ignored. Throws std::runtime_error naming source_name and the line for a
// continuation line outside Description-en, a line that is neither a field nor a continuation,
// or a stanza without Package or Description-en.
std::vector<package_description> parse_translation(std::istream& in, std::string_view source_name);

// The contents of an apt list file. Compressed ones (.lz4, .gz, .xz, .zst) go through
// `/usr/lib/apt/apt-helper cat-file`, whose exit status is checked.
std::string read_apt_list(const std::filesystem::path& path);

// The files *_i18n_Translation-en (and compressed variants Translation-en.lz4 etc., but not
// Translation-en_GB) in lists_dir, sorted by name; empty when there is none or no such folder.
std::vector<std::filesystem::path> find_translation_files(
    const std::filesystem::path& lists_dir = "/var/lib/apt/lists");

// The group a package belongs to when splitting: a source-like stem of its name, so that
// libfoo1, libfoo-dev, foo-utils and python3-foo all give "foo". Strips, repeatedly, a known
// suffix (-dev, -common, -data, -utils, -tools, -bin, -doc, -perl, -python3, ...), a trailing
// run of version/soname characters (digits, '.', '+', '~', '-'), a leading "lib" and a leading
// binding prefix (python3-, python-, ruby-, node-, golang-, r-cran-, ...), never down to nothing.
std::string package_group(std::string_view package);

struct dataset_options {
  std::size_t min_words = 25, max_words = 120;  // long description length, in words
  double valid_fraction = 0.05, test_fraction = 0.05;
  std::uint64_t seed = 1;
  std::size_t max_examples = 0;  // cap on the train split, 0 = all; see build_dataset
};

struct dataset {
  std::vector<example> train, valid, test;  // each sorted by id (= package name)
  std::size_t packages_read = 0;       // distinct package names in the input
  std::size_t kept_after_filters = 0;  // packages that passed the filters of step (a)
  std::size_t duplicates_removed = 0;  // of those, dropped as near-duplicates in step (b)
};

// Builds the data set. The result depends only on the set of input stanzas and the options, not
// on their order: stanzas are sorted by (package, synopsis, description) first, and of several
// stanzas for one package (main plus -updates/-security) the first in that order is kept.
//  (a) filters: the description has min_words..max_words words (whitespace-separated); the
//      synopsis 2..16 words; not a -dbg/-dbgsym/-doc/-docs package; the synopsis does not say
//      "transitional", "dummy", "debug symbols", "documentation" or "metapackage" (such
//      synopses describe the packaging, not the text, so they make poor summaries).
//  (b) near-duplicates: many packages of one source repeat the source's description and differ
//      in a synopsis suffix ("- development files"). The key is the first 20 lowercase
//      alphanumeric words of the description; of each key's packages the one with the shortest
//      name (then the smallest) is kept.
//  (c) splits: by a stable hash (FNV-1a 64 of package_group(name), mixed with the seed by
//      splitmix64) mapped to [0,1): below valid_fraction is valid, below valid + test is test,
//      the rest is train; so a family never straddles splits.
//  (d) examples: id = package, prompt "TITLE: <package>\nPOST: <description>\nTL;DR:", label
//      " <synopsis>".
//  (e) max_examples > 0 and a larger train split: every split is scaled by the same ratio
//      max_examples / train size (rounded, at least one example where the split had any),
//      keeping the examples with the smallest seeded hash of their id, i.e. a fixed random
//      sample rather than an alphabetical prefix.
// Throws std::invalid_argument for min_words > max_words or fractions outside [0,1) or summing
// to 1 or more.
dataset build_dataset(std::vector<package_description> packages, const dataset_options& options);

// build_dataset over every Translation-en file find_translation_files(lists_dir) gives. Throws
// std::runtime_error telling how to get them (apt-get update -o Acquire::Languages=en) if none.
dataset build_dataset_from_apt(const dataset_options& options,
                               const std::filesystem::path& lists_dir = "/var/lib/apt/lists");

}  // namespace tldr
