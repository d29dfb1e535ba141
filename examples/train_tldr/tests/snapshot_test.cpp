// The pinned data (src/data.hpp, "The snapshot"): the repository's snapshot against its manifest,
// a snapshot written and read back, and the errors of damaged or malformed ones.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "data.hpp"
#include "hashing.hpp"

namespace fs = std::filesystem;
using namespace tldr;

namespace {

const fs::path snapshot_data_dir = TLDR_TEST_DATA;

// A fresh folder per test, removed at the end.
struct snapshot_scratch_dir {
  fs::path path;
  snapshot_scratch_dir() {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    path = fs::temp_directory_path() /
           ("tldr_" + std::string(info->test_suite_name()) + "_" + info->name() + "_" + std::to_string(::getpid()));
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~snapshot_scratch_dir() { fs::remove_all(path); }
};

std::string read_bytes(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

void write_bytes(const fs::path& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << bytes;
}

// The error message of read_snapshot(file), or "" when it does not throw std::runtime_error.
std::string snapshot_error(const fs::path& file) {
  try {
    (void)read_snapshot(file);
  } catch (const std::runtime_error& e) {
    return e.what();
  }
  return "";
}

// A small snapshot in dir: the packages of the sample Translation-en file that the selection keeps.
fs::path write_small_snapshot(const fs::path& dir) {
  std::ifstream in(snapshot_data_dir / "Translation-en.sample");
  selection selected = select_descriptions(parse_translation(in, "Translation-en.sample"), {});
  snapshot_source source{"2026-12-05", "test host", "/nowhere", {{"x_dists_s_main_i18n_Translation-en", ""}}};
  const fs::path file = dir / "small.jsonl.xz";
  (void)write_snapshot(file, selected, {}, source);
  return file;
}

// Replaces the snapshot's text with `text` (compressed with xz) and makes the manifest describe it
// (bytes, FNV-1a 64, records), so that only the text itself is wrong.
void replace_text(const fs::path& file, const std::string& text, std::size_t records) {
  const fs::path plain = file.parent_path() / "replacement.jsonl";
  write_bytes(plain, text);
  ASSERT_EQ(std::system(("xz -c '" + plain.string() + "' > '" + file.string() + "'").c_str()), 0);
  const fs::path manifest_file = snapshot_manifest_path(file);
  auto manifest = nlohmann::json::parse(read_bytes(manifest_file));
  manifest["text"]["bytes"] = text.size();
  manifest["text"]["fnv1a64"] = text_checksum(text).substr(8);
  manifest["records"] = records;
  write_bytes(manifest_file, manifest.dump(2));
}

TEST(data_snapshot, the_repository_snapshot_matches_its_manifest) {
  const fs::path file = snapshot_data_dir / "debian-descriptions.jsonl.xz";
  EXPECT_TRUE(fs::equivalent(default_snapshot(), file)) << default_snapshot();
  EXPECT_EQ(snapshot_manifest_path(file), snapshot_data_dir / "debian-descriptions.manifest.json");
  const auto manifest = nlohmann::json::parse(read_bytes(snapshot_manifest_path(file)));
  const description_snapshot s = read_snapshot(file);  // checks the text's FNV-1a 64 and size
  EXPECT_EQ(s.packages.size(), 28897u);
  EXPECT_EQ(s.packages.size(), manifest["records"].get<std::size_t>());
  EXPECT_EQ(s.checksum, "fnv1a64:" + manifest["text"]["fnv1a64"].get<std::string>());
  EXPECT_EQ(s.checksum, "fnv1a64:8108b0b174f02fe0");
  EXPECT_EQ(s.taken, "2026-12-05");
  ASSERT_FALSE(s.packages.empty());
  EXPECT_EQ(s.packages.front().package, "0ad");
  EXPECT_EQ(s.packages.front().synopsis, "Real-time strategy game of ancient warfare");
  EXPECT_EQ(s.packages.back().package, "zzuf");
  EXPECT_EQ(s.packages.back().synopsis, "transparent application fuzzer");
  EXPECT_EQ(s.min_words, dataset_options{}.min_words);
  EXPECT_EQ(s.max_words, dataset_options{}.max_words);
  EXPECT_EQ(s.packages_read, 64610u);
  EXPECT_EQ(s.kept_after_filters - s.duplicates_removed, s.packages.size());

  // The selection keeps every record (so build_dataset over the snapshot splits exactly these)...
  const selection again = select_descriptions(s.packages, {});
  EXPECT_EQ(again.packages, s.packages);
  // ... and the splits at the default options are those the data stage printed and the manifest has.
  const dataset d = build_dataset(s.packages, {});
  EXPECT_EQ(d.train.size(), 25955u);
  EXPECT_EQ(d.valid.size(), 1491u);
  EXPECT_EQ(d.test.size(), 1451u);
  EXPECT_EQ(d.train.size(), manifest["splits"]["train"].get<std::size_t>());
  EXPECT_EQ(d.valid.size(), manifest["splits"]["valid"].get<std::size_t>());
  EXPECT_EQ(d.test.size(), manifest["splits"]["test"].get<std::size_t>());
  EXPECT_EQ(snapshot_text(s.packages).size(), manifest["text"]["bytes"].get<std::size_t>());
}

TEST(data_snapshot, writes_and_reads_back) {
  snapshot_scratch_dir dir;
  const fs::path file = write_small_snapshot(dir.path);
  EXPECT_TRUE(fs::exists(dir.path / "small.manifest.json"));
  EXPECT_FALSE(fs::exists(dir.path / "small.jsonl.xz.tmp"));
  EXPECT_FALSE(fs::exists(dir.path / "small.jsonl.xz.text.tmp"));

  std::ifstream in(snapshot_data_dir / "Translation-en.sample");
  const auto packages = parse_translation(in, "Translation-en.sample");
  const selection selected = select_descriptions(packages, {});
  const description_snapshot s = read_snapshot(file);
  EXPECT_EQ(s.packages, selected.packages);
  EXPECT_EQ(s.packages_read, selected.packages_read);
  EXPECT_EQ(s.checksum, text_checksum(snapshot_text(selected.packages)));
  // The same splits as the source, for other seeds and caps too.
  for (std::uint64_t seed : {1, 5})
    for (std::size_t cap : {0, 10}) {
      dataset_options options;
      options.seed = seed;
      options.max_examples = cap;
      const dataset a = build_dataset(packages, options), b = build_dataset(s.packages, options);
      EXPECT_EQ(a.train, b.train);
      EXPECT_EQ(a.valid, b.valid);
      EXPECT_EQ(a.test, b.test);
    }
  const auto manifest = nlohmann::json::parse(read_bytes(dir.path / "small.manifest.json"));
  EXPECT_EQ(manifest["file"], "small.jsonl.xz");
  EXPECT_EQ(manifest["records"].get<std::size_t>(), s.packages.size());
  EXPECT_EQ(manifest["compressed"]["bytes"].get<std::uintmax_t>(), fs::file_size(file));
  EXPECT_EQ(manifest["compressed"]["sha256"].get<std::string>().size(), 64u);
  EXPECT_EQ(manifest["text"]["sha256"].get<std::string>().size(), 64u);
  EXPECT_EQ(manifest["source"]["taken"], "2026-12-05");
  // Written twice, the same bytes (xz with one thread).
  const std::string first = read_bytes(file);
  (void)write_small_snapshot(dir.path);
  EXPECT_EQ(read_bytes(file), first);
}

TEST(data_snapshot, a_changed_text_names_file_expected_and_actual) {
  snapshot_scratch_dir dir;
  const fs::path file = write_small_snapshot(dir.path);
  const std::string expected = read_snapshot(file).checksum.substr(8);
  // The manifest's checksum altered: both values appear in the message.
  const fs::path manifest_file = snapshot_manifest_path(file);
  auto manifest = nlohmann::json::parse(read_bytes(manifest_file));
  manifest["text"]["fnv1a64"] = "0123456789abcdef";
  write_bytes(manifest_file, manifest.dump(2));
  const std::string message = snapshot_error(file);
  EXPECT_NE(message.find(file.string()), std::string::npos) << message;
  EXPECT_NE(message.find("checksum mismatch"), std::string::npos) << message;
  EXPECT_NE(message.find("0123456789abcdef"), std::string::npos) << message;
  EXPECT_NE(message.find(expected), std::string::npos) << message;
  EXPECT_NE(message.find(manifest_file.string()), std::string::npos) << message;
}

TEST(data_snapshot, malformed_snapshots_fail_with_their_place) {
  snapshot_scratch_dir dir;
  const fs::path file = write_small_snapshot(dir.path);
  const std::string good = R"({"package":"a","synopsis":"s","description":"d")"
                           "}\n";

  replace_text(file, good + "{\"package\": \"b\", not json\n", 2);
  std::string message = snapshot_error(file);
  EXPECT_NE(message.find(file.string() + ":2: invalid JSON"), std::string::npos) << message;

  replace_text(file,
               good + R"({"package":"b","synopsis":"s"})"
                      "\n",
               2);
  message = snapshot_error(file);
  EXPECT_NE(message.find(file.string() + ":2: expected an object with the fields"), std::string::npos) << message;

  replace_text(file,
               good + R"({"package":"b","synopsis":1,"description":"d"})"
                      "\n",
               2);
  message = snapshot_error(file);
  EXPECT_NE(message.find(file.string() + ":2: field \"synopsis\" is not a string"), std::string::npos) << message;

  replace_text(file, good + good, 2);
  message = snapshot_error(file);
  EXPECT_NE(message.find(":2: package \"a\" comes after \"a\""), std::string::npos) << message;

  replace_text(file, good, 2);
  message = snapshot_error(file);
  EXPECT_NE(message.find("1 records, the manifest"), std::string::npos) << message;
  EXPECT_NE(message.find("says 2"), std::string::npos) << message;

  replace_text(file, good, 1);
  EXPECT_EQ(read_snapshot(file).packages.size(), 1u);

  write_bytes(file, "not xz at all");
  message = snapshot_error(file);
  EXPECT_NE(message.find(file.string()), std::string::npos) << message;
  EXPECT_NE(message.find("xz -dc"), std::string::npos) << message;
  EXPECT_NE(message.find("exit status"), std::string::npos) << message;

  fs::remove(file);
  EXPECT_NE(snapshot_error(file).find("no such file"), std::string::npos);
}

TEST(data_snapshot, manifest_errors) {
  snapshot_scratch_dir dir;
  const fs::path file = write_small_snapshot(dir.path);
  const fs::path manifest_file = snapshot_manifest_path(file);
  const std::string manifest_text = read_bytes(manifest_file);

  write_bytes(manifest_file, "{ not json");
  EXPECT_NE(snapshot_error(file).find(manifest_file.string() + ": invalid JSON"), std::string::npos);

  auto manifest = nlohmann::json::parse(manifest_text);
  manifest["text"].erase("fnv1a64");
  write_bytes(manifest_file, manifest.dump());
  EXPECT_NE(snapshot_error(file).find("field /text/fnv1a64 is missing"), std::string::npos) << snapshot_error(file);

  manifest = nlohmann::json::parse(manifest_text);
  manifest["records"] = "many";
  write_bytes(manifest_file, manifest.dump());
  EXPECT_NE(snapshot_error(file).find("field /records is not a count"), std::string::npos) << snapshot_error(file);

  manifest = nlohmann::json::parse(manifest_text);
  manifest["file"] = "other.jsonl.xz";
  write_bytes(manifest_file, manifest.dump());
  EXPECT_NE(snapshot_error(file).find("describes other.jsonl.xz, not small.jsonl.xz"), std::string::npos)
      << snapshot_error(file);

  fs::remove(manifest_file);
  EXPECT_NE(snapshot_error(file).find("cannot open the manifest"), std::string::npos) << snapshot_error(file);
}

}  // namespace
