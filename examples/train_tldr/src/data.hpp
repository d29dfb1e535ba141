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
  std::size_t packages_read = 0;            // distinct package names in the input
  std::size_t kept_after_filters = 0;       // packages that passed the filters of step (a)
  std::size_t duplicates_removed = 0;       // of those, dropped as near-duplicates in step (b)
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
// to 1 or more. The same as split_dataset(select_descriptions(packages, options), options).
dataset build_dataset(std::vector<package_description> packages, const dataset_options& options);

// The packages build_dataset splits: one stanza per package, sorted by package name.
struct selection {
  std::vector<package_description> packages;
  std::size_t packages_read = 0, kept_after_filters = 0, duplicates_removed = 0;  // as in dataset
};

// build_dataset's selection: the sort, one stanza per package, (a) filters and (b) near-duplicates,
// which depend on options.min_words and options.max_words only. Selecting a selection's packages
// again gives them back unchanged (they pass the filters and their duplicate keys differ). Throws
// std::invalid_argument for min_words > max_words.
selection select_descriptions(std::vector<package_description> packages, const dataset_options& options);

// build_dataset's steps (c) to (e) on a selection; packages_read etc. are copied from it. Throws
// std::invalid_argument for fractions outside [0,1) or summing to 1 or more.
dataset split_dataset(selection selected, const dataset_options& options);

// build_dataset over every Translation-en file find_translation_files(lists_dir) gives. Throws
// std::runtime_error telling how to get them (apt-get update -o Acquire::Languages=en) if none.
dataset build_dataset_from_apt(const dataset_options& options,
                               const std::filesystem::path& lists_dir = "/var/lib/apt/lists");

// select_descriptions over every Translation-en file find_translation_files(lists_dir) gives (the
// same error when there is none); files, if not null, receives their paths.
selection select_from_apt(const dataset_options& options, const std::filesystem::path& lists_dir,
                          std::vector<std::filesystem::path>* files = nullptr);

// --- The snapshot: the pinned data -------------------------------------------------------------
// The experiment's default data is a fixed copy of the descriptions it uses, committed in the
// repository, so that every machine trains on the same text: data/debian-descriptions.jsonl.xz,
// xz-compressed JSONL, one object {"package", "synopsis", "description"} per line (the fields of
// package_description, description as parse_translation gives it), sorted by package. It holds
// select_descriptions' packages at the word limits its manifest names, which are all that
// build_dataset keeps at those limits: build_dataset over the snapshot gives the splits that
// build_dataset over the lists it was taken from gives, for any seed and fractions.
// Next to it, data/debian-descriptions.manifest.json: the file name, records, the SHA-256 of the
// compressed file and of the text, the text's bytes and FNV-1a 64 (which read_snapshot checks),
// the word limits, the split sizes at the default options, and where and when it was taken.

// The repository's snapshot (examples/train_tldr/data/debian-descriptions.jsonl.xz, a path fixed
// at build time).
std::filesystem::path default_snapshot();

// The manifest of a snapshot file: its folder's <name>.manifest.json, where <name> is the file
// name without ".xz" and ".jsonl".
std::filesystem::path snapshot_manifest_path(const std::filesystem::path& snapshot_file);

// The snapshot's text: one JSON object per line, as described above, in the order given.
// Throws std::runtime_error naming the package whose fields are not valid UTF-8.
std::string snapshot_text(std::span<const package_description> packages);

// "fnv1a64:" and 16 lowercase hex digits: FNV-1a 64 of text, the checksum of a snapshot's text.
std::string text_checksum(std::string_view text);

struct description_snapshot {
  std::vector<package_description> packages;  // sorted by package
  std::string checksum;                       // text_checksum of the decompressed text, equal to the manifest's
  std::size_t min_words = 0, max_words = 0;   // the word limits it was selected at
  std::string taken;                          // when it was taken (YYYY-MM-DD)
  std::size_t packages_read = 0, kept_after_filters = 0, duplicates_removed = 0;  // in its source
};

// Reads a snapshot: decompresses file with `xz -dc` (its exit status checked), checks the text's
// size and FNV-1a 64 against the manifest (snapshot_manifest_path), then parses it. Throws
// std::runtime_error naming the file for a missing or malformed manifest, a failing xz, a text
// whose size or checksum differs from the manifest's (with the expected and the actual value), a
// line that is not an object of three string fields (file:line), packages out of order or
// repeated, or a record count other than the manifest's.
description_snapshot read_snapshot(const std::filesystem::path& file);

// Where and when a snapshot was taken, for its manifest.
struct snapshot_source {
  std::string taken;      // YYYY-MM-DD
  std::string host;       // e.g. "Debian GNU/Linux 12 (bookworm), /etc/debian_version 12.11"
  std::string lists_dir;  // e.g. /var/lib/apt/lists
  struct list {
    std::string file;          // the list's file name
    std::string release_date;  // the Date of the suite's InRelease file, when there is one
  };
  std::vector<list> lists;
};

// Writes selected.packages as a snapshot: file (xz -9, one thread, so that the bytes depend on the
// text only) and its manifest, each through a temporary file renamed into place. The manifest's
// SHA-256s come from sha256sum, the split sizes from split_dataset at options. Returns the
// manifest's text. Throws std::runtime_error when xz or sha256sum fails.
std::string write_snapshot(const std::filesystem::path& file, const selection& selected, const dataset_options& options,
                           const snapshot_source& source);

// `train_tldr snapshot`: select_from_apt(options, lists_dir), then write_snapshot with this host's
// description (/etc/os-release, /etc/debian_version), today's UTC date and each list's InRelease
// Date. Returns the manifest's text.
std::string write_snapshot_from_apt(const std::filesystem::path& file, const std::filesystem::path& lists_dir,
                                    const dataset_options& options);

}  // namespace tldr
