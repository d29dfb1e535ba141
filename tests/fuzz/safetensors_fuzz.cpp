// libFuzzer target for brain/io/safetensors.hpp: on any bytes, parse_safetensors_header either
// throws std::invalid_argument or returns a header whose tensors cover the data section exactly,
// each with dtype size x elements bytes. Anything else (a crash, another exception, an
// AddressSanitizer or UndefinedBehaviorSanitizer report, a trap below) is a bug.
//   build/release/tests/safetensors_fuzz -max_total_time=600 CORPUS_DIR tests/fuzz/safetensors_corpus

#include <brain/io/safetensors.hpp>

#include <cstddef>
#include <cstdint>

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  namespace io = brain::io;
  try {
    const io::safetensors_header header = io::parse_safetensors_header({reinterpret_cast<const std::byte*>(data), size},
                                                                       "fuzz input", {.max_header_bytes = 1 << 20});
    std::uint64_t covered = 0;
    for (const io::tensor_entry& t : header.tensors) {
      if (t.begin != covered || t.end < t.begin || t.end > header.data_size) __builtin_trap();
      if (static_cast<std::uint64_t>(t.elements()) * io::size_of(t.type) != t.end - t.begin) __builtin_trap();
      covered = t.end;
    }
    if (covered != header.data_size || header.data_start + header.data_size != size) __builtin_trap();
  } catch (const std::invalid_argument&) {
  }
  return 0;
}
