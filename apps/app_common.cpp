#include "apps/app_common.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace vqm::app {

std::shared_ptr<const VitModel> load_model(const std::string &path) {
  return VitModel::load(VqmFile::from_file(path));
}

std::vector<int> top_k(const float *values, int n, int k) {
  std::vector<int> idx(static_cast<size_t>(n));
  std::iota(idx.begin(), idx.end(), 0);
  k = std::min(k, n);
  std::partial_sort(idx.begin(), idx.begin() + k, idx.end(), [&](int a, int b) {
    return values[a] > values[b] || (values[a] == values[b] && a < b);
  });
  idx.resize(static_cast<size_t>(k));
  return idx;
}

std::vector<float> softmax(const float *logits, int n) {
  const float mx = *std::max_element(logits, logits + n);
  std::vector<float> p(static_cast<size_t>(n));
  double sum = 0;
  for (int i = 0; i < n; ++i) sum += p[i] = std::exp(logits[i] - mx);
  for (auto &x : p) x = static_cast<float>(x / sum);
  return p;
}

}  // namespace vqm::app
