// tests/fuzz/fuzz.cpp: the mutation engine and the parser targets (see fuzz.h for the run book).
#include "fuzz.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <random>
#include <typeinfo>

#include "common.h"
#include "io/config.h"
#include "io/json.h"
#include "io/atomic_file.h"
#include "io/safetensors.h"
#include "../replay_file_v1.h"
#include "replay/replay_buffer.h"
#include "train/trainer.h"

namespace pompc::fuzz {

namespace {

constexpr size_t kMaxInput = 1 << 16;  // mutated inputs are cut to 64 KB
constexpr size_t kMaxGrown = 256;      // accepted inputs kept beside the seeds

// Splits a space-separated list.
std::vector<std::string> words(const std::string& list) {
  std::vector<std::string> v;
  for (size_t p = 0; p < list.size();) {
    const size_t e = std::min(list.find(' ', p), list.size());
    v.push_back(list.substr(p, e - p));
    p = e + 1;
  }
  return v;
}

// 64-bit values at the edges (written over 8 bytes, or over the safetensors length prefix).
const std::vector<uint64_t> kValues = [] {
  std::vector<uint64_t> v;
  for (const std::string& w :
       words("0 1 7 8 9 0x7f 0x80 0xff 0x100 0x7fffffff 0x80000000 0xffffffff 0x100000000 "
             "100000000 100000001 0x7fffffffffffffff 0x8000000000000000 0xfffffffffffffff8 "
             "0xffffffffffffffff"))
    v.push_back(std::strtoull(w.c_str(), nullptr, 0));
  return v;
}();

// Numbers at the edges of the integer types and of the parsers' limits.
const std::vector<std::string> kNumbers = words(
    "0 1 -1 7 8 255 256 65535 65536 2147483647 2147483648 4294967295 4294967296 100000000 "
    "100000001 9223372036854775807 9223372036854775808 18446744073709551615 "
    "18446744073709551616 -9223372036854775809 99999999999999999999999999 1e308 1e309 -0 0.5 "
    "1e-400 nan inf -inf 1e6 0x10");

void put_le64(std::string& s, size_t at, uint64_t v) {
  for (int b = 0; b < 8 && at + size_t(b) < s.size(); ++b)
    s[at + size_t(b)] = char((v >> (8 * b)) & 0xff);
}

uint64_t get_le64(const std::string& s) {
  uint64_t v = 0;
  for (int b = 7; b >= 0; --b) v = (v << 8) | (size_t(b) < s.size() ? uint8_t(s[size_t(b)]) : 0);
  return v;
}

class Mutator {
 public:
  Mutator(const Target& t, uint64_t seed) : t_(t), rng_(seed) {}

  size_t below(size_t n) { return n ? size_t(rng_() % n) : 0; }

  std::string mutate(std::string s, const std::vector<std::string>& corpus) {
    int n = 1;  // 1 mutation half of the time, 2 a quarter, ... up to 6
    while (n < 6 && below(2)) ++n;
    for (int k = 0; k < n; ++k) once(s, corpus);
    if (s.size() > kMaxInput) s.resize(kMaxInput);
    return s;
  }

 private:
  void once(std::string& s, const std::vector<std::string>& corpus) {
    const size_t at = below(s.size() + 1);
    switch (below(12)) {
      case 0:  // bit flip
        if (!s.empty()) s[below(s.size())] ^= char(1 << below(8));
        break;
      case 1:  // random byte
        if (!s.empty()) s[below(s.size())] = char(rng_());
        break;
      case 2:  // insert 1-4 random bytes
        for (size_t i = 0, m = 1 + below(4); i < m; ++i)
          s.insert(s.begin() + long(at), char(rng_()));
        break;
      case 3:  // delete a range
        if (at < s.size()) s.erase(at, 1 + below(std::min<size_t>(16, s.size() - at)));
        break;
      case 4:  // truncate
        s.resize(below(s.size() + 1));
        break;
      case 5: {  // duplicate a chunk somewhere else
        if (s.empty()) break;
        const size_t from = below(s.size()), len = 1 + below(std::min<size_t>(64, s.size() - from));
        s.insert(at, s.substr(from, len));
        break;
      }
      case 6: {  // splice: our head, another input's tail
        const std::string& o = corpus[below(corpus.size())];
        s = s.substr(0, at) + o.substr(std::min(o.size(), below(o.size() + 1)));
        break;
      }
      case 7:
      case 8: {  // a dictionary token, inserted or written over
        const std::string& tok = t_.dictionary[below(t_.dictionary.size())];
        if (below(2))
          s.insert(at, tok);
        else
          s.replace(at, std::min(tok.size(), s.size() - at), tok);
        break;
      }
      case 9: {  // a run of digits replaced by an interesting number
        size_t d = s.find_first_of("0123456789", at);
        if (d == std::string::npos) d = s.find_first_of("0123456789");
        if (d == std::string::npos) break;
        const size_t e = std::min(s.find_first_not_of("0123456789", d), s.size());
        s.replace(d, e - d, kNumbers[below(kNumbers.size())]);
        break;
      }
      case 10:  // an interesting 64-bit value over 8 bytes
        if (s.size() >= 8)
          put_le64(s, below(s.size() - 7), kValues[below(kValues.size())] + below(3) - 1);
        break;
      case 11:  // the length prefix moved a little or set to an interesting value
        if (t_.length_prefix && s.size() >= 8) {
          const uint64_t n = get_le64(s);
          const uint64_t picks[] = {n + 1,
                                    n - 1,
                                    n + 8,
                                    n - 8,
                                    uint64_t(s.size()) - 8,
                                    uint64_t(s.size()) - 7,
                                    kValues[below(kValues.size())]};
          put_le64(s, 0, picks[below(std::size(picks))]);
        } else if (!s.empty()) {
          s[below(s.size())] = "{}[]\":,\\=\n#"[below(11)];
        }
        break;
    }
  }

  const Target& t_;
  std::mt19937_64 rng_;
};

// ---- json ----------------------------------------------------------------------------------

void write_json(std::string& out, const io::json::Value& v) {
  using K = io::json::Value::Kind;
  switch (v.kind) {
    case K::Null:
      out += "null";
      break;
    case K::Bool:
      out += v.boolean ? "true" : "false";
      break;
    case K::Number:
      out += v.text;
      break;
    case K::String:
      io::json::append_string(out, v.text);
      break;
    case K::Array:
      out += '[';
      for (size_t i = 0; i < v.items.size(); ++i) {
        if (i) out += ',';
        write_json(out, v.items[i]);
      }
      out += ']';
      break;
    case K::Object:
      out += '{';
      for (size_t i = 0; i < v.members.size(); ++i) {
        if (i) out += ',';
        io::json::append_string(out, v.members[i].first);
        out += ':';
        write_json(out, v.members[i].second);
      }
      out += '}';
      break;
  }
}

bool same_json(const io::json::Value& a, const io::json::Value& b) {
  if (a.kind != b.kind || a.boolean != b.boolean || a.text != b.text ||
      a.items.size() != b.items.size() || a.members.size() != b.members.size())
    return false;
  for (size_t i = 0; i < a.items.size(); ++i)
    if (!same_json(a.items[i], b.items[i])) return false;
  for (size_t i = 0; i < a.members.size(); ++i)
    if (a.members[i].first != b.members[i].first ||
        !same_json(a.members[i].second, b.members[i].second))
      return false;
  return true;
}

// as_u64 of every number: a pompc::Error, or the number's own text printed back.
void check_numbers(const io::json::Value& v) {
  if (v.kind == io::json::Value::Kind::Number) {
    uint64_t x = 0;
    try {
      x = io::json::as_u64(v, "number");
    } catch (const Error&) {
      return;
    }
    if (std::to_string(x) != v.text)
      throw Failure("as_u64 read " + v.text + " as " + std::to_string(x));
  }
  for (const auto& i : v.items) check_numbers(i);
  for (const auto& m : v.members) check_numbers(m.second);
}

void run_json(std::string_view in) {
  const io::json::Value v = io::json::parse(in);
  std::string out;
  write_json(out, v);
  io::json::Value w;
  try {
    w = io::json::parse(out);
  } catch (const Error& e) {
    throw Failure(std::string("the accepted document, written back, is refused: ") + e.what() +
                  "; written: " + escaped(out));
  }
  if (!same_json(v, w))
    throw Failure("the accepted document, written back, parses to another tree: " + escaped(out));
  check_numbers(v);
}

// ---- safetensors ---------------------------------------------------------------------------

// An in-memory file (memfd) that SafetensorsFile opens by its /proc/self/fd path: no disk.
class MemFile {
 public:
  explicit MemFile(const char* name) : fd_(::memfd_create(name, MFD_CLOEXEC)) {
    if (fd_ < 0) throw Failure(std::string("memfd_create failed: ") + std::strerror(errno));
    path_ = "/proc/self/fd/" + std::to_string(fd_);
  }
  ~MemFile() { ::close(fd_); }
  MemFile(const MemFile&) = delete;
  MemFile& operator=(const MemFile&) = delete;
  const std::string& set(std::string_view bytes) {
    const bool ok = ::ftruncate(fd_, 0) == 0 &&
                    ::pwrite(fd_, bytes.data(), bytes.size(), 0) == ssize_t(bytes.size());
    if (!ok) throw Failure(std::string("writing a memfd failed: ") + std::strerror(errno));
    return path_;
  }

 private:
  int fd_;
  std::string path_;
};

void run_safetensors(std::string_view in) {
  static MemFile input("fuzz-input"), rewritten("fuzz-rewritten");
  const io::SafetensorsFile f(input.set(in));
  // Every tensor reads in full and in two parts, with the same bytes.
  std::vector<std::string> data;
  std::vector<io::ExpectedTensor> expected;
  for (const io::TensorInfo& t : f.tensors()) {
    std::string whole(size_t(t.nbytes()), '\0'), parts(whole.size(), '\0');
    f.read(t, whole.data(), whole.size());
    const size_t half = whole.size() / 2;
    f.read_part(t, 0, parts.data(), half);
    f.read_part(t, half, parts.data() + half, parts.size() - half);
    if (whole != parts) throw Failure("tensor " + t.name + " reads differently in two parts");
    data.push_back(std::move(whole));
    expected.push_back({t.name, t.dtype, t.shape});
  }
  io::check_tensors(f, expected);
  // Written back from what was read, the file parses to the same table and metadata.
  std::vector<io::TensorView> views;
  for (size_t i = 0; i < data.size(); ++i) {
    const io::TensorInfo& t = f.tensors()[i];
    views.push_back({t.name, t.dtype, t.shape, data[i].data()});
  }
  std::vector<std::pair<uint64_t, uint64_t>> offs;
  std::string out;
  try {
    out = io::safetensors_header(views, f.metadata(), &offs);
  } catch (const Error& e) {
    throw Failure(std::string("the reader accepted a file the writer refuses to write: ") +
                  e.what());
  }
  std::vector<size_t> order(views.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return offs[a] < offs[b]; });
  for (size_t i : order) out += data[i];
  try {
    const io::SafetensorsFile g(rewritten.set(out));
    bool same = g.metadata() == f.metadata() && g.tensors().size() == f.tensors().size();
    for (size_t i = 0; same && i < g.tensors().size(); ++i) {
      const io::TensorInfo &a = f.tensors()[i], &b = g.tensors()[i];
      same =
          a.name == b.name && a.dtype == b.dtype && a.shape == b.shape && a.nbytes() == b.nbytes();
      std::string bytes(size_t(b.nbytes()), '\0');
      if (same) g.read(b, bytes.data(), bytes.size());
      same = same && bytes == data[i];
    }
    if (!same) throw Failure("written back, the file parses to another table: " + escaped(out));
  } catch (const Error& e) {
    throw Failure(std::string("written back, the accepted file is refused: ") + e.what());
  }
}

// Valid files: every dtype, a scalar, empty tensors, metadata with escapes, none at all.
std::vector<std::string> safetensors_seeds() {
  const float f32[6] = {1, -2, 3.5f, 0, 1e-30f, -0.0f};
  const uint8_t u8[5] = {0, 1, 2, 254, 255};
  const int64_t i64 = -5;
  const double f64[2] = {0.25, -1e300};
  const int32_t i32[3] = {-1, 0, 7};
  const uint64_t u64 = ~0ull;
  const uint32_t u32 = 7;
  auto file = [](const std::vector<io::TensorView>& v, const io::Metadata& m) {
    std::vector<std::pair<uint64_t, uint64_t>> offs;
    std::string s = io::safetensors_header(v, m, &offs);
    std::vector<size_t> order(v.size());
    for (size_t i = 0; i < order.size(); ++i) order[i] = i;
    std::sort(order.begin(), order.end(), [&](size_t a, size_t b) { return offs[a] < offs[b]; });
    for (size_t i : order)
      s.append(static_cast<const char*>(v[i].data), size_t(offs[i].second - offs[i].first));
    return s;
  };
  using io::DType;
  return {
      file({{"w", DType::F32, {2, 3}, f32},
            {"mask", DType::U8, {5}, u8},
            {"step", DType::I64, {}, &i64},
            {"empty", DType::U32, {0}, nullptr},
            {"d", DType::F64, {1, 1, 2}, f64},
            {"i", DType::I32, {3}, i32},
            {"big", DType::U64, {1}, &u64},
            {"u", DType::U32, {}, &u32}},
           {{"format", "pompc-checkpoint-2"},
            {"config", "task=cartpole-balance\nlr=0.0003\n"},
            {"quote\"\\", "tab\t\xc3\xa9"}}),
      file({{"only", DType::F32, {6}, f32}}, {}),
      file({}, {{"k", "v"}}),
      file({}, {}),
  };
}

// ---- replay buffer file -----------------------------------------------------------------

replay::ReplaySettings replay_settings() {
  replay::ReplaySettings rs;
  rs.capacity = 40;
  rs.obs_dim = 3;
  rs.action_dim = 2;
  rs.horizon = 3;
  rs.planner_targets = true;
  rs.num_envs = 2;
  rs.seed = 5;
  return rs;
}

// An accepted file leaves a buffer that samples slices of consecutive ring records, takes new
// steps on every env and ends their episodes (ASan watches every access).
void run_replay(std::string_view in) {
  static MemFile input("fuzz-replay");
  replay::ReplayBuffer b(replay_settings());
  b.load(input.set(in));
  const int H = 3, B = 8, O = 3, A = 2;
  std::vector<float> obs(size_t(H + 1) * B * O), act(size_t(H) * B * A), rew(size_t(H) * B),
      mu(act.size()), sigma(act.size());
  std::vector<int64_t> index(size_t(H + 1) * B);
  replay::SliceBatch sb{B,         obs.data(),   act.data(),  rew.data(),
                        mu.data(), sigma.data(), index.data()};
  const float step[3] = {0.5f, -1, 2}, a[2] = {0.25f, -0.25f};
  for (int round = 0; round < 2; ++round) {
    if (b.valid_starts() > 0) {
      b.sample(sb);
      for (int t = 0; t < H; ++t)
        for (int k = 0; k < B; ++k) {
          const int64_t i = index[size_t(t) * B + k], j = index[size_t(t + 1) * B + k];
          if (i < 0 || i >= b.size() || j != (i + 1) % b.capacity())
            throw Failure(
                strfmt("a sampled slice is not consecutive ring records (%lld, %lld "
                       "in a ring of %lld records)",
                       static_cast<long long>(i), static_cast<long long>(j),
                       static_cast<long long>(b.size())));
        }
      b.write_batch_targets(sb, 2);
    }
    for (int env = 0; env < 2; ++env) {
      for (int k = 0; k < 4; ++k)
        b.add(env, step, a, 1.0f, k % 2 ? a : nullptr, k % 2 ? a : nullptr);
      b.end_episode(env, step);
    }
  }
}

// Saved buffers: two ended episodes and a staged one; a ring that wrapped; an empty buffer. Each
// as saved (version 2: nearly every mutation is refused by the checksum) and at version 1 (no
// checksum: mutations reach the checks of the ring and the episode table behind it).
std::vector<std::string> replay_seeds() {
  const char* base = std::getenv("TMPDIR");
  std::string dir = std::string(base && *base ? base : "/tmp") + "/pompc-fuzz-XXXXXX";
  if (!::mkdtemp(dir.data())) throw Failure("mkdtemp failed for " + dir);
  const std::string path = dir + "/replay.safetensors";
  std::vector<std::string> seeds;
  const float a[2] = {0.5f, -0.5f}, sig[2] = {0.3f, 0.7f};
  for (int kind = 0; kind < 3; ++kind) {
    replay::ReplayBuffer b(replay_settings());
    const int episodes = kind == 0 ? 1 : kind == 1 ? 6 : 0;
    for (int e = 0; e < episodes; ++e)
      for (int env = 0; env < 2; ++env) {
        for (int t = 0; t < 5 + env; ++t) {
          const float o[3] = {float(e), float(t), float(env)};
          b.add(env, o, a, 0.1f * float(t), t > 1 ? a : nullptr, t > 1 ? sig : nullptr);
        }
        const float last[3] = {float(e), -1, float(env)};
        b.end_episode(env, last);
      }
    const float o[3] = {1, 2, 3};
    if (kind == 0) b.add(1, o, a, 2.0f, a, sig);  // a staged step
    b.save(path);
    seeds.push_back(io::read_file(path));
    seeds.push_back(test::replay_file_v1(path));
  }
  ::unlink(path.c_str());
  ::rmdir(dir.c_str());
  return seeds;
}

// ---- config --------------------------------------------------------------------------------

const io::Config& base_config() {
  static const io::Config c = train::train_config();
  return c;
}

void check_config(const io::Config& c) {
  const std::string text = c.to_lines();
  io::Config d = base_config();
  try {
    d.apply(io::Config::parse_lines(text));
  } catch (const Error& e) {
    throw Failure(std::string("to_lines() of an accepted config is refused: ") + e.what());
  }
  const std::string back = d.to_lines();
  if (back != text) {
    size_t i = 0;
    while (i < text.size() && i < back.size() && text[i] == back[i]) ++i;
    const size_t line = text.rfind('\n', i) == std::string::npos ? 0 : text.rfind('\n', i) + 1;
    throw Failure(
        "to_lines() of an accepted config applies to another config; first "
        "difference in: " +
        escaped(text.substr(line, text.find('\n', i) - line)) + " vs " +
        escaped(back.substr(line, back.find('\n', i) - line)));
  }
  try {
    train::settings_from(c);
  } catch (const Error&) {
    // A refusal at the settings level (e.g. lambda) is a verdict like any other.
  }
}

void run_config_file(std::string_view in) {
  io::Config c = base_config();
  c.apply(io::Config::parse_lines(in));
  check_config(c);
}

void run_config_args(std::string_view in) {
  std::vector<std::string> args;
  for (size_t p = 0; p <= in.size();) {
    const size_t e = std::min(in.find('\n', p), in.size());
    if (e > p) args.emplace_back(in.substr(p, e - p));
    p = e + 1;
  }
  io::Config c = base_config();
  c.apply(args);
  check_config(c);
}

std::vector<std::string> config_seeds() {
  const io::Config& c = base_config();
  std::vector<std::string> seeds = {
      c.to_lines(),
      "task=cartpole-balance\npreset=bmpc\nsteps=1e6\nlr=0.001\n",
      "# a comment\n\n  lambda = 9\npreset=pompc\nrun_dir=runs/x y\ndevice=cpu\r\n",
      "preset=tdmpc2sq\nnum_envs=2\nseed=7\nsave_buffer=0\nmin_std=0.05\n",
  };
  return seeds;
}

std::vector<std::string> config_dictionary() {
  // clang-format off
  std::vector<std::string> d = {
      "=", "\n", "#", " ", "\t", "\r", "true", "false", "1", "0", "1e6", "1e400", "-0", "nan",
      "inf", "0x10", "1.5", "-1", "none", "bmpc", "pompc", "tdmpc2", "tdmpc2sq", "learned", "q",
      "v", "\xc3\xa9", "9223372036854775807", "9223372036854775808", "-9223372036854775809"};
  // clang-format on
  std::string lines = base_config().to_lines();
  for (size_t p = 0; p < lines.size();) {
    const size_t eq = lines.find('=', p), nl = lines.find('\n', p);
    d.push_back(lines.substr(p, eq - p + 1));  // "key="
    p = nl + 1;
  }
  return d;
}

std::string hex_or_char(unsigned char c) {
  switch (c) {
    case '\n':
      return "\\n";
    case '\r':
      return "\\r";
    case '\t':
      return "\\t";
    case '\\':
      return "\\\\";
    case '"':
      return "\\\"";
  }
  if (c >= 0x20 && c < 0x7f) return std::string(1, char(c));
  return strfmt("\\x%02x", c);
}

}  // namespace

std::string escaped(std::string_view s, size_t max) {
  std::string out = "\"";
  for (size_t i = 0; i < s.size() && i < max; ++i) out += hex_or_char(uint8_t(s[i]));
  out += '"';
  if (s.size() > max) out += strfmt(" ... (%zu more bytes)", s.size() - max);
  return out;
}

std::vector<Target> targets() {
  const std::vector<std::string> st = safetensors_seeds();
  // clang-format off
  std::vector<std::string> json_seeds = {
      " {\"a\": [1, -2.5e3, true, false, null], \"s\": \"q\\\"\\\\\\/\\b\\f\\n\\r\\t\\u00e9"
      "\\ud83d\\ude00\", \"n\": 18446744073709551615, \"utf8\": \"\xc3\xa9\xf0\x9f\x98\x80\"} ",
      "[]", "{}", "\"\"", "0", "-0.5E+10", "[[[[[[[[[[1]]]]]]]]]]", "{\"a\":{\"b\":{\"c\":[]}}}",
      std::string(63, '[') + std::string(63, ']')};
  const std::vector<std::string> json_dictionary = {
      "{", "}", "[", "]", ":", ",", "\"", "\\u", "\\ud800", "\\udc00", "\\u0000", "\\", "true",
      "false", "null", "-", "0", "1e999", ".", "e", "E+", "\xc3\xa9", "\xf0\x9f\x98\x80",
      "\xed\xa0\x80", "\xc0\x80", "\xf4\x90\x80\x80", "\xff", " ", "\t", "\n", "\"__metadata__\"",
      std::string(70, '['), "18446744073709551616"};
  const std::vector<std::string> safetensors_dictionary = {
      "\"dtype\"", "\"shape\"", "\"data_offsets\"", "\"F32\"", "\"BF16\"", "\"U64\"", "\"I64\"",
      "\"U8\"", "\"__metadata__\"", "[]", "[0]", "[0,0]", "{}", ",", "\"\"", "18446744073709551615",
      "9223372036854775808", "4294967296", "-1", "1e3", "    "};
  const std::vector<std::string> replay_dictionary = {
      "\"episodes\"", "\"staging.0.steps\"", "\"staging.1.steps\"", "\"size\"", "\"head\"",
      "\"capacity\"", "\"cum_total\"", "\"next_episode_id\"", "\"sample_calls\"", "\"I64\"",
      "\"U32\"", "[]", "[0]", "[1,4]", "\"40\"", "\"0\"", "\"-1\"", "\"39\""};
  // clang-format on
  for (const std::string& s : st) {  // the safetensors headers are JSON documents too
    const uint64_t n = get_le64(s);
    json_seeds.push_back(s.substr(8, size_t(n)));
  }
  std::vector<Target> t;
  t.push_back({"json", json_seeds, json_dictionary, false, run_json});
  t.push_back({"safetensors", st, safetensors_dictionary, true, run_safetensors});
  t.push_back({"replay", replay_seeds(), replay_dictionary, true, run_replay});
  t.push_back({"config", config_seeds(), config_dictionary(), false, run_config_file});
  t.push_back({"config-args", config_seeds(), config_dictionary(), false, run_config_args});
  return t;
}

bool run_one(const Target& t, std::string_view input) {
  try {
    t.run(input);
    return true;
  } catch (const Failure&) {
    throw;
  } catch (const Error&) {
    return false;
  } catch (const std::exception& e) {
    throw Failure(strfmt("threw %s (not pompc::Error): %s", typeid(e).name(), e.what()));
  } catch (...) {
    throw Failure("threw something that is not a std::exception");
  }
}

Stats run(const Target& t, uint64_t iterations, uint64_t seed, std::string* current) {
  // Each target draws from its own stream, so one target replays alone with the same seed.
  uint64_t key = seed;
  for (char c : t.name) key = (key ^ uint8_t(c)) * 0x100000001b3ull;
  Mutator m(t, key);
  std::vector<std::string> corpus = t.seeds;
  const size_t n_seeds = corpus.size();
  Stats st;
  std::string scratch;
  std::string& input = current ? *current : scratch;
  for (uint64_t i = 0; i < iterations; ++i) {
    input = m.mutate(corpus[m.below(corpus.size())], corpus);
    bool accepted = false;
    try {
      accepted = run_one(t, input);
    } catch (const Failure& f) {
      throw Failure(strfmt("fuzz %s, seed %llu, iteration %llu: %s\n  input (%zu bytes): %s",
                           t.name.c_str(), static_cast<unsigned long long>(seed),
                           static_cast<unsigned long long>(i), f.what(), input.size(),
                           escaped(input).c_str()));
    }
    ++st.inputs;
    if (!accepted) {
      ++st.refused;
      continue;
    }
    ++st.accepted;
    if (corpus.size() < n_seeds + kMaxGrown)
      corpus.push_back(input);
    else
      corpus[n_seeds + m.below(kMaxGrown)] = input;
  }
  return st;
}

}  // namespace pompc::fuzz
