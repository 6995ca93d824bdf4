// Corrupted .vqm files, part 2: the JSON document and the tensor table. Files are assembled by
// hand (header written here, not by VqmWriter) so the reader is tested against the spec.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "runtime/io/error.h"
#include "runtime/io/format.h"
#include "test_util.h"

namespace vqm {
namespace {

using nlohmann::json;

void put(std::vector<uint8_t> &b, size_t off, uint64_t v, int n) {
  for (int i = 0; i < n; ++i) b[off + i] = static_cast<uint8_t>(v >> (8 * i));
}

// A well-formed header around `text` and `data_size` bytes of data (byte i = i & 0xff).
std::vector<uint8_t> raw_file(const std::string &text, uint64_t data_size) {
  const uint64_t data_offset = (64 + text.size() + 63) / 64 * 64;
  std::vector<uint8_t> b(data_offset + data_size, 0);
  std::memcpy(b.data(), "VQMF", 4);
  put(b, 4, 1, 4);
  put(b, 8, 64, 4);
  put(b, 12, 64, 4);
  put(b, 16, 64, 8);
  put(b, 24, text.size(), 8);
  put(b, 32, data_offset, 8);
  put(b, 40, data_size, 8);
  std::memcpy(b.data() + 64, text.data(), text.size());
  for (uint64_t i = 0; i < data_size; ++i) b[data_offset + i] = static_cast<uint8_t>(i);
  return b;
}

VqmFile parse_text(const std::string &text, uint64_t data_size = 256,
                   const Limits &limits = default_limits()) {
  const auto b = raw_file(text, data_size);
  return VqmFile::from_memory(b.data(), b.size(), limits, "t.vqm");
}

// One tensor entry whose fields can be replaced by raw JSON text.
std::string entry(const std::string &name = R"("w")", const std::string &dtype = R"("f32")",
                  const std::string &shape = "[2, 4]", const std::string &offset = "0",
                  const std::string &nbytes = "32", const std::string &extra = "") {
  return R"({"name":)" + name + R"(,"dtype":)" + dtype + R"(,"shape":)" + shape + R"(,"offset":)" +
         offset + R"(,"nbytes":)" + nbytes + extra + "}";
}
std::string doc(const std::string &entries) {
  return R"({"tensors":[)" + entries + "]}";
}

TEST(VqmCorruptJson, HandBuiltBaseFileParses) {
  const VqmFile f = parse_text(
      doc(entry() + "," +
          entry(R"("b")", R"("u8")", "[3]", "64", "3", R"(,"scale":"w","quant_axis":0)")),
      128);
  ASSERT_EQ(f.tensors().size(), 2u);
  EXPECT_EQ(f.tensors()[1].data[0], 64);  // byte 64 of the data section
  EXPECT_EQ(f.tensors()[1].scale, "w");
  EXPECT_EQ(f.tensors()[1].quant_axis, 0);
  EXPECT_EQ(f.tensors()[0].quant_axis, -1);
}

TEST(VqmCorruptJson, BrokenJsonReportsTheParserMessage) {
  EXPECT_VQM_ERROR(parse_text("{"), format,
                   "t.vqm: JSON header: [json.exception.parse_error.101] parse error at line 1, "
                   "column 2");
  EXPECT_VQM_ERROR(parse_text(doc("") + "x"), format, "JSON header: [json.exception.parse_error");
  EXPECT_VQM_ERROR(parse_text(R"({"tensors":[],})"), format, "parse_error");
  EXPECT_VQM_ERROR(parse_text(std::string(R"({"tensors":[],"x":")") + "\xc3\x28" + "\"}"), format,
                   "ill-formed UTF-8");
  // nlohmann stops at a NUL byte; the reader must not ignore what follows one.
  EXPECT_VQM_ERROR(parse_text(std::string("{\"tensors\":[]}\0garbage", 22)), format,
                   "t.vqm: JSON header: NUL byte at position 14 of 22");
}

TEST(VqmCorruptJson, NestingDepthIsBounded) {
  // 64 nested containers (the document object plus 63 arrays) are fine, 65 are not, so later
  // code that copies or prints meta() cannot run out of stack.
  auto nested = [](int arrays) {
    return R"({"tensors":[],"m":)" + std::string(arrays, '[') + std::string(arrays, ']') + "}";
  };
  EXPECT_EQ(parse_text(nested(63)).meta()["m"].size(), 1u);
  EXPECT_VQM_ERROR(parse_text(nested(64)), format, "t.vqm: JSON header: nested deeper than 64");
  EXPECT_VQM_ERROR(parse_text(std::string(1 << 20, '[')), format, "nested deeper than 64");
  std::string objects;
  for (int i = 0; i < 70; ++i) objects += R"({"a":)";
  objects += "1" + std::string(70, '}');
  EXPECT_VQM_ERROR(parse_text(R"({"tensors":[],"m":)" + objects + "}"), format,
                   "nested deeper than 64");
}

TEST(VqmCorruptJson, WhitespaceAndALeadingBomAreTolerated) {
  EXPECT_EQ(parse_text("\xef\xbb\xbf" + doc(entry())).tensors().size(), 1u);
  EXPECT_EQ(parse_text(" \n\t{ \"tensors\" : [ ] }\r\n ").tensors().size(), 0u);
}

TEST(VqmCorruptJson, DuplicateKeysAreRejectedAtAnyDepth) {
  EXPECT_VQM_ERROR(parse_text(R"({"tensors":[],"tensors":[]})"), format,
                   "t.vqm: JSON header: duplicate key 'tensors'");
  EXPECT_VQM_ERROR(
      parse_text(doc(entry("\"w\"", "\"f32\"", "[2, 4]", "0", "32", R"(,"offset":64)"))), format,
      "duplicate key 'offset'");
  EXPECT_VQM_ERROR(parse_text(R"({"model":{"a":[{"k":1,"k":2}]},"tensors":[]})"), format,
                   "duplicate key 'k'");
  // The same key in sibling objects is fine.
  EXPECT_EQ(parse_text(R"({"m":[{"k":1},{"k":2}],"n":{"k":3},"tensors":[]})").meta()["n"]["k"], 3);
}

TEST(VqmCorruptJson, DocumentOfTheWrongShape) {
  EXPECT_VQM_ERROR(parse_text("[]"), format,
                   "t.vqm: JSON header is the array [], expected an object");
  EXPECT_VQM_ERROR(parse_text("42"), format, "JSON header is 42, expected an object");
  EXPECT_VQM_ERROR(parse_text(R"({"model":{}})"), format,
                   "t.vqm: JSON header has no 'tensors' array");
  EXPECT_VQM_ERROR(parse_text(R"({"tensors":{}})"), format,
                   "'tensors' is an object, expected an array");
  EXPECT_VQM_ERROR(parse_text(R"({"tensors":null})"), format, "'tensors' is null");
  EXPECT_VQM_ERROR(parse_text(doc("5")), format, "t.vqm: tensors[0] is 5, expected an object");
  EXPECT_VQM_ERROR(parse_text(doc(entry() + ",[1]")), format, "tensors[1] is the array [1]");
}

TEST(VqmCorruptJson, MetaKeysAreKeptAsTheyAre) {
  const VqmFile f = parse_text(
      R"({"model":5,"preprocess":null,"labels":"x","quantization":[],"producer":{"a":1},)"
      R"("newer_writer":{"x":[1.5,true]},"tensors":[]})");
  EXPECT_EQ(f.meta(), json::parse(R"({"model":5,"preprocess":null,"labels":"x",
      "quantization":[],"producer":{"a":1},"newer_writer":{"x":[1.5,true]}})"));
}

TEST(VqmCorruptJson, BadNames) {
  EXPECT_VQM_ERROR(parse_text(doc(R"({"dtype":"f32","shape":[],"offset":0,"nbytes":4})")), format,
                   "t.vqm: tensors[0]: missing 'name'");
  EXPECT_VQM_ERROR(parse_text(doc(entry("7"))), format,
                   "tensors[0]: 'name' is 7, expected a string");
  EXPECT_VQM_ERROR(parse_text(doc(entry(R"("")"))), format, "tensors[0]: tensor name is empty");
  EXPECT_VQM_ERROR(parse_text(doc(entry() + "," + entry(R"("w")", R"("u8")", "[1]", "64", "1"))),
                   format, "t.vqm: tensors[1]: duplicate tensor name 'w'");
  // Control characters in a hostile name are escaped in the message.
  EXPECT_VQM_ERROR(parse_text(doc(entry(R"("a\u0001b")", R"("f64")"))), unsupported,
                   "tensor 'a\\x01b': unknown dtype 'f64'");
}

TEST(VqmCorruptJson, BadDtypes) {
  EXPECT_VQM_ERROR(parse_text(doc(entry(R"("w")", R"("q8")"))), unsupported,
                   "t.vqm: tensor 'w': unknown dtype 'q8'");
  EXPECT_VQM_ERROR(parse_text(doc(entry(R"("w")", R"("q1")"))), unsupported,
                   "t.vqm: tensor 'w': unknown dtype 'q1'");
  EXPECT_VQM_ERROR(parse_text(doc(entry(R"("w")", R"("F32")"))), unsupported,
                   "unknown dtype 'F32'");
  EXPECT_VQM_ERROR(parse_text(doc(entry(R"("w")", "32"))), format,
                   "tensor 'w': 'dtype' is 32, expected a string");
  EXPECT_VQM_ERROR(parse_text(doc(R"({"name":"w","shape":[],"offset":0,"nbytes":4})")), format,
                   "tensor 'w': missing 'dtype'");
}

TEST(VqmCorruptJson, BadShapes) {
  auto with_shape = [](const std::string &shape) {
    return parse_text(doc(entry(R"("w")", R"("f32")", shape)));
  };
  EXPECT_VQM_ERROR(with_shape("5"), format,
                   "tensor 'w': shape is 5, expected an array of integers");
  EXPECT_VQM_ERROR(with_shape(R"("[2,4]")"), format, "shape is a string");
  EXPECT_VQM_ERROR(with_shape("[2, -4]"), format,
                   "tensor 'w': shape[1] is -4, dimensions must be >= 0");
  EXPECT_VQM_ERROR(with_shape("[2, 4.0]"), format, "shape[1] is 4.0, expected an integer");
  EXPECT_VQM_ERROR(with_shape(R"([2, "4"])"), format, "shape[1] is a string, expected an integer");
  EXPECT_VQM_ERROR(with_shape("[2, [4]]"), format, "shape[1] is the array [4]");
  EXPECT_VQM_ERROR(with_shape("[1099511627776]"), limit,
                   "tensor 'w': shape[0] is 1099511627776, over the limit max_dim (2147483648)");
  EXPECT_VQM_ERROR(with_shape("[18446744073709551615]"), limit, "over the limit max_dim");
  EXPECT_VQM_ERROR(with_shape("[-9223372036854775808]"), format, "dimensions must be >= 0");
  EXPECT_VQM_ERROR(with_shape("[1,1,1,1,1,1,1,1,1]"), limit,
                   "tensor 'w': rank 9 is over the limit max_rank (8)");
  // Overflow: of the element count even when a later zero makes the product 0, and of bytes.
  EXPECT_VQM_ERROR(with_shape("[2147483648, 2147483648, 2147483648, 0]"), format,
                   "element count of shape [2147483648, 2147483648, 2147483648, 0] overflows");
  EXPECT_VQM_ERROR(with_shape("[2147483648, 2147483648]"), format,
                   "tensor 'w': f32 [2147483648, 2147483648] needs more than 2^64 bytes");
  EXPECT_VQM_ERROR(parse_text(doc(R"({"name":"w","dtype":"f32","offset":0,"nbytes":4})")), format,
                   "tensor 'w': missing 'shape'");
}

TEST(VqmCorruptJson, BadOffsets) {
  auto with_offset = [](const std::string &offset) {
    return parse_text(doc(entry(R"("w")", R"("f32")", "[2, 4]", offset)));
  };
  EXPECT_VQM_ERROR(with_offset("-64"), format,
                   "tensor 'w': offset is -64, expected a non-negative integer");
  EXPECT_VQM_ERROR(with_offset(R"("0")"), format, "offset is a string, expected a non-negative");
  EXPECT_VQM_ERROR(with_offset("0.5"), format, "offset is 0.5");
  EXPECT_VQM_ERROR(with_offset("true"), format, "offset is true");
  EXPECT_VQM_ERROR(with_offset("32"), format, "tensor 'w': offset 32 is not a multiple of 64");
  EXPECT_VQM_ERROR(with_offset("256"), format,
                   "tensor 'w': offset 256 + nbytes 32 runs past the end of the data section "
                   "(data_size 256)");
  EXPECT_VQM_ERROR(with_offset("18446744073709551552"), format,  // 2^64 - 64: sum wraps
                   "offset 18446744073709551552 + nbytes 32 runs past the end");
  EXPECT_VQM_ERROR(with_offset("18446744073709551616"), format, "offset is 1.8446744073709552e+19");
  EXPECT_VQM_ERROR(parse_text(doc(R"({"name":"w","dtype":"f32","shape":[],"nbytes":4})")), format,
                   "tensor 'w': missing 'offset'");
  // The last tensor may end exactly at the end of the data; empty tensors may sit there.
  EXPECT_EQ(with_offset("192").get("w").data[0], 192);
  EXPECT_EQ(parse_text(doc(entry(R"("e")", R"("f32")", "[0, 4]", "256", "0"))).get("e").nbytes, 0u);
}

TEST(VqmCorruptJson, NbytesMustMatchDtypeAndShape) {
  auto with = [](const std::string &dtype, const std::string &shape, const std::string &nbytes) {
    return parse_text(doc(entry(R"("w")", dtype, shape, "0", nbytes)));
  };
  EXPECT_VQM_ERROR(with(R"("f32")", "[2, 4]", "31"), format,
                   "t.vqm: tensor 'w': nbytes is 31, but f32 [2, 4] needs 32");
  EXPECT_VQM_ERROR(with(R"("f16")", "[2, 4]", "32"), format,
                   "nbytes is 32, but f16 [2, 4] needs 16");
  EXPECT_VQM_ERROR(with(R"("q4")", "[3, 5]", "8"), format, "nbytes is 8, but q4 [3, 5] needs 9");
  EXPECT_VQM_ERROR(with(R"("q6")", "[2, 5]", "7"), format, "nbytes is 7, but q6 [2, 5] needs 8");
  EXPECT_VQM_ERROR(with(R"("f32")", "[2, 4]", "-32"), format, "nbytes is -32");
  EXPECT_VQM_ERROR(with(R"("f32")", "[2, 4]", R"("32")"), format, "nbytes is a string");
  EXPECT_EQ(with(R"("q6")", "[2, 5]", "8").get("w").nbytes, 8u);
  EXPECT_EQ(with(R"("i64")", "[]", "8").get("w").nbytes, 8u);
}

TEST(VqmCorruptJson, OverlappingTensors) {
  const std::string a = entry(R"("a")", R"("f32")", "[32]", "0", "128");
  EXPECT_VQM_ERROR(parse_text(doc(a + "," + entry(R"("b")", R"("u8")", "[4]", "64", "4"))), format,
                   "t.vqm: tensors 'a' [0, 128) and 'b' [64, 68) overlap");
  // Order in the JSON does not matter, and identical ranges overlap too.
  EXPECT_VQM_ERROR(parse_text(doc(entry(R"("b")", R"("u8")", "[4]", "64", "4") + "," + a)), format,
                   "tensors 'a' [0, 128) and 'b' [64, 68) overlap");
  EXPECT_VQM_ERROR(parse_text(doc(a + "," + entry(R"("c")", R"("f32")", "[32]", "0", "128"))),
                   format, "overlap");
  // Adjacent is fine; an empty tensor inside another's range occupies nothing.
  const VqmFile f = parse_text(doc(a + "," + entry(R"("b")", R"("u8")", "[4]", "128", "4") + "," +
                                   entry(R"("e")", R"("u8")", "[0]", "64", "0")));
  EXPECT_EQ(f.tensors().size(), 3u);
}

TEST(VqmCorruptJson, ScaleAndQuantAxis) {
  const std::string s = entry(R"("s")", R"("f32")", "[2]", "64", "8");
  auto with_extra = [&](const std::string &extra) {
    return parse_text(doc(entry(R"("w")", R"("f32")", "[2, 4]", "0", "32", extra) + "," + s));
  };
  EXPECT_VQM_ERROR(with_extra(R"(,"scale":"nope")"), format,
                   "t.vqm: tensor 'w': scale tensor 'nope' does not exist");
  EXPECT_VQM_ERROR(with_extra(R"(,"scale":"w")"), format, "tensor 'w': is its own scale tensor");
  EXPECT_VQM_ERROR(with_extra(R"(,"scale":3)"), format,
                   "tensor 'w': 'scale' is 3, expected a tensor name");
  EXPECT_VQM_ERROR(with_extra(R"(,"scale":"")"), format,
                   "'scale' is a string, expected a tensor name");
  EXPECT_VQM_ERROR(with_extra(R"(,"quant_axis":2)"), format,
                   "tensor 'w': quant_axis is 2, expected an integer in [0, 2)");
  EXPECT_VQM_ERROR(with_extra(R"(,"quant_axis":-1)"), format, "quant_axis is -1");
  EXPECT_VQM_ERROR(with_extra(R"(,"quant_axis":"0")"), format, "quant_axis is a string");
  EXPECT_VQM_ERROR(with_extra(R"(,"quant_axis":0.0)"), format, "quant_axis is 0.0");
  EXPECT_VQM_ERROR(with_extra(R"(,"quant_axis":18446744073709551615)"), format, "quant_axis is");
  const VqmFile ok = with_extra(R"(,"scale":"s","quant_axis":1)");
  EXPECT_EQ(ok.get("w").scale, "s");
  EXPECT_EQ(ok.get("w").quant_axis, 1);
  // The scale must be f32.
  const std::string s16 = entry(R"("s")", R"("f16")", "[2]", "64", "4");
  EXPECT_VQM_ERROR(
      parse_text(
          doc(entry(R"("w")", R"("i8")", "[2, 4]", "0", "8", R"(,"scale":"s")") + "," + s16)),
      format, "tensor 'w': scale tensor 's' is f16, expected f32");
}

TEST(VqmCorruptJson, TensorCountLimitIsCheckedBeforeEntries) {
  std::string entries;
  for (int i = 0; i < 5; ++i) entries += std::string(i ? "," : "") + "{}";
  Limits l;
  l.max_tensors = 4;
  EXPECT_VQM_ERROR(parse_text(doc(entries), 0, l), limit,
                   "5 tensors is over the limit max_tensors (4)");
  EXPECT_VQM_ERROR(parse_text(doc(entries), 0), format, "tensors[0]: missing 'name'");
}

}  // namespace
}  // namespace vqm
