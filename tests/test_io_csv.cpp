// src/io/csv and src/io/progress: append-only logs, resume, the progress line (suite io).
//
//   build/test_emu -ts=io -tc='*csv*,*progress*'
#include <doctest/doctest.h>

#include <cmath>
#include <string>
#include <vector>

#include "common.h"
#include "io/atomic_file.h"
#include "io/csv.h"
#include "io/progress.h"
#include "test_io_tmp.h"
#include "test_util.h"

using namespace pompc;
using pompc::test::error_of;
using namespace pompc::io;
using pompc::test::TempDir;

TEST_SUITE("io") {
  TEST_CASE("csv: header once, one line per row, cells formatted and quoted") {
    TempDir dir;
    const std::string p = dir.file("eval.csv");
    {
      CsvLogger log(p, {"env_step", "return_mean", "note"});
      log.row({100000, 812.5, "ok"});
      log.row({200000L, 0.1 + 0.2, "a,b \"c\""});
      log.row({300000ULL, NAN, ""});
      CHECK(error_of([&] {
              log.row({1, 2});
            }).find("a row has 2 cells, the log has 3 columns") != std::string::npos);
    }
    CHECK(read_file(p) ==
          "env_step,return_mean,note\n100000,812.5,ok\n200000,0.30000000000000004,\"a,b "
          "\"\"c\"\"\"\n300000,nan,\n");
    const CsvTable t = read_csv(p);
    CHECK(t.header == std::vector<std::string>{"env_step", "return_mean", "note"});
    REQUIRE(t.rows.size() == 3);
    CHECK(t.rows[1][2] == "a,b \"c\"");
    CHECK(csv_number(t, 1, 1, p) == 0.1 + 0.2);
    CHECK(std::isnan(csv_number(t, 2, 1, p)));
    CHECK(error_of([&] {
            csv_number(t, 0, 2, p);
          }).find(":2: column note holds 'ok', not a number") != std::string::npos);
    CHECK(error_of([&] { t.column("return", p); }).find("its columns: env_step,return_mean,note") !=
          std::string::npos);
  }

  TEST_CASE("csv: reopening continues the file; another header is refused") {
    TempDir dir;
    const std::string p = dir.file("train.csv");
    {
      CsvLogger log(p, {"step", "loss"});
      log.row({1, 0.5});
    }
    {
      CsvLogger log(p, {"step", "loss"});
      log.row({2, 0.25});
    }
    CHECK(read_file(p) == "step,loss\n1,0.5\n2,0.25\n");
    const std::string e = error_of([&] { CsvLogger log(p, {"step", "loss", "grad_norm"}); });
    CHECK(e.find("has columns step,loss but this run logs step,loss,grad_norm") !=
          std::string::npos);
    CHECK(read_file(p) == "step,loss\n1,0.5\n2,0.25\n");
  }

  TEST_CASE("csv: a partial last line is cut; resume drops rows past the checkpoint") {
    TempDir dir;
    const std::string p = dir.file("eval.csv");
    write_file_atomic(p, "env_step,return_mean\n50000,10\n100000,20\n150000,3");
    {
      CsvLogger log(p, {"env_step", "return_mean"});
      CHECK(log.dropped_tail_bytes() == 8);
      log.row({150000, 30});
    }
    CHECK(read_file(p) == "env_step,return_mean\n50000,10\n100000,20\n150000,30\n");
    {
      CsvLogger log(p, {"env_step", "return_mean"}, CsvLogger::Resume{"env_step", 100000});
      CHECK(log.dropped_rows() == 1);
      log.row({150000, 31});
    }
    CHECK(read_file(p) == "env_step,return_mean\n50000,10\n100000,20\n150000,31\n");
    // Reading: comments and blank lines skipped, ragged rows refused with the line number.
    const CsvTable t = parse_csv("# a comment\n\nx,y\n1,2\n# another\n3,4\n", "mem");
    CHECK(t.rows.size() == 2);
    CHECK(t.line_of_row[1] == 6);
    CHECK(error_of([] { parse_csv("x,y\n1,2,3\n", "mem"); }) ==
          "mem:2: the row has 3 fields, the header has 2");
  }

  TEST_CASE("progress: counts, durations, the one-line report") {
    CHECK(format_count(0) == "0");
    CHECK(format_count(999) == "999");
    CHECK(format_count(1500) == "1.5k");
    CHECK(format_count(200000) == "200k");
    CHECK(format_count(123456) == "123k");
    CHECK(format_count(1000000) == "1M");
    CHECK(format_count(1234567) == "1.23M");
    CHECK(format_count(999999) == "1M");
    CHECK(format_count(12345678901) == "12.3G");
    CHECK(format_count(-2500) == "-2.5k");
    CHECK(format_duration(42.4) == "42s");
    CHECK(format_duration(725) == "12m05s");
    CHECK(format_duration(3725) == "1h02m");
    CHECK(format_duration(2 * 86400 + 4 * 3600 + 59) == "2d04h");
    CHECK(format_duration(-1) == "--");
    CHECK(format_duration(INFINITY) == "--");

    Progress p;
    p.step = 123456;
    p.total_steps = 1000000;
    p.elapsed_s = 1450;
    p.steps_per_s = 85.2;
    p.last_eval_return = 812.34;
    p.last_eval_step = 100000;
    CHECK(format_progress(p) ==
          "step 123k/1M (12.3%) | 85.2 steps/s | elapsed 24m10s | ETA 2h51m | eval 812.3 @ 100k");
    Progress q;
    q.total_steps = 1000000;
    CHECK(format_progress(q) == "step 0/1M (0.0%) | -- steps/s | elapsed 0s | ETA -- | eval --");
    q.step = 1000000;
    q.steps_per_s = 100;
    CHECK(format_progress(q).find("(100.0%) | 100.0 steps/s | elapsed 0s | ETA 0s") !=
          std::string::npos);
  }
}
