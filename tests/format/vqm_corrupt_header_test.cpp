// Corrupted .vqm files, part 1: the fixed header, truncation at every length, limits, and random
// byte mutations. Every case must end in a vqm::Error with the right code and a message that
// names the field and the numbers; none may crash (this suite also runs under ASan+UBSan).
#include <gtest/gtest.h>

#include <cstdio>
#include <cstring>
#include <nlohmann/json.hpp>
#include <random>

#include "runtime/io/error.h"
#include "runtime/io/format.h"
#include "test_util.h"

namespace vqm {
namespace {

using nlohmann::json;

// Field offsets of the v1 header, written out independently of format.cpp.
constexpr size_t kVersion = 4, kHeaderSize = 8, kAlignment = 12, kJsonOffset = 16, kJsonSize = 24,
                 kDataOffset = 32, kDataSize = 40, kFlags = 48, kReserved = 56;

void put(std::vector<uint8_t> &b, size_t off, uint64_t v, int n) {
  for (int i = 0; i < n; ++i) b[off + i] = static_cast<uint8_t>(v >> (8 * i));
}
uint64_t get(const std::vector<uint8_t> &b, size_t off, int n) {
  uint64_t v = 0;
  for (int i = n - 1; i >= 0; --i) v = (v << 8) | b[off + i];
  return v;
}

std::vector<uint8_t> valid_file() {
  VqmWriter w;
  w.set_meta({{"model", {{"arch", "vit"}, {"depth", 1}}}, {"labels", {"a", "b"}}});
  std::vector<int8_t> q(4 * 16);
  for (size_t i = 0; i < q.size(); ++i) q[i] = static_cast<int8_t>(i * 5);
  const float scale[4] = {0.5f, 0.25f, 0.125f, 1.0f};
  const float bias[3] = {1, 2, 3};
  w.add_tensor("blocks.0.attn.qkv.weight", DType::i8, {4, 16}, q.data(), q.size(),
               "blocks.0.attn.qkv.weight.scale", 0);
  w.add_f32("blocks.0.attn.qkv.weight.scale", {4}, scale);
  w.add_f32("head.bias", {3}, bias);
  return w.to_bytes();
}

VqmFile parse(const std::vector<uint8_t> &b, const Limits &limits = default_limits()) {
  return VqmFile::from_memory(b.data(), b.size(), limits, "bad.vqm");
}

TEST(VqmCorruptHeader, ValidBaseFileParses) {
  const auto b = valid_file();
  const VqmFile f = parse(b);
  EXPECT_EQ(f.tensors().size(), 3u);
  EXPECT_EQ(to_f32(f.get("head.bias", DType::f32, {3})), (std::vector<float>{1, 2, 3}));
}

// Cuts the file at every length and checks that the error names the part that is cut.
TEST(VqmCorruptHeader, TruncationAtEveryLengthNamesTheTruncatedField) {
  const auto full = valid_file();
  const uint64_t json_end = 64 + get(full, kJsonSize, 8);
  const uint64_t data_offset = get(full, kDataOffset, 8);
  ASSERT_GT(full.size(), data_offset);  // the file has tensor data to cut into
  std::printf("[ measured ] cut at every length 0..%zu\n", full.size() - 1);
  const char *fields[] = {"magic",       "magic",       "magic",       "magic",
                          "version",     "version",     "version",     "version",
                          "header_size", "header_size", "header_size", "header_size",
                          "alignment",   "alignment",   "alignment",   "alignment"};
  for (size_t len = 0; len < full.size(); ++len) {
    SCOPED_TRACE("length " + std::to_string(len));
    const std::vector<uint8_t> cut(full.begin(), full.begin() + static_cast<long>(len));
    std::string want;
    if (len < 64) {
      const char *field = len < 16            ? fields[len]
                          : len < kJsonSize   ? "json_offset"
                          : len < kDataOffset ? "json_size"
                          : len < kDataSize   ? "data_offset"
                          : len < kFlags      ? "data_size"
                          : len < kReserved   ? "flags"
                                              : "reserved";
      want = "bad.vqm: file is " + std::to_string(len) +
             " bytes, the .vqm header needs 64 (truncated in field " + field + ")";
    } else if (len < json_end) {
      want = "bad.vqm: json_size " + std::to_string(json_end - 64) +
             " at json_offset 64 runs past the end of the file (" + std::to_string(len) + " bytes)";
    } else if (len < data_offset) {
      want = "bad.vqm: data_offset " + std::to_string(data_offset) +
             " is past the end of the file (" + std::to_string(len) + " bytes)";
    } else {
      want = "must equal the file size " + std::to_string(len);
    }
    EXPECT_VQM_ERROR(parse(cut), format, want);
  }
}

TEST(VqmCorruptHeader, TruncatedFileOnDiskNamesThePath) {
  const auto full = valid_file();
  const std::string path = test::scratch_dir() + "/cut.vqm";
  test::write_bytes(path, std::vector<uint8_t>(full.begin(), full.begin() + 30));
  EXPECT_VQM_ERROR(VqmFile::from_file(path), format,
                   path +
                       ": file is 30 bytes, the .vqm header needs 64 (truncated in field "
                       "json_size)");
  test::write_bytes(path, std::vector<uint8_t>(full.begin(), full.end() - 1));
  EXPECT_VQM_ERROR(VqmFile::from_file(path), format, path + ": data_offset");
}

TEST(VqmCorruptHeader, BadMagic) {
  auto b = valid_file();
  b[3] = 'X';
  EXPECT_VQM_ERROR(parse(b), format, "bad.vqm: not a .vqm file: magic is 56 51 4d 58");
  const char zip[] = "PK\x03\x04 this is a zip file";
  EXPECT_VQM_ERROR(VqmFile::from_memory(zip, sizeof zip), format,
                   "<memory>: not a .vqm file: magic is 50 4b 03 04, expected 'VQMF'");
  // Short *and* wrong: the wrong type is the more useful message.
  EXPECT_VQM_ERROR(VqmFile::from_memory("GGUF", 4), format, "magic is 47 47 55 46");
  EXPECT_VQM_ERROR(VqmFile::from_memory(nullptr, 0), format, "file is 0 bytes");
}

TEST(VqmCorruptHeader, BadVersion) {
  auto b = valid_file();
  put(b, kVersion, 0, 4);
  EXPECT_VQM_ERROR(parse(b), format, "bad.vqm: version is 0, expected 1");
  put(b, kVersion, 2, 4);
  EXPECT_VQM_ERROR(parse(b), unsupported, "bad.vqm: version is 2, newer than this reader");
  put(b, kVersion, 0xffffffffu, 4);
  EXPECT_VQM_ERROR(parse(b), unsupported, "version is 4294967295");
}

TEST(VqmCorruptHeader, WrongHeaderSizeOrAlignment) {
  for (uint64_t v : {0ull, 32ull, 65ull, 128ull, 0xffffffffull}) {
    auto b = valid_file();
    put(b, kHeaderSize, v, 4);
    EXPECT_VQM_ERROR(parse(b), format, "header_size is " + std::to_string(v) + ", expected 64");
    b = valid_file();
    put(b, kAlignment, v, 4);
    EXPECT_VQM_ERROR(parse(b), format, "alignment is " + std::to_string(v) + ", expected 64");
  }
}

TEST(VqmCorruptHeader, NonzeroFlagsOrReserved) {
  for (uint64_t v : {1ull, 0x100ull, 1ull << 63}) {
    auto b = valid_file();
    put(b, kFlags, v, 8);
    EXPECT_VQM_ERROR(parse(b), format, "flags is " + std::to_string(v) + ", must be 0");
    b = valid_file();
    put(b, kReserved, v, 8);
    EXPECT_VQM_ERROR(parse(b), format, "reserved is " + std::to_string(v) + ", must be 0");
  }
}

TEST(VqmCorruptHeader, JsonOffsetMustFollowTheHeader) {
  for (uint64_t v : {0ull, 8ull, 63ull, 65ull, 128ull, 1ull << 63, ~0ull}) {
    auto b = valid_file();
    put(b, kJsonOffset, v, 8);
    EXPECT_VQM_ERROR(parse(b), format,
                     "bad.vqm: json_offset is " + std::to_string(v) + ", expected 64");
  }
}

TEST(VqmCorruptHeader, JsonSizeInconsistentOrHuge) {
  const auto base = valid_file();
  const uint64_t size = base.size();
  // Past the end, including values where 64 + json_size wraps around 2^64.
  for (uint64_t v : std::vector<uint64_t>{size - 63, size, size + 1000, 1ull << 63, ~0ull,
                                          ~0ull - 63, ~0ull - 64}) {
    auto b = base;
    put(b, kJsonSize, v, 8);
    EXPECT_VQM_ERROR(parse(b), format,
                     "json_size " + std::to_string(v) + " at json_offset 64 runs past the end");
  }
  // Shorter than the JSON: the document is cut, which the JSON parser reports.
  auto b = base;
  put(b, kJsonSize, get(base, kJsonSize, 8) - 1, 8);
  EXPECT_VQM_ERROR(parse(b), format, "bad.vqm: JSON header: [json.exception.parse_error");
  put(b, kJsonSize, 0, 8);
  EXPECT_VQM_ERROR(parse(b), format, "JSON header: [json.exception.parse_error.101]");
  // Longer, into the zero padding: NUL bytes after the document are not JSON either.
  const uint64_t json_size = get(base, kJsonSize, 8);
  if (64 + json_size < get(base, kDataOffset, 8)) {
    put(b, kJsonSize, json_size + 1, 8);
    EXPECT_VQM_ERROR(parse(b), format,
                     "JSON header: NUL byte at position " + std::to_string(json_size));
  }
}

TEST(VqmCorruptHeader, DataOffsetInconsistentOrHuge) {
  const auto base = valid_file();
  const uint64_t data_offset = get(base, kDataOffset, 8);
  const uint64_t json_end = 64 + get(base, kJsonSize, 8);
  auto b = base;
  put(b, kDataOffset, data_offset + 1, 8);
  EXPECT_VQM_ERROR(parse(b), format,
                   "data_offset " + std::to_string(data_offset + 1) + " is not a multiple of 64");
  put(b, kDataOffset, 0, 8);
  EXPECT_VQM_ERROR(parse(b), format,
                   "data_offset 0 is inside the JSON, which ends at " + std::to_string(json_end));
  put(b, kDataOffset, data_offset - 64, 8);
  EXPECT_VQM_ERROR(parse(b), format, "is inside the JSON");
  for (uint64_t v :
       std::vector<uint64_t>{(base.size() + 63) / 64 * 64 + 64, 1ull << 63, ~0ull - 63}) {
    put(b, kDataOffset, v, 8);
    EXPECT_VQM_ERROR(parse(b), format,
                     "data_offset " + std::to_string(v) + " is past the end of the file (" +
                         std::to_string(base.size()) + " bytes)");
  }
}

TEST(VqmCorruptHeader, DataSizeInconsistentOrHuge) {
  const auto base = valid_file();
  const uint64_t data_size = get(base, kDataSize, 8);
  for (uint64_t v :
       std::vector<uint64_t>{data_size - 1, data_size + 1, uint64_t{0}, 1ull << 63, ~0ull}) {
    auto b = base;
    put(b, kDataSize, v, 8);
    EXPECT_VQM_ERROR(parse(b), format,
                     "data_size " + std::to_string(v) + " must equal the file size " +
                         std::to_string(base.size()));
  }
  auto longer = base;
  longer.push_back(0);
  EXPECT_VQM_ERROR(parse(longer), format,
                   "must equal the file size " + std::to_string(longer.size()));
}

TEST(VqmCorruptHeader, LimitsAreNamedAndCheckedOnValidFiles) {
  const auto b = valid_file();
  Limits l;
  l.max_file_bytes = b.size() - 1;
  EXPECT_VQM_ERROR(parse(b, l), limit,
                   "bad.vqm: file is " + std::to_string(b.size()) +
                       " bytes, over the limit max_file_bytes (" + std::to_string(b.size() - 1) +
                       ")");
  l = Limits();
  l.max_json_bytes = 20;
  EXPECT_VQM_ERROR(parse(b, l), limit, "is over the limit max_json_bytes (20)");
  l = Limits();
  l.max_tensors = 2;
  EXPECT_VQM_ERROR(parse(b, l), limit, "bad.vqm: 3 tensors is over the limit max_tensors (2)");
  l = Limits();
  l.max_tensor_bytes = 63;
  EXPECT_VQM_ERROR(parse(b, l), limit,
                   "tensor 'blocks.0.attn.qkv.weight': 64 bytes is over the limit "
                   "max_tensor_bytes (63)");
  l = Limits();
  l.max_rank = 1;
  EXPECT_VQM_ERROR(parse(b, l), limit,
                   "tensor 'blocks.0.attn.qkv.weight': rank 2 is over the limit max_rank (1)");
  l = Limits();
  l.max_dim = 15;
  EXPECT_VQM_ERROR(parse(b, l), limit,
                   "tensor 'blocks.0.attn.qkv.weight': shape[1] is 16, over the limit max_dim "
                   "(15)");
  // Exactly at every limit is fine.
  l.max_file_bytes = b.size();
  l.max_json_bytes = get(b, kJsonSize, 8);
  l.max_tensors = 3;
  l.max_tensor_bytes = 64;
  l.max_rank = 2;
  l.max_dim = 16;
  EXPECT_EQ(parse(b, l).tensors().size(), 3u);
}

// Random byte changes anywhere: the result must be a clean parse or a vqm::Error, and a clean
// parse must still satisfy every invariant the reader promises.
TEST(VqmCorruptHeader, RandomMutationsNeverCrash) {
  const auto base = valid_file();
  std::mt19937 rng(1234);
  int errors = 0;
  for (int iter = 0; iter < 3000; ++iter) {
    auto b = base;
    const int edits = 1 + static_cast<int>(rng() % 4);
    for (int e = 0; e < edits; ++e) {
      const size_t pos = rng() % b.size();
      const uint8_t values[] = {0, 0xff, 0x80, '"', '{', '-', '9', static_cast<uint8_t>(rng())};
      b[pos] = values[rng() % sizeof values];
    }
    if (rng() % 8 == 0) b.resize(rng() % b.size());
    try {
      const VqmFile f = parse(b);
      for (const auto &t : f.tensors()) {
        uint64_t n = 0;
        ASSERT_TRUE(dtype_nbytes(t.dtype, t.shape, &n));
        EXPECT_EQ(n, t.nbytes);
        EXPECT_EQ(reinterpret_cast<uintptr_t>(t.data) % 64, 0u);
      }
    } catch (const Error &e) {
      ++errors;
      EXPECT_EQ(std::string(e.what()).rfind("bad.vqm: ", 0), 0u) << e.what();
    } catch (const std::exception &e) {
      ADD_FAILURE() << "non-vqm exception: " << e.what();
    }
  }
  EXPECT_GT(errors, 1000);
}

}  // namespace
}  // namespace vqm
