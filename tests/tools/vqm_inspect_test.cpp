// vqm-inspect, run as a user runs it, on the models the CTest fixtures write (vit-convert's
// fp32 Fashion-MNIST DeiT-Tiny and vit-quantize's W8A8 of it): the --json report against what the
// file holds, the text report, and one-line failures on corrupt and invalid input.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "models/vit_config.h"
#include "runtime/io/format.h"
#include "test_util.h"

namespace vqm::test {
namespace {

using nlohmann::json;

std::string work_path(const std::string &name) {
  return std::string(VQM_BIN_DIR) + "/../test-work/" + name;
}
const std::string kFp32 = work_path("fmnist_deit_tiny.vqm");
const std::string kW8 = work_path("fmnist_deit_tiny.w8.vqm");

struct Result {
  int status = -1;
  std::string out, err;
};

// Runs vqm-inspect with `args` (already shell-quoted), capturing stdout and stderr.
Result inspect(const std::string &args) {
  // Not in scratch_dir(): that call empties the folder holding the test's input files.
  const std::string err_file = work_path("vqm_inspect_test." + std::to_string(getpid()) + ".err");
  const std::string cmd =
      std::string(VQM_BIN_DIR) + "/vqm-inspect " + args + " 2>'" + err_file + "'";
  Result r;
  FILE *p = popen(cmd.c_str(), "r");
  if (!p) return r;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) r.out.append(buf, n);
  const int st = pclose(p);
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  std::ifstream e(err_file);
  std::stringstream ss;
  ss << e.rdbuf();
  r.err = ss.str();
  std::filesystem::remove(err_file);
  return r;
}

json inspect_json(const std::string &path) {
  const Result r = inspect("--json '" + path + "'");
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.err, "");
  return json::parse(r.out);
}

// The parts of the report that must agree with the file whatever it holds.
void expect_tables_match_file(const json &j, const std::string &path) {
  const VqmFile f = VqmFile::from_file(path);
  EXPECT_EQ(j["format_version"], 1);
  EXPECT_EQ(j["file_bytes"], std::filesystem::file_size(path));
  ASSERT_EQ(j["tensors"].size(), f.tensors().size());
  uint64_t total = 0;
  for (size_t i = 0; i < f.tensors().size(); ++i) {
    const TensorInfo &t = f.tensors()[i];
    const json &e = j["tensors"][i];
    EXPECT_EQ(e["name"], t.name);
    EXPECT_EQ(e["dtype"], dtype_name(t.dtype));
    EXPECT_EQ(e["shape"].get<std::vector<int64_t>>(), t.shape);
    EXPECT_EQ(e["bytes"], t.nbytes);
    total += t.nbytes;
  }
  EXPECT_EQ(j["tensor_bytes"], total);
  EXPECT_EQ(j["tensor_bytes"].get<uint64_t>() + j["other_bytes"].get<uint64_t>(),
            j["file_bytes"].get<uint64_t>());
  uint64_t by_dtype = 0;
  for (const auto &d : j["size_by_dtype"]) by_dtype += d["bytes"].get<uint64_t>();
  EXPECT_EQ(by_dtype, total);
}

TEST(VqmInspect, FloatModelJson) {
  const json j = inspect_json(kFp32);
  expect_tables_match_file(j, kFp32);
  EXPECT_EQ(j["producer"]["tool"], "vit-convert");
  EXPECT_EQ(j["producer"]["source"], "fmnist_deit_tiny.safetensors");
  EXPECT_EQ(j["model"]["embed_dim"], 192);
  EXPECT_EQ(j["model"]["depth"], 12);
  EXPECT_EQ(j["model"]["num_classes"], 10);
  EXPECT_EQ(j["preprocess"]["crop"], 28);
  EXPECT_EQ(j["n_labels"], 10);
  EXPECT_EQ(j["labels"][9], "Ankle boot");
  EXPECT_TRUE(j["quantization"].is_null());
  ASSERT_EQ(j["size_by_dtype"].size(), 1u);
  EXPECT_EQ(j["size_by_dtype"][0]["dtype"], "f32");
}

// A W3A3 file (small settings: the file only has to hold chosen levels): each chosen-level grid
// lists its 2^bits levels, only on LayerNorm and GELU outputs, and its interval runs from the
// lowest level to the highest.
TEST(VqmInspect, ChosenLevelGridsListTheirLevels) {
  const std::string out = work_path("vqm_inspect_test.w3.vqm");
  ASSERT_EQ(
      std::system((std::string(VQM_BIN_DIR) + "/vit-quantize --model '" + kFp32 + "' --calib '" +
                   fmnist_dir() + "' --bits 3 --n-calib 4 --candidates 10 --rounds 1 --quiet -o '" +
                   out + "'")
                      .c_str()),
      0);
  const json j = inspect_json(out);
  std::filesystem::remove(out);
  int chosen = 0;
  for (const auto &a : j["quantization"]["activations"]) {
    if (a["grid"] != "levels") continue;
    ++chosen;
    const std::string name = a["name"];
    EXPECT_TRUE(name.find("qkv.input") != std::string::npos ||
                name.find("fc1.input") != std::string::npos ||
                name.find("fc2.input") != std::string::npos)
        << name;
    ASSERT_EQ(a["levels"].size(), 8u) << name;
    const double delta = a["delta"], zp = a["zero_point"];
    EXPECT_DOUBLE_EQ(a["min"], delta * (a["levels"][0].get<int>() - zp)) << name;
    EXPECT_DOUBLE_EQ(a["max"], delta * (a["levels"][7].get<int>() - zp)) << name;
  }
  EXPECT_GT(chosen, 0);
}

TEST(VqmInspect, QuantizedModelJson) {
  const json j = inspect_json(kW8);
  expect_tables_match_file(j, kW8);
  EXPECT_EQ(j["producer"]["tool"], "vit-quantize");
  const json &q = j["quantization"];
  ASSERT_TRUE(q.is_object());
  EXPECT_EQ(q["method"], "ptq");
  EXPECT_EQ(q["bits"], 8);
  const int depth = 12;
  ASSERT_EQ(q["modules"].size(), 2u * depth + 2);
  EXPECT_EQ(q["modules"][0]["name"], "patch_embed");
  EXPECT_EQ(q["modules"][1]["name"], "blocks.0.attn");
  EXPECT_EQ(q["modules"][2 * depth + 1]["name"], "head");
  for (const auto &m : q["modules"]) {
    EXPECT_EQ(m["bits"], 8) << m;
    EXPECT_EQ(m["weight_dtype"], "i8") << m;
  }
  ASSERT_EQ(q["activations"].size(), 8u * depth + 2);
  for (const auto &a : q["activations"]) {
    const double delta = a["delta"], lo = a["min"], hi = a["max"];
    EXPECT_GT(delta, 0) << a;
    EXPECT_LE(lo, 0) << a;
    EXPECT_GT(hi, 0) << a;
    EXPECT_NEAR(hi - lo, delta * 255, 1e-9 * delta * 255) << a;
    EXPECT_EQ(a["grid"], "uniform") << a;  // chosen levels and two ranges are below 8 bits only
  }
  // Softmax outputs use the unsigned grid: their interval starts at 0.
  for (const auto &a : q["activations"]) {
    if (a["name"] == "blocks.0.attn.softmax") {
      EXPECT_EQ(a["min"], 0.0);
    }
  }
  // Every quantized weight names its per-output-channel f32 scales.
  int int8 = 0;
  for (const auto &t : j["tensors"]) {
    if (t["dtype"] != "i8") continue;
    ++int8;
    EXPECT_EQ(t["scale"], t["name"].get<std::string>() + ".scale");
    EXPECT_EQ(t["quant_axis"], 0);
  }
  EXPECT_EQ(int8, 4 * depth + 2);
  // i8 weights are a quarter of f32 ones: the file is well under half the fp32 file.
  EXPECT_LT(j["file_bytes"].get<double>(), 0.5 * std::filesystem::file_size(kFp32));
}

TEST(VqmInspect, TextReport) {
  const Result r = inspect("'" + kW8 + "'");
  ASSERT_EQ(r.status, 0) << r.err;
  for (const char *needle :
       {"format        .vqm version 1", "producer      ", "tool=vit-quantize", "blocks.11.mlp",
        "blocks.11.attn.softmax", "head.weight.scale", "i8 ", "(header, JSON, alignment)"})
    EXPECT_NE(r.out.find(needle), std::string::npos) << needle;
  const Result f = inspect("'" + kFp32 + "'");
  ASSERT_EQ(f.status, 0) << f.err;
  EXPECT_NE(f.out.find("quantization  none"), std::string::npos);
}

void expect_one_line_error(const Result &r, int status, const std::string &substr) {
  EXPECT_EQ(r.status, status);
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(r.err.rfind("vqm-inspect: error: ", 0), 0u) << r.err;
  EXPECT_EQ(std::count(r.err.begin(), r.err.end(), '\n'), 1) << r.err;
  EXPECT_NE(r.err.find(substr), std::string::npos) << r.err;
}

TEST(VqmInspect, CorruptAndInvalidInputFailWithOneLine) {
  const std::string dir = scratch_dir();
  auto bytes = read_bytes(kFp32);
  ASSERT_GT(bytes.size(), 4096u);

  const std::string truncated = dir + "/truncated.vqm";
  write_bytes(truncated, std::vector<uint8_t>(bytes.begin(), bytes.begin() + 4096));
  expect_one_line_error(inspect("'" + truncated + "'"), 1, truncated);

  // Valid container, invalid model config: rejected by the config parser, naming the field.
  const VqmFile f = VqmFile::from_memory(bytes.data(), bytes.size());
  json meta = f.meta();
  meta["model"]["depth"] = 0;
  VqmWriter w;
  w.set_meta(meta);
  const std::string bad_config = dir + "/bad_config.vqm";
  w.write(bad_config);
  expect_one_line_error(inspect("'" + bad_config + "'"), 1, "'depth' = 0");

  // A quantization section with a bad grid.
  const json w8 = VqmFile::from_file(kW8).meta();
  meta = f.meta();
  meta["quantization"] = w8["quantization"];
  meta["quantization"]["activations"]["blocks.3.mlp.fc1.input"]["bits"] = 9;
  w.set_meta(meta);
  const std::string bad_quant = dir + "/bad_quant.vqm";
  w.write(bad_quant);
  expect_one_line_error(inspect("'" + bad_quant + "'"), 1, "blocks.3.mlp.fc1.input");

  expect_one_line_error(inspect("/nonexistent/m.vqm"), 1, "/nonexistent/m.vqm");
  expect_one_line_error(inspect(""), 2, "expected one .vqm file");
  expect_one_line_error(inspect("--bogus m.vqm"), 2, "--bogus");
}

}  // namespace
}  // namespace vqm::test
