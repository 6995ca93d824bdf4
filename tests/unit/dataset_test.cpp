// Data sets: image folders in class subfolders (sorted names or a class-index file, text or
// JSON), loose images for calibration, the idx files, and the errors for malformed layouts.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "apps/data/dataset.h"
#include "apps/data/idx.h"
#include "test_util.h"

#include "stb_image_write_impl.h"

namespace vqm::test {
namespace {

namespace fs = std::filesystem;

// A 4x3 gray PNG whose first pixel is `value` (so tests can tell files apart after decoding).
void write_png(const fs::path &path, uint8_t value) {
  fs::create_directories(path.parent_path());
  std::vector<uint8_t> px(12, 7);
  px[0] = value;
  ASSERT_NE(stbi_write_png(path.string().c_str(), 4, 3, 1, px.data(), 4), 0) << path;
}

void write_text(const fs::path &path, const std::string &text) {
  std::ofstream(path) << text;
}

// root/<class>/<file>: cats (2 images), dogs (1), emus (1) and a non-image file.
std::string make_folder() {
  const fs::path root = fs::path(scratch_dir()) / "data";
  write_png(root / "dogs" / "d0.png", 10);
  write_png(root / "cats" / "c1.png", 21);
  write_png(root / "cats" / "c0.png", 20);
  write_png(root / "emus" / "sub" / "e0.png", 30);  // deeper files belong to their top folder
  write_text(root / "cats" / "notes.txt", "not an image");
  write_png(root / ".hidden" / "x.png", 99);  // skipped with its folder
  return root.string();
}

TEST(Dataset, SortedClassFoldersAreClassesInOrder) {
  const std::string root = make_folder();
  const Dataset d = Dataset::open(root);
  EXPECT_FALSE(d.is_idx());
  ASSERT_TRUE(d.labelled());
  ASSERT_EQ(d.size(), 4);
  EXPECT_EQ(d.class_names(), (std::vector<std::string>{"cats", "dogs", "emus"}));
  // Sorted by path: cats/c0, cats/c1, dogs/d0, emus/sub/e0.
  EXPECT_EQ(d.item_name(0), "cats/c0.png");
  EXPECT_EQ(d.item_name(3), "emus/sub/e0.png");
  EXPECT_EQ(std::vector<int>({d.label(0), d.label(1), d.label(2), d.label(3)}),
            std::vector<int>({0, 0, 1, 2}));
  const Image img = d.image(1, 1);
  EXPECT_EQ(img.width, 4);
  EXPECT_EQ(img.pixels[0], 21);
  EXPECT_EQ(d.image(2, 3).channels, 3);
  EXPECT_EQ(list_image_files(root).size(), 4u);
}

TEST(Dataset, ClassIndexFilesMapFoldersToModelClasses) {
  const std::string root = make_folder();
  const fs::path dir = fs::path(root).parent_path();
  // ImageNet's LOC_synset_mapping.txt style: first word is the folder, the line is the index.
  write_text(dir / "index.txt", "emus large birds\n\ndogs canis\ncats felis\nyaks\n");
  Dataset d = Dataset::open(root, {"t10k", (dir / "index.txt").string(), true});
  EXPECT_EQ(d.class_index(), (dir / "index.txt").string());
  EXPECT_EQ(d.class_names(), (std::vector<std::string>{"emus", "dogs", "cats", "yaks"}));
  EXPECT_EQ(std::vector<int>({d.label(0), d.label(2), d.label(3)}), std::vector<int>({2, 1, 0}));
  // JSON: {"folder": index} and Keras' {"index": ["folder", "label"]}.
  write_text(dir / "plain.json", R"({"cats": 7, "dogs": 3, "emus": 0})");
  d = Dataset::open(root, {"t10k", (dir / "plain.json").string(), true});
  EXPECT_EQ(d.label(0), 7);
  EXPECT_EQ(d.label(2), 3);
  EXPECT_EQ(d.class_names().size(), 8u);
  write_text(dir / "keras.json",
             R"({"0": ["dogs", "dog"], "1": ["emus", "emu"], "5": ["cats", "cat"]})");
  d = Dataset::open(root, {"t10k", (dir / "keras.json").string(), true});
  EXPECT_EQ(std::vector<int>({d.label(0), d.label(2), d.label(3)}), std::vector<int>({5, 0, 1}));
}

TEST(Dataset, BadLayoutsAndIndexFilesAreClearErrors) {
  const std::string root = make_folder();
  const fs::path dir = fs::path(root).parent_path();
  EXPECT_VQM_ERROR(Dataset::open(root + "/nope"), io, "does not exist");
  EXPECT_VQM_ERROR(Dataset::open((fs::path(root) / "cats" / "notes.txt").string()),
                   invalid_argument, "is not a folder");
  fs::create_directories(dir / "empty");
  EXPECT_VQM_ERROR(Dataset::open((dir / "empty").string()), invalid_argument, "no .jpg");
  write_text(dir / "partial.txt", "cats\ndogs\n");
  EXPECT_VQM_ERROR(Dataset::open(root, {"t10k", (dir / "partial.txt").string(), true}),
                   invalid_argument, "class folder 'emus'");
  write_text(dir / "twice.txt", "cats\ndogs\ncats\n");
  EXPECT_VQM_ERROR(Dataset::open(root, {"t10k", (dir / "twice.txt").string(), true}), format,
                   "'cats' is listed twice");
  write_text(dir / "same.json", R"({"cats": 1, "dogs": 1, "emus": 2})");
  EXPECT_VQM_ERROR(Dataset::open(root, {"t10k", (dir / "same.json").string(), true}), format,
                   "class index 1 is given to both");
  write_text(dir / "bad.json", R"({"cats": 1,)");
  EXPECT_VQM_ERROR(Dataset::open(root, {"t10k", (dir / "bad.json").string(), true}), format,
                   "invalid JSON");
  write_text(dir / "neg.json", R"({"cats": -1})");
  EXPECT_VQM_ERROR(Dataset::open(root, {"t10k", (dir / "neg.json").string(), true}), format,
                   "out of range");
  EXPECT_VQM_ERROR(Dataset::open(root, {"t10k", (dir / "missing.txt").string(), true}), io,
                   "missing.txt");
  // A loose image: an error for evaluation, an unlabelled data set for calibration.
  write_png(fs::path(root) / "loose.png", 1);
  EXPECT_VQM_ERROR(Dataset::open(root), invalid_argument, "is not in a class folder");
  const Dataset calib = Dataset::open(root, {"train", "", false});
  EXPECT_FALSE(calib.labelled());
  EXPECT_EQ(calib.size(), 5);
  EXPECT_EQ(calib.label(0), -1);
}

TEST(Dataset, IdxFilesAndSelection) {
  const Dataset d = Dataset::open(fmnist_dir());
  ASSERT_TRUE(d.is_idx());
  ASSERT_EQ(d.size(), 10000);
  const auto labels = load_idx_labels(find_idx_file(fmnist_dir(), "t10k", "labels"));
  EXPECT_EQ(d.label(17), labels[17]);
  EXPECT_EQ(d.item_name(17), "t10k[17]");
  const Image img = d.image(3, 1);
  EXPECT_EQ(img.width * img.height, 784);
  EXPECT_VQM_ERROR(d.image(3, 3), unsupported, "grayscale");
  // idx: the first N (already shuffled); folders: evenly spaced, so every class keeps its share.
  EXPECT_EQ(d.select(3), (std::vector<int>{0, 1, 2}));
  EXPECT_EQ(d.select(0).size(), 10000u);
  const Dataset f = Dataset::open(make_folder());
  EXPECT_EQ(f.select(2), (std::vector<int>{0, 2}));
  EXPECT_EQ(f.select(100).size(), 4u);
  const std::string index = (fs::path(scratch_dir()) / "i.txt").string();
  write_text(index, "a\n");
  EXPECT_VQM_ERROR(Dataset::open(fmnist_dir(), {"t10k", index, true}), invalid_argument,
                   "class-index file applies to image folders");
}

}  // namespace
}  // namespace vqm::test
