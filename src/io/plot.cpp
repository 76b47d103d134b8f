// src/io/plot.cpp: run discovery, grouping, figure layout, SVG and raster output (see plot.h).
#include "io/plot.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <map>
#include <set>

#include "common.h"
#include "io/atomic_file.h"
#include "io/csv.h"
#include "io/png.h"

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

namespace fs = std::filesystem;

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

std::string method_name(const std::string& m) {
  if (m == "tdmpc2") return "TD-MPC2";
  if (m == "bmpc") return "BMPC";
  if (m == "tdmpc2sq") return "TD-M(PC)^2";
  if (m == "pompc") return "PO-MPC";
  return m;
}

}  // namespace

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

std::vector<PlotSeries> read_reference_curves(const std::string& path, const std::string& task) {
  const CsvTable t = read_csv(path);
  const size_t ct = t.column("task", path), cm = t.column("method", path),
               cs = t.column("source", path), cx = t.column("env_step", path),
               cy = t.column("return", path);
  std::vector<PlotSeries> out;
  std::vector<std::pair<std::string, std::string>> keys;  // (method, source) of the whole file
  for (size_t r = 0; r < t.rows.size(); ++r) {
    const std::pair<std::string, std::string> key{t.rows[r][cm], t.rows[r][cs]};
    const size_t style = std::find(keys.begin(), keys.end(), key) - keys.begin();
    if (style == keys.size()) keys.push_back(key);
    if (t.rows[r][ct] != task) continue;
    auto it = std::find_if(out.begin(), out.end(),
                           [&](const PlotSeries& s) { return s.style == static_cast<int>(style); });
    if (it == out.end()) {
      out.push_back(
          {method_name(key.first) + " (" + key.second + ")", {}, {}, static_cast<int>(style)});
      it = out.end() - 1;
    }
    it->x.push_back(csv_number(t, r, cx, path));
    it->y.push_back(csv_number(t, r, cy, path));
  }
  return out;
}

// ---- finding and reading runs ---------------------------------------------------------------

namespace {

bool is_file(const fs::path& p) {
  std::error_code ec;
  return fs::is_regular_file(p, ec);
}

void walk(const fs::path& dir, std::set<fs::path>& visited, std::vector<std::string>& out) {
  std::error_code ec;
  const fs::path canon = fs::canonical(dir, ec);
  if (ec || !visited.insert(canon).second) return;  // unreadable, or a link back up the tree
  if (is_file(dir / "eval.csv")) {
    out.push_back(dir.string());
    return;
  }
  std::vector<fs::path> children;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (!name.empty() && name[0] != '.' && it->is_directory(ec)) children.push_back(it->path());
  }
  std::sort(children.begin(), children.end());
  for (const fs::path& c : children) walk(c, visited, out);
}

// The absolute, normalised path of dir with no trailing separator.
fs::path tidy(const std::string& dir) {
  fs::path p = fs::absolute(fs::path(dir)).lexically_normal();
  if (p.filename().empty()) p = p.parent_path();
  return p;
}

}  // namespace

std::vector<std::string> find_run_dirs(const std::string& root) {
  std::error_code ec;
  POMPC_REQUIRE(fs::exists(root, ec),
                "'%s' does not exist; pass run directories (runs/<task>/<preset>/<seed>) or a "
                "directory above them (runs/, runs/<task>)",
                root.c_str());
  if (fs::path(root).filename() == "eval.csv" && is_file(root))
    return {fs::path(root).parent_path().empty() ? "." : fs::path(root).parent_path().string()};
  POMPC_REQUIRE(fs::is_directory(root, ec),
                "'%s' is not a directory; pass run directories (holding eval.csv) or a "
                "directory above them",
                root.c_str());
  std::set<fs::path> visited;
  std::vector<std::string> out;
  walk(fs::path(root), visited, out);
  POMPC_REQUIRE(!out.empty(),
                "no eval.csv under '%s': pass run directories (runs/<task>/<preset>/<seed>, "
                "holding the eval.csv a training run writes) or a directory above them (runs/, "
                "runs/<task>)",
                root.c_str());
  return out;
}

RunInfo read_run(const std::string& dir, const std::string& task) {
  const fs::path p = tidy(dir);
  RunInfo run;
  run.seed = p.filename().string();
  run.method = p.parent_path().filename().string();
  run.task = task;
  const fs::path config = fs::path(dir) / "config.txt";
  if (run.task.empty() && is_file(config)) {
    const std::string text = read_file(config.string());
    for (size_t b = 0; b < text.size() && run.task.empty();) {
      const size_t e = std::min(text.find('\n', b), text.size());
      if (text.compare(b, 5, "task=") == 0) run.task = text.substr(b + 5, e - b - 5);
      b = e + 1;
    }
  }
  if (run.task.empty()) run.task = p.parent_path().parent_path().filename().string();
  POMPC_REQUIRE(!run.task.empty() && !run.method.empty(),
                "cannot tell the task and method of run directory '%s' (expected "
                "runs/<task>/<method>/<seed>); pass task=NAME",
                dir.c_str());
  const PlotSeries s = read_eval_csv((fs::path(dir) / "eval.csv").string(), run.seed);
  run.curve = {s.x, s.y};
  return run;
}

PlotData collect_plot_data(const std::vector<RunInfo>& runs, const PlotSettings& settings) {
  PlotData data;
  std::map<std::pair<std::string, std::string>, std::vector<Curve>> by_group;
  std::set<std::string> tasks, methods;
  for (const RunInfo& r : runs) {
    tasks.insert(r.task);
    if (r.curve.x.empty()) continue;  // no eval row yet
    methods.insert(r.method);
    by_group[{r.task, r.method}].push_back(r.curve);
  }
  data.tasks.assign(tasks.begin(), tasks.end());
  data.methods.assign(methods.begin(), methods.end());
  std::map<std::string, std::vector<std::vector<Curve>>> by_method;  // method -> per task
  for (const auto& [key, curves] : by_group) {
    GroupCurve g;
    g.task = key.first;
    g.method = key.second;
    g.runs = static_cast<int>(curves.size());
    g.curve = mean_curve(curves, settings.bootstrap);
    data.groups.push_back(std::move(g));
    by_method[key.second].push_back(curves);
  }
  std::set<std::string> with_rows;
  for (const GroupCurve& g : data.groups) with_rows.insert(g.task);
  data.aggregate_tasks = static_cast<int>(with_rows.size());
  if (data.aggregate_tasks > 1) {
    for (const auto& [method, per_task] : by_method) {
      GroupCurve g;
      g.method = method;
      g.tasks = static_cast<int>(per_task.size());
      for (const auto& t : per_task) g.runs += static_cast<int>(t.size());
      g.curve = iqm_curve(per_task, settings.bootstrap);
      if (!g.curve.x.empty()) data.aggregate.push_back(std::move(g));
    }
  }
  for (const std::string& t : data.tasks)
    data.references.push_back(settings.reference_csv.empty()
                                  ? std::vector<PlotSeries>{}
                                  : read_reference_curves(settings.reference_csv, t));
  return data;
}

// ---- layout ---------------------------------------------------------------------------------

namespace {

constexpr uint32_t kRunColors[] = {0x1f77b4, 0xd62728, 0x2ca02c, 0x9467bd,
                                   0xff7f0e, 0x8c564b, 0xe377c2, 0x17becf};
constexpr uint32_t kRefColors[] = {0x333333, 0x7f7f7f, 0xbcbd22, 0x8c6d31, 0x393b79};
constexpr uint32_t kInk = 0x222222, kGrid = 0xe3e3e3;
constexpr double kBandOpacity = 0.2;
constexpr size_t kMarkersUpTo = 25;  // curves with at most this many steps get point markers
// Panel margins around the plot area (pixels); the legend lives in the right one.
constexpr double kLeft = 64, kRight = 196, kTop = 40, kBottom = 50;
constexpr double kClipPad = 6;  // markers on the axes' edge are drawn whole

Mark text_mark(const std::string& cls, double x, double y, const std::string& s, double size,
               TextAnchor anchor, bool rotated = false) {
  Mark m;
  m.kind = Mark::Kind::text;
  m.cls = cls;
  m.x = x;
  m.y = y;
  m.text = s;
  m.font_size = size;
  m.anchor = anchor;
  m.rotated = rotated;
  m.color = kInk;
  return m;
}

Mark line_mark(const std::string& cls, std::vector<std::vector<Point>> paths, uint32_t color,
               double width, int clip = -1) {
  Mark m;
  m.kind = Mark::Kind::polyline;
  m.cls = cls;
  m.paths = std::move(paths);
  m.color = color;
  m.stroke_width = width;
  m.clip = clip;
  return m;
}

// A reference marker of `style` centred at (x, y), radius r.
Mark marker(int style, double x, double y, double r, const std::string& cls, int clip) {
  const uint32_t color = kRefColors[style % std::size(kRefColors)];
  Mark m;
  m.cls = cls;
  m.color = color;
  m.clip = clip;
  m.kind = Mark::Kind::polygon;
  switch (style % 6) {
    case 0:  // square
      m.kind = Mark::Kind::rect;
      m.x = x - r;
      m.y = y - r;
      m.w = m.h = 2 * r;
      break;
    case 1:  // triangle
      m.paths = {{{x, y - 1.2 * r}, {x + 1.1 * r, y + 0.8 * r}, {x - 1.1 * r, y + 0.8 * r}}};
      break;
    case 2:  // diamond
      m.paths = {{{x, y - 1.3 * r}, {x + 1.3 * r, y}, {x, y + 1.3 * r}, {x - 1.3 * r, y}}};
      break;
    case 3:  // cross
      return line_mark(cls, {{{x - r, y - r}, {x + r, y + r}}, {{x - r, y + r}, {x + r, y - r}}},
                       color, 2.2, clip);
    case 4:  // plus
      return line_mark(cls,
                       {{{x - 1.2 * r, y}, {x + 1.2 * r, y}}, {{x, y - 1.2 * r}, {x, y + 1.2 * r}}},
                       color, 2.2, clip);
    default:  // triangle-down
      m.paths = {{{x, y + 1.2 * r}, {x + 1.1 * r, y - 0.8 * r}, {x - 1.1 * r, y - 0.8 * r}}};
  }
  return m;
}

Mark circle_mark(const std::string& cls, double x, double y, double r, uint32_t color, int clip) {
  Mark m;
  m.kind = Mark::Kind::circle;
  m.cls = cls;
  m.x = x;
  m.y = y;
  m.w = r;
  m.color = color;
  m.clip = clip;
  return m;
}

// "3", or "1-3" when some steps had fewer of the `runs` runs.
std::string n_text(const GroupCurve& g) {
  const int lo = g.curve.n.empty() ? 0 : *std::min_element(g.curve.n.begin(), g.curve.n.end());
  return lo == g.runs ? std::to_string(g.runs) : strfmt("%d-%d", lo, g.runs);
}

bool has_band(const GroupCurve& g, const PlotSettings& settings) {
  if (settings.bootstrap.level == 0) return false;
  for (int n : g.curve.n)
    if (n >= 2) return true;
  return false;
}

// One panel: its axes, bands, curves, references and legend, at (ox, oy).
void add_panel(Figure& f, double ox, double oy, const std::string& title,
               const std::string& y_label, const std::vector<const GroupCurve*>& groups,
               const std::vector<PlotSeries>& refs, const PlotData& data,
               const PlotSettings& settings) {
  const int clip = static_cast<int>(f.panels.size());
  Panel panel;
  panel.area = {ox + kLeft, oy + kTop, ox + settings.panel_width - kRight,
                oy + settings.panel_height - kBottom};

  double xmax = -INFINITY;
  for (const GroupCurve* g : groups)
    for (double x : g->curve.x) xmax = std::max(xmax, x);
  if (!std::isfinite(xmax))
    for (const PlotSeries& s : refs)
      for (double x : s.x) xmax = std::max(xmax, x);
  panel.xa = nice_axis(0, std::isfinite(xmax) && xmax > 0 ? xmax : 1, 5);
  const double x_end = panel.xa.hi * (1 + 1e-9);

  double ymin = 0, ymax = -INFINITY;
  bool in_dmc_range = true;
  auto see = [&](double y) {
    ymin = std::min(ymin, y);
    ymax = std::max(ymax, y);
    in_dmc_range &= y >= 0 && y <= 1000;
  };
  for (const GroupCurve* g : groups)
    for (size_t i = 0; i < g->curve.x.size(); ++i) {
      see(g->curve.center[i]);
      see(g->curve.lo[i]);
      see(g->curve.hi[i]);
    }
  for (const PlotSeries& s : refs)
    for (size_t i = 0; i < s.x.size(); ++i)
      if (s.x[i] <= x_end && std::isfinite(s.y[i])) see(s.y[i]);
  if (in_dmc_range)
    panel.ya = nice_axis(0, 1000, 5);
  else
    panel.ya = nice_axis(ymin, std::isfinite(ymax) ? ymax : 1, 5);
  const ClipRect& a = panel.area;
  const double cx = (a.x0 + a.x1) / 2, cy = (a.y0 + a.y1) / 2;
  auto shown = [&](double x, double y) {
    const double ex = 1e-9 * (panel.xa.hi - panel.xa.lo), ey = 1e-9 * (panel.ya.hi - panel.ya.lo);
    return std::isfinite(x) && std::isfinite(y) && x >= panel.xa.lo - ex && x <= panel.xa.hi + ex &&
           y >= panel.ya.lo - ey && y <= panel.ya.hi + ey;
  };

  f.marks.push_back(text_mark("title", cx, oy + 26, title, 15, TextAnchor::middle));
  std::vector<std::vector<Point>> grid;
  for (double t : panel.xa.ticks) grid.push_back({{panel.px(t), a.y0}, {panel.px(t), a.y1}});
  for (double t : panel.ya.ticks) grid.push_back({{a.x0, panel.py(t)}, {a.x1, panel.py(t)}});
  f.marks.push_back(line_mark("grid", grid, kGrid, 1));
  f.marks.push_back(line_mark("axis", {{{a.x0, a.y0}, {a.x0, a.y1}, {a.x1, a.y1}}}, kInk, 1));
  for (double t : panel.xa.ticks)
    f.marks.push_back(text_mark("x-tick", panel.px(t), a.y1 + 17, format_tick(t, panel.xa.step), 12,
                                TextAnchor::middle));
  for (double t : panel.ya.ticks)
    f.marks.push_back(text_mark("y-tick", a.x0 - 7, panel.py(t) + 4, format_tick(t, panel.ya.step),
                                12, TextAnchor::end));
  f.marks.push_back(text_mark("x-label", cx, oy + settings.panel_height - 12, "env steps", 13,
                              TextAnchor::middle));
  f.marks.push_back(text_mark("y-label", ox + 18, cy, y_label, 13, TextAnchor::middle, true));

  if (groups.empty())
    f.marks.push_back(text_mark("note", cx, cy, "no eval rows yet", 12, TextAnchor::middle));

  auto color_of = [&](const GroupCurve& g) {
    const size_t k =
        std::find(data.methods.begin(), data.methods.end(), g.method) - data.methods.begin();
    return kRunColors[k % std::size(kRunColors)];
  };
  for (const GroupCurve* g : groups) {  // bands first, under every line
    if (!has_band(*g, settings)) continue;
    const BandCurve& c = g->curve;
    Mark band;
    band.kind = Mark::Kind::polygon;
    band.cls = "ci-band";
    band.color = color_of(*g);
    band.opacity = kBandOpacity;
    band.clip = clip;
    for (size_t i = 0; i < c.x.size();) {  // one ring per stretch of steps with 2+ seeds
      if (c.n[i] < 2 || !(c.x[i] <= x_end)) {
        ++i;
        continue;
      }
      size_t j = i;
      while (j < c.x.size() && c.n[j] >= 2 && c.x[j] <= x_end) ++j;
      std::vector<Point> ring;
      for (size_t k = i; k < j; ++k) ring.push_back({panel.px(c.x[k]), panel.py(c.hi[k])});
      for (size_t k = j; k-- > i;) ring.push_back({panel.px(c.x[k]), panel.py(c.lo[k])});
      band.paths.push_back(std::move(ring));
      i = j;
    }
    f.marks.push_back(std::move(band));
  }
  for (const GroupCurve* g : groups) {
    const BandCurve& c = g->curve;
    const uint32_t color = color_of(*g);
    std::vector<Point> line;
    for (size_t i = 0; i < c.x.size(); ++i)
      if (shown(c.x[i], c.center[i])) line.push_back({panel.px(c.x[i]), panel.py(c.center[i])});
    if (line.size() >= 2) f.marks.push_back(line_mark("mean", {line}, color, 2, clip));
    if (line.size() <= kMarkersUpTo)
      for (const Point& p : line)
        f.marks.push_back(circle_mark("mean-marker", p.x, p.y, 3, color, clip));
  }
  for (const PlotSeries& s : refs)
    for (size_t i = 0; i < s.x.size(); ++i)
      if (shown(s.x[i], s.y[i]))
        f.marks.push_back(
            marker(s.style, panel.px(s.x[i]), panel.py(s.y[i]), 4.5, "ref-marker", clip));

  double ly = a.y0 + 8;
  const double lx = a.x1 + 16;
  for (const GroupCurve* g : groups) {
    const uint32_t color = color_of(*g);
    if (has_band(*g, settings)) {
      Mark swatch;
      swatch.cls = "legend-band";
      swatch.x = lx;
      swatch.y = ly - 6;
      swatch.w = 22;
      swatch.h = 12;
      swatch.color = color;
      swatch.opacity = kBandOpacity;
      f.marks.push_back(swatch);
    }
    f.marks.push_back(line_mark("legend-line", {{{lx, ly}, {lx + 22, ly}}}, color, 2));
    const std::string n = g->task.empty() ? strfmt("n=%s, %d task%s", n_text(*g).c_str(), g->tasks,
                                                   g->tasks == 1 ? "" : "s")
                                          : "n=" + n_text(*g);
    f.marks.push_back(text_mark("legend-label", lx + 30, ly + 4, g->method + " (" + n + ")", 12,
                                TextAnchor::start));
    ly += 20;
  }
  for (const PlotSeries& s : refs) {
    f.marks.push_back(marker(s.style, lx + 11, ly, 4.5, "legend-marker", -1));
    f.marks.push_back(text_mark("legend-label", lx + 30, ly + 4, s.label, 12, TextAnchor::start));
    ly += 20;
  }
  f.panels.push_back(std::move(panel));
}

ClipRect clip_rect(const Panel& p) {
  return {p.area.x0 - kClipPad, p.area.y0 - kClipPad, p.area.x1 + kClipPad, p.area.y1 + kClipPad};
}

}  // namespace

Figure build_figure(const PlotData& data, const PlotSettings& settings) {
  POMPC_REQUIRE(settings.panel_width >= 400 && settings.panel_height >= 260,
                "plot panels of %dx%d pixels are too small (at least 400x260)",
                settings.panel_width, settings.panel_height);
  const bool aggregate = data.aggregate_tasks > 1;
  const size_t panels = data.tasks.size() + (aggregate ? 1 : 0);
  POMPC_REQUIRE(panels >= 1, "no task to draw");
  const size_t cols = panels == 1 ? 1 : panels <= 4 ? 2 : 3;
  const size_t rows = (panels + cols - 1) / cols;
  Figure f;
  f.width = static_cast<int>(cols) * settings.panel_width;
  f.height = static_cast<int>(rows) * settings.panel_height;
  Mark background;
  background.cls = "background";
  background.w = f.width;
  background.h = f.height;
  background.color = 0xffffff;
  f.marks.push_back(background);
  auto origin = [&](size_t k, double& ox, double& oy) {
    ox = static_cast<double>(k % cols) * settings.panel_width;
    oy = static_cast<double>(k / cols) * settings.panel_height;
  };
  for (size_t t = 0; t < data.tasks.size(); ++t) {
    std::vector<const GroupCurve*> groups;
    for (const GroupCurve& g : data.groups)
      if (g.task == data.tasks[t]) groups.push_back(&g);
    double ox, oy;
    origin(t, ox, oy);
    add_panel(f, ox, oy, data.tasks[t], "mean eval return", groups, data.references[t], data,
              settings);
  }
  if (aggregate) {
    std::vector<const GroupCurve*> groups;
    for (const GroupCurve& g : data.aggregate) groups.push_back(&g);
    double ox, oy;
    origin(data.tasks.size(), ox, oy);
    add_panel(f, ox, oy, strfmt("IQM over %d tasks", data.aggregate_tasks), "IQM of eval returns",
              groups, {}, data, settings);
  }
  return f;
}

// ---- output ---------------------------------------------------------------------------------

namespace {

std::string hex(uint32_t c) {
  return strfmt("#%06x", c & 0xffffff);
}

std::string points_d(const std::vector<std::vector<Point>>& paths, bool closed) {
  std::string d;
  for (const auto& p : paths) {
    for (size_t i = 0; i < p.size(); ++i)
      d += strfmt("%s%.2f %.2f", i == 0 ? (d.empty() ? "M" : " M") : "L", p[i].x, p[i].y);
    if (closed && !p.empty()) d += "Z";
  }
  return d;
}

}  // namespace

std::string render_svg(const Figure& f) {
  std::string s;
  s += "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n";
  s += strfmt(
      "<svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\" width=\"%d\" "
      "height=\"%d\" viewBox=\"0 0 %d %d\" font-family=\"Helvetica, Arial, sans-serif\">\n",
      f.width, f.height, f.width, f.height);
  s += "<defs>";
  for (size_t k = 0; k < f.panels.size(); ++k) {
    const ClipRect c = clip_rect(f.panels[k]);
    s += strfmt(
        "<clipPath id=\"panel%zu\"><rect x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" "
        "height=\"%.2f\"/></clipPath>",
        k, c.x0, c.y0, c.x1 - c.x0, c.y1 - c.y0);
  }
  s += "</defs>\n";
  for (const Mark& m : f.marks) {
    std::string common = m.cls.empty() ? "" : " class=\"" + esc(m.cls) + "\"";
    if (m.clip >= 0) common += strfmt(" clip-path=\"url(#panel%d)\"", m.clip);
    const std::string fill_opacity =
        m.opacity < 1 ? strfmt(" fill-opacity=\"%.3g\"", m.opacity) : "";
    const std::string stroke_opacity =
        m.opacity < 1 ? strfmt(" stroke-opacity=\"%.3g\"", m.opacity) : "";
    switch (m.kind) {
      case Mark::Kind::rect:
        s +=
            strfmt("<rect%s x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" height=\"%.2f\" fill=\"%s\"%s/>\n",
                   common.c_str(), m.x, m.y, m.w, m.h, hex(m.color).c_str(), fill_opacity.c_str());
        break;
      case Mark::Kind::polygon:
        s += strfmt("<path%s d=\"%s\" fill=\"%s\"%s/>\n", common.c_str(),
                    points_d(m.paths, true).c_str(), hex(m.color).c_str(), fill_opacity.c_str());
        break;
      case Mark::Kind::polyline:
        s += strfmt(
            "<path%s d=\"%s\" fill=\"none\" stroke=\"%s\" stroke-width=\"%.3g\" "
            "stroke-linejoin=\"round\"%s/>\n",
            common.c_str(), points_d(m.paths, false).c_str(), hex(m.color).c_str(), m.stroke_width,
            stroke_opacity.c_str());
        break;
      case Mark::Kind::circle:
        s += strfmt("<circle%s cx=\"%.2f\" cy=\"%.2f\" r=\"%.2f\" fill=\"%s\"%s/>\n",
                    common.c_str(), m.x, m.y, m.w, hex(m.color).c_str(), fill_opacity.c_str());
        break;
      case Mark::Kind::text: {
        const char* anchor = m.anchor == TextAnchor::start    ? "start"
                             : m.anchor == TextAnchor::middle ? "middle"
                                                              : "end";
        const std::string rotate =
            m.rotated ? strfmt(" transform=\"rotate(-90 %.2f %.2f)\"", m.x, m.y) : "";
        s += strfmt(
            "<text%s x=\"%.2f\" y=\"%.2f\" font-size=\"%.3g\" text-anchor=\"%s\" "
            "fill=\"%s\"%s>%s</text>\n",
            common.c_str(), m.x, m.y, m.font_size, anchor, hex(m.color).c_str(), rotate.c_str(),
            esc(m.text).c_str());
        break;
      }
    }
  }
  s += "</svg>\n";
  return s;
}

Image rasterize(const Figure& f) {
  Canvas canvas(f.width, f.height, rgb_of(0xffffff));
  std::vector<ClipRect> clips;
  for (const Panel& p : f.panels) clips.push_back(clip_rect(p));
  for (const Mark& m : f.marks) {
    POMPC_REQUIRE(m.clip < static_cast<int>(clips.size()),
                  "mark '%s' is clipped to panel %d of %zu", m.cls.c_str(), m.clip, clips.size());
    const ClipRect* clip = m.clip >= 0 ? &clips[m.clip] : nullptr;
    const Rgb color = rgb_of(m.color);
    switch (m.kind) {
      case Mark::Kind::rect:
        canvas.fill_rect(m.x, m.y, m.w, m.h, color, m.opacity, clip);
        break;
      case Mark::Kind::polygon:
        canvas.fill_polygons(m.paths, color, m.opacity, clip);
        break;
      case Mark::Kind::polyline:
        canvas.stroke_polylines(m.paths, m.stroke_width, color, m.opacity, clip);
        break;
      case Mark::Kind::circle:
        canvas.fill_circle(m.x, m.y, m.w, color, m.opacity, clip);
        break;
      case Mark::Kind::text:
        canvas.text(m.x, m.y, m.text, m.font_size >= 15 ? 2 : 1, false, m.anchor, m.rotated, color);
        break;
    }
  }
  return canvas.image();
}

PlotOutputs plot_outputs(const std::optional<std::string>& out,
                         const std::optional<std::string>& png) {
  const std::string o = out.value_or("curves.svg");
  auto ends_with = [&](const char* ext) {
    return o.size() >= 4 && o.compare(o.size() - 4, 4, ext) == 0;
  };
  POMPC_REQUIRE(!ends_with(".png"), "out=%s names the SVG; write a PNG with png=%s", o.c_str(),
                o.c_str());
  const std::string stem = ends_with(".svg") ? o.substr(0, o.size() - 4) : o;
  PlotOutputs outputs;
  outputs.svg = o.empty() ? "" : stem + ".svg";
  outputs.png = png ? *png : o.empty() ? "" : stem + ".png";
  return outputs;
}

std::string plot_runs(const std::vector<std::string>& dirs, const PlotSettings& settings,
                      const PlotOutputs& outputs) {
  POMPC_REQUIRE(!dirs.empty(),
                "name at least one run directory (runs/<task>/<preset>/<seed>) or a "
                "directory above run directories (runs/)");
  POMPC_REQUIRE(!outputs.svg.empty() || !outputs.png.empty(),
                "nothing to write: give out=FILE.svg and/or png=FILE.png");
  std::set<fs::path> seen;
  std::vector<RunInfo> runs;
  size_t empty = 0;
  for (const std::string& d : dirs)
    for (const std::string& r : find_run_dirs(d)) {
      std::error_code ec;
      if (!seen.insert(fs::weakly_canonical(r, ec)).second) continue;  // named twice
      runs.push_back(read_run(r, settings.task));
      empty += runs.back().curve.x.empty();
    }
  const PlotData data = collect_plot_data(runs, settings);
  const Figure figure = build_figure(data, settings);
  if (!outputs.svg.empty()) write_file_atomic(outputs.svg, render_svg(figure));
  if (!outputs.png.empty()) write_png(outputs.png, rasterize(figure));
  std::string summary =
      strfmt("%zu task%s, %zu group%s, %zu run%s", data.tasks.size(),
             data.tasks.size() == 1 ? "" : "s", data.groups.size(),
             data.groups.size() == 1 ? "" : "s", runs.size(), runs.size() == 1 ? "" : "s");
  if (empty) summary += strfmt(" (%zu without an eval row yet)", empty);
  return summary;
}

}  // namespace pompc::io
