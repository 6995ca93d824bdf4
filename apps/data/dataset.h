// Image data sets the tools calibrate and evaluate on: Fashion-MNIST-style idx files, or a folder
// of images in class subfolders (DIR/<class>/...: torchvision's ImageFolder, and the ImageNet
// validation set once sorted into its synset folders), optionally with a class-index file that
// maps folder names to the model's class indices.
#pragma once
#include <string>
#include <vector>

#include "apps/data/idx.h"
#include "runtime/io/image.h"

namespace vqm {

// Every .jpg/.jpeg/.png/.bmp file under `dir`, recursively (following links to folders; names
// starting with "." are skipped, with their folders), sorted by path (directory order is
// not stable across file systems, and calibration choices must be reproducible).
std::vector<std::string> list_image_files(const std::string &dir);

struct DatasetOptions {
  std::string split = "t10k";  // idx files: "t10k" or "train"
  // Image folders: a file mapping class-folder names to class indices. Text: one class per line,
  // the line's first whitespace-separated word is the folder name and the line number (from 0,
  // blank lines skipped) is the index; this reads ImageNet's LOC_synset_mapping.txt and plain
  // name lists. JSON: {"n01440764": 0, ...} or Keras' {"0": ["n01440764", "tench"], ...}.
  // Empty: the sorted folder names are classes 0..K-1 (torchvision's ImageFolder rule).
  std::string class_index;
  // false: a folder of loose images (no class subfolders) is accepted, unlabelled (calibration).
  bool need_labels = true;
};

class Dataset {
 public:
  // `source` holds <split>-images-idx3-ubyte[.gz] (+ labels), or images. Throws vqm::Error
  // naming the path and the problem: missing folder, no images, a file outside any class folder,
  // a class folder missing from the class index, a malformed index, idx count mismatch.
  static Dataset open(const std::string &source, const DatasetOptions &options = {});

  const std::string &source() const { return source_; }
  bool is_idx() const { return is_idx_; }
  const std::string &split() const { return split_; }  // idx only
  int size() const { return static_cast<int>(labels_.size()); }
  bool labelled() const { return labelled_; }
  int label(int i) const { return labels_[static_cast<size_t>(i)]; }  // -1 when unlabelled
  // Folder name of each class index (folder data sets; "" for indices no folder uses).
  const std::vector<std::string> &class_names() const { return class_names_; }
  const std::string &class_index() const { return class_index_; }  // the file used, or ""
  // "t10k[17]" for idx images, the path relative to the source for files.
  std::string item_name(int i) const;
  // Decoded pixels of item i with `channels` channels. Thread-safe (reads files or shared
  // memory only). Throws vqm::Error (the file's decode error; idx data with channels != 1).
  Image image(int i, int channels) const;
  // Items to use when only `limit` are wanted (0: all): the first `limit` of idx files (whose
  // order is already random), `limit` evenly spaced ones of a folder (sorted by class, so every
  // class keeps its share).
  std::vector<int> select(int limit) const;

 private:
  std::string source_, split_, class_index_;
  bool is_idx_ = false, labelled_ = false;
  IdxImages idx_;
  std::vector<std::string> files_;  // folder data sets: full paths, sorted
  std::vector<int> labels_;
  std::vector<std::string> class_names_;
};

}  // namespace vqm
