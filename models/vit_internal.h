// Internal to models/: the session's activation buffers and the forward steps shared by the fp32 /
// simulated path (vit.cpp) and the integer path (vit_int8.cpp).
#pragma once
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
  SessionBuffers(const VitConfig &c, int64_t b, size_t scratch)
      : patches(b * c.num_patches() * c.patch_dim()),
        patch_out(b * c.num_patches() * c.embed_dim),
        x(b * c.tokens() * c.embed_dim),
        h(b * c.tokens() * c.embed_dim),
        qkv(b * c.tokens() * 3 * c.embed_dim),
        heads(b * c.tokens() * 3 * c.embed_dim),
        scores(b * c.num_heads * int64_t{c.tokens()} * c.tokens()),
        attn_out(b * c.tokens() * c.embed_dim),
        merged(b * c.tokens() * c.embed_dim),
        mlp(b * c.tokens() * c.mlp_hidden),
        pooled(b * c.embed_dim),
        pooled_dist(b * c.embed_dim),
        logits(b * c.num_classes),
        logits_dist(b * c.num_classes),
        scratchpad(scratch) {}
};

// Quantized activations, sized for max_batch (u8 or s8 bytes; 64-byte aligned).
struct VitSession::IntBuffers {
  SessionBuffers::Aligned patches, h, q, k, v, attn, merged, mlp, pooled, pooled_dist;
  // Prescaled biases (bias / output scale, see prescale_linear_bias_u8s8), by layer; they must
  // outlive the primitives bound to them.
  std::map<std::string, std::vector<float>> biases;
  static size_t floats(int64_t bytes) { return static_cast<size_t>((bytes + 3) / 4); }
  IntBuffers(const VitConfig &c, int64_t b)
      : patches(floats(b * c.num_patches() * c.patch_dim())),
        h(floats(b * c.tokens() * c.embed_dim)),
        q(floats(b * c.tokens() * c.embed_dim)),
        k(floats(b * c.tokens() * c.embed_dim)),
        v(floats(b * c.tokens() * c.embed_dim)),
        attn(floats(b * c.num_heads * int64_t{c.tokens()} * c.tokens())),
        merged(floats(b * c.tokens() * c.embed_dim)),
        mlp(floats(b * c.tokens() * c.mlp_hidden)),
        pooled(floats(b * c.embed_dim)),
        pooled_dist(floats(b * c.embed_dim)) {}
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
