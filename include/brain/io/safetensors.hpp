#pragma once
// Hugging Face's safetensors format, read (memory-mapped) and written, for trainers that load a
// checkpoint into a model and export one back. Not part of the algorithm: brain's loss headers do
// not include it (CMake target brain::io, which needs nlohmann json).
//
// The format (huggingface/safetensors, "Format"): 8 bytes, a little-endian u64 N; N bytes of
// UTF-8 JSON, an object mapping each tensor name to {"dtype", "shape", "data_offsets": [begin,
// end]} plus an optional "__metadata__" object of strings; then the data, each tensor's bytes at
// [begin, end) relative to the data's start, little-endian, row-major, the whole data section
// covered without holes or overlaps.
//
//   brain::io::safetensors file("model.safetensors");
//   for (const auto& t : file.tensors()) use(t.name, t.shape, file.floats(t.name));  // F16/BF16 widened
//   brain::io::write_safetensors("out.safetensors", {{"w", brain::io::dtype::f32, {2, 3}, bytes}});
//
// Read: F32, F16 and BF16; every other dtype is rejected by name. The header is validated before
// any tensor is used: its size (at most read_limits::max_header_bytes, 100 MiB by default, like
// the reference implementation), well-formed JSON without duplicate names, known keys only,
// shapes of non-negative integers, offsets inside the data, sizes equal to dtype size x elements
// (overflow-checked), and the data covered exactly. Every error is a std::invalid_argument naming
// the file (or the label given) and the tensor. Written files are atomic: a temporary file beside
// the target, flushed and renamed.

#include <brain/errors.hpp>

#include <nlohmann/json.hpp>

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <set>
#include <span>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <tuple>
#include <utility>
#include <vector>

namespace brain::inline v0::io {

/// The element types read and written.
enum class dtype : std::uint8_t { f32, f16, bf16 };

/// The format's name of a dtype ("F32", "F16", "BF16").
inline std::string_view name_of(dtype t) {
  switch (t) {
    case dtype::f32:
      return "F32";
    case dtype::f16:
      return "F16";
    case dtype::bf16:
      return "BF16";
  }
  return "?";
}

/// Bytes per element.
inline std::size_t size_of(dtype t) { return t == dtype::f32 ? 4 : 2; }

/// One tensor of a file: its name, type, shape and bytes [begin, end) within the data section.
struct tensor_entry {
  std::string name;
  io::dtype type = dtype::f32;
  std::vector<std::int64_t> shape;
  std::uint64_t begin = 0, end = 0;
  /// Number of elements (1 for a scalar, shape []).
  std::int64_t elements() const {
    std::int64_t n = 1;
    for (const std::int64_t d : shape) n *= d;
    return n;
  }
};

struct read_limits {
  std::uint64_t max_header_bytes = std::uint64_t{100} << 20;  ///< the reference implementation's limit
};

/// A file's validated header: its tensors in data order, its metadata, where the data starts.
struct safetensors_header {
  std::vector<tensor_entry> tensors;
  std::map<std::string, std::string, std::less<>> metadata;
  std::uint64_t data_start = 0;  ///< 8 + the JSON's length
  std::uint64_t data_size = 0;
};

/// IEEE half (binary16) and bfloat16 bits to float, exactly (every such value is a float).
inline float half_to_float(std::uint16_t h) {
  const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
  const std::uint32_t exponent = (h >> 10) & 0x1fu, mantissa = h & 0x3ffu;
  if (exponent == 0x1f) return std::bit_cast<float>(sign | 0x7f800000u | (mantissa << 13));  // inf, NaN
  if (exponent != 0) return std::bit_cast<float>(sign | ((exponent + 112) << 23) | (mantissa << 13));
  const float magnitude = static_cast<float>(mantissa) * 0x1p-24f;  // zero and subnormals
  return sign != 0 ? -magnitude : magnitude;
}
inline float bfloat16_to_float(std::uint16_t b) { return std::bit_cast<float>(static_cast<std::uint32_t>(b) << 16); }

/// float to bfloat16 bits, rounding to nearest even (NaN stays a quiet NaN).
inline std::uint16_t float_to_bfloat16(float f) {
  const std::uint32_t bits = std::bit_cast<std::uint32_t>(f);
  if ((bits & 0x7fffffffu) > 0x7f800000u) return static_cast<std::uint16_t>((bits >> 16) | 0x40u);
  return static_cast<std::uint16_t>((bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16);
}

/// float to IEEE half bits, rounding to nearest even; overflow gives ±inf, NaN a quiet NaN.
inline std::uint16_t float_to_half(float f) {
  const std::uint32_t bits = std::bit_cast<std::uint32_t>(f);
  const std::uint16_t sign = static_cast<std::uint16_t>((bits >> 16) & 0x8000u);
  const std::uint32_t magnitude = bits & 0x7fffffffu;
  if (magnitude > 0x7f800000u) return static_cast<std::uint16_t>(sign | 0x7e00u);
  if (magnitude >= 0x477ff000u) return static_cast<std::uint16_t>(sign | 0x7c00u);  // rounds to >= 65520: inf
  if (magnitude < 0x38800000u) {  // below 2^-14: a subnormal half (or zero), in units of 2^-24
    const float units = std::bit_cast<float>(magnitude) * 0x1p24f;
    const float rounded = units - std::remainder(units, 1.0f);  // nearest integer, ties to even
    return static_cast<std::uint16_t>(sign | static_cast<std::uint16_t>(rounded));
  }
  const std::uint32_t rebased = magnitude - (std::uint32_t{112} << 23);  // exponent 127 -> 15
  return static_cast<std::uint16_t>(sign | ((rebased + 0xfffu + ((rebased >> 13) & 1u)) >> 13));
}

namespace detail {

/// Throws std::invalid_argument "brain::io: <file>: <parts>".
template <class... Parts>
[[noreturn]] void fail_io(std::string_view file, const Parts&... parts) {
  brain::detail::fail("io", file, ": ", parts...);
}

inline bool parse_dtype(std::string_view s, dtype& out) {
  if (s == "F32") return out = dtype::f32, true;
  if (s == "F16") return out = dtype::f16, true;
  if (s == "BF16") return out = dtype::bf16, true;
  return false;
}

inline bool is_known_dtype(std::string_view s) {
  static constexpr std::string_view known[] = {"F64",     "I64",     "U64",     "I32",  "U32",     "I16",
                                               "U16",     "I8",      "U8",      "BOOL", "F8_E4M3", "F8_E5M2",
                                               "F8_E8M0", "F6_E2M3", "F6_E3M2", "F4",   "C64"};
  return std::find(std::begin(known), std::end(known), s) != std::end(known);
}

/// A JSON value as a non-negative integer that fits in T, or fail naming `what`.
inline std::uint64_t non_negative(std::string_view file, const std::string& tensor, std::string_view what,
                                  const nlohmann::json& v) {
  if (v.is_number_unsigned()) return v.get<std::uint64_t>();
  if (v.is_number_integer() && v.get<std::int64_t>() >= 0) return static_cast<std::uint64_t>(v.get<std::int64_t>());
  fail_io(file, "tensor '", tensor, "': ", what, " ", v.dump(), " is not a non-negative integer");
}

inline tensor_entry parse_entry(std::string_view file, const std::string& name, const nlohmann::json& v,
                                std::uint64_t data_size) {
  if (!v.is_object()) fail_io(file, "tensor '", name, "': expected an object, got ", v.dump());
  for (const auto& [key, value] : v.items())
    if (key != "dtype" && key != "shape" && key != "data_offsets")
      fail_io(file, "tensor '", name, "': unknown key '", key, "' (dtype, shape and data_offsets are read)");
  tensor_entry t;
  t.name = name;
  const auto field = [&](const char* key) -> const nlohmann::json& {
    const auto it = v.find(key);
    if (it == v.end()) fail_io(file, "tensor '", name, "': no \"", key, "\"");
    return *it;
  };
  const nlohmann::json& type = field("dtype");
  if (!type.is_string()) fail_io(file, "tensor '", name, "': dtype ", type.dump(), " is not a string");
  const std::string type_name = type.get<std::string>();
  if (!parse_dtype(type_name, t.type)) {
    if (is_known_dtype(type_name))
      fail_io(file, "tensor '", name, "': dtype ", type_name, " is not supported (F32, F16 and BF16 are read)");
    fail_io(file, "tensor '", name, "': unknown dtype '", type_name, "'");
  }
  const nlohmann::json& shape = field("shape");
  if (!shape.is_array()) fail_io(file, "tensor '", name, "': shape ", shape.dump(), " is not an array");
  std::uint64_t elements = 1;
  for (const nlohmann::json& d : shape) {
    const std::uint64_t extent = non_negative(file, name, "shape entry", d);
    if (extent > static_cast<std::uint64_t>(INT64_MAX) || __builtin_mul_overflow(elements, extent, &elements))
      fail_io(file, "tensor '", name, "': shape ", shape.dump(), " has too many elements");
    t.shape.push_back(static_cast<std::int64_t>(extent));
  }
  const nlohmann::json& offsets = field("data_offsets");
  if (!offsets.is_array() || offsets.size() != 2)
    fail_io(file, "tensor '", name, "': data_offsets ", offsets.dump(), " is not [begin, end]");
  t.begin = non_negative(file, name, "data_offsets entry", offsets[0]);
  t.end = non_negative(file, name, "data_offsets entry", offsets[1]);
  if (t.begin > t.end || t.end > data_size)
    fail_io(file, "tensor '", name, "': data_offsets [", t.begin, ", ", t.end, "] are not an interval inside the ",
            data_size, " data bytes");
  std::uint64_t bytes = 0;
  if (__builtin_mul_overflow(elements, size_of(t.type), &bytes) || bytes != t.end - t.begin)
    fail_io(file, "tensor '", name, "': ", t.end - t.begin, " bytes, but ", name_of(t.type), " ", shape.dump(),
            " needs ", elements, " x ", size_of(t.type));
  return t;
}

}  // namespace detail

/// Parses and validates the header of a safetensors file held in `file` (all of it: the data
/// section's size is what follows the header). `label` names the file in errors.
inline safetensors_header parse_safetensors_header(std::span<const std::byte> file, std::string_view label,
                                                   const read_limits& limits = {}) {
  using detail::fail_io;
  if (file.size() < 8) fail_io(label, "the file has ", file.size(), " bytes: too short for the 8-byte header length");
  std::uint64_t length = 0;
  for (int i = 7; i >= 0; --i) length = (length << 8) | static_cast<std::uint8_t>(file[static_cast<std::size_t>(i)]);
  if (length > limits.max_header_bytes)
    fail_io(label, "header length ", length, " exceeds the limit of ", limits.max_header_bytes, " bytes");
  if (length > file.size() - 8)
    fail_io(label, "header length ", length, " exceeds the ", file.size() - 8, " bytes after the length");
  safetensors_header out;
  out.data_start = 8 + length;
  out.data_size = file.size() - out.data_start;
  const char* text = reinterpret_cast<const char*>(file.data() + 8);
  // Duplicate names would silently keep one tensor: the parser's callback sees every key.
  std::set<std::string, std::less<>> seen;
  nlohmann::json header;
  try {
    header = nlohmann::json::parse(
        text, text + length, [&](int depth, nlohmann::json::parse_event_t event, nlohmann::json& key) {
          if (event == nlohmann::json::parse_event_t::key && depth == 1 && !seen.insert(key.get<std::string>()).second)
            fail_io(label, "header names '", key.get<std::string>(), "' twice");
          return true;
        });
  } catch (const nlohmann::json::exception& e) {
    fail_io(label, "header is not valid JSON: ", e.what());
  }
  if (!header.is_object()) fail_io(label, "header is not a JSON object");
  for (const auto& [name, value] : header.items()) {
    if (name == "__metadata__") {
      if (!value.is_object()) fail_io(label, "__metadata__ is not an object");
      for (const auto& [key, entry] : value.items()) {
        if (!entry.is_string()) fail_io(label, "__metadata__ '", key, "' is ", entry.dump(), ", not a string");
        out.metadata.emplace(key, entry.get<std::string>());
      }
      continue;
    }
    out.tensors.push_back(detail::parse_entry(label, name, value, out.data_size));
  }
  // The data section is covered exactly: sorted by offset, each tensor starts where the previous ends.
  std::sort(out.tensors.begin(), out.tensors.end(), [](const tensor_entry& a, const tensor_entry& b) {
    return std::tie(a.begin, a.end) < std::tie(b.begin, b.end);
  });
  std::uint64_t covered = 0;
  const tensor_entry* previous = nullptr;
  for (const tensor_entry& t : out.tensors) {
    if (t.begin < covered)
      fail_io(label, "tensors '", previous->name, "' [", previous->begin, ", ", previous->end, ") and '", t.name, "' [",
              t.begin, ", ", t.end, ") overlap");
    if (t.begin > covered) fail_io(label, "data bytes [", covered, ", ", t.begin, ") belong to no tensor");
    covered = t.end;
    previous = &t;
  }
  if (covered != out.data_size) fail_io(label, "data bytes [", covered, ", ", out.data_size, ") belong to no tensor");
  return out;
}

/// A safetensors file, memory-mapped read-only and validated on opening.
class safetensors {
 public:
  explicit safetensors(const std::filesystem::path& file, const read_limits& limits = {}) : path_(file) {
    const std::string label = file.string();
    const int fd = ::open(label.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) detail::fail_io(label, "cannot open: ", std::strerror(errno));
    struct stat st{};
    if (::fstat(fd, &st) != 0) {
      const int error = errno;
      ::close(fd);
      detail::fail_io(label, "cannot stat: ", std::strerror(error));
    }
    size_ = static_cast<std::size_t>(st.st_size);
    if (size_ > 0) {
      void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd, 0);
      const int error = errno;
      ::close(fd);
      if (p == MAP_FAILED) detail::fail_io(label, "cannot map: ", std::strerror(error));
      data_ = static_cast<const std::byte*>(p);
    } else {
      ::close(fd);
    }
    try {
      header_ = parse_safetensors_header({data_, size_}, label, limits);
    } catch (...) {
      unmap();
      throw;
    }
  }
  safetensors(const safetensors&) = delete;
  safetensors& operator=(const safetensors&) = delete;
  safetensors(safetensors&& other) noexcept
      : path_(std::move(other.path_)),
        data_(std::exchange(other.data_, nullptr)),
        size_(std::exchange(other.size_, 0)),
        header_(std::move(other.header_)) {}
  ~safetensors() { unmap(); }

  const std::filesystem::path& path() const { return path_; }
  /// The tensors in the order of their data.
  const std::vector<tensor_entry>& tensors() const { return header_.tensors; }
  const std::map<std::string, std::string, std::less<>>& metadata() const { return header_.metadata; }
  bool contains(std::string_view name) const { return lookup(name) != nullptr; }
  /// The tensor called `name`; throws naming the file and the tensor when there is none.
  const tensor_entry& at(std::string_view name) const {
    if (const tensor_entry* t = lookup(name)) return *t;
    detail::fail_io(path_.string(), "no tensor '", name, "' (the file has ", header_.tensors.size(), ")");
  }
  /// A tensor's bytes, in the mapping (valid while this object lives).
  std::span<const std::byte> bytes(const tensor_entry& t) const {
    return {data_ + header_.data_start + t.begin, static_cast<std::size_t>(t.end - t.begin)};
  }
  /// A tensor's values as floats (F16 and BF16 widened exactly), row-major.
  std::vector<float> floats(std::string_view name) const {
    const tensor_entry& t = at(name);
    const std::span<const std::byte> raw = bytes(t);
    std::vector<float> out(static_cast<std::size_t>(t.elements()));
    if (t.type == dtype::f32) {
      if (!out.empty()) std::memcpy(out.data(), raw.data(), raw.size());  // little-endian on every host brain targets
      return out;
    }
    for (std::size_t i = 0; i < out.size(); ++i) {
      std::uint16_t bits = 0;
      std::memcpy(&bits, raw.data() + 2 * i, 2);
      out[i] = t.type == dtype::f16 ? half_to_float(bits) : bfloat16_to_float(bits);
    }
    return out;
  }

 private:
  const tensor_entry* lookup(std::string_view name) const {
    for (const tensor_entry& t : header_.tensors)
      if (t.name == name) return &t;
    return nullptr;
  }
  void unmap() {
    if (data_ != nullptr) ::munmap(const_cast<std::byte*>(data_), size_);
    data_ = nullptr;
  }

  std::filesystem::path path_;
  const std::byte* data_ = nullptr;
  std::size_t size_ = 0;
  safetensors_header header_;
};

/// One tensor to write: its bytes must be elements x size_of(type), little-endian, row-major.
struct tensor_view {
  std::string name;
  io::dtype type = dtype::f32;
  std::vector<std::int64_t> shape;
  std::span<const std::byte> data;
};

/// Writes `tensors` (in this order) and `metadata` as a safetensors file, atomically: into a
/// temporary file beside `file`, flushed, then renamed over it. The header is padded with spaces
/// to a multiple of 8 bytes, as the reference writer does. Throws std::invalid_argument naming
/// the tensor for a bad name or size, std::runtime_error when the file cannot be written.
inline void write_safetensors(const std::filesystem::path& file, std::span<const tensor_view> tensors,
                              const std::map<std::string, std::string, std::less<>>& metadata = {}) {
  const std::string label = file.string();
  nlohmann::ordered_json header = nlohmann::ordered_json::object();
  if (!metadata.empty()) header["__metadata__"] = metadata;
  std::uint64_t offset = 0;
  for (const tensor_view& t : tensors) {
    if (t.name.empty() || t.name == "__metadata__" || header.contains(t.name))
      detail::fail_io(label, "tensor name '", t.name, "' is empty, reserved or repeated");
    std::uint64_t elements = 1, bytes = 0;
    for (const std::int64_t d : t.shape) {
      if (d < 0) detail::fail_io(label, "tensor '", t.name, "': negative extent ", d);
      if (__builtin_mul_overflow(elements, static_cast<std::uint64_t>(d), &elements))
        detail::fail_io(label, "tensor '", t.name, "': its shape has too many elements");
    }
    if (__builtin_mul_overflow(elements, size_of(t.type), &bytes) || bytes != t.data.size())
      detail::fail_io(label, "tensor '", t.name, "': ", t.data.size(), " bytes, but ", name_of(t.type), " of ",
                      elements, " elements needs ", elements * size_of(t.type));
    header[t.name] = {
        {"dtype", name_of(t.type)}, {"shape", t.shape}, {"data_offsets", {offset, offset + t.data.size()}}};
    offset += t.data.size();
  }
  std::string text = header.dump();
  text.append((8 - text.size() % 8) % 8, ' ');
  std::filesystem::path temporary = file;
  temporary += ".tmp." + std::to_string(::getpid());
  {
    std::ofstream out(temporary, std::ios::binary | std::ios::trunc);
    unsigned char length[8];
    for (int i = 0; i < 8; ++i)
      length[i] = static_cast<unsigned char>(static_cast<std::uint64_t>(text.size()) >> (8 * i));
    out.write(reinterpret_cast<const char*>(length), 8);
    out.write(text.data(), static_cast<std::streamsize>(text.size()));
    for (const tensor_view& t : tensors)
      out.write(reinterpret_cast<const char*>(t.data.data()), static_cast<std::streamsize>(t.data.size()));
    out.flush();
    if (!out) {
      std::error_code ignored;
      std::filesystem::remove(temporary, ignored);
      throw std::runtime_error("brain::io: " + label + ": writing " + temporary.string() + " failed");
    }
  }
  if (const int fd = ::open(temporary.c_str(), O_RDONLY | O_CLOEXEC); fd >= 0) {  // the bytes on disk before the rename
    ::fsync(fd);
    ::close(fd);
  }
  std::filesystem::rename(temporary, file);
}

}  // namespace brain::inline v0::io
