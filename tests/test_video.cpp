// Eval videos. Suite io: src/io/gif and src/io/video, the GIF encoder read back by a decoder
// written here (LZW decode, frames, palettes, delays, loop) and the ffmpeg pipe through a
// stand-in script. Suite video: src/env/render (MuJoCo's offscreen renderer on headless OpenGL)
// into a GIF read back; the trainer's eval videos and pompc eval's.
//
//   build/test_emu -ts=io -tc='*gif*,*video*'
//   build/test_emu -ts=video      (with `pompc train save_video=true` and `pompc eval video=`)
#include <doctest/doctest.h>

#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <numeric>
#include <set>
#include <string>
#include <vector>

#include "common.h"
#include "env/env.h"
#include "env/render.h"
#include "io/atomic_file.h"
#include "io/gif.h"
#include "io/video.h"
#include "io/csv.h"
#include "test_io_tmp.h"
#include "train/trainer.h"
#include "test_util.h"

using namespace pompc;
using namespace pompc::io;
using pompc::test::error_of;
using pompc::test::TempDir;

namespace {

// ---- a minimal GIF decoder, from the GIF89a specification --------------------------------------

// LZW decode of a GIF code stream into at most `max_out` indices (appendix F of the spec).
std::vector<uint8_t> lzw_decode(const std::vector<uint8_t>& data, int min_code_size,
                                size_t max_out) {
  const int clear = 1 << min_code_size, eoi = clear + 1;
  std::vector<int> prefix(4096, -1), length(4096, 1);
  std::vector<uint8_t> suffix(4096), first(4096);
  for (int i = 0; i < clear; ++i) suffix[size_t(i)] = first[size_t(i)] = uint8_t(i);
  size_t bitpos = 0;
  auto read = [&](int bits) {
    int v = 0;
    for (int b = 0; b < bits; ++b, ++bitpos) {
      REQUIRE(bitpos / 8 < data.size());
      v |= ((data[bitpos / 8] >> (bitpos % 8)) & 1) << b;
    }
    return v;
  };
  std::vector<uint8_t> out;
  auto emit = [&](int code) {
    const size_t at = out.size();
    out.resize(at + size_t(length[size_t(code)]));
    for (int c = code, k = length[size_t(code)] - 1; k >= 0; c = prefix[size_t(c)], --k)
      out[at + size_t(k)] = suffix[size_t(c)];
  };
  int size = min_code_size + 1, next = eoi + 1, prev = -1;
  for (;;) {
    const int code = read(size);
    if (code == clear) {
      size = min_code_size + 1;
      next = eoi + 1;
      prev = -1;
      continue;
    }
    if (code == eoi) break;
    REQUIRE(out.size() < max_out + 1);
    if (prev < 0) {
      REQUIRE(code < clear);
      emit(code);
      prev = code;
      continue;
    }
    REQUIRE(code <= next);
    if (next < 4096) {  // the new entry: prev's string + the first index of code's string
      prefix[size_t(next)] = prev;
      suffix[size_t(next)] = code < next ? first[size_t(code)] : first[size_t(prev)];
      first[size_t(next)] = first[size_t(prev)];
      length[size_t(next)] = length[size_t(prev)] + 1;
      ++next;
      if (next == (1 << size) && size < 12) ++size;
    }
    emit(code);
    prev = code;
  }
  return out;
}

struct DecodedGif {
  int width = 0, height = 0;
  bool loops = false;
  std::vector<int> delays;                   // per frame, centiseconds
  std::vector<std::vector<uint8_t>> frames;  // RGB, rows top to bottom
  std::vector<int> palette_sizes;            // local colour table entries per frame
};

DecodedGif decode_gif(const std::string& f) {
  DecodedGif g;
  size_t at = 0;
  auto byte = [&] {
    REQUIRE(at < f.size());
    return uint8_t(f[at++]);
  };
  auto u16 = [&] {
    const int lo = byte();
    return lo | byte() << 8;
  };
  auto sub_blocks = [&] {
    std::vector<uint8_t> data;
    for (int n = byte(); n != 0; n = byte())
      for (int i = 0; i < n; ++i) data.push_back(byte());
    return data;
  };
  REQUIRE(f.compare(0, 6, "GIF89a") == 0);
  at = 6;
  g.width = u16();
  g.height = u16();
  const uint8_t screen = byte();
  at += 2;  // background colour, aspect ratio
  std::vector<uint8_t> global;
  if (screen & 0x80)
    for (int i = 0; i < 3 << ((screen & 7) + 1); ++i) global.push_back(byte());
  std::vector<uint8_t> canvas(size_t(g.width) * g.height * 3, 0);
  int delay = 0;
  for (;;) {
    const uint8_t kind = byte();
    if (kind == 0x3b) break;
    if (kind == 0x21) {
      const uint8_t label = byte();
      if (label == 0xf9) {
        REQUIRE(byte() == 4);
        const uint8_t packed = byte();
        CHECK((packed >> 2 & 7) <= 1);  // the decoder below keeps the canvas (disposal 0 or 1)
        delay = u16();
        at += 1;  // transparent index (no transparency flag is set by pompc)
        REQUIRE(byte() == 0);
      } else if (label == 0xff) {
        REQUIRE(byte() == 11);
        const std::string id = f.substr(at, 11);
        at += 11;
        const std::vector<uint8_t> d = sub_blocks();
        if (id == "NETSCAPE2.0" && d.size() == 3 && d[0] == 1) g.loops = d[1] == 0 && d[2] == 0;
      } else {
        sub_blocks();
      }
      continue;
    }
    REQUIRE(kind == 0x2c);
    const int left = u16(), top = u16(), w = u16(), h = u16();
    const uint8_t packed = byte();
    REQUIRE(left + w <= g.width);
    REQUIRE(top + h <= g.height);
    REQUIRE((packed & 0x40) == 0);  // not interlaced
    std::vector<uint8_t> table = global;
    if (packed & 0x80) {
      table.clear();
      for (int i = 0; i < 3 << ((packed & 7) + 1); ++i) table.push_back(byte());
    }
    g.palette_sizes.push_back(int(table.size() / 3));
    const int min_code_size = byte();
    const std::vector<uint8_t> idx = lzw_decode(sub_blocks(), min_code_size, size_t(w) * h);
    REQUIRE(idx.size() == size_t(w) * h);
    for (int y = 0; y < h; ++y)
      for (int x = 0; x < w; ++x) {
        const uint8_t k = idx[size_t(y) * w + x];
        REQUIRE(3 * size_t(k) + 2 < table.size());
        std::memcpy(&canvas[(size_t(top + y) * g.width + left + x) * 3], &table[3 * size_t(k)], 3);
      }
    g.frames.push_back(canvas);
    g.delays.push_back(delay);
  }
  return g;
}

// A test image: smooth ramps with a pattern (many colours), frame t shifted by t pixels.
std::vector<uint8_t> ramp_frame(int w, int h, int t) {
  std::vector<uint8_t> rgb(size_t(w) * h * 3);
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) {
      uint8_t* p = &rgb[(size_t(y) * w + x) * 3];
      p[0] = uint8_t((x + t) * 255 / (w + 8));
      p[1] = uint8_t(y * 255 / h);
      p[2] = uint8_t(((x + t) * 7 + y * 3) & 255);
    }
  return rgb;
}

// Sets an environment variable for the scope of a test, restoring it after.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const std::string& value) : name_(name) {
    const char* old = std::getenv(name);
    had_ = old != nullptr;
    if (had_) old_ = old;
    ::setenv(name, value.c_str(), 1);
  }
  ~ScopedEnv() {
    if (had_)
      ::setenv(name_, old_.c_str(), 1);
    else
      ::unsetenv(name_);
  }

 private:
  const char* name_;
  bool had_ = false;
  std::string old_;
};

void write_script(const std::string& path, const std::string& body) {
  write_file_atomic(path, "#!/bin/sh\n" + body);
  REQUIRE(::chmod(path.c_str(), 0755) == 0);
}

}  // namespace

TEST_SUITE("io") {
  TEST_CASE("gif: LZW round trip across code widths and table resets") {
    uint32_t s = 12345;
    auto rnd = [&] { return s = s * 1664525u + 1013904223u; };
    for (int min_code_size : {2, 4, 8}) {
      // Lengths around the width changes (512, 1024, 2048 entries) and several full tables.
      for (size_t n : {size_t(0), size_t(1), size_t(2), size_t(255), size_t(256), size_t(257),
                       size_t(5000), size_t(70000)}) {
        for (int pattern = 0; pattern < 3; ++pattern) {
          std::vector<uint8_t> idx(n);
          for (size_t i = 0; i < n; ++i) {
            const uint32_t r = rnd() >> 16;
            idx[i] = uint8_t(pattern == 0   ? r % (1u << min_code_size)         // noise
                             : pattern == 1 ? (i / 37) % (1u << min_code_size)  // runs
                                            : (i * i / 5 + r % 2) % (1u << min_code_size));
          }
          const std::vector<uint8_t> code = gif_lzw(idx.data(), n, min_code_size);
          CAPTURE(min_code_size);
          CAPTURE(n);
          CAPTURE(pattern);
          CHECK(lzw_decode(code, min_code_size, n) == idx);
        }
      }
    }
    CHECK(error_of([] { gif_lzw(nullptr, 0, 9); }).find("min_code_size (9) must be in 2..8") !=
          std::string::npos);
  }

  TEST_CASE("gif: frames, size, loop and delays read back; few colours exactly") {
    TempDir dir;
    const int w = 37, h = 21;  // odd sizes
    // Three frames of <= 256 colours, one colour per 5-bit cell: exact.
    std::vector<std::vector<uint8_t>> frames;
    for (int t = 0; t < 3; ++t) {
      std::vector<uint8_t> rgb(size_t(w) * h * 3);
      for (int i = 0; i < w * h; ++i) {
        const int k = (i * 13 + t * 50) % 200;  // 200 distinct colours per frame
        rgb[3 * size_t(i)] = uint8_t((k % 8) * 32 + 5);
        rgb[3 * size_t(i) + 1] = uint8_t((k / 8 % 5) * 40 + 3);
        rgb[3 * size_t(i) + 2] = uint8_t((k / 40) * 48 + 1);
      }
      frames.push_back(rgb);
    }
    const std::string p = dir.file("few.gif");
    {
      GifWriter gif(p, w, h, 0.03);
      for (const auto& f : frames) gif.add_frame(f.data());
      CHECK(!path_exists(p));  // nothing in place before close()
      gif.close();
      CHECK(gif.frames_written() == 3);
    }
    const DecodedGif g = decode_gif(read_file(p));
    CHECK(g.width == w);
    CHECK(g.height == h);
    CHECK(g.loops);
    CHECK(g.delays == std::vector<int>{3, 3, 3});
    REQUIRE(g.frames.size() == 3);
    for (int t = 0; t < 3; ++t) CHECK(g.frames[size_t(t)] == frames[size_t(t)]);
    CHECK(dir.entries() == std::vector<std::string>{"few.gif"});  // no temp file left
  }

  TEST_CASE("gif: many colours within the median-cut palette's error") {
    const int w = 96, h = 64;
    const std::vector<uint8_t> rgb = ramp_frame(w, h, 0);
    std::vector<uint8_t> palette(768), index(size_t(w) * h);
    const int colours = gif_quantize(rgb.data(), index.size(), palette.data(), index.data());
    CHECK(colours == 256);
    double sum = 0;
    int worst = 0;
    for (size_t i = 0; i < index.size(); ++i)
      for (int c = 0; c < 3; ++c) {
        const int e = std::abs(int(palette[3 * size_t(index[i]) + size_t(c)]) - rgb[3 * i + c]);
        sum += e;
        worst = std::max(worst, e);
      }
    MESSAGE("median cut of a " << w << "x" << h << " ramp: mean abs error "
                               << sum / (3.0 * index.size()) << ", max " << worst);
    // A stress case: the blue sawtooth spreads 6144 pixels over ~5000 of the 32768 cells, so
    // each of the 256 boxes spans several cells (8 levels each) along its longest side
    // (measured: mean 6.9, max 59). A rendered DMC frame does far better (test_render.cpp).
    CHECK(sum / (3.0 * index.size()) < 8.0);
    CHECK(worst < 64);
  }

  TEST_CASE("gif: real-time delays, frames under 2 cs dropped") {
    TempDir dir;
    const int w = 8, h = 6;
    const std::string p = dir.file("fast.gif");
    {
      // 10 frames of 15 ms (dog, action_repeat=1): starts 0 2 3 5 6 8 9 11 12 14 cs.
      GifWriter gif(p, w, h, 0.015);
      for (int t = 0; t < 10; ++t) gif.add_frame(ramp_frame(w, h, t).data());
      gif.close();
      CHECK(gif.frames_written() == 6);
    }
    const DecodedGif g = decode_gif(read_file(p));
    CHECK(g.delays == std::vector<int>{2, 3, 3, 3, 3, 2});
    REQUIRE(g.frames.size() == 6);
    CHECK(g.frames[0] != g.frames[1]);
    CHECK(error_of([&] {
            GifWriter(dir.file("bad.gif"), 0, 5, 0.02);
          }).find("1..65535 pixels wide and high, not 0 x 5") != std::string::npos);
    CHECK(error_of([&] {
            GifWriter(dir.file("bad.gif"), 4, 4, 0);
          }).find("frame time must be positive") != std::string::npos);
  }

  TEST_CASE("video: .gif without ffmpeg; .mp4 through the ffmpeg pipe (stand-in script)") {
    TempDir dir, bin;
    const int w = 6, h = 4;
    {
      ScopedEnv path("PATH", bin.path());  // no ffmpeg on it
      CHECK(video_extension() == "gif");
      VideoWriter v(dir.file("a.gif"), w, h, 0.02);
      CHECK(v.format() == "gif");
      for (int t = 0; t < 4; ++t) v.add_frame(ramp_frame(w, h, t).data());
      v.close();
      CHECK(v.frames() == 4);
      CHECK(decode_gif(read_file(dir.file("a.gif"))).frames.size() == 4);
      CHECK(error_of([&] {
              VideoWriter(dir.file("a.mp4"), w, h, 0.02);
            }).find("an .mp4 needs ffmpeg on PATH (Debian: apt-get install ffmpeg)") !=
            std::string::npos);
      CHECK(error_of([&] {
              VideoWriter(dir.file("a.avi"), w, h, 0.02);
            }).find("name it .mp4 (written by ffmpeg) or .gif") != std::string::npos);
    }
    // The stand-in records its arguments and copies the raw frames to its output file.
    write_script(bin.file("ffmpeg"),
                 "for a in \"$@\"; do out=\"$a\"; done\n"
                 "printf '%s\\n' \"$@\" > \"$(dirname \"$0\")/args.txt\"\n"
                 "cat > \"$out\"\n");
    ScopedEnv path("PATH", bin.path() + ":/usr/bin:/bin");
    CHECK(video_extension() == "mp4");
    std::string raw;
    {
      VideoWriter v(dir.file("b.mp4"), w, h, 0.03);
      for (int t = 0; t < 5; ++t) {
        const std::vector<uint8_t> f = ramp_frame(w, h, t);
        raw.append(reinterpret_cast<const char*>(f.data()), f.size());
        v.add_frame(f.data());
      }
      v.close();
      CHECK(v.frames() == 5);
    }
    CHECK(read_file(dir.file("b.mp4")) == raw);
    const std::string args = read_file(bin.file("args.txt"));
    CHECK(args.find("-f\nrawvideo\n-pix_fmt\nrgb24\n-s\n6x4\n-framerate\n100/3\n-i\n-\n") !=
          std::string::npos);
    CHECK(dir.entries().size() == 2);  // a.gif, b.mp4: no temp file left
    CHECK(error_of([&] {
            VideoWriter(dir.file("odd.mp4"), 5, 4, 0.02);
          }).find("needs an even width and height, not 5 x 4") != std::string::npos);

    // An ffmpeg that fails: an error with its status, no file; one that stops reading: the
    // same instead of SIGPIPE.
    write_script(bin.file("ffmpeg"), "cat > /dev/null\nexit 3\n");
    {
      VideoWriter v(dir.file("c.mp4"), w, h, 0.02);
      v.add_frame(ramp_frame(w, h, 0).data());
      CHECK(error_of([&] { v.close(); }).find("ffmpeg failed (exit status 3) after 1 frames") !=
            std::string::npos);
    }
    write_script(bin.file("ffmpeg"), "exit 4\n");
    {
      VideoWriter v(dir.file("d.mp4"), 256, 256, 0.02);  // frames larger than a pipe's buffer
      const std::vector<uint8_t> big(256 * 256 * 3, 7);
      CHECK(error_of([&] {
              for (int t = 0; t < 4; ++t) v.add_frame(big.data());
            }).find("ffmpeg stopped reading at frame") != std::string::npos);
    }
    CHECK(dir.entries().size() == 2);
  }

  TEST_CASE("video: a real ffmpeg's MP4 read back by ffprobe (when both are installed)") {
    const std::string ffprobe = find_on_path("ffprobe");
    if (find_on_path("ffmpeg").empty() || ffprobe.empty()) {
      MESSAGE(
          "ffmpeg or ffprobe not on PATH: the MP4 check needs both (Debian: apt-get install "
          "ffmpeg); the pipe itself is tested with a stand-in above");
      return;
    }
    TempDir dir;
    const int w = 32, h = 24;
    {
      VideoWriter v(dir.file("r.mp4"), w, h, 0.02);
      for (int t = 0; t < 10; ++t) v.add_frame(ramp_frame(w, h, t).data());
      v.close();
    }
    const std::string cmd = ffprobe +
                            " -v error -count_frames -select_streams v:0 -show_entries "
                            "stream=width,height,nb_read_frames -of csv=p=0 " +
                            dir.file("r.mp4");
    FILE* p = ::popen(cmd.c_str(), "r");
    REQUIRE(p);
    char line[256] = "";
    CHECK(std::fgets(line, sizeof line, p) != nullptr);
    CHECK(::pclose(p) == 0);
    CHECK(std::string(line).rfind("32,24,10", 0) == 0);
  }
}

TEST_SUITE("video") {
  TEST_CASE("render: cartpole-swingup frames to a GIF and back") {
    const std::string platform = env::Renderer::platform();
    MESSAGE("OpenGL platform: " << platform);
    env::Env e("cartpole-swingup", 1);
    const int w = 128, h = 96;  // not square: a swapped width and height would show
    env::Renderer r(e, w, h);
    CHECK(r.camera() == 0);
    TempDir dir;
    const std::string path = dir.file("cartpole.gif");
    std::vector<std::vector<uint8_t>> frames;
    std::vector<float> obs(size_t(e.obs_dim()));
    std::vector<uint8_t> rgb(size_t(w) * h * 3);
    double render_s = 0;
    {
      const double frame_s = 0.01 * e.action_repeat();  // cartpole's control step x repeat
      VideoWriter v(path, w, h, frame_s);
      e.reset(obs.data());
      for (int t = 0; t <= 10; ++t) {
        if (t > 0) {
          const float a = t % 4 < 2 ? 1.0f : -1.0f;  // push the cart back and forth
          e.step(&a, obs.data());
        }
        const auto t0 = std::chrono::steady_clock::now();
        r.render(e, rgb.data());
        if (t > 0)  // the first frame also compiles llvmpipe's shaders
          render_s += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        frames.push_back(rgb);
        v.add_frame(rgb.data());
      }
      v.close();
      CHECK(v.frames() == 11);
    }
    MESSAGE("render: " << 1e3 * render_s / 10 << " ms per " << w << "x" << h << " frame");
    const DecodedGif g = decode_gif(read_file(path));
    CHECK(g.width == w);
    CHECK(g.height == h);
    REQUIRE(g.frames.size() == 11);
    CHECK(g.delays == std::vector<int>(11, 2));
    for (size_t t = 0; t < frames.size(); ++t) {
      std::set<int> colours;
      double err = 0;
      for (size_t i = 0; i < frames[t].size(); i += 3)
        colours.insert(frames[t][i] << 16 | frames[t][i + 1] << 8 | frames[t][i + 2]);
      for (size_t i = 0; i < frames[t].size(); ++i) err += std::abs(g.frames[t][i] - frames[t][i]);
      CAPTURE(t);
      CHECK(colours.size() > 100);  // sky, floor, rail, cart and pole, shaded
      // The palette's error on a rendered frame (measured ~1.1 levels at 384 x 384).
      CHECK(err / double(frames[t].size()) < 3.0);
      if (t > 0) CHECK(g.frames[t] != g.frames[t - 1]);  // the cart and the pole move
    }
  }

  TEST_CASE("render: never changes the Env; errors name the fix") {
    env::Env a("walker-walk", 3), b("walker-walk", 3);
    env::Renderer r(a, 64, 48);
    std::vector<float> oa(size_t(a.obs_dim())), ob(oa.size()), act(size_t(a.act_dim()));
    std::vector<uint8_t> rgb(64 * 48 * 3);
    a.reset(oa.data());
    b.reset(ob.data());
    for (int t = 0; t < 20; ++t) {
      for (size_t j = 0; j < act.size(); ++j) act[j] = float(std::sin(0.3 * t + double(j)));
      r.render(a, rgb.data());
      a.step(act.data(), oa.data());
      b.step(act.data(), ob.data());
      REQUIRE(oa == ob);
    }
    env::Env c("cartpole-swingup", 1);
    CHECK(error_of([&] {
            r.render(c, rgb.data());
          }).find("made for another Env's model (cartpole-swingup); make one per Env") !=
          std::string::npos);
    CHECK(error_of([&] {
            env::Renderer(c, 64, 48, 7);
          }).find("camera 7: cartpole-swingup has 2 cameras (0..1)") != std::string::npos);
    CHECK(error_of([&] { env::Renderer(c, 0, 48); }).find("not 0 x 48") != std::string::npos);
    CHECK(env::default_camera(env::find_task("quadruped-run")) == 2);
    CHECK(env::default_camera(env::find_task("dog-run")) == 0);
  }

  TEST_CASE("train save_video=true: one video per evaluation, returns as without video") {
    TempDir tmp;
    // One random-action episode of pendulum-swingup (action_repeat 8: 125 agent steps), then an
    // evaluation of 2 episodes with a tiny planner; no update runs.
    auto run = [&](const std::string& dir, bool video) {
      std::vector<std::string> args = {
          "task=pendulum-swingup", "action_repeat=8", "steps=1000",
          "seed_steps=125",        "eval_freq=1000",  "eval_episodes=2",
          "model_size=1",          "enc_dim=32",      "mlp_dim=32",
          "latent_dim=16",         "batch_size=16",   "buffer_size=10000",
          "iterations=2",          "num_samples=32",  "num_elites=8",
          "num_pi_trajs=4",        "device=cpu",      "seed=3",
          "save_buffer=false",     "run_dir=" + dir};
      if (video) {
        args.push_back("save_video=true");
        args.push_back("video_episodes=2");
        args.push_back("video_size=48");
      }
      return train::train(args);
    };
    const std::string a = tmp.file("video"), b = tmp.file("plain");
    const std::string ext = video_extension();  // gif here; a machine with ffmpeg: mp4
    run(a, true);
    run(b, false);
    CHECK(read_csv(a + "/eval.csv").rows == read_csv(b + "/eval.csv").rows);
    CHECK(!path_exists(b + "/videos"));
    const std::string file = a + "/videos/eval_1000." + ext;
    REQUIRE(path_exists(file));
    if (ext == "gif") {
      const DecodedGif g = decode_gif(read_file(file));
      CHECK(g.width == 48);
      CHECK(g.height == 48);
      CHECK(g.frames.size() == 2 * 126);  // two episodes: the reset frame + 125 agent steps
      CHECK(g.delays == std::vector<int>(2 * 126, 16));  // pendulum: 0.02 s x 8 per frame
    }

    // pompc eval video=: the first episode of the checkpoint's evaluation.
    const std::string ckpt = a + "/checkpoint.safetensors";
    const train::EvalResult e1 = train::evaluate_checkpoint(ckpt, 1, "cpu", 0);
    const train::EvalResult e2 = train::evaluate_checkpoint(ckpt, 1, "cpu", 0, tmp.file("e.gif"));
    CHECK(e1.returns == e2.returns);
    const DecodedGif g = decode_gif(read_file(tmp.file("e.gif")));
    CHECK(g.frames.size() == 126);
    CHECK(g.width == 48);  // the checkpoint's video_size
    std::vector<std::string> odd = {"task=pendulum-swingup", "video_size=47",
                                    "run_dir=" + tmp.file("odd2")};
    CHECK(error_of([&] { train::train(odd); }).find("video_size=47: make it even") !=
          std::string::npos);
  }
}
