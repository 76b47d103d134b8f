// src/io/gif.cpp: median-cut palettes, GIF's LZW and the file layout (run book: gif.h).
#include "io/gif.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <initializer_list>

#include "common.h"

namespace pompc::io {

namespace {

constexpr int kCells = 32 * 32 * 32;  // histogram cells: the top 5 bits of r, g, b
constexpr int kMinDelayCs = 2;        // browsers stretch shorter GIF delays to 10 cs

int cell_of(const uint8_t* p) {
  return (p[0] >> 3) << 10 | (p[1] >> 3) << 5 | (p[2] >> 3);
}
int channel_of(int cell, int c) {
  return (cell >> (10 - 5 * c)) & 31;
}

struct Box {
  int begin, end;   // its cells: cells[begin, end)
  uint64_t pixels;  // pixels in those cells
  int lo[3], hi[3];
  int longest() const {
    int a = 0;
    for (int c = 1; c < 3; ++c)
      if (hi[c] - lo[c] > hi[a] - lo[a]) a = c;
    return a;
  }
  // The split priority: a proxy for the squared error the box's mean colour leaves.
  double score() const {
    const int side = hi[longest()] - lo[longest()];
    return end - begin < 2 ? -1.0 : double(pixels) * side * side;
  }
};

Box make_box(const std::vector<int>& cells, const std::vector<uint32_t>& count, int begin,
             int end) {
  Box b{begin, end, 0, {31, 31, 31}, {0, 0, 0}};
  for (int i = begin; i < end; ++i) {
    b.pixels += count[size_t(cells[size_t(i)])];
    for (int c = 0; c < 3; ++c) {
      b.lo[c] = std::min(b.lo[c], channel_of(cells[size_t(i)], c));
      b.hi[c] = std::max(b.hi[c], channel_of(cells[size_t(i)], c));
    }
  }
  return b;
}

// LSB-first packing of variable-width codes.
class BitWriter {
 public:
  explicit BitWriter(std::vector<uint8_t>& out) : out_(out) {}
  void put(int code, int bits) {
    acc_ |= uint32_t(code) << nbits_;
    nbits_ += bits;
    for (; nbits_ >= 8; nbits_ -= 8, acc_ >>= 8) out_.push_back(uint8_t(acc_ & 0xff));
  }
  void flush() {
    if (nbits_ > 0) out_.push_back(uint8_t(acc_ & 0xff));
    acc_ = 0;
    nbits_ = 0;
  }

 private:
  std::vector<uint8_t>& out_;
  uint32_t acc_ = 0;
  int nbits_ = 0;
};

// Appends bytes one by one (a range insert of a short list trips GCC 12's -O3 -Wstringop-overflow
// false positive).
void put_bytes(std::vector<uint8_t>& out, std::initializer_list<uint8_t> bytes) {
  for (uint8_t b : bytes) out.push_back(b);
}

void put_u16(std::vector<uint8_t>& out, int v) {
  out.push_back(uint8_t(v & 0xff));
  out.push_back(uint8_t((v >> 8) & 0xff));
}

}  // namespace

int gif_quantize(const uint8_t* rgb, size_t n, uint8_t* palette, uint8_t* index) {
  std::vector<uint32_t> count(kCells, 0);
  std::vector<std::array<uint64_t, 3>> sum(kCells, {0, 0, 0});
  for (size_t i = 0; i < n; ++i) {
    const uint8_t* p = rgb + 3 * i;
    const int k = cell_of(p);
    ++count[size_t(k)];
    for (int c = 0; c < 3; ++c) sum[size_t(k)][size_t(c)] += p[c];
  }
  std::vector<int> cells;
  for (int k = 0; k < kCells; ++k)
    if (count[size_t(k)]) cells.push_back(k);
  std::fill(palette, palette + 768, uint8_t(0));
  if (cells.empty()) return 1;  // no pixels: one black entry

  std::vector<Box> boxes{make_box(cells, count, 0, int(cells.size()))};
  while (boxes.size() < 256) {
    size_t best = 0;
    for (size_t b = 1; b < boxes.size(); ++b)
      if (boxes[b].score() > boxes[best].score()) best = b;
    const Box box = boxes[best];
    if (box.score() < 0) break;  // every box is one cell
    const int axis = box.longest();
    std::sort(cells.begin() + box.begin, cells.begin() + box.end,
              [axis](int a, int b) { return channel_of(a, axis) < channel_of(b, axis); });
    // The first cell past half of the box's pixels starts the second box (both non-empty).
    uint64_t acc = 0;
    int mid = box.begin;
    while (mid < box.end - 1 && 2 * (acc + count[size_t(cells[size_t(mid)])]) <= box.pixels)
      acc += count[size_t(cells[size_t(mid++)])];
    mid = std::clamp(mid, box.begin + 1, box.end - 1);
    boxes[best] = make_box(cells, count, box.begin, mid);
    boxes.push_back(make_box(cells, count, mid, box.end));
  }

  std::vector<uint8_t> lut(kCells, 0);
  for (size_t b = 0; b < boxes.size(); ++b) {
    uint64_t s[3] = {0, 0, 0};
    for (int i = boxes[b].begin; i < boxes[b].end; ++i) {
      const int k = cells[size_t(i)];
      lut[size_t(k)] = uint8_t(b);
      for (int c = 0; c < 3; ++c) s[c] += sum[size_t(k)][size_t(c)];
    }
    for (int c = 0; c < 3; ++c)
      palette[3 * b + size_t(c)] = uint8_t((s[c] + boxes[b].pixels / 2) / boxes[b].pixels);
  }
  for (size_t i = 0; i < n; ++i) index[i] = lut[size_t(cell_of(rgb + 3 * i))];
  return int(boxes.size());
}

std::vector<uint8_t> gif_lzw(const uint8_t* index, size_t n, int min_code_size) {
  POMPC_REQUIRE(min_code_size >= 2 && min_code_size <= 8,
                "gif_lzw: min_code_size (%d) must be in 2..8", min_code_size);
  constexpr int kMaxCode = 4095;  // 12-bit codes
  const int clear = 1 << min_code_size, eoi = clear + 1;
  // The string table: (prefix code, next index) -> code, open addressing, 0 = empty slot.
  constexpr uint32_t kSlots = 8192;
  std::vector<uint32_t> key(kSlots), code(kSlots);
  auto slot_of = [&](uint32_t k) {
    uint32_t s = (k * 2654435761u) >> 19;  // 13 bits
    while (key[s] && key[s] != k) s = (s + 1) & (kSlots - 1);
    return s;
  };

  std::vector<uint8_t> out;
  BitWriter bits(out);
  int size = min_code_size + 1, next = eoi + 1;
  auto reset = [&] {
    std::fill(key.begin(), key.end(), 0u);
    size = min_code_size + 1;
    next = eoi + 1;
  };
  // A code goes out at the current width; the width grows once `next` no longer fits, which
  // is when a decoder (one table entry behind the encoder) grows it too.
  auto emit = [&](int c) {
    bits.put(c, size);
    if (next >= (1 << size) && size < 12) ++size;
  };
  reset();
  bits.put(clear, size);
  if (n > 0) {
    int prefix = index[0];
    for (size_t i = 1; i < n; ++i) {
      const uint32_t k = (uint32_t(prefix) << 8 | index[i]) + 1;
      const uint32_t s = slot_of(k);
      if (key[s]) {
        prefix = int(code[s]);
        continue;
      }
      emit(prefix);
      if (next >= kMaxCode) {
        emit(clear);
        reset();
      } else {
        key[s] = k;
        code[s] = uint32_t(next++);
      }
      prefix = index[i];
    }
    emit(prefix);
  }
  emit(eoi);
  bits.flush();
  return out;
}

GifWriter::GifWriter(const std::string& path, int width, int height, double frame_seconds)
    : file_(path), width_(width), height_(height), frame_seconds_(frame_seconds) {
  POMPC_REQUIRE(width >= 1 && width <= 65535 && height >= 1 && height <= 65535,
                "GIF frames must be 1..65535 pixels wide and high, not %d x %d", width, height);
  POMPC_REQUIRE(frame_seconds > 0 && std::isfinite(frame_seconds),
                "GIF frame time must be positive, not %g s", frame_seconds);
  palette_.resize(768);
  index_.resize(size_t(width) * size_t(height));
  std::vector<uint8_t> head = {'G', 'I', 'F', '8', '9', 'a'};
  put_u16(head, width);
  put_u16(head, height);
  put_bytes(head, {0x70, 0, 0});  // no global table, 8-bit colour resolution
  const char app[] = "NETSCAPE2.0";
  put_bytes(head, {0x21, 0xff, 11});
  head.insert(head.end(), app, app + 11);
  put_bytes(head, {3, 1, 0, 0, 0});  // loop count 0: forever
  file_.write(head.data(), head.size());
}

void GifWriter::add_frame(const uint8_t* rgb) {
  const int64_t start_cs = std::llround(double(frames_in_++) * frame_seconds_ * 100.0);
  if (held_) {
    if (start_cs - held_start_cs_ < kMinDelayCs) return;
    write_held(int(start_cs - held_start_cs_));
  }
  gif_quantize(rgb, index_.size(), palette_.data(), index_.data());
  held_ = true;
  held_start_cs_ = start_cs;
}

void GifWriter::write_held(int delay_cs) {
  block_.clear();
  put_bytes(block_, {0x21, 0xf9, 4, 1 << 2});  // graphic control, disposal 1
  put_u16(block_, std::min(delay_cs, 65535));
  put_bytes(block_, {0, 0});  // no transparent index; block end
  block_.push_back(0x2c);
  put_u16(block_, 0);
  put_u16(block_, 0);
  put_u16(block_, width_);
  put_u16(block_, height_);
  block_.push_back(0x87);  // local colour table of 2^(7+1) entries
  block_.insert(block_.end(), palette_.begin(), palette_.end());
  block_.push_back(8);  // LZW minimum code size
  const std::vector<uint8_t> lzw = gif_lzw(index_.data(), index_.size(), 8);
  for (size_t at = 0; at < lzw.size(); at += 255) {
    const size_t len = std::min<size_t>(255, lzw.size() - at);
    block_.push_back(uint8_t(len));
    block_.insert(block_.end(), lzw.begin() + long(at), lzw.begin() + long(at + len));
  }
  block_.push_back(0);
  file_.write(block_.data(), block_.size());
  ++written_;
}

void GifWriter::close() {
  if (held_) {
    const int64_t end_cs = std::llround(double(frames_in_) * frame_seconds_ * 100.0);
    write_held(int(std::max<int64_t>(kMinDelayCs, end_cs - held_start_cs_)));
    held_ = false;
  }
  const uint8_t trailer = 0x3b;
  file_.write(&trailer, 1);
  file_.commit();
}

}  // namespace pompc::io
