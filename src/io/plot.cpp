// src/io/plot.cpp: SVG learning-curve plot (see plot.h).
#include "io/plot.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "common.h"
#include "io/atomic_file.h"
#include "io/csv.h"

namespace pompc::io {

NiceAxis nice_axis(double lo, double hi, int target) {
  POMPC_REQUIRE(std::isfinite(lo) && std::isfinite(hi), "axis range [%g, %g] is not finite", lo,
                hi);
  POMPC_REQUIRE(target >= 1, "an axis needs at least 1 interval");
  if (hi < lo) std::swap(lo, hi);
  if (hi == lo) hi = lo + (lo == 0 ? 1 : std::fabs(lo) * 0.1);
  const double raw = (hi - lo) / target;
  const double mag = std::pow(10.0, std::floor(std::log10(raw)));
  const double f = raw / mag;
  const double nf = f <= 1 + 1e-9 ? 1 : f <= 2 + 1e-9 ? 2 : f <= 5 + 1e-9 ? 5 : 10;
  NiceAxis ax;
  ax.step = nf * mag;
  const double k0 = std::floor(lo / ax.step + 1e-9), k1 = std::ceil(hi / ax.step - 1e-9);
  ax.lo = k0 * ax.step;
  ax.hi = k1 * ax.step;
  for (double k = k0; k <= k1 + 0.5; k += 1) ax.ticks.push_back(k * ax.step);
  return ax;
}

namespace {

// Fixed-point text of v with at most `decimals` decimals, trailing zeros removed.
std::string trimmed(double v, int decimals) {
  std::string s = strfmt("%.*f", std::max(decimals, 0), v);
  if (s.find('.') != std::string::npos) {
    while (s.back() == '0') s.pop_back();
    if (s.back() == '.') s.pop_back();
  }
  if (s == "-0") s = "0";
  return s;
}

int decimals_for(double step) {
  return std::max(0, static_cast<int>(-std::floor(std::log10(step) + 1e-9)));
}

}  // namespace

std::string format_tick(double v, double step) {
  if (std::fabs(v) < step * 1e-6) return "0";
  if (std::fabs(v) >= 1e6 && step >= 1e4) return trimmed(v / 1e6, decimals_for(step / 1e6)) + "M";
  if (std::fabs(v) >= 1e3 && step >= 1e3) return trimmed(v / 1e3, decimals_for(step / 1e3)) + "k";
  return trimmed(v, decimals_for(step));
}

namespace {

std::string esc(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '&':
        out += "&amp;";
        break;
      case '<':
        out += "&lt;";
        break;
      case '>':
        out += "&gt;";
        break;
      case '"':
        out += "&quot;";
        break;
      case '\'':
        out += "&apos;";
        break;
      default:
        out += c;
    }
  }
  return out;
}

const char* const kRunColors[] = {"#1f77b4", "#d62728", "#2ca02c", "#9467bd",
                                  "#ff7f0e", "#8c564b", "#e377c2", "#17becf"};
const char* const kRefColors[] = {"#333333", "#7f7f7f", "#bcbd22", "#8c6d31", "#393b79"};
constexpr int kShapes = 6;  // square, triangle, diamond, cross, plus, triangle-down

// A marker of shape `shape` centred at (x, y), radius r.
std::string marker(int shape, double x, double y, double r, const char* color, const char* cls) {
  switch (shape % kShapes) {
    case 0:
      return strfmt(
          "<rect class=\"%s\" x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" height=\"%.2f\" "
          "fill=\"%s\"/>",
          cls, x - r, y - r, 2 * r, 2 * r, color);
    case 1:
      return strfmt("<polygon class=\"%s\" points=\"%.2f,%.2f %.2f,%.2f %.2f,%.2f\" fill=\"%s\"/>",
                    cls, x, y - 1.2 * r, x + 1.1 * r, y + 0.8 * r, x - 1.1 * r, y + 0.8 * r, color);
    case 2:
      return strfmt(
          "<polygon class=\"%s\" points=\"%.2f,%.2f %.2f,%.2f %.2f,%.2f %.2f,%.2f\" "
          "fill=\"%s\"/>",
          cls, x, y - 1.3 * r, x + 1.3 * r, y, x, y + 1.3 * r, x - 1.3 * r, y, color);
    case 3:
      return strfmt(
          "<path class=\"%s\" d=\"M%.2f %.2fL%.2f %.2fM%.2f %.2fL%.2f %.2f\" "
          "stroke=\"%s\" stroke-width=\"2.2\" fill=\"none\"/>",
          cls, x - r, y - r, x + r, y + r, x - r, y + r, x + r, y - r, color);
    case 4:
      return strfmt(
          "<path class=\"%s\" d=\"M%.2f %.2fL%.2f %.2fM%.2f %.2fL%.2f %.2f\" "
          "stroke=\"%s\" stroke-width=\"2.2\" fill=\"none\"/>",
          cls, x - 1.2 * r, y, x + 1.2 * r, y, x, y - 1.2 * r, x, y + 1.2 * r, color);
    default:
      return strfmt("<polygon class=\"%s\" points=\"%.2f,%.2f %.2f,%.2f %.2f,%.2f\" fill=\"%s\"/>",
                    cls, x, y + 1.2 * r, x + 1.1 * r, y - 0.8 * r, x - 1.1 * r, y - 0.8 * r, color);
  }
}

}  // namespace

std::string render_svg(const PlotSpec& spec) {
  const double W = spec.width, H = spec.height;
  POMPC_REQUIRE(W >= 300 && H >= 200, "plot size %dx%d is too small (at least 300x200)", spec.width,
                spec.height);
  const double left = 72, right = 220, top = 48, bottom = 58;
  const double pw = W - left - right, ph = H - top - bottom;

  double xmin = 0, xmax = -INFINITY, ymin = 0, ymax = -INFINITY;
  auto scan = [&](const std::vector<PlotSeries>& v) {
    for (const PlotSeries& s : v) {
      POMPC_REQUIRE(s.x.size() == s.y.size(), "plot series %s has %zu x and %zu y values",
                    s.label.c_str(), s.x.size(), s.y.size());
      for (size_t i = 0; i < s.x.size(); ++i) {
        if (!std::isfinite(s.x[i]) || !std::isfinite(s.y[i])) continue;
        xmin = std::min(xmin, s.x[i]);
        xmax = std::max(xmax, s.x[i]);
        ymin = std::min(ymin, s.y[i]);
        ymax = std::max(ymax, s.y[i]);
      }
    }
  };
  scan(spec.runs);
  scan(spec.references);
  if (spec.x_max) xmax = *spec.x_max;
  if (!std::isfinite(xmax)) xmax = 1;
  if (!std::isfinite(ymax)) ymax = 1;
  if (spec.y_min) ymin = *spec.y_min;
  if (spec.y_max) ymax = *spec.y_max;
  const NiceAxis xa = nice_axis(xmin, xmax, 5);
  const NiceAxis ya = nice_axis(ymin, ymax, 5);
  auto px = [&](double x) { return left + (x - xa.lo) / (xa.hi - xa.lo) * pw; };
  auto py = [&](double y) { return top + ph - (y - ya.lo) / (ya.hi - ya.lo) * ph; };
  // Points drawn: finite and inside the axes (a forced range leaves the others out).
  auto shown = [&](double x, double y) {
    const double ex = 1e-9 * (xa.hi - xa.lo), ey = 1e-9 * (ya.hi - ya.lo);
    return std::isfinite(x) && std::isfinite(y) && x >= xa.lo - ex && x <= xa.hi + ex &&
           y >= ya.lo - ey && y <= ya.hi + ey;
  };

  std::string s;
  s += "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n";
  s += strfmt(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\" width=\"%d\" "
      "height=\"%d\" viewBox=\"0 0 %d %d\" font-family=\"Helvetica, Arial, sans-serif\">\n",
      spec.width, spec.height, spec.width, spec.height);
  s += strfmt("<rect x=\"0\" y=\"0\" width=\"%d\" height=\"%d\" fill=\"white\"/>\n", spec.width,
              spec.height);
  s += strfmt(
      "<defs><clipPath id=\"plot-area\"><rect x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" "
      "height=\"%.2f\"/></clipPath></defs>\n",
      left - 6, top - 6, pw + 12, ph + 12);
  s += strfmt(
      "<text class=\"title\" x=\"%.2f\" y=\"28\" font-size=\"17\" font-weight=\"bold\" "
      "text-anchor=\"middle\">%s</text>\n",
      left + pw / 2, esc(spec.title).c_str());

  // Grid and ticks.
  s += "<g class=\"grid\" stroke=\"#e3e3e3\" stroke-width=\"1\">\n";
  for (double t : xa.ticks)
    s += strfmt("<line x1=\"%.2f\" y1=\"%.2f\" x2=\"%.2f\" y2=\"%.2f\"/>\n", px(t), top, px(t),
                top + ph);
  for (double t : ya.ticks)
    s += strfmt("<line x1=\"%.2f\" y1=\"%.2f\" x2=\"%.2f\" y2=\"%.2f\"/>\n", left, py(t), left + pw,
                py(t));
  s += "</g>\n";
  s += "<g class=\"axes\" font-size=\"12\" fill=\"#222222\">\n";
  s += strfmt("<line x1=\"%.2f\" y1=\"%.2f\" x2=\"%.2f\" y2=\"%.2f\" stroke=\"#222222\"/>\n", left,
              top + ph, left + pw, top + ph);
  s += strfmt("<line x1=\"%.2f\" y1=\"%.2f\" x2=\"%.2f\" y2=\"%.2f\" stroke=\"#222222\"/>\n", left,
              top, left, top + ph);
  for (double t : xa.ticks)
    s += strfmt("<text class=\"x-tick\" x=\"%.2f\" y=\"%.2f\" text-anchor=\"middle\">%s</text>\n",
                px(t), top + ph + 17, esc(format_tick(t, xa.step)).c_str());
  for (double t : ya.ticks)
    s += strfmt("<text class=\"y-tick\" x=\"%.2f\" y=\"%.2f\" text-anchor=\"end\">%s</text>\n",
                left - 7, py(t) + 4, esc(format_tick(t, ya.step)).c_str());
  s += "</g>\n";
  s += strfmt(
      "<text class=\"x-label\" x=\"%.2f\" y=\"%.2f\" font-size=\"13\" "
      "text-anchor=\"middle\">%s</text>\n",
      left + pw / 2, H - 14, esc(spec.x_label).c_str());
  s += strfmt(
      "<text class=\"y-label\" x=\"18\" y=\"%.2f\" font-size=\"13\" text-anchor=\"middle\" "
      "transform=\"rotate(-90 18 %.2f)\">%s</text>\n",
      top + ph / 2, top + ph / 2, esc(spec.y_label).c_str());

  // Runs: one path each, with circle markers.
  s += "<g class=\"runs\" clip-path=\"url(#plot-area)\">\n";
  for (size_t r = 0; r < spec.runs.size(); ++r) {
    const PlotSeries& run = spec.runs[r];
    const char* color = kRunColors[r % std::size(kRunColors)];
    std::vector<size_t> order(run.x.size());
    std::iota(order.begin(), order.end(), size_t{0});
    std::stable_sort(order.begin(), order.end(),
                     [&](size_t a, size_t b) { return run.x[a] < run.x[b]; });
    std::string d, dots;
    for (size_t i : order) {
      if (!shown(run.x[i], run.y[i])) continue;
      d += strfmt("%s%.2f %.2f", d.empty() ? "M" : "L", px(run.x[i]), py(run.y[i]));
      dots += strfmt("<circle class=\"run-marker\" cx=\"%.2f\" cy=\"%.2f\" r=\"3\" fill=\"%s\"/>\n",
                     px(run.x[i]), py(run.y[i]), color);
    }
    if (d.empty()) continue;
    s += strfmt(
        "<path class=\"run\" d=\"%s\" fill=\"none\" stroke=\"%s\" stroke-width=\"2\" "
        "stroke-linejoin=\"round\"/>\n",
        d.c_str(), color);
    s += dots;
  }
  s += "</g>\n";

  // Reference points: markers only, one shape per series.
  s += "<g class=\"references\" clip-path=\"url(#plot-area)\">\n";
  for (size_t r = 0; r < spec.references.size(); ++r) {
    const PlotSeries& ref = spec.references[r];
    const char* color = kRefColors[r % std::size(kRefColors)];
    for (size_t i = 0; i < ref.x.size(); ++i) {
      if (!shown(ref.x[i], ref.y[i])) continue;
      s += marker(static_cast<int>(r), px(ref.x[i]), py(ref.y[i]), 4.5, color, "ref-marker") + "\n";
    }
  }
  s += "</g>\n";

  // Legend.
  s += "<g class=\"legend\" font-size=\"12\">\n";
  double ly = top + 8;
  const double lx = left + pw + 18;
  for (size_t r = 0; r < spec.runs.size(); ++r, ly += 20) {
    const char* color = kRunColors[r % std::size(kRunColors)];
    s += strfmt(
        "<line x1=\"%.2f\" y1=\"%.2f\" x2=\"%.2f\" y2=\"%.2f\" stroke=\"%s\" "
        "stroke-width=\"2\"/>\n",
        lx, ly, lx + 22, ly, color);
    s += strfmt("<circle class=\"legend-marker\" cx=\"%.2f\" cy=\"%.2f\" r=\"3\" fill=\"%s\"/>\n",
                lx + 11, ly, color);
    s += strfmt("<text class=\"legend-label\" x=\"%.2f\" y=\"%.2f\">%s</text>\n", lx + 30, ly + 4,
                esc(spec.runs[r].label).c_str());
  }
  for (size_t r = 0; r < spec.references.size(); ++r, ly += 20) {
    s += marker(static_cast<int>(r), lx + 11, ly, 4.5, kRefColors[r % std::size(kRefColors)],
                "legend-marker") +
         "\n";
    s += strfmt("<text class=\"legend-label\" x=\"%.2f\" y=\"%.2f\">%s</text>\n", lx + 30, ly + 4,
                esc(spec.references[r].label).c_str());
  }
  s += "</g>\n</svg>\n";
  return s;
}

PlotSeries read_eval_csv(const std::string& path, const std::string& label) {
  const CsvTable t = read_csv(path);
  const size_t cx = t.column("env_step", path), cy = t.column("return_mean", path);
  std::vector<std::pair<double, double>> pts;
  for (size_t r = 0; r < t.rows.size(); ++r) {
    const double x = csv_number(t, r, cx, path), y = csv_number(t, r, cy, path);
    if (std::isfinite(x) && std::isfinite(y)) pts.emplace_back(x, y);
  }
  std::stable_sort(pts.begin(), pts.end(),
                   [](const auto& a, const auto& b) { return a.first < b.first; });
  PlotSeries s;
  s.label = label;
  for (const auto& [x, y] : pts) {
    s.x.push_back(x);
    s.y.push_back(y);
  }
  return s;
}

namespace {
std::string method_name(const std::string& m) {
  if (m == "tdmpc2") return "TD-MPC2";
  if (m == "bmpc") return "BMPC";
  if (m == "tdmpc2sq") return "TD-M(PC)^2";
  if (m == "pompc") return "PO-MPC";
  return m;
}
}  // namespace

std::vector<PlotSeries> read_reference_curves(const std::string& path, const std::string& task) {
  const CsvTable t = read_csv(path);
  const size_t ct = t.column("task", path), cm = t.column("method", path),
               cs = t.column("source", path), cx = t.column("env_step", path),
               cy = t.column("return", path);
  std::vector<PlotSeries> out;
  std::vector<std::pair<std::string, std::string>> keys;
  for (size_t r = 0; r < t.rows.size(); ++r) {
    if (t.rows[r][ct] != task) continue;
    const std::pair<std::string, std::string> key{t.rows[r][cm], t.rows[r][cs]};
    size_t k = 0;
    while (k < keys.size() && keys[k] != key) ++k;
    if (k == keys.size()) {
      keys.push_back(key);
      out.push_back({method_name(key.first) + " (" + key.second + ")", {}, {}});
    }
    out[k].x.push_back(csv_number(t, r, cx, path));
    out[k].y.push_back(csv_number(t, r, cy, path));
  }
  return out;
}

void plot_task(const std::string& out_svg, const std::string& task,
               const std::vector<std::pair<std::string, std::string>>& runs,
               const std::string& reference_csv) {
  PlotSpec spec;
  spec.title = task;
  for (const auto& [label, path] : runs) spec.runs.push_back(read_eval_csv(path, label));
  if (!reference_csv.empty()) spec.references = read_reference_curves(reference_csv, task);
  bool in_dmc_range = true;
  for (const auto* group : {&spec.runs, &spec.references})
    for (const PlotSeries& s : *group)
      for (double y : s.y)
        if (y < 0 || y > 1000) in_dmc_range = false;
  if (in_dmc_range) {
    spec.y_min = 0;
    spec.y_max = 1000;
  }
  double last = -INFINITY;
  for (const PlotSeries& r : spec.runs)
    for (double x : r.x) last = std::max(last, x);
  if (last > 0) spec.x_max = last;
  write_file_atomic(out_svg, render_svg(spec));
}

}  // namespace pompc::io
