// Internal to models/: the session's activation buffers and the forward steps shared by the fp32 /
// simulated path (vit.cpp) and the integer path (vit_int8.cpp).
#pragma once
#include <array>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <vector>

#include <map>
#include <string>

#include "kernels/kernels.h"
#include "kernels/onednn/matmul.h"
#include "models/vit.h"
#include "runtime/error.h"

namespace vqm {

// Activation buffers, sized once for max_batch. 64-byte aligned for the vector kernels.
struct SessionBuffers {
  struct Aligned {
    float *ptr = nullptr;
    explicit Aligned(size_t n) {
      ptr = static_cast<float *>(std::aligned_alloc(64, ((n * sizeof(float) + 63) / 64) * 64));
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

// Quantized activations, sized for max_batch (u8 or s8 bytes; 64-byte aligned).
struct VitSession::IntBuffers {
  SessionBuffers::Aligned patches, h, q, k, v, attn, merged, mlp, pooled, pooled_dist;
  // Prescaled biases (bias / output scale, see prescale_linear_bias_u8s8), by layer; they must
  // outlive the primitives bound to them.
  std::map<std::string, std::vector<float>> biases;
  static size_t floats(int64_t bytes) { return static_cast<size_t>((bytes + 3) / 4); }
  // Bytes of each buffer, in member order (see SessionBuffers::sizes).
  using Sizes = std::array<int64_t, 10>;
  static Sizes sizes(const VitConfig &c, int64_t b) {
    const int64_t T = c.tokens(), D = c.embed_dim;
    return {b * c.num_patches() * c.patch_dim(),
            b * T * D,
            b * T * D,
            b * T * D,
            b * T * D,
            b * c.num_heads * T * T,
            b * T * D,
            b * T * c.mlp_hidden,
            b * D,
            b * D};
  }
  static uint64_t bytes(const VitConfig &c, int64_t b) {
    uint64_t n = 0;
    for (int64_t s : sizes(c, b)) n += floats(s) * sizeof(float);
    return n;
  }
  IntBuffers(const VitConfig &c, int64_t b) : IntBuffers(sizes(c, b)) {}
  explicit IntBuffers(const Sizes &n)
      : patches(floats(n[0])),
        h(floats(n[1])),
        q(floats(n[2])),
        k(floats(n[3])),
        v(floats(n[4])),
        attn(floats(n[5])),
        merged(floats(n[6])),
        mlp(floats(n[7])),
        pooled(floats(n[8])),
        pooled_dist(floats(n[9])) {}
};

struct VitSession::IntPlan {
  struct Linear {
    std::string name;  // "blocks.3.mlp.fc1" (weight name without ".weight")
    dnnl::matmul::primitive_desc pd;
    kernels::onednn::BoundPrimitive bound;
  };
  struct Block {
    Linear qkv, proj, fc1, fc2;
    dnnl::matmul::primitive_desc qk_pd, av_pd;
    kernels::onednn::BoundPrimitive qk, av;
    kernels::QuantGrid qkv_in, q, k, v, attn, proj_in, fc1_in, fc2_in;
    const float *norm1_w, *norm1_b, *norm2_w, *norm2_b;
  };
  int batch = 0;
  Linear patch, head, head_dist;
  std::vector<Block> blocks;
  kernels::QuantGrid patch_in, head_in;
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

// x[b, t] = (cls | dist | patch_out[b, t - prefix]) + pos_embed[t] for n images.
void embed_tokens(const VitModel &model, const float *patch_out, float *x, int64_t n);
// pooled (and pooled_dist) = final LayerNorm of the class (and distillation) token rows of x.
void pool_prefix_tokens(const VitModel &model, SessionBuffers &b, int64_t n);
// logits = head output, or the mean of both heads for a distilled model.
void write_logits(const VitModel &model, const SessionBuffers &b, int64_t n, float *logits);

}  // namespace vqm
