// src/io/checksum.cpp: file checksums (see checksum.h for both hashes and the content stream).
#include "io/checksum.h"

#include <algorithm>
#include <cstring>

#include "common.h"

namespace pompc::io {

namespace {

constexpr uint64_t kFnvPrime = 0x100000001b3ull;
constexpr uint64_t kP1 = 0x9e3779b185ebca87ull, kP2 = 0xc2b2ae3d27d4eb4full;

uint64_t rotl(uint64_t x, int r) {
  return (x << r) | (x >> (64 - r));
}

uint64_t load64(const unsigned char* p) {
  uint64_t w;
  std::memcpy(&w, p, 8);  // little-endian hosts only (io/safetensors.h)
  return w;
}

// One 32-byte stripe into the four lanes.
void stripe(uint64_t* lane, const unsigned char* p) {
  for (int i = 0; i < 4; ++i) lane[i] = rotl(lane[i] + load64(p + 8 * i) * kP2, 31) * kP1;
}

}  // namespace

Hasher::Hasher(Hash kind) : kind_(kind) {
  for (int i = 0; i < 4; ++i) lane_[i] = static_cast<uint64_t>(i + 1) * kP1;
}

void Hasher::update(const void* data, size_t n) {
  if (n == 0) return;
  const auto* p = static_cast<const unsigned char*>(data);
  if (kind_ == Hash::fnv1a) {
    uint64_t h = fnv_;
    for (size_t i = 0; i < n; ++i) h = (h ^ p[i]) * kFnvPrime;
    fnv_ = h;
    return;
  }
  total_ += n;
  if (tail_n_ > 0) {  // complete the partial stripe first
    const size_t k = std::min(n, 32 - tail_n_);
    std::memcpy(tail_ + tail_n_, p, k);
    tail_n_ += k;
    p += k;
    n -= k;
    if (tail_n_ < 32) return;
    stripe(lane_, tail_);
    tail_n_ = 0;
  }
  uint64_t l[4] = {lane_[0], lane_[1], lane_[2], lane_[3]};
  for (; n >= 32; p += 32, n -= 32) stripe(l, p);
  std::memcpy(lane_, l, sizeof l);
  std::memcpy(tail_, p, n);
  tail_n_ = n;
}

uint64_t Hasher::digest() const {
  if (kind_ == Hash::fnv1a) return fnv_;
  uint64_t l[4] = {lane_[0], lane_[1], lane_[2], lane_[3]};
  if (tail_n_ > 0) {
    unsigned char last[32] = {};
    std::memcpy(last, tail_, tail_n_);
    stripe(l, last);
  }
  uint64_t h = rotl(l[0], 1) + rotl(l[1], 7) + rotl(l[2], 12) + rotl(l[3], 18) + total_;
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdull;
  h ^= h >> 33;
  h *= 0xc4ceb9fe1a85ec53ull;
  h ^= h >> 33;
  return h;
}

void hash_metadata(Hasher& h, const Metadata& meta) {
  for (const auto& [k, v] : meta) {
    if (k == "checksum") continue;
    for (const std::string* s : {&k, &v}) {
      const uint64_t n = s->size();
      h.update(&n, sizeof n);
      h.update(s->data(), s->size());
    }
  }
}

std::string checksum(Hash kind, const std::vector<TensorView>& tensors, const Metadata* meta) {
  std::vector<const TensorView*> order;
  for (const TensorView& t : tensors) order.push_back(&t);
  std::sort(order.begin(), order.end(),
            [](const TensorView* a, const TensorView* b) { return a->name < b->name; });
  Hasher h(kind);
  for (const TensorView* t : order) {
    h.update(t->name.data(), t->name.size());
    const size_t bytes = shape_numel(t->shape) * dtype_size(t->dtype);
    if (bytes > 0) h.update(t->data, bytes);
  }
  if (meta) hash_metadata(h, *meta);
  return checksum_text(h.digest());
}

std::string file_checksum(const SafetensorsFile& f, Hash kind, bool with_metadata) {
  Hasher h(kind);
  std::vector<char> buf;
  for (const TensorInfo& t : f.tensors()) {
    h.update(t.name.data(), t.name.size());
    for (uint64_t at = 0; at < t.nbytes();) {
      const size_t n = static_cast<size_t>(std::min<uint64_t>(t.nbytes() - at, 16u << 20));
      buf.resize(std::max(buf.size(), n));
      f.read_part(t, at, buf.data(), n);
      h.update(buf.data(), n);
      at += n;
    }
  }
  if (with_metadata) hash_metadata(h, f.metadata());
  return checksum_text(h.digest());
}

std::string checksum_text(uint64_t h) {
  return strfmt("%016llx", static_cast<unsigned long long>(h));
}

}  // namespace pompc::io
