// src/io/atomic_file.h: crash-safe file replacement and whole-file reads.
//
// Run book
//   protocol             AtomicWriter(path) creates `<path>.tmp.<pid>` (mode 0644), write() appends
//                        to it (partial writes and EINTR retried), commit() fsyncs the file,
//                        closes it, renames it over `path` and fsyncs the directory. Until the
//                        rename the old `path` is untouched, so a crash, a full disk or an
//                        exception at any point leaves either the old file or the new one, never
//                        a mix. A writer destroyed without commit() removes its temp file.
//   stale temp files     a process killed in a write (kill -9, Ctrl-C, power loss) leaves its
//                        `<path>.tmp.<pid>`; nothing reads it. The next AtomicWriter of the same
//                        path removes every `<path>.tmp.<pid>` whose pid is no longer a running
//                        process (kill(pid, 0) fails with ESRCH) before it creates its own, so
//                        killed checkpoint saves do not pile up on the disk.
//   errors               every failure throws pompc::Error naming the file, the OS error text
//                        (e.g. "File too large", "No space left on device") and that `path` was
//                        left unchanged; the temp file is removed first.
//   another writer       temp_path() names the temp file for a child process that writes it
//                        itself (ffmpeg, io/video.h): opened with O_TRUNC it is the same inode,
//                        so commit() fsyncs what the child wrote and renames it into place.
//   used by              safetensors checkpoints, the replay buffer file, config.txt, curves.svg
//                        and curves.png, eval videos.
//   failure injection    testing::fail_next_atomic_write_after(n) makes the next AtomicWriter
//                        throw once n bytes have gone to the temp file (or at commit(), just
//                        before the rename, when the whole file is shorter than n): the test of
//                        "an interrupted write never damages an existing checkpoint".
//   tests                build/test_emu -ts=io -tc='*atomic*' (a full disk: RLIMIT_FSIZE in a
//                        forked child, tests/test_faults.cpp)
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace pompc::io {

class AtomicWriter {
 public:
  explicit AtomicWriter(std::string path);  // throws pompc::Error if the temp file can't be made
  ~AtomicWriter();                          // without commit(): closes and unlinks the temp file
  AtomicWriter(const AtomicWriter&) = delete;
  AtomicWriter& operator=(const AtomicWriter&) = delete;

  void write(const void* data, size_t n);  // appends n bytes (throws on I/O error)
  void write(std::string_view s) { write(s.data(), s.size()); }
  void commit();  // fsync, rename over path, fsync the directory
  const std::string& temp_path() const { return tmp_; }

 private:
  void fail(const std::string& what);  // cleans up and throws
  std::string path_, tmp_;
  int fd_ = -1;
  uint64_t written_ = 0;
  int64_t fail_after_ = -1;  // injected failure (testing), -1 when off
};

// Writes `contents` to `path` with AtomicWriter.
void write_file_atomic(const std::string& path, std::string_view contents);

// rename(from, to) and an fsync of to's directory; throws pompc::Error naming both and the OS
// error. For a file already written in full under another name (the trainer's replay buffer).
void rename_file(const std::string& from, const std::string& to);

// Removes `<path>.tmp.<pid>` files whose pid is not a running process (see the run book);
// AtomicWriter calls it. Returns how many it removed.
int remove_stale_temp_files(const std::string& path);

// The whole file as bytes; throws pompc::Error naming the path and the OS error.
std::string read_file(const std::string& path);

// True when `path` exists (any type).
bool path_exists(const std::string& path);

namespace testing {
void fail_next_atomic_write_after(uint64_t bytes);
}

}  // namespace pompc::io
