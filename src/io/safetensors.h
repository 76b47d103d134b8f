// src/io/safetensors.h: read and write safetensors files (checkpoints, the replay buffer file).
//
// Run book
//   format               bytes 0..7: N, little-endian uint64; bytes 8..8+N: a UTF-8 JSON object
//                          {"__metadata__": {"key": "string", ...},
//                           "<name>": {"dtype": "F32", "shape": [d0, d1, ...],
//                                      "data_offsets": [begin, end]}, ...}
//                        padded with spaces to a multiple of 8; then the data: tensor bytes,
//                        little-endian, row-major, [begin, end) relative to byte 8 + N. This is
//                        the format of huggingface/safetensors (Python `safetensors.numpy` /
//                        `safetensors.torch` read pompc files and pompc reads theirs).
//   dtypes               F32 F64 I32 I64 U8 U32 U64. A shape [] is a scalar (1 element); a shape
//                        with a 0 is an empty tensor (0 bytes, begin == end).
//   writing              save_safetensors(path, tensors, metadata): compact JSON, "__metadata__"
//                        first, tensors laid out as the reference does (by dtype alignment,
//                        largest first, then by name; no gaps), the header padded with spaces.
//                        The bytes are streamed from the caller's host memory (no second copy),
//                        through AtomicWriter: `<path>.tmp.<pid>`, fsync, rename, fsync of the
//                        directory, so an interrupted save never damages the previous file.
//   reading              SafetensorsFile(path) reads and validates the header only (a few KB);
//                        read(name, dst, bytes) preads one tensor into caller memory
//                        (read_part a piece of one). Refused,
//                        with a message naming the problem: a file shorter than 8 bytes; a header
//                        length beyond the file or above 100 MB; a JSON syntax error (file byte
//                        position); a non-object entry, unknown or missing fields; an unknown
//                        dtype; a negative or non-integer dimension; data_offsets with
//                        end < begin, end beyond the data (truncated file), overlapping another
//                        tensor, leaving a hole, or holding a byte count != prod(shape) * dtype
//                        size; bytes after the last tensor; non-string metadata values.
//   checking a model     check_tensors(file, expected, hint) compares the file with the table
//                        of tensors the model expects and lists every missing tensor, unknown
//                        tensor, dtype or shape mismatch in one error, e.g.
//                          checkpoint tensor _dynamics.0.weight has shape [512, 550], the model
//                          expects [512, 545]: was it trained with another task or model_size?
//                        load_tensors(file, dests, hint) checks, then reads each into its buffer.
//   metadata             strings only (config lines, step counters, RNG state, pompc version):
//                        pass numbers as decimal text.
//   checksums            io/checksum.h: what checkpoints and the replay buffer file record in
//                        their metadata ("checksum") and check before use.
//   endianness           little-endian hosts only (static_assert): the bytes are the memory.
//   tests                build/test_emu -ts=io -tc='*safetensors*'
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

namespace pompc::io {

enum class DType : uint8_t { F32, F64, I32, I64, U8, U32, U64 };

size_t dtype_size(DType t);
const char* dtype_name(DType t);                   // "F32", ...
bool parse_dtype(std::string_view s, DType* out);  // false for names pompc does not read

// The DType of a C++ element type (read_vector<T> checks against it).
template <class T>
constexpr DType dtype_of() {
  static_assert(std::is_same_v<T, float> || std::is_same_v<T, double> ||
                    std::is_same_v<T, int32_t> || std::is_same_v<T, int64_t> ||
                    std::is_same_v<T, uint8_t> || std::is_same_v<T, uint32_t> ||
                    std::is_same_v<T, uint64_t>,
                "no safetensors dtype for this type");
  if constexpr (std::is_same_v<T, float>) return DType::F32;
  if constexpr (std::is_same_v<T, double>) return DType::F64;
  if constexpr (std::is_same_v<T, int32_t>) return DType::I32;
  if constexpr (std::is_same_v<T, int64_t>) return DType::I64;
  if constexpr (std::is_same_v<T, uint8_t>) return DType::U8;
  if constexpr (std::is_same_v<T, uint32_t>) return DType::U32;
  return DType::U64;
}

using Shape = std::vector<int64_t>;
using Metadata = std::map<std::string, std::string>;

std::string shape_str(const Shape& s);  // "[512, 545]", "[]" for a scalar
uint64_t shape_numel(const Shape& s);   // 1 for a scalar; throws on overflow or a negative dim

// A tensor to write: `data` points to numel(shape) * dtype_size(dtype) bytes of host memory
// (may be null for an empty tensor).
struct TensorView {
  std::string name;
  DType dtype;
  Shape shape;
  const void* data;
};

// Writes a safetensors file atomically (see the run book). Names must be unique, non-empty and
// not "__metadata__".
void save_safetensors(const std::string& path, const std::vector<TensorView>& tensors,
                      const Metadata& metadata = {});

// The header bytes (8-byte length + padded JSON) save_safetensors writes for these tensors, and
// each tensor's [begin, end) offsets in the same order as `tensors`.
std::string safetensors_header(const std::vector<TensorView>& tensors, const Metadata& metadata,
                               std::vector<std::pair<uint64_t, uint64_t>>* offsets);

struct TensorInfo {
  std::string name;
  DType dtype;
  Shape shape;
  uint64_t begin, end;  // relative to the start of the data
  uint64_t nbytes() const { return end - begin; }
};

// An open, validated safetensors file. Holds a file descriptor; tensor bytes are read on demand.
class SafetensorsFile {
 public:
  explicit SafetensorsFile(const std::string& path);
  ~SafetensorsFile();
  SafetensorsFile(const SafetensorsFile&) = delete;
  SafetensorsFile& operator=(const SafetensorsFile&) = delete;

  const std::string& path() const { return path_; }
  const Metadata& metadata() const { return metadata_; }
  const std::vector<TensorInfo>& tensors() const { return tensors_; }  // sorted by name
  const TensorInfo* find(std::string_view name) const;                 // nullptr when absent
  const TensorInfo& at(std::string_view name) const;                   // throws when absent
  const std::string& meta(const std::string& key) const;               // throws when absent
  uint64_t data_start() const { return data_start_; }                  // 8 + N

  // Copies one tensor's bytes into dst, which must hold exactly info.nbytes() bytes.
  void read(const TensorInfo& info, void* dst, size_t dst_bytes) const;
  void read(std::string_view name, void* dst, size_t dst_bytes) const {
    read(at(name), dst, dst_bytes);
  }
  // Copies bytes [offset, offset + bytes) of one tensor (for reading a large tensor in pieces).
  void read_part(const TensorInfo& info, uint64_t offset, void* dst, size_t bytes) const;
  // The tensor as a vector of T; its dtype must be dtype_of<T>().
  template <class T>
  std::vector<T> read_vector(std::string_view name) const {
    const TensorInfo& info = at(name);
    check_dtype(info, dtype_of<T>());
    std::vector<T> v(info.nbytes() / sizeof(T));
    read(info, v.data(), info.nbytes());
    return v;
  }

 private:
  void check_dtype(const TensorInfo& info, DType want) const;
  std::string path_;
  int fd_ = -1;
  uint64_t file_size_ = 0, data_start_ = 0;
  Metadata metadata_;
  std::vector<TensorInfo> tensors_;
};

// What a model expects to find in a checkpoint.
struct ExpectedTensor {
  std::string name;
  DType dtype;
  Shape shape;
};
// ... and where it goes.
struct TensorDest {
  std::string name;
  DType dtype;
  Shape shape;
  void* data;  // numel(shape) * dtype_size(dtype) bytes of host memory
};

inline constexpr const char* kModelMismatchHint = "was it trained with another task or model_size?";

// Throws one pompc::Error listing every missing tensor, unknown tensor and dtype or shape
// mismatch between `file` and `expected` (see the run book); `hint` ends shape-mismatch lines.
void check_tensors(const SafetensorsFile& file, const std::vector<ExpectedTensor>& expected,
                   const std::string& hint = kModelMismatchHint);
// check_tensors, then reads every tensor into its destination.
void load_tensors(const SafetensorsFile& file, const std::vector<TensorDest>& dests,
                  const std::string& hint = kModelMismatchHint);

}  // namespace pompc::io
