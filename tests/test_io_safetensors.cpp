// src/io: the JSON reader, atomic file replacement and safetensors files (suite io).
//
//   build/test_emu -ts=io -tc='*json*,*atomic*,*safetensors*'
#include <doctest/doctest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "common.h"
#include "io/atomic_file.h"
#include "io/json.h"
#include "io/safetensors.h"
#include "test_io_tmp.h"
#include "test_util.h"

using namespace pompc;
using pompc::test::error_of;
using namespace pompc::io;
using pompc::test::TempDir;

namespace {

std::string le64(uint64_t n) {
  std::string s(8, '\0');
  for (int b = 0; b < 8; ++b) s[static_cast<size_t>(b)] = static_cast<char>((n >> (8 * b)) & 0xff);
  return s;
}

// A safetensors file from a header JSON (padded with spaces to a multiple of 8, as the reference
// writer does) and raw data bytes.
std::string st_bytes(std::string json, const std::string& data, bool pad = true) {
  if (pad) json.append((8 - json.size() % 8) % 8, ' ');
  return le64(json.size()) + json + data;
}

std::string bytes_of(const void* p, size_t n) {
  return std::string(static_cast<const char*>(p), n);
}

}  // namespace

TEST_SUITE("io") {
  TEST_CASE("json: values, escapes, exact integers") {
    const json::Value v = json::parse(
        " {\"a\": [1, -2.5e3, true, false, null], \"s\": \"q\\\"\\\\\\/\\b\\f\\n\\r\\t\\u00e9"
        "\\ud83d\\ude00\", \"n\": 18446744073709551615, \"utf8\": \"\xc3\xa9\"} ");
    REQUIRE(v.kind == json::Value::Kind::Object);
    const json::Value* a = v.find("a");
    REQUIRE(a);
    REQUIRE(a->items.size() == 5);
    CHECK(a->items[0].text == "1");
    CHECK(a->items[1].text == "-2.5e3");
    CHECK(a->items[2].boolean);
    CHECK(a->items[4].kind == json::Value::Kind::Null);
    CHECK(v.find("s")->text == "q\"\\/\b\f\n\r\t\xc3\xa9\xf0\x9f\x98\x80");
    CHECK(json::as_u64(*v.find("n"), "n") == UINT64_MAX);
    CHECK(v.find("utf8")->text == "\xc3\xa9");
    CHECK(error_of([&] { json::as_u64(a->items[1], "x"); }).find("non-negative integer") !=
          std::string::npos);

    std::string out;
    json::append_string(out, "a\"b\\c\nd\x01");
    CHECK(out == "\"a\\\"b\\\\c\\nd\\u0001\"");
    CHECK(json::parse(out).text == "a\"b\\c\nd\x01");
  }

  TEST_CASE("json: syntax errors give the byte position") {
    CHECK(error_of([] { json::parse("{\"a\" 1}"); }) ==
          "JSON syntax error at byte 5: expected ':' after an object key, found '1'");
    CHECK(error_of([] { json::parse("[1, 2", 100); }).find("at byte 105") != std::string::npos);
    CHECK(error_of([] { json::parse("{\"a\":1,\"a\":2}"); }).find("duplicate key \"a\"") !=
          std::string::npos);
    CHECK(error_of([] { json::parse("{\"a\":01}"); }).find("expected ',' or '}'") !=
          std::string::npos);
    CHECK(error_of([] { json::parse("\"tab\there\""); }).find("control character") !=
          std::string::npos);
    CHECK(error_of([] { json::parse("\"\xff\""); }).find("UTF-8") != std::string::npos);
    CHECK(error_of([] { json::parse(std::string(100, '[')); }).find("nesting deeper") !=
          std::string::npos);
    CHECK(error_of([] { json::parse("{} x"); }).find("after the end") != std::string::npos);
  }

  TEST_CASE("atomic write: replaces the file, leaves no temp file") {
    TempDir dir;
    const std::string p = dir.file("a.txt");
    write_file_atomic(p, "first");
    write_file_atomic(p, "second version");
    CHECK(read_file(p) == "second version");
    CHECK(dir.entries() == std::vector<std::string>{"a.txt"});
    CHECK(error_of([&] {
            write_file_atomic(dir.file("no/such/dir/x"), "x");
          }).find("check that directory") != std::string::npos);
  }

  TEST_CASE("atomic write: an interrupted write leaves the old checkpoint intact") {
    TempDir dir;
    const std::string p = dir.file("ckpt.safetensors");
    std::vector<float> w(1000, 1.0f);
    save_safetensors(p, {{"w", DType::F32, {1000}, w.data()}}, {{"step", "1"}});
    const std::string before = read_file(p);

    std::vector<float> w2(1000, 2.0f);
    // Fails in the middle of the tensor bytes (a full disk, a killed process).
    testing::fail_next_atomic_write_after(1000);
    const std::string e1 = error_of([&] {
      save_safetensors(p, {{"w", DType::F32, {1000}, w2.data()}});
    });
    CHECK(e1.find("simulated write failure after 1000 bytes") != std::string::npos);
    CHECK(e1.find("was left unchanged") != std::string::npos);
    CHECK(read_file(p) == before);
    CHECK(dir.entries() == std::vector<std::string>{"ckpt.safetensors"});

    // Fails after every byte is written, before the rename.
    testing::fail_next_atomic_write_after(1u << 30);
    CHECK(error_of([&] {
            save_safetensors(p, {{"w", DType::F32, {1000}, w2.data()}});
          }).find("before renaming") != std::string::npos);
    CHECK(read_file(p) == before);
    CHECK(dir.entries() == std::vector<std::string>{"ckpt.safetensors"});
    SafetensorsFile f(p);
    CHECK(f.meta("step") == "1");

    // The hook is one-shot: the next save goes through.
    save_safetensors(p, {{"w", DType::F32, {1000}, w2.data()}});
    CHECK(SafetensorsFile(p).read_vector<float>("w") == w2);
  }

  TEST_CASE("atomic write: a read-only directory leaves the old file (non-root only)") {
    if (::geteuid() == 0) {
      MESSAGE(
          "running as root: directory permissions do not stop writes; the failure-hook test "
          "above covers the same path");
      return;
    }
    TempDir dir;
    const std::string p = dir.file("ckpt.txt");
    write_file_atomic(p, "old");
    REQUIRE(::chmod(dir.path().c_str(), 0555) == 0);
    CHECK(error_of([&] { write_file_atomic(p, "new"); }).find("cannot create") !=
          std::string::npos);
    ::chmod(dir.path().c_str(), 0755);
    CHECK(read_file(p) == "old");
  }

  TEST_CASE("safetensors: round trip of every dtype, scalars and empty tensors") {
    TempDir dir;
    const std::string p = dir.file("t.safetensors");
    const std::vector<float> f32 = {1.5f, -2.0f, 3.25f, 1e-30f, -0.0f, 7.0f};
    const std::vector<double> f64 = {3.141592653589793, -1e300, 2.0, 0.5};
    const std::vector<int32_t> i32 = {-1, 2, -3, 4, INT32_MIN, INT32_MAX};
    const int64_t i64 = -1234567890123LL;  // a scalar: shape []
    const std::vector<uint8_t> u8 = {0, 1, 127, 128, 255};
    const std::vector<uint32_t> u32 = {7, UINT32_MAX, 0};
    const std::vector<uint64_t> u64 = {UINT64_MAX, 42};
    const std::vector<TensorView> t = {
        {"layer.0.weight", DType::F32, {2, 3}, f32.data()},
        {"f64", DType::F64, {4}, f64.data()},
        {"i32", DType::I32, {3, 1, 2}, i32.data()},
        {"step", DType::I64, {}, &i64},
        {"bytes", DType::U8, {5}, u8.data()},
        {"u32", DType::U32, {3}, u32.data()},
        {"u64", DType::U64, {2}, u64.data()},
        {"empty", DType::F32, {0}, nullptr},
        {"empty3d", DType::U64, {2, 0, 3}, nullptr},
    };
    const Metadata meta = {{"config", "horizon=3\nlr=0.0003\n"},
                           {"quote\"key", "tab\tand unicode \xc3\xa9"},
                           {"pompc_version", "0.1"}};
    save_safetensors(p, t, meta);

    const std::string raw = read_file(p);
    uint64_t n = 0;
    for (int b = 7; b >= 0; --b)
      n = (n << 8) | static_cast<unsigned char>(raw[static_cast<size_t>(b)]);
    CHECK(n % 8 == 0);
    CHECK(raw[8] == '{');

    SafetensorsFile f(p);
    CHECK(f.metadata() == meta);
    CHECK(f.tensors().size() == t.size());
    CHECK(f.data_start() == 8 + n);
    for (const TensorView& v : t) {
      const TensorInfo& info = f.at(v.name);
      CHECK(info.dtype == v.dtype);
      CHECK(info.shape == v.shape);
      CHECK(info.begin % dtype_size(info.dtype) == 0);  // aligned: largest dtypes first
      const uint64_t nb = shape_numel(v.shape) * dtype_size(v.dtype);
      REQUIRE(info.nbytes() == nb);
      std::string got(nb, '\0');
      f.read(info, got.data(), got.size());
      if (nb) CHECK(got == bytes_of(v.data, nb));
    }
    CHECK(f.read_vector<float>("layer.0.weight") == f32);
    CHECK(f.read_vector<double>("f64") == f64);
    CHECK(f.read_vector<int64_t>("step") == std::vector<int64_t>{i64});
    CHECK(f.read_vector<uint64_t>("u64") == u64);
    CHECK(f.read_vector<float>("empty").empty());
    CHECK(shape_str(f.at("step").shape) == "[]");
    CHECK(error_of([&] {
            f.read_vector<double>("layer.0.weight");
          }).find("has dtype F32, expected F64") != std::string::npos);
    CHECK(error_of([&] { f.at("nope"); }).find("no tensor named nope") != std::string::npos);
    float small[2];
    CHECK(error_of([&] {
            f.read("layer.0.weight", small, sizeof small);
          }).find("the destination holds 8") != std::string::npos);
  }

  TEST_CASE(
      "safetensors: reads the reference (Python safetensors) layout; writes it byte for byte") {
    // What safetensors.numpy.save_file({"weight": float32 [[1,2],[3,4]], "bias": float32
    // [0.5,-1]}, path, metadata={"format": "np"}) writes: compact JSON, __metadata__ first,
    // tensors ordered by dtype then name, padded with spaces to a multiple of 8.
    const float bias[2] = {0.5f, -1.0f};
    const float weight[4] = {1, 2, 3, 4};
    const std::string json =
        "{\"__metadata__\":{\"format\":\"np\"},"
        "\"bias\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
        "\"weight\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[8,24]}}";
    const std::string ref = st_bytes(json, bytes_of(bias, 8) + bytes_of(weight, 16));
    CHECK(json.size() % 8 != 0);  // the padding is exercised

    TempDir dir;
    const std::string p = dir.file("ref.safetensors");
    write_file_atomic(p, ref);
    SafetensorsFile f(p);
    CHECK(f.meta("format") == "np");
    CHECK(f.read_vector<float>("weight") == std::vector<float>{1, 2, 3, 4});
    CHECK(f.read_vector<float>("bias") == std::vector<float>{0.5f, -1.0f});

    const std::string mine = dir.file("mine.safetensors");
    save_safetensors(mine,
                     {{"weight", DType::F32, {2, 2}, weight}, {"bias", DType::F32, {2}, bias}},
                     {{"format", "np"}});
    CHECK(read_file(mine) == ref);

    // Other writers: pretty-printed JSON, keys in any order, no __metadata__, \u escapes,
    // mixed dtypes (I64 first, as the reference orders them).
    const int64_t steps[1] = {123456789};
    const uint8_t mask[3] = {1, 0, 1};
    const std::string pretty =
        "{\n  \"mask\" : {\"shape\": [3], \"dtype\": \"U8\", \"data_offsets\": [8, 11]},\n"
        "  \"st\\u0065ps\": {\"data_offsets\": [0, 8], \"dtype\": \"I64\", \"shape\": [1]}\n}";
    write_file_atomic(p, st_bytes(pretty, bytes_of(steps, 8) + bytes_of(mask, 3)));
    SafetensorsFile g(p);
    CHECK(g.metadata().empty());
    CHECK(g.read_vector<int64_t>("steps") == std::vector<int64_t>{123456789});
    CHECK(g.read_vector<uint8_t>("mask") == std::vector<uint8_t>{1, 0, 1});
  }

  TEST_CASE("safetensors: corrupted and truncated files are refused with the reason") {
    TempDir dir;
    const std::string p = dir.file("bad.safetensors");
    auto open_err = [&](const std::string& bytes) {
      write_file_atomic(p, bytes);
      return error_of([&] { SafetensorsFile f(p); });
    };
    const std::string d16(16, '\x01');
    const std::string ok_json =
        "{\"a\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,16]}}";
    CHECK(open_err(st_bytes(ok_json, d16)).empty());

    CHECK(open_err("abc").find("too short to be a safetensors file") != std::string::npos);
    CHECK(open_err(le64(4096) + "{}").find("header length 4096 goes beyond the end of the file") !=
          std::string::npos);
    CHECK(open_err(le64(uint64_t{1} << 40) + "{}").find("over the 100 MB limit") !=
          std::string::npos);

    // A JSON syntax error: the position counts from the start of the file.
    std::string broken = ok_json;
    const size_t colon = broken.find(':', 6);  // the one after "dtype"
    broken[colon] = ';';
    const std::string e = open_err(st_bytes(broken, d16));
    CHECK(e.find("corrupted safetensors header") != std::string::npos);
    CHECK(e.find(strfmt("JSON syntax error at byte %zu", 8 + colon)) != std::string::npos);

    // Truncated data.
    CHECK(open_err(st_bytes(ok_json, d16.substr(0, 12)))
              .find("holds only 12 bytes of data: the file is truncated") != std::string::npos);
    // Overlapping offsets.
    const std::string overlap =
        "{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]},"
        "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}";
    CHECK(open_err(st_bytes(overlap, d16)).find("tensors a [0, 16) and b [8, 16) overlap") !=
          std::string::npos);
    // Size != prod(shape) * dtype size.
    const std::string wrong_size =
        "{\"a\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[0,12]}}";
    CHECK(open_err(st_bytes(wrong_size, d16.substr(0, 12)))
              .find("(12 bytes) but shape [2, 2] of F32 needs 16 bytes") != std::string::npos);
    // Unknown dtype.
    const std::string bf16 = "{\"a\":{\"dtype\":\"BF16\",\"shape\":[8],\"data_offsets\":[0,16]}}";
    CHECK(open_err(st_bytes(bf16, d16)).find("unknown dtype \"BF16\" (pompc reads F32") !=
          std::string::npos);
    // A hole and trailing bytes.
    const std::string hole = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]}}";
    CHECK(open_err(st_bytes(hole, d16)).find("bytes [0, 8) before tensor a belong to no tensor") !=
          std::string::npos);
    CHECK(open_err(st_bytes(ok_json, d16 + "xx")).find("2 bytes follow the last tensor") !=
          std::string::npos);
    // Structure.
    CHECK(open_err(st_bytes("[1,2]", "")).find("must be a JSON object") != std::string::npos);
    CHECK(open_err(st_bytes("{\"__metadata__\":{\"step\":5}}", ""))
              .find("metadata value of \"step\" must be a string") != std::string::npos);
    CHECK(open_err(st_bytes("{\"a\":{\"dtype\":\"F32\",\"shape\":[4]}}", d16))
              .find("lacks \"data_offsets\"") != std::string::npos);
    CHECK(open_err(
              st_bytes("{\"a\":{\"dtype\":\"F32\",\"shape\":[-4],\"data_offsets\":[0,16]}}", d16))
              .find("non-negative integer") != std::string::npos);
    CHECK(open_err(st_bytes("{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16],"
                            "\"extra\":1}}",
                            d16))
              .find("unknown field \"extra\"") != std::string::npos);
  }

  TEST_CASE("safetensors: checking a checkpoint against the model's tensor table") {
    TempDir dir;
    const std::string p = dir.file("model.safetensors");
    std::vector<float> w(512 * 550), b(512), extra(3);
    save_safetensors(p, {{"_dynamics.0.weight", DType::F32, {512, 550}, w.data()},
                         {"_dynamics.0.bias", DType::F32, {512}, b.data()},
                         {"_old.thing", DType::F32, {3}, extra.data()}});
    SafetensorsFile f(p);

    // One problem: the message is the one a user needs.
    const std::string e1 = error_of([&] {
      check_tensors(f, {{"_dynamics.0.weight", DType::F32, {512, 545}},
                        {"_dynamics.0.bias", DType::F32, {512}},
                        {"_old.thing", DType::F32, {3}}});
    });
    CHECK(e1.find("(1 problem)") != std::string::npos);
    CHECK(e1.find("checkpoint tensor _dynamics.0.weight has shape [512, 550], the model expects "
                  "[512, 545]: was it trained with another task or model_size?") !=
          std::string::npos);

    // Every problem at once: missing, unknown, dtype.
    const std::string e2 = error_of([&] {
      check_tensors(f, {{"_dynamics.0.weight", DType::F32, {512, 550}},
                        {"_dynamics.0.bias", DType::F64, {512}},
                        {"_pi.0.weight", DType::F32, {512, 512}}});
    });
    CHECK(e2.find("(3 problems)") != std::string::npos);
    CHECK(e2.find("checkpoint is missing tensor _pi.0.weight (the model expects F32 [512, 512])") !=
          std::string::npos);
    CHECK(e2.find("checkpoint has tensor _old.thing (F32 [3]) that the model does not know") !=
          std::string::npos);
    CHECK(e2.find("checkpoint tensor _dynamics.0.bias has dtype F32, the model expects F64") !=
          std::string::npos);

    // load_tensors: checks, then fills the destinations.
    for (size_t i = 0; i < b.size(); ++i) b[i] = static_cast<float>(i);
    save_safetensors(p, {{"_dynamics.0.bias", DType::F32, {512}, b.data()}});
    SafetensorsFile g(p);
    std::vector<float> dst(512, -1.0f);
    load_tensors(g, {{"_dynamics.0.bias", DType::F32, {512}, dst.data()}});
    CHECK(dst == b);
    CHECK(error_of([&] {
            load_tensors(g, {{"_dynamics.0.bias", DType::F32, {511}, dst.data()}});
          }).find("has shape [512], the model expects [511]") != std::string::npos);
  }

  TEST_CASE("safetensors: writer refuses bad input") {
    TempDir dir;
    float x = 0;
    CHECK(
        error_of([&] {
          save_safetensors(dir.file("a"), {{"w", DType::F32, {1}, &x}, {"w", DType::F32, {1}, &x}});
        }).find("appears twice") != std::string::npos);
    CHECK(error_of([&] {
            save_safetensors(dir.file("a"), {{"w", DType::F32, {2}, nullptr}});
          }).find("no data pointer") != std::string::npos);
    CHECK(error_of([&] {
            save_safetensors(dir.file("a"), {{"__metadata__", DType::F32, {1}, &x}});
          }).find("cannot be named __metadata__") != std::string::npos);
    CHECK(dir.entries().empty());
  }
}
