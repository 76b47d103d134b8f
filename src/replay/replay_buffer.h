// src/replay/replay_buffer.h: host-memory replay buffer of episodes, sampled as slices of H + 1
// steps, with planner targets that lazy reanalysis rewrites in place (SPEC.md sections 2 and 5).
//
// Run book
//   records              the ring holds `capacity` records (default 1M). Record t of an episode
//                        holds obs_t [O], the action a_t [A] taken at obs_t, the reward r_t that
//                        followed, and the planner target (mu_p [A], sigma_p [A]) computed at
//                        obs_t; its last record holds only the final observation obs_L. An
//                        episode of L steps takes L + 1 records (DMC: 501), as in TD-MPC2 /
//                        BMPC, whose buffers store the same rows shifted by one (their row k holds
//                        obs_k with the action, reward and planner target that led to it, and row
//                        0 holds NaN placeholders; their sampler takes action[1:], reward[1:],
//                        expert_action_dist[1:] of a slice, which is exactly our rows 0..H-1).
//   sentinel             a record whose action the planner did not produce (seed phase, or the
//                        final record) stores no planner target (a flag, not a NaN); sampling
//                        writes mu = 0, sigma = 1 (BMPC's N(0, 1) replacement) in its place.
//   collecting           add(env, obs, action, reward, mu, sigma) stages one step of environment
//                        `env` (mu = sigma = nullptr: no planner target); end_episode(env,
//                        final_obs) appends the final record and moves the whole episode into
//                        the ring. Episodes enter the ring and become sampleable only when they
//                        end, as in TD-MPC2 / BMPC (their trainers add whole episodes); several
//                        environments can collect at once (one staging area each). When the ring
//                        is full the new episode overwrites the oldest records; an episode that
//                        loses its first records stays sampleable with what is left of it.
//   sampling             sample(batch) draws B slice starts uniformly over all valid starts (a
//                        record s whose episode has records s..s+H; there are L + 1 - H of them
//                        in an episode of L + 1 records), with replacement, and writes into the
//                        caller's contiguous host arrays, time-major (ready for one copy to the
//                        device):
//                          obs [H+1, B, O], action [H, B, A], reward [H, B],
//                          mu [H, B, A], sigma [H, B, A]   (may be null; sentinels -> 0 / 1)
//                          index [H+1, B] (int64 ring index of every record; may be null)
//                        obs[t], action[t], reward[t], mu[t], sigma[t] all come from record
//                        index[t]; obs[t+1] is the observation after action[t].
//                        TD-MPC2 / BMPC sample with torchrl's SliceSampler(strict_length=True):
//                        an episode uniformly, then a start uniformly inside it. With equal-length
//                        episodes (every DMC task) that is the same distribution as ours; they
//                        differ only for an episode that lost its first records to the ring
//                        (a few hundred of a million records).
//   randomness           Philox4x32-10 (kernels/philox.cuh) keyed by settings.seed; sample call n
//                        uses counter offset n, slice b the words 2b and 2b + 1 (one 64-bit draw,
//                        mapped to [0, n) by a 128-bit multiply). The call counter is part of the
//                        saved state, so a resumed run draws the same batches.
//   write-back           write_targets(index, mu, sigma, n) replaces the planner targets of n
//                        records by ring index (lazy reanalysis: the reanalysed states are obs[t]
//                        of a slice, t < H, i.e. records index[t]); those records stop being
//                        sentinels. Final records (no action) are refused.
//   memory               bytes_per_record() = 4 O + 4 A + 4 + (8 A with planner targets) + 1
//                        (flags) + 4 (episode id). Dog (O = 223, A = 38): 1357 B, so 1M records
//                        are 1.36 GB (1.26 GiB); without planner targets (tdmpc2) 1053 B. The
//                        ring is allocated once at construction (malloc, untouched), so its pages
//                        are committed as the buffer fills; staging grows to one episode per env.
//   threads              not thread-safe: add / end_episode / sample / write_targets / save from
//                        one thread (or under the caller's lock).
//   save / load          save(path) writes the filled rows, the episode table, every staging
//                        area and the sampler state as one safetensors file (F32/U8/U32/I64
//                        tensors, counters in the metadata; format "pompc-replay-buffer" version
//                        2) through the atomic writer, with "checksum": the lane hash of
//                        io/checksum.h over the tensors (name, bytes, name order) and every other
//                        metadata entry. load(path) checks the format and the checksum before
//                        anything else in the file is used: a damaged file (any single bit
//                        flipped, header or data; truncated) is refused with "is corrupted" /
//                        "is damaged", naming the file, and the buffer is left as it was. A
//                        version-1 file (pompc before the checksum) has none: it is loaded
//                        unverified and load returns false, for the caller to say so (the
//                        trainer prints one line). Then load checks that capacity, O, A, H,
//                        planner_targets, num_envs and seed match (the error names the setting)
//                        and restores everything, so sampling after a resume continues bit for
//                        bit. The checksum costs save one hash of the buffer in memory and load
//                        one more read of the file: for a full dog buffer (1.36 GB) ~0.1 s and
//                        ~0.2 s, against ~3-4 s for the save (fsync) and ~0.7 s for the load.
//   tests / bench        build/test_emu -ts=agent -tc='*replay*'
//                        build/bench -ts=bench -tc='*replay*' (µs per B=256, H=3 batch of a
//                        full 1M-record dog buffer; prints the memory figure, save / load time
//                        and the checksum's cost)
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <vector>

namespace pompc::replay {

struct ReplaySettings {
  int64_t capacity = 1'000'000;  // records in the ring (an episode of L steps takes L + 1)
  int obs_dim = 0;               // O
  int action_dim = 0;            // A
  int horizon = 3;               // H: a slice is H + 1 consecutive records of one episode
  bool planner_targets = true;   // store mu_p / sigma_p (false: 2 A floats per record saved)
  int num_envs = 1;              // environments collecting at once (one staging area each)
  uint64_t seed = 1;             // Philox key of the sampler
};

// Caller-owned, contiguous, time-major host arrays for one batch (see the run book).
struct SliceBatch {
  int batch = 0;             // B
  float* obs = nullptr;      // [H+1, B, O]
  float* action = nullptr;   // [H, B, A]
  float* reward = nullptr;   // [H, B]
  float* mu = nullptr;       // [H, B, A]    optional
  float* sigma = nullptr;    // [H, B, A]    optional
  int64_t* index = nullptr;  // [H+1, B]     optional
};

class ReplayBuffer {
 public:
  explicit ReplayBuffer(const ReplaySettings& s);
  ~ReplayBuffer();
  ReplayBuffer(const ReplayBuffer&) = delete;
  ReplayBuffer& operator=(const ReplayBuffer&) = delete;

  // ---- collecting
  // One step of environment `env`: obs_t [O], action a_t [A], reward r_t, the planner target at
  // obs_t (mu, sigma [A] each; both nullptr when the planner did not choose a_t).
  void add(int env, const float* obs, const float* action, float reward, const float* mu,
           const float* sigma);
  // Ends env's episode with its final observation [O]; the episode enters the ring.
  void end_episode(int env, const float* final_obs);
  // Steps staged for env's current episode.
  int64_t staged_steps(int env) const;

  // ---- sampling and write-back
  void sample(const SliceBatch& out);
  void write_targets(const int64_t* index, const float* mu, const float* sigma, size_t n);
  // Writes back the planner targets of the first `slices` slices of a sampled batch (records
  // index[t, b] for t < H, b < slices, from the batch's mu / sigma): what lazy reanalysis
  // re-planned. The batch needs index, mu and sigma.
  void write_batch_targets(const SliceBatch& batch, int slices);

  // ---- state
  int64_t size() const { return size_; }  // records in the ring
  int64_t capacity() const { return s_.capacity; }
  int64_t num_episodes() const { return static_cast<int64_t>(episodes_.size()); }
  int64_t episodes_added() const { return next_episode_id_; }
  int64_t valid_starts() const;  // slice starts sampling chooses from
  uint64_t sample_calls() const { return sample_calls_; }
  size_t bytes_per_record() const;
  size_t ring_bytes() const { return bytes_per_record() * static_cast<size_t>(s_.capacity); }

  // One record, by ring index (for tests, checks and tools; index < size()).
  const float* obs_at(int64_t i) const;
  const float* action_at(int64_t i) const;
  float reward_at(int64_t i) const;
  const float* mu_at(int64_t i) const;     // nullptr without planner targets
  const float* sigma_at(int64_t i) const;  // nullptr without planner targets
  bool has_target(int64_t i) const;
  bool is_final(int64_t i) const;        // the last record of its episode (obs only)
  uint32_t episode_of(int64_t i) const;  // id of the episode the record belongs to

  // ---- resume
  void save(const std::string& path) const;
  // true: the file's checksum matched; false: a version-1 file (older pompc, no checksum),
  // loaded unverified (the caller says so). Damage is refused before anything is used.
  bool load(const std::string& path);

 private:
  struct Episode {
    int64_t start;   // ring index of its first surviving record
    int64_t length;  // surviving records
    uint32_t id;
    uint64_t cum_end;  // running total of valid starts up to and including this episode
  };
  struct Staging {  // one environment's episode in progress
    std::vector<float> obs, action, reward, mu, sigma;
    std::vector<uint8_t> flags;
    int64_t records = 0;
  };
  void check_index(int64_t i, const char* what) const;
  int64_t valid_of(const Episode& e) const;
  void make_room(int64_t n);  // trims the oldest episodes so that n records fit at head_

  struct FreeDeleter {
    void operator()(void* p) const;
  };
  template <class T>
  using HostArray = std::unique_ptr<T[], FreeDeleter>;
  template <class T>
  static HostArray<T> allocate(size_t n);

  ReplaySettings s_;
  int64_t O_, A_;
  // The ring: one array per field, `capacity` rows each (allocated once, written lazily).
  HostArray<float> obs_, action_, reward_, mu_, sigma_;
  HostArray<uint8_t> flags_;  // bit 0: has planner target, bit 1: final record
  HostArray<uint32_t> episode_;
  std::vector<int64_t> starts_;   // sample() scratch: slice starts (grows to the largest B)
  int64_t head_ = 0;              // next ring index to write
  int64_t size_ = 0;              // rows holding data
  std::deque<Episode> episodes_;  // oldest first
  uint64_t cum_total_ = 0;        // cum_end of the newest episode
  uint32_t next_episode_id_ = 0;
  uint64_t sample_calls_ = 0;
  std::vector<Staging> staging_;
};

}  // namespace pompc::replay
