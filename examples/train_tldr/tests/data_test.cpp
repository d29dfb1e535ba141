#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "data.hpp"

namespace fs = std::filesystem;
using namespace tldr;

namespace {

const fs::path data_dir = TLDR_TEST_DATA;

std::vector<package_description> sample_packages() {
  std::ifstream in(data_dir / "Translation-en.sample");
  EXPECT_TRUE(in) << "missing " << (data_dir / "Translation-en.sample");
  return parse_translation(in, "Translation-en.sample");
}

const package_description* find(const std::vector<package_description>& packages, const std::string& name) {
  auto it = std::find_if(packages.begin(), packages.end(), [&](const auto& p) { return p.package == name; });
  return it == packages.end() ? nullptr : &*it;
}

// A fresh folder per test, removed at the end.
struct temp_dir {
  fs::path path;
  temp_dir() {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    path = fs::temp_directory_path() /
           ("tldr_" + std::string(info->test_suite_name()) + "_" + info->name() + "_" + std::to_string(::getpid()));
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~temp_dir() { fs::remove_all(path); }
};

void write_file(const fs::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
}

// The error message of f(), or "" when it does not throw std::runtime_error.
template <class F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const std::runtime_error& e) {
    return e.what();
  }
  return "";
}

std::vector<package_description> parse_text(const std::string& text) {
  std::istringstream in(text);
  return parse_translation(in, "inline.txt");
}

// Families of packages with distinct descriptions (so that none is a near-duplicate of another):
// lib<stem>1, lib<stem>-dev and <stem>-utils per family.
std::vector<package_description> synthetic_families(std::size_t families) {
  std::vector<package_description> out;
  std::mt19937 rng(42);
  const std::vector<std::string> vocabulary{"fast",   "library", "parser", "network", "image",  "audio",   "format",
                                            "secure", "client",  "server", "tool",    "plugin", "data",    "stream",
                                            "file",   "graph",   "matrix", "text",    "window", "protocol"};
  auto words = [&](std::size_t n) {
    std::string s;
    for (std::size_t i = 0; i < n; ++i)
      s += (i ? " " : "") + vocabulary[rng() % vocabulary.size()] + std::to_string(rng() % 1000);
    return s;
  };
  for (std::size_t f = 0; f < families; ++f) {
    const std::string stem = "fam" + std::to_string(f) + "x";
    for (const std::string& name : {"lib" + stem + "1", "lib" + stem + "-dev", stem + "-utils"})
      out.push_back({name, "synopsis " + words(3), words(40)});
  }
  return out;
}

std::string split_of(const dataset& d, const std::string& id) {
  auto has = [&](const std::vector<example>& split) {
    return std::any_of(split.begin(), split.end(), [&](const example& e) { return e.id == id; });
  };
  return has(d.train) ? "train" : has(d.valid) ? "valid" : has(d.test) ? "test" : "";
}

}  // namespace

// --- parse_translation ------------------------------------------------------------------------

TEST(data_translation, parses_sample_stanzas_exactly) {
  const auto packages = sample_packages();
  EXPECT_EQ(packages.size(), 95u);

  const auto* flasher = find(packages, "0xffff");
  ASSERT_NE(flasher, nullptr);
  EXPECT_EQ(flasher->synopsis, "Open Free Fiasco Firmware Flasher");
  // Paragraphs joined by "\n", lines inside one by a space, verbatim list items on their own line.
  EXPECT_EQ(flasher->description,
            "The \u2018Open Free Fiasco Firmware Flasher\u2019 aka 0xFFFF utility implements a free userspace "
            "handler for the NOLO bootloader and extended features for flashing, dumping and getting "
            "information for the Nokia Internet Tablets. Thus it's a free alternative to Nokia's closed "
            "source flashing utility called flasher.\n"
            "Supported operations currently include, but are not limited to:\n"
            "* generating and unpacking FIASCO images on local device\n"
            "* editing Maemo firmware packages\n"
            "* flashing any kind image type to Maemo devices via USB\n"
            "* \"cold\" flashing for devices with bricked bootloaders\n"
            "* direct kernel boot without flashing it to NAND\n"
            "* changing configuration of Maemo device (R&D flags, HW revision strings, ...)\n"
            "Supported are the Nokia 770, N800, N810, N810w, N900, N950 and N9.");

  const auto* lz4 = find(packages, "lz4");
  ASSERT_NE(lz4, nullptr);
  EXPECT_EQ(lz4->synopsis, "Fast LZ compression algorithm library - tool");
  EXPECT_EQ(lz4->description,
            "LZ4 is a very fast lossless compression algorithm, providing compression speed at 400 MB/s per "
            "core, scalable with multi-cores CPU. It also features an extremely fast decoder, with speed in "
            "multiple GB/s per core, typically reaching RAM speed limits on multi-core systems.\n"
            "This package contains files that is tool using liblz4.");

  const auto* game = find(packages, "2048");
  ASSERT_NE(game, nullptr);
  EXPECT_EQ(game->synopsis, "Slide and add puzzle game for text mode");
  EXPECT_EQ(game->description.find('\n'), std::string::npos);  // one paragraph
  EXPECT_TRUE(
      game->description.starts_with("The 2048 game is a mathematics based puzzle game where you have to slide"));
}

TEST(data_translation, handles_crlf_blank_runs_and_unknown_fields) {
  const auto packages = parse_text(
      "\n\nPackage: a\r\nDescription-md5: 00\r\nX-Extra: v\r\n more of x\r\nDescription-en: short one\r\n text\r\n\r\n"
      "\n\nPackage: b\nDescription-en: other\n first line\n  verbatim  \n .\n second\n");
  ASSERT_EQ(packages.size(), 2u);
  EXPECT_EQ(packages[0], (package_description{"a", "short one", "text"}));
  EXPECT_EQ(packages[1], (package_description{"b", "other", "first line\nverbatim\nsecond"}));
}

TEST(data_translation, errors_name_source_line_and_field) {
  struct bad {
    std::string text, line, what;
  };
  const std::vector<bad> cases{
      {" continuation first\n", "inline.txt:1:", "continuation"},
      {"Package: a\nDescription-en: s\n d\n\nnot a field line\n", "inline.txt:5:", "Field: value"},
      {"Package: a\nDescription-md5: 12\n 34\nDescription-en: s\n", "inline.txt:3:", "Description-md5"},
      {"Package: a\nDescription-en: s\n\nDescription-md5: 1\nDescription-en: t\n d\n", "inline.txt:4:", "\"Package\""},
      {"Package: a\nDescription-en: s\n\n\nPackage: b\nDescription-md5: 1\n", "inline.txt:5:", "\"Description-en\""},
      {"Package: a\nPackage: b\nDescription-en: s\n", "inline.txt:2:", "\"Package\" repeated"},
      {"Package:\nDescription-en: s\n", "inline.txt:1:", "\"Package\" is empty"},
  };
  for (const bad& c : cases) {
    const std::string message = error_of([&] { parse_text(c.text); });
    EXPECT_NE(message.find(c.line), std::string::npos) << "text: " << c.text << "\nmessage: " << message;
    EXPECT_NE(message.find(c.what), std::string::npos) << "text: " << c.text << "\nmessage: " << message;
  }
}

// --- JSONL ------------------------------------------------------------------------------------

TEST(data_jsonl, reads_carperai_format) {
  const auto examples = read_tldr_jsonl(data_dir / "tldr.sample.jsonl");
  ASSERT_EQ(examples.size(), 6u);
  for (const example& e : examples) {
    EXPECT_TRUE(e.prompt.starts_with("SUBREDDIT: r/")) << e.prompt;
    EXPECT_TRUE(e.prompt.ends_with("\nTL;DR:")) << e.prompt;
    EXPECT_TRUE(e.label.starts_with(" ")) << e.label;
    EXPECT_TRUE(e.id.empty());
  }
  EXPECT_EQ(examples[2].label, " Keeping my phone out of the bedroom and reading before sleep fixed my mornings.");
  EXPECT_TRUE(post_of(examples[2].prompt).starts_with("For me it was putting my phone in another room at night."));
  EXPECT_TRUE(post_of(examples[2].prompt).ends_with("I feel like a different person in the mornings."));
  EXPECT_NE(examples[3].prompt.find("TIFU by replying \"love you\" to my boss"), std::string::npos);
}

TEST(data_jsonl, errors_name_file_line_and_field) {
  struct bad {
    std::string file, line, what;
  };
  const std::vector<bad> cases{
      {"missing_label.jsonl", ":3:", "field \"label\" is missing"},
      {"prompt_not_string.jsonl", ":2:", "field \"prompt\" is not a string (got number 42)"},
      {"prompt_no_tldr.jsonl", ":3:", "field \"prompt\" does not end in \"TL;DR:\" (ends in \"POST: no marker here\")"},
      {"empty_label.jsonl", ":1:", "field \"label\" is empty"},
      {"invalid_json.jsonl", ":4:", "invalid JSON: [json.exception.parse_error"},
      {"not_object.jsonl", ":2:", "expected a JSON object, got array"},
      {"id_not_string.jsonl", ":1:", "field \"id\" is not a string"},
  };
  for (const bad& c : cases) {
    const std::string message = error_of([&] { read_tldr_jsonl(data_dir / "malformed" / c.file); });
    EXPECT_NE(message.find(c.file + c.line), std::string::npos) << message;
    EXPECT_NE(message.find(c.what), std::string::npos) << message;
  }
  EXPECT_NE(error_of([&] { read_tldr_jsonl(data_dir / "no_such_file.jsonl"); }).find("no_such_file.jsonl"),
            std::string::npos);
}

TEST(data_jsonl, round_trip_is_exact_and_atomic) {
  temp_dir dir;
  const fs::path path = dir.path / "out.jsonl";
  const std::vector<example> examples{
      {"0ad", "TITLE: 0ad\nPOST: Real-time strategy \"RTS\" game\tof 500 B.C.\nTL;DR:", " Real-time strategy game"},
      {"", "POST: caf\u00e9 na\u00efve \u2018quotes\u2019 \u65e5\u672c\u8a9e \U0001F600 back\\slash\nTL;DR:",
       " \u00e9t\u00e9 \"q\"\n2nd line"},
      {"x/y", "TL;DR:", " control \x01 char"},
  };
  write_file(path, "old contents that must disappear\n");
  write_tldr_jsonl(path, examples);
  EXPECT_FALSE(fs::exists(dir.path / "out.jsonl.tmp"));
  EXPECT_EQ(read_tldr_jsonl(path), examples);

  // One line per example, prompt before label as in CarperAI's files, no id when empty.
  std::ifstream in(path);
  std::string line;
  std::vector<std::string> lines;
  while (std::getline(in, line)) lines.push_back(line);
  ASSERT_EQ(lines.size(), 3u);
  EXPECT_TRUE(lines[1].starts_with("{\"prompt\":")) << lines[1];
  EXPECT_LT(lines[0].find("\"prompt\""), lines[0].find("\"label\""));
  EXPECT_NE(lines[1].find("caf\u00e9"), std::string::npos);  // UTF-8 kept readable, not \u-escaped

  // Invalid UTF-8 is refused and leaves the old file alone.
  const std::vector<example> broken{{"bad", "POST: \xff\nTL;DR:", " x"}};
  EXPECT_THROW(write_tldr_jsonl(path, broken), std::runtime_error);
  EXPECT_EQ(read_tldr_jsonl(path), examples);
  EXPECT_FALSE(fs::exists(dir.path / "out.jsonl.tmp"));
}

TEST(data_jsonl, post_of_extracts_the_post) {
  EXPECT_EQ(post_of("SUBREDDIT: r/x\nTITLE: t\nPOST: the post\nsecond line\nTL;DR:"), "the post\nsecond line");
  EXPECT_EQ(post_of("TITLE: zstd\nPOST: Zstd is fast.\nTL;DR:"), "Zstd is fast.");
  EXPECT_EQ(post_of("POST: starts here\nTL;DR:"), "starts here");
  EXPECT_EQ(post_of("TITLE: my POST: in a title\nPOST: real post\nTL;DR:"), "real post");
  EXPECT_EQ(post_of("POST: quoting TL;DR: inside\nTL;DR:"), "quoting TL;DR: inside");
  EXPECT_EQ(post_of("no header at all\nTL;DR:"), "no header at all");
  EXPECT_EQ(post_of("no marker"), "no marker");
  EXPECT_EQ(post_of("POST:\nTL;DR:"), "");
}

// --- apt lists --------------------------------------------------------------------------------

TEST(data_apt, finds_translation_files_sorted) {
  temp_dir dir;
  for (const char* name : {"z_dists_main_i18n_Translation-en.lz4", "a_dists_main_i18n_Translation-en",
                           "m_dists_main_i18n_Translation-en.gz", "m_dists_main_i18n_Translation-en_GB",
                           "m_dists_main_binary-amd64_Packages.lz4", "m_dists_main_i18n_Translation-de.lz4"})
    write_file(dir.path / name, "");
  fs::create_directory(dir.path / "partial");
  const auto files = find_translation_files(dir.path);
  ASSERT_EQ(files.size(), 3u);
  EXPECT_EQ(files[0].filename(), "a_dists_main_i18n_Translation-en");
  EXPECT_EQ(files[1].filename(), "m_dists_main_i18n_Translation-en.gz");
  EXPECT_EQ(files[2].filename(), "z_dists_main_i18n_Translation-en.lz4");
  EXPECT_TRUE(find_translation_files(dir.path / "missing").empty());
}

TEST(data_apt, reads_plain_and_compressed_lists) {
  temp_dir dir;
  const std::string text = "Package: a\nDescription-en: s\n d\n";
  write_file(dir.path / "x_i18n_Translation-en", text);
  EXPECT_EQ(read_apt_list(dir.path / "x_i18n_Translation-en"), text);
  EXPECT_NE(error_of([&] { read_apt_list(dir.path / "missing"); }).find("missing"), std::string::npos);

  if (!fs::exists("/usr/lib/apt/apt-helper") || std::system("command -v gzip >/dev/null 2>&1") != 0)
    GTEST_SKIP() << "needs apt-helper and gzip";
  const fs::path gz = dir.path / "it's_i18n_Translation-en.gz";  // a quote, to test the quoting
  ASSERT_EQ(std::system(
                ("gzip -c '" + (dir.path / "x_i18n_Translation-en").string() + "' > \"" + gz.string() + "\"").c_str()),
            0);
  EXPECT_EQ(read_apt_list(gz), text);
  // (zlib passes non-gzip data through, so the failure case uses lz4.)
  write_file(dir.path / "broken.lz4", "not lz4 at all");
  const std::string message = error_of([&] { read_apt_list(dir.path / "broken.lz4"); });
  EXPECT_NE(message.find("broken.lz4"), std::string::npos) << message;
  EXPECT_NE(message.find("exit status"), std::string::npos) << message;
  EXPECT_NE(message.find("failed"), std::string::npos) << message;
}

TEST(data_apt, missing_lists_tell_how_to_fetch_them) {
  temp_dir dir;
  const std::string message = error_of([&] { build_dataset_from_apt({}, dir.path); });
  EXPECT_NE(message.find("apt-get update -o Acquire::Languages=en"), std::string::npos) << message;
  EXPECT_NE(message.find(dir.path.string()), std::string::npos) << message;
}

TEST(data_apt, builds_from_a_lists_folder) {
  temp_dir dir;
  fs::copy_file(data_dir / "Translation-en.sample", dir.path / "x_i18n_Translation-en");
  const dataset d = build_dataset_from_apt({}, dir.path);
  EXPECT_EQ(d.packages_read, 95u);
  EXPECT_EQ(d.train.size() + d.valid.size() + d.test.size(), d.kept_after_filters - d.duplicates_removed);
}

// --- build_dataset ----------------------------------------------------------------------------

TEST(data_group, families_share_a_group) {
  EXPECT_EQ(package_group("libfoo1"), "foo");
  EXPECT_EQ(package_group("libfoo-dev"), "foo");
  EXPECT_EQ(package_group("foo-utils"), "foo");
  EXPECT_EQ(package_group("python3-foo"), "foo");
  EXPECT_EQ(package_group("libfoo-perl"), "foo");
  EXPECT_EQ(package_group("libpng16-16"), "png");
  EXPECT_EQ(package_group("libpng-tools"), "png");
  EXPECT_EQ(package_group("libyaml-0-2"), "yaml");
  EXPECT_EQ(package_group("libzstd1"), package_group("zstd"));
  EXPECT_EQ(package_group("liblz4-1"), package_group("lz4"));
  EXPECT_EQ(package_group("0ad-data-common"), "0ad");
  EXPECT_EQ(package_group("2048"), "2048");  // never stripped to nothing
  EXPECT_EQ(package_group("lib"), "lib");
  EXPECT_NE(package_group("libfoo1"), package_group("libbar1"));
  EXPECT_NE(package_group("jq"), package_group("zstd"));
}

TEST(data_build, filters_and_collapses_near_duplicates) {
  const dataset d = build_dataset(sample_packages(), {});
  EXPECT_EQ(d.packages_read, 95u);
  EXPECT_LT(d.kept_after_filters, d.packages_read);
  EXPECT_GT(d.duplicates_removed, 5u);
  EXPECT_EQ(d.train.size() + d.valid.size() + d.test.size(), d.kept_after_filters - d.duplicates_removed);

  std::set<std::string> ids;
  for (const auto* split : {&d.train, &d.valid, &d.test})
    for (const example& e : *split) ids.insert(e.id);
  // 0ad, 0ad-data, 0ad-data-common share their description's opening: the shortest name stays.
  EXPECT_TRUE(ids.contains("0ad"));
  EXPECT_FALSE(ids.contains("0ad-data"));
  EXPECT_FALSE(ids.contains("0ad-data-common"));
  // libxml2, -dev, -utils likewise (-doc is filtered as documentation).
  EXPECT_TRUE(ids.contains("libxml2"));
  EXPECT_FALSE(ids.contains("libxml2-dev"));
  EXPECT_FALSE(ids.contains("libxml2-utils"));
  // jq and libjq-dev (a longer description, same opening): one of them.
  EXPECT_TRUE(ids.contains("jq"));
  EXPECT_FALSE(ids.contains("libjq-dev"));
  // Transitional packages and descriptions outside 25..120 words go.
  EXPECT_FALSE(ids.contains("libbabeltrace-ctf1"));
  EXPECT_FALSE(ids.contains("libbabeltrace-ctf-dev"));
  EXPECT_FALSE(ids.contains("libxml2-doc"));
  EXPECT_TRUE(ids.contains("0xffff"));

  // The example format.
  std::vector<example> all = d.train;
  all.insert(all.end(), d.valid.begin(), d.valid.end());
  all.insert(all.end(), d.test.begin(), d.test.end());
  const auto it = std::find_if(all.begin(), all.end(), [](const example& x) { return x.id == "0xffff"; });
  ASSERT_NE(it, all.end());
  const example& e = *it;
  EXPECT_TRUE(e.prompt.starts_with("TITLE: 0xffff\nPOST: The \u2018Open Free Fiasco"));
  EXPECT_TRUE(e.prompt.ends_with("N950 and N9.\nTL;DR:"));
  EXPECT_EQ(e.label, " Open Free Fiasco Firmware Flasher");
  EXPECT_EQ(post_of(e.prompt), find(sample_packages(), "0xffff")->description);
}

TEST(data_build, filter_bounds_apply) {
  dataset_options narrow;
  narrow.min_words = 40;
  narrow.max_words = 50;
  const dataset d = build_dataset(sample_packages(), narrow);
  ASSERT_GT(d.train.size() + d.valid.size() + d.test.size(), 0u);
  for (const auto* split : {&d.train, &d.valid, &d.test})
    for (const example& e : *split) {
      std::istringstream words(post_of(e.prompt));
      std::size_t n = 0;
      for (std::string w; words >> w;) ++n;
      EXPECT_GE(n, 40u) << e.id;
      EXPECT_LE(n, 50u) << e.id;
    }
  EXPECT_LT(d.kept_after_filters, build_dataset(sample_packages(), {}).kept_after_filters);
}

TEST(data_build, deterministic_and_independent_of_input_order) {
  dataset_options options;
  options.valid_fraction = 0.2;
  options.test_fraction = 0.2;
  auto packages = sample_packages();
  auto synthetic = synthetic_families(30);
  packages.insert(packages.end(), synthetic.begin(), synthetic.end());
  const dataset a = build_dataset(packages, options);
  const dataset b = build_dataset(packages, options);
  std::mt19937 rng(3);
  std::shuffle(packages.begin(), packages.end(), rng);
  packages.push_back(packages.front());  // a stanza seen twice (main and -updates) counts once
  const dataset c = build_dataset(packages, options);
  for (const dataset* other : {&b, &c}) {
    EXPECT_EQ(a.train, other->train);
    EXPECT_EQ(a.valid, other->valid);
    EXPECT_EQ(a.test, other->test);
    EXPECT_EQ(a.packages_read, other->packages_read);
    EXPECT_EQ(a.kept_after_filters, other->kept_after_filters);
    EXPECT_EQ(a.duplicates_removed, other->duplicates_removed);
  }
  EXPECT_FALSE(a.valid.empty());
  EXPECT_FALSE(a.test.empty());
  EXPECT_TRUE(std::is_sorted(a.train.begin(), a.train.end(), [](const auto& x, const auto& y) { return x.id < y.id; }));

  // The seed matters.
  options.seed = 2;
  const dataset other_seed = build_dataset(packages, options);
  EXPECT_NE(a.valid, other_seed.valid);
}

TEST(data_build, families_never_straddle_splits) {
  dataset_options options;
  options.valid_fraction = 0.3;
  options.test_fraction = 0.3;
  const std::size_t families = 200;
  const dataset d = build_dataset(synthetic_families(families), options);
  EXPECT_EQ(d.duplicates_removed, 0u);
  EXPECT_EQ(d.train.size() + d.valid.size() + d.test.size(), 3 * families);
  std::map<std::string, std::size_t> per_split;
  for (std::size_t f = 0; f < families; ++f) {
    const std::string stem = "fam" + std::to_string(f) + "x";
    const std::string split = split_of(d, "lib" + stem + "1");
    ASSERT_FALSE(split.empty());
    EXPECT_EQ(split_of(d, "lib" + stem + "-dev"), split) << stem;
    EXPECT_EQ(split_of(d, stem + "-utils"), split) << stem;
    ++per_split[split];
  }
  // Roughly 40/30/30 of 200 families.
  EXPECT_GT(per_split["train"], 55u);
  EXPECT_GT(per_split["valid"], 35u);
  EXPECT_GT(per_split["test"], 35u);
}

TEST(data_build, max_examples_caps_every_split_in_proportion) {
  dataset_options options;
  options.valid_fraction = 0.2;
  options.test_fraction = 0.2;
  const dataset full = build_dataset(synthetic_families(300), options);
  options.max_examples = 100;
  const dataset capped = build_dataset(synthetic_families(300), options);
  EXPECT_EQ(capped.train.size(), 100u);
  const double ratio = 100.0 / static_cast<double>(full.train.size());
  EXPECT_NEAR(static_cast<double>(capped.valid.size()), static_cast<double>(full.valid.size()) * ratio, 1.0);
  EXPECT_NEAR(static_cast<double>(capped.test.size()), static_cast<double>(full.test.size()) * ratio, 1.0);
  // A subset of the uncapped splits, in id order, and not simply the alphabetical prefix.
  auto ids = [](const std::vector<example>& split) {
    std::vector<std::string> out;
    for (const example& e : split) out.push_back(e.id);
    return out;
  };
  const auto full_train = ids(full.train), capped_train = ids(capped.train);
  EXPECT_TRUE(std::is_sorted(capped_train.begin(), capped_train.end()));
  EXPECT_TRUE(std::includes(full_train.begin(), full_train.end(), capped_train.begin(), capped_train.end()));
  EXPECT_NE(capped_train, std::vector<std::string>(full_train.begin(), full_train.begin() + 100));
  EXPECT_EQ(ids(build_dataset(synthetic_families(300), options).train), capped_train);
  // A cap above the train size changes nothing.
  options.max_examples = full.train.size() + 1;
  EXPECT_EQ(build_dataset(synthetic_families(300), options).train, full.train);
}

TEST(data_build, rejects_bad_options) {
  dataset_options o;
  o.min_words = 10;
  o.max_words = 5;
  EXPECT_THROW(build_dataset({}, o), std::invalid_argument);
  o = {};
  o.valid_fraction = -0.1;
  EXPECT_THROW(build_dataset({}, o), std::invalid_argument);
  o = {};
  o.valid_fraction = 0.5;
  o.test_fraction = 0.5;
  EXPECT_THROW(build_dataset({}, o), std::invalid_argument);
  EXPECT_NO_THROW(build_dataset({}, {}));
}
