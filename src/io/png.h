// src/io/png.h: an RGB image and its PNG file, written by pompc itself (no zlib).
//
// Run book
//   image                Image{width, height, rgb}: 8-bit sRGB, 3 bytes per pixel, rows top to
//                        bottom (rgb.size() == 3 * width * height).
//   file layout          the 8-byte signature, IHDR (bit depth 8, colour type 2 = RGB, no
//                        interlace), one IDAT, IEND; every chunk is length, type, data and the
//                        CRC-32 (ISO 3309, polynomial 0xEDB88320 reflected) of type + data.
//   pixel data           each row is filter byte 0 (None) then the row's RGB bytes; the rows go
//                        into a zlib stream (RFC 1950: CMF 0x78, FLG 0x01, i.e. a 32K window and
//                        no dictionary) of stored deflate blocks (RFC 1951 BTYPE 00: a header
//                        byte, LEN and its ones' complement NLEN, then at most 65535 raw bytes),
//                        the last with BFINAL set, then the Adler-32 of the raw rows. Nothing is
//                        compressed: a W x H picture takes about 3 W H bytes (640 x 420: 807 kB).
//   writing              write_png(path, image) replaces the file atomically (atomic_file.h).
//   tests                build/test_emu -ts=io -tc='*png*' (an independent reader in the test
//                        checks every CRC, the stored blocks, the Adler-32 and the pixels)
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace pompc::io {

struct Image {
  int width = 0, height = 0;
  std::vector<uint8_t> rgb;  // 3 * width * height bytes, rows top to bottom
};

// CRC-32 of n bytes continuing from `crc` (0 to start), as PNG chunks use it.
uint32_t crc32(const void* data, size_t n, uint32_t crc = 0);
// Adler-32 of n bytes continuing from `adler` (1 to start), as zlib streams end with it.
uint32_t adler32(const void* data, size_t n, uint32_t adler = 1);

// The PNG file of an image as bytes; throws when the size is empty or rgb has the wrong length.
std::string encode_png(const Image& image);
// encode_png written to path atomically.
void write_png(const std::string& path, const Image& image);

}  // namespace pompc::io
