// src/io/checksum.h: the content checksums of pompc's safetensors files (checkpoints, the replay
// buffer file), computed when a file is written and checked before anything in it is used.
//
// Run book
//   content stream       a file's checksum is a 64-bit hash of one byte stream: every tensor in
//                        name order (the order SafetensorsFile::tensors() lists), its name's bytes
//                        then its data bytes; then, when the format covers the metadata, every
//                        metadata entry in key order except "checksum" itself, key then value,
//                        each as its byte count (uint64, little-endian) followed by its bytes.
//                        The file records it as 16 lowercase hex digits (checksum_text) in the
//                        metadata entry "checksum". checksum() hashes the tensors a writer is about
//                        to save, file_checksum() an open file (read in pieces of 16 MB), so the
//                        two agree on every intact file.
//   Hash::fnv1a          64-bit FNV-1a byte by byte (offset basis 0xcbf29ce484222325, prime
//                        0x100000001b3): checkpoints (pompc-checkpoint-2 with metadata,
//                        pompc-checkpoint-1 tensors only). Each byte is a bijective step of the
//                        state, so any change of one byte changes the result. About 0.8 GB/s
//                        (one multiply's latency per byte): fine for a 20 MB model, but 1.6 s for
//                        a 1.36 GB dog replay buffer file (reading it takes 0.1 s).
//   Hash::lanes          the replay buffer file (version 2). Defined here (not XXH64, whose
//                        round it borrows): P1 = 0x9e3779b185ebca87, P2 = 0xc2b2ae3d27d4eb4f;
//                        lanes l_i = (i + 1) P1 for i = 0..3; the stream in 32-byte stripes, a
//                        last partial stripe padded with zero bytes; stripe words w_0..w_3
//                        (little-endian uint64 at bytes 8i) update l_i = rotl(l_i + w_i P2, 31) P1;
//                        then h = rotl(l_0, 1) + rotl(l_1, 7) + rotl(l_2, 12) + rotl(l_3, 18) + n
//                        (n: the stream's byte count) and the result is murmur3's fmix64(h)
//                        (h ^= h >> 33, h *= 0xff51afd7ed558ccd, h ^= h >> 33,
//                        h *= 0xc4ceb9fe1a85ec53, h ^= h >> 33). All arithmetic mod 2^64. Each
//                        update is a bijection of its lane (for a fixed word) and of its word
//                        (for a fixed lane), the sum is a bijection of each lane given the others,
//                        fmix64 is a bijection: a change confined to one 8-byte word of the stream
//                        (any single bit or byte) always changes the result; other damage goes
//                        unnoticed with a chance of about 2^-64. Four independent lanes: the dog
//                        buffer file read and hashed in 0.18 s (7.5 GB/s), FNV-1a 1.63 s
//                        (build/bench -ts=bench -tc='*replay*' prints both).
//   tests                build/test_emu -ts=io -tc='*checksum*'
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "io/safetensors.h"

namespace pompc::io {

enum class Hash { fnv1a, lanes };

// A running hash of a byte stream (see the run book for both definitions).
class Hasher {
 public:
  explicit Hasher(Hash kind);
  void update(const void* data, size_t n);
  uint64_t digest() const;  // of the bytes so far (more may follow)

 private:
  Hash kind_;
  uint64_t fnv_ = 0xcbf29ce484222325ull;
  uint64_t lane_[4]{};
  unsigned char tail_[32]{};  // the current partial stripe (lanes)
  size_t tail_n_ = 0;
  uint64_t total_ = 0;
};

// The metadata part of the stream: every entry but "checksum", key then value, each after its
// byte count.
void hash_metadata(Hasher& h, const Metadata& meta);

// The checksum of tensors about to be written (any order: hashed in name order) and, when meta
// is not null, of their metadata; as 16 hex digits.
std::string checksum(Hash kind, const std::vector<TensorView>& tensors, const Metadata* meta);
// The checksum of an open file, with or without its metadata.
std::string file_checksum(const SafetensorsFile& f, Hash kind, bool with_metadata);

std::string checksum_text(uint64_t h);  // "%016llx"

}  // namespace pompc::io
