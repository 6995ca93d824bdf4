// VqmWriter -> VqmFile round trips, the writer's own checks, and atomic writes.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <set>

#include "runtime/io/error.h"
#include "runtime/io/format.h"
#include "test_util.h"

namespace vqm {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;

std::vector<uint8_t> iota_bytes(size_t n, uint8_t start) {
  std::vector<uint8_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = static_cast<uint8_t>(start + 7 * i);
  return v;
}

std::set<std::string> list_dir(const std::string &dir) {
  std::set<std::string> names;
  for (const auto &e : fs::directory_iterator(dir)) names.insert(e.path().filename().string());
  return names;
}

json sample_meta() {
  return {{"model",
           {{"arch", "vit"},
            {"variant", "deit_tiny"},
            {"img_size", 28},
            {"eps", 1e-6},
            {"distilled", false}}},
          {"preprocess", {{"mean", {0.286}}, {"std", {0.353}}, {"interpolation", "bicubic"}}},
          {"labels", {"T-shirt/top", "Trouser", "Pullover"}},
          {"quantization", {{"method", "ptq4vit"}, {"bits", {{"blocks.0.attn.qkv", 6}}}}},
          {"producer", {{"tool", "vit-convert"}, {"version", "0.1.0"}}},
          {"future_key", {{"nested", {1, 2, 3}}}}};
}

struct SampleTensor {
  std::string name;
  DType dtype;
  std::vector<int64_t> shape;
  uint64_t nbytes;
  std::string scale;
  int quant_axis;
};

// One tensor of every dtype, including packed qB rows that end mid-byte and an empty tensor.
const std::vector<SampleTensor> &sample_tensors() {
  static const std::vector<SampleTensor> kTensors = {
      {"f32.w", DType::f32, {2, 3}, 24, "", -1},
      {"f16.w", DType::f16, {5}, 10, "", -1},
      {"bf16.w", DType::bf16, {3, 1}, 6, "", -1},
      {"i32.w", DType::i32, {4}, 16, "", -1},
      {"i64.w", DType::i64, {2}, 16, "", -1},
      {"i8.w", DType::i8, {3, 7}, 21, "i8.w.scale", 0},
      {"i8.w.scale", DType::f32, {3}, 12, "", -1},
      {"u8.empty", DType::u8, {0, 4}, 0, "", -1},
      {"q4.w", DType::q4, {3, 5}, 9, "q4.w.scale", 0},  // 5 nibbles -> 3 bytes per row
      {"q4.w.scale", DType::f32, {3}, 12, "", -1},
      {"q6.w", DType::q6, {2, 5}, 8, "q6.w.scale", 1},  // 30 bits -> 4 bytes per row
      {"q6.w.scale", DType::f32, {5}, 20, "", -1},
      {"q2.w", DType::q2, {2, 5}, 4, "", -1},   // 10 bits -> 2 bytes per row
      {"q3.w", DType::q3, {3, 3}, 6, "", -1},   // 9 bits -> 2 bytes per row
      {"q5.w", DType::q5, {1, 8}, 5, "", -1},   // 40 bits -> 5 bytes
      {"q7.w", DType::q7, {2, 7}, 14, "", -1},  // 49 bits -> 7 bytes per row
      {"scalar", DType::f32, {}, 4, "", -1},
  };
  return kTensors;
}

VqmWriter sample_writer() {
  VqmWriter w;
  w.set_meta(sample_meta());
  uint8_t seed = 1;
  for (const auto &t : sample_tensors()) {
    const auto data = iota_bytes(t.nbytes, seed++);
    w.add_tensor(t.name, t.dtype, t.shape, data.data(), t.nbytes, t.scale, t.quant_axis);
  }
  return w;
}

void expect_sample(const VqmFile &f) {
  EXPECT_EQ(f.meta(), sample_meta());
  EXPECT_FALSE(f.meta().contains("tensors"));
  ASSERT_EQ(f.tensors().size(), sample_tensors().size());
  uint8_t seed = 1;
  for (size_t i = 0; i < sample_tensors().size(); ++i) {
    const SampleTensor &want = sample_tensors()[i];
    const TensorInfo &got = f.tensors()[i];
    SCOPED_TRACE(want.name);
    EXPECT_EQ(got.name, want.name);
    EXPECT_EQ(got.dtype, want.dtype);
    EXPECT_EQ(got.shape, want.shape);
    EXPECT_EQ(got.nbytes, want.nbytes);
    EXPECT_EQ(got.scale, want.scale);
    EXPECT_EQ(got.quant_axis, want.quant_axis);
    EXPECT_EQ(got.offset % kVqmAlignment, 0u);
    // Later code reads f32/i8 in place, so the data must be aligned in memory, not just in file.
    EXPECT_EQ(reinterpret_cast<uintptr_t>(got.data) % kVqmAlignment, 0u);
    const auto expected = iota_bytes(want.nbytes, seed++);
    EXPECT_EQ(std::vector<uint8_t>(got.data, got.data + got.nbytes), expected);
    EXPECT_EQ(f.find(want.name), &got);
  }
}

uint64_t le(const std::vector<uint8_t> &b, size_t off, int n) {
  uint64_t v = 0;
  for (int i = n - 1; i >= 0; --i) v = (v << 8) | b[off + i];
  return v;
}

TEST(VqmRoundTrip, FromMemoryAndFromFileGiveTheSameTensorsAndMeta) {
  const VqmWriter w = sample_writer();
  const std::vector<uint8_t> bytes = w.to_bytes();
  const VqmFile mem = VqmFile::from_memory(bytes.data(), bytes.size());
  EXPECT_EQ(mem.source(), "<memory>");
  expect_sample(mem);

  const std::string path = test::scratch_dir() + "/model.vqm";
  w.write(path);
  EXPECT_EQ(test::read_bytes(path), bytes);
  const VqmFile file = VqmFile::from_file(path);
  EXPECT_EQ(file.source(), path);
  expect_sample(file);
}

TEST(VqmRoundTrip, HeaderFieldsFollowTheSpec) {
  const std::vector<uint8_t> b = sample_writer().to_bytes();
  ASSERT_GE(b.size(), 64u);
  EXPECT_EQ(std::string(b.begin(), b.begin() + 4), "VQMF");
  EXPECT_EQ(le(b, 4, 4), kVqmVersion);
  EXPECT_EQ(le(b, 8, 4), 64u);
  EXPECT_EQ(le(b, 12, 4), 64u);
  EXPECT_EQ(le(b, 16, 8), 64u);
  const uint64_t json_size = le(b, 24, 8);
  const uint64_t data_offset = le(b, 32, 8);
  const uint64_t data_size = le(b, 40, 8);
  EXPECT_EQ(le(b, 48, 8), 0u);
  EXPECT_EQ(le(b, 56, 8), 0u);
  EXPECT_EQ(data_offset % 64, 0u);
  EXPECT_GE(data_offset, 64 + json_size);
  EXPECT_LT(data_offset, 64 + json_size + 64);  // no more padding than alignment needs
  EXPECT_EQ(data_offset + data_size, b.size());
  // The JSON is compact and padded with zeros up to the data.
  const std::string text(b.begin() + 64, b.begin() + 64 + static_cast<long>(json_size));
  EXPECT_EQ(json::parse(text).dump(), text);
  for (uint64_t i = 64 + json_size; i < data_offset; ++i) EXPECT_EQ(b[i], 0) << i;
  const json doc = json::parse(text);
  ASSERT_TRUE(doc["tensors"].is_array());
  EXPECT_EQ(doc["tensors"][0]["offset"], 0);
  EXPECT_EQ(doc["tensors"][1]["offset"], 64);  // 24 bytes, then padding to 64
}

TEST(VqmRoundTrip, PackedNbytesPadEachRowToWholeBytes) {
  struct Case {
    DType dtype;
    std::vector<int64_t> shape;
    uint64_t nbytes;
  };
  const Case cases[] = {
      {DType::q4, {4, 7}, 16},         {DType::q4, {1, 8}, 4}, {DType::q4, {2, 3, 1}, 6},
      {DType::q6, {3, 3}, 9},          {DType::q6, {1, 4}, 3}, {DType::q6, {2, 8}, 12},
      {DType::q6, {192, 768}, 110592}, {DType::q4, {0, 7}, 0}, {DType::q6, {5, 0}, 0},
  };
  for (const auto &c : cases) {
    SCOPED_TRACE(std::string(dtype_name(c.dtype)) + shape_str(c.shape));
    VqmWriter w;
    const auto data = iota_bytes(c.nbytes, 3);
    w.add_tensor("t", c.dtype, c.shape, data.data(), c.nbytes);
    const auto bytes = w.to_bytes();
    const VqmFile f = VqmFile::from_memory(bytes.data(), bytes.size());
    EXPECT_EQ(f.get("t", c.dtype, c.shape).nbytes, c.nbytes);
    EXPECT_VQM_ERROR(w.add_tensor("u", c.dtype, c.shape, data.data(), c.nbytes + 1),
                     invalid_argument, "needs " + std::to_string(c.nbytes));
  }
}

TEST(VqmRoundTrip, EmptyFileHasNoTensorsAndNoData) {
  VqmWriter w;
  const auto bytes = w.to_bytes();
  EXPECT_EQ(bytes.size(), 128u);  // header + `{"tensors":[]}` padded to 64
  const VqmFile f = VqmFile::from_memory(bytes.data(), bytes.size());
  EXPECT_TRUE(f.tensors().empty());
  EXPECT_EQ(f.meta(), json::object());
}

TEST(VqmRoundTrip, WriterCopiesDataAtAddTime) {
  std::vector<float> v = {1.5f, -2.0f, 3.25f};
  VqmWriter w;
  w.add_f32("v", {3}, v.data());
  v.assign(3, 0.0f);
  const auto bytes = w.to_bytes();
  const VqmFile f = VqmFile::from_memory(bytes.data(), bytes.size());
  EXPECT_EQ(to_f32(f.get("v", DType::f32, {3})), (std::vector<float>{1.5f, -2.0f, 3.25f}));
}

TEST(VqmRoundTrip, CopiesAndMovesKeepTensorDataAlive) {
  const auto bytes = sample_writer().to_bytes();
  VqmFile copy = [&] {
    VqmFile f = VqmFile::from_memory(bytes.data(), bytes.size());
    return f;
  }();
  VqmFile moved = std::move(copy);
  expect_sample(moved);
}

TEST(VqmGet, ChecksDtypeAndShapeAndNamesBoth) {
  VqmWriter w;
  std::vector<uint16_t> half(768 * 192, 0x3c00);
  w.add_tensor("blocks.0.mlp.fc1.weight", DType::f16, {768, 192}, half.data(), half.size() * 2);
  const auto bytes = w.to_bytes();
  const VqmFile f = VqmFile::from_memory(bytes.data(), bytes.size(), default_limits(), "m.vqm");
  EXPECT_VQM_ERROR(f.get("blocks.0.mlp.fc1.weight", DType::f32, {192, 768}), format,
                   "m.vqm: tensor 'blocks.0.mlp.fc1.weight': expected f32 [192, 768], found f16 "
                   "[768, 192]");
  EXPECT_VQM_ERROR(f.get("blocks.0.mlp.fc1.weight", DType::f16, {768}), format,
                   "expected f16 [768], found f16 [768, 192]");
  EXPECT_VQM_ERROR(f.get("head.weight"), format, "m.vqm: missing tensor 'head.weight'");
  EXPECT_EQ(f.find("head.weight"), nullptr);
  const auto v = to_f32(f.get("blocks.0.mlp.fc1.weight", DType::f16, {768, 192}));
  EXPECT_EQ(v[12345], 1.0f);
}

TEST(VqmWriterErrors, RejectsBadTensorsAndMeta) {
  const float x[4] = {0, 1, 2, 3};
  VqmWriter w;
  w.add_f32("a", {4}, x);
  EXPECT_VQM_ERROR(w.add_f32("a", {4}, x), invalid_argument, "'a': added twice");
  EXPECT_VQM_ERROR(w.add_f32("", {4}, x), invalid_argument, "empty tensor name");
  EXPECT_VQM_ERROR(w.add_tensor("b", DType::f32, {4}, x, 15), invalid_argument,
                   "nbytes is 15, but f32 [4] needs 16");
  EXPECT_VQM_ERROR(w.add_tensor("b", DType::f32, {-1, 4}, x, 0), invalid_argument,
                   "invalid shape [-1, 4]");
  EXPECT_VQM_ERROR(w.add_tensor("b", DType::f32, {4}, nullptr, 16), invalid_argument,
                   "data is NULL");
  EXPECT_VQM_ERROR(w.add_tensor("b", DType::f32, {4}, x, 16, "a", 1), invalid_argument,
                   "quant_axis 1");
  EXPECT_VQM_ERROR(w.add_tensor("b", DType::f32, {4}, x, 16, "b", 0), invalid_argument,
                   "its own scale");

  VqmWriter missing_scale;
  missing_scale.add_tensor("q", DType::i8, {4}, x, 4, "q.scale", 0);
  EXPECT_VQM_ERROR(missing_scale.to_bytes(), invalid_argument,
                   "tensor 'q': scale tensor 'q.scale' was not added as f32");
  missing_scale.add_tensor("q.scale", DType::i32, {1}, x, 4);
  EXPECT_VQM_ERROR(missing_scale.to_bytes(), invalid_argument, "was not added as f32");

  VqmWriter bad_meta;
  bad_meta.set_meta(json::array());
  EXPECT_VQM_ERROR(bad_meta.to_bytes(), invalid_argument, "meta is array");
  bad_meta.set_meta({{"tensors", 1}});
  EXPECT_VQM_ERROR(bad_meta.to_bytes(), invalid_argument, "must not contain 'tensors'");
  bad_meta.set_meta({{"producer", std::string("\xff\xfe")}});
  EXPECT_VQM_ERROR(bad_meta.to_bytes(), invalid_argument, "meta cannot be written");
}

TEST(VqmFromFile, ReportsIoProblemsWithThePath) {
  const std::string dir = test::scratch_dir();
  EXPECT_VQM_ERROR(VqmFile::from_file(dir + "/absent.vqm"), io,
                   "cannot open '" + dir + "/absent.vqm': No such file or directory");
  EXPECT_VQM_ERROR(VqmFile::from_file(dir), io, "'" + dir + "': it is a directory");
  test::write_bytes(dir + "/short.vqm", std::vector<uint8_t>{'V', 'Q', 'M', 'F', 1, 0, 0, 0});
  EXPECT_VQM_ERROR(VqmFile::from_file(dir + "/short.vqm"), format,
                   dir + "/short.vqm: file is 8 bytes, the .vqm header needs 64");
  Limits tiny;
  tiny.max_file_bytes = 100;
  const auto bytes = sample_writer().to_bytes();
  test::write_bytes(dir + "/big.vqm", bytes);
  EXPECT_VQM_ERROR(
      VqmFile::from_file(dir + "/big.vqm", tiny), limit,
      "file is " + std::to_string(bytes.size()) + " bytes, over the limit max_file_bytes (100)");
}

TEST(AtomicWrite, ReplacesTheTargetAndLeavesNoTemporaries) {
  const std::string dir = test::scratch_dir();
  const std::string path = dir + "/out.bin";
  test::write_bytes(path, std::vector<uint8_t>(1000, 0xaa));
  const std::vector<uint8_t> data = iota_bytes(3000, 9);
  write_file_atomic(path, data.data(), data.size());
  EXPECT_EQ(test::read_bytes(path), data);
  write_file_atomic(path, data.data(), 0);
  EXPECT_TRUE(test::read_bytes(path).empty());
  EXPECT_EQ(list_dir(dir), std::set<std::string>{"out.bin"});
}

TEST(AtomicWrite, RelativePathWritesIntoTheCurrentDirectory) {
  const std::string dir = test::scratch_dir();
  const auto old_cwd = fs::current_path();
  fs::current_path(dir);
  const uint8_t data[3] = {1, 2, 3};
  write_file_atomic("rel.bin", data, 3);
  fs::current_path(old_cwd);
  EXPECT_EQ(test::read_bytes(dir + "/rel.bin"), (std::vector<uint8_t>{1, 2, 3}));
  EXPECT_EQ(list_dir(dir), std::set<std::string>{"rel.bin"});
}

TEST(AtomicWrite, TargetThatIsADirectoryFailsAndStaysIntact) {
  const std::string dir = test::scratch_dir();
  fs::create_directory(dir + "/target");
  test::write_bytes(dir + "/target/inside", {1});
  const uint8_t data[3] = {1, 2, 3};
  EXPECT_VQM_ERROR(write_file_atomic(dir + "/target", data, 3), io,
                   "cannot write '" + dir + "/target'");
  EXPECT_TRUE(fs::is_directory(dir + "/target"));
  EXPECT_EQ(list_dir(dir), std::set<std::string>{"target"});
  EXPECT_VQM_ERROR(write_file_atomic(dir + "/target/", data, 3), io, "names a directory");
}

TEST(AtomicWrite, MissingDirectoryFails) {
  const std::string dir = test::scratch_dir();
  const uint8_t data[1] = {7};
  EXPECT_VQM_ERROR(write_file_atomic(dir + "/no/such/out.bin", data, 1), io,
                   "cannot write '" + dir + "/no/such/out.bin'");
  EXPECT_VQM_ERROR(sample_writer().write(dir + "/nodir/m.vqm"), io, "No such file or directory");
}

TEST(AtomicWrite, UnwritableDirectoryFailsWithoutClobbering) {
  const std::string dir = test::scratch_dir();
  const std::string path = dir + "/keep.vqm";
  test::write_bytes(path, {5, 6, 7});
  ASSERT_EQ(::chmod(dir.c_str(), 0555), 0);
  const uint8_t data[1] = {1};
  if (::geteuid() != 0) {
    EXPECT_VQM_ERROR(write_file_atomic(path, data, 1), io, "Permission denied");
  } else {
    // Root ignores directory permissions, so try the write as "nobody" in a child process.
    const pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      int rc = 1;
      if (::setgid(65534) == 0 && ::setuid(65534) == 0) {
        try {
          write_file_atomic(path, data, 1);
          rc = 2;
        } catch (const Error &e) {
          const std::string msg = e.what();
          rc = e.code() == ErrorCode::io && msg.find("cannot write '" + path + "'") == 0 &&
                       msg.find("Permission denied") != std::string::npos
                   ? 0
                   : 3;
        }
      }
      ::_exit(rc);
    }
    int status = 0;
    ASSERT_EQ(::waitpid(pid, &status, 0), pid);
    ASSERT_TRUE(WIFEXITED(status));
    EXPECT_EQ(WEXITSTATUS(status), 0) << "1: cannot drop privileges, 2: no error, 3: wrong error";
  }
  ::chmod(dir.c_str(), 0755);
  EXPECT_EQ(test::read_bytes(path), (std::vector<uint8_t>{5, 6, 7}));
  EXPECT_EQ(list_dir(dir), std::set<std::string>{"keep.vqm"});
}

// A write that fails half way (here: the file size limit, which also binds root) must remove the
// temporary and leave the previous file exactly as it was.
TEST(AtomicWrite, FailedWriteKeepsThePreviousFile) {
  const std::string dir = test::scratch_dir();
  const std::string path = dir + "/model.vqm";
  const std::vector<uint8_t> old_bytes(100, 0x42);
  test::write_bytes(path, old_bytes);
  const std::vector<uint8_t> big(1 << 20, 0x17);

  struct rlimit saved;
  ASSERT_EQ(::getrlimit(RLIMIT_FSIZE, &saved), 0);
  if (saved.rlim_max != RLIM_INFINITY && saved.rlim_max < (1u << 20)) GTEST_SKIP();
  auto *old_handler = ::signal(SIGXFSZ, SIG_IGN);
  struct rlimit small = saved;
  small.rlim_cur = 64 << 10;
  ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &small), 0);
  std::string message;
  ErrorCode code = ErrorCode::internal;
  try {
    write_file_atomic(path, big.data(), big.size());
  } catch (const Error &e) {
    message = e.what();
    code = e.code();
  }
  ::setrlimit(RLIMIT_FSIZE, &saved);
  ::signal(SIGXFSZ, old_handler);

  EXPECT_EQ(code, ErrorCode::io);
  EXPECT_NE(message.find("cannot write '" + path + "'"), std::string::npos) << message;
  EXPECT_NE(message.find("File too large"), std::string::npos) << message;
  EXPECT_EQ(test::read_bytes(path), old_bytes);
  EXPECT_EQ(list_dir(dir), std::set<std::string>{"model.vqm"});
}

}  // namespace
}  // namespace vqm
