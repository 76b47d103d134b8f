// src/io/video.h: eval videos: MP4 through ffmpeg when it is on PATH, else an animated GIF
// written by pompc itself (io/gif.h).
//
// Run book
//   choice     video_extension(): "mp4" when an executable ffmpeg is on PATH, else "gif".
//              VideoWriter takes the format from its path's extension (.mp4 or .gif); an .mp4
//              without ffmpeg is refused with what to install.
//   mp4        ffmpeg, started without a shell (posix_spawn), reads raw rgb24 frames from a
//              pipe: ffmpeg -hide_banner -loglevel error -nostats -y -f rawvideo -pix_fmt rgb24
//              -s WxH -framerate 1/frame_seconds -i - -pix_fmt yuv420p -f mp4 <temp file>
//              (ffmpeg's default MP4 encoder: libx264 where it is built in). yuv420p needs an
//              even width and height. SIGPIPE is ignored while a writer lives, so an ffmpeg that
//              dies surfaces as an error with its exit status instead of killing pompc.
//   atomic     both formats go to AtomicWriter's temp file and are renamed into place by
//              close(); a writer destroyed without close() (an exception mid-episode) leaves no
//              file behind and stops its ffmpeg.
//   tests      build/test_emu -ts=io -tc='*video*'  (a stand-in ffmpeg script checks the pipe,
//              the arguments and the rename; with a real ffmpeg and ffprobe on PATH, the MP4's
//              frame count and size too)
#pragma once

#include <signal.h>
#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "io/atomic_file.h"
#include "io/gif.h"

namespace pompc::io {

// The executable `name` found on $PATH, or "" when there is none.
std::string find_on_path(const std::string& name);

// "mp4" when ffmpeg is on PATH, else "gif".
std::string video_extension();

class VideoWriter {
 public:
  // Frames of width x height, each shown for frame_seconds. Throws pompc::Error for an
  // extension other than .mp4 / .gif, an .mp4 without ffmpeg or with an odd size, or an ffmpeg
  // that cannot be started.
  VideoWriter(const std::string& path, int width, int height, double frame_seconds);
  ~VideoWriter();
  VideoWriter(const VideoWriter&) = delete;
  VideoWriter& operator=(const VideoWriter&) = delete;

  void add_frame(const uint8_t* rgb);  // width * height * 3 bytes, rows top to bottom
  void close();                        // finish the file and rename it into place
  int frames() const;                  // frames in the file (a GIF drops frames under 2 cs)
  const std::string& format() const { return format_; }

 private:
  int finish_ffmpeg();  // closes the pipe and waits for ffmpeg: its wait status

  std::string path_, format_;
  const int width_, height_;
  int added_ = 0;
  std::optional<GifWriter> gif_;
  std::optional<AtomicWriter> mp4_;  // the temp file ffmpeg writes
  pid_t pid_ = -1;
  int pipe_ = -1;
  struct sigaction old_sigpipe_ {};
};

}  // namespace pompc::io
