// Internal to models/: the session's activation buffers and the forward steps shared by the fp32 /
// simulated path (vit.cpp) and the integer path (vit_int8.cpp).
#pragma once
#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <vector>

#include <map>
#include <string>

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

// How the integer forward splits a batch between threads: each chunk is a contiguous range of
// the batch's token rows (all rows of all images, in order), and a chunk's rows are cut where
// images begin into segments, the units of attention (a segment's queries attend to all of its
// image's keys). For n images of T tokens on P threads, chunk c holds rows [nT c / P, nT (c+1) /
// P): whole images when P divides n, halves of one image at batch 1 on 2 threads.
struct RowChunk {
  struct Segment {
    int64_t image, t0, tq;  // image index, first token, token count
    int64_t row;            // batch row of token t0 (image * T + t0)
  };
  int64_t row0 = 0, rows = 0;
  std::vector<Segment> segments;
};
std::vector<RowChunk> split_rows(int64_t n, int64_t tokens, int64_t threads);
// How many chunks split_rows makes of `rows` rows: one per thread, at least one row each.
inline int64_t chunk_count(int64_t rows, int64_t threads) {
  return std::max<int64_t>(1, std::min(threads, rows));
}

// Quantized activations, sized for max_batch (u8 or s8 bytes; 64-byte aligned), and each chunk's
// own attention buffers, scratchpad and stream.
struct VitSession::IntBuffers {
  SessionBuffers::Aligned patches, h, q, k, v, merged, mlp, pooled, pooled_dist;
  // Per chunk, at chunk * stride: the scores of one segment (f32 [H, tq, T]), its probabilities
  // (bytes [H, tq, T]) and the attention output (f32 [H, tq, dh]).
  SessionBuffers::Aligned scores, attn, attn_out;
  int64_t chunks, tq_max;
  // Prescaled biases (bias / output scale, see prescale_linear_bias_u8s8), by layer; they must
  // outlive the primitives bound to them.
  std::map<std::string, std::vector<float>> biases;
  std::vector<uint8_t> chunk_scratch;  // chunk c's oneDNN scratchpad at c * chunk_scratch_stride
  size_t chunk_scratch_stride = 0;
  std::vector<dnnl::stream> streams;  // one per chunk: chunks run their primitives concurrently

  static size_t floats(int64_t bytes) { return static_cast<size_t>((bytes + 3) / 4); }
  // The longest segment of b images split into `chunks` chunks.
  static int64_t longest_segment(const VitConfig &c, int64_t b, int64_t chunks) {
    return std::min<int64_t>(c.tokens(), (b * c.tokens() + chunks - 1) / chunks);
  }
  // Bytes of each buffer, in member order (see SessionBuffers::sizes). K and V are double-
  // buffered (by block parity), so that a thread may write the next block's keys while another
  // still reads this block's: at most one barrier per block.
  using Sizes = std::array<int64_t, 12>;
  static Sizes sizes(const VitConfig &c, int64_t b, int64_t threads) {
    const int64_t T = c.tokens(), D = c.embed_dim, H = c.num_heads;
    const int64_t chunks = chunk_count(b * c.tokens(), threads), tq = longest_segment(c, b, chunks);
    return {b * c.num_patches() * c.patch_dim(),
            b * T * D,
            b * T * D,
            2 * b * T * D,
            2 * b * T * D,
            b * T * D,
            b * T * c.mlp_hidden,
            b * D,
            b * D,
            chunks * H * tq * T * 4,
            chunks * H * tq * T,
            chunks * tq * D * 4};
  }
  static uint64_t bytes(const VitConfig &c, int64_t b, int64_t threads) {
    uint64_t n = 0;
    for (int64_t s : sizes(c, b, threads)) n += floats(s) * sizeof(float);
    return n;
  }
  IntBuffers(const VitConfig &c, int64_t b, int64_t threads)
      : IntBuffers(sizes(c, b, threads), chunk_count(b * c.tokens(), threads),
                   longest_segment(c, b, chunk_count(b * c.tokens(), threads))) {}
  IntBuffers(const Sizes &n, int64_t chunk_n, int64_t tq)
      : patches(floats(n[0])),
        h(floats(n[1])),
        q(floats(n[2])),
        k(floats(n[3])),
        v(floats(n[4])),
        merged(floats(n[5])),
        mlp(floats(n[6])),
        pooled(floats(n[7])),
        pooled_dist(floats(n[8])),
        scores(floats(n[9])),
        attn(floats(n[10])),
        attn_out(floats(n[11])),
        chunks(chunk_n),
        tq_max(tq) {}
};

struct VitSession::IntPlan {
  struct LinearPrim {
    std::string name;  // "blocks.3.mlp.fc1" (weight name without ".weight")
    dnnl::matmul::primitive_desc pd;
    kernels::onednn::BoundPrimitive bound;
  };
  // One chunk's primitives in one block: its rows' linear layers (created for one thread, run
  // by the thread that owns the chunk) and Q·Kᵀ, A·V for each of its segments.
  struct ChunkBlock {
    std::array<LinearPrim, kBlockLinears> linear;  // by Linear: qkv, proj, fc1, fc2
    std::vector<dnnl::matmul::primitive_desc> qk_pd, av_pd;
    std::vector<kernels::onednn::BoundPrimitive> qk, av;
  };
  struct Block {
    std::vector<ChunkBlock> chunks;
    kernels::QuantGrid qkv_in, q, k, v, attn, proj_in, fc1_in, fc2_in;
    const float *norm1_w, *norm1_b, *norm2_w, *norm2_b;
  };
  int batch = 0;
  std::vector<RowChunk> chunks;
  bool whole_images = true;           // no image is split between chunks
  LinearPrim patch, head, head_dist;  // whole-batch primitives, run by all threads
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

}  // namespace vqm
