// The built tools end to end, as a user runs them: vit-eval on an image folder equals vit-eval on
// the idx files, vit-quantize writes the HTML report with every plot, and every tool has --help,
// JSON output, one-line errors, and progress bars only on terminals.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "apps/apps_test_util.h"
#include "golden_util.h"
#include "html_plots.h"
#include "test_util.h"

namespace vqm::test {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

TEST(Tools, EvalOnAnImageFolderEqualsEvalOnTheIdxFiles) {
  const std::string dir = scratch_dir();
  const std::string model = write_fmnist_model(dir);
  const std::string index = write_fmnist_folder(dir + "/val", 100);
  // --batch 1: each image is its own forward, so the logits cannot depend on image order.
  const std::string common = " --json --batch 1 --threads 2 --sessions 2 --model " + model;
  const json idx =
      parse_json(run_tool("vit-eval --limit 100 --dump-logits " + dir + "/idx.bin" + common));
  const json folder = parse_json(run_tool("vit-eval --data " + dir + "/val --class-index " + index +
                                          " --dump-logits " + dir + "/folder.bin" + common));
  EXPECT_EQ(idx["n"], 100);
  EXPECT_EQ(folder["n"], 100);
  EXPECT_EQ(idx["top1"], folder["top1"]);
  EXPECT_EQ(idx["top5"], folder["top5"]);
  EXPECT_EQ(idx["per_class"], folder["per_class"]);
  EXPECT_EQ(idx["per_class"].size(), 10u);
  EXPECT_EQ(folder["per_class"][9]["label"], "Ankle boot");
  EXPECT_GT(idx["top1"].get<double>(), 0.8);
  // Logits, row by row: folder rows are in sorted file order, idx rows in index order.
  const auto a = read_bytes(dir + "/idx.bin"), b = read_bytes(dir + "/folder.bin");
  ASSERT_EQ(a.size(), 100u * 10 * 4);
  ASSERT_EQ(b.size(), a.size());
  std::vector<std::string> files;
  for (const auto &e : fs::recursive_directory_iterator(dir + "/val"))
    if (e.is_regular_file()) files.push_back(e.path().string());
  std::sort(files.begin(), files.end());
  for (size_t row = 0; row < files.size(); ++row) {
    const size_t image = std::stoul(fs::path(files[row]).stem().string());
    EXPECT_TRUE(std::equal(b.begin() + row * 40, b.begin() + row * 40 + 40, a.begin() + image * 40))
        << files[row];
  }
  // Sorted folder names are not the model's class order here: without the index the numbers
  // are those of a relabelled set (far below the model's accuracy), not an error.
  const json sorted = parse_json(run_tool("vit-eval --data " + dir + "/val" + common));
  EXPECT_LT(sorted["top1"].get<double>(), 0.5);
}

TEST(Tools, QuantizeWritesTheHtmlReportWithEveryPlot) {
  const std::string dir = scratch_dir();
  const std::string model = write_fmnist_model(dir);
  const std::string index = write_fmnist_folder(dir + "/val", 50);
  // Uniform 8 bits with the sensitivity measured as mixed precision would (so every plot has
  // data; mixed precision itself is tested in tests/quant). Small settings for the CI budget: 4
  // calibration images, 3 candidates, two candidate bit-widths, and one OpenMP thread (the
  // search's many small GEMMs stall when CTest runs two tests on two cores).
  const json j = parse_json(run_shell(
      "OMP_NUM_THREADS=1 " + std::string(VQM_BIN_DIR) + "/vit-quantize --model " + model +
      " --calib " + fmnist_dir() + " -o " + dir +
      "/q.vqm --n-calib 4 --bits 8 --sensitivity --candidate-bits 4,8 --candidates 3 --rounds 1 "
      "--sensitivity-candidates 1 --no-twin-softmax --eval-data " +
      dir + "/val --class-index " + index + " --report " + dir + "/r.json --html-report " + dir +
      "/report --json"));
  EXPECT_EQ(j["output"], dir + "/q.vqm");
  EXPECT_EQ(j["avg_bits"].get<double>(), 8.0);  // measured, not applied
  for (const auto &[name, bits] : j["modules"].items()) EXPECT_EQ(bits, 8) << name;
  EXPECT_EQ(j["accuracy"]["n"], 50);
  const double fp32 = j["accuracy"]["fp32_top1"], quant = j["accuracy"]["quantized_top1"];
  EXPECT_GT(fp32, 0.8);
  EXPECT_GT(quant, fp32 - 0.1);
  EXPECT_EQ(j["accuracy"]["per_class"].size(), 10u);
  // The fp32 number is vit-eval's on the same folder.
  const json eval = parse_json(run_tool("vit-eval --model " + model + " --json --data " + dir +
                                        "/val --class-index " + index));
  EXPECT_EQ(eval["top1"].get<double>(), fp32);
  EXPECT_TRUE(json::parse(read_bytes(dir + "/r.json")).contains("accuracy"));
  // The optional stages that ran, by their switches' names: all but the one switched off.
  const json stages = {"ranking", "bias-correction", "reparam", "gptq", "fp32-target", "codebook"};
  EXPECT_EQ(j["stages"], stages);
  EXPECT_EQ(json::parse(read_bytes(dir + "/r.json"))["stages"], stages);

  ASSERT_EQ(j["html_report"], dir + "/report/index.html");
  const auto bytes = read_bytes(dir + "/report/index.html");
  const std::string html(bytes.begin(), bytes.end());
  EXPECT_NE(
      html.find(
          "<th>stages</th><td>ranking, bias-correction, reparam, gptq, fp32-target, codebook<"),
      std::string::npos);
  const auto p = html_plots(html);
  using S = std::map<std::string, int>;
  EXPECT_EQ(p.at("bits"), (S{{"MSA (attn)", 12}, {"MLP", 12}}));
  for (const char *id : {"sensitivity-attn", "sensitivity-mlp"})
    EXPECT_EQ(p.at(id), (S{{"4 bits", 12}, {"8 bits", 12}, {"chosen", 12}})) << id;
  EXPECT_EQ(p.at("nuclear-norm"), (S{{"MSA", 12}, {"MLP", 12}}));
  EXPECT_GE(p.at("pareto").at("frontier"), 2);
  EXPECT_EQ(p.at("pareto").at("chosen"), 1);
  EXPECT_EQ(p.at("similarity"),
            (S{{"before search (max-based intervals)", 74}, {"after search", 74}}));
  int curves = 0;
  for (const auto &[id, series] : p)
    if (id.rfind("curve:", 0) == 0) {
      ++curves;
      EXPECT_EQ(series, (S{{"objective", 3}})) << id;
    }
  EXPECT_EQ(curves, 4);
  EXPECT_EQ(p.at("accuracy"), (S{{"fp32", 2}, {"quantized", 2}}));
  EXPECT_EQ(p.at("accuracy-per-class"), (S{{"fp32", 10}, {"quantized", 10}}));
}

TEST(Tools, HelpJsonAndErrors) {
  for (const char *tool : {"vit-run", "vit-convert", "vit-eval", "vit-bench", "vit-quantize"}) {
    const ToolRun help = run_tool(std::string(tool) + " --help");
    EXPECT_EQ(help.status, 0) << tool;
    for (const char *part : {"usage: ", "examples:", "options:", "--help", "exit status"})
      EXPECT_NE(help.out.find(part), std::string::npos) << tool << " --help lacks " << part;
    const ToolRun bad = run_tool(std::string(tool) + " --no-such-flag");
    EXPECT_EQ(bad.status, 2) << tool;
    EXPECT_EQ(bad.err,
              std::string(tool) + ": error: unknown option '--no-such-flag' (see --help)\n");
  }
  const std::string dir = scratch_dir();
  const json conv =
      parse_json(run_tool("vit-convert " + data_path("models/fmnist_deit_tiny.safetensors") +
                          " -o " + dir + "/m.vqm --json"));
  EXPECT_EQ(conv["num_classes"], 10);
  EXPECT_EQ(conv["depth"], 12);
  const json run = parse_json(run_tool("vit-run --json --top 2 --model " + dir + "/m.vqm " +
                                       data_path("images/fmnist_t10k_0_ankle_boot.png")));
  EXPECT_EQ(run["top"].size(), 2u);
  const json bench = parse_json(run_tool(
      "vit-bench --model " + dir + "/m.vqm --batch 1 --runs 1 --min-time 0 --warmup 0 --json"));
  EXPECT_EQ(bench["batch"], 1);
  // The per-class table: a header, the ten classes, the summary line.
  const ToolRun per_class = run_tool("vit-eval --limit 50 --per-class --model " + dir + "/m.vqm");
  EXPECT_EQ(per_class.status, 0) << per_class.err;
  EXPECT_EQ(std::count(per_class.out.begin(), per_class.out.end(), '\n'), 12) << per_class.out;
  EXPECT_NE(per_class.out.find("    9  Ankle boot "), std::string::npos) << per_class.out;
  EXPECT_NE(per_class.out.find("n=50 top-1 "), std::string::npos);
  // A wrong data folder is one line naming it, exit status 1.
  const ToolRun missing = run_tool("vit-eval --model " + dir + "/m.vqm --data " + dir + "/nope");
  EXPECT_EQ(missing.status, 1);
  EXPECT_EQ(missing.err, "vit-eval: error: data source '" + dir + "/nope' does not exist\n");
  const ToolRun usage = run_tool("vit-quantize --model m --calib c -o o --eval-limit 5");
  EXPECT_EQ(usage.status, 2);
  EXPECT_NE(usage.err.find("--eval-limit and --class-index need --eval-data"), std::string::npos);
}

TEST(Tools, ProgressBarsOnlyOnTerminals) {
  const std::string dir = scratch_dir();
  const std::string model = write_fmnist_model(dir);
  // Not a terminal (a pipe): stderr stays empty.
  const ToolRun piped = run_tool("vit-eval --limit 64 --model " + model);
  EXPECT_EQ(piped.status, 0);
  EXPECT_EQ(piped.err, "");
  // A terminal: util-linux `script` runs the tool on a pseudo-terminal.
  if (std::system("command -v script >/dev/null 2>&1") != 0) GTEST_SKIP() << "no script(1)";
  const std::string eval = std::string(VQM_BIN_DIR) + "/vit-eval --limit 64 --model " + model;
  auto on_tty = [&](const std::string &extra) {
    const ToolRun r = run_shell("script -qec '" + eval + extra + "' /dev/null");
    EXPECT_EQ(r.status, 0) << r.err;
    return r.out;
  };
  const std::string shown = on_tty("");
  EXPECT_NE(shown.find("vit-eval 100% ["), std::string::npos) << shown;
  EXPECT_NE(shown.find("64/64"), std::string::npos);
  EXPECT_NE(shown.find("images/s"), std::string::npos);
  const std::string quiet = on_tty(" --quiet");
  EXPECT_EQ(quiet.find("100% ["), std::string::npos) << quiet;
  EXPECT_NE(quiet.find("top-1"), std::string::npos);
}

// An embedding model (DINOv2, no classifier head) through the tools: vit-convert, then vit-run
// --embed on a folder writes N x D float32 in sorted file order, equal to the --json "output"
// of each image, and the photo's embedding is timm's (cosine >= 0.9999 to the reference row).
TEST(Tools, RunEmbedsAFolderWithAnEmbeddingModel) {
  const std::string dir = scratch_dir() + "/embed";
  fs::create_directories(dir + "/photos");
  for (const char *f : {"chelsea.png", "rocket.jpg"})
    fs::copy_file(data_path(std::string("images/") + f), dir + "/photos/" + f,
                  fs::copy_options::overwrite_existing);
  const std::string model = dir + "/dinov2.vqm";
  ASSERT_EQ(run_tool("vit-convert --quiet " +
                     data_path("models/family/dinov2_small_features.safetensors") + " -o " + model)
                .status,
            0);
  const ToolRun r = run_tool("vit-run --model " + model + " --batch 2 --embed " + dir + "/e.f32 " +
                             dir + "/photos");
  ASSERT_EQ(r.status, 0) << r.err;
  const auto bytes = read_bytes(dir + "/e.f32");
  ASSERT_EQ(bytes.size(), 2u * 192 * 4);
  std::vector<float> emb(2 * 192);
  std::memcpy(emb.data(), bytes.data(), bytes.size());
  // chelsea.png sorts first; its JSON output is the same vector.
  const json j =
      parse_json(run_tool("vit-run --json --model " + model + " " + dir + "/photos/chelsea.png"));
  ASSERT_EQ(j["output"].size(), 192u);
  EXPECT_FALSE(j.contains("top"));
  for (int i = 0; i < 192; ++i) EXPECT_FLOAT_EQ(j["output"][i].get<float>(), emb[i]) << i;
  const std::vector<float> ref =
      reference_tensor("models/family/dinov2_small_features.ref.safetensors", "output");
  EXPECT_GE(cosine(emb.data(), ref.data(), 192), 0.9999);
}

// vit-eval --reference: an embedding model measured by its cosine to another model's outputs
// (here DINOv2 against DINOv2 with registers, two different 192-dim models: a cosine well below
// 1 that must equal the one computed from vit-run --embed of both); itself against itself is
// exactly 1; without --reference an embedding model is a usage error.
TEST(Tools, EvalComparesEmbeddingsWithAReference) {
  const std::string dir = scratch_dir() + "/eval_embed";
  fs::create_directories(dir + "/photos");
  for (const char *f : {"chelsea.png", "coffee.png", "rocket.jpg"})
    fs::copy_file(data_path(std::string("images/") + f), dir + "/photos/" + f,
                  fs::copy_options::overwrite_existing);
  std::vector<std::vector<float>> emb;
  for (const char *name : {"dinov2_small_features", "dinov2_small_reg4_features"}) {
    const std::string model = dir + "/" + name + ".vqm";
    ASSERT_EQ(
        run_tool("vit-convert --quiet " +
                 data_path(std::string("models/family/") + name + ".safetensors") + " -o " + model)
            .status,
        0);
    ASSERT_EQ(run_tool("vit-run --model " + model + " --embed " + model + ".f32 " + dir + "/photos")
                  .status,
              0);
    const auto bytes = read_bytes(model + ".f32");
    ASSERT_EQ(bytes.size(), 3u * 192 * 4);
    emb.emplace_back(3 * 192);
    std::memcpy(emb.back().data(), bytes.data(), bytes.size());
  }
  const std::string a = dir + "/dinov2_small_features.vqm",
                    b = dir + "/dinov2_small_reg4_features.vqm";
  const json j = parse_json(run_tool("vit-eval --json --model " + a + " --reference " + b +
                                     " --data " + dir + "/photos"));
  double mean = 0, min = 2;
  int min_row = -1;
  for (int i = 0; i < 3; ++i) {
    const double c = cosine(emb[0].data() + i * 192, emb[1].data() + i * 192, 192);
    mean += c / 3;
    if (c < min) min = c, min_row = i;
  }
  const char *names[] = {"chelsea.png", "coffee.png", "rocket.jpg"};  // sorted
  EXPECT_EQ(j["n"], 3);
  EXPECT_NEAR(j["cosine_mean"].get<double>(), mean, 1e-6);
  EXPECT_NEAR(j["cosine_min"].get<double>(), min, 1e-6);
  EXPECT_EQ(j["cosine_min_image"], names[min_row]);
  EXPECT_LT(min, 0.999);  // different models: the comparison is not trivially 1
  EXPECT_FALSE(j.contains("top1_agreement"));  // embeddings have no classes
  EXPECT_FALSE(j.contains("top1"));

  const json self = parse_json(run_tool("vit-eval --json --model " + a + " --reference " + a +
                                        " --data " + dir + "/photos"));
  EXPECT_DOUBLE_EQ(self["cosine_min"].get<double>(), 1.0);

  const ToolRun no_ref = run_tool("vit-eval --model " + a + " --data " + dir + "/photos");
  EXPECT_EQ(no_ref.status, 2);
  EXPECT_EQ(no_ref.err, "vit-eval: error: " + a +
                            " has no classifier head (it outputs 192-dim embeddings): give "
                            "--reference R.vqm to compare them with\n");
}

// vit-convert --image-size: DINOv2 converted for 224 instead of 518 says so (--json's notes),
// and vit-run embeds a photo through it with the preprocessing made for 224.
TEST(Tools, ConvertForAnotherImageSize) {
  const std::string dir = scratch_dir();
  const std::string in = data_path("models/family/dinov2_small_features.safetensors");
  const json conv = parse_json(
      run_tool("vit-convert " + in + " -o " + dir + "/d224.vqm --image-size 224 --json"));
  EXPECT_EQ(conv["image_size"], 224);
  const auto notes = conv["notes"].get<std::vector<std::string>>();
  EXPECT_NE(std::find(notes.begin(), notes.end(),
                      "pos_embed resampled from 37x37 to 16x16 (bicubic, antialias) for 224x224 "
                      "input"),
            notes.end())
      << conv["notes"].dump();
  const json run = parse_json(
      run_tool("vit-run --json --model " + dir + "/d224.vqm " + data_path("images/chelsea.png")));
  EXPECT_EQ(run["output"].size(), 192u);
  // A size the 14-pixel patches do not tile: one line naming it, exit status 1 (the model's
  // error); a value that is no size at all is a usage error, exit status 2.
  const ToolRun odd = run_tool("vit-convert " + in + " -o " + dir + "/x.vqm --image-size 225");
  EXPECT_EQ(odd.status, 1);
  EXPECT_EQ(odd.err,
            "vit-convert: error: --image-size 225 must be a multiple of the patch size 14 from 14 "
            "to 4088\n");
  const ToolRun bad = run_tool("vit-convert " + in + " -o " + dir + "/x.vqm --image-size -1");
  EXPECT_EQ(bad.status, 2);
  EXPECT_EQ(bad.err,
            "vit-convert: error: --image-size expects an integer in [1, 4096], got '-1'\n");
  EXPECT_FALSE(fs::exists(dir + "/x.vqm"));
}

}  // namespace
}  // namespace vqm::test
