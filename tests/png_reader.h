// An independent minimal PNG reader for the tests of src/io/png and src/io/plot: it shares no
// code with the encoder. It checks the signature, every chunk's CRC-32 (computed bit by bit,
// without the encoder's table), the IHDR fields (8-bit RGB, no interlace), the zlib header, the
// stored deflate blocks (LEN against NLEN; any other block type is reported, as this reader
// does not inflate Huffman codes), the Adler-32 and the five PNG row filters.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

namespace pompc::test {

struct DecodedPng {
  std::string error;  // "" when the file is valid
  int width = 0, height = 0;
  std::vector<uint8_t> rgb;
  int stored_blocks = 0;
  int r(int x, int y) const { return rgb[3 * (static_cast<size_t>(y) * width + x)]; }
  int g(int x, int y) const { return rgb[3 * (static_cast<size_t>(y) * width + x) + 1]; }
  int b(int x, int y) const { return rgb[3 * (static_cast<size_t>(y) * width + x) + 2]; }
};

inline DecodedPng decode_png(const std::string& file) {
  DecodedPng out;
  auto u8 = [&](size_t i) { return static_cast<uint8_t>(file[i]); };
  auto be32 = [&](size_t i) {
    return uint32_t{u8(i)} << 24 | uint32_t{u8(i + 1)} << 16 | uint32_t{u8(i + 2)} << 8 | u8(i + 3);
  };
  auto fail = [&](const std::string& why) {
    out.error = why;
    return out;
  };
  if (file.compare(0, 8, "\x89PNG\r\n\x1a\n") != 0) return fail("bad signature");
  std::string idat;
  bool ihdr = false, iend = false;
  for (size_t at = 8; !iend;) {
    if (at + 12 > file.size()) return fail("truncated chunk at byte " + std::to_string(at));
    const uint32_t len = be32(at);
    if (at + 12 + len > file.size()) return fail("chunk longer than the file");
    const std::string type = file.substr(at + 4, 4), data = file.substr(at + 8, len);
    uint32_t crc = 0xFFFFFFFFu;  // bit by bit, polynomial 0xEDB88320
    for (size_t i = at + 4; i < at + 8 + len; ++i) {
      crc ^= u8(i);
      for (int k = 0; k < 8; ++k) crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1)));
    }
    if ((crc ^ 0xFFFFFFFFu) != be32(at + 8 + len)) return fail("CRC mismatch in chunk " + type);
    if (!ihdr && type != "IHDR") return fail("first chunk is " + type + ", not IHDR");
    if (type == "IHDR") {
      if (len != 13) return fail("IHDR length " + std::to_string(len));
      out.width = static_cast<int>(be32(at + 8));
      out.height = static_cast<int>(be32(at + 12));
      if (data.substr(8) != std::string("\x08\x02\0\0\0", 5))
        return fail("IHDR is not 8-bit RGB, deflate, filter set 0, no interlace");
      ihdr = true;
    } else if (type == "IDAT") {
      idat += data;
    } else if (type == "IEND") {
      iend = true;
      if (at + 12 != file.size()) return fail("bytes after IEND");
    }
    at += 12 + len;
  }
  if (idat.size() < 6) return fail("no image data");
  const uint8_t cmf = static_cast<uint8_t>(idat[0]), flg = static_cast<uint8_t>(idat[1]);
  if ((cmf & 0x0F) != 8 || (cmf * 256 + flg) % 31 != 0 || (flg & 0x20))
    return fail("bad zlib header");
  std::string raw;
  size_t p = 2;
  for (bool last = false; !last;) {
    if (p + 5 > idat.size()) return fail("truncated deflate block");
    const uint8_t head = static_cast<uint8_t>(idat[p]);
    last = head & 1;
    if (((head >> 1) & 3) != 0)
      return fail("a compressed deflate block (this reader: stored only)");
    const unsigned len = static_cast<uint8_t>(idat[p + 1]) | static_cast<uint8_t>(idat[p + 2]) << 8;
    const unsigned nlen = static_cast<uint8_t>(idat[p + 3]) | static_cast<uint8_t>(idat[p + 4])
                                                                  << 8;
    if ((len ^ 0xFFFFu) != nlen) return fail("stored block LEN/NLEN mismatch");
    if (p + 5 + len > idat.size()) return fail("stored block past the data");
    raw += idat.substr(p + 5, len);
    p += 5 + len;
    ++out.stored_blocks;
  }
  if (p + 4 != idat.size()) return fail("zlib stream does not end with the Adler-32");
  uint32_t a = 1, b = 0;
  for (char c : raw) {
    a = (a + static_cast<uint8_t>(c)) % 65521;
    b = (b + a) % 65521;
  }
  const uint32_t adler = uint32_t{static_cast<uint8_t>(idat[p])} << 24 |
                         uint32_t{static_cast<uint8_t>(idat[p + 1])} << 16 |
                         uint32_t{static_cast<uint8_t>(idat[p + 2])} << 8 |
                         static_cast<uint8_t>(idat[p + 3]);
  if (adler != (b << 16 | a)) return fail("Adler-32 mismatch");
  const size_t row = 3 * static_cast<size_t>(out.width);
  if (raw.size() != (row + 1) * out.height) return fail("image data size does not match IHDR");
  out.rgb.assign(row * out.height, 0);
  for (int y = 0; y < out.height; ++y) {
    const int filter = static_cast<uint8_t>(raw[y * (row + 1)]);
    for (size_t i = 0; i < row; ++i) {
      const int x = static_cast<uint8_t>(raw[y * (row + 1) + 1 + i]);
      const int left = i >= 3 ? out.rgb[y * row + i - 3] : 0;
      const int up = y > 0 ? out.rgb[(y - 1) * row + i] : 0;
      const int ul = i >= 3 && y > 0 ? out.rgb[(y - 1) * row + i - 3] : 0;
      int pred = 0;
      switch (filter) {
        case 0:
          break;
        case 1:
          pred = left;
          break;
        case 2:
          pred = up;
          break;
        case 3:
          pred = (left + up) / 2;
          break;
        case 4: {
          const int e = left + up - ul, pa = std::abs(e - left), pb = std::abs(e - up),
                    pc = std::abs(e - ul);
          pred = pa <= pb && pa <= pc ? left : pb <= pc ? up : ul;
          break;
        }
        default:
          return fail("unknown row filter " + std::to_string(filter));
      }
      out.rgb[y * row + i] = static_cast<uint8_t>(x + pred);
    }
  }
  return out;
}

}  // namespace pompc::test
