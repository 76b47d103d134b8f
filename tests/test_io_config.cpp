// src/io/config: key=value parsing against a toy table, presets, printing (suite io).
//
//   build/test_emu -ts=io -tc='*config*'
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "common.h"
#include "io/config.h"
#include "test_util.h"

using namespace pompc;
using pompc::test::error_of;
using namespace pompc::io;

namespace {

// A toy table shaped like the agent's (the real one arrives with the agent issue).
Config toy() {
  return Config(
      {
          ConfigKey::Enum("preset", "none", {"none", "fast", "careful"}, "method preset"),
          ConfigKey::String("task", "dog-run", "task name"),
          ConfigKey::Int("horizon", 3, 1, 16, "planning horizon H"),
          ConfigKey::Int("steps", 1000000, 1, int64_t{1} << 40, "env steps"),
          ConfigKey::Float("lr", 3e-4, 0, 1, "learning rate"),
          ConfigKey::Float("lambda", 0.5, 0, 1, "prior weight"),
          ConfigKey::Bool("compile", true, "use CUDA graphs"),
          ConfigKey::Enum("prior", "planner", {"planner", "intermediate", "learned"}, "prior"),
      },
      {
          {"fast", {"horizon=1", "lr=0.001"}},
          {"careful", {"horizon=8", "prior=learned", "lambda=0.25"}},
      });
}

}  // namespace

TEST_SUITE("io") {
  TEST_CASE("config: defaults and typed values") {
    Config c = toy();
    CHECK(c.get_int("horizon") == 3);
    CHECK(c.get_float("lr") == 3e-4);
    CHECK(c.get_bool("compile"));
    CHECK(c.get_string("task") == "dog-run");
    CHECK(c.get_string("prior") == "planner");
    c.apply({"horizon=5", "lr=1e-3", "compile=false", "task=cheetah-run", "prior=learned",
             "steps=4e6"});
    CHECK(c.get_int("horizon") == 5);
    CHECK(c.get_float("lr") == 1e-3);
    CHECK_FALSE(c.get_bool("compile"));
    CHECK(c.get_string("task") == "cheetah-run");
    CHECK(c.get_string("prior") == "learned");
    CHECK(c.get_int("steps") == 4000000);
    c.apply({"compile=1", "horizon=16", "horizon=2"});  // later wins
    CHECK(c.get_bool("compile"));
    CHECK(c.get_int("horizon") == 2);
    CHECK(error_of([&] { c.get_float("horizon"); }) ==
          "config key horizon has type int, not float");
  }

  TEST_CASE("config: unknown key lists the valid keys and suggests the closest") {
    Config c = toy();
    const std::string e = error_of([&] { c.apply({"horizn=5"}); });
    CHECK(e.find("unknown config key 'horizn' (did you mean 'horizon'?)") != std::string::npos);
    CHECK(e.find("valid keys: compile, horizon, lambda, lr, preset, prior, steps, task") !=
          std::string::npos);
    CHECK(error_of([&] { c.apply({"zzzzzzzzzz=1"}); }).find("did you mean") == std::string::npos);
    CHECK(error_of([&] { c.apply({"horizon"}); }).find("expected key=value, got 'horizon'") !=
          std::string::npos);
    // A bad argument anywhere changes nothing.
    CHECK_FALSE(error_of([&] { c.apply({"horizon=9", "lr=-1"}); }).empty());
    CHECK(c.get_int("horizon") == 3);
  }

  TEST_CASE("config: invalid values name the key, the value and what is valid") {
    Config c = toy();
    CHECK(error_of([&] { c.apply({"horizon=abc"}); }) ==
          "config key horizon=abc is not valid: it must be an integer in [1, 16]");
    CHECK(error_of([&] { c.apply({"horizon=40"}); }) ==
          "config key horizon=40 is out of range: it must be in [1, 16]");
    CHECK(error_of([&] { c.apply({"horizon=2.5"}); }).find("must be an integer") !=
          std::string::npos);
    CHECK(error_of([&] { c.apply({"lr=nan"}); }).find("must be a finite number in [0, 1]") !=
          std::string::npos);
    CHECK(error_of([&] { c.apply({"lr=1.5"}); }) ==
          "config key lr=1.5 is out of range: it must be in [0, 1]");
    CHECK(error_of([&] { c.apply({"compile=maybe"}); }) ==
          "config key compile=maybe is not valid: it must be true or false (or 1/0)");
    CHECK(error_of([&] { c.apply({"prior=foo"}); }) ==
          "config key prior=foo is not valid: it must be one of planner, intermediate, learned");
    CHECK(error_of([&] { c.apply({"preset=bmpc"}); }).find("one of none, fast, careful") !=
          std::string::npos);
  }

  TEST_CASE("config: a preset applies first, the user's overrides win") {
    Config a = toy();
    a.apply({"preset=fast"});
    CHECK(a.get_int("horizon") == 1);
    CHECK(a.get_float("lr") == 0.001);

    Config b = toy();
    b.apply({"horizon=5", "preset=fast"});  // the override wins wherever it stands
    CHECK(b.get_int("horizon") == 5);
    CHECK(b.get_float("lr") == 0.001);
    CHECK(b.get_string("preset") == "fast");

    Config c = toy();
    c.apply({"preset=careful", "prior=intermediate"});
    CHECK(c.get_int("horizon") == 8);
    CHECK(c.get_float("lambda") == 0.25);
    CHECK(c.get_string("prior") == "intermediate");

    // A preset's own settings are validated when the table is built.
    const std::string e = error_of([] {
      Config bad({ConfigKey::Enum("preset", "none", {"none", "x"}, ""),
                  ConfigKey::Int("horizon", 3, 1, 16, "")},
                 {{"x", {"horizon=99"}}});
    });
    CHECK(e == "preset x: config key horizon=99 is out of range: it must be in [1, 16]");
    CHECK(error_of([] {
            Config bad({ConfigKey::Enum("preset", "none", {"none", "x", "y"}, "")}, {{"x", {}}});
          }) == "config table: preset value y has no Preset definition");
    CHECK(error_of([] { Config bad({ConfigKey::Int("h", 0, 1, 16, "")}); }) ==
          "config table: the default of h is invalid: config key h=0 is out of range: it must be "
          "in [1, 16]");
  }

  TEST_CASE("config: prints as key=value lines and round-trips exactly") {
    Config c = toy();
    c.apply({"preset=careful", "lr=0.30000000000000004", "task=a b=c", "steps=123456789012"});
    const std::string text = c.to_lines();
    CHECK(text ==
          "preset=careful\ntask=a b=c\nhorizon=8\nsteps=123456789012\nlr=0.30000000000000004\n"
          "lambda=0.25\ncompile=true\nprior=learned\n");
    Config d = toy();
    d.apply(Config::parse_lines("# pompc config\n\n" + text));
    CHECK(d.to_lines() == text);
    CHECK(d.get_float("lr") == 0.1 + 0.2);  // bit-exact
    CHECK(d.get_string("task") == "a b=c");
    // Spaces around a command-line value are dropped, as around a config file's line, so that
    // the value reads back from to_lines() unchanged (found by the config-args fuzzer: a value
    // ending in a space or CR came back without it, and resume saw another run_dir).
    Config e = toy();
    e.apply({" task = runs/x \r", "horizon=\t5 "});
    CHECK(e.get_string("task") == "runs/x");
    CHECK(e.get_int("horizon") == 5);
    Config f = toy();
    f.apply(Config::parse_lines(e.to_lines()));
    CHECK(f.to_lines() == e.to_lines());

    CHECK(format_double(3e-4) == "0.0003");
    CHECK(format_double(20) == "20");
    CHECK(format_double(1e-5) == "0.00001");
    CHECK(format_double(1e-7) == "1e-07");
    CHECK(format_double(-2.5e20) == "-2.5e+20");
    const std::string help = c.help_text();
    CHECK(help.find("horizon") != std::string::npos);
    CHECK(help.find("int in [1, 16] (default 3): planning horizon H") != std::string::npos);
  }
}
