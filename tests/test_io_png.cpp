// src/io/png and src/io/raster: the PNG encoder against an independent reader, and the software
// rasteriser's coverage, blending and bitmap font (suite io).
//
//   build/test_emu -ts=io -tc='*png*,*raster*'
#include <doctest/doctest.h>

#include <cstring>
#include <set>
#include <string>
#include <vector>

#include "common.h"
#include "io/atomic_file.h"
#include "io/png.h"
#include "io/raster.h"
#include "png_reader.h"
#include "test_io_tmp.h"
#include "test_util.h"

using namespace pompc;
using namespace pompc::io;
using pompc::test::decode_png;
using pompc::test::error_of;

namespace {

// The pixel as 0xRRGGBB.
uint32_t hex_at(const Canvas& c, int x, int y) {
  const Rgb p = c.pixel(x, y);
  return uint32_t{p.r} << 16 | uint32_t{p.g} << 8 | p.b;
}

// The glyph of one character as the set of its lit pixels relative to the pen.
std::vector<int> glyph_pixels(char ch) {
  Canvas c(12, 16, rgb_of(0xffffff));
  c.text(2, 10, std::string(1, ch), 1, false, TextAnchor::start, false, rgb_of(0));
  std::vector<int> lit;
  for (int y = 0; y < 16; ++y)
    for (int x = 0; x < 12; ++x)
      if (hex_at(c, x, y) == 0) lit.push_back(y * 12 + x);
  return lit;
}

}  // namespace

TEST_SUITE("io") {
  TEST_CASE("png: CRC-32 and Adler-32 known answers") {
    CHECK(crc32("123456789", 9) == 0xCBF43926u);                // the standard check value
    CHECK(crc32("IEND", 4) == 0xAE426082u);                     // every PNG's last four bytes
    CHECK(crc32("6789", 4, crc32("12345", 5)) == 0xCBF43926u);  // continued
    CHECK(adler32("Wikipedia", 9) == 0x11E60398u);
    // Long input: the modulo must be taken before b overflows 32 bits.
    const std::string ones(100000, '\xff');
    uint32_t a = 1, b = 0;
    for (size_t i = 0; i < ones.size(); ++i) {
      a = (a + 255) % 65521;
      b = (b + a) % 65521;
    }
    CHECK(adler32(ones.data(), ones.size()) == (b << 16 | a));
  }

  TEST_CASE("png: an encoded image decodes to the same pixels") {
    Image img;
    img.width = 70;
    img.height = 1000;  // 211 000 filtered bytes: four stored blocks
    for (int y = 0; y < img.height; ++y)
      for (int x = 0; x < img.width; ++x) {
        img.rgb.push_back(static_cast<uint8_t>(x * 3 + y));
        img.rgb.push_back(static_cast<uint8_t>(y * 7));
        img.rgb.push_back(static_cast<uint8_t>(x ^ y));
      }
    const std::string file = encode_png(img);
    const auto png = decode_png(file);
    REQUIRE(png.error == "");
    CHECK(png.width == 70);
    CHECK(png.height == 1000);
    CHECK(png.stored_blocks == 4);
    CHECK(png.rgb == img.rgb);
    CHECK(file.size() == 8 + 25 + 12 + 2 + 4 * 5 + 211000 + 4 + 12);

    std::string flipped = file;
    flipped[file.size() / 2] ^= 0x10;  // a pixel byte inside IDAT
    CHECK(decode_png(flipped).error == "CRC mismatch in chunk IDAT");

    pompc::test::TempDir dir;
    write_png(dir.file("a.png"), img);
    CHECK(read_file(dir.file("a.png")) == file);

    Image bad = img;
    bad.rgb.pop_back();
    CHECK(error_of([&] { encode_png(bad); }).find("needs 210000") != std::string::npos);
    CHECK(error_of([&] { encode_png(Image{}); }).find("positive size") != std::string::npos);
  }

  TEST_CASE("raster: coverage, clipping and blending once per shape") {
    Canvas c(100, 60, rgb_of(0xffffff));
    c.fill_rect(10, 10, 10, 10, rgb_of(0x102030), 1.0);
    CHECK(hex_at(c, 10, 10) == 0x102030);
    CHECK(hex_at(c, 19, 19) == 0x102030);
    CHECK(hex_at(c, 20, 15) == 0xffffff);
    CHECK(hex_at(c, 9, 15) == 0xffffff);
    // Half a pixel covered: half-way blend (255 + (0 - 255) / 2 rounds to 128).
    c.fill_rect(30.5, 10, 5, 5, rgb_of(0x000000), 1.0);
    CHECK(hex_at(c, 30, 12) == 0x808080);
    CHECK(hex_at(c, 31, 12) == 0x000000);
    // Alpha 0.2 red over white, and two overlapping squares of one shape blended once.
    c.fill_polygons(
        {{{40, 10}, {50, 10}, {50, 20}, {40, 20}}, {{45, 15}, {55, 15}, {55, 25}, {45, 25}}},
        rgb_of(0xff0000), 0.2);
    CHECK(hex_at(c, 42, 12) == 0xffcccc);
    CHECK(hex_at(c, 47, 17) == 0xffcccc);  // in both squares: still one blend
    // Clipping: nothing outside the clip rectangle.
    const ClipRect clip{60, 0, 70, 60};
    c.fill_rect(55, 30, 20, 10, rgb_of(0x00ff00), 1.0, &clip);
    CHECK(hex_at(c, 59, 35) == 0xffffff);
    CHECK(hex_at(c, 60, 35) == 0x00ff00);
    CHECK(hex_at(c, 69, 35) == 0x00ff00);
    CHECK(hex_at(c, 70, 35) == 0xffffff);
    // A stroke of width 2 centred on y = 50 covers rows 49 and 50, butt ends at x = 10 and 90.
    c.stroke_polylines({{{10, 50}, {50, 50}, {90, 50}}}, 2, rgb_of(0x0000ff), 1.0);
    CHECK(hex_at(c, 30, 49) == 0x0000ff);
    CHECK(hex_at(c, 50, 50) == 0x0000ff);
    CHECK(hex_at(c, 30, 48) == 0xffffff);
    CHECK(hex_at(c, 30, 51) == 0xffffff);
    CHECK(hex_at(c, 9, 50) == 0xffffff);
    CHECK(hex_at(c, 90, 50) == 0xffffff);
    // A circle: centre covered, outside the radius not.
    c.fill_circle(80, 15, 5, rgb_of(0x000000), 1.0);
    CHECK(hex_at(c, 80, 15) == 0x000000);
    CHECK(hex_at(c, 80, 22) == 0xffffff);
    CHECK(error_of([] { Canvas(0, 10, rgb_of(0)); }).find("[1, 16384]") != std::string::npos);
  }

  TEST_CASE("raster: the bitmap font covers ASCII 32-126 with distinct glyphs") {
    std::set<std::vector<int>> seen;
    for (int ch = 33; ch <= 126; ++ch) {
      const auto lit = glyph_pixels(static_cast<char>(ch));
      CHECK_MESSAGE(!lit.empty(), "glyph '" << static_cast<char>(ch) << "' is blank");
      CHECK_MESSAGE(seen.insert(lit).second, "glyph '" << static_cast<char>(ch) << "' repeats");
    }
    CHECK(glyph_pixels(' ').empty());
    CHECK(glyph_pixels('\x01') == glyph_pixels('?'));  // outside 32-126
    CHECK(Canvas::text_width("abc", 1, false) == 17);  // 3 advances of 6, less the last gap
    CHECK(Canvas::text_width("abc", 2, false) == 34);

    // 'I' at scale 1, baseline y = 10: its top row (.###.) on y = 3, bottom row on y = 9.
    Canvas c(40, 40, rgb_of(0xffffff));
    c.text(5, 10, "I", 1, false, TextAnchor::start, false, rgb_of(0));
    CHECK(hex_at(c, 5, 3) == 0xffffff);
    CHECK(hex_at(c, 6, 3) == 0);
    CHECK(hex_at(c, 8, 3) == 0);
    CHECK(hex_at(c, 7, 6) == 0);
    CHECK(hex_at(c, 7, 9) == 0);
    CHECK(hex_at(c, 7, 10) == 0xffffff);
    // Rotated: reads upwards, the glyph's top towards -x; the anchor on its baseline.
    Canvas r(40, 40, rgb_of(0xffffff));
    r.text(20, 30, "I", 1, false, TextAnchor::start, true, rgb_of(0));
    CHECK(hex_at(r, 13, 28) == 0);         // top row, column 1 (its first lit one)
    CHECK(hex_at(r, 13, 29) == 0xffffff);  // top row, column 0
    CHECK(hex_at(r, 19, 27) == 0);         // bottom row, column 2
    CHECK(hex_at(r, 20, 27) == 0xffffff);  // below the baseline: no descender
    // End anchor: the text ends at x.
    Canvas e(40, 20, rgb_of(0xffffff));
    e.text(30, 10, "L", 1, false, TextAnchor::end, false, rgb_of(0));
    CHECK(hex_at(e, 29, 9) == 0);  // the foot of the L ends at column 29
    CHECK(hex_at(e, 25, 3) == 0);  // its stem starts 5 columns left of the end
    CHECK(hex_at(e, 30, 9) == 0xffffff);
  }
}
