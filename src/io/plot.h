// src/io/plot.h: learning curves as an SVG line plot, written by pompc itself (no library).
//
// Run book
//   eval.csv (the format the trainer writes and plot_task reads): a CSV file with a header line;
//                        required columns `env_step` (environment steps so far, action repeat
//                        counted, as published curves count them) and `return_mean` (mean
//                        undiscounted return of the evaluation episodes at that step); any other
//                        columns (agent_step, return_std, episodes, wall_s, ...) are ignored.
//                        Rows in any order (sorted by env_step for drawing); `nan` returns are
//                        skipped. Lines starting with '#' are comments.
//   reference curves     data/reference_curves.csv: '#' comment lines, then the header
//                        task,method,source,env_step,return; one marker series per
//                        (method, source) of the task, labelled e.g. "TD-MPC2 (tdmpc2-paper)".
//   the picture          render_svg(spec): title = task, x = env steps with ticks at nice
//                        numbers (0, 200k, 400k, ... 1M; 1.5M style past a million), y = mean
//                        eval return (DMC: 0..1000 when every value lies in it), light grid,
//                        each run a polyline (one <path class="run">) with circle markers, each
//                        reference series markers only (<... class="ref-marker">, a distinct
//                        shape per series: square, triangle, diamond, cross, ...), a legend on
//                        the right. The x axis ends at the tick after the runs' last step
//                        (reference points beyond it are left out). Text is XML-escaped; the
//                        file is standalone SVG 1.1.
//   writing              plot_task(out, task, runs, reference_csv) reads the eval.csv files and
//                        the references and writes `out` atomically (curves.svg in the run dir;
//                        `pompc plot` draws several runs of one task together).
//   tests                build/test_emu -ts=io -tc='*plot*'
#pragma once

#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace pompc::io {

struct PlotSeries {
  std::string label;
  std::vector<double> x, y;
};

struct PlotSpec {
  std::string title;
  std::string x_label = "env steps";
  std::string y_label = "mean eval return";
  std::vector<PlotSeries> runs;        // lines with markers
  std::vector<PlotSeries> references;  // markers only
  std::optional<double> x_max;         // forced x range end (else the data's); points beyond
                                       // it are left out
  std::optional<double> y_min, y_max;  // forced y range (else a nice range over the data and 0)
  int width = 760, height = 460;       // pixels
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

std::string render_svg(const PlotSpec& spec);

// An eval.csv as a series (sorted by env_step, nan returns dropped); label is the caller's.
PlotSeries read_eval_csv(const std::string& path, const std::string& label);
// The reference marker series of one task (empty when the file has none for it).
std::vector<PlotSeries> read_reference_curves(const std::string& path, const std::string& task);

// Reads every run's eval.csv (label, path) and the reference file (skipped when empty), then
// writes the SVG to out_svg atomically. The x axis ends at the tick after the runs' last step
// (reference points beyond it are left out; with no run data it covers the references); DMC
// returns get the fixed 0..1000 y range.
void plot_task(const std::string& out_svg, const std::string& task,
               const std::vector<std::pair<std::string, std::string>>& runs,
               const std::string& reference_csv);

}  // namespace pompc::io
