// src/replay: the replay buffer (suite agent).
//
//   build/test_emu -ts=agent -tc='*replay*'
//
// Episodes are synthetic: record t of episode e holds obs[0] = code(e, t) = 1000 e + t (the rest
// of obs derived from it), action[0] = code + 0.5, reward = code + 0.25, so every sampled value
// says which record it came from. Odd steps carry a planner target (mu = code + 0.125,
// sigma = 0.5), even steps are seed-phase-like sentinels.
#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "common.h"
#include "io/atomic_file.h"
#include "io/safetensors.h"
#include "replay/replay_buffer.h"
#include "replay_file_v1.h"
#include "test_io_tmp.h"
#include "test_util.h"

using namespace pompc;
using pompc::test::error_of;
using pompc::replay::ReplayBuffer;
using pompc::replay::ReplaySettings;
using pompc::replay::SliceBatch;
using pompc::test::TempDir;

namespace {

constexpr int O = 5, A = 3, H = 3;

ReplaySettings small(int64_t capacity, int num_envs = 1, uint64_t seed = 7) {
  ReplaySettings s;
  s.capacity = capacity;
  s.obs_dim = O;
  s.action_dim = A;
  s.horizon = H;
  s.num_envs = num_envs;
  s.seed = seed;
  return s;
}

float code(int ep, int t) {
  return static_cast<float>(1000 * ep + t);
}

// Adds one episode of `steps` steps for environment `env`, episode number `ep`.
void add_episode(ReplayBuffer& rb, int ep, int steps, int env = 0) {
  float obs[O], act[A], mu[A], sigma[A];
  for (int t = 0; t <= steps; ++t) {
    const float c = code(ep, t);
    for (int k = 0; k < O; ++k) obs[k] = c + 0.01f * static_cast<float>(k);
    if (t == steps) {
      rb.end_episode(env, obs);
      break;
    }
    for (int k = 0; k < A; ++k) {
      act[k] = c + 0.5f;
      mu[k] = c + 0.125f;
      sigma[k] = 0.5f;
    }
    const bool planned = t % 2 == 1;
    rb.add(env, obs, act, c + 0.25f, planned ? mu : nullptr, planned ? sigma : nullptr);
  }
}

// Host arrays for one batch.
struct Batch {
  int B;
  std::vector<float> obs, action, reward, mu, sigma;
  std::vector<int64_t> index;
  explicit Batch(int b)
      : B(b),
        obs(static_cast<size_t>((H + 1) * b * O)),
        action(static_cast<size_t>(H * b * A)),
        reward(static_cast<size_t>(H * b)),
        mu(static_cast<size_t>(H * b * A)),
        sigma(static_cast<size_t>(H * b * A)),
        index(static_cast<size_t>((H + 1) * b)) {}
  SliceBatch view() {
    return {B, obs.data(), action.data(), reward.data(), mu.data(), sigma.data(), index.data()};
  }
  float o(int t, int b, int k = 0) const { return obs[static_cast<size_t>((t * B + b) * O + k)]; }
  float a(int t, int b, int k = 0) const {
    return action[static_cast<size_t>((t * B + b) * A + k)];
  }
  float m(int t, int b, int k = 0) const { return mu[static_cast<size_t>((t * B + b) * A + k)]; }
  float s(int t, int b, int k = 0) const { return sigma[static_cast<size_t>((t * B + b) * A + k)]; }
  float r(int t, int b) const { return reward[static_cast<size_t>(t * B + b)]; }
  int64_t i(int t, int b) const { return index[static_cast<size_t>(t * B + b)]; }
};

// Everything a slice must satisfy: one episode, consecutive records, every field from the record
// its index names, the time alignment of obs / action / reward / target, sentinels -> N(0, 1).
void check_batch(const ReplayBuffer& rb, const Batch& x) {
  const int64_t C = rb.capacity();
  for (int b = 0; b < x.B; ++b) {
    const uint32_t ep = rb.episode_of(x.i(0, b));
    for (int t = 0; t <= H; ++t) {
      const int64_t i = x.i(t, b);
      REQUIRE(rb.episode_of(i) == ep);
      if (t > 0) REQUIRE(i == (x.i(t - 1, b) + 1) % C);
      for (int k = 0; k < O; ++k) REQUIRE(x.o(t, b, k) == rb.obs_at(i)[k]);
      if (t == H) break;
      REQUIRE_FALSE(rb.is_final(i));
      const float c = x.o(t, b);
      REQUIRE(x.o(t + 1, b) == c + 1);  // the observation after action[t]
      REQUIRE(x.a(t, b) == c + 0.5f);
      REQUIRE(x.r(t, b) == c + 0.25f);
      const bool planned = static_cast<int>(c) % 2 == 1;
      REQUIRE(rb.has_target(i) == planned);
      for (int k = 0; k < A; ++k) {
        REQUIRE(x.m(t, b, k) == (planned ? c + 0.125f : 0.0f));
        REQUIRE(x.s(t, b, k) == (planned ? 0.5f : 1.0f));
      }
    }
  }
}

}  // namespace

TEST_SUITE("agent") {
  TEST_CASE("replay: slices stay inside one episode, aligned, sentinels become N(0, 1)") {
    ReplayBuffer rb(small(10000));
    // Lengths include episodes too short for a slice (1 and 2 steps: 2 and 3 records < H + 1).
    const int lengths[] = {10, 1, 7, 2, 3, 25, 4};
    int64_t want_valid = 0;
    for (int e = 0; e < 7; ++e) {
      add_episode(rb, e, lengths[e]);
      want_valid += std::max(0, lengths[e] + 1 - H);
    }
    CHECK(rb.num_episodes() == 7);
    CHECK(rb.size() == 52 + 7);
    CHECK(rb.valid_starts() == want_valid);
    Batch x(64);
    std::map<int64_t, int> starts;
    for (int it = 0; it < 200; ++it) {
      rb.sample(x.view());
      check_batch(rb, x);
      for (int b = 0; b < x.B; ++b) starts[x.i(0, b)]++;
    }
    // Uniform over valid starts: each of them drawn, none of the invalid ones.
    CHECK(static_cast<int64_t>(starts.size()) == want_valid);
    int lo = 1 << 30, hi = 0;
    for (const auto& [i, n] : starts) lo = std::min(lo, n), hi = std::max(hi, n);
    CHECK(lo > 200 * 64 / want_valid / 2);  // expected ~300 each; a loose band
    CHECK(hi < 200 * 64 / want_valid * 2);
    // Optional outputs may be left out.
    rb.sample({8, x.obs.data(), x.action.data(), x.reward.data(), nullptr, nullptr, nullptr});
  }

  TEST_CASE("replay: write-back of planner targets changes exactly the given records") {
    ReplayBuffer rb(small(1000));
    for (int e = 0; e < 5; ++e) add_episode(rb, e, 12);
    const int64_t n = rb.size();
    std::vector<float> mu0, sigma0;
    std::vector<bool> has0;
    for (int64_t i = 0; i < n; ++i) {
      mu0.insert(mu0.end(), rb.mu_at(i), rb.mu_at(i) + A);
      sigma0.insert(sigma0.end(), rb.sigma_at(i), rb.sigma_at(i) + A);
      has0.push_back(rb.has_target(i));
    }
    Batch x(4);
    rb.sample(x.view());
    // Reanalysis writes back the states obs[t], t < H, of the first slices: records index[t].
    std::vector<int64_t> idx;
    for (int b = 0; b < 2; ++b)
      for (int t = 0; t < H; ++t) idx.push_back(x.i(t, b));
    std::sort(idx.begin(), idx.end());
    idx.erase(std::unique(idx.begin(), idx.end()), idx.end());
    std::vector<float> new_mu(idx.size() * A), new_sigma(idx.size() * A);
    for (size_t k = 0; k < new_mu.size(); ++k) {
      new_mu[k] = -0.75f - static_cast<float>(k);
      new_sigma[k] = 0.05f + 0.01f * static_cast<float>(k);
    }
    rb.write_targets(idx.data(), new_mu.data(), new_sigma.data(), idx.size());
    for (int64_t i = 0; i < n; ++i) {
      const auto hit = std::find(idx.begin(), idx.end(), i);
      for (int k = 0; k < A; ++k) {
        const size_t o = static_cast<size_t>(i * A + k);
        if (hit == idx.end()) {
          REQUIRE(rb.mu_at(i)[k] == mu0[o]);
          REQUIRE(rb.sigma_at(i)[k] == sigma0[o]);
          REQUIRE(rb.has_target(i) == has0[static_cast<size_t>(i)]);
        } else {
          const size_t w = static_cast<size_t>(hit - idx.begin()) * A + static_cast<size_t>(k);
          REQUIRE(rb.mu_at(i)[k] == new_mu[w]);
          REQUIRE(rb.sigma_at(i)[k] == new_sigma[w]);
          REQUIRE(rb.has_target(i));  // no longer a sentinel
        }
      }
    }
    int64_t final_rec = 12;  // episode 0's final record
    REQUIRE(rb.is_final(final_rec));
    CHECK(error_of([&] {
            rb.write_targets(&final_rec, new_mu.data(), new_sigma.data(), 1);
          }).find("the final record of an episode") != std::string::npos);
    int64_t out_of_range = n;
    CHECK(error_of([&] { rb.write_targets(&out_of_range, new_mu.data(), new_sigma.data(), 1); })
              .find(strfmt("index %lld is not in [0, %lld)", static_cast<long long>(n),
                           static_cast<long long>(n))) != std::string::npos);
  }

  TEST_CASE("replay: sampling is deterministic for a seed") {
    ReplayBuffer a(small(500, 1, 42)), b(small(500, 1, 42)), c(small(500, 1, 43));
    for (ReplayBuffer* rb : {&a, &b, &c})
      for (int e = 0; e < 6; ++e) add_episode(*rb, e, 30 + e);
    Batch xa(32), xb(32), xc(32);
    a.sample(xa.view());
    b.sample(xb.view());
    c.sample(xc.view());
    CHECK(xa.index == xb.index);
    CHECK(std::memcmp(xa.obs.data(), xb.obs.data(), xa.obs.size() * sizeof(float)) == 0);
    CHECK(xa.index != xc.index);
    Batch xa2(32);
    a.sample(xa2.view());
    CHECK(xa2.index != xa.index);  // the next call draws anew
    CHECK(a.sample_calls() == 2);
  }

  TEST_CASE("replay: the ring overwrites the oldest episode, slices may wrap the ring's end") {
    ReplayBuffer rb(small(50));
    for (int e = 0; e < 4; ++e) add_episode(rb, e, 10);  // 44 records
    CHECK(rb.size() == 44);
    add_episode(rb, 4, 10);  // 11 more: episode 0 loses its first 5 records
    CHECK(rb.size() == 50);
    CHECK(rb.num_episodes() == 5);
    CHECK(rb.valid_starts() == (6 - H) + 4 * (11 - H));
    for (int64_t i = 0; i < 5; ++i) CHECK(rb.episode_of(i) == 4);  // the wrapped part
    for (int64_t i = 44; i < 50; ++i) CHECK(rb.episode_of(i) == 4);
    for (int64_t i = 5; i < 11; ++i) {
      CHECK(rb.episode_of(i) == 0);
      CHECK(rb.obs_at(i)[0] == code(0, static_cast<int>(i)));  // its last steps survive
    }
    Batch x(128);
    bool wrapped = false, old_seen = false;
    for (int it = 0; it < 50; ++it) {
      rb.sample(x.view());
      check_batch(rb, x);
      for (int b = 0; b < x.B; ++b) {
        wrapped |= x.i(0, b) > x.i(H, b);
        old_seen |= rb.episode_of(x.i(0, b)) == 0;
      }
    }
    CHECK(wrapped);
    CHECK(old_seen);

    // Two more episodes (22 records): episodes 0 and 1 are gone, episode 2 lost 5 records.
    add_episode(rb, 5, 10);
    add_episode(rb, 6, 10);
    CHECK(rb.num_episodes() == 5);
    int64_t valid = 0;
    std::map<uint32_t, int> records;
    for (int64_t i = 0; i < rb.size(); ++i) records[rb.episode_of(i)]++;
    for (const auto& [e, n] : records) valid += std::max(0, n - H);
    CHECK(rb.valid_starts() == valid);
    CHECK(records.count(0) == 0);
    CHECK(records.count(1) == 0);
    CHECK(records[2] == 6);
    for (int it = 0; it < 20; ++it) {
      rb.sample(x.view());
      check_batch(rb, x);
      for (int b = 0; b < x.B; ++b) CHECK(rb.episode_of(x.i(0, b)) >= 2);
    }
    CHECK(rb.episodes_added() == 7);
  }

  TEST_CASE("replay: several environments collect at once; each episode stays contiguous") {
    ReplayBuffer rb(small(1000, 3));
    float obs[O] = {}, act[A] = {};
    // Interleave three environments' steps; episode e of env k has code 100 k + e.
    for (int t = 0; t < 6; ++t)
      for (int k = 0; k < 3; ++k) {
        for (float& v : obs) v = code(100 * k, t);
        for (float& v : act) v = code(100 * k, t) + 0.5f;
        rb.add(k, obs, act, code(100 * k, t) + 0.25f, nullptr, nullptr);
      }
    CHECK(rb.size() == 0);
    CHECK(rb.staged_steps(1) == 6);
    for (int k : {2, 0, 1}) {
      for (float& v : obs) v = code(100 * k, 6);
      rb.end_episode(k, obs);
    }
    CHECK(rb.size() == 21);
    CHECK(rb.staged_steps(1) == 0);
    for (int64_t i = 0; i < 7; ++i) CHECK(rb.obs_at(i)[0] == code(200, static_cast<int>(i)));
    for (int64_t i = 7; i < 14; ++i) CHECK(rb.obs_at(i)[0] == code(0, static_cast<int>(i - 7)));
    Batch x(16);
    rb.sample(x.view());
    for (int b = 0; b < x.B; ++b)
      for (int t = 0; t < H; ++t) CHECK(x.o(t + 1, b) == x.o(t, b) + 1);
  }

  TEST_CASE("replay: save and load restore the buffer bit for bit") {
    TempDir dir;
    const std::string p = dir.file("replay.safetensors");
    ReplayBuffer a(small(60, 2, 9));
    for (int e = 0; e < 7; ++e) add_episode(a, e, 9 + e % 3, e % 2);  // wraps the ring
    // An episode in progress in env 1, some samples drawn, some targets rewritten.
    float obs[O] = {1, 2, 3, 4, 5}, act[A] = {0.1f, 0.2f, 0.3f}, mu[A] = {0, 0.5f, 1};
    float sig[A] = {0.05f, 2, 1};
    a.add(1, obs, act, 0.75f, mu, sig);
    a.add(1, obs, act, -0.5f, nullptr, nullptr);
    Batch x(8);
    a.sample(x.view());
    a.sample(x.view());
    const int64_t wb[2] = {x.i(0, 0), x.i(1, 3)};
    const float wmu[2 * A] = {9, 8, 7, 6, 5, 4}, wsig[2 * A] = {0.1f, 0.2f, 0.3f, 0.4f, 0.5f, 0.6f};
    a.write_targets(wb, wmu, wsig, 2);
    a.save(p);

    ReplayBuffer b(small(60, 2, 9));
    b.load(p);
    CHECK(b.size() == a.size());
    CHECK(b.num_episodes() == a.num_episodes());
    CHECK(b.valid_starts() == a.valid_starts());
    CHECK(b.sample_calls() == a.sample_calls());
    CHECK(b.staged_steps(1) == 2);
    for (int64_t i = 0; i < a.size(); ++i) {
      REQUIRE(std::memcmp(a.obs_at(i), b.obs_at(i), O * sizeof(float)) == 0);
      REQUIRE(std::memcmp(a.action_at(i), b.action_at(i), A * sizeof(float)) == 0);
      REQUIRE(std::memcmp(a.mu_at(i), b.mu_at(i), A * sizeof(float)) == 0);
      REQUIRE(std::memcmp(a.sigma_at(i), b.sigma_at(i), A * sizeof(float)) == 0);
      REQUIRE(a.reward_at(i) == b.reward_at(i));
      REQUIRE(a.has_target(i) == b.has_target(i));
      REQUIRE(a.is_final(i) == b.is_final(i));
      REQUIRE(a.episode_of(i) == b.episode_of(i));
    }
    // Both continue identically: finish the staged episode, add more, sample.
    for (ReplayBuffer* rb : {&a, &b}) {
      rb->end_episode(1, obs);
      add_episode(*rb, 20, 11, 0);
    }
    Batch xa(32), xb(32);
    for (int it = 0; it < 3; ++it) {
      a.sample(xa.view());
      b.sample(xb.view());
      REQUIRE(xa.index == xb.index);
      for (auto [va, vb] : {std::pair{&xa.obs, &xb.obs},
                            {&xa.action, &xb.action},
                            {&xa.reward, &xb.reward},
                            {&xa.mu, &xb.mu},
                            {&xa.sigma, &xb.sigma}})
        REQUIRE(std::memcmp(va->data(), vb->data(), va->size() * sizeof(float)) == 0);
    }

    // A buffer with other settings refuses the file, naming the setting.
    ReplaySettings other = small(60, 2, 9);
    other.obs_dim = O + 1;
    ReplayBuffer c(other);
    CHECK(error_of([&] { c.load(p); }) ==
          strfmt("%s was saved with obs_dim=5, this run has obs_dim=6: resume with the settings "
                 "(task, config) of the run that saved it",
                 p.c_str()));
    ReplayBuffer d(small(61, 2, 9));
    CHECK(error_of([&] { d.load(p); }).find("capacity=60, this run has capacity=61") !=
          std::string::npos);
    // A damaged file is refused before anything is read.
    std::string raw = io::read_file(p);
    io::write_file_atomic(p, raw.substr(0, raw.size() - 10));
    ReplayBuffer e(small(60, 2, 9));
    CHECK(error_of([&] { e.load(p); }).find("the file is truncated") != std::string::npos);
    CHECK(e.size() == 0);
  }

  TEST_CASE("replay: a damaged file is refused by its checksum before anything is used") {
    TempDir dir;
    const std::string p = dir.file("replay.safetensors");
    ReplayBuffer a(small(60, 2, 9));
    for (int e = 0; e < 4; ++e) add_episode(a, e, 9 + e % 3, e % 2);
    float obs[O] = {1, 2, 3, 4, 5}, act[A] = {0.1f, 0.2f, 0.3f};
    a.add(1, obs, act, 0.75f, nullptr, nullptr);
    a.save(p);
    const std::string good = io::read_file(p);
    const size_t header_end = size_t(io::SafetensorsFile(p).data_start());
    {
      ReplayBuffer b(small(60, 2, 9));
      CHECK(b.load(p));  // verified
    }

    // One bit of one observation: the tensors still parse, only the checksum tells.
    std::string flipped = good;
    flipped[header_end + 40] ^= 0x04;
    io::write_file_atomic(p, flipped);
    ReplayBuffer b(small(60, 2, 9));
    const std::string msg = error_of([&] { b.load(p); });
    CAPTURE(msg);
    CHECK(msg.rfind("replay buffer file " + p +
                        " is corrupted: the checksum of its tensors and "
                        "metadata is ",
                    0) == 0);
    CHECK(msg.find("It was damaged after it was written (pompc replaces it atomically): put back "
                   "an intact copy or start without it") != std::string::npos);
    CHECK(b.size() == 0);
    CHECK(b.num_episodes() == 0);
    CHECK(b.staged_steps(1) == 0);
    CHECK(io::read_file(p) == flipped);

    // A bit flipped in any byte of the file (header: length prefix, tensor table, metadata,
    // padding; data) is refused, and the buffer is left as it was.
    std::mt19937_64 rng(9);
    int refused = 0;
    for (size_t i = 0; i < good.size(); ++i) {
      flipped = good;
      flipped[i] ^= char(1 << (rng() % 8));
      io::write_file_atomic(p, flipped);
      ReplayBuffer c(small(60, 2, 9));
      const std::string m = error_of([&] { c.load(p); });
      const bool ok =
          (m.find("corrupted") != std::string::npos || m.find("damaged") != std::string::npos) &&
          m.find(p) != std::string::npos && c.size() == 0;
      if (!ok) FAIL_CHECK("byte " << i << " (header ends at " << header_end << "): '" << m << "'");
      refused += ok;
    }
    MESSAGE(refused << " of " << good.size() << " single-bit flips refused");
    // The checksum record removed from a version-2 file.
    io::write_file_atomic(p, good);
    io::write_file_atomic(p, test::replay_file_v1(p, "2"));
    ReplayBuffer d(small(60, 2, 9));
    CHECK(error_of([&] { d.load(p); }).find("lacks its checksum record: it is damaged") !=
          std::string::npos);
  }

  TEST_CASE("replay: a version-1 file (older pompc, no checksum) loads unverified") {
    TempDir dir;
    const std::string p = dir.file("replay.safetensors"), p1 = dir.file("replay.v1.safetensors");
    ReplayBuffer a(small(60, 2, 9));
    for (int e = 0; e < 7; ++e) add_episode(a, e, 9 + e % 3, e % 2);
    Batch x(8);
    a.sample(x.view());
    a.save(p);
    const std::string v1 = test::replay_file_v1(p);
    REQUIRE(v1.find("\"checksum\"") == std::string::npos);
    REQUIRE(v1.find("\"version\":\"1\"") != std::string::npos);
    io::write_file_atomic(p1, v1);

    ReplayBuffer b(small(60, 2, 9));
    CHECK_FALSE(b.load(p1));  // accepted, not verified: the caller says so
    CHECK(b.size() == a.size());
    CHECK(b.valid_starts() == a.valid_starts());
    CHECK(b.sample_calls() == a.sample_calls());
    for (int64_t i = 0; i < a.size(); ++i)
      REQUIRE(std::memcmp(a.obs_at(i), b.obs_at(i), O * sizeof(float)) == 0);
    Batch xa(16), xb(16);
    a.sample(xa.view());
    b.sample(xb.view());
    CHECK(xa.index == xb.index);
    CHECK(xa.obs == xb.obs);
    // Saved again, it is version 2 with a checksum.
    b.save(p1);
    ReplayBuffer c(small(60, 2, 9));
    CHECK(c.load(p1));
  }

  TEST_CASE("replay: without planner targets; memory per record") {
    ReplaySettings s = small(100);
    s.planner_targets = false;
    ReplayBuffer rb(s);
    add_episode(rb, 0, 10);
    Batch x(4);
    CHECK(error_of([&] { rb.sample(x.view()); }).find("stores none") != std::string::npos);
    rb.sample(
        {4, x.obs.data(), x.action.data(), x.reward.data(), nullptr, nullptr, x.index.data()});
    CHECK(rb.mu_at(0) == nullptr);
    CHECK(rb.bytes_per_record() == 4 * O + 4 * A + 4 + 1 + 4);

    ReplaySettings dog;
    dog.obs_dim = 223;
    dog.action_dim = 38;
    dog.capacity = 1000;  // the per-record figure does not depend on the capacity
    CHECK(ReplayBuffer(dog).bytes_per_record() == 1357);
    dog.planner_targets = false;
    CHECK(ReplayBuffer(dog).bytes_per_record() == 1053);
  }

  TEST_CASE("replay: misuse is refused with what to do") {
    ReplayBuffer rb(small(20));
    Batch x(2);
    CHECK(error_of([&] { rb.sample(x.view()); }).find("sample after the first episode has ended") !=
          std::string::npos);
    float obs[O] = {}, act[A] = {}, mu[A] = {};
    CHECK(error_of([&] { rb.end_episode(0, obs); }).find("without a step") != std::string::npos);
    CHECK(error_of([&] { rb.add(0, obs, act, 0, mu, nullptr); }).find("both mu and sigma") !=
          std::string::npos);
    CHECK(error_of([&] {
            rb.add(1, obs, act, 0, nullptr, nullptr);
          }).find("env 1 is not in [0, 1)") != std::string::npos);
    for (int t = 0; t < 19; ++t) rb.add(0, obs, act, 0, nullptr, nullptr);  // 20 records: fits
    CHECK(error_of([&] {
            rb.add(0, obs, act, 0, nullptr, nullptr);
          }).find("an episode of 20 steps does not fit in capacity 20 records") !=
          std::string::npos);
    ReplaySettings bad = small(3);
    CHECK(error_of([&] {
            ReplayBuffer r(bad);
          }).find("capacity (3) must hold at least one slice") != std::string::npos);
  }
}
