// src/io/video.cpp: the ffmpeg pipe and the GIF fallback (run book: video.h).
#include "io/video.h"

#include <fcntl.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <numeric>
#include <vector>

#include "common.h"

extern char** environ;

namespace pompc::io {

namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() &&
         s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::string describe_status(int status) {
  if (WIFEXITED(status)) return strfmt("exit status %d", WEXITSTATUS(status));
  if (WIFSIGNALED(status)) return strfmt("killed by signal %d", WTERMSIG(status));
  return strfmt("wait status %d", status);
}

}  // namespace

std::string find_on_path(const std::string& name) {
  const char* path = std::getenv("PATH");
  if (!path) return "";
  const std::string p = path;
  for (size_t b = 0; b <= p.size();) {
    size_t e = p.find(':', b);
    if (e == std::string::npos) e = p.size();
    const std::string dir = e > b ? p.substr(b, e - b) : ".";
    const std::string full = dir + "/" + name;
    struct stat st;
    if (::stat(full.c_str(), &st) == 0 && S_ISREG(st.st_mode) && ::access(full.c_str(), X_OK) == 0)
      return full;
    b = e + 1;
  }
  return "";
}

std::string video_extension() {
  return find_on_path("ffmpeg").empty() ? "gif" : "mp4";
}

VideoWriter::VideoWriter(const std::string& path, int width, int height, double frame_seconds)
    : path_(path), width_(width), height_(height) {
  POMPC_REQUIRE(frame_seconds > 0 && std::isfinite(frame_seconds),
                "video %s: the frame time must be positive, not %g s", path.c_str(), frame_seconds);
  if (ends_with(path, ".gif")) {
    format_ = "gif";
    gif_.emplace(path, width, height, frame_seconds);
    return;
  }
  POMPC_REQUIRE(ends_with(path, ".mp4"),
                "video %s: name it .mp4 (written by ffmpeg) or .gif (written by pompc)",
                path.c_str());
  format_ = "mp4";
  const std::string ffmpeg = find_on_path("ffmpeg");
  POMPC_REQUIRE(!ffmpeg.empty(),
                "video %s: an .mp4 needs ffmpeg on PATH (Debian: apt-get install ffmpeg); or "
                "name the file .gif",
                path.c_str());
  POMPC_REQUIRE(width > 0 && height > 0 && width % 2 == 0 && height % 2 == 0,
                "video %s: an MP4 (yuv420p) needs an even width and height, not %d x %d",
                path.c_str(), width, height);
  mp4_.emplace(path);
  // The frame rate as the exact fraction 10^6 / (frame time in microseconds).
  const long long us = std::max(1LL, std::llround(frame_seconds * 1e6));
  const long long g = std::gcd(1000000LL, us);
  const std::string size = strfmt("%dx%d", width, height);
  const std::string rate = strfmt("%lld/%lld", 1000000LL / g, us / g);
  std::vector<std::string> args = {
      "ffmpeg",   "-hide_banner", "-loglevel", "error", "-nostats",       "-y", "-f", "rawvideo",
      "-pix_fmt", "rgb24",        "-s",        size,    "-framerate",     rate, "-i", "-",
      "-pix_fmt", "yuv420p",      "-f",        "mp4",   mp4_->temp_path()};
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);

  int fds[2];
  POMPC_REQUIRE(::pipe2(fds, O_CLOEXEC) == 0, "video %s: pipe failed: %s", path.c_str(),
                std::strerror(errno));
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_adddup2(&actions, fds[0], 0);
  const int rc = ::posix_spawn(&pid_, ffmpeg.c_str(), &actions, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  ::close(fds[0]);
  if (rc != 0) {
    ::close(fds[1]);
    pid_ = -1;
    throw Error(
        strfmt("video %s: cannot start %s: %s", path.c_str(), ffmpeg.c_str(), std::strerror(rc)));
  }
  pipe_ = fds[1];
  struct sigaction ignore {};
  ignore.sa_handler = SIG_IGN;
  ::sigaction(SIGPIPE, &ignore, &old_sigpipe_);
}

VideoWriter::~VideoWriter() {
  if (pid_ > 0) {
    ::kill(pid_, SIGTERM);
    finish_ffmpeg();
  }
  if (format_ == "mp4") ::sigaction(SIGPIPE, &old_sigpipe_, nullptr);
}

int VideoWriter::finish_ffmpeg() {
  if (pipe_ >= 0) ::close(pipe_);
  pipe_ = -1;
  int status = 0;
  while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
  }
  pid_ = -1;
  return status;
}

void VideoWriter::add_frame(const uint8_t* rgb) {
  ++added_;
  if (gif_) {
    gif_->add_frame(rgb);
    return;
  }
  POMPC_REQUIRE(pipe_ >= 0, "video %s: add_frame after close()", path_.c_str());
  const char* p = reinterpret_cast<const char*>(rgb);
  size_t left = size_t(width_) * size_t(height_) * 3;
  while (left > 0) {
    const ssize_t w = ::write(pipe_, p, left);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) {
      const int e = errno;
      const int status = finish_ffmpeg();
      throw Error(
          strfmt("video %s: ffmpeg stopped reading at frame %d (%s; %s); its messages "
                 "are above",
                 path_.c_str(), added_, std::strerror(e), describe_status(status).c_str()));
    }
    p += w;
    left -= size_t(w);
  }
}

void VideoWriter::close() {
  if (gif_) {
    gif_->close();
    return;
  }
  POMPC_REQUIRE(pid_ > 0, "video %s: close() twice", path_.c_str());
  const int status = finish_ffmpeg();
  POMPC_REQUIRE(WIFEXITED(status) && WEXITSTATUS(status) == 0,
                "video %s: ffmpeg failed (%s) after %d frames; its messages are above",
                path_.c_str(), describe_status(status).c_str(), added_);
  mp4_->commit();
}

int VideoWriter::frames() const {
  return gif_ ? gif_->frames_written() : added_;
}

}  // namespace pompc::io
