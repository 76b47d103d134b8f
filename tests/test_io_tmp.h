// A scratch directory for the io and replay tests: created under $TMPDIR (default /tmp) with
// mkdtemp, removed with everything in it when the test case ends.
#pragma once

#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <stdexcept>
#include <string>
#include <vector>

namespace pompc::test {

class TempDir {
 public:
  TempDir() {
    const char* base = std::getenv("TMPDIR");
    std::string tmpl = std::string(base && *base ? base : "/tmp") + "/pompc-test-XXXXXX";
    if (!::mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed for " + tmpl);
    path_ = tmpl;
  }
  ~TempDir() { remove_tree(path_); }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }
  std::string file(const std::string& name) const { return path_ + "/" + name; }
  // Names of the entries in the directory (no "." or "..").
  std::vector<std::string> entries() const {
    std::vector<std::string> out;
    if (DIR* d = ::opendir(path_.c_str())) {
      while (const dirent* e = ::readdir(d)) {
        const std::string n = e->d_name;
        if (n != "." && n != "..") out.push_back(n);
      }
      ::closedir(d);
    }
    return out;
  }

 private:
  static void remove_tree(const std::string& p) {
    ::chmod(p.c_str(), 0755);
    if (DIR* d = ::opendir(p.c_str())) {
      while (const dirent* e = ::readdir(d)) {
        const std::string n = e->d_name;
        if (n == "." || n == "..") continue;
        const std::string c = p + "/" + n;
        struct stat st;
        if (::lstat(c.c_str(), &st) == 0 && S_ISDIR(st.st_mode))
          remove_tree(c);
        else
          ::unlink(c.c_str());
      }
      ::closedir(d);
    }
    ::rmdir(p.c_str());
  }
  std::string path_;
};

}  // namespace pompc::test
