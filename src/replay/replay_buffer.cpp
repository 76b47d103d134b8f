// src/replay/replay_buffer.cpp: the replay buffer (see replay_buffer.h for the contract).
#include "replay/replay_buffer.h"

#include <algorithm>
#include <charconv>
#include <cstdlib>
#include <cstring>

#include "common.h"
#include "io/checksum.h"
#include "io/safetensors.h"
#include "philox.cuh"

namespace pompc::replay {

namespace {

constexpr uint8_t kHasTarget = 1, kFinal = 2;
constexpr const char* kFormat = "pompc-replay-buffer";
// Version 2 records "checksum" (io::Hash::lanes over the tensors and the metadata); version 1
// (pompc before it, still read) recorded none.
constexpr const char* kVersion = "2";
constexpr const char* kVersionV1 = "1";

// Uniform integer in [0, n) from one 64-bit draw (multiply-high; bias below n / 2^64).
uint64_t uniform_below(uint64_t r, uint64_t n) {
  return static_cast<uint64_t>((static_cast<unsigned __int128>(r) * n) >> 64);
}

int64_t meta_int(const io::SafetensorsFile& f, const std::string& key) {
  const std::string& v = f.meta(key);
  int64_t x = 0;
  const auto r = std::from_chars(v.data(), v.data() + v.size(), x);
  POMPC_REQUIRE(r.ec == std::errc() && r.ptr == v.data() + v.size() && !v.empty(),
                "%s: metadata %s = '%s' is not an integer: corrupted replay buffer file",
                f.path().c_str(), key.c_str(), v.c_str());
  return x;
}

}  // namespace

void ReplayBuffer::FreeDeleter::operator()(void* p) const {
  std::free(p);
}

// Uninitialised (malloc), so the pages are committed only as the ring fills. (Transparent huge
// pages via madvise were measured: no clear gain in sample(), a 6x slower first fill.)
template <class T>
ReplayBuffer::HostArray<T> ReplayBuffer::allocate(size_t n) {
  const size_t bytes = std::max<size_t>(n * sizeof(T), 1);
  void* p = std::malloc(bytes);
  POMPC_REQUIRE(p != nullptr,
                "replay buffer: cannot allocate %.2f GB of host memory: lower the buffer capacity",
                static_cast<double>(bytes) / 1e9);
  return HostArray<T>(static_cast<T*>(p));
}

ReplayBuffer::ReplayBuffer(const ReplaySettings& s) : s_(s), O_(s.obs_dim), A_(s.action_dim) {
  POMPC_REQUIRE(s.obs_dim >= 1, "replay buffer: obs_dim (%d) must be >= 1", s.obs_dim);
  POMPC_REQUIRE(s.action_dim >= 1, "replay buffer: action_dim (%d) must be >= 1", s.action_dim);
  POMPC_REQUIRE(s.horizon >= 1, "replay buffer: horizon (%d) must be >= 1", s.horizon);
  POMPC_REQUIRE(s.capacity >= s.horizon + 1,
                "replay buffer: capacity (%lld) must hold at least one slice of horizon + 1 = %d "
                "records",
                static_cast<long long>(s.capacity), s.horizon + 1);
  POMPC_REQUIRE(s.capacity <= (int64_t{1} << 40), "replay buffer: capacity (%lld) is too large",
                static_cast<long long>(s.capacity));
  POMPC_REQUIRE(s.num_envs >= 1, "replay buffer: num_envs (%d) must be >= 1", s.num_envs);
  const size_t C = static_cast<size_t>(s.capacity);
  obs_ = allocate<float>(C * static_cast<size_t>(O_));
  action_ = allocate<float>(C * static_cast<size_t>(A_));
  reward_ = allocate<float>(C);
  if (s.planner_targets) {
    mu_ = allocate<float>(C * static_cast<size_t>(A_));
    sigma_ = allocate<float>(C * static_cast<size_t>(A_));
  }
  flags_ = allocate<uint8_t>(C);
  episode_ = allocate<uint32_t>(C);
  staging_.resize(static_cast<size_t>(s.num_envs));
}

ReplayBuffer::~ReplayBuffer() = default;

size_t ReplayBuffer::bytes_per_record() const {
  const size_t O = static_cast<size_t>(O_), A = static_cast<size_t>(A_);
  return 4 * O + 4 * A + 4 + (s_.planner_targets ? 8 * A : 0) + 1 + 4;
}

// ---- collecting --------------------------------------------------------------------------------

void ReplayBuffer::add(int env, const float* obs, const float* action, float reward,
                       const float* mu, const float* sigma) {
  POMPC_REQUIRE(env >= 0 && env < s_.num_envs, "replay buffer: env %d is not in [0, %d)", env,
                s_.num_envs);
  POMPC_REQUIRE(obs && action, "replay buffer: add() needs obs and action");
  POMPC_REQUIRE((mu == nullptr) == (sigma == nullptr),
                "replay buffer: give both mu and sigma of the planner target, or neither");
  Staging& st = staging_[static_cast<size_t>(env)];
  POMPC_REQUIRE(st.records + 2 <= s_.capacity,
                "replay buffer: an episode of %lld steps does not fit in capacity %lld records; "
                "raise buffer capacity",
                static_cast<long long>(st.records + 1), static_cast<long long>(s_.capacity));
  st.obs.insert(st.obs.end(), obs, obs + O_);
  st.action.insert(st.action.end(), action, action + A_);
  st.reward.push_back(reward);
  uint8_t f = 0;
  if (s_.planner_targets) {
    if (mu) {
      st.mu.insert(st.mu.end(), mu, mu + A_);
      st.sigma.insert(st.sigma.end(), sigma, sigma + A_);
      f = kHasTarget;
    } else {
      st.mu.insert(st.mu.end(), static_cast<size_t>(A_), 0.0f);
      st.sigma.insert(st.sigma.end(), static_cast<size_t>(A_), 1.0f);
    }
  }
  st.flags.push_back(f);
  ++st.records;
}

int64_t ReplayBuffer::staged_steps(int env) const {
  POMPC_REQUIRE(env >= 0 && env < s_.num_envs, "replay buffer: env %d is not in [0, %d)", env,
                s_.num_envs);
  return staging_[static_cast<size_t>(env)].records;
}

int64_t ReplayBuffer::valid_of(const Episode& e) const {
  return std::max<int64_t>(0, e.length - s_.horizon);
}

void ReplayBuffer::make_room(int64_t n) {
  int64_t over = size_ + n - s_.capacity;  // records about to be overwritten: the oldest ones
  while (over > 0) {
    Episode& e = episodes_.front();
    const int64_t k = std::min(over, e.length);
    e.start = (e.start + k) % s_.capacity;
    e.length -= k;
    over -= k;
    if (e.length == 0) episodes_.pop_front();
  }
}

void ReplayBuffer::end_episode(int env, const float* final_obs) {
  POMPC_REQUIRE(env >= 0 && env < s_.num_envs, "replay buffer: env %d is not in [0, %d)", env,
                s_.num_envs);
  POMPC_REQUIRE(final_obs, "replay buffer: end_episode() needs the final observation");
  Staging& st = staging_[static_cast<size_t>(env)];
  POMPC_REQUIRE(st.records >= 1,
                "replay buffer: end_episode(%d) without a step: add() every step first", env);
  const int64_t L = st.records + 1;  // + the final record
  const int64_t C = s_.capacity;
  make_room(L);

  // Copy the staged steps and the final record into the ring at head_, wrapping once at most.
  const size_t O = static_cast<size_t>(O_), A = static_cast<size_t>(A_);
  const uint32_t id = next_episode_id_;
  for (int64_t r = 0; r < L; ++r) {
    const size_t dst = static_cast<size_t>((head_ + r) % C);
    const size_t src = static_cast<size_t>(r);
    const bool fin = r == L - 1;
    if (fin) {
      std::memcpy(obs_.get() + dst * O, final_obs, O * sizeof(float));
      std::memset(action_.get() + dst * A, 0, A * sizeof(float));
      reward_[dst] = 0.0f;
      if (s_.planner_targets) {
        std::fill_n(mu_.get() + dst * A, A, 0.0f);
        std::fill_n(sigma_.get() + dst * A, A, 1.0f);
      }
      flags_[dst] = kFinal;
    } else {
      std::memcpy(obs_.get() + dst * O, st.obs.data() + src * O, O * sizeof(float));
      std::memcpy(action_.get() + dst * A, st.action.data() + src * A, A * sizeof(float));
      reward_[dst] = st.reward[src];
      if (s_.planner_targets) {
        std::memcpy(mu_.get() + dst * A, st.mu.data() + src * A, A * sizeof(float));
        std::memcpy(sigma_.get() + dst * A, st.sigma.data() + src * A, A * sizeof(float));
      }
      flags_[dst] = st.flags[src];
    }
    episode_[dst] = id;
  }
  Episode e{head_, L, id, cum_total_ + static_cast<uint64_t>(std::max<int64_t>(0, L - s_.horizon))};
  cum_total_ = e.cum_end;
  episodes_.push_back(e);
  ++next_episode_id_;
  head_ = (head_ + L) % C;
  size_ = std::min(C, size_ + L);

  st.obs.clear();
  st.action.clear();
  st.reward.clear();
  st.mu.clear();
  st.sigma.clear();
  st.flags.clear();
  st.records = 0;
}

// ---- sampling ----------------------------------------------------------------------------------

int64_t ReplayBuffer::valid_starts() const {
  if (episodes_.empty()) return 0;
  const Episode& f = episodes_.front();
  return static_cast<int64_t>(cum_total_ - (f.cum_end - static_cast<uint64_t>(valid_of(f))));
}

void ReplayBuffer::sample(const SliceBatch& out) {
  const int B = out.batch, H = s_.horizon;
  POMPC_REQUIRE(B >= 1, "replay buffer: batch size (%d) must be >= 1", B);
  POMPC_REQUIRE(out.obs && out.action && out.reward,
                "replay buffer: sample() needs obs, action and reward arrays");
  POMPC_REQUIRE(s_.planner_targets || (!out.mu && !out.sigma),
                "replay buffer: planner targets were asked for, but this buffer stores none "
                "(planner_targets=false)");
  const int64_t total = valid_starts();
  POMPC_REQUIRE(total > 0,
                "replay buffer: no episode has horizon + 1 = %d records yet (%lld records in %lld "
                "episodes): sample after the first episode has ended",
                H + 1, static_cast<long long>(size_), static_cast<long long>(episodes_.size()));
  const uint64_t lo = cum_total_ - static_cast<uint64_t>(total);
  const int64_t C = s_.capacity;
  const size_t O = static_cast<size_t>(O_), A = static_cast<size_t>(A_);
  const size_t Bs = static_cast<size_t>(B);

  // Pass 1: the slice starts.
  if (starts_.size() < Bs) starts_.resize(Bs);
  for (int b = 0; b < B; ++b) {
    const uint64_t i = 2 * static_cast<uint64_t>(b);
    const uint64_t r = static_cast<uint64_t>(philox_u32(s_.seed, sample_calls_, i)) |
                       static_cast<uint64_t>(philox_u32(s_.seed, sample_calls_, i + 1)) << 32;
    const uint64_t u = lo + uniform_below(r, static_cast<uint64_t>(total));
    const auto it = std::upper_bound(episodes_.begin(), episodes_.end(), u,
                                     [](uint64_t v, const Episode& e) { return v < e.cum_end; });
    const uint64_t first = it->cum_end - static_cast<uint64_t>(valid_of(*it));
    starts_[static_cast<size_t>(b)] = (it->start + static_cast<int64_t>(u - first)) % C;
  }
  // Pass 2: the gather, with the rows of slice b + kAhead prefetched (the accesses are random
  // in a GB-sized ring, so each is a cache and TLB miss otherwise paid in sequence).
  constexpr int kAhead = 8;
  auto prefetch = [&](int b) {
    const size_t rec = static_cast<size_t>(starts_[static_cast<size_t>(b)]);
    __builtin_prefetch(obs_.get() + rec * O);
    __builtin_prefetch(action_.get() + rec * A);
    __builtin_prefetch(reward_.get() + rec);
    __builtin_prefetch(flags_.get() + rec);
    if (mu_) {
      __builtin_prefetch(mu_.get() + rec * A);
      __builtin_prefetch(sigma_.get() + rec * A);
    }
  };
  for (int b = 0; b < std::min(B, kAhead); ++b) prefetch(b);
  for (int b = 0; b < B; ++b) {
    if (b + kAhead < B) prefetch(b + kAhead);
    const int64_t start = starts_[static_cast<size_t>(b)];
    for (int t = 0; t <= H; ++t) {
      const size_t rec = static_cast<size_t>((start + t) % C);
      const size_t row = static_cast<size_t>(t) * Bs + static_cast<size_t>(b);
      std::memcpy(out.obs + row * O, obs_.get() + rec * O, O * sizeof(float));
      if (out.index) out.index[row] = static_cast<int64_t>(rec);
      if (t == H) break;
      std::memcpy(out.action + row * A, action_.get() + rec * A, A * sizeof(float));
      out.reward[row] = reward_[rec];
      const bool has = flags_[rec] & kHasTarget;
      if (out.mu) {
        if (has)
          std::memcpy(out.mu + row * A, mu_.get() + rec * A, A * sizeof(float));
        else
          std::fill_n(out.mu + row * A, A, 0.0f);
      }
      if (out.sigma) {
        if (has)
          std::memcpy(out.sigma + row * A, sigma_.get() + rec * A, A * sizeof(float));
        else
          std::fill_n(out.sigma + row * A, A, 1.0f);
      }
    }
  }
  ++sample_calls_;
}

void ReplayBuffer::write_targets(const int64_t* index, const float* mu, const float* sigma,
                                 size_t n) {
  POMPC_REQUIRE(s_.planner_targets,
                "replay buffer: write_targets() on a buffer without planner targets "
                "(planner_targets=false)");
  POMPC_REQUIRE(n == 0 || (index && mu && sigma), "replay buffer: write_targets() needs arrays");
  const size_t A = static_cast<size_t>(A_);
  for (size_t k = 0; k < n; ++k) {
    const int64_t i = index[k];
    check_index(i, "write_targets");
    POMPC_REQUIRE(!(flags_[i] & kFinal),
                  "replay buffer: write_targets() at index %lld, the final record of an episode "
                  "(it has no action): write back records index[t] for t < H only",
                  static_cast<long long>(i));
    std::memcpy(mu_.get() + static_cast<size_t>(i) * A, mu + k * A, A * sizeof(float));
    std::memcpy(sigma_.get() + static_cast<size_t>(i) * A, sigma + k * A, A * sizeof(float));
    flags_[i] |= kHasTarget;
  }
}

void ReplayBuffer::write_batch_targets(const SliceBatch& b, int slices) {
  POMPC_REQUIRE(b.index && b.mu && b.sigma,
                "replay buffer: write_batch_targets() needs the batch's index, mu and sigma");
  POMPC_REQUIRE(slices >= 0 && slices <= b.batch,
                "replay buffer: write_batch_targets(): slices (%d) must be in [0, B = %d]", slices,
                b.batch);
  const size_t A = static_cast<size_t>(A_), B = static_cast<size_t>(b.batch);
  for (int t = 0; t < s_.horizon; ++t) {
    const size_t row = static_cast<size_t>(t) * B;
    write_targets(b.index + row, b.mu + row * A, b.sigma + row * A, static_cast<size_t>(slices));
  }
}

// ---- record access -----------------------------------------------------------------------------

void ReplayBuffer::check_index(int64_t i, const char* what) const {
  POMPC_REQUIRE(i >= 0 && i < size_, "replay buffer: %s: index %lld is not in [0, %lld)", what,
                static_cast<long long>(i), static_cast<long long>(size_));
}

const float* ReplayBuffer::obs_at(int64_t i) const {
  check_index(i, "obs_at");
  return obs_.get() + static_cast<size_t>(i) * static_cast<size_t>(O_);
}
const float* ReplayBuffer::action_at(int64_t i) const {
  check_index(i, "action_at");
  return action_.get() + static_cast<size_t>(i) * static_cast<size_t>(A_);
}
float ReplayBuffer::reward_at(int64_t i) const {
  check_index(i, "reward_at");
  return reward_[i];
}
const float* ReplayBuffer::mu_at(int64_t i) const {
  check_index(i, "mu_at");
  return mu_ ? mu_.get() + static_cast<size_t>(i) * static_cast<size_t>(A_) : nullptr;
}
const float* ReplayBuffer::sigma_at(int64_t i) const {
  check_index(i, "sigma_at");
  return sigma_ ? sigma_.get() + static_cast<size_t>(i) * static_cast<size_t>(A_) : nullptr;
}
bool ReplayBuffer::has_target(int64_t i) const {
  check_index(i, "has_target");
  return flags_[i] & kHasTarget;
}
bool ReplayBuffer::is_final(int64_t i) const {
  check_index(i, "is_final");
  return flags_[i] & kFinal;
}
uint32_t ReplayBuffer::episode_of(int64_t i) const {
  check_index(i, "episode_of");
  return episode_[i];
}

// ---- save / load -------------------------------------------------------------------------------

void ReplayBuffer::save(const std::string& path) const {
  using io::DType;
  const int64_t n = size_;
  std::vector<io::TensorView> t;
  t.push_back({"obs", DType::F32, {n, O_}, obs_.get()});
  t.push_back({"action", DType::F32, {n, A_}, action_.get()});
  t.push_back({"reward", DType::F32, {n}, reward_.get()});
  if (s_.planner_targets) {
    t.push_back({"mu", DType::F32, {n, A_}, mu_.get()});
    t.push_back({"sigma", DType::F32, {n, A_}, sigma_.get()});
  }
  t.push_back({"flags", DType::U8, {n}, flags_.get()});
  t.push_back({"episode_id", DType::U32, {n}, episode_.get()});
  std::vector<int64_t> eps;
  for (const Episode& e : episodes_) {
    eps.push_back(e.start);
    eps.push_back(e.length);
    eps.push_back(e.id);
    eps.push_back(static_cast<int64_t>(e.cum_end));
  }
  t.push_back({"episodes", DType::I64, {static_cast<int64_t>(episodes_.size()), 4}, eps.data()});
  io::Metadata meta = {
      {"format", kFormat},
      {"version", kVersion},
      {"capacity", std::to_string(s_.capacity)},
      {"obs_dim", std::to_string(s_.obs_dim)},
      {"action_dim", std::to_string(s_.action_dim)},
      {"horizon", std::to_string(s_.horizon)},
      {"planner_targets", s_.planner_targets ? "1" : "0"},
      {"num_envs", std::to_string(s_.num_envs)},
      {"seed", std::to_string(s_.seed)},
      {"head", std::to_string(head_)},
      {"size", std::to_string(size_)},
      {"cum_total", std::to_string(cum_total_)},
      {"next_episode_id", std::to_string(next_episode_id_)},
      {"sample_calls", std::to_string(sample_calls_)},
  };
  for (size_t k = 0; k < staging_.size(); ++k) {
    const Staging& st = staging_[k];
    meta["staging." + std::to_string(k) + ".steps"] = std::to_string(st.records);
    if (st.records == 0) continue;
    const std::string p = "staging." + std::to_string(k) + ".";
    const int64_t r = st.records;
    t.push_back({p + "obs", DType::F32, {r, O_}, st.obs.data()});
    t.push_back({p + "action", DType::F32, {r, A_}, st.action.data()});
    t.push_back({p + "reward", DType::F32, {r}, st.reward.data()});
    if (s_.planner_targets) {
      t.push_back({p + "mu", DType::F32, {r, A_}, st.mu.data()});
      t.push_back({p + "sigma", DType::F32, {r, A_}, st.sigma.data()});
    }
    t.push_back({p + "flags", DType::U8, {r}, st.flags.data()});
  }
  meta["checksum"] = io::checksum(io::Hash::lanes, t, &meta);
  io::save_safetensors(path, t, meta);
}

bool ReplayBuffer::load(const std::string& path) {
  using io::DType;
  const char* p = path.c_str();
  std::unique_ptr<io::SafetensorsFile> file;
  try {
    file = std::make_unique<io::SafetensorsFile>(path);
  } catch (const Error& e) {
    throw Error(
        strfmt("replay buffer file %s is not readable (%s): it is damaged or not a "
               "replay buffer file; put back an intact copy or start without it",
               p, e.what()));
  }
  const io::SafetensorsFile& f = *file;
  POMPC_REQUIRE(f.metadata().count("format") && f.meta("format") == kFormat,
                "replay buffer file %s is not a pompc replay buffer (metadata format != %s): it "
                "is damaged or was not written by pompc",
                p, kFormat);
  const auto version = f.metadata().find("version");
  POMPC_REQUIRE(version != f.metadata().end() &&
                    (version->second == kVersion || version->second == kVersionV1),
                "replay buffer file %s is not format version %s or %s (this pompc reads "
                "those): it is damaged or was written by another pompc",
                p, kVersionV1, kVersion);
  // Version 2: the checksum before anything else in the file is looked at.
  const bool verified = version->second == kVersion;
  if (verified) {
    POMPC_REQUIRE(f.metadata().count("checksum"),
                  "replay buffer file %s lacks its checksum record: it is damaged; put back an "
                  "intact copy or start without it",
                  p);
    const std::string sum = io::file_checksum(f, io::Hash::lanes, true);
    POMPC_REQUIRE(sum == f.meta("checksum"),
                  "replay buffer file %s is corrupted: the checksum of its tensors and metadata "
                  "is %s, the file records %s. It was damaged after it was written (pompc "
                  "replaces it atomically): put back an intact copy or start without it",
                  p, sum.c_str(), f.meta("checksum").c_str());
  }
  auto same = [&](const char* key, int64_t mine) {
    const int64_t theirs = meta_int(f, key);
    POMPC_REQUIRE(theirs == mine,
                  "%s was saved with %s=%lld, this run has %s=%lld: resume with the settings "
                  "(task, config) of the run that saved it",
                  p, key, static_cast<long long>(theirs), key, static_cast<long long>(mine));
  };
  same("capacity", s_.capacity);
  same("obs_dim", s_.obs_dim);
  same("action_dim", s_.action_dim);
  same("horizon", s_.horizon);
  same("planner_targets", s_.planner_targets ? 1 : 0);
  same("num_envs", s_.num_envs);
  POMPC_REQUIRE(f.meta("seed") == std::to_string(s_.seed),
                "%s was saved with seed=%s, this run has seed=%llu: resume with the same seed", p,
                f.meta("seed").c_str(), static_cast<unsigned long long>(s_.seed));

  const int64_t C = s_.capacity, n = meta_int(f, "size"), head = meta_int(f, "head");
  POMPC_REQUIRE(n >= 0 && n <= C && head >= 0 && head < C && (n == C || head == n),
                "%s: inconsistent ring state (size %lld, head %lld, capacity %lld): corrupted "
                "file",
                p, static_cast<long long>(n), static_cast<long long>(head),
                static_cast<long long>(C));
  // The episode table is [episodes, 4]; any other shape is refused by load_tensors below.
  const io::TensorInfo* table = f.find("episodes");
  const int64_t n_eps = table && !table->shape.empty() ? table->shape[0] : 0;
  std::vector<int64_t> eps(static_cast<size_t>(n_eps) * 4);

  std::vector<io::TensorDest> d;
  d.push_back({"obs", DType::F32, {n, O_}, obs_.get()});
  d.push_back({"action", DType::F32, {n, A_}, action_.get()});
  d.push_back({"reward", DType::F32, {n}, reward_.get()});
  if (s_.planner_targets) {
    d.push_back({"mu", DType::F32, {n, A_}, mu_.get()});
    d.push_back({"sigma", DType::F32, {n, A_}, sigma_.get()});
  }
  d.push_back({"flags", DType::U8, {n}, flags_.get()});
  d.push_back({"episode_id", DType::U32, {n}, episode_.get()});
  d.push_back({"episodes", DType::I64, {n_eps, 4}, eps.data()});
  std::vector<Staging> staging(staging_.size());
  for (size_t k = 0; k < staging.size(); ++k) {
    Staging& st = staging[k];
    const std::string pre = "staging." + std::to_string(k) + ".";
    st.records = meta_int(f, pre + "steps");
    POMPC_REQUIRE(st.records >= 0 && st.records < C, "%s: %ssteps = %lld: corrupted file", p,
                  pre.c_str(), static_cast<long long>(st.records));
    if (st.records == 0) continue;
    const int64_t r = st.records;
    const size_t rs = static_cast<size_t>(r);
    st.obs.resize(rs * static_cast<size_t>(O_));
    st.action.resize(rs * static_cast<size_t>(A_));
    st.reward.resize(rs);
    st.flags.resize(rs);
    d.push_back({pre + "obs", DType::F32, {r, O_}, st.obs.data()});
    d.push_back({pre + "action", DType::F32, {r, A_}, st.action.data()});
    d.push_back({pre + "reward", DType::F32, {r}, st.reward.data()});
    if (s_.planner_targets) {
      st.mu.resize(rs * static_cast<size_t>(A_));
      st.sigma.resize(rs * static_cast<size_t>(A_));
      d.push_back({pre + "mu", DType::F32, {r, A_}, st.mu.data()});
      d.push_back({pre + "sigma", DType::F32, {r, A_}, st.sigma.data()});
    }
    d.push_back({pre + "flags", DType::U8, {r}, st.flags.data()});
  }
  io::load_tensors(f, d, "was it saved by a run with other settings?");

  // The episode table must describe the ring it came with: episodes laid end to end up to head
  // (from slot 0 while the ring has not wrapped), each but the first (which may have lost
  // records to the ring) exactly valid_of(length) valid starts above its predecessor. sample()
  // maps a draw to a ring index through this table, so a row that breaks it would read outside
  // the ring.
  std::deque<Episode> episodes;
  uint64_t prev_cum = 0;
  int64_t records = 0;
  for (int64_t k = 0; k < n_eps; ++k) {
    const int64_t* e = eps.data() + 4 * k;
    Episode ep{e[0], e[1], static_cast<uint32_t>(e[2]), static_cast<uint64_t>(e[3])};
    bool ok = ep.start >= 0 && ep.start < C && ep.length >= 1 && ep.length <= C && e[3] >= 0;
    const uint64_t valid = static_cast<uint64_t>(ok ? valid_of(ep) : 0);
    if (k == 0) {
      ok = ok && ep.cum_end >= valid;
    } else {
      const Episode& prev = episodes.back();
      ok = ok && ep.start == (prev.start + prev.length) % C && ep.cum_end - prev_cum == valid &&
           ep.cum_end >= prev_cum;
    }
    POMPC_REQUIRE(ok, "%s: episode table row %lld is inconsistent: corrupted file", p,
                  static_cast<long long>(k));
    prev_cum = ep.cum_end;
    records += ep.length;
    episodes.push_back(ep);
  }
  const uint64_t cum_total = static_cast<uint64_t>(meta_int(f, "cum_total"));
  const bool tiled =
      episodes.empty() || ((episodes.back().start + episodes.back().length) % C == head &&
                           (n == C || (episodes.front().start == 0 && records == n)));
  POMPC_REQUIRE(records <= n && tiled && (episodes.empty() || cum_total == prev_cum),
                "%s: the episode table does not match the ring: corrupted file", p);

  head_ = head;
  size_ = n;
  episodes_ = std::move(episodes);
  cum_total_ = cum_total;
  next_episode_id_ = static_cast<uint32_t>(meta_int(f, "next_episode_id"));
  sample_calls_ = static_cast<uint64_t>(meta_int(f, "sample_calls"));
  staging_ = std::move(staging);
  return verified;
}

}  // namespace pompc::replay
