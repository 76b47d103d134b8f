// The replay buffer file as pompc wrote it before version 2 (no checksum record), for the tests
// that old files still load (tests/test_replay.cpp) and the fuzzer's seeds (tests/fuzz/fuzz.cpp:
// version 1 is loaded unverified, so its checks behind the checksum stay fuzzed).
//
// replay_file_v1(path) reads a version-2 file and returns the bytes of the same file at version
// 1: metadata "version" = "1" and no "checksum", the tensors as they were. The tensor layout
// does not depend on the metadata, so this is the file the older save() wrote for the same
// buffer (checked once against a file of pompc at commit ad2b5ae: byte for byte).
// replay_file_v1(path, "2") is a version-2 file that lost its checksum record (damage).
#pragma once

#include <algorithm>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "io/safetensors.h"

namespace pompc::test {

inline std::string replay_file_v1(const std::string& path, const std::string& version = "1") {
  const io::SafetensorsFile f(path);
  io::Metadata meta = f.metadata();
  meta.erase("checksum");
  meta["version"] = version;
  std::vector<std::string> data;
  std::vector<io::TensorView> views;
  for (const io::TensorInfo& t : f.tensors()) {
    data.emplace_back(t.nbytes(), '\0');
    f.read(t, data.back().data(), t.nbytes());
  }
  for (size_t i = 0; i < f.tensors().size(); ++i) {
    const io::TensorInfo& t = f.tensors()[i];
    views.push_back({t.name, t.dtype, t.shape, data[i].data()});
  }
  std::vector<std::pair<uint64_t, uint64_t>> offsets;
  std::string out = io::safetensors_header(views, meta, &offsets);
  uint64_t end = 0;
  for (const auto& o : offsets) end = std::max(end, o.second);
  const size_t base = out.size();
  out.resize(base + end);
  for (size_t i = 0; i < views.size(); ++i)
    std::memcpy(out.data() + base + offsets[i].first, data[i].data(), data[i].size());
  return out;
}

}  // namespace pompc::test
