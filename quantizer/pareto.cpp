// The mixed-precision Pareto frontier of quant_math.h (pareto_frontier, pareto_choose): exact
// dynamic programming over modules, apart from the grid and similarity arithmetic because it
// shares nothing with it but the argument check.
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "quantizer/quant_math.h"
#include "runtime/io/error.h"

namespace vqm::quant {

namespace {

struct FrontierPoint {
  double cost, sens;
  int32_t prev;    // index in the previous stage's frontier
  int32_t option;  // option of the module merged at this stage
};

constexpr size_t kMaxFrontier = size_t{1} << 22;

// stages[m] is the frontier after merging modules 0..m-1 (stages[0] = the empty configuration).
std::vector<std::vector<FrontierPoint>> build_frontier(
    const std::vector<std::vector<BitOption>> &modules) {
  std::vector<std::vector<FrontierPoint>> stages;
  stages.push_back({{0.0, 0.0, -1, -1}});
  for (size_t m = 0; m < modules.size(); ++m) {
    const auto &opts = modules[m];
    if (opts.empty())
      bad_argument("mixed precision: module " + std::to_string(m) + " has no options");
    for (size_t o = 0; o < opts.size(); ++o)
      if (!std::isfinite(opts[o].cost) || !std::isfinite(opts[o].sensitivity))
        bad_argument("mixed precision: module " + std::to_string(m) + " option " +
                     std::to_string(o) + " has a non-finite cost or sensitivity");
    const auto &prev = stages.back();
    if (prev.size() * opts.size() > kMaxFrontier)
      fail(ErrorCode::limit, "mixed precision: frontier of " +
                                 std::to_string(prev.size() * opts.size()) + " points at module " +
                                 std::to_string(m) + " exceeds " + std::to_string(kMaxFrontier));
    std::vector<FrontierPoint> cand;
    cand.reserve(prev.size() * opts.size());
    for (size_t i = 0; i < prev.size(); ++i)
      for (size_t o = 0; o < opts.size(); ++o)
        cand.push_back({prev[i].cost + opts[o].cost, prev[i].sens + opts[o].sensitivity,
                        static_cast<int32_t>(i), static_cast<int32_t>(o)});
    // A total order, so ties resolve the same way everywhere (lowest previous index, option).
    std::sort(cand.begin(), cand.end(), [](const FrontierPoint &x, const FrontierPoint &y) {
      if (x.cost != y.cost) return x.cost < y.cost;
      if (x.sens != y.sens) return x.sens < y.sens;
      if (x.prev != y.prev) return x.prev < y.prev;
      return x.option < y.option;
    });
    // Walking up in cost, a point survives only if it is strictly better than every cheaper one.
    std::vector<FrontierPoint> next;
    for (const auto &c : cand)
      if (next.empty() || c.sens < next.back().sens) next.push_back(c);
    stages.push_back(std::move(next));
  }
  return stages;
}

}  // namespace

std::vector<std::pair<double, double>> pareto_frontier(
    const std::vector<std::vector<BitOption>> &modules) {
  const auto stages = build_frontier(modules);
  std::vector<std::pair<double, double>> out;
  for (const auto &pt : stages.back()) out.emplace_back(pt.cost, pt.sens);
  return out;
}

std::vector<int> pareto_choose(const std::vector<std::vector<BitOption>> &modules, double budget) {
  if (!std::isfinite(budget)) bad_argument("mixed precision: budget must be finite");
  const auto stages = build_frontier(modules);
  const auto &last = stages.back();
  const double limit = budget + 1e-9 * std::max(1.0, std::fabs(budget));
  // Ascending cost with strictly decreasing sensitivity: the best feasible point is the last one
  // within the budget.
  int64_t best = -1;
  for (size_t i = 0; i < last.size() && last[i].cost <= limit; ++i) best = static_cast<int64_t>(i);
  if (best < 0)
    bad_argument("mixed precision: the cheapest configuration costs " +
                 std::to_string(last[0].cost) + " bits, above the budget of " +
                 std::to_string(budget));
  std::vector<int> choice(modules.size());
  for (size_t m = modules.size(); m > 0; --m) {
    const FrontierPoint &pt = stages[m][static_cast<size_t>(best)];
    choice[m - 1] = pt.option;
    best = pt.prev;
  }
  return choice;
}

}  // namespace vqm::quant
