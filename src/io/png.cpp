// src/io/png.cpp: PNG with stored deflate blocks (see png.h).
#include "io/png.h"

#include <algorithm>
#include <array>

#include "common.h"
#include "io/atomic_file.h"

namespace pompc::io {

namespace {

const std::array<uint32_t, 256>& crc_table() {
  static const std::array<uint32_t, 256> table = [] {
    std::array<uint32_t, 256> t{};
    for (uint32_t n = 0; n < 256; ++n) {
      uint32_t c = n;
      for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      t[n] = c;
    }
    return t;
  }();
  return table;
}

void put_be32(std::string& s, uint32_t v) {
  for (int shift = 24; shift >= 0; shift -= 8) s += static_cast<char>((v >> shift) & 0xFF);
}

void put_chunk(std::string& out, const char type[5], const std::string& data) {
  put_be32(out, static_cast<uint32_t>(data.size()));
  const size_t start = out.size();
  out.append(type, 4);
  out += data;
  put_be32(out, crc32(out.data() + start, out.size() - start));
}

}  // namespace

uint32_t crc32(const void* data, size_t n, uint32_t crc) {
  const auto* p = static_cast<const uint8_t*>(data);
  const auto& table = crc_table();
  crc = ~crc;
  for (size_t i = 0; i < n; ++i) crc = table[(crc ^ p[i]) & 0xFF] ^ (crc >> 8);
  return ~crc;
}

uint32_t adler32(const void* data, size_t n, uint32_t adler) {
  const auto* p = static_cast<const uint8_t*>(data);
  uint32_t a = adler & 0xFFFF, b = adler >> 16;
  constexpr size_t kBlock = 5552;  // the most bytes before b can overflow 32 bits (zlib's NMAX)
  while (n > 0) {
    const size_t m = std::min(n, kBlock);
    for (size_t i = 0; i < m; ++i) {
      a += p[i];
      b += a;
    }
    a %= 65521;
    b %= 65521;
    p += m;
    n -= m;
  }
  return (b << 16) | a;
}

std::string encode_png(const Image& image) {
  POMPC_REQUIRE(image.width > 0 && image.height > 0, "a PNG needs a positive size, not %dx%d",
                image.width, image.height);
  const size_t row = 3 * static_cast<size_t>(image.width);
  POMPC_REQUIRE(image.rgb.size() == row * image.height,
                "image %dx%d holds %zu bytes; an RGB image of that size needs %zu", image.width,
                image.height, image.rgb.size(), row * image.height);

  std::string raw;  // the filtered rows: filter byte 0, then the row
  raw.reserve((row + 1) * image.height);
  for (int y = 0; y < image.height; ++y) {
    raw += '\0';
    raw.append(reinterpret_cast<const char*>(image.rgb.data() + y * row), row);
  }

  std::string z = {'\x78', '\x01'};  // CMF: deflate, 32K window; FLG: check bits, no dictionary
  constexpr size_t kStored = 65535;  // the most bytes a stored block holds
  for (size_t at = 0; at < raw.size(); at += kStored) {
    const size_t len = std::min(kStored, raw.size() - at);
    z += static_cast<char>(at + len == raw.size() ? 1 : 0);  // BFINAL, BTYPE 00
    const uint16_t nlen = static_cast<uint16_t>(~len);
    z += static_cast<char>(len & 0xFF);
    z += static_cast<char>(len >> 8);
    z += static_cast<char>(nlen & 0xFF);
    z += static_cast<char>(nlen >> 8);
    z.append(raw, at, len);
  }
  put_be32(z, adler32(raw.data(), raw.size()));

  std::string ihdr;
  put_be32(ihdr, static_cast<uint32_t>(image.width));
  put_be32(ihdr, static_cast<uint32_t>(image.height));
  ihdr += {'\x08', '\x02', '\0', '\0', '\0'};  // depth 8, RGB, deflate, filter set 0, no interlace

  std::string out = "\x89PNG\r\n\x1a\n";
  put_chunk(out, "IHDR", ihdr);
  put_chunk(out, "IDAT", z);
  put_chunk(out, "IEND", "");
  return out;
}

void write_png(const std::string& path, const Image& image) {
  write_file_atomic(path, encode_png(image));
}

}  // namespace pompc::io
