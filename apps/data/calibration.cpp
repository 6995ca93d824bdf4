#include "apps/data/calibration.h"

#include <algorithm>
#include <numeric>
#include <random>

#include "apps/data/dataset.h"
#include "runtime/io/error.h"
#include "runtime/io/image.h"

namespace vqm::app {

namespace {

std::vector<int> seeded_choice(int population, int n, uint64_t seed) {
  std::vector<int> idx(static_cast<size_t>(population));
  std::iota(idx.begin(), idx.end(), 0);
  std::mt19937_64 rng(seed);
  std::shuffle(idx.begin(), idx.end(), rng);
  idx.resize(static_cast<size_t>(std::min(n, population)));
  return idx;
}

}  // namespace

quant::CalibrationSet load_calibration(const std::string &source, int n, uint64_t seed,
                                       const VitModel &model) {
  if (n < 1)
    fail(ErrorCode::invalid_argument,
         "calibration needs at least 1 image, got " + std::to_string(n));
  const VitConfig &c = model.config();
  DatasetOptions dopt;
  dopt.split = "train";  // never the evaluation split
  dopt.need_labels = false;
  const Dataset data = Dataset::open(source, dopt);
  quant::CalibrationSet set;
  set.description = {{"source", source}, {"seed", seed}};
  const auto chosen = seeded_choice(data.size(), n, seed);
  set.n = static_cast<int>(chosen.size());
  set.input.resize(static_cast<size_t>(set.n) * c.input_size());
  std::vector<std::string> used;
  for (int i = 0; i < set.n; ++i) {
    preprocess_image(data.image(chosen[i], c.in_chans), model.preprocess(),
                     set.input.data() + i * c.input_size());
    used.push_back(data.item_name(chosen[i]));
  }
  if (data.is_idx()) {
    set.description["kind"] = "idx";
    set.description["split"] = "train";
    set.description["indices"] = chosen;
  } else {
    set.description["kind"] = "folder";
    set.description["files"] = used;
  }
  set.description["n"] = set.n;
  return set;
}

}  // namespace vqm::app
