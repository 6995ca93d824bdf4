// SafetensorsFile: the real fixtures, and a corrupted-file suite built in memory.
#include "runtime/io/safetensors.h"

#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>

#include "runtime/io/error.h"
#include "test_util.h"

namespace vqm {
namespace {

// 8-byte LE length, the header text, then `data_size` bytes (byte i = i & 0xff).
std::vector<uint8_t> st_bytes(const std::string &header, uint64_t data_size) {
  std::vector<uint8_t> b(8 + header.size() + data_size);
  for (int i = 0; i < 8; ++i) b[i] = static_cast<uint8_t>(uint64_t{header.size()} >> (8 * i));
  std::memcpy(b.data() + 8, header.data(), header.size());
  for (uint64_t i = 0; i < data_size; ++i) b[8 + header.size() + i] = static_cast<uint8_t>(i);
  return b;
}

SafetensorsFile parse(const std::vector<uint8_t> &b, const Limits &limits = default_limits()) {
  return SafetensorsFile::from_memory(b.data(), b.size(), limits, "t.safetensors");
}
SafetensorsFile parse_header(const std::string &header, uint64_t data_size = 64,
                             const Limits &limits = default_limits()) {
  return parse(st_bytes(header, data_size), limits);
}

TEST(SafetensorsFixture, FmnistDeitTinyIsF32WithMetadata) {
  const std::string path = test::data_path("models/fmnist_deit_tiny.safetensors");
  const SafetensorsFile f = SafetensorsFile::from_file(path);
  EXPECT_EQ(f.source(), path);
  ASSERT_EQ(f.tensors().size(), 152u);
  for (const auto &t : f.tensors()) EXPECT_EQ(t.dtype, DType::f32) << t.name;
  for (size_t i = 1; i < f.tensors().size(); ++i) {
    EXPECT_LE(f.tensors()[i - 1].offset + f.tensors()[i - 1].nbytes, f.tensors()[i].offset);
  }
  EXPECT_EQ(f.tensors().front().name, "cls_token");
  EXPECT_EQ(f.tensors().back().name, "head.bias");

  const TensorInfo &qkv = f.get("blocks.0.attn.qkv.weight");
  EXPECT_EQ(qkv.shape, (std::vector<int64_t>{576, 192}));
  EXPECT_EQ(qkv.nbytes, 576u * 192 * 4);
  EXPECT_EQ(qkv.offset, 53760u);
  // Compare against the raw bytes: 8-byte length, 13912-byte header, then the data.
  const std::vector<uint8_t> raw = test::read_bytes(path);
  ASSERT_EQ(raw.size(), 8u + 13912u + 21414952u);
  const std::vector<float> v = to_f32(qkv);
  float first[4];
  std::memcpy(first, raw.data() + 8 + 13912 + 53760, sizeof first);
  EXPECT_EQ(v[0], first[0]);
  EXPECT_EQ(v[3], first[3]);
  EXPECT_NEAR(v[0], -0.0018925264f, 1e-9f);

  const auto &meta = f.metadata();
  EXPECT_EQ(meta.at("img_size"), "28");
  EXPECT_EQ(meta.at("mean"), "0.286");
  EXPECT_EQ(meta.at("std"), "0.353");
  EXPECT_EQ(meta.at("num_classes"), "10");
  EXPECT_EQ(meta.at("embed_dim"), "192");
  EXPECT_EQ(meta.size(), 16u);
}

TEST(SafetensorsFixture, DeitSmallDepth1IsF16) {
  const std::string path =
      test::data_path("models/deit_small_patch16_224_depth1_random.safetensors");
  const SafetensorsFile f = SafetensorsFile::from_file(path);
  ASSERT_EQ(f.tensors().size(), 20u);
  EXPECT_EQ(f.metadata().at("arch"), "deit_small_patch16_224");
  const TensorInfo &qkv = f.get("blocks.0.attn.qkv.weight");
  EXPECT_EQ(qkv.dtype, DType::f16);
  EXPECT_EQ(qkv.shape, (std::vector<int64_t>{1152, 384}));
  const std::vector<float> w = to_f32(qkv);
  ASSERT_EQ(w.size(), 1152u * 384);
  for (float x : w) ASSERT_TRUE(std::isfinite(x));
  EXPECT_EQ(w[0], -0.01219940185546875f);  // exactly representable in f16
  EXPECT_EQ(w[3], -0.03460693359375f);
  for (float x : to_f32(f.get("blocks.0.norm1.weight"))) EXPECT_EQ(x, 1.0f);
  EXPECT_EQ(f.get("patch_embed.proj.weight").shape, (std::vector<int64_t>{384, 3, 16, 16}));

  // The same bytes from memory give the same tensors.
  const auto raw = test::read_bytes(path);
  const SafetensorsFile m = SafetensorsFile::from_memory(raw.data(), raw.size());
  ASSERT_EQ(m.tensors().size(), f.tensors().size());
  for (size_t i = 0; i < m.tensors().size(); ++i) {
    EXPECT_EQ(m.tensors()[i].name, f.tensors()[i].name);
    EXPECT_EQ(std::memcmp(m.tensors()[i].data, f.tensors()[i].data, f.tensors()[i].nbytes), 0);
  }
  EXPECT_VQM_ERROR(m.get("head.weight.scale"), format,
                   "missing tensor 'head.weight.scale' in <memory>");
  EXPECT_EQ(m.find("head.weight.scale"), nullptr);
}

TEST(SafetensorsFromFile, IoErrorsNameThePath) {
  const std::string dir = test::scratch_dir();
  EXPECT_VQM_ERROR(SafetensorsFile::from_file(dir + "/none.safetensors"), io,
                   "cannot open '" + dir + "/none.safetensors': No such file or directory");
  EXPECT_VQM_ERROR(SafetensorsFile::from_file(dir), io, "it is a directory");
  test::write_bytes(dir + "/short.safetensors", {1, 2, 3});
  EXPECT_VQM_ERROR(
      SafetensorsFile::from_file(dir + "/short.safetensors"), format,
      dir + "/short.safetensors: file is 3 bytes, the safetensors header length needs 8");
}

TEST(Safetensors, AllSupportedDtypesUnalignedDataAndOrderByOffset) {
  // Keys sort alphabetically in JSON, offsets in the reverse order: tensors() follows offsets.
  const std::string header = R"({"a":{"dtype":"U8","shape":[3],"data_offsets":[51,54]},)"
                             R"("b":{"dtype":"I8","shape":[3],"data_offsets":[48,51]},)"
                             R"("c":{"dtype":"I64","shape":[1],"data_offsets":[40,48]},)"
                             R"("d":{"dtype":"I32","shape":[2],"data_offsets":[32,40]},)"
                             R"("e":{"dtype":"BF16","shape":[2,2],"data_offsets":[24,32]},)"
                             R"("f":{"dtype":"F16","shape":[4],"data_offsets":[16,24]},)"
                             R"("g":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]},)"
                             R"("z":{"dtype":"F32","shape":[0],"data_offsets":[54,54]},)"
                             R"("__metadata__":{"format":"pt","note":""}} )";
  const SafetensorsFile f = parse_header(header, 54);
  std::vector<std::string> names;
  for (const auto &t : f.tensors()) names.push_back(t.name);
  EXPECT_EQ(names, (std::vector<std::string>{"g", "f", "e", "d", "c", "b", "a", "z"}));
  const DType want[] = {DType::f32, DType::f16, DType::bf16, DType::i32,
                        DType::i64, DType::i8,  DType::u8,   DType::f32};
  for (size_t i = 0; i < 8; ++i) EXPECT_EQ(f.tensors()[i].dtype, want[i]) << i;
  EXPECT_EQ(f.get("b").data[0], 48);
  EXPECT_EQ(f.get("g").offset, 0u);
  // The f32 data really is misaligned and still reads fine (to_f32 uses memcpy).
  EXPECT_NE(reinterpret_cast<uintptr_t>(f.get("g").data) % 4, 0u);
  EXPECT_EQ(to_f32(f.get("g")).size(), 4u);
  EXPECT_EQ(f.metadata().at("format"), "pt");
  EXPECT_EQ(f.metadata().at("note"), "");
}

TEST(Safetensors, ReadsWhatTheSharedTestBuilderWrites) {
  const std::vector<uint8_t> half = {0x00, 0x3c, 0x00, 0xc0};  // f16 1.0, -2.0
  const std::vector<uint8_t> bf = {0x80, 0x3f, 0x40, 0x40};    // bf16 1.0, 3.0
  const auto b = test::make_safetensors(
      {{"x", "F16", {2}, half}, {"y", "BF16", {1, 2}, bf}, {"e", "F32", {0}, {}}},
      {{"arch", "vit"}});
  const SafetensorsFile f = parse(b);
  EXPECT_EQ(to_f32(f.get("x")), (std::vector<float>{1.0f, -2.0f}));
  EXPECT_EQ(to_f32(f.get("y")), (std::vector<float>{1.0f, 3.0f}));
  EXPECT_EQ(f.get("e").nbytes, 0u);
  EXPECT_EQ(f.metadata().at("arch"), "vit");
}

TEST(SafetensorsCorrupt, TruncationAtEveryLength) {
  const std::string header = R"({"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})";
  const auto full = st_bytes(header, 16);
  for (size_t len = 0; len < full.size(); ++len) {
    SCOPED_TRACE("length " + std::to_string(len));
    const std::vector<uint8_t> cut(full.begin(), full.begin() + static_cast<long>(len));
    std::string want;
    if (len < 8) {
      want = "t.safetensors: file is " + std::to_string(len) +
             " bytes, the safetensors header length needs 8";
    } else if (len < 8 + header.size()) {
      want = "t.safetensors: header length " + std::to_string(header.size()) +
             " runs past the end of the file (" + std::to_string(len - 8) + " bytes follow it)";
    } else {
      want = "t.safetensors: tensor 'w': data_offsets [0, 16] run past the end of the data (" +
             std::to_string(len - 8 - header.size()) + " bytes)";
    }
    EXPECT_VQM_ERROR(parse(cut), format, want);
  }
  EXPECT_EQ(parse(full).tensors().size(), 1u);
}

TEST(SafetensorsCorrupt, HeaderLengthHugeOrOverLimit) {
  for (uint64_t n : {uint64_t{1} << 63, ~uint64_t{0}, ~uint64_t{0} - 7, uint64_t{1000}}) {
    auto b = st_bytes("{}", 0);
    for (int i = 0; i < 8; ++i) b[i] = static_cast<uint8_t>(n >> (8 * i));
    EXPECT_VQM_ERROR(parse(b), format, "header length " + std::to_string(n) + " runs past the end");
  }
  Limits l;
  l.max_json_bytes = 10;
  EXPECT_VQM_ERROR(parse_header(R"({"__metadata__":{}})", 0, l), limit,
                   "t.safetensors: header length 19 is over the limit max_json_bytes (10)");
  l = Limits();
  l.max_file_bytes = 20;
  EXPECT_VQM_ERROR(parse_header(R"({"__metadata__":{}})", 0, l), limit,
                   "t.safetensors: file is 27 bytes, over the limit max_file_bytes (20)");
}

TEST(SafetensorsCorrupt, BrokenOrWrongJson) {
  EXPECT_VQM_ERROR(parse_header("{"), format,
                   "t.safetensors: JSON header: [json.exception.parse_error");
  EXPECT_VQM_ERROR(parse_header(""), format, "JSON header: [json.exception.parse_error.101]");
  EXPECT_VQM_ERROR(parse_header(std::string("{}\0\0", 4)), format, "NUL byte at position 2");
  EXPECT_VQM_ERROR(parse_header("[1,2]"), format,
                   "JSON header is the array [1,2], expected an object");
  EXPECT_VQM_ERROR(parse_header(R"({"w":5})"), format, "tensor 'w' is 5, expected an object");
  EXPECT_VQM_ERROR(parse_header(R"({"":{"dtype":"U8","shape":[],"data_offsets":[0,1]}})"), format,
                   "t.safetensors: empty tensor name");
  // Duplicate tensor names would otherwise silently keep the last one.
  EXPECT_VQM_ERROR(parse_header(R"({"w":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},)"
                                R"("w":{"dtype":"U8","shape":[1],"data_offsets":[1,2]}})"),
                   format, "duplicate key 'w'");
  // The padding spaces the reference writer appends are fine.
  EXPECT_TRUE(parse_header(R"({"__metadata__":{"a":"b"}}      )").tensors().empty());
}

TEST(SafetensorsCorrupt, MissingOrMistypedFields) {
  auto one = [](const std::string &body) { return parse_header(R"({"w":{)" + body + "}}"); };
  EXPECT_VQM_ERROR(one(R"("shape":[1],"data_offsets":[0,1])"), format,
                   "tensor 'w': missing 'dtype'");
  EXPECT_VQM_ERROR(one(R"("dtype":"U8","data_offsets":[0,1])"), format,
                   "tensor 'w': missing 'shape'");
  EXPECT_VQM_ERROR(one(R"("dtype":"U8","shape":[1])"), format,
                   "tensor 'w': missing 'data_offsets'");
  EXPECT_VQM_ERROR(one(R"("dtype":1,"shape":[1],"data_offsets":[0,1])"), format,
                   "tensor 'w': dtype is 1, expected a string");
  EXPECT_VQM_ERROR(one(R"("dtype":"U8","shape":"1","data_offsets":[0,1])"), format,
                   "tensor 'w': shape is a string, expected an array of integers");
  EXPECT_VQM_ERROR(one(R"("dtype":"U8","shape":[-1],"data_offsets":[0,1])"), format,
                   "shape[0] is -1, dimensions must be >= 0");
  EXPECT_VQM_ERROR(one(R"("dtype":"U8","shape":[1.0],"data_offsets":[0,1])"), format,
                   "shape[0] is 1.0, expected an integer");
  EXPECT_VQM_ERROR(one(R"("dtype":"U8","shape":[1099511627776],"data_offsets":[0,1])"), limit,
                   "tensor 'w': shape[0] is 1099511627776, over the limit max_dim");
  EXPECT_VQM_ERROR(one(R"("dtype":"U8","shape":[1,1,1,1,1,1,1,1,1],"data_offsets":[0,1])"), limit,
                   "rank 9 is over the limit max_rank (8)");
  EXPECT_VQM_ERROR(one(R"("dtype":"U8","shape":[1],"data_offsets":[0])"), format,
                   "tensor 'w': data_offsets is the array [0], expected [begin, end]");
  EXPECT_VQM_ERROR(one(R"("dtype":"U8","shape":[1],"data_offsets":[0,1,2])"), format,
                   "data_offsets is the array [0,1,2], expected [begin, end]");
  EXPECT_VQM_ERROR(one(R"("dtype":"U8","shape":[1],"data_offsets":{"a":0})"), format,
                   "data_offsets is an object");
  EXPECT_VQM_ERROR(one(R"("dtype":"U8","shape":[1],"data_offsets":[-1,0])"), format,
                   "tensor 'w': data_offsets[0] is -1, expected a non-negative integer");
  EXPECT_VQM_ERROR(one(R"("dtype":"U8","shape":[1],"data_offsets":[0,"1"])"), format,
                   "data_offsets[1] is a string");
  EXPECT_VQM_ERROR(one(R"("dtype":"U8","shape":[1],"data_offsets":[0,1.5])"), format,
                   "data_offsets[1] is 1.5");
}

TEST(SafetensorsCorrupt, UnsupportedDtypesNameTheTensor) {
  for (const char *dtype : {"F64", "BOOL", "F8_E4M3", "F8_E5M2", "I16", "U16", "U64", "f32", ""}) {
    SCOPED_TRACE(dtype);
    EXPECT_VQM_ERROR(
        parse_header(std::string(R"({"pos_embed":{"dtype":")") + dtype +
                     R"(","shape":[1],"data_offsets":[0,8]}})"),
        unsupported,
        std::string("t.safetensors: tensor 'pos_embed': dtype '") + dtype + "' is not supported");
  }
}

TEST(SafetensorsCorrupt, OffsetsOutOfRangeMismatchedOrOverlapping) {
  auto one = [](const std::string &dtype, const std::string &shape, const std::string &offsets) {
    return parse_header(R"({"w":{"dtype":")" + dtype + R"(","shape":)" + shape +
                        R"(,"data_offsets":)" + offsets + "}}");
  };
  EXPECT_VQM_ERROR(one("U8", "[1]", "[5,4]"), format,
                   "tensor 'w': data_offsets [5, 4] has begin > end");
  EXPECT_VQM_ERROR(one("U8", "[1]", "[64,65]"), format,
                   "tensor 'w': data_offsets [64, 65] run past the end of the data (64 bytes)");
  EXPECT_VQM_ERROR(one("U8", "[1]", "[18446744073709551615,18446744073709551615]"), format,
                   "run past the end of the data");
  EXPECT_VQM_ERROR(one("F32", "[4]", "[0,15]"), format,
                   "tensor 'w': data_offsets [0, 15] hold 15 bytes, but F32 [4] needs 16");
  EXPECT_VQM_ERROR(one("BF16", "[2, 3]", "[0,16]"), format,
                   "hold 16 bytes, but BF16 [2, 3] needs 12");
  EXPECT_VQM_ERROR(one("F32", "[2147483648, 2147483648]", "[0,64]"), format,
                   "tensor 'w': f32 [2147483648, 2147483648] needs more than 2^64 bytes");
  EXPECT_VQM_ERROR(one("F32", "[2147483648, 2147483648, 2147483648, 0]", "[0,0]"), format,
                   "overflows 64 bits");
  EXPECT_EQ(one("F32", "[4]", "[48,64]").get("w").data[0], 48);

  EXPECT_VQM_ERROR(parse_header(R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},)"
                                R"("b":{"dtype":"U8","shape":[4],"data_offsets":[12,16]}})"),
                   format, "t.safetensors: tensors 'a' [0, 16) and 'b' [12, 16) overlap");
  EXPECT_VQM_ERROR(parse_header(R"({"a":{"dtype":"U8","shape":[4],"data_offsets":[8,12]},)"
                                R"("b":{"dtype":"U8","shape":[4],"data_offsets":[8,12]}})"),
                   format, "overlap");
  // Adjacent ranges, empty tensors and unused bytes (holes) are all fine.
  const SafetensorsFile ok =
      parse_header(R"({"a":{"dtype":"U8","shape":[4],"data_offsets":[0,4]},)"
                   R"("b":{"dtype":"U8","shape":[4],"data_offsets":[4,8]},)"
                   R"("c":{"dtype":"U8","shape":[0],"data_offsets":[2,2]},)"
                   R"("d":{"dtype":"U8","shape":[2],"data_offsets":[20,22]}})");
  EXPECT_EQ(ok.tensors().size(), 4u);
}

TEST(SafetensorsCorrupt, MetadataMustBeAnObjectOfStrings) {
  EXPECT_VQM_ERROR(parse_header(R"({"__metadata__":{"img_size":28}})"), format,
                   "t.safetensors: __metadata__['img_size'] is 28, expected a string");
  EXPECT_VQM_ERROR(parse_header(R"({"__metadata__":{"a":"x","b":null}})"), format,
                   "__metadata__['b'] is null");
  EXPECT_VQM_ERROR(parse_header(R"({"__metadata__":{"a":{"b":"c"}}})"), format,
                   "__metadata__['a'] is an object");
  EXPECT_VQM_ERROR(parse_header(R"({"__metadata__":["a"]})"), format,
                   "__metadata__ is the array [\"a\"], expected an object of strings");
}

TEST(SafetensorsCorrupt, LimitsOnValidFiles) {
  const std::string header = R"({"a":{"dtype":"F32","shape":[2,4],"data_offsets":[0,32]},)"
                             R"("b":{"dtype":"U8","shape":[4],"data_offsets":[32,36]}})";
  Limits l;
  l.max_tensors = 1;
  EXPECT_VQM_ERROR(parse_header(header, 64, l), limit,
                   "t.safetensors: 2 tensors is over the limit max_tensors (1)");
  l = Limits();
  l.max_tensor_bytes = 31;
  EXPECT_VQM_ERROR(parse_header(header, 64, l), limit,
                   "tensor 'a': 32 bytes is over the limit max_tensor_bytes (31)");
  l = Limits();
  l.max_rank = 1;
  EXPECT_VQM_ERROR(parse_header(header, 64, l), limit,
                   "tensor 'a': rank 2 is over the limit max_rank (1)");
  l = Limits();
  l.max_dim = 3;
  EXPECT_VQM_ERROR(parse_header(header, 64, l), limit,
                   "tensor 'a': shape[1] is 4, over the limit max_dim (3)");
  // __metadata__ does not count as a tensor.
  l = Limits();
  l.max_tensors = 2;
  EXPECT_EQ(parse_header(R"({"__metadata__":{},)" + header.substr(1), 64, l).tensors().size(), 2u);
}

TEST(SafetensorsCorrupt, RandomMutationsNeverCrash) {
  const std::string header = R"({"__metadata__":{"k":"v"},)"
                             R"("a":{"dtype":"F32","shape":[2,4],"data_offsets":[0,32]},)"
                             R"("b":{"dtype":"F16","shape":[4],"data_offsets":[32,40]}})";
  const auto base = st_bytes(header, 40);
  std::mt19937 rng(99);
  int errors = 0;
  for (int iter = 0; iter < 3000; ++iter) {
    auto b = base;
    const int edits = 1 + static_cast<int>(rng() % 3);
    for (int e = 0; e < edits; ++e) {
      const size_t pos = rng() % b.size();
      const uint8_t values[] = {0, 0xff, '"', ']', '-', '9', '1', static_cast<uint8_t>(rng())};
      b[pos] = values[rng() % sizeof values];
    }
    if (rng() % 8 == 0) b.resize(rng() % b.size());
    try {
      const SafetensorsFile f = parse(b);
      for (const auto &t : f.tensors()) {
        uint64_t n = 0;
        ASSERT_TRUE(dtype_nbytes(t.dtype, t.shape, &n));
        EXPECT_EQ(n, t.nbytes);
        if (t.dtype == DType::f32 || t.dtype == DType::f16) {
          EXPECT_EQ(to_f32(t).size(), static_cast<size_t>(t.numel()));
        }
      }
    } catch (const Error &e) {
      ++errors;
      EXPECT_EQ(std::string(e.what()).rfind("t.safetensors: ", 0), 0u) << e.what();
    } catch (const std::exception &e) {
      ADD_FAILURE() << "non-vqm exception: " << e.what();
    }
  }
  EXPECT_GT(errors, 1000);
}

}  // namespace
}  // namespace vqm
