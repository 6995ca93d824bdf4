// Limits on untrusted sizes are checked before anything is allocated, and the error names the
// limit. The readers' own limit suites are in tests/format and tests/unit/test_image.cpp; these
// are the end-to-end cases of the robustness list: a 2 GB dimension in a .vqm header, and a tiny
// model file whose geometry would need hundreds of GB of activations.
#include <gtest/gtest.h>

#include <string>

#include "fuzz/fuzz_targets.h"
#include "models/random_model.h"
#include "runtime/engine/vit.h"
#include "test_util.h"

namespace vqm::test {
namespace {

VqmFile vqm_with_tensor(const std::string &shape, const std::string &nbytes) {
  const std::string json = R"({"tensors":[{"name":"w","dtype":"f32","shape":)" + shape +
                           R"(,"offset":0,"nbytes":)" + nbytes + "}]}";
  const std::vector<uint8_t> file =
      fuzz::vqm_from_config_input(reinterpret_cast<const uint8_t *>(json.data()), json.size());
  return VqmFile::from_memory(file.data(), file.size(), default_limits(), "big.vqm");
}

TEST(Limits, TwoGigabyteDimensionFailsBeforeAllocating) {
  // 2^31 elements of f32 is 8 GiB: over max_tensor_bytes, refused on the header alone.
  EXPECT_VQM_ERROR(vqm_with_tensor("[2147483648]", "8589934592"), limit,
                   "big.vqm: tensor 'w': 8589934592 bytes is over the limit max_tensor_bytes");
  EXPECT_VQM_ERROR(vqm_with_tensor("[2147483649]", "8589934596"), limit,
                   "shape[0] is 2147483649, over the limit max_dim (2147483648)");
  // Within every limit but not in the file: the data check, still before any allocation.
  EXPECT_VQM_ERROR(vqm_with_tensor("[1000000]", "4000000"), format,
                   "runs past the end of the data section");
}

TEST(Limits, SessionMemoryIsCheckedBeforeAllocating) {
  // 512 x 512 patches of 8 pixels, dimension 8: 8 MB of weights, but one image's attention
  // scores alone are 262145^2 floats (275 GB).
  VitConfig c;
  c.image_size = 4096;
  c.patch_size = 8;
  c.in_chans = 1;
  c.embed_dim = 8;
  c.depth = 1;
  c.num_heads = 1;
  c.mlp_hidden = 8;
  c.num_classes = 2;
  const std::vector<uint8_t> bytes = make_random_vit(c, 0).to_bytes();
  const auto model = VitModel::load(VqmFile::from_memory(bytes.data(), bytes.size()));
  EXPECT_VQM_ERROR(VitSession(model, {}), limit, "over the limit max_session_bytes");
  // A real geometry (DeiT-Tiny, 197 tokens) passes with a batch of 16.
  const std::vector<uint8_t> deit = make_random_vit(arch_config("deit_tiny"), 0).to_bytes();
  const auto tiny = VitModel::load(VqmFile::from_memory(deit.data(), deit.size()));
  SessionOptions so;
  so.max_batch = 16;
  VitSession ok(tiny, so);
}

}  // namespace
}  // namespace vqm::test
