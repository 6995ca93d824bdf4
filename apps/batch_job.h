// Sharded, resumable batch jobs (vit-run --out): a list of images cut into numbered parts of
// `part_size` images; each part's outputs (float32 rows: logits or embeddings) and metadata
// (image names, top-K classes, the images that failed and why) are written atomically into an
// output folder beside an index.json that says which job the folder holds. A rerun, another shard
// or the Python side (python/vqm/jobs.py, which writes the same bytes) continues where any other
// stopped. The format is specified once, in docs/batch-jobs.md.
#pragma once
#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "apps/cli.h"
#include "apps/progress.h"
#include "runtime/engine/vit.h"

namespace vqm::app {

// The images of a job. `names` are what the parts record: paths relative to the listed folder,
// or a manifest's lines as written. path(i) is where image i is read from.
struct JobListing {
  std::string root;  // the folder, or the manifest's folder (relative lines are relative to it)
  std::vector<std::string> names;
  std::string path(size_t i) const;
};
// Every image under `dir` (list_image_files: recursive, sorted, hidden names skipped).
JobListing list_folder(const std::string &dir);
// One path per line; blank lines skipped, a trailing '\r' dropped. Throws vqm::Error.
JobListing read_manifest(const std::string &file);

// --shard I/N: parts k with k % N == I. Throws vqm::Error(invalid_argument) on anything but
// two integers with 0 <= I < N.
struct Shard {
  int index = 0, count = 1;
};
Shard parse_shard(const std::string &text);

struct JobOptions {
  int part_size = 1024;  // images per part
  int top = 5;           // classes per image in a part's "top" (classifiers)
  int batch = 8;         // images per forward pass (inside a part; does not change the job)
  Shard shard;
};

// The index.json of a job: what identifies it (model checksum, listing checksum, part size,
// top) and what a reader needs (image and part counts, output kind and width, labels).
nlohmann::json job_index(const std::string &model_path, const VitModel &model,
                         const JobListing &listing, const JobOptions &options);
// Creates folder `out` if needed and writes `index` there, or checks that the index.json already
// there is the same job's. Throws vqm::Error(invalid_argument) naming the first difference.
void open_job(const std::string &out, const nlohmann::json &index);

// "part-000017": the stem of part k's .npy (outputs) and .json (metadata, written last).
std::string part_stem(int64_t k);
// A part is complete when its .json exists (it is renamed into place after the .npy).
bool part_complete(const std::string &out, int64_t k);
// The .npy header of a rows x cols little-endian float32 array (numpy format 1.0, padded to 64
// bytes as numpy pads it).
std::string npy_header(int64_t rows, int64_t cols);

struct ShardSummary {
  int64_t parts_written = 0, parts_skipped = 0, images = 0, errors = 0;
  int64_t parts_in_shard = 0, parts_complete_in_job = 0, parts_in_job = 0;
};
// Runs the parts of options.shard that are not complete, writing each atomically. An image that
// cannot be read or decoded goes into its part's "errors" with the reason. `progress` may be null.
ShardSummary run_job_shard(const std::shared_ptr<const VitModel> &model, VitSession &session,
                           const JobListing &listing, const std::string &out,
                           const JobOptions &options, ProgressBar *progress);

// The results of a complete job in listing order: row r of `outputs` (n_outputs floats) is listing
// entry items[r]; the entries that could not be decoded are in `errors`, with the reason.
struct JobResults {
  int64_t n_outputs = 0;
  std::vector<int64_t> items;
  std::vector<float> outputs;
  std::vector<std::pair<int64_t, std::string>> errors;
};
// Reads every part of the job in `out`, whose index open_job has matched with `listing`. Throws
// vqm::Error naming a part that is missing (invalid_argument) or that does not hold its range of
// the listing (format).
JobResults read_job(const std::string &out, const JobListing &listing);

// `options` followed by the job flags that every tool with --out takes alike (--shard,
// --part-size), so their help is written once.
std::vector<cli::Option> with_job_flags(std::vector<cli::Option> options);
// The job flags of the tools (--part-size, --shard, --batch, --top); cli::UsageError on a bad one.
JobOptions job_options(const cli::Args &args);
// cli::UsageError when a flag that only batch jobs take (--manifest, --shard, --part-size) is
// given without --out.
void check_no_job_flags(const cli::Args &args);
// A tool's --out DIR: writes or checks DIR/index.json, runs the missing parts of the job `jo`
// (from job_options) with one session of --threads threads and a progress bar (unless --quiet),
// and ends with the one-line summary on stderr, as `tool`.
ShardSummary run_job_tool(const char *tool, const cli::Args &args, const JobOptions &jo,
                          const std::shared_ptr<const VitModel> &model,
                          const std::string &model_path, const JobListing &listing,
                          const std::string &out);

}  // namespace vqm::app
