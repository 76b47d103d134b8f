// src/io/checksum: the file checksums of checkpoints (FNV-1a) and the replay buffer file (the
// lane hash) (suite io).
//
//   build/test_emu -ts=io -tc='*checksum*'
//
// The expected values were computed outside pompc: FNV-1a by src/tools/tdmpc2_ckpt.py's
// checksum() (the converter's own implementation of the checkpoint format), the lane hash by a
// Python transcription of the definition in src/io/checksum.h. Files on disk depend on both, so
// a change of either value is a format change, not a test to update.
#include <doctest/doctest.h>

#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "io/checksum.h"
#include "io/safetensors.h"
#include "test_io_tmp.h"

using namespace pompc::io;
using pompc::test::TempDir;

namespace {

uint64_t digest(Hash kind, const std::string& s) {
  Hasher h(kind);
  h.update(s.data(), s.size());
  return h.digest();
}

std::string bytes_0_to(size_t n) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) s[i] = static_cast<char>(i);
  return s;
}

}  // namespace

TEST_SUITE("io") {
  TEST_CASE("checksum: FNV-1a and the lane hash give their defined values") {
    CHECK(digest(Hash::fnv1a, "") == 0xcbf29ce484222325ull);
    CHECK(digest(Hash::fnv1a, "a") == 0xaf63dc4c8601ec8cull);
    CHECK(digest(Hash::fnv1a, "foobar") == 0x85944171f73967e8ull);
    // Prefixes of the bytes 0, 1, ..., 99: empty, a partial stripe, one stripe, more.
    const std::string s = bytes_0_to(100);
    const std::pair<size_t, uint64_t> lanes[] = {
        {0, 0xfbabaa98a52bc2deull},  {1, 0x5c29cbf93ca78745ull},  {31, 0x29d05d4663275cf2ull},
        {32, 0x8ababa5e1cb9bfa9ull}, {33, 0xa8e42c596e73334eull}, {100, 0xffe05d242270bbd3ull}};
    for (const auto& [n, want] : lanes) {
      CAPTURE(n);
      CHECK(digest(Hash::lanes, s.substr(0, n)) == want);
    }
  }

  TEST_CASE("checksum: a stream fed in pieces hashes as in one piece") {
    const std::string s = bytes_0_to(200);
    for (Hash kind : {Hash::fnv1a, Hash::lanes}) {
      const uint64_t whole = digest(kind, s);
      for (size_t a = 0; a <= s.size(); a += 7)
        for (size_t b = a; b <= s.size(); b += 13) {
          Hasher h(kind);
          h.update(s.data(), a);
          h.update(s.data() + a, b - a);
          CHECK(h.digest() == digest(kind, s.substr(0, b)));  // digest() mid-stream
          h.update(s.data() + b, s.size() - b);
          REQUIRE(h.digest() == whole);
        }
    }
  }

  TEST_CASE("checksum: every single-bit flip and byte change changes the result") {
    std::mt19937_64 rng(3);
    std::string s(203, '\0');  // not a multiple of 32: the zero-padded last stripe too
    for (char& c : s) c = static_cast<char>(rng());
    for (Hash kind : {Hash::fnv1a, Hash::lanes}) {
      const uint64_t h0 = digest(kind, s);
      for (size_t i = 0; i < s.size(); ++i)
        for (int v = 1; v < 256; ++v) {
          std::string t = s;
          t[i] = static_cast<char>(t[i] ^ v);
          if (digest(kind, t) == h0) FAIL("byte " << i << " ^ " << v << " left the hash as it was");
        }
      // A zero byte more or less (the padding of the last stripe is zeros too).
      CHECK(digest(kind, s + std::string(1, '\0')) != h0);
      CHECK(digest(kind, s.substr(0, s.size() - 1)) != h0);
    }
  }

  TEST_CASE("checksum: of tensors to write equals the file's; metadata but \"checksum\" counted") {
    const float b[3] = {1, 2, 3};
    const uint8_t a[5] = {1, 2, 3, 4, 5};
    const std::vector<TensorView> t = {
        {"b", DType::F32, {3}, b}, {"a", DType::U8, {5}, a}, {"e", DType::F32, {0}, nullptr}};
    Metadata meta = {{"format", "x"}, {"checksum", "ignored"}, {"k", "v"}};
    // tdmpc2_ckpt.py's checksum() (format 2 with metadata, format 1 without) and the lane hash.
    CHECK(checksum(Hash::fnv1a, t, &meta) == "6b4723578320e024");
    CHECK(checksum(Hash::fnv1a, t, nullptr) == "435bf0bdf2870ae9");
    CHECK(checksum(Hash::lanes, t, &meta) == "0000235e7ec452e5");
    CHECK(checksum(Hash::lanes, t, nullptr) == "bd547081709c9fcf");

    TempDir dir;
    const std::string p = dir.file("x.safetensors");
    save_safetensors(p, t, meta);
    const SafetensorsFile f(p);
    for (Hash kind : {Hash::fnv1a, Hash::lanes})
      for (bool with_meta : {false, true})
        CHECK(file_checksum(f, kind, with_meta) == checksum(kind, t, with_meta ? &meta : nullptr));
    // The "checksum" entry itself is not hashed; every other entry is.
    meta["checksum"] = "something else";
    CHECK(checksum(Hash::lanes, t, &meta) == "0000235e7ec452e5");
    meta["k"] = "w";
    CHECK(checksum(Hash::lanes, t, &meta) != "0000235e7ec452e5");
  }
}
