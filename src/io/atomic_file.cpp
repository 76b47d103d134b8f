// src/io/atomic_file.cpp: temp file + fsync + rename + directory fsync (see atomic_file.h).
#include "io/atomic_file.h"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>

#include "common.h"

namespace pompc::io {

namespace {

std::atomic<int64_t> g_fail_next_after{-1};

std::string dir_of(const std::string& path) {
  const size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return path.substr(0, slash);
}

// fsync of a directory, so that a rename in it is durable. Some filesystems refuse fsync on
// directories (EINVAL); the file is already in place then, so only real I/O errors are reported.
void fsync_dir(const std::string& dir) {
  const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) return;
  const int rc = ::fsync(dfd);
  const int e = errno;
  ::close(dfd);
  POMPC_REQUIRE(rc == 0 || e == EINVAL || e == EROFS, "fsync of directory %s failed: %s",
                dir.c_str(), std::strerror(e));
}

}  // namespace

namespace testing {
void fail_next_atomic_write_after(uint64_t bytes) {
  g_fail_next_after.store(static_cast<int64_t>(bytes));
}
}  // namespace testing

int remove_stale_temp_files(const std::string& path) {
  const size_t slash = path.find_last_of('/');
  const std::string dir = dir_of(path);
  const std::string prefix = (slash == std::string::npos ? path : path.substr(slash + 1)) + ".tmp.";
  DIR* d = ::opendir(dir.c_str());
  if (!d) return 0;  // AtomicWriter's open() reports a missing directory
  int removed = 0;
  while (const dirent* e = ::readdir(d)) {
    const std::string name = e->d_name;
    if (name.compare(0, prefix.size(), prefix) != 0) continue;
    const std::string digits = name.substr(prefix.size());
    if (digits.empty() || digits.size() > 9 ||
        digits.find_first_not_of("0123456789") != std::string::npos)
      continue;
    const long pid = std::stol(digits);
    if (pid <= 0 || pid == static_cast<long>(::getpid())) continue;
    if (::kill(static_cast<pid_t>(pid), 0) == 0 || errno != ESRCH) continue;  // alive (or EPERM)
    removed += ::unlinkat(::dirfd(d), name.c_str(), 0) == 0;
  }
  ::closedir(d);
  return removed;
}

AtomicWriter::AtomicWriter(std::string path) : path_(std::move(path)) {
  POMPC_REQUIRE(!path_.empty(), "cannot write a file with an empty path");
  remove_stale_temp_files(path_);
  tmp_ = strfmt("%s.tmp.%ld", path_.c_str(), static_cast<long>(::getpid()));
  fd_ = ::open(tmp_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd_ < 0) {
    const int e = errno;
    throw Error(
        strfmt("cannot create %s (to replace %s atomically): %s; check that directory %s "
               "exists and is writable",
               tmp_.c_str(), path_.c_str(), std::strerror(e), dir_of(path_).c_str()));
  }
  fail_after_ = g_fail_next_after.exchange(-1);
}

AtomicWriter::~AtomicWriter() {
  if (fd_ >= 0) {
    ::close(fd_);
    ::unlink(tmp_.c_str());
  }
}

void AtomicWriter::fail(const std::string& what) {
  if (fd_ >= 0) {
    ::close(fd_);
    fd_ = -1;
    ::unlink(tmp_.c_str());
  }
  throw Error(what);
}

void AtomicWriter::write(const void* data, size_t n) {
  POMPC_REQUIRE(fd_ >= 0, "write to %s after commit() or a failure", tmp_.c_str());
  const char* p = static_cast<const char*>(data);
  // An injected failure (testing) writes up to the limit, then fails like a full disk would.
  const bool inject = fail_after_ >= 0 && written_ + n > static_cast<uint64_t>(fail_after_);
  size_t left = inject ? static_cast<size_t>(static_cast<uint64_t>(fail_after_) - written_) : n;
  while (left > 0) {
    const ssize_t w = ::write(fd_, p, left);
    if (w < 0) {
      if (errno == EINTR) continue;
      const int e = errno;
      fail(
          strfmt("writing %s failed after %llu bytes: %s; %s was left unchanged (free disk space "
                 "or choose another directory)",
                 tmp_.c_str(), static_cast<unsigned long long>(written_), std::strerror(e),
                 path_.c_str()));
    }
    p += w;
    left -= static_cast<size_t>(w);
    written_ += static_cast<uint64_t>(w);
  }
  if (inject)
    fail(
        strfmt("simulated write failure after %llu bytes of %s (testing hook); %s was left "
               "unchanged",
               static_cast<unsigned long long>(written_), tmp_.c_str(), path_.c_str()));
}

void AtomicWriter::commit() {
  POMPC_REQUIRE(fd_ >= 0, "commit() of %s twice or after a failure", tmp_.c_str());
  if (fail_after_ >= 0)
    fail(
        strfmt("simulated failure before renaming %s over %s (testing hook); %s was left "
               "unchanged",
               tmp_.c_str(), path_.c_str(), path_.c_str()));
  if (::fsync(fd_) != 0) {
    const int e = errno;
    fail(strfmt("fsync of %s failed: %s; %s was left unchanged", tmp_.c_str(), std::strerror(e),
                path_.c_str()));
  }
  const int fd = fd_;
  fd_ = -1;
  if (::close(fd) != 0) {
    const int e = errno;
    ::unlink(tmp_.c_str());
    throw Error(strfmt("closing %s failed: %s; %s was left unchanged", tmp_.c_str(),
                       std::strerror(e), path_.c_str()));
  }
  if (::rename(tmp_.c_str(), path_.c_str()) != 0) {
    const int e = errno;
    ::unlink(tmp_.c_str());
    throw Error(strfmt("renaming %s over %s failed: %s; %s was left unchanged", tmp_.c_str(),
                       path_.c_str(), std::strerror(e), path_.c_str()));
  }
  fsync_dir(dir_of(path_));  // the rename itself made durable
}

void write_file_atomic(const std::string& path, std::string_view contents) {
  AtomicWriter w(path);
  w.write(contents);
  w.commit();
}

void rename_file(const std::string& from, const std::string& to) {
  if (::rename(from.c_str(), to.c_str()) != 0) {
    const int e = errno;
    throw Error(strfmt("renaming %s to %s failed: %s", from.c_str(), to.c_str(), std::strerror(e)));
  }
  fsync_dir(dir_of(to));
}

std::string read_file(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    const int e = errno;
    throw Error(strfmt("cannot open %s: %s", path.c_str(), std::strerror(e)));
  }
  std::string out;
  char buf[1 << 16];
  for (;;) {
    const ssize_t r = ::read(fd, buf, sizeof buf);
    if (r < 0) {
      if (errno == EINTR) continue;
      const int e = errno;
      ::close(fd);
      throw Error(strfmt("reading %s failed: %s", path.c_str(), std::strerror(e)));
    }
    if (r == 0) break;
    out.append(buf, static_cast<size_t>(r));
  }
  ::close(fd);
  return out;
}

bool path_exists(const std::string& path) {
  struct stat st;
  return ::stat(path.c_str(), &st) == 0;
}

}  // namespace pompc::io
