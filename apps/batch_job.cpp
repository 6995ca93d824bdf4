#include "apps/batch_job.h"

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "apps/app_common.h"
#include "apps/cli.h"
#include "apps/data/crc32.h"
#include "apps/data/dataset.h"
#include "runtime/io/error.h"
#include "runtime/io/format.h"
#include "runtime/io/image.h"

namespace vqm::app {

namespace fs = std::filesystem;

namespace {

constexpr const char *kFormat = "vqm-batch-job";
constexpr int kVersion = 1;

// Invalid UTF-8 in a file name becomes U+FFFD rather than an exception (Linux names are bytes).
std::string dump_line(const nlohmann::json &j) {
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n";
}

// "<out>/<name>" the way Python's os.path.join spells it, so both sides name files alike.
std::string join(const std::string &dir, const std::string &name) {
  return (fs::path(dir) / name).string();
}

std::string read_whole_file(const std::string &path) {
  std::ifstream f(path, std::ios::binary);
  if (!f) fail(ErrorCode::io, "cannot open '" + path + "': " + std::strerror(errno));
  std::stringstream buf;
  buf << f.rdbuf();
  return buf.str();
}

nlohmann::json read_json_file(const std::string &path) {
  nlohmann::json j = nlohmann::json::parse(read_whole_file(path), nullptr, false);
  if (j.is_discarded() || !j.is_object())
    fail(ErrorCode::format, path + " is not a JSON object (not written by a vqm batch job?)");
  return j;
}

// A name as a part's .json records it (invalid UTF-8 replaced), to match the listing against it.
std::string recorded(const std::string &name) {
  return nlohmann::json::parse(
             nlohmann::json(name).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace))
      .get<std::string>();
}

// The fields that decide a job's results: everything but the model's file name (the same model
// may sit under another name on another machine).
nlohmann::json identity(nlohmann::json index) {
  if (index.contains("model") && index["model"].is_object()) index["model"].erase("file");
  return index;
}

std::string shortened(const nlohmann::json &j) {
  const std::string s =
      j.is_null() ? "absent" : j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
  return s.size() > 60 ? s.substr(0, 57) + "..." : s;
}

// One part's results before writing: the rows of the images that decoded, in listing order.
struct PartResult {
  std::vector<std::string> names;
  std::vector<float> rows;
  nlohmann::json errors = nlohmann::json::array();
};

// Decodes the part's images in order and runs them in batches of up to `batch` decoded images
// (the Python side batches identically, so both produce the same bits).
PartResult compute_part(const VitModel &model, VitSession &session, const JobListing &listing,
                        int64_t first, int64_t count, int batch) {
  const VitConfig &c = model.config();
  const int64_t k = c.n_outputs();
  PartResult r;
  std::vector<float> input(static_cast<size_t>(batch * c.input_size()));
  int filled = 0;
  auto flush = [&] {
    if (filled == 0) return;
    const size_t at = r.rows.size();
    r.rows.resize(at + static_cast<size_t>(filled * k));
    session.run(input.data(), filled, r.rows.data() + at);
    filled = 0;
  };
  for (int64_t i = first; i < first + count; ++i) {
    const size_t idx = static_cast<size_t>(i);
    try {
      const Image img = decode_image_file(listing.path(idx), c.in_chans);
      preprocess_image(img, model.preprocess(), input.data() + filled * c.input_size());
    } catch (const Error &e) {
      r.errors.push_back({{"image", listing.names[idx]}, {"error", e.what()}});
      continue;
    }
    r.names.push_back(listing.names[idx]);
    if (++filled == batch) flush();
  }
  flush();
  return r;
}

void write_part(const std::string &out, int64_t part, int64_t first, int64_t count,
                const PartResult &r, int64_t n_outputs, int top) {
  const int64_t n = static_cast<int64_t>(r.names.size());
  std::string npy = npy_header(n, n_outputs);
  npy.append(reinterpret_cast<const char *>(r.rows.data()), r.rows.size() * sizeof(float));
  const std::string stem = join(out, part_stem(part));
  write_file_atomic(stem + ".npy", npy.data(), npy.size());
  nlohmann::json meta = {{"part", part},
                         {"first", first},
                         {"count", count},
                         {"images", r.names},
                         {"errors", r.errors}};
  if (top > 0) {
    nlohmann::json tops = nlohmann::json::array();
    for (int64_t i = 0; i < n; ++i)
      tops.push_back(top_k(r.rows.data() + i * n_outputs, static_cast<int>(n_outputs), top));
    meta["top"] = std::move(tops);
  }
  // Written last: its presence is what makes the part complete.
  const std::string text = dump_line(meta);
  write_file_atomic(stem + ".json", text.data(), text.size());
}

}  // namespace

std::string JobListing::path(size_t i) const {
  return root.empty() ? names[i] : join(root, names[i]);
}

JobListing list_folder(const std::string &dir) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) fail(ErrorCode::io, "'" + dir + "' is not a folder");
  JobListing l;
  l.root = dir;
  for (const std::string &f : list_image_files(dir))
    l.names.push_back(fs::path(f).lexically_relative(dir).generic_string());
  if (l.names.empty())
    fail(ErrorCode::invalid_argument,
         "folder '" + dir + "' holds no .jpg, .jpeg, .png or .bmp images");
  return l;
}

JobListing read_manifest(const std::string &file) {
  std::ifstream f(file, std::ios::binary);
  if (!f) fail(ErrorCode::io, "cannot open manifest '" + file + "': " + std::strerror(errno));
  JobListing l;
  l.root = fs::path(file).parent_path().string();
  for (std::string line; std::getline(f, line);) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (!line.empty()) l.names.push_back(line);
  }
  if (l.names.empty()) fail(ErrorCode::invalid_argument, "manifest '" + file + "' lists no images");
  return l;
}

Shard parse_shard(const std::string &text) {
  const size_t slash = text.find('/');
  auto number = [&](const std::string &s, long long &v) {
    if (s.empty() || s.size() > 9 || !std::all_of(s.begin(), s.end(), ::isdigit)) return false;
    v = std::stoll(s);
    return true;
  };
  long long i = 0, n = 0;
  if (slash == std::string::npos || !number(text.substr(0, slash), i) ||
      !number(text.substr(slash + 1), n) || n < 1 || i >= n)
    fail(ErrorCode::invalid_argument,
         "--shard '" + text + "': expected I/N with 0 <= I < N (e.g. 0/4 ... 3/4)");
  return {static_cast<int>(i), static_cast<int>(n)};
}

nlohmann::json job_index(const std::string &model_path, const VitModel &model,
                         const JobListing &listing, const JobOptions &options) {
  uint64_t model_bytes = 0;
  const uint32_t model_crc = crc32_file(model_path, &model_bytes);
  uint32_t listing_crc = 0;
  for (const std::string &name : listing.names) {
    listing_crc = crc32(reinterpret_cast<const uint8_t *>(name.data()), name.size(), listing_crc);
    listing_crc = crc32(reinterpret_cast<const uint8_t *>("\n"), 1, listing_crc);
  }
  const int classes = model.config().num_classes;
  const int64_t images = static_cast<int64_t>(listing.names.size());
  nlohmann::json j = {{"format", kFormat},
                      {"version", kVersion},
                      {"model",
                       {{"file", fs::path(model_path).filename().string()},
                        {"bytes", model_bytes},
                        {"crc32", hex32(model_crc)}}},
                      {"kind", classes > 0 ? "logits" : "embedding"},
                      {"n_outputs", model.config().n_outputs()},
                      {"top", classes > 0 ? std::min(options.top, classes) : 0},
                      {"images", images},
                      {"listing_crc32", hex32(listing_crc)},
                      {"part_size", options.part_size},
                      {"parts", (images + options.part_size - 1) / options.part_size}};
  if (classes > 0) j["labels"] = model.labels();
  return j;
}

void open_job(const std::string &out, const nlohmann::json &index) {
  std::error_code ec;
  fs::create_directories(out, ec);
  if (ec) fail(ErrorCode::io, "cannot create folder '" + out + "': " + ec.message());
  const std::string path = join(out, "index.json");
  if (!fs::exists(path, ec)) {
    const std::string text = dump_line(index);
    write_file_atomic(path, text.data(), text.size());  // concurrent shards write the same bytes
    return;
  }
  const nlohmann::json have = identity(read_json_file(path)), want = identity(index);
  if (have == want) return;
  std::vector<std::string> keys;
  for (const auto &j : {have, want})
    for (const auto &item : j.items()) keys.push_back(item.key());
  std::sort(keys.begin(), keys.end());
  for (const std::string &key : keys) {
    const nlohmann::json a = have.value(key, nlohmann::json()),
                         b = want.value(key, nlohmann::json());
    if (a != b)
      fail(ErrorCode::invalid_argument,
           path + " belongs to another job (" + key + " " + shortened(a) + " there, " +
               shortened(b) + " here): use another output folder, or the same model, images, " +
               "part size and top-K");
  }
}

std::string part_stem(int64_t k) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "part-%06lld", static_cast<long long>(k));
  return buf;
}

bool part_complete(const std::string &out, int64_t k) {
  std::error_code ec;
  return fs::is_regular_file(join(out, part_stem(k) + ".json"), ec);
}

std::string npy_header(int64_t rows, int64_t cols) {
  std::string dict = "{'descr': '<f4', 'fortran_order': False, 'shape': (" + std::to_string(rows) +
                     ", " + std::to_string(cols) + "), }";
  const size_t prefix = 10;  // magic (6), version (2), header length (2)
  dict.append(63 - (prefix + dict.size()) % 64, ' ');
  dict += '\n';
  std::string h("\x93NUMPY\x01\x00", 8);
  h += static_cast<char>(dict.size() & 0xff);
  h += static_cast<char>(dict.size() >> 8);
  return h + dict;
}

ShardSummary run_job_shard(const std::shared_ptr<const VitModel> &model, VitSession &session,
                           const JobListing &listing, const std::string &out,
                           const JobOptions &options, ProgressBar *progress) {
  const int64_t images = static_cast<int64_t>(listing.names.size()), size = options.part_size;
  ShardSummary s;
  s.parts_in_job = (images + size - 1) / size;
  int64_t shard_images = 0;
  for (int64_t k = options.shard.index; k < s.parts_in_job; k += options.shard.count)
    shard_images += std::min(size, images - k * size);
  const int top =
      model->config().num_classes > 0 ? std::min(options.top, model->config().num_classes) : 0;
  for (int64_t k = options.shard.index; k < s.parts_in_job; k += options.shard.count) {
    const int64_t first = k * size, count = std::min(size, images - first);
    ++s.parts_in_shard;
    if (part_complete(out, k)) {
      ++s.parts_skipped;
    } else {
      const PartResult r = compute_part(*model, session, listing, first, count, options.batch);
      write_part(out, k, first, count, r, model->config().n_outputs(), top);
      ++s.parts_written;
      s.images += count;
      s.errors += static_cast<int64_t>(r.errors.size());
    }
    if (progress) progress->advance(count, shard_images);
  }
  for (int64_t k = 0; k < s.parts_in_job; ++k) s.parts_complete_in_job += part_complete(out, k);
  return s;
}

// Part k's rows and errors, checked against its range of the listing: every entry once, in
// order, either a row (in "images") or an error.
void read_part(const std::string &out, int64_t k, int64_t first, int64_t count, int64_t width,
               const JobListing &listing, JobResults &r) {
  const std::string stem = join(out, part_stem(k));
  const nlohmann::json meta = read_json_file(stem + ".json");
  auto bad = [&](const std::string &why) {
    fail(ErrorCode::format, stem + ".json " + why + ": delete the part and rerun to redo it");
  };
  if (meta.value("part", int64_t{-1}) != k || meta.value("first", int64_t{-1}) != first ||
      meta.value("count", int64_t{-1}) != count || !meta["images"].is_array() ||
      !meta["errors"].is_array())
    bad("is not part " + std::to_string(k) + " of this job");
  const auto &images = meta["images"], &errors = meta["errors"];
  size_t row = 0, error = 0;
  const size_t rows_before = r.items.size();
  for (int64_t i = first; i < first + count; ++i) {
    const std::string name = recorded(listing.names[static_cast<size_t>(i)]);
    if (row < images.size() && images[row] == name) {
      r.items.push_back(i);
      ++row;
    } else if (error < errors.size() && errors[error].value("image", "") == name) {
      r.errors.emplace_back(i, errors[error].value("error", ""));
      ++error;
    } else {
      bad("does not list image " + std::to_string(i) + " ('" + name + "') of the listing");
    }
  }
  if (row != images.size() || error != errors.size()) bad("lists images outside its range");
  const std::string npy = read_whole_file(stem + ".npy");
  const std::string header = npy_header(static_cast<int64_t>(row), width);
  const size_t bytes = row * static_cast<size_t>(width) * sizeof(float);
  if (npy.compare(0, header.size(), header) != 0 || npy.size() != header.size() + bytes)
    fail(ErrorCode::format, stem + ".npy is not " + std::to_string(row) + " x " +
                                std::to_string(width) + " float32: delete the part and rerun");
  r.outputs.resize((rows_before + row) * static_cast<size_t>(width));
  std::memcpy(r.outputs.data() + rows_before * static_cast<size_t>(width),
              npy.data() + header.size(), bytes);
}

JobResults read_job(const std::string &out, const JobListing &listing) {
  const nlohmann::json index = read_json_file(join(out, "index.json"));
  JobResults r;
  r.n_outputs = index.value("n_outputs", int64_t{0});
  const int64_t images = static_cast<int64_t>(listing.names.size());
  const int64_t size = index.value("part_size", int64_t{0});
  if (index.value("images", int64_t{-1}) != images || size < 1 || r.n_outputs < 1)
    fail(ErrorCode::format, join(out, "index.json") + " is not the index of this listing's job");
  for (int64_t k = 0; k * size < images; ++k) {
    if (!part_complete(out, k))
      fail(ErrorCode::invalid_argument, join(out, part_stem(k)) + ".json is missing: part " +
                                            std::to_string(k) + " of the job is not complete");
    read_part(out, k, k * size, std::min(size, images - k * size), r.n_outputs, listing, r);
  }
  return r;
}

std::vector<cli::Option> with_job_flags(std::vector<cli::Option> options) {
  options.push_back({"--shard", "I/N", "batch job: only parts k with k % N == I (default 0/1)"});
  options.push_back({"--part-size", "P", "batch job: images per part (default 1024)"});
  return options;
}

JobOptions job_options(const cli::Args &args) {
  JobOptions jo;
  jo.part_size = args.get_int("--part-size", 1024, 1, 1 << 24);
  jo.top = args.get_int("--top", 5, 1, 1000000);
  jo.batch = args.get_int("--batch", 8, 1, 256);
  try {
    jo.shard = parse_shard(args.get("--shard", "0/1"));
  } catch (const Error &e) {
    throw cli::UsageError(e.what());
  }
  return jo;
}

void check_no_job_flags(const cli::Args &args) {
  for (const char *flag : {"--manifest", "--shard", "--part-size"})
    if (args.has(flag)) throw cli::UsageError(std::string(flag) + " needs --out DIR (a batch job)");
}

ShardSummary run_job_tool(const char *tool, const cli::Args &args, const JobOptions &jo,
                          const std::shared_ptr<const VitModel> &model,
                          const std::string &model_path, const JobListing &listing,
                          const std::string &out) {
  SessionOptions so;
  so.n_threads = args.get_int("--threads", 0, 1, 1024);
  so.max_batch = jo.batch;
  open_job(out, job_index(model_path, *model, listing, jo));
  VitSession session(model, so);
  ProgressBar bar(tool, "images", progress_wanted(args.has("--quiet")));
  const auto s = run_job_shard(model, session, listing, out, jo, &bar);
  bar.finish();
  std::fprintf(stderr,
               "%s: shard %d/%d of %s: %lld parts written (%lld images, %lld errors), %lld "
               "already complete; job: %lld of %lld parts complete\n",
               tool, jo.shard.index, jo.shard.count, out.c_str(),
               static_cast<long long>(s.parts_written), static_cast<long long>(s.images),
               static_cast<long long>(s.errors), static_cast<long long>(s.parts_skipped),
               static_cast<long long>(s.parts_complete_in_job),
               static_cast<long long>(s.parts_in_job));
  return s;
}

}  // namespace vqm::app
