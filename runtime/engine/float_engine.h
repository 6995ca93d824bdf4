// The fp32 engine: a model's forward in fp32 arithmetic on oneDNN f32 matmuls, each operation
// over the whole batch on all threads. For a quantized model it is the simulated execution (the
// quantizer's view): activations rounded onto their grids where the integer engine would
// quantize them, weights dequantized.
#pragma once
#include <array>
#include <memory>
#include <string>
#include <vector>

#include "kernels/onednn/matmul.h"
#include "runtime/engine/engine.h"

namespace vqm {

class FloatEngine final : public Engine {
 public:
  explicit FloatEngine(const EngineSetup &setup);
  // Bytes of activation buffers a session of this engine needs (SessionOptions' limit check).
  static uint64_t activation_bytes(const VitConfig &c, int64_t max_batch);
  void forward(const float *nchw, int n, float *out, const TapFn *taps,
               OpProfile *profile) override;
  void forward_from(int first, const float *x, int n, float *out, const TapFn *taps,
                    OpProfile *profile) override;
  std::vector<std::string> kernel_report() const override;

 private:
  // The primitives for one batch size, with arguments bound to the session buffers.
  struct Plan {
    int batch = 0;
    kernels::onednn::BoundPrimitive patch, qk, av, head, head_dist;
    struct Block {
      // By Linear: qkv, proj, fc1, fc2.
      std::array<kernels::onednn::BoundPrimitive, kBlockLinears> linear;
      const float *norm1_w, *norm1_b, *norm2_w, *norm2_b;  // looked up once, not per run
    };
    std::vector<Block> blocks;
  };
  struct Pds;
  struct Pass;
  Pds make_pds(int b, size_t *scratch) const;
  std::unique_ptr<Plan> bind_plan(int b, const Pds &p, const dnnl::memory &scratch);
  Plan &plan_for(int n);
  void block(const Plan &plan, int l, int n, Pass &pass);
  // Blocks first..depth-1 on the residual stream in buf_->x, then pooling and the head.
  void finish(const Plan &plan, int first, int n, Pass &pass, float *out);

  std::shared_ptr<const VitModel> model_;
  dnnl::stream stream_;
  std::vector<std::unique_ptr<Plan>> plans_;  // by batch size, ascending
  std::unique_ptr<SessionBuffers> buf_;
};

}  // namespace vqm
