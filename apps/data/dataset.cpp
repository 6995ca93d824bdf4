#include "apps/data/dataset.h"

#include <algorithm>
#include <cctype>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>

#include "runtime/io/error.h"

namespace vqm {

namespace fs = std::filesystem;

namespace {

bool is_image_file(const fs::path &p) {
  std::string ext = p.extension().string();
  for (char &c : ext) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return ext == ".jpg" || ext == ".jpeg" || ext == ".png" || ext == ".bmp";
}

bool is_hidden(const fs::path &p) {
  const std::string name = p.filename().string();
  return !name.empty() && name[0] == '.';
}

// Folder name -> class index, from a text or JSON class-index file (see DatasetOptions).
std::map<std::string, int> read_class_index(const std::string &path) {
  std::ifstream f(path);
  if (!f) fail(ErrorCode::io, "cannot open class-index file '" + path + "'");
  std::stringstream buf;
  buf << f.rdbuf();
  const std::string text = buf.str();
  std::map<std::string, int> index;
  auto add = [&](const std::string &name, long long i) {
    if (name.empty()) fail(ErrorCode::format, path + ": empty class-folder name");
    if (i < 0 || i > 1000000)
      fail(ErrorCode::format, path + ": class index " + std::to_string(i) + " of '" + name +
                                  "' is out of range [0, 1000000]");
    if (!index.emplace(name, static_cast<int>(i)).second)
      fail(ErrorCode::format, path + ": class folder '" + name + "' is listed twice");
  };
  const size_t first = text.find_first_not_of(" \t\r\n");
  if (first != std::string::npos && text[first] == '{') {
    const nlohmann::json j = nlohmann::json::parse(text, nullptr, false);
    if (j.is_discarded() || !j.is_object()) fail(ErrorCode::format, path + ": invalid JSON");
    for (const auto &[key, value] : j.items()) {
      if (value.is_number_integer()) {  // {"n01440764": 0}
        add(key, value.get<long long>());
      } else if (value.is_array() && !value.empty() && value[0].is_string()) {
        // Keras' imagenet_class_index.json: {"0": ["n01440764", "tench"]}.
        char *end = nullptr;
        const long long i = std::strtoll(key.c_str(), &end, 10);
        if (key.empty() || *end)
          fail(ErrorCode::format, path + ": key '" + key + "' is not a class index");
        add(value[0].get<std::string>(), i);
      } else {
        fail(ErrorCode::format,
             path + ": entry '" + key + "' is neither an index nor [\"folder\", \"label\"]");
      }
    }
  } else {
    std::istringstream lines(text);
    std::string line;
    int next = 0;
    while (std::getline(lines, line)) {
      std::istringstream words(line);
      std::string name;
      if (words >> name) add(name, next++);
    }
  }
  if (index.empty()) fail(ErrorCode::format, path + ": no classes");
  // Two folders on one index would make per-class numbers ambiguous.
  std::map<int, std::string> seen;
  for (const auto &[name, i] : index)
    if (auto [it, fresh] = seen.emplace(i, name); !fresh)
      fail(ErrorCode::format, path + ": class index " + std::to_string(i) + " is given to both '" +
                                  it->second + "' and '" + name + "'");
  return index;
}

}  // namespace

std::vector<std::string> list_image_files(const std::string &dir) {
  std::vector<std::string> files;
  std::error_code ec;
  // Symlinked class folders are followed: a subset of a big data set is often made of links.
  auto it = fs::recursive_directory_iterator(dir,
                                             fs::directory_options::skip_permission_denied |
                                                 fs::directory_options::follow_directory_symlink,
                                             ec);
  for (; !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    if (is_hidden(it->path())) {  // .git, .ipynb_checkpoints, editor droppings
      if (it->is_directory(ec)) it.disable_recursion_pending();
      continue;
    }
    if (it->is_regular_file(ec) && is_image_file(it->path())) files.push_back(it->path().string());
  }
  if (ec) fail(ErrorCode::io, "cannot list '" + dir + "': " + ec.message());
  std::sort(files.begin(), files.end());
  return files;
}

Dataset Dataset::open(const std::string &source, const DatasetOptions &opt) {
  std::error_code ec;
  if (!fs::exists(source, ec)) fail(ErrorCode::io, "data source '" + source + "' does not exist");
  if (!fs::is_directory(source, ec))
    fail(ErrorCode::invalid_argument, "data source '" + source + "' is not a folder");
  Dataset d;
  d.source_ = source;
  d.split_ = opt.split;
  const bool has_idx = fs::exists(fs::path(source) / (opt.split + "-images-idx3-ubyte"), ec) ||
                       fs::exists(fs::path(source) / (opt.split + "-images-idx3-ubyte.gz"), ec);
  if (has_idx) {
    if (!opt.class_index.empty())
      fail(ErrorCode::invalid_argument,
           "a class-index file applies to image folders; " + source + " holds idx files");
    d.is_idx_ = true;
    d.idx_ = load_idx_images(find_idx_file(source, opt.split, "images"));
    const std::string labels_path = find_idx_file(source, opt.split, "labels");
    const std::vector<uint8_t> labels = load_idx_labels(labels_path);
    if (labels.size() != static_cast<size_t>(d.idx_.count))
      fail(ErrorCode::format, std::to_string(d.idx_.count) + " images but " +
                                  std::to_string(labels.size()) + " labels in " + source);
    d.labels_.assign(labels.begin(), labels.end());
    d.labelled_ = true;
    return d;
  }

  d.files_ = list_image_files(source);
  if (d.files_.empty())
    fail(ErrorCode::invalid_argument, "folder '" + source +
                                          "' holds no .jpg/.jpeg/.png/.bmp images (and no " +
                                          opt.split + "-images-idx3-ubyte)");
  // The class of a file is the first folder of its path below the source.
  std::vector<std::string> first_dirs;
  bool loose = false;
  for (const auto &f : d.files_) {
    const fs::path rel = fs::path(f).lexically_relative(source);
    const std::string top = rel.begin()->string();
    loose |= std::next(rel.begin()) == rel.end();
    first_dirs.push_back(top);
  }
  if (loose && !opt.need_labels && opt.class_index.empty()) {
    d.labels_.assign(d.files_.size(), -1);
    return d;
  }
  std::map<std::string, int> index;
  if (!opt.class_index.empty()) {
    index = read_class_index(opt.class_index);
    d.class_index_ = opt.class_index;
  } else {
    // torchvision's ImageFolder: every subfolder is a class, in sorted order, so an empty class
    // folder still takes its index and the others do not shift.
    std::vector<std::string> names;
    for (const auto &e : fs::directory_iterator(source, ec))
      if (!is_hidden(e.path()) && e.is_directory(ec)) names.push_back(e.path().filename().string());
    std::sort(names.begin(), names.end());
    for (size_t i = 0; i < names.size(); ++i) index[names[i]] = static_cast<int>(i);
  }
  int max_index = -1;
  for (const auto &entry : index) max_index = std::max(max_index, entry.second);
  d.class_names_.assign(static_cast<size_t>(max_index + 1), "");
  for (const auto &[name, i] : index) d.class_names_[static_cast<size_t>(i)] = name;
  for (size_t i = 0; i < d.files_.size(); ++i) {
    auto it = index.find(first_dirs[i]);
    if (it == index.end()) {
      const fs::path rel = fs::path(d.files_[i]).lexically_relative(source);
      if (std::next(rel.begin()) == rel.end())
        fail(ErrorCode::invalid_argument, "'" + d.files_[i] +
                                              "' is not in a class folder (expected " + source +
                                              "/<class>/<image>)");
      fail(ErrorCode::invalid_argument, "class folder '" + first_dirs[i] + "' of " + source +
                                            " is not in the class index " + opt.class_index);
    }
    d.labels_.push_back(it->second);
  }
  d.labelled_ = true;
  return d;
}

std::string Dataset::item_name(int i) const {
  if (is_idx_) return split_ + "[" + std::to_string(i) + "]";
  return fs::path(files_[static_cast<size_t>(i)]).lexically_relative(source_).string();
}

Image Dataset::image(int i, int channels) const {
  if (!is_idx_) return decode_image_file(files_[static_cast<size_t>(i)], channels);
  if (channels != 1)
    fail(ErrorCode::unsupported, "the idx images in " + source_ +
                                     " are grayscale but the model takes " +
                                     std::to_string(channels) + " channels");
  const size_t pixels = static_cast<size_t>(idx_.rows) * idx_.cols;
  Image img;
  img.width = idx_.cols;
  img.height = idx_.rows;
  img.channels = 1;
  img.pixels.assign(idx_.pixels.begin() + static_cast<std::ptrdiff_t>(i * pixels),
                    idx_.pixels.begin() + static_cast<std::ptrdiff_t>((i + 1) * pixels));
  return img;
}

std::vector<int> Dataset::select(int limit) const {
  const int n = size();
  const int count = limit > 0 ? std::min(limit, n) : n;
  std::vector<int> out(static_cast<size_t>(count));
  for (int k = 0; k < count; ++k)
    out[static_cast<size_t>(k)] =
        is_idx_ ? k : static_cast<int>(static_cast<int64_t>(k) * n / count);
  return out;
}

}  // namespace vqm
