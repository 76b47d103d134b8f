// src/io/gif.h: animated GIF files written by pompc itself (the eval videos' format when ffmpeg
// is not installed; io/video.h chooses).
//
// Run book
//   format     GIF89a: a logical screen of W x H pixels without a global colour table; the
//              NETSCAPE2.0 application extension (loop forever); per frame a graphic control
//              extension (delay in 1/100 s, disposal 1: leave in place, no transparency), an
//              image descriptor covering the screen with its own 256-entry local colour table,
//              and LZW data (minimum code size 8, codes of 9..12 bits, a clear code when the
//              4096-entry table is full) in sub-blocks of at most 255 bytes; then the trailer.
//   palette    gif_quantize: median cut per frame over a 32 x 32 x 32 histogram (the top 5 bits
//              of each channel). The box with the largest pixels x (longest side)^2 is split at
//              its median pixel along its longest side until there are 256 boxes or every box
//              holds one histogram cell; a box's colour is the mean of its pixels' 8-bit
//              colours and every pixel takes its cell's box (no dithering, so LZW finds long
//              runs). A frame of at most 256 cells whose pixels share one colour per cell comes
//              back exactly.
//   timing     frame i passed to add_frame starts at i * frame_seconds; each written frame's
//              delay is the difference of the rounded start times in centiseconds, so the total
//              stays real time. A frame that would start less than 2 cs after the last written
//              one is dropped (browsers show delays below 2 cs as 10 cs): up to 50 frames/s.
//   streaming  one frame is held back (its delay is known when the next one arrives); the file
//              goes through AtomicWriter, so it appears whole at close() or not at all.
//   tests      build/test_emu -ts=io -tc='*gif*' (a decoder written in the test reads the files
//              back)
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "io/atomic_file.h"

namespace pompc::io {

// Median-cut colours of n RGB pixels (3n bytes): palette[3 * k + c] for the returned number of
// colours k (1..256; entries past it are 0), index[i] the colour of pixel i.
int gif_quantize(const uint8_t* rgb, size_t n, uint8_t* palette, uint8_t* index);

// GIF's variable-width LZW of n colour indices (each < 2^min_code_size, min_code_size in 2..8):
// the code stream (clear code first, end-of-information last), packed least significant bit
// first, before it is cut into sub-blocks.
std::vector<uint8_t> gif_lzw(const uint8_t* index, size_t n, int min_code_size);

class GifWriter {
 public:
  // Writes the header and loop extension into the temp file of `path`. Throws pompc::Error for a
  // size outside 1..65535 or a frame time that is not positive.
  GifWriter(const std::string& path, int width, int height, double frame_seconds);
  GifWriter(const GifWriter&) = delete;
  GifWriter& operator=(const GifWriter&) = delete;

  void add_frame(const uint8_t* rgb);  // width * height * 3 bytes, rows top to bottom
  void close();                        // the held frame, the trailer, the rename into place
  int frames_written() const { return written_; }

 private:
  void write_held(int delay_cs);

  AtomicWriter file_;
  const int width_, height_;
  const double frame_seconds_;
  int64_t frames_in_ = 0;  // add_frame calls so far
  int written_ = 0;        // frames in the file
  bool held_ = false;      // a quantized frame waits for its delay
  int64_t held_start_cs_ = 0;
  std::vector<uint8_t> palette_, index_;  // the held frame
  std::vector<uint8_t> block_;            // one frame's bytes before they go to the file
};

}  // namespace pompc::io
