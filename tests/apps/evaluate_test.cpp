// Multi-session evaluation: the same numbers whatever the number of sessions, per-class counts
// that add up, idx files and the same images as a folder agreeing, and clear label errors.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <numeric>

#include "apps/apps_test_util.h"
#include "apps/evaluate.h"
#include "test_util.h"

namespace vqm::test {
namespace {

namespace fs = std::filesystem;

std::shared_ptr<const VitModel> fmnist_model() {
  const std::string path = write_fmnist_model(scratch_dir());
  return VitModel::load(VqmFile::from_file(path));
}

TEST(Evaluate, SessionsDoNotChangeTheNumbers) {
  const auto model = fmnist_model();
  const Dataset data = Dataset::open(fmnist_dir());
  const auto items = data.select(100);
  app::EvalOptions one;
  one.batch = 16;  // 100 = 6 x 16 + 4: a short last batch too
  one.threads = one.sessions = 1;
  one.keep_outputs = true;
  app::EvalOptions three = one;
  three.threads = three.sessions = 3;
  const auto a = app::evaluate(model, data, items, one, nullptr);
  const auto b = app::evaluate(model, data, items, three, nullptr);
  EXPECT_EQ(a.n, 100);
  EXPECT_EQ(a.outputs, b.outputs);  // same batches, one OpenMP thread each: bit-identical
  EXPECT_EQ(a.top1, b.top1);
  EXPECT_EQ(a.class_top1, b.class_top1);
  EXPECT_EQ(std::accumulate(a.class_n.begin(), a.class_n.end(), 0), 100);
  EXPECT_EQ(std::accumulate(a.class_top5.begin(), a.class_top5.end(), 0), a.top5);
  EXPECT_GE(a.top5, a.top1);
  // The shipped model scores 0.9048 on all of t10k; on the first 100 it is far above chance.
  EXPECT_GT(a.top1, 80);
  // Without keep_outputs nothing is kept.
  three.keep_outputs = false;
  EXPECT_TRUE(app::evaluate(model, data, items, three, nullptr).outputs.empty());
}

// agreement() against the definition, row by row: identical rows (cosine 1), a row scaled by 3
// (cosine 1: direction only), a negated row (-1), orthogonal rows (0), two zero rows (1: they
// agree) and a zero row against a non-zero one (0); the top-1 of each pair.
TEST(Evaluate, AgreementIsTheCosineOfEachRow) {
  const int k = 3;
  const std::vector<float> a = {1, 2, 3, 1, 2, 3, 1, 2, 3, 1, 0, 0, 0, 0, 0, 0, 0, 0};
  const std::vector<float> b = {1, 2, 3, 3, 6, 9, -1, -2, -3, 0, 1, 0, 0, 0, 0, 0, 1, 0};
  const app::Agreement g = app::agreement(a.data(), b.data(), 6, k);
  EXPECT_EQ(g.n, 6);
  EXPECT_NEAR(g.cosine_mean, (1 + 1 - 1 + 0 + 1 + 0) / 6.0, 1e-12);
  EXPECT_DOUBLE_EQ(g.cosine_min, -1.0);
  EXPECT_EQ(g.cosine_min_row, 2);
  // Same largest index: rows 0, 1, 4 (zeros: index 0 both); not rows 2, 3, 5.
  EXPECT_EQ(g.top1_same, 3);
}

TEST(Evaluate, ScoreCountsTopOneAndTopFiveHitsPerClass) {
  // 7 classes; rows rank the classes by their logits.
  const int k = 7;
  const std::vector<float> out = {
      9, 1, 2, 3, 4, 5, 6,  // best 0: label 0 is a top-1 hit
      0, 1, 2, 3, 4, 5, 6,  // best 6,5,4,3,2: label 2 is a top-5 hit only
      0, 1, 2, 3, 4, 5, 6,  // label 1 is 6th: no hit
      1, 1, 0, 0, 0, 0, 0,  // tie: the lower index wins top-1, so label 1 is top-5 only
  };
  const app::EvalResult r = app::score(out.data(), {0, 2, 1, 1}, k);
  EXPECT_EQ(r.n, 4);
  EXPECT_EQ(r.top1, 1);
  EXPECT_EQ(r.top5, 3);
  EXPECT_EQ(r.class_n, std::vector<int>({1, 2, 1, 0, 0, 0, 0}));
  EXPECT_EQ(r.class_top1, std::vector<int>({1, 0, 0, 0, 0, 0, 0}));
  EXPECT_EQ(r.class_top5, std::vector<int>({1, 1, 1, 0, 0, 0, 0}));
  EXPECT_TRUE(r.outputs.empty());
}

TEST(Evaluate, DigitFoldersInSortedOrderMatchTheIdxFiles) {
  const auto model = fmnist_model();
  // Folders named by class number sort into class order: no class-index file needed.
  const std::string root = scratch_dir() + "/digits";
  write_fmnist_folder(root, 60, true);
  const Dataset folder = Dataset::open(root);
  const Dataset idx = Dataset::open(fmnist_dir());
  ASSERT_EQ(folder.size(), 60);
  app::EvalOptions o;
  o.batch = 1;  // one image per forward: logits cannot depend on the order of the images
  o.threads = o.sessions = 2;
  o.keep_outputs = true;
  const auto f = app::evaluate(model, folder, folder.select(0), o, nullptr);
  const auto i = app::evaluate(model, idx, idx.select(60), o, nullptr);
  EXPECT_EQ(f.top1, i.top1);
  EXPECT_EQ(f.top5, i.top5);
  EXPECT_EQ(f.class_n, i.class_n);
  EXPECT_EQ(f.class_top1, i.class_top1);
  // Row k of the folder's logits is the image its file name numbers (PNG is lossless).
  for (int k = 0; k < folder.size(); ++k) {
    const int image = std::stoi(fs::path(folder.item_name(k)).stem().string());
    EXPECT_TRUE(std::equal(f.outputs.begin() + k * 10, f.outputs.begin() + k * 10 + 10,
                           i.outputs.begin() + image * 10))
        << folder.item_name(k);
  }
}

TEST(Evaluate, LabelsThatAreNotTheModelsClassesAreErrors) {
  const auto model = fmnist_model();
  const std::string root = scratch_dir() + "/d";
  const std::string index = write_fmnist_folder(root, 100, true);  // every class
  // The same images as 11 sorted folders: the indices would not be the model's classes.
  fs::create_directories(fs::path(root) / "zz_extra");
  fs::copy_file(fs::path(root) / "9" / "00000.png", fs::path(root) / "zz_extra" / "x.png");
  EXPECT_VQM_ERROR(app::check_labels(Dataset::open(root), *model), invalid_argument,
                   "has 11 class folders but the model has 10 classes: give a class-index file");
  // An index past the head.
  std::ofstream(index, std::ios::app) << "a\nb\nzz_extra\n";  // zz_extra -> class 12
  EXPECT_VQM_ERROR(app::check_labels(Dataset::open(root, {"t10k", index, true}), *model),
                   invalid_argument, "class folder 'zz_extra' has index 12");
  // Loose images have no labels at all.
  const Dataset loose = Dataset::open(root + "/9", {"t10k", "", false});
  EXPECT_VQM_ERROR(app::check_labels(loose, *model), invalid_argument, "has no labels");
  EXPECT_EQ(app::class_name(*model, Dataset::open(root, {"t10k", index, true}), 9), "Ankle boot");
}

}  // namespace
}  // namespace vqm::test
