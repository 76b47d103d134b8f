// src/io/raster.h: a small software rasteriser for the PNG plots (filled polygons with alpha,
// stroked polylines, circles, bitmap text), written by pompc itself (no library).
//
// Run book
//   coordinates          pixels, x right and y down, pixel (i, j) covering [i, i+1) x [j, j+1)
//                        (the SVG user space of the same figure, so one display list draws both).
//   coverage             every shape is a union of polygons. Each pixel row is sampled on 4
//                        sub-rows (y + 1/8, 3/8, 5/8, 7/8); on each sub-row the even-odd spans of
//                        every polygon are merged, and a pixel gets the exact horizontal length
//                        of the merged spans inside it, so edges are anti-aliased and a shape's
//                        own overlaps (the joins of a polyline) are covered once. Colour is then
//                        blended once per shape: dst += (colour - dst) * alpha * coverage, in
//                        8-bit sRGB (no gamma), rounded to nearest.
//   shapes               fill_polygons (one call = one shape), stroke_polyline (width w: a
//                        rectangle of width w along each segment, butt ends, and a disc of
//                        diameter w at each inner vertex: SVG's stroke-linejoin="round"),
//                        fill_rect, fill_circle (a 32-gon). Every shape is clipped to the clip
//                        rectangle given with it (default: the canvas).
//   text                 a built-in 5x7 bitmap font for ASCII 32-126 (raster.cpp: 9 rows per
//                        glyph, 7 above the baseline and 2 for descenders, 5 columns, advance 6),
//                        drawn at an integer scale without anti-aliasing; bold doubles every
//                        column one pixel to the right (advance 7). Text is anchored at
//                        its baseline like SVG <text> (start, middle, end) and may be rotated by
//                        -90 degrees (reading upwards, for a y-axis label). Characters outside
//                        32-126 draw as '?'.
//   tests                build/test_emu -ts=io -tc='*raster*'
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "io/png.h"

namespace pompc::io {

struct Point {
  double x, y;
};

struct Rgb {
  uint8_t r, g, b;
};
// 0xRRGGBB as Rgb.
constexpr Rgb rgb_of(uint32_t hex) {
  return {static_cast<uint8_t>(hex >> 16), static_cast<uint8_t>(hex >> 8),
          static_cast<uint8_t>(hex)};
}

struct ClipRect {
  double x0, y0, x1, y1;  // [x0, x1) x [y0, y1)
};

enum class TextAnchor { start, middle, end };

class Canvas {
 public:
  Canvas(int width, int height, Rgb background);  // throws when a side is not in [1, 16384]

  int width() const { return image_.width; }
  int height() const { return image_.height; }
  const Image& image() const { return image_; }
  Rgb pixel(int x, int y) const;

  // Every ring is a closed polygon (its last point joins its first); the union of the rings is
  // one shape, blended once with `alpha` (0..1).
  void fill_polygons(const std::vector<std::vector<Point>>& rings, Rgb color, double alpha,
                     const ClipRect* clip = nullptr);
  // Each entry of `paths` is an open polyline; all of them are one shape.
  void stroke_polylines(const std::vector<std::vector<Point>>& paths, double width, Rgb color,
                        double alpha, const ClipRect* clip = nullptr);
  void fill_rect(double x, double y, double w, double h, Rgb color, double alpha,
                 const ClipRect* clip = nullptr);
  void fill_circle(double cx, double cy, double r, Rgb color, double alpha,
                   const ClipRect* clip = nullptr);

  // Text with its baseline anchored at (x, y); rotated reads upwards with (x, y) on its baseline.
  void text(double x, double y, const std::string& s, int scale, bool bold, TextAnchor anchor,
            bool rotated, Rgb color);
  // Width in pixels of s at this scale (the advance of every character).
  static int text_width(const std::string& s, int scale, bool bold);

 private:
  void blend(int x, int y, Rgb c, double a);
  Image image_;
  std::vector<float> cover_;  // one row of coverage, reused by every shape
};

}  // namespace pompc::io
