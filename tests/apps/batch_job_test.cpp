// Batch jobs (vit-run --out, vit-eval --out, apps/batch_job.*): shards that concatenate to the
// whole job, parts that survive a SIGKILL (whole or absent, never torn) and a rerun that redoes
// only the missing ones, bad images in the errors list, a folder of another job refused, the flag
// errors; vit-eval's shards writing vit-run's folder and scoring it as vit-eval alone does.
#include "apps/batch_job.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <map>
#include <nlohmann/json.hpp>
#include <thread>

#include "apps/apps_test_util.h"
#include "process_util.h"
#include "test_util.h"

namespace vqm::test {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

json read_json(const std::string &path) {
  const auto bytes = read_bytes(path);
  return json::parse(bytes.begin(), bytes.end());
}

// Every regular file of `dir` by name, with its bytes.
std::map<std::string, std::vector<uint8_t>> files_of(const std::string &dir) {
  std::map<std::string, std::vector<uint8_t>> files;
  for (const auto &e : fs::directory_iterator(dir))
    files[e.path().filename().string()] = read_bytes(e.path().string());
  return files;
}

// A model and 60 t10k PNGs in class folders "0".."9", plus one corrupt and one empty image.
struct JobFixture {
  std::string dir, model, images;
  JobFixture() : dir(scratch_dir()), model(write_fmnist_model(dir)), images(dir + "/images") {
    write_fmnist_folder(images, 60, true);
    write_bytes(images + "/3/corrupt.png", {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n', 1, 2});
    write_bytes(images + "/7/empty.jpg", {});
  }
  ToolRun job(const std::string &out, const std::string &extra) const {
    return run_tool("vit-run --quiet --threads 1 --part-size 16 --model " + model + " --out " +
                    out + " " + extra);
  }
};

TEST(BatchJob, ShardParsing) {
  const auto s = app::parse_shard("3/4");
  EXPECT_EQ(s.index, 3);
  EXPECT_EQ(s.count, 4);
  for (const char *bad : {"4/4", "1/0", "-1/4", "1", "a/b", "1/4/5", "/4", "1/", " 1/4"})
    expect_error([&] { app::parse_shard(bad); }, ErrorCode::invalid_argument, "expected I/N");
}

TEST(BatchJob, NpyHeaderIsNumpysOwn) {
  const std::string h = app::npy_header(3, 10);
  EXPECT_EQ(h.size() % 64, 0u);
  EXPECT_EQ(h.substr(0, 8), std::string("\x93NUMPY\x01\x00", 8));
  EXPECT_EQ(static_cast<size_t>(uint8_t(h[8]) | uint8_t(h[9]) << 8), h.size() - 10);
  EXPECT_NE(h.find("{'descr': '<f4', 'fortran_order': False, 'shape': (3, 10), }"),
            std::string::npos);
  EXPECT_EQ(h.back(), '\n');
}

TEST(BatchJob, FourShardsConcatenateToTheWholeJob) {
  const JobFixture f;
  const ToolRun whole = f.job(f.dir + "/whole", f.images);
  ASSERT_EQ(whole.status, 0) << whole.err;
  EXPECT_NE(whole.err.find("4 parts written (62 images, 2 errors)"), std::string::npos)
      << whole.err;
  for (int i = 0; i < 4; ++i) {
    const ToolRun r = f.job(f.dir + "/sharded", "--shard " + std::to_string(i) + "/4 " + f.images);
    ASSERT_EQ(r.status, 0) << r.err;
    EXPECT_NE(r.err.find("1 parts written"), std::string::npos) << r.err;
  }
  const auto a = files_of(f.dir + "/whole"), b = files_of(f.dir + "/sharded");
  EXPECT_EQ(a.size(), 9u);  // index + 4 x (.npy, .json): no temporaries left
  EXPECT_EQ(a, b);

  const json index = read_json(f.dir + "/whole/index.json");
  EXPECT_EQ(index["images"], 62);
  EXPECT_EQ(index["parts"], 4);
  EXPECT_EQ(index["kind"], "logits");
  EXPECT_EQ(index["labels"][9], "Ankle boot");
  // Parts in order hold every listed image exactly once: decoded ones in "images", the others
  // in "errors" with the decoder's reason.
  std::vector<std::string> seen;
  json errors = json::array();
  for (int k = 0; k < 4; ++k) {
    const json part = read_json(f.dir + "/whole/" + app::part_stem(k) + ".json");
    EXPECT_EQ(part["first"], 16 * k);
    EXPECT_EQ(part["images"].size() + part["errors"].size(), part["count"].get<size_t>());
    for (const auto &n : part["images"]) seen.push_back(n);
    for (const auto &e : part["errors"]) errors.push_back(e);
    const auto npy = read_bytes(f.dir + "/whole/" + app::part_stem(k) + ".npy");
    EXPECT_EQ(npy.size(), 128 + part["images"].size() * 10 * sizeof(float));
    ASSERT_EQ(part["top"].size(), part["images"].size());
    EXPECT_EQ(part["top"][0].size(), 5u);
  }
  std::vector<std::string> listed = app::list_folder(f.images).names;
  ASSERT_EQ(listed.size(), 62u);
  listed.erase(std::remove_if(
                   listed.begin(), listed.end(),
                   [](const std::string &n) { return n == "3/corrupt.png" || n == "7/empty.jpg"; }),
               listed.end());
  EXPECT_EQ(seen, listed);
  ASSERT_EQ(errors.size(), 2u);
  EXPECT_EQ(errors[0]["image"], "3/corrupt.png");
  EXPECT_NE(errors[0]["error"].get<std::string>().find("corrupt.png"), std::string::npos);
  EXPECT_EQ(errors[1]["image"], "7/empty.jpg");
}

// Starts vit-run (no waiting), SIGKILLs it once part 0 is complete; returns whether it was killed
// before finishing.
bool kill_after_first_part(const JobFixture &f, const std::string &out) {
  const std::vector<std::string> argv = {
      tool("vit-run"), "--quiet", "--threads", "1", "--batch", "1", "--part-size", "2",
      "--model",       f.model,   "--out",     out, f.images};
  // c_strings points into its argument: the environment must outlive the spawn.
  const std::vector<std::string> environment = environment_plus({});
  const auto args = c_strings(argv);
  const auto env = c_strings(environment);
  pid_t pid = 0;
  EXPECT_EQ(posix_spawn(&pid, argv[0].c_str(), nullptr, nullptr, args.data(), env.data()), 0);
  int status = 0;
  for (int i = 0; i < 20000 && !fs::exists(out + "/" + app::part_stem(0) + ".json"); ++i) {
    if (waitpid(pid, &status, WNOHANG) == pid) return false;
    std::this_thread::sleep_for(std::chrono::microseconds(500));
  }
  kill(pid, SIGKILL);
  waitpid(pid, &status, 0);
  return WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL;
}

TEST(BatchJob, KilledRunLeavesWholePartsAndTheRerunRedoesTheRest) {
  const JobFixture f;
  const std::string out = f.dir + "/killed";
  ASSERT_TRUE(kill_after_first_part(f, out)) << "vit-run finished before the kill";
  // Whatever is there is whole: each .json has its .npy of the right size; the rest are
  // temporaries (hidden names), never a torn part.
  int complete = 0;
  for (const auto &e : fs::directory_iterator(out)) {
    const std::string name = e.path().filename().string();
    if (name[0] == '.') {
      EXPECT_NE(name.find(".tmp."), std::string::npos) << name;
    } else if (e.path().extension() == ".json" && name != "index.json") {
      ++complete;
      const json part = read_json(e.path().string());
      fs::path npy = e.path();
      EXPECT_EQ(fs::file_size(npy.replace_extension(".npy")),
                128 + part["images"].size() * 10 * sizeof(float));
    }
  }
  EXPECT_GE(complete, 1);
  EXPECT_LT(complete, 31);
  const ToolRun rerun = run_tool("vit-run --quiet --threads 1 --batch 1 --part-size 2 --model " +
                                 f.model + " --out " + out + " " + f.images);
  ASSERT_EQ(rerun.status, 0) << rerun.err;
  EXPECT_NE(rerun.err.find(std::to_string(31 - complete) + " parts written"), std::string::npos)
      << rerun.err;
  EXPECT_NE(rerun.err.find(std::to_string(complete) + " already complete"), std::string::npos);
  EXPECT_NE(rerun.err.find("job: 31 of 31 parts complete"), std::string::npos);
  const ToolRun clean = run_tool("vit-run --quiet --threads 1 --batch 1 --part-size 2 --model " +
                                 f.model + " --out " + f.dir + "/clean " + f.images);
  ASSERT_EQ(clean.status, 0) << clean.err;
  auto a = files_of(out);
  for (auto it = a.begin(); it != a.end();) it = it->first[0] == '.' ? a.erase(it) : ++it;
  EXPECT_EQ(a, files_of(f.dir + "/clean"));
}

TEST(BatchJob, AFolderOfAnotherJobIsRefused) {
  const JobFixture f;
  ASSERT_EQ(f.job(f.dir + "/out", f.images).status, 0);
  const ToolRun r = run_tool("vit-run --quiet --part-size 8 --model " + f.model + " --out " +
                             f.dir + "/out " + f.images);
  EXPECT_EQ(r.status, 1);
  EXPECT_NE(r.err.find("belongs to another job (part_size 16 there, 8 here)"), std::string::npos)
      << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  // The same job again: nothing to do.
  const ToolRun again = f.job(f.dir + "/out", f.images);
  EXPECT_EQ(again.status, 0);
  EXPECT_NE(again.err.find("0 parts written (0 images, 0 errors), 4 already complete"),
            std::string::npos)
      << again.err;
}

TEST(BatchJob, ManifestPathsAreRelativeToTheManifest) {
  const JobFixture f;
  std::ofstream(f.images + "/list.txt") << "2/00001.png\r\n\n"
                                        << f.images << "/9/00000.png\nnone.png\n";
  const ToolRun r = f.job(f.dir + "/m", "--manifest " + f.images + "/list.txt");
  ASSERT_EQ(r.status, 0) << r.err;
  const json part = read_json(f.dir + "/m/part-000000.json");
  EXPECT_EQ(part["images"], json({"2/00001.png", f.images + "/9/00000.png"}));
  ASSERT_EQ(part["errors"].size(), 1u);
  EXPECT_EQ(part["errors"][0]["image"], "none.png");
  EXPECT_EQ(part["top"][1][0], 9);  // t10k[0] is an ankle boot
}

TEST(BatchJob, BadFlagsAreOneLineErrors) {
  const JobFixture f;
  const std::string base = "vit-run --model " + f.model + " ";
  const struct {
    std::string args, message;
    int status;
  } cases[] = {
      {"--out o --shard 4/4 " + f.images, "expected I/N", 2},
      {"--out o --shard x " + f.images, "expected I/N", 2},
      {"--out o --part-size 0 " + f.images, "--part-size", 2},
      {"--shard 0/2 " + f.images, "--shard needs --out DIR", 2},
      {"--manifest m.txt img.png", "--manifest needs --out DIR", 2},
      {"--out o --json " + f.images, "--json does not go with --out", 2},
      {"--out o " + f.images + " " + f.images, "one image folder or --manifest", 2},
      {"--out o --manifest " + f.dir + "/none.txt", "cannot open manifest", 1},
      {"--out o " + f.dir + "/none", "is not a folder", 1},
      {"--out " + f.model + "/x " + f.images, "cannot create folder", 1},
  };
  for (const auto &c : cases) {
    const ToolRun r = run_tool(base + c.args);
    EXPECT_EQ(r.status, c.status) << c.args << "\n" << r.err;
    EXPECT_NE(r.err.find(c.message), std::string::npos) << c.args << "\n" << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  }
  EXPECT_FALSE(fs::exists("o"));
}

// vit-eval --out on 60 t10k PNGs in class folders named after the labels (sorted folder order is
// not the class order, so the labels come through --class-index), in parts of 16.
struct EvalJobFixture {
  std::string dir, model, images, classes;
  EvalJobFixture()
      : dir(scratch_dir()),
        model(write_fmnist_model(dir)),
        images(dir + "/images"),
        classes(write_fmnist_folder(images, 60)) {}
  ToolRun eval(const std::string &out, const std::string &extra) const {
    return run_tool("vit-eval --quiet --threads 1 --part-size 16 --model " + model + " --data " +
                    images + " --class-index " + classes + " --out " + out + " " + extra);
  }
  ToolRun run(const std::string &out, const std::string &extra) const {
    return run_tool("vit-run --quiet --threads 1 --part-size 16 --model " + model + " --out " +
                    out + " " + extra + " " + images);
  }
};

TEST(BatchJob, EvalShardsWriteVitRunsFolderAndScoreLikeVitEval) {
  const EvalJobFixture f;
  ASSERT_EQ(f.run(f.dir + "/run", "").status, 0);
  json last;
  for (int i = 0; i < 4; ++i) {
    const json j =
        parse_json(f.eval(f.dir + "/eval", "--json --shard " + std::to_string(i) + "/4"));
    if (i < 3) {  // the job is not complete yet: no accuracy
      EXPECT_EQ(j, json({{"out", f.dir + "/eval"}, {"parts", 4}, {"parts_remaining", 3 - i}}));
    }
    last = j;
  }
  EXPECT_EQ(files_of(f.dir + "/run"), files_of(f.dir + "/eval"));
  // vit-eval alone on the same images, in batches of 8 as the job's (16-image parts hold whole
  // batches, and 60 = 7 x 8 + 4 ends both with the same 4): the same logits, the same numbers.
  const json alone = parse_json(run_tool(
      "vit-eval --json --threads 1 --sessions 1 --batch 8 --model " + f.model + " --data " +
      f.images + " --class-index " + f.classes + " --dump-logits " + f.dir + "/logits.bin"));
  EXPECT_EQ(last["n"], 60);
  for (const char *key : {"n", "top1", "top5", "per_class"})
    EXPECT_EQ(last[key], alone[key]) << key;
  EXPECT_GT(last["top1"].get<double>(), 0.8);  // the class index was applied
  EXPECT_EQ(last["errors"], 0);
  EXPECT_FALSE(last.contains("seconds"));
  std::vector<uint8_t> rows;
  for (int k = 0; k < 4; ++k) {
    const auto npy = read_bytes(f.dir + "/eval/" + app::part_stem(k) + ".npy");
    rows.insert(rows.end(), npy.begin() + 128, npy.end());
  }
  EXPECT_EQ(rows, read_bytes(f.dir + "/logits.bin"));
}

TEST(BatchJob, EvalOfAPartialJobPrintsTheRemainingPartsThenScoresWhatDecoded) {
  const EvalJobFixture f;
  write_bytes(f.images + "/Bag/corrupt.png", {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n', 1});
  const std::string out = f.dir + "/out";
  const ToolRun partial = f.eval(out, "--shard 1/3");
  ASSERT_EQ(partial.status, 0) << partial.err;
  EXPECT_EQ(partial.out, out +
                             ": 3 of 4 parts remain (other shards): accuracy once all are "
                             "complete\n");
  EXPECT_NE(partial.err.find("vit-eval: shard 1/3 of " + out + ": 1 parts written"),
            std::string::npos)
      << partial.err;
  // vit-run finishes vit-eval's job; vit-eval then only reads the parts.
  ASSERT_EQ(f.run(out, "--shard 0/3").status, 0);
  ASSERT_EQ(f.run(out, "--shard 2/3").status, 0);
  const ToolRun done = f.eval(out, "--per-class");
  ASSERT_EQ(done.status, 0) << done.err;
  EXPECT_NE(done.err.find("0 parts written (0 images, 0 errors), 4 already complete"),
            std::string::npos)
      << done.err;
  EXPECT_NE(done.out.find(" n=60 top-1 "), std::string::npos) << done.out;
  EXPECT_NE(done.out.find("(batch job " + out + "; 1 images not decodable, not scored)\n"),
            std::string::npos)
      << done.out;
  EXPECT_NE(done.out.find("Ankle boot"), std::string::npos) << done.out;  // the per-class table
}

TEST(BatchJob, EvalManifestSelectsImagesOfTheDataSet) {
  const EvalJobFixture f;
  // t10k[0..2]: an ankle boot, a pullover, a trouser, named relative to the manifest's folder.
  std::ofstream(f.dir + "/list.txt") << "images/Ankle_boot/00000.png\n"
                                     << f.images << "/Pullover/00001.png\n"
                                     << "images/./Trouser/00002.png\n";
  const json j = parse_json(f.eval(f.dir + "/m", "--json --manifest " + f.dir + "/list.txt"));
  EXPECT_EQ(j["n"], 3);
  int classes_seen = 0;
  for (const auto &c : j["per_class"]) classes_seen += c["n"] == 1;
  EXPECT_EQ(classes_seen, 3);
  EXPECT_EQ(read_json(f.dir + "/m/index.json")["images"], 3);
}

TEST(BatchJob, EvalBadFlagsAreOneLineErrors) {
  const EvalJobFixture f;
  std::ofstream(f.dir + "/outside.txt") << f.model << "\n";
  const std::string base = "vit-eval --model " + f.model + " ";
  const std::string data = " --data " + f.images + " --class-index " + f.classes;
  const struct {
    std::string args, message;
    int status;
  } cases[] = {
      {"--out o --shard 4/4" + data, "expected I/N", 2},
      {"--out o --part-size 0" + data, "--part-size", 2},
      {"--out o --reference " + f.model + data, "--reference does not go with --out", 2},
      {"--out o --limit 5" + data, "--limit does not go with --out", 2},
      {"--out o --dump-logits x.bin" + data, "--dump-logits does not go with --out", 2},
      {"--out o --sessions 2" + data, "--sessions does not go with --out", 2},
      {"--out o", "--out needs --data DIR", 2},
      {"--shard 0/2" + data, "--shard needs --out DIR", 2},
      {"--manifest m.txt" + data, "--manifest needs --out DIR", 2},
      {"--part-size 8" + data, "--part-size needs --out DIR", 2},
      {"--out o --data " + fmnist_dir(), "holds idx files: --out needs an image folder", 1},
      {"--out o --manifest " + f.dir + "/outside.txt" + data, "is not an image of", 1},
  };
  for (const auto &c : cases) {
    const ToolRun r = run_tool(base + c.args);
    EXPECT_EQ(r.status, c.status) << c.args << "\n" << r.err;
    EXPECT_NE(r.err.find(c.message), std::string::npos) << c.args << "\n" << r.err;
    EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
    EXPECT_TRUE(r.out.empty()) << r.out;
  }
  EXPECT_FALSE(fs::exists("o"));
}

}  // namespace
}  // namespace vqm::test
