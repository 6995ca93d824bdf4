// Bad user input end to end, through the tools as a user runs them: missing files, directories
// given as files, empty and truncated files, images declaring 0x0 or 100000x100000 pixels,
// images in unusual encodings (CMYK JPEG, 16-bit PNG, gray+alpha, RGBA: decoded, not refused),
// wrong channel counts, a calibration folder without images, unknown flags and bad values.
// Every failure must be one line on stderr naming the problem, with exit code 1 (2 for
// command-line mistakes); every unusual-but-valid input must simply work.
#include <gtest/gtest.h>

#include <filesystem>

#include "models/convert.h"
#include "process_util.h"
#include "test_files.h"
#include "test_util.h"

namespace vqm::test {
namespace {

namespace fs = std::filesystem;

struct Case {
  std::string tool;
  std::vector<std::string> args;
  int exit_code;         // 0: the input is valid and must be processed
  std::string fragment;  // the message must contain it (it names the file, flag or limit)
};

class CliErrors : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = scratch_dir();  // per test: ctest runs the tests of this suite in parallel
    const auto st = SafetensorsFile::from_file(data_path("models/fmnist_deit_tiny.safetensors"));
    convert_timm(st, {}).write(p("model.vqm"));
    const std::vector<uint8_t> model = read_bytes(p("model.vqm"));
    write_bytes(p("truncated.vqm"), std::vector<uint8_t>(model.begin(), model.begin() + 5000));
    for (const char *name : {"empty.vqm", "empty.png", "empty.safetensors"})
      write_bytes(p(name), {});
    write_bytes(p("text.png"), {'h', 'e', 'l', 'l', 'o', '\n'});
    write_bytes(p("zero.png"), craft_png(0, 0, 8, 2));
    write_bytes(p("huge.png"), craft_png(100000, 100000, 8, 2));
    const uint8_t cmyk[4] = {20, 200, 90, 40};
    write_bytes(p("cmyk.jpg"), cmyk_jpeg(cmyk));
    const std::vector<uint8_t> rgb16 = {0, 0x12, 0x34, 0xab, 0xcd, 0xff, 0xff, 0, 1, 0, 2, 0, 3};
    write_bytes(p("rgb16.png"), craft_png(2, 1, 16, 2, &rgb16));
    const std::vector<uint8_t> gray16 = {0, 0x12, 0x34, 0xfe, 0xdc};
    write_bytes(p("gray16.png"), craft_png(2, 1, 16, 0, &gray16));
    write_bytes(p("gray_alpha.png"), png_encode(3, 2, 2, std::vector<uint8_t>(12, 77)));
    write_bytes(p("rgba.png"), png_encode(3, 2, 4, std::vector<uint8_t>(24, 200)));
    fs::create_directories(p("no_images"));
    write_bytes(p("no_images/notes.txt"), {'x'});
    fs::create_directories(p("a_directory.vqm"));
  }
  std::string p(const std::string &name) const { return dir_ + "/" + name; }
  std::string dir_;
};

void check(const Case &c) {
  std::string cmd = c.tool;
  for (const auto &a : c.args) cmd += " " + a;
  SCOPED_TRACE(cmd);
  std::vector<std::string> argv = {tool(c.tool)};
  argv.insert(argv.end(), c.args.begin(), c.args.end());
  const ProcessResult r = run_process(argv);
  EXPECT_EQ(r.signal, 0) << r.err;
  EXPECT_EQ(r.exit_code, c.exit_code) << r.err;
  if (c.exit_code == 0) {
    EXPECT_EQ(r.err, "");
    return;
  }
  // One line: a single newline, at the end.
  ASSERT_FALSE(r.err.empty());
  EXPECT_EQ(r.err.find('\n'), r.err.size() - 1) << r.err;
  EXPECT_EQ(r.err.rfind(c.tool + ": error: ", 0), 0u) << r.err;
  EXPECT_NE(r.err.find(c.fragment), std::string::npos) << "no '" << c.fragment << "' in: " << r.err;
}

TEST_F(CliErrors, VitRun) {
  const std::string m = p("model.vqm"), img = data_path("images/fmnist_t10k_0_ankle_boot.png");
  const Case cases[] = {
      {"vit-run", {"--model", p("missing.vqm"), img}, 1, "missing.vqm"},
      {"vit-run", {"--model", p("a_directory.vqm"), img}, 1, "directory"},
      {"vit-run", {"--model", p("empty.vqm"), img}, 1, "0 bytes"},
      {"vit-run", {"--model", p("truncated.vqm"), img}, 1, "truncated.vqm"},
      {"vit-run", {"--model", img, img}, 1, "not a .vqm file"},
      {"vit-run", {"--model", m, p("missing.png")}, 1, "missing.png"},
      {"vit-run", {"--model", m, p("no_images")}, 1, "no_images' holds no .jpg"},
      {"vit-run", {"--model", m, p("empty.png")}, 1, "empty"},
      {"vit-run", {"--model", m, p("text.png")}, 1, "text.png"},
      {"vit-run", {"--model", m, p("zero.png")}, 1, "0x0"},
      {"vit-run", {"--model", m, p("huge.png")}, 1, "100000x100000"},
      {"vit-run", {"--model", m, p("cmyk.jpg")}, 0, ""},
      {"vit-run", {"--model", m, p("rgb16.png")}, 0, ""},
      {"vit-run", {"--model", m, p("gray16.png")}, 0, ""},
      {"vit-run", {"--model", m, p("gray_alpha.png")}, 0, ""},
      {"vit-run", {"--model", m, p("rgba.png")}, 0, ""},
      {"vit-run", {"--model", m, img, "--bogus"}, 2, "--bogus"},
      {"vit-run", {"--model", m, img, "--top", "abc"}, 2, "--top"},
      {"vit-run", {"--model", m, img, "--threads", "-3"}, 2, "--threads"},
      {"vit-run", {"--model"}, 2, "--model"},
      {"vit-run", {}, 2, "--model"},
  };
  for (const auto &c : cases) check(c);
}

TEST_F(CliErrors, VitConvert) {
  const std::string st = data_path("models/fmnist_deit_tiny.safetensors");
  const Case cases[] = {
      {"vit-convert", {p("missing.safetensors"), "-o", p("o.vqm")}, 1, "missing.safetensors"},
      {"vit-convert", {p("no_images"), "-o", p("o.vqm")}, 1, "directory"},
      {"vit-convert", {p("empty.safetensors"), "-o", p("o.vqm")}, 1, "empty.safetensors"},
      {"vit-convert", {p("model.vqm"), "-o", p("o.vqm")}, 1, "model.vqm"},
      {"vit-convert", {st, "-o", p("no_such_dir/o.vqm")}, 1, "no_such_dir"},
      {"vit-convert", {st, "-o", p("a_directory.vqm")}, 1, "a_directory.vqm"},
      {"vit-convert", {st, "-o", p("o.vqm"), "--mean", "0.1,0.2,0.3"}, 1, "mean"},
      {"vit-convert", {st, "-o", p("o.vqm"), "--std", "0.5,x"}, 2, "--std"},
      {"vit-convert", {st, "-o", p("o.vqm"), "--preset", "nope"}, 1, "nope"},
      {"vit-convert", {st, "-o", p("o.vqm"), "--crop", "0"}, 2, "--crop"},
      {"vit-convert", {st, "-o", p("o.vqm"), "--image-size", "0"}, 2, "--image-size"},
      {"vit-convert", {st, "-o", p("o.vqm"), "--image-size", "28px"}, 2, "--image-size"},
      {"vit-convert", {st, "-o", p("o.vqm"), "--image-size", "8192"}, 2, "--image-size"},
      // A size the model's patches (4 here) do not tile is the model's error, not a usage one.
      {"vit-convert",
       {st, "-o", p("o.vqm"), "--image-size", "30"},
       1,
       "--image-size 30 must be a multiple of the patch size 4"},
      {"vit-convert", {st, "-o", p("o.vqm"), "--labels", p("missing.txt")}, 1, "missing.txt"},
      {"vit-convert", {st, "-o", p("o.vqm"), "--frobnicate"}, 2, "--frobnicate"},
      {"vit-convert", {st}, 2, "-o"},
  };
  for (const auto &c : cases) check(c);
  EXPECT_FALSE(fs::exists(p("o.vqm"))) << "a failed conversion wrote its output";
}

TEST_F(CliErrors, VitEvalAndVitQuantize) {
  const std::string m = p("model.vqm");
  const Case cases[] = {
      {"vit-eval", {"--model", m, "--data", p("no_images")}, 1, "no_images"},
      {"vit-eval", {"--model", p("empty.vqm")}, 1, "empty.vqm"},
      {"vit-eval", {"--model", m, "--limit", "-1"}, 2, "--limit"},
      {"vit-eval", {"--model", m, "--bogus"}, 2, "--bogus"},
      {"vit-quantize", {"--model", m, "--calib", p("no_images"), "-o", p("q.vqm")}, 1, "no_images"},
      {"vit-quantize", {"--model", m, "--calib", p("missing"), "-o", p("q.vqm")}, 1, "missing"},
      {"vit-quantize",
       {"--model", p("text.png"), "--calib", fmnist_dir(), "-o", p("q.vqm")},
       1,
       "text.png"},
      {"vit-quantize",
       {"--model", m, "--calib", fmnist_dir(), "-o", p("q.vqm"), "--bits", "9"},
       2,
       "--bits"},
      {"vit-quantize", {"--model", m, "--calib", fmnist_dir()}, 2, "-o"},
      {"vit-quantize", {"--model", m, "--calib", fmnist_dir(), "-o", p("q.vqm"), "--x"}, 2, "--x"},
  };
  for (const auto &c : cases) check(c);
  EXPECT_FALSE(fs::exists(p("q.vqm")));
}

}  // namespace
}  // namespace vqm::test
