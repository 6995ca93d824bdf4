// Internal to the engine layer: what a session runs (Engine: the fp32/simulated FloatEngine in
// float_engine.cpp, the integer IntEngine in int_engine.cpp), the activation buffers both use and
// the forward steps they share (embedding, pooling, outputs: engine.cpp).
#pragma once
#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "kernels/kernels.h"
#include "kernels/onednn/matmul.h"
#include "runtime/engine/vit.h"
#include "runtime/io/error.h"

namespace vqm {

// Activation buffers, sized once for max_batch. 64-byte aligned for the vector kernels.
struct SessionBuffers {
  struct Aligned {
    float *ptr = nullptr;
    explicit Aligned(size_t n) {  // at least one line: a model without a head has 0 logits
      ptr = static_cast<float *>(
          std::aligned_alloc(64, std::max<size_t>(64, ((n * sizeof(float) + 63) / 64) * 64)));
      if (!ptr) fail(ErrorCode::out_of_memory, "cannot allocate session buffers");
    }
    ~Aligned() { std::free(ptr); }
  };
  Aligned patches, patch_out, x, h, qkv, heads, scores, attn_out, merged, mlp, pooled, pooled_dist,
      logits, logits_dist;
  std::vector<uint8_t> scratchpad;
  // Floats of each buffer, in member order. One list serves the allocation and bytes(), which
  // the session checks against Limits::max_session_bytes before allocating. No overflow: the
  // config's ranges (grid <= 512, heads <= 1024) and b <= 4096 keep every term below 2^61.
  using Sizes = std::array<int64_t, 14>;
  static Sizes sizes(const VitConfig &c, int64_t b) {
    const int64_t T = c.tokens(), D = c.embed_dim;
    return {b * c.num_patches() * c.patch_dim(),
            b * c.num_patches() * D,
            b * T * D,
            b * T * D,
            b * T * 3 * D,
            b * T * 3 * D,
            b * c.num_heads * T * T,
            b * T * D,
            b * T * D,
            b * T * c.mlp_hidden,
            b * D,
            b * D,
            b * c.num_classes,
            b * c.num_classes};
  }
  static uint64_t bytes(const VitConfig &c, int64_t b) {
    uint64_t n = 0;
    for (int64_t s : sizes(c, b)) n += static_cast<uint64_t>(s) * sizeof(float);
    return n;
  }
  SessionBuffers(const VitConfig &c, int64_t b, size_t scratch)
      : SessionBuffers(sizes(c, b), scratch) {}
  SessionBuffers(const Sizes &n, size_t scratch)
      : patches(n[0]),
        patch_out(n[1]),
        x(n[2]),
        h(n[3]),
        qkv(n[4]),
        heads(n[5]),
        scores(n[6]),
        attn_out(n[7]),
        merged(n[8]),
        mlp(n[9]),
        pooled(n[10]),
        pooled_dist(n[11]),
        logits(n[12]),
        logits_dist(n[13]),
        scratchpad(scratch) {}
};

// What a session plans for: the model, the batch sizes it will be asked to run (ascending powers
// of two, then max_batch: VitSession::run splits larger requests into these) and the OpenMP
// thread count its runs get.
struct EngineSetup {
  std::shared_ptr<const VitModel> model;
  std::vector<int> sizes;
  int64_t threads = 1;
  // The cache a tile of intermediate rows should fit in; 0: this core's L2
  // (kernels::l2_cache_bytes). Tests set it small to make many tiles.
  int64_t tile_cache_bytes = 0;
  int max_batch() const { return sizes.back(); }
};

// One execution strategy of the forward pass. Its constructor creates every primitive and
// buffer; forward() allocates nothing.
class Engine {
 public:
  virtual ~Engine() = default;
  // n images (n one of the planned sizes) to n x n_outputs; taps see the activations;
  // profile (nullptr: none) is charged each operation's time.
  virtual void forward(const float *nchw, int n, float *out, const TapFn *taps,
                       OpProfile *profile) = 0;
  // The same forward resumed at block `first` from residual stream `x` (n x tokens x embed_dim,
  // what Tap::block_out of block first - 1 shows, or Tap::embed for block 0). The fp32 /
  // simulated engine implements it (VitSession::run_from: the quantizer's calibration).
  virtual void forward_from(int /*first*/, const float * /*x*/, int /*n*/, float * /*out*/,
                            const TapFn * /*taps*/, OpProfile * /*profile*/) {
    fail(ErrorCode::unsupported,
         "resuming a forward at a block needs an fp32 or simulated session");
  }
  // "op: impl" for every distinct primitive (VQM_VERBOSE, the bench tool).
  virtual std::vector<std::string> kernel_report() const = 0;
};

// Charges the wall time since the previous lap to an operation kind of a profile; a no-op (one
// branch) when the session does not profile.
class OpClock {
 public:
  using clock = std::chrono::steady_clock;
  explicit OpClock(OpProfile *p) : p_(p) {
    if (p_) {
      ++p_->forwards;
      t_ = clock::now();
    }
  }
  void lap(OpProfile::Op op) {
    if (!p_) return;
    const auto t = clock::now();
    p_->seconds[op] += std::chrono::duration<double>(t - t_).count();
    t_ = t;
  }

 private:
  OpProfile *p_;
  clock::time_point t_;
};

// The epilogue a block's linear layer fuses: proj and fc2 add into the residual stream x; fc1
// applies the MLP's activation when `fc1_activation` (fp32 and simulated execution; the integer
// path applies it in its quantizing kernel instead).
inline kernels::onednn::Epilogue linear_epilogue(const VitConfig &c, Linear id,
                                                 bool fc1_activation) {
  using kernels::onednn::Epilogue;
  switch (id) {
    case Linear::proj:
    case Linear::fc2:
      return Epilogue::accumulate;
    case Linear::fc1:
      if (!fc1_activation) return Epilogue::none;
      return c.act == Activation::quick_gelu ? Epilogue::quick_gelu : Epilogue::gelu_erf;
    default:
      return Epilogue::none;
  }
}

// x[b, t] = prefix token or patch_out[b, t - prefix], plus its pos_embed row (prefix tokens have
// none when pos_embed holds patches only), then norm_pre where the model has it; n images.
void embed_tokens(const VitModel &model, const float *patch_out, float *x, int64_t n);
// pooled (and pooled_dist) = what the head reads: the class (and distillation) token after the
// final norm, or the mean of the patch tokens after "norm" (of every token) or before "fc_norm".
void pool_tokens(const VitModel &model, SessionBuffers &b, int64_t n);
// out = n x n_outputs: the head's logits (the mean of both heads for a distilled model), or the
// pooled embedding of a model without a head.
void write_outputs(const VitModel &model, const SessionBuffers &b, int64_t n, float *out);

// The kernels' form of a chosen-level grid (ActQuant::levels), or none for another grid.
inline std::optional<kernels::CodeMap> code_map(const ActQuant &a) {
  if (a.levels.empty()) return std::nullopt;
  return kernels::nearest_code_map(a.levels.data(), static_cast<int>(a.levels.size()));
}
// The kernels' form of a two-range activation grid (ActQuant::twin_shift > 0).
inline kernels::TwinCodes twin_codes(const ActQuant &a) {
  return kernels::TwinCodes{1 << (a.bits - 1), a.twin_shift, a.twin_top()};
}

}  // namespace vqm
