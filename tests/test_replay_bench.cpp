// Replay buffer benchmark (suite bench): a full 1M-record dog buffer (O = 223, A = 38, planner
// targets on), wrapped once.
//
//   build/bench -ts=bench -tc='*replay*'
//
// Prints the memory figure, µs per sample() of B = 256 slices of H + 1 = 4 records (time-major
// gather into host arrays, the batch one update copies to the device), the effective gather
// bandwidth, µs per write_targets() of a reanalysis batch (20 slices x 3 states), the time
// to save and load the whole buffer (resume; both include the file's checksum), and what the
// checksum costs: the file's lane hash (what load adds: a read of the file and the hash; save
// hashes the buffer in memory), the same with FNV-1a (the checkpoint's hash, too slow for this
// file), and a plain read of the file.
#include <doctest/doctest.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "bench_util.h"
#include "io/checksum.h"
#include "io/safetensors.h"
#include "replay/replay_buffer.h"
#include "test_io_tmp.h"

using pompc::replay::ReplayBuffer;
using pompc::replay::ReplaySettings;
using pompc::replay::SliceBatch;

TEST_SUITE("bench") {
  TEST_CASE("bench replay: sample B=256 H=3 from a full 1M-record dog buffer") {
    constexpr int O = 223, A = 38, H = 3, B = 256, kSteps = 500;
    ReplaySettings s;
    s.capacity = 1'000'000;
    s.obs_dim = O;
    s.action_dim = A;
    s.horizon = H;
    s.seed = 1;
    ReplayBuffer rb(s);
    std::printf(
        "bench: replay/memory dog O=223 A=38: %zu B/record, %.2f GB (%.2f GiB) for %lld "
        "records (planner targets on; %zu B/record without)\n",
        rb.bytes_per_record(), rb.ring_bytes() / 1e9, rb.ring_bytes() / 1073741824.0,
        static_cast<long long>(s.capacity), rb.bytes_per_record() - 8 * A);

    std::vector<float> obs(O), act(A), mu(A), sigma(A, 0.3f);
    const auto t0 = std::chrono::steady_clock::now();
    int episodes = 0;
    while (rb.episodes_added() * (kSteps + 1) < s.capacity + 20 * (kSteps + 1)) {
      for (int t = 0; t <= kSteps; ++t) {
        for (int k = 0; k < O; ++k)
          obs[static_cast<size_t>(k)] = 0.001f * static_cast<float>(t + k);
        if (t == kSteps) break;
        for (int k = 0; k < A; ++k) act[static_cast<size_t>(k)] = mu[static_cast<size_t>(k)] = 0.5f;
        rb.add(0, obs.data(), act.data(), 1.0f, t % 3 ? mu.data() : nullptr,
               t % 3 ? sigma.data() : nullptr);
      }
      rb.end_episode(0, obs.data());
      ++episodes;
    }
    const double fill_s =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    REQUIRE(rb.size() == s.capacity);
    std::printf("bench: replay/fill dog %d episodes of %d steps: %.2f s (%.2f M records/s)\n",
                episodes, kSteps, fill_s, episodes * (kSteps + 1) / fill_s / 1e6);

    std::vector<float> bo(static_cast<size_t>((H + 1) * B * O)), ba(static_cast<size_t>(H * B * A)),
        br(static_cast<size_t>(H * B)), bm(ba.size()), bs(ba.size());
    std::vector<int64_t> bi(static_cast<size_t>((H + 1) * B));
    const SliceBatch batch{B, bo.data(), ba.data(), br.data(), bm.data(), bs.data(), bi.data()};
    const double ms = pompc::test::time_ms([&] { rb.sample(batch); }, 200);
    const double bytes = static_cast<double>(bo.size() + ba.size() * 3 + br.size()) * 4 +
                         static_cast<double>(bi.size()) * 8;
    const double gbs = bytes / (ms * 1e-3) / 1e9, triad = pompc::test::host_triad_gbs();
    std::printf(
        "bench: replay/sample dog 1M B=256 H=3: %.1f us per batch (%.2f MB gathered, "
        "%.2f GB/s, %.0f%% of the %.1f GB/s host triad)\n",
        ms * 1e3, bytes / 1e6, gbs, 100 * gbs / triad, triad);

    // Lazy reanalysis write-back: 20 slices x H states.
    std::vector<int64_t> idx;
    for (int b = 0; b < 20; ++b)
      for (int t = 0; t < H; ++t) idx.push_back(bi[static_cast<size_t>(t * B + b)]);
    const double wb_ms = pompc::test::time_ms(
        [&] { rb.write_targets(idx.data(), bm.data(), bs.data(), idx.size()); }, 2000);
    std::printf("bench: replay/write_targets 60 records A=38: %.2f us\n", wb_ms * 1e3);

    pompc::test::TempDir dir;
    const std::string p = dir.file("replay.safetensors");
    auto t1 = std::chrono::steady_clock::now();
    rb.save(p);
    const double save_s =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t1).count();
    ReplayBuffer rb2(s);
    t1 = std::chrono::steady_clock::now();
    rb2.load(p);
    const double load_s =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - t1).count();
    std::printf("bench: replay/save dog 1M (%.2f GB, fsync + rename): %.2f s; load %.2f s\n",
                rb.ring_bytes() / 1e9, save_s, load_s);
    CHECK(rb2.valid_starts() == rb.valid_starts());

    const pompc::io::SafetensorsFile f(p);
    auto seconds = [](auto&& fn) {
      const auto t = std::chrono::steady_clock::now();
      fn();
      return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
    };
    std::vector<char> buf(16u << 20);
    const double read_s = seconds([&] {
      for (const pompc::io::TensorInfo& t : f.tensors())
        for (uint64_t at = 0; at < t.nbytes(); at += buf.size())
          f.read_part(t, at, buf.data(), std::min<uint64_t>(buf.size(), t.nbytes() - at));
    });
    std::string lanes, fnv;
    const double lanes_s =
        seconds([&] { lanes = pompc::io::file_checksum(f, pompc::io::Hash::lanes, true); });
    const double fnv_s =
        seconds([&] { fnv = pompc::io::file_checksum(f, pompc::io::Hash::fnv1a, true); });
    const double gb = rb.ring_bytes() / 1e9;
    std::printf(
        "bench: replay/checksum dog 1M file: read alone %.2f s (%.1f GB/s); read + lane hash "
        "%.2f s (%.1f GB/s, %s); read + FNV-1a %.2f s (%.2f GB/s)\n",
        read_s, gb / read_s, lanes_s, gb / lanes_s, lanes.c_str(), fnv_s, gb / fnv_s);
    CHECK(lanes == f.meta("checksum"));
  }
}
