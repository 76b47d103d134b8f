// src/io/safetensors.cpp: safetensors writer (streaming, atomic) and validating reader.
#include "io/safetensors.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>
#include <set>

#include "common.h"
#include "io/atomic_file.h"
#include "io/json.h"

static_assert(std::endian::native == std::endian::little,
              "pompc's safetensors I/O copies memory as-is: little-endian hosts only");

namespace pompc::io {

namespace {

constexpr uint64_t kMaxHeader = 100'000'000;  // the reference implementation's limit

// Rank of each dtype in the reference's Dtype enum order; the writer lays tensors out by
// descending rank (largest alignment first), then by name, as the reference does.
int dtype_rank(DType t) {
  switch (t) {
    case DType::U8:
      return 1;
    case DType::I32:
      return 9;
    case DType::U32:
      return 10;
    case DType::F32:
      return 11;
    case DType::F64:
      return 12;
    case DType::I64:
      return 13;
    case DType::U64:
      return 14;
  }
  return 0;
}

constexpr const char* kDtypeList = "F32, F64, I32, I64, U8, U32, U64";

uint64_t checked_bytes(const Shape& shape, DType t, const std::string& name) {
  const uint64_t n = shape_numel(shape);
  const uint64_t sz = dtype_size(t);
  POMPC_REQUIRE(n <= UINT64_MAX / sz, "tensor %s: shape %s is too large", name.c_str(),
                shape_str(shape).c_str());
  return n * sz;
}

}  // namespace

size_t dtype_size(DType t) {
  switch (t) {
    case DType::F32:
      return 4;
    case DType::F64:
      return 8;
    case DType::I32:
      return 4;
    case DType::I64:
      return 8;
    case DType::U8:
      return 1;
    case DType::U32:
      return 4;
    case DType::U64:
      return 8;
  }
  return 0;
}

const char* dtype_name(DType t) {
  switch (t) {
    case DType::F32:
      return "F32";
    case DType::F64:
      return "F64";
    case DType::I32:
      return "I32";
    case DType::I64:
      return "I64";
    case DType::U8:
      return "U8";
    case DType::U32:
      return "U32";
    case DType::U64:
      return "U64";
  }
  return "?";
}

bool parse_dtype(std::string_view s, DType* out) {
  static const DType all[] = {DType::F32, DType::F64, DType::I32, DType::I64,
                              DType::U8,  DType::U32, DType::U64};
  for (DType t : all)
    if (s == dtype_name(t)) {
      *out = t;
      return true;
    }
  return false;
}

std::string shape_str(const Shape& s) {
  std::string out = "[";
  for (size_t i = 0; i < s.size(); ++i) {
    if (i) out += ", ";
    out += std::to_string(s[i]);
  }
  return out + "]";
}

uint64_t shape_numel(const Shape& s) {
  uint64_t n = 1;
  for (int64_t d : s) {
    POMPC_REQUIRE(d >= 0, "shape %s has a negative dimension", shape_str(s).c_str());
    const uint64_t u = static_cast<uint64_t>(d);
    POMPC_REQUIRE(u == 0 || n <= UINT64_MAX / u, "shape %s has more than 2^64 elements",
                  shape_str(s).c_str());
    n *= u;
  }
  return n;
}

// ---- writer ------------------------------------------------------------------------------------

namespace {

// Indices of `tensors` in the order their bytes are laid out.
std::vector<size_t> layout_order(const std::vector<TensorView>& tensors) {
  std::vector<size_t> order(tensors.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) {
    const int ra = dtype_rank(tensors[a].dtype), rb = dtype_rank(tensors[b].dtype);
    if (ra != rb) return ra > rb;
    return tensors[a].name < tensors[b].name;
  });
  return order;
}

}  // namespace

std::string safetensors_header(const std::vector<TensorView>& tensors, const Metadata& metadata,
                               std::vector<std::pair<uint64_t, uint64_t>>* offsets) {
  std::set<std::string_view> names;
  for (const TensorView& t : tensors) {
    POMPC_REQUIRE(!t.name.empty(), "a tensor to save has an empty name");
    POMPC_REQUIRE(t.name != "__metadata__", "a tensor cannot be named __metadata__");
    POMPC_REQUIRE(names.insert(t.name).second, "tensor name %s appears twice in one save",
                  t.name.c_str());
  }
  const std::vector<size_t> order = layout_order(tensors);
  std::vector<std::pair<uint64_t, uint64_t>> offs(tensors.size());
  uint64_t at = 0;
  for (size_t i : order) {
    const uint64_t n = checked_bytes(tensors[i].shape, tensors[i].dtype, tensors[i].name);
    POMPC_REQUIRE(n == 0 || tensors[i].data != nullptr, "tensor %s has no data pointer",
                  tensors[i].name.c_str());
    offs[i] = {at, at + n};
    at += n;
  }
  std::string js = "{";
  bool first = true;
  if (!metadata.empty()) {
    js += "\"__metadata__\":{";
    for (const auto& [k, v] : metadata) {
      if (!first) js += ',';
      first = false;
      json::append_string(js, k);
      js += ':';
      json::append_string(js, v);
    }
    js += '}';
    first = false;
  }
  for (size_t i : order) {
    const TensorView& t = tensors[i];
    if (!first) js += ',';
    first = false;
    json::append_string(js, t.name);
    js += ":{\"dtype\":\"";
    js += dtype_name(t.dtype);
    js += "\",\"shape\":[";
    for (size_t d = 0; d < t.shape.size(); ++d) {
      if (d) js += ',';
      js += std::to_string(t.shape[d]);
    }
    js += "],\"data_offsets\":[" + std::to_string(offs[i].first) + "," +
          std::to_string(offs[i].second) + "]}";
  }
  js += '}';
  js.append((8 - js.size() % 8) % 8, ' ');
  std::string out(8, '\0');
  uint64_t n = js.size();
  for (int b = 0; b < 8; ++b)
    out[static_cast<size_t>(b)] = static_cast<char>((n >> (8 * b)) & 0xff);
  out += js;
  if (offsets) *offsets = std::move(offs);
  return out;
}

void save_safetensors(const std::string& path, const std::vector<TensorView>& tensors,
                      const Metadata& metadata) {
  std::vector<std::pair<uint64_t, uint64_t>> offs;
  const std::string header = safetensors_header(tensors, metadata, &offs);
  AtomicWriter w(path);
  w.write(header);
  for (size_t i : layout_order(tensors))
    if (offs[i].second > offs[i].first)
      w.write(tensors[i].data, static_cast<size_t>(offs[i].second - offs[i].first));
  w.commit();
}

// ---- reader ------------------------------------------------------------------------------------

namespace {

void pread_all(int fd, void* dst, size_t n, uint64_t at, const std::string& path) {
  char* p = static_cast<char*>(dst);
  while (n > 0) {
    const ssize_t r = ::pread(fd, p, n, static_cast<off_t>(at));
    if (r < 0) {
      if (errno == EINTR) continue;
      const int e = errno;
      throw Error(strfmt("reading %s at byte %llu failed: %s", path.c_str(),
                         static_cast<unsigned long long>(at), std::strerror(e)));
    }
    POMPC_REQUIRE(r > 0, "%s ended at byte %llu while reading (the file shrank or is truncated)",
                  path.c_str(), static_cast<unsigned long long>(at));
    p += r;
    n -= static_cast<size_t>(r);
    at += static_cast<uint64_t>(r);
  }
}

}  // namespace

SafetensorsFile::SafetensorsFile(const std::string& path) : path_(path) {
  fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd_ < 0) {
    const int e = errno;
    throw Error(strfmt("cannot open safetensors file %s: %s", path.c_str(), std::strerror(e)));
  }
  try {
    struct stat st;
    POMPC_REQUIRE(::fstat(fd_, &st) == 0, "cannot stat %s: %s", path.c_str(), std::strerror(errno));
    file_size_ = static_cast<uint64_t>(st.st_size);
    const char* p = path.c_str();
    POMPC_REQUIRE(file_size_ >= 8,
                  "%s is %llu bytes, too short to be a safetensors file (it starts with an "
                  "8-byte header length): truncated or not a checkpoint",
                  p, static_cast<unsigned long long>(file_size_));
    unsigned char len[8];
    pread_all(fd_, len, 8, 0, path);
    uint64_t n = 0;
    for (int b = 7; b >= 0; --b) n = (n << 8) | len[b];
    POMPC_REQUIRE(n <= kMaxHeader,
                  "%s: header length %llu is over the 100 MB limit: not a safetensors file, or "
                  "its first 8 bytes are corrupted",
                  p, static_cast<unsigned long long>(n));
    POMPC_REQUIRE(8 + n <= file_size_,
                  "%s: header length %llu goes beyond the end of the file (%llu bytes): the file "
                  "is truncated or not a safetensors file",
                  p, static_cast<unsigned long long>(n),
                  static_cast<unsigned long long>(file_size_));
    data_start_ = 8 + n;
    std::string text(static_cast<size_t>(n), '\0');
    pread_all(fd_, text.data(), text.size(), 8, path);

    json::Value root;
    try {
      root = json::parse(text, 8);
    } catch (const Error& e) {
      throw Error(
          strfmt("%s: corrupted safetensors header: %s (byte positions count from the "
                 "start of the file)",
                 p, e.what()));
    }
    POMPC_REQUIRE(root.kind == json::Value::Kind::Object,
                  "%s: the safetensors header must be a JSON object, found %s", p,
                  json::kind_name(root.kind));

    for (const auto& [name, v] : root.members) {
      if (name == "__metadata__") {
        POMPC_REQUIRE(v.kind == json::Value::Kind::Object,
                      "%s: __metadata__ must be an object of strings, found %s", p,
                      json::kind_name(v.kind));
        for (const auto& [k, mv] : v.members) {
          POMPC_REQUIRE(mv.kind == json::Value::Kind::String,
                        "%s: metadata value of \"%s\" must be a string, found %s", p, k.c_str(),
                        json::kind_name(mv.kind));
          metadata_[k] = mv.text;
        }
        continue;
      }
      const char* tn = name.c_str();
      POMPC_REQUIRE(v.kind == json::Value::Kind::Object,
                    "%s: header entry for tensor %s must be an object, found %s", p, tn,
                    json::kind_name(v.kind));
      for (const auto& m : v.members)
        POMPC_REQUIRE(m.first == "dtype" || m.first == "shape" || m.first == "data_offsets",
                      "%s: tensor %s has an unknown field \"%s\" (expected dtype, shape, "
                      "data_offsets)",
                      p, tn, m.first.c_str());
      const json::Value* dt = v.find("dtype");
      const json::Value* sh = v.find("shape");
      const json::Value* off = v.find("data_offsets");
      POMPC_REQUIRE(dt && sh && off, "%s: tensor %s lacks %s", p, tn,
                    !dt   ? "\"dtype\""
                    : !sh ? "\"shape\""
                          : "\"data_offsets\"");
      TensorInfo info;
      info.name = name;
      POMPC_REQUIRE(dt->kind == json::Value::Kind::String, "%s: tensor %s: dtype must be a string",
                    p, tn);
      POMPC_REQUIRE(parse_dtype(dt->text, &info.dtype),
                    "%s: tensor %s has unknown dtype \"%s\" (pompc reads %s)", p, tn,
                    dt->text.c_str(), kDtypeList);
      POMPC_REQUIRE(sh->kind == json::Value::Kind::Array, "%s: tensor %s: shape must be an array",
                    p, tn);
      for (const json::Value& d : sh->items) {
        const uint64_t u = json::as_u64(d, strfmt("%s: tensor %s: a shape dimension", p, tn));
        POMPC_REQUIRE(u <= static_cast<uint64_t>(INT64_MAX), "%s: tensor %s: dimension too large",
                      p, tn);
        info.shape.push_back(static_cast<int64_t>(u));
      }
      POMPC_REQUIRE(off->kind == json::Value::Kind::Array && off->items.size() == 2,
                    "%s: tensor %s: data_offsets must be an array [begin, end]", p, tn);
      info.begin = json::as_u64(off->items[0], strfmt("%s: tensor %s: data_offsets begin", p, tn));
      info.end = json::as_u64(off->items[1], strfmt("%s: tensor %s: data_offsets end", p, tn));
      tensors_.push_back(std::move(info));
    }

    // Offsets: each tensor's byte count matches its shape and dtype, the tensors tile the data
    // section exactly (no overlap, no hole, nothing after the last one).
    const uint64_t data_size = file_size_ - data_start_;
    std::vector<const TensorInfo*> by_offset;
    for (const TensorInfo& t : tensors_) by_offset.push_back(&t);
    std::sort(by_offset.begin(), by_offset.end(), [](const TensorInfo* a, const TensorInfo* b) {
      return a->begin != b->begin ? a->begin < b->begin : a->end < b->end;
    });
    uint64_t prev_end = 0;
    const TensorInfo* prev = nullptr;
    for (const TensorInfo* t : by_offset) {
      const char* tn = t->name.c_str();
      const auto b = static_cast<unsigned long long>(t->begin);
      const auto e = static_cast<unsigned long long>(t->end);
      POMPC_REQUIRE(t->end >= t->begin,
                    "%s: tensor %s has data_offsets [%llu, %llu] with end < "
                    "begin",
                    p, tn, b, e);
      const uint64_t want = checked_bytes(t->shape, t->dtype, t->name);
      POMPC_REQUIRE(t->nbytes() == want,
                    "%s: tensor %s has data_offsets [%llu, %llu] (%llu bytes) but shape %s of %s "
                    "needs %llu bytes",
                    p, tn, b, e, static_cast<unsigned long long>(t->nbytes()),
                    shape_str(t->shape).c_str(), dtype_name(t->dtype),
                    static_cast<unsigned long long>(want));
      POMPC_REQUIRE(t->end <= data_size,
                    "%s: tensor %s has data_offsets [%llu, %llu] but the file holds only %llu "
                    "bytes of data: the file is truncated",
                    p, tn, b, e, static_cast<unsigned long long>(data_size));
      POMPC_REQUIRE(t->begin >= prev_end,
                    "%s: tensors %s [%llu, %llu) and %s [%llu, %llu) overlap: corrupted header", p,
                    prev ? prev->name.c_str() : "",
                    prev ? static_cast<unsigned long long>(prev->begin) : 0ull,
                    static_cast<unsigned long long>(prev_end), tn, b, e);
      POMPC_REQUIRE(t->begin == prev_end,
                    "%s: data bytes [%llu, %llu) before tensor %s belong to no tensor: corrupted "
                    "header",
                    p, static_cast<unsigned long long>(prev_end), b, tn);
      prev_end = t->end;
      prev = t;
    }
    POMPC_REQUIRE(prev_end == data_size,
                  "%s: %llu bytes follow the last tensor (the data section is %llu bytes, the "
                  "tensors cover %llu): corrupted file",
                  p, static_cast<unsigned long long>(data_size - prev_end),
                  static_cast<unsigned long long>(data_size),
                  static_cast<unsigned long long>(prev_end));
    std::sort(tensors_.begin(), tensors_.end(),
              [](const TensorInfo& a, const TensorInfo& b) { return a.name < b.name; });
  } catch (...) {
    ::close(fd_);
    fd_ = -1;
    throw;
  }
}

SafetensorsFile::~SafetensorsFile() {
  if (fd_ >= 0) ::close(fd_);
}

const TensorInfo* SafetensorsFile::find(std::string_view name) const {
  auto it = std::lower_bound(tensors_.begin(), tensors_.end(), name,
                             [](const TensorInfo& t, std::string_view n) { return t.name < n; });
  return it != tensors_.end() && it->name == name ? &*it : nullptr;
}

const TensorInfo& SafetensorsFile::at(std::string_view name) const {
  const TensorInfo* t = find(name);
  POMPC_REQUIRE(t != nullptr, "%s has no tensor named %.*s", path_.c_str(),
                static_cast<int>(name.size()), name.data());
  return *t;
}

const std::string& SafetensorsFile::meta(const std::string& key) const {
  auto it = metadata_.find(key);
  POMPC_REQUIRE(it != metadata_.end(), "%s has no metadata entry \"%s\"", path_.c_str(),
                key.c_str());
  return it->second;
}

void SafetensorsFile::check_dtype(const TensorInfo& info, DType want) const {
  POMPC_REQUIRE(info.dtype == want, "%s: tensor %s has dtype %s, expected %s", path_.c_str(),
                info.name.c_str(), dtype_name(info.dtype), dtype_name(want));
}

void SafetensorsFile::read(const TensorInfo& info, void* dst, size_t dst_bytes) const {
  POMPC_REQUIRE(dst_bytes == info.nbytes(),
                "%s: tensor %s is %llu bytes (%s %s), the destination holds %zu", path_.c_str(),
                info.name.c_str(), static_cast<unsigned long long>(info.nbytes()),
                dtype_name(info.dtype), shape_str(info.shape).c_str(), dst_bytes);
  if (dst_bytes == 0) return;
  pread_all(fd_, dst, dst_bytes, data_start_ + info.begin, path_);
}

void SafetensorsFile::read_part(const TensorInfo& info, uint64_t offset, void* dst,
                                size_t bytes) const {
  POMPC_REQUIRE(offset <= info.nbytes() && bytes <= info.nbytes() - offset,
                "%s: bytes [%llu, %llu) are outside tensor %s (%llu bytes)", path_.c_str(),
                static_cast<unsigned long long>(offset),
                static_cast<unsigned long long>(offset + bytes), info.name.c_str(),
                static_cast<unsigned long long>(info.nbytes()));
  if (bytes == 0) return;
  pread_all(fd_, dst, bytes, data_start_ + info.begin + offset, path_);
}

// ---- model check -------------------------------------------------------------------------------

void check_tensors(const SafetensorsFile& file, const std::vector<ExpectedTensor>& expected,
                   const std::string& hint) {
  std::vector<std::string> problems;
  std::set<std::string_view> known;
  for (const ExpectedTensor& want : expected) {
    known.insert(want.name);
    const char* n = want.name.c_str();
    const TensorInfo* got = file.find(want.name);
    if (!got) {
      problems.push_back(strfmt("checkpoint is missing tensor %s (the model expects %s %s)", n,
                                dtype_name(want.dtype), shape_str(want.shape).c_str()));
      continue;
    }
    if (got->shape != want.shape)
      problems.push_back(strfmt("checkpoint tensor %s has shape %s, the model expects %s%s%s", n,
                                shape_str(got->shape).c_str(), shape_str(want.shape).c_str(),
                                hint.empty() ? "" : ": ", hint.c_str()));
    if (got->dtype != want.dtype)
      problems.push_back(strfmt("checkpoint tensor %s has dtype %s, the model expects %s", n,
                                dtype_name(got->dtype), dtype_name(want.dtype)));
  }
  for (const TensorInfo& t : file.tensors())
    if (!known.count(t.name))
      problems.push_back(strfmt("checkpoint has tensor %s (%s %s) that the model does not know",
                                t.name.c_str(), dtype_name(t.dtype), shape_str(t.shape).c_str()));
  if (problems.empty()) return;
  std::string msg = strfmt("%s does not fit the model (%zu problem%s):", file.path().c_str(),
                           problems.size(), problems.size() == 1 ? "" : "s");
  const size_t shown = std::min<size_t>(problems.size(), 12);
  for (size_t i = 0; i < shown; ++i) msg += "\n  " + problems[i];
  if (shown < problems.size()) msg += strfmt("\n  ... and %zu more", problems.size() - shown);
  throw Error(msg);
}

void load_tensors(const SafetensorsFile& file, const std::vector<TensorDest>& dests,
                  const std::string& hint) {
  std::vector<ExpectedTensor> expected;
  expected.reserve(dests.size());
  for (const TensorDest& d : dests) expected.push_back({d.name, d.dtype, d.shape});
  check_tensors(file, expected, hint);
  for (const TensorDest& d : dests) {
    const TensorInfo& info = file.at(d.name);
    file.read(info, d.data, static_cast<size_t>(info.nbytes()));
  }
}

}  // namespace pompc::io
