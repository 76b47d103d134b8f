// src/io/plot.h: learning curves of many runs as SVG and PNG figures, written by pompc itself (no
// library): mean over seeds with a bootstrap band per (task, method), one panel per task, an IQM
// panel over tasks, published reference points.
//
// Run book
//   eval.csv (the format the trainer writes and read_eval_csv reads): a CSV file with a header
//                        line; required columns `env_step` (environment steps so far, action
//                        repeat counted, as published curves count them) and `return_mean` (mean
//                        undiscounted return of the evaluation episodes at that step); any other
//                        columns (agent_step, return_std, episodes, wall_s, ...) are ignored.
//                        Rows in any order (sorted by env_step); `nan` returns are skipped. Lines
//                        starting with '#' are comments.
//   finding runs         find_run_dirs(root): root itself when it holds eval.csv (or is an
//                        eval.csv), else every directory below it that holds one (symbolic links
//                        followed, names starting with '.' skipped, nothing below a run directory
//                        searched). A root without any is an error naming the expected layout.
//   naming runs          a run directory runs/<task>/<method>/<seed>: the seed is its name, the
//                        method its parent's name (the preset, or whatever name a variant's runs
//                        were put under), the task PlotSettings::task when set, else the task=
//                        line of its config.txt, else the name two levels up.
//   groups               the runs of one (task, method) are one group: its mean curve over seeds
//                        with a percentile bootstrap band (plot_stats.h: the step grid, a seed
//                        missing a step left out there). With 2 or more tasks, every method
//                        also gets an aggregate curve: the IQM over its runs x tasks with a
//                        stratified bootstrap band, on the steps every one of its tasks reached.
//   reference curves     data/reference_curves.csv: '#' comment lines, then the header
//                        task,method,source,env_step,return; one marker series per
//                        (method, source) of a task, labelled e.g. "TD-MPC2 (tdmpc2-paper)", with
//                        a marker shape and colour per (method, source) kept across panels
//                        (square, triangle, diamond, cross, plus, triangle-down).
//   the picture          one panel per task (sorted by name; "no eval rows yet" in one whose
//                        runs have none) and, when 2 or more tasks have eval rows, a last panel
//                        "IQM over N tasks"; panels fill a grid of 1, 2 (up to 4 panels) or
//                        3 columns, each PlotSettings::panel_width x panel_height pixels. A panel:
//                        title, x = env steps with ticks at nice numbers (0, 200k, ... 1M; 1.5M
//                        past a million) ending at the tick after its runs' last step (reference
//                        points beyond it left out), y = mean eval return (0..1000 when every
//                        value drawn lies in it, as DMC returns do), light grid; per group a band
//                        (class "ci-band", the method's colour at 20% opacity, only over steps
//                        with 2 or more seeds) under its mean line (class "mean", 2 px), point
//                        markers on curves of at most 25 steps; reference markers; a legend on
//                        the right: "<method> (n=<seeds>)", "n=1-3" when steps differ in how many
//                        seeds reached them, "(n=<runs>, <k> tasks)" on the IQM panel. Colours
//                        follow the sorted method names, the same in every panel.
//   one figure, two files  build_figure lays the panels out once as a display list of marks
//                        (rectangles, polygons, polylines, circles, text; each may be clipped to
//                        its panel's plot area); render_svg writes it as standalone SVG 1.1 (text
//                        XML-escaped, one element per mark, its class attribute as listed), and
//                        rasterize draws the same marks with io/raster.h (5x7 bitmap font: font
//                        size 15 and above at scale 2, smaller at scale 1) for write_png.
//   writing              plot_runs(dirs, settings, outputs) does all of the above and writes the
//                        SVG and/or PNG atomically (an empty path skips that file); `pompc plot`
//                        is a thin wrapper (src/main.cpp).
//   tests                build/test_emu -ts=io -tc='*plot*'
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "io/plot_stats.h"
#include "io/png.h"
#include "io/raster.h"

namespace pompc::io {

struct PlotSeries {
  std::string label;
  std::vector<double> x, y;
  int style = 0;  // reference series: marker shape and colour index, fixed per (method, source)
};

// Ticks of a "nice" axis covering [lo, hi]: the step is 1, 2 or 5 times a power of ten, chosen
// so that about `target` intervals cover the range; lo/hi are rounded out to multiples of it.
struct NiceAxis {
  double lo, hi, step;
  std::vector<double> ticks;
};
NiceAxis nice_axis(double lo, double hi, int target = 5);

// A tick label: "0", "200k", "1M", "1.5M", "250", "0.5".
std::string format_tick(double v, double step);

// An eval.csv as a series (sorted by env_step, nan returns dropped); label is the caller's.
PlotSeries read_eval_csv(const std::string& path, const std::string& label);
// The reference marker series of one task (empty when the file has none for it), in file order.
std::vector<PlotSeries> read_reference_curves(const std::string& path, const std::string& task);

struct PlotSettings {
  std::string task;             // every run's task; "" = config.txt's task=, else from the path
  std::string reference_csv;    // published curves to overlay; "" = none
  BootstrapSettings bootstrap;  // the bands' confidence level, resamples and seed
  int panel_width = 640;        // pixels per panel (at least 400)
  int panel_height = 420;       // pixels per panel (at least 260)
};

// Run directories at or below root (sorted by path); throws when there are none.
std::vector<std::string> find_run_dirs(const std::string& root);

struct RunInfo {
  std::string task, method, seed;
  Curve curve;  // eval.csv: env_step, return_mean
};
RunInfo read_run(const std::string& dir, const std::string& task);

struct GroupCurve {
  std::string task;  // "" for an aggregate curve
  std::string method;
  int runs = 0;   // seeds (aggregate: runs over all its tasks)
  int tasks = 1;  // tasks behind the curve
  BandCurve curve;
};

struct PlotData {
  std::vector<std::string> tasks;     // sorted
  std::vector<std::string> methods;   // sorted; a method's colour is its index here
  std::vector<GroupCurve> groups;     // per (task, method) with eval rows, sorted
  int aggregate_tasks = 0;            // tasks with eval rows (the IQM panel: 2 or more)
  std::vector<GroupCurve> aggregate;  // per method, IQM over its tasks
  std::vector<std::vector<PlotSeries>> references;  // per task
};
PlotData collect_plot_data(const std::vector<RunInfo>& runs, const PlotSettings& settings);

// One drawing primitive of a figure, in pixels (x right, y down).
struct Mark {
  enum class Kind { rect, polygon, polyline, circle, text };
  Kind kind = Kind::rect;
  std::string cls;                        // SVG class attribute ("" for none)
  std::vector<std::vector<Point>> paths;  // polygon: rings (union); polyline: open paths
  double x = 0, y = 0, w = 0, h = 0;      // rect: corner and size; circle: centre, radius w;
                                          // text: the anchor point on the baseline
  uint32_t color = 0;                     // 0xRRGGBB: fill, or stroke for a polyline
  double opacity = 1;                     // fill / stroke opacity
  double stroke_width = 1;                // polyline
  std::string text;                       // text
  double font_size = 12;                  // text, SVG px
  TextAnchor anchor = TextAnchor::start;  // text
  bool rotated = false;                   // text: reads upwards (the y-axis label)
  int clip = -1;                          // index of the panel whose plot area clips it
};

struct Panel {
  ClipRect area;  // the plot area in pixels
  NiceAxis xa, ya;
  double px(double x) const {
    return area.x0 + (x - xa.lo) / (xa.hi - xa.lo) * (area.x1 - area.x0);
  }
  double py(double y) const {
    return area.y1 - (y - ya.lo) / (ya.hi - ya.lo) * (area.y1 - area.y0);
  }
};

struct Figure {
  int width = 0, height = 0;
  std::vector<Panel> panels;
  std::vector<Mark> marks;  // drawn in order
};

Figure build_figure(const PlotData& data, const PlotSettings& settings);
std::string render_svg(const Figure& figure);
Image rasterize(const Figure& figure);

struct PlotOutputs {
  std::string svg;  // "" = no SVG
  std::string png;  // "" = no PNG
};
// The files of `pompc plot out=... png=...`: out names the SVG (default curves.svg; a name
// without ".svg" is a stem and gets it), png the PNG (default: out's stem + ".png"); an empty
// value writes no such file. out=X.png is refused (it names the SVG).
PlotOutputs plot_outputs(const std::optional<std::string>& out,
                         const std::optional<std::string>& png);
// Finds the runs under every dir, reads them, draws and writes the outputs; returns a one-line
// summary ("2 tasks, 3 groups, 7 runs").
std::string plot_runs(const std::vector<std::string>& dirs, const PlotSettings& settings,
                      const PlotOutputs& outputs);

}  // namespace pompc::io
