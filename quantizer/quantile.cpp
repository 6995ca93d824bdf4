// quantile of quant_math.h.
#include <algorithm>
#include <cmath>
#include <functional>
#include <utility>
#include <vector>

#include "quantizer/quant_math.h"

namespace vqm::quant {

namespace {

// Order statistics i and i + 1 (ascending; i + 1 < n) of x when few values lie above i: the
// n - i largest in a bounded min-heap, one pass, no copy. Equal to the full selection's.
std::pair<float, float> top_order_stats(const float *x, int64_t n, int64_t i) {
  const auto greater = std::greater<float>();
  std::vector<float> heap(x, x + (n - i));
  std::make_heap(heap.begin(), heap.end(), greater);
  for (int64_t j = n - i; j < n; ++j) {
    if (!(x[j] > heap.front())) continue;
    std::pop_heap(heap.begin(), heap.end(), greater);
    heap.back() = x[j];
    std::push_heap(heap.begin(), heap.end(), greater);
  }
  const float a = heap.front();
  std::pop_heap(heap.begin(), heap.end(), greater);
  return {a, heap.front()};
}

// The same when few values lie below i + 1: the i + 2 smallest in a bounded max-heap.
std::pair<float, float> bottom_order_stats(const float *x, int64_t n, int64_t i) {
  std::vector<float> heap(x, x + (i + 2));
  std::make_heap(heap.begin(), heap.end());
  for (int64_t j = i + 2; j < n; ++j) {
    if (!(x[j] < heap.front())) continue;
    std::pop_heap(heap.begin(), heap.end());
    heap.back() = x[j];
    std::push_heap(heap.begin(), heap.end());
  }
  const float b = heap.front();
  std::pop_heap(heap.begin(), heap.end());
  return {heap.front(), b};
}

}  // namespace

// The q-quantile of the data (linear interpolation between order statistics). The percentile
// start asks for the 0.01 % tails, which the bounded heaps find in one pass over the data
// (a copy and two full selections took ~1 s per block of DeiT-S); other q select on a copy.
float quantile(const float *x, int64_t n, double q) {
  const double pos = q * static_cast<double>(n - 1);
  const int64_t i = static_cast<int64_t>(std::floor(pos));
  const double frac = pos - static_cast<double>(i);
  std::pair<float, float> v;
  if (i + 1 >= n) {
    v.first = v.second = *std::max_element(x, x + n);
  } else if (n - i <= n / 16) {
    v = top_order_stats(x, n, i);
  } else if (i + 2 <= n / 16) {
    v = bottom_order_stats(x, n, i);
  } else {
    std::vector<float> s(x, x + n);
    std::nth_element(s.begin(), s.begin() + i, s.end());
    v = {s[i], *std::min_element(s.begin() + i + 1, s.end())};
  }
  if (frac <= 0) return v.first;
  return static_cast<float>(v.first + frac * (static_cast<double>(v.second) - v.first));
}

}  // namespace vqm::quant
