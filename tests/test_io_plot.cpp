// src/io/plot: nice axes and the SVG learning-curve plot (suite io).
//
//   build/test_emu -ts=io -tc='*plot*'
#include <doctest/doctest.h>

#include <cmath>
#include <string>
#include <vector>

#include "common.h"
#include "io/atomic_file.h"
#include "io/csv.h"
#include "io/plot.h"
#include "test_io_tmp.h"
#include "test_util.h"

using namespace pompc;
using pompc::test::error_of;
using namespace pompc::io;
using pompc::test::TempDir;

namespace {

// A committed file, found from this source file's path (tests run from any directory).
std::string repo_file(const std::string& rel) {
  const std::string f = __FILE__;  // "tests/test_io_plot.cpp" or absolute
  return f.substr(0, f.rfind("tests/")) + rel;
}

size_t count(const std::string& s, const std::string& what) {
  size_t n = 0;
  for (size_t p = s.find(what); p != std::string::npos; p = s.find(what, p + 1)) ++n;
  return n;
}

// A crude XML check: every tag is closed in order, attribute quotes balance, nothing but
// whitespace outside the root element. Returns "" when well-formed, else what is wrong.
std::string xml_problem(const std::string& s) {
  std::vector<std::string> stack;
  size_t p = 0;
  bool seen_root = false;
  while (p < s.size()) {
    const size_t lt = s.find('<', p);
    const std::string text = s.substr(p, lt == std::string::npos ? std::string::npos : lt - p);
    if (stack.empty() && text.find_first_not_of(" \n\t\r") != std::string::npos)
      return "text outside the root element";
    if (text.find('>') != std::string::npos) return "stray '>' in text";
    if (lt == std::string::npos) break;
    const size_t gt = s.find('>', lt);
    if (gt == std::string::npos) return "unterminated tag";
    const std::string tag = s.substr(lt + 1, gt - lt - 1);
    p = gt + 1;
    if (count(tag, "\"") % 2) return "unbalanced quotes in <" + tag + ">";
    if (tag[0] == '?') continue;  // <?xml ... ?>
    if (tag[0] == '/') {
      const std::string name = tag.substr(1);
      if (stack.empty() || stack.back() != name) return "mismatched </" + name + ">";
      stack.pop_back();
      continue;
    }
    if (stack.empty() && seen_root) return "a second root element";
    const std::string name = tag.substr(0, tag.find_first_of(" \n/"));
    seen_root = true;
    if (tag.back() != '/') stack.push_back(name);
  }
  return stack.empty() ? "" : "unclosed <" + stack.back() + ">";
}

}  // namespace

TEST_SUITE("io") {
  TEST_CASE("plot: nice axes and tick labels") {
    NiceAxis x = nice_axis(0, 1e6);
    CHECK(x.step == 200000);
    CHECK(x.ticks == std::vector<double>{0, 2e5, 4e5, 6e5, 8e5, 1e6});
    std::vector<std::string> labels;
    for (double t : x.ticks) labels.push_back(format_tick(t, x.step));
    CHECK(labels == std::vector<std::string>{"0", "200k", "400k", "600k", "800k", "1M"});
    NiceAxis y = nice_axis(0, 1000);
    CHECK(y.ticks == std::vector<double>{0, 200, 400, 600, 800, 1000});
    CHECK(format_tick(1000, 200) == "1000");
    NiceAxis x4 = nice_axis(0, 4e6);
    CHECK(x4.step == 1e6);
    NiceAxis odd = nice_axis(0, 1.3e6);
    CHECK(odd.step == 500000);
    CHECK(odd.hi == 1.5e6);
    CHECK(format_tick(1.5e6, 5e5) == "1.5M");
    CHECK(format_tick(2.5e5, 5e4) == "250k");
    NiceAxis small = nice_axis(-3.2, 7.9);
    CHECK(small.step == 5);  // 11.1 / 5 intervals = 2.2 -> the next nice step
    CHECK(small.lo == -5);
    CHECK(small.hi == 10);
    CHECK(format_tick(0.5, 0.1) == "0.5");
    CHECK(nice_axis(5, 5).ticks.size() >= 2);
  }

  TEST_CASE("plot: runs and reference points as a well-formed SVG") {
    TempDir dir;
    const std::string e1 = dir.file("eval1.csv"), e2 = dir.file("eval2.csv");
    {
      CsvLogger a(e1, {"env_step", "agent_step", "return_mean", "return_std"});
      for (int k = 0; k <= 4; ++k) a.row({k * 250000, k * 125000, 150.0 * k + 20, 5.0});
      CsvLogger b(e2, {"env_step", "return_mean"});
      b.row({500000, 420.0});  // out of order: sorted for drawing
      b.row({0, 3.5});
      b.row({250000, NAN});  // skipped
      b.row({1000000, 690.0});
    }
    const std::string refs = dir.file("refs.csv");
    write_file_atomic(refs,
                      "# comment line\n"
                      "task,method,source,env_step,return\n"
                      "dog-run,tdmpc2,tdmpc2-paper,500000,120\n"
                      "dog-run,tdmpc2,tdmpc2-paper,1000000,170\n"
                      "dog-run,bmpc,bmpc-files,1000000,548\n"
                      "dog-run,bmpc,bmpc-files,2000000,682\n"  // past the runs: left out
                      "walker-run,tdmpc2,tdmpc2-paper,1000000,842\n");
    const std::string out = dir.file("curves.svg");
    plot_task(out, "dog-run", {{"pompc seed 1", e1}, {"pompc seed 2 <&>", e2}}, refs);
    const std::string svg = read_file(out);

    CHECK(xml_problem(svg) == "");
    CHECK(svg.rfind("<?xml", 0) == 0);
    CHECK(count(svg, "<path class=\"run\"") == 2);
    CHECK(count(svg, "class=\"run-marker\"") == 5 + 3);
    CHECK(count(svg, "class=\"ref-marker\"") == 3);  // not walker-run, nothing past 1M
    CHECK(svg.find(">2M<") == std::string::npos);
    CHECK(svg.find(">dog-run</text>") != std::string::npos);  // title
    CHECK(svg.find(">env steps</text>") != std::string::npos);
    CHECK(svg.find(">mean eval return</text>") != std::string::npos);
    for (const char* tick : {">0<", ">200k<", ">400k<", ">1M<", ">1000<", ">600<"})
      CHECK_MESSAGE(svg.find(tick) != std::string::npos, tick);
    CHECK(svg.find(">TD-MPC2 (tdmpc2-paper)</text>") != std::string::npos);
    CHECK(svg.find(">BMPC (bmpc-files)</text>") != std::string::npos);
    CHECK(svg.find(">pompc seed 2 &lt;&amp;&gt;</text>") != std::string::npos);
    // The two reference series use different marker shapes.
    CHECK(svg.find("<rect class=\"ref-marker\"") != std::string::npos);
    CHECK(svg.find("<polygon class=\"ref-marker\"") != std::string::npos);

    const PlotSeries s2 = read_eval_csv(e2, "x");
    CHECK(s2.x == std::vector<double>{0, 500000, 1000000});
    CHECK(s2.y == std::vector<double>{3.5, 420, 690});
  }

  TEST_CASE("plot: the committed data/reference_curves.csv loads and draws") {
    const std::vector<PlotSeries> dog =
        read_reference_curves(repo_file("data/reference_curves.csv"), "dog-run");
    REQUIRE(dog.size() == 3);  // tdmpc2-paper, and the BMPC authors' BMPC and TD-MPC2 runs
    size_t points = 0;
    for (const PlotSeries& s : dog) points += s.x.size();
    CHECK(points == 18);
    CHECK(read_reference_curves(repo_file("data/reference_curves.csv"), "no-such-task").empty());
    PlotSpec spec;
    spec.title = "dog-run";
    spec.references = dog;
    CHECK(xml_problem(render_svg(spec)) == "");
  }

  TEST_CASE("plot: an eval.csv without the expected columns is refused") {
    TempDir dir;
    const std::string p = dir.file("eval.csv");
    write_file_atomic(p, "step,episode_reward\n1,2\n");
    CHECK(error_of([&] { read_eval_csv(p, "run"); }).find("has no column 'env_step'") !=
          std::string::npos);
  }
}
