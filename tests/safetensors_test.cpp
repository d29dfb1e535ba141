// brain/io/safetensors.hpp: a file laid out byte by byte from the format's description (not by
// the writer) read back; the writer's files read back identically; half and bfloat16 conversions
// at known bit patterns; and every malformed header the reader must reject, with the file and
// the tensor named.

#include <brain/io/safetensors.hpp>

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <string>
#include <vector>

namespace {

namespace io = brain::io;

/// The bytes of a safetensors file: the 8-byte little-endian length, the header text, the data.
std::vector<std::byte> file_bytes(const std::string& header, const std::vector<unsigned char>& data) {
  std::vector<std::byte> out;
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<std::byte>((header.size() >> (8 * i)) & 0xff));
  for (const char c : header) out.push_back(static_cast<std::byte>(c));
  for (const unsigned char c : data) out.push_back(static_cast<std::byte>(c));
  return out;
}

std::filesystem::path temporary(const std::string& name) {
  return std::filesystem::temp_directory_path() / ("brain_safetensors_test_" + std::to_string(::getpid()) + "_" + name);
}

void write_file(const std::filesystem::path& path, const std::vector<std::byte>& bytes) {
  std::ofstream(path, std::ios::binary)
      .write(reinterpret_cast<const char*>(bytes.data()), static_cast<std::streamsize>(bytes.size()));
}

/// The message parse_safetensors_header throws for `header` + `data`, or "" if it accepts them.
std::string rejection(const std::string& header, const std::vector<unsigned char>& data = {}) {
  try {
    (void)io::parse_safetensors_header(file_bytes(header, data), "bad.safetensors");
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "";
}

// Laid out by hand: F32 "a" [2] = {1, -2}, F16 "b" [] = 1.5, BF16 "c" [1, 1] = -0.5, metadata.
TEST(Safetensors, ReadsAFileLaidOutByHand) {
  const std::string header =
      R"({"__metadata__":{"format":"pt"},"c":{"dtype":"BF16","shape":[1,1],"data_offsets":[10,12]},)"
      R"("a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F16","shape":[],"data_offsets":[8,10]}})";
  const std::vector<unsigned char> data = {0x00, 0x00, 0x80, 0x3f,  // 1.0f
                                           0x00, 0x00, 0x00, 0xc0,  // -2.0f
                                           0x00, 0x3e,              // half 1.5
                                           0x00, 0xbf};             // bfloat16 -0.5
  const auto path = temporary("by_hand.safetensors");
  write_file(path, file_bytes(header, data));
  const io::safetensors file(path);
  ASSERT_EQ(file.tensors().size(), 3u);
  EXPECT_EQ(file.tensors()[0].name, "a");  // in data order
  EXPECT_EQ(file.tensors()[1].name, "b");
  EXPECT_EQ(file.at("a").shape, (std::vector<std::int64_t>{2}));
  EXPECT_TRUE(file.at("b").shape.empty());
  EXPECT_EQ(file.at("b").elements(), 1);
  EXPECT_EQ(file.at("c").type, io::dtype::bf16);
  EXPECT_EQ(file.floats("a"), (std::vector<float>{1.0f, -2.0f}));
  EXPECT_EQ(file.floats("b"), (std::vector<float>{1.5f}));
  EXPECT_EQ(file.floats("c"), (std::vector<float>{-0.5f}));
  EXPECT_EQ(file.metadata().at("format"), "pt");
  EXPECT_FALSE(file.contains("d"));
  try {
    (void)file.at("d");
    ADD_FAILURE() << "no throw";
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find(path.string()), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("no tensor 'd'"), std::string::npos) << e.what();
  }
  std::filesystem::remove(path);
}

// The writer's file reads back with the same names, types, shapes, bytes and metadata, including
// a zero-size tensor; its header is padded to 8 bytes; it replaces an existing file and leaves no
// temporary beside it.
TEST(Safetensors, WrittenFilesReadBackIdentically) {
  const std::vector<float> a = {0.25f, -3.0f, 7.5f, 1e-20f, -0.0f, 65504.0f};
  std::vector<std::uint16_t> b, c;
  for (const float v : {0.5f, -1.0f, 3.140625f}) b.push_back(io::float_to_half(v));
  for (const float v : {2.0f, -0.15625f}) c.push_back(io::float_to_bfloat16(v));
  const auto bytes = [](const auto& v) { return std::as_bytes(std::span(v)); };
  const std::vector<io::tensor_view> tensors = {{"layer.0.weight", io::dtype::f32, {2, 3}, bytes(a)},
                                                {"empty", io::dtype::f32, {0, 4}, {}},
                                                {"half", io::dtype::f16, {3}, bytes(b)},
                                                {"brain", io::dtype::bf16, {2, 1}, bytes(c)}};
  const auto path = temporary("written.safetensors");
  write_file(path, file_bytes("stale", {}));
  io::write_safetensors(path, tensors, {{"note", "written by a test"}});
  const io::safetensors file(path);
  ASSERT_EQ(file.tensors().size(), 4u);
  for (const io::tensor_view& t : tensors) {
    const io::tensor_entry& e = file.at(t.name);
    EXPECT_EQ(e.type, t.type) << t.name;
    EXPECT_EQ(e.shape, t.shape) << t.name;
    const auto got = file.bytes(e);
    ASSERT_EQ(got.size(), t.data.size()) << t.name;
    EXPECT_TRUE(t.data.empty() || std::memcmp(got.data(), t.data.data(), got.size()) == 0) << t.name;
  }
  EXPECT_EQ(file.floats("layer.0.weight"), a);
  EXPECT_EQ(file.floats("half"), (std::vector<float>{0.5f, -1.0f, 3.140625f}));
  EXPECT_EQ(file.floats("brain"), (std::vector<float>{2.0f, -0.15625f}));
  EXPECT_TRUE(file.floats("empty").empty());
  EXPECT_EQ(file.metadata().at("note"), "written by a test");
  std::ifstream in(path, std::ios::binary);
  unsigned char length[8];
  in.read(reinterpret_cast<char*>(length), 8);
  EXPECT_EQ(length[0] % 8, 0);
  for (const auto& entry : std::filesystem::directory_iterator(path.parent_path()))
    EXPECT_EQ(entry.path().string().find(path.filename().string() + ".tmp"), std::string::npos) << entry.path();
  // Bad tensors to write are named.
  const std::vector<float> five(5);
  const std::vector<io::tensor_view> wrong_size = {{"w", io::dtype::f32, {2, 3}, bytes(five)}};
  EXPECT_THROW(io::write_safetensors(path, wrong_size), std::invalid_argument);
  const std::vector<float> one(1);
  const std::vector<io::tensor_view> repeated = {{"w", io::dtype::f32, {}, bytes(one)},
                                                 {"w", io::dtype::f32, {}, bytes(one)}};
  EXPECT_THROW(io::write_safetensors(path, repeated), std::invalid_argument);
  for (const std::string name : {"", "__metadata__"}) {
    const std::vector<io::tensor_view> reserved = {{name, io::dtype::f32, {}, bytes(one)}};
    EXPECT_THROW(io::write_safetensors(path, reserved), std::invalid_argument) << "'" << name << "'";
  }
  // A shape whose byte count wraps to the (empty) data's size: 2^62 x 4 floats is 2^66 bytes.
  const std::vector<io::tensor_view> wraps = {{"w", io::dtype::f32, {std::int64_t{1} << 62, 4}, {}}};
  EXPECT_THROW(io::write_safetensors(path, wraps), std::invalid_argument);
  EXPECT_EQ(io::safetensors(path).tensors().size(), 4u);  // a failed write leaves the file as it was
  std::filesystem::remove(path);
}

// Known bit patterns (IEEE 754 binary16 and bfloat16), both directions, with rounding to nearest
// even, overflow to infinity, subnormals and NaN.
TEST(Safetensors, HalfAndBfloat16ConvertExactly) {
  const struct {
    std::uint16_t bits;
    float value;
  } halves[] = {{0x3c00, 1.0f},     {0xc000, -2.0f},           {0x7bff, 65504.0f},
                {0x0001, 0x1p-24f}, {0x03ff, 1023 * 0x1p-24f}, {0x0400, 0x1p-14f},
                {0x8000, -0.0f},    {0x3555, 0.333251953125f}};
  for (const auto& [bits, value] : halves) {
    EXPECT_EQ(io::half_to_float(bits), value) << std::hex << bits;
    EXPECT_EQ(io::float_to_half(value), bits) << value;
  }
  EXPECT_EQ(io::half_to_float(0x7c00), std::numeric_limits<float>::infinity());
  EXPECT_TRUE(std::isnan(io::half_to_float(0x7e00)));
  EXPECT_EQ(io::float_to_half(65520.0f), 0x7c00);  // rounds up past the largest half
  EXPECT_EQ(io::float_to_half(65519.0f), 0x7bff);
  EXPECT_EQ(io::float_to_half(1.0f + 0x1p-11f), 0x3c00);  // a tie: to even
  EXPECT_EQ(io::float_to_half(1.0f + 3 * 0x1p-11f), 0x3c02);
  EXPECT_EQ(io::float_to_half(0x1p-25f), 0x0000);  // a tie below the smallest subnormal: to even (0)
  EXPECT_EQ(io::float_to_half(0x1.8p-25f), 0x0001);
  EXPECT_EQ(io::float_to_half(1e-10f), 0x0000);
  EXPECT_EQ(io::float_to_half(-1e10f), 0xfc00);
  EXPECT_EQ(io::float_to_half(std::nanf("")) & 0x7e00, 0x7e00);
  EXPECT_EQ(io::bfloat16_to_float(0x3f80), 1.0f);
  EXPECT_EQ(io::bfloat16_to_float(0xc2f7), -123.5f);
  EXPECT_EQ(io::float_to_bfloat16(1.0f), 0x3f80);
  EXPECT_EQ(io::float_to_bfloat16(1.0f + 0x1p-8f), 0x3f80);  // a tie: to even
  EXPECT_EQ(io::float_to_bfloat16(1.0f + 3 * 0x1p-8f), 0x3f82);
  EXPECT_EQ(io::float_to_bfloat16(std::numeric_limits<float>::max()), 0x7f80);  // rounds to inf
  EXPECT_TRUE(std::isnan(io::bfloat16_to_float(io::float_to_bfloat16(std::nanf("")))));
  // Every half round-trips through float.
  for (std::uint32_t h = 0; h < 0x10000; ++h) {
    if ((h & 0x7c00) == 0x7c00 && (h & 0x3ff) != 0) continue;  // NaN: any quiet NaN will do
    ASSERT_EQ(io::float_to_half(io::half_to_float(static_cast<std::uint16_t>(h))), h) << std::hex << h;
  }
}

// Each malformed file is rejected with the file and (where there is one) the tensor named.
TEST(Safetensors, MalformedHeadersAreNamed) {
  const std::string ok = R"("t":{"dtype":"F32","shape":[2],"data_offsets":[0,8]})";
  const std::vector<unsigned char> eight(8);
  EXPECT_EQ(rejection("{" + ok + "}", eight), "");
  const struct {
    std::string header;
    std::vector<unsigned char> data;
    std::string says;
  } cases[] = {
      {"{" + ok, eight, "not valid JSON"},
      {"[1, 2]", {}, "not a JSON object"},
      {"{" + ok + "," + ok + "}", eight, "names 't' twice"},
      {R"({"t":{"dtype":"F64","shape":[1],"data_offsets":[0,8]}})", eight, "tensor 't': dtype F64 is not supported"},
      {R"({"t":{"dtype":"F33","shape":[2],"data_offsets":[0,8]}})", eight, "tensor 't': unknown dtype 'F33'"},
      {R"({"t":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", eight, "tensor 't': shape entry -2"},
      {R"({"t":{"dtype":"F32","shape":[2.5],"data_offsets":[0,8]}})", eight, "tensor 't': shape entry 2.5"},
      {R"({"t":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,8]}})", eight, "too many elements"},
      {R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[8,0]}})", eight, "tensor 't': data_offsets [8, 0]"},
      {R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[0,16]}})", eight, "inside the 8 data bytes"},
      {R"({"t":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", eight,
       "tensor 't': 8 bytes, but F32 [3] needs 3 x 4"},
      {R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[0]}})", eight, "is not [begin, end]"},
      {R"({"t":{"dtype":"F32","shape":[2]}})", eight, "tensor 't': no \"data_offsets\""},
      {R"({"t":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"extra":1}})", eight, "unknown key 'extra'"},
      {R"({"t":[1]})", eight, "tensor 't': expected an object"},
      {R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
       eight, "tensors 'a' [0, 8) and 'b' [4, 8) overlap"},
      {R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})", eight, "data bytes [0, 4) belong to no tensor"},
      {R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})", eight, "data bytes [4, 8) belong to no tensor"},
      {R"({"__metadata__":{"k":1}})", {}, "__metadata__ 'k' is 1, not a string"},
  };
  for (const auto& c : cases) {
    const std::string message = rejection(c.header, c.data);
    EXPECT_NE(message.find(c.says), std::string::npos) << c.header << "\n  gave: " << message;
    EXPECT_NE(message.find("bad.safetensors"), std::string::npos) << message;
  }
  // The length field itself: too short a file, a length past the end, past the limit.
  EXPECT_THROW((void)io::parse_safetensors_header(std::vector<std::byte>(5), "short"), std::invalid_argument);
  std::vector<std::byte> long_length = file_bytes("{}", {});
  long_length[0] = std::byte{200};
  try {
    (void)io::parse_safetensors_header(long_length, "f");
    ADD_FAILURE();
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("header length 200 exceeds the 2 bytes"), std::string::npos) << e.what();
  }
  try {
    (void)io::parse_safetensors_header(file_bytes("{}      ", {}), "f", {.max_header_bytes = 4});
    ADD_FAILURE();
  } catch (const std::invalid_argument& e) {
    EXPECT_NE(std::string(e.what()).find("exceeds the limit of 4"), std::string::npos) << e.what();
  }
  // A missing file.
  EXPECT_THROW(io::safetensors(temporary("does_not_exist")), std::invalid_argument);
}

}  // namespace
