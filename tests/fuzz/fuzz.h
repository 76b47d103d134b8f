// tests/fuzz/fuzz.h: seeded mutation fuzzers of the parsers that read files and command lines
// (issue 14): the JSON reader, the safetensors reader, the replay buffer file and the key=value
// config.
//
// Run book
//   engine      our own, no libFuzzer: each iteration takes an input from the corpus (the
//               target's valid seeds, plus inputs that parsed since, up to 256), applies 1-6
//               mutations (bit flip, random byte, byte insert / delete, truncation, a chunk
//               duplicated, splicing with another input, a dictionary token inserted or
//               overwritten, a digit run replaced by an interesting number, an interesting
//               64-bit value written over 8 bytes or over the safetensors length prefix) and
//               runs the target. Everything comes from one std::mt19937_64 seeded with `seed`:
//               the same seed and iteration count replay the same inputs.
//   verdict     an input may be refused only with pompc::Error; any other exception, or an
//               oracle that fails on an accepted input, stops the run with a Failure naming the
//               target, seed, iteration and the input (escaped). A sanitizer report (ASan,
//               UBSan: the build is test_emu's) aborts the process; build/fuzz then writes the
//               input to fuzz-crash-<target>.bin first (a death callback).
//   oracles     json: an accepted document, written back (append_string for strings), parses
//               to the same tree; as_u64 of a number either throws pompc::Error or prints back
//               as the number's text. safetensors: every tensor of an accepted file reads in
//               full and in two parts, and a file rewritten from what was read
//               (safetensors_header + the bytes) parses to the same table and metadata.
//               replay: a buffer loaded from an accepted file samples slices of consecutive
//               ring records, takes reanalysed targets back, new steps and episode ends (its
//               seeds at version 2, checksummed, and at version 1, whose checks behind the
//               checksum mutations still reach).
//               config: the lines (parse_lines, then apply on train_config()'s table) and the
//               same text as command-line arguments (one per line, untrimmed), when accepted,
//               print with to_lines() a text that applies to the identical config;
//               train::settings_from of an accepted config throws nothing but pompc::Error.
//   use         make fuzz (FUZZ_ITERS=200000 per target by default, FUZZ_SEED=N to replay a
//               run; the seed is printed), or build/fuzz [TARGET]...
//               [iters=N] [seed=N] [input=FILE]; a short run of each target (2000 inputs) is a
//               test: build/test_emu -ts=io -tc='*fuzz*'
#pragma once

#include <cstdint>
#include <functional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

namespace pompc::fuzz {

struct Target {
  std::string name;
  std::vector<std::string> seeds;       // valid inputs the mutations start from
  std::vector<std::string> dictionary;  // tokens worth inserting (syntax, keys, numbers)
  bool length_prefix = false;           // the input starts with a little-endian u64 length
  // Parses one input; throws pompc::Error to refuse it, Failure when an oracle fails.
  std::function<void(std::string_view)> run;
};

// An oracle failed or a parser threw something other than pompc::Error.
struct Failure : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct Stats {
  uint64_t inputs = 0;    // inputs run
  uint64_t accepted = 0;  // inputs the parser accepted (oracles checked)
  uint64_t refused = 0;   // inputs refused with pompc::Error
};

// json, safetensors, replay (their inputs go through in-memory files), config, config-args.
std::vector<Target> targets();

// Runs `iterations` mutated inputs through `t`; throws Failure (with the input) on a bad verdict.
// `current`, when given, always holds the input being run (for a crash handler).
Stats run(const Target& t, uint64_t iterations, uint64_t seed, std::string* current = nullptr);

// One input through the target with the verdict rules (for replaying a saved input).
// Returns true when the input was accepted.
bool run_one(const Target& t, std::string_view input);

// The input as a C-escaped string, at most `max` bytes shown.
std::string escaped(std::string_view s, size_t max = 512);

}  // namespace pompc::fuzz
