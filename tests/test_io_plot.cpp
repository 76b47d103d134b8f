// src/io/plot: nice axes, finding and grouping runs, the SVG and PNG figures (suite io); the
// statistics behind the bands: tests/test_io_plot_stats.cpp.
//
//   build/test_emu -ts=io -tc='*plot*'
#include <doctest/doctest.h>

#include <cmath>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "common.h"
#include "io/atomic_file.h"
#include "io/csv.h"
#include "io/plot.h"
#include "png_reader.h"
#include "test_io_tmp.h"
#include "test_util.h"

using namespace pompc;
using pompc::test::error_of;
using namespace pompc::io;
using pompc::test::TempDir;

namespace {

// dir/eval.csv with the given steps and returns (directories made as needed).
void write_run(const std::string& dir, const std::vector<double>& steps,
               const std::vector<double>& returns) {
  std::filesystem::create_directories(dir);
  CsvLogger log(dir + "/eval.csv", {"env_step", "return_mean", "return_std"});
  for (size_t i = 0; i < steps.size(); ++i) log.row({steps[i], returns[i], 1.0});
}

// A 0xRRGGBB colour blended over white with alpha, rounded as the rasteriser rounds.
uint32_t over_white(uint32_t c, double a) {
  uint32_t out = 0;
  for (int shift = 16; shift >= 0; shift -= 8) {
    const double v = 255 + (static_cast<double>((c >> shift) & 0xff) - 255) * a;
    out |= static_cast<uint32_t>(std::lround(v)) << shift;
  }
  return out;
}

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

  TEST_CASE("plot: run directories are found at or below any directory and named from the path") {
    TempDir tmp;
    const std::string runs = tmp.file("runs");
    write_run(runs + "/cartpole-swingup/tdmpc2/1", {0, 5000}, {1, 2});
    write_run(runs + "/cartpole-swingup/tdmpc2/2", {0, 5000}, {3, 4});
    write_run(runs + "/cartpole-swingup/bmpc/1", {0}, {5});
    write_run(runs + "/misc/run7", {0}, {6});
    write_file_atomic(runs + "/misc/run7/config.txt", "preset=tdmpc2\ntask=walker-run\nseed=7\n");
    write_run(runs + "/.trash/x/1", {0}, {7});                          // hidden: skipped
    write_run(runs + "/cartpole-swingup/tdmpc2/1/nested/1", {0}, {8});  // inside a run: skipped
    std::filesystem::create_directories(tmp.file("empty/a/b"));

    CHECK(find_run_dirs(runs) == std::vector<std::string>{runs + "/cartpole-swingup/bmpc/1",
                                                          runs + "/cartpole-swingup/tdmpc2/1",
                                                          runs + "/cartpole-swingup/tdmpc2/2",
                                                          runs + "/misc/run7"});
    const std::string two = runs + "/cartpole-swingup/tdmpc2/2";
    CHECK(find_run_dirs(two) == std::vector<std::string>{two});
    CHECK(find_run_dirs(two + "/eval.csv") == std::vector<std::string>{two});
    CHECK(error_of([&] { find_run_dirs(tmp.file("empty")); }).find("no eval.csv under") !=
          std::string::npos);
    CHECK(error_of([&] { find_run_dirs(tmp.file("nope")); }).find("does not exist") !=
          std::string::npos);

    const RunInfo r = read_run(two + "/", "");
    CHECK(r.task == "cartpole-swingup");
    CHECK(r.method == "tdmpc2");
    CHECK(r.seed == "2");
    CHECK(r.curve.x == std::vector<double>{0, 5000});
    CHECK(r.curve.y == std::vector<double>{3, 4});
    const RunInfo m = read_run(runs + "/misc/run7", "");
    CHECK(m.task == "walker-run");  // config.txt's task= wins over the path
    CHECK(m.method == "misc");
    CHECK(m.seed == "run7");
    CHECK(read_run(runs + "/misc/run7", "cheetah-run").task == "cheetah-run");  // task=

    // Overlapping arguments name each run once.
    const std::string summary =
        plot_runs({runs, runs + "/cartpole-swingup/tdmpc2/1"}, {}, {tmp.file("a.svg"), ""});
    CHECK(summary == "2 tasks, 3 groups, 4 runs");
    CHECK(path_exists(tmp.file("a.svg")));
    CHECK(!path_exists(tmp.file("a.png")));
  }

  TEST_CASE("plot: one band per group, legends with n, an IQM panel, references as markers") {
    TempDir tmp;
    const std::string runs = tmp.file("runs");
    const std::vector<double> steps = {0, 250000, 500000, 750000, 1000000};
    for (int s = 1; s <= 3; ++s)
      write_run(runs + "/dog-run/pompc/" + std::to_string(s), steps,
                {10.0 * s, 100, 200, 300.0 + s, 400});
    write_run(runs + "/dog-run/v<&>/1", steps, {5, 50, 80, 120, 150});  // one seed: no band
    for (int s = 1; s <= 2; ++s)
      write_run(runs + "/walker-run/pompc/" + std::to_string(s), steps,
                {20, 300.0 * s, 500, 600, 700});
    const std::string refs = tmp.file("refs.csv");
    write_file_atomic(refs,
                      "# comment line\n"
                      "task,method,source,env_step,return\n"
                      "dog-run,tdmpc2,tdmpc2-paper,500000,120\n"
                      "dog-run,tdmpc2,tdmpc2-paper,1000000,170\n"
                      "dog-run,bmpc,bmpc-files,1000000,548\n"
                      "dog-run,bmpc,bmpc-files,2000000,682\n"  // past the runs: left out
                      "walker-run,tdmpc2,tdmpc2-paper,1000000,842\n");
    PlotSettings settings;
    settings.reference_csv = refs;
    const std::string out = tmp.file("curves.svg");
    CHECK(plot_runs({runs}, settings, {out, ""}) == "2 tasks, 3 groups, 6 runs");
    const std::string svg = read_file(out);

    CHECK(xml_problem(svg) == "");
    CHECK(svg.rfind("<?xml", 0) == 0);
    CHECK(count(svg, "class=\"ci-band\"") == 3);  // dog-run pompc, walker-run pompc, IQM pompc
    CHECK(count(svg, "class=\"legend-band\"") == 3);
    CHECK(count(svg, "class=\"mean\"") == 5);  // 3 groups, 2 IQM curves
    CHECK(count(svg, "class=\"mean-marker\"") == 5 * 5);
    for (const char* label :
         {">pompc (n=3)</text>", ">v&lt;&amp;&gt; (n=1)</text>", ">pompc (n=2)</text>",
          ">pompc (n=5, 2 tasks)</text>", ">v&lt;&amp;&gt; (n=1, 1 task)</text>"})
      CHECK_MESSAGE(count(svg, label) == 1, label);
    for (const char* text :
         {">dog-run</text>", ">walker-run</text>", ">IQM over 2 tasks</text>",
          ">IQM of eval returns</text>", ">env steps</text>", ">mean eval return</text>"})
      CHECK_MESSAGE(svg.find(text) != std::string::npos, text);
    for (const char* tick : {">0<", ">200k<", ">400k<", ">1M<", ">1000<", ">600<"})
      CHECK_MESSAGE(svg.find(tick) != std::string::npos, tick);
    CHECK(svg.find(">2M<") == std::string::npos);
    // dog-run: TD-MPC2 at 500k and 1M, BMPC at 1M (2M is past the runs); walker-run: 1M.
    CHECK(count(svg, "class=\"ref-marker\"") == 4);
    CHECK(count(svg, "<rect class=\"ref-marker\"") == 3);  // tdmpc2-paper: squares in both panels
    CHECK(count(svg, "class=\"legend-marker\"") == 3);
    CHECK(count(svg, ">TD-MPC2 (tdmpc2-paper)</text>") == 2);
    CHECK(count(svg, ">BMPC (bmpc-files)</text>") == 1);

    settings.bootstrap.level = 0;  // ci=0
    plot_runs({runs}, settings, {out, ""});
    const std::string plain = read_file(out);
    CHECK(count(plain, "class=\"ci-band\"") == 0);
    CHECK(count(plain, "class=\"legend-band\"") == 0);
    CHECK(count(plain, ">pompc (n=3)</text>") == 1);
  }

  TEST_CASE("plot: the PNG is the same figure, with the bands where the SVG puts them") {
    TempDir tmp;
    const std::string runs = tmp.file("runs");
    const std::vector<double> steps = {0, 250000, 500000, 750000, 1000000};
    write_run(runs + "/cartpole-swingup/tdmpc2/1", steps, {200, 200, 200, 200, 200});
    write_run(runs + "/cartpole-swingup/tdmpc2/2", steps, {600, 600, 600, 600, 600});
    PlotSettings settings;
    const std::string svg_path = tmp.file("c.svg"), png_path = tmp.file("c.png");
    plot_runs({runs}, settings, {svg_path, png_path});
    const auto png = pompc::test::decode_png(read_file(png_path));
    REQUIRE(png.error == "");

    // The figure as plot_runs laid it out (deterministic), for its pixel coordinates.
    std::vector<RunInfo> infos;
    for (const std::string& d : find_run_dirs(runs)) infos.push_back(read_run(d, ""));
    const Figure fig = build_figure(collect_plot_data(infos, settings), settings);
    CHECK(png.width == fig.width);
    CHECK(png.height == fig.height);
    CHECK(read_file(svg_path).find(strfmt("width=\"%d\" height=\"%d\"", fig.width, fig.height)) !=
          std::string::npos);
    REQUIRE(fig.panels.size() == 1);
    const Panel& p = fig.panels[0];
    auto at = [&](double step, double ret) {
      const int x = static_cast<int>(p.px(step)), y = static_cast<int>(p.py(ret));
      return uint32_t(png.r(x, y)) << 16 | uint32_t(png.g(x, y)) << 8 | png.b(x, y);
    };
    // Two seeds at 200 and 600: the band spans 200..600 and the mean line lies at 400. At 375k
    // steps (between grid lines and markers) and return 300: the band colour over white.
    CHECK(at(375000, 300) == over_white(0x1f77b4, 0.2));
    CHECK(at(375000, 500) == over_white(0x1f77b4, 0.2));
    CHECK(at(375000, 400) == 0x1f77b4);  // the 2 px mean line covers its centre row
    CHECK(at(375000, 900) == 0xffffff);  // above the band
    CHECK(at(375000, 100) == 0xffffff);  // below it
    CHECK((png.r(0, 0) == 255 && png.g(0, 0) == 255 && png.b(0, 0) == 255));
    const int w = png.width - 1, h = png.height - 1;
    CHECK((png.r(w, h) == 255 && png.g(w, h) == 255 && png.b(w, h) == 255));

    settings.bootstrap.level = 0;  // ci=0: no band
    plot_runs({runs}, settings, {"", png_path});
    const auto plain = pompc::test::decode_png(read_file(png_path));
    REQUIRE(plain.error == "");
    const int x = static_cast<int>(p.px(375000)), y = static_cast<int>(p.py(300));
    CHECK((plain.r(x, y) == 255 && plain.g(x, y) == 255 && plain.b(x, y) == 255));
  }

  TEST_CASE("plot: output file names from out= and png=") {
    PlotOutputs o = plot_outputs(std::nullopt, std::nullopt);
    CHECK((o.svg == "curves.svg" && o.png == "curves.png"));
    o = plot_outputs("r/fig.svg", std::nullopt);
    CHECK((o.svg == "r/fig.svg" && o.png == "r/fig.png"));
    o = plot_outputs("r/fig", std::nullopt);  // a stem
    CHECK((o.svg == "r/fig.svg" && o.png == "r/fig.png"));
    o = plot_outputs("a.svg", "b.png");
    CHECK((o.svg == "a.svg" && o.png == "b.png"));
    o = plot_outputs("a.svg", "");
    CHECK((o.svg == "a.svg" && o.png.empty()));
    o = plot_outputs("", "b.png");
    CHECK((o.svg.empty() && o.png == "b.png"));
    CHECK(error_of([] { plot_outputs("a.png", std::nullopt); }).find("png=a.png") !=
          std::string::npos);
    TempDir tmp;
    write_run(tmp.file("t/m/1"), {0}, {1});
    CHECK(error_of([&] {
            plot_runs({tmp.path()}, {}, {"", ""});
          }).find("nothing to write") != std::string::npos);
  }

  TEST_CASE("plot: the committed data/reference_curves.csv loads and draws") {
    const std::vector<PlotSeries> dog =
        read_reference_curves(repo_file("data/reference_curves.csv"), "dog-run");
    REQUIRE(dog.size() == 3);  // tdmpc2-paper, and the BMPC authors' BMPC and TD-MPC2 runs
    size_t points = 0;
    for (const PlotSeries& s : dog) points += s.x.size();
    CHECK(points == 18);
    CHECK(dog[0].style != dog[1].style);
    CHECK(dog[1].style != dog[2].style);
    CHECK(dog[0].style != dog[2].style);
    CHECK(read_reference_curves(repo_file("data/reference_curves.csv"), "no-such-task").empty());
    PlotData data;
    data.tasks = {"dog-run"};
    data.references = {dog};
    const Figure fig = build_figure(data, {});
    const std::string svg = render_svg(fig);
    CHECK(xml_problem(svg) == "");
    CHECK(count(svg, "class=\"ref-marker\"") == 18);  // no runs: the x axis covers them all
    CHECK(svg.find(">no eval rows yet</text>") != std::string::npos);
    CHECK(rasterize(fig).width == fig.width);
  }

  TEST_CASE("plot: an eval.csv without the expected columns is refused") {
    TempDir dir;
    const std::string p = dir.file("eval.csv");
    write_file_atomic(p, "step,episode_reward\n1,2\n");
    CHECK(error_of([&] { read_eval_csv(p, "run"); }).find("has no column 'env_step'") !=
          std::string::npos);
  }
}
