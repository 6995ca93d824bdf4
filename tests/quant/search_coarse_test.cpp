// The coarse-to-fine candidate scan (SearchOptions::coarse_stride) against the full grid it
// replaces: fewer candidates tried, and a result as good as the full grid's on smooth objectives.
#include <gtest/gtest.h>

#include <random>

#include "quantizer/search.h"
#include "test_util.h"

namespace vqm::quant {
namespace {

std::vector<float> normal(size_t n, uint32_t seed, float sd = 1.f) {
  return test::normal_floats(n, seed, sd);
}

TEST(SearchCoarseToFine, LinearMatchesTheFullGridWithAThirdOfTheCandidates) {
  for (int bits : {4, 8}) {
    auto x = normal(6 * 20 * 48, 31);
    x[7] = 12.f;
    const auto w = normal(40 * 48, 32, 0.1f), b = normal(40, 33, 0.1f);
    const LinearProblem p{x.data(), 6, 20, 48, w.data(), b.data(), 40, bits, bits, 1 << (bits - 1)};
    SearchOptions full;
    const LinearResult rf = search_linear(p, full);
    SearchOptions coarse;
    coarse.coarse_stride = 4;
    const LinearResult rc = search_linear(p, coarse);
    // 100 candidates: 25 coarse plus the last, then the 6 between the best's coarse neighbours.
    EXPECT_LE(rc.curve.size(), 32u);
    EXPECT_EQ(rf.curve.size(), 100u);
    for (size_t i = 1; i < rc.curve.size(); ++i)
      EXPECT_LT(rc.curve[i - 1].first, rc.curve[i].first);
    EXPECT_GE(rc.similarity, rc.similarity_init);
    EXPECT_NEAR(rc.similarity, rf.similarity, 2e-4) << bits;
  }
}

TEST(SearchCoarseToFine, SmallGridsAreScannedWhole) {
  const auto x = normal(4 * 8 * 16, 34), w = normal(8 * 16, 35, 0.1f);
  const LinearProblem p{x.data(), 4, 8, 16, w.data(), nullptr, 8, 4, 4, 8};
  SearchOptions o;
  o.candidates = 20;
  const LinearResult full = search_linear(p, o);
  o.coarse_stride = 4;  // 20 candidates would leave 6 coarse ones: the stride drops to 1
  const LinearResult coarse = search_linear(p, o);
  EXPECT_EQ(coarse.curve.size(), 20u);
  EXPECT_EQ(coarse.w_delta, full.w_delta);
  EXPECT_EQ(coarse.similarity, full.similarity);
  o.coarse_stride = 0;
  EXPECT_THROW(search_linear(p, o), std::exception);
}

TEST(SearchCoarseToFine, MatmulMatchesTheFullGrid) {
  const int64_t samples = 3, heads = 2, t = 12, dim = 8;
  const auto q = normal(samples * heads * t * dim, 36, 1.5f), k = normal(q.size(), 37, 1.5f);
  const MatmulProblem p{q.data(), k.data(), samples * heads, t, dim, t, true, samples, 4, 4, 8,
                        8,        0.35f};
  SearchOptions o;
  const MatmulResult full = search_matmul(p, o, true);
  o.coarse_stride = 4;
  const MatmulResult coarse = search_matmul(p, o, true);
  EXPECT_LE(coarse.curve.size(), 32u);
  EXPECT_NEAR(coarse.similarity - o.gamma * coarse.rank_loss,
              full.similarity - o.gamma * full.rank_loss, 1e-3);
}

}  // namespace
}  // namespace vqm::quant
