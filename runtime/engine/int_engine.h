// The integer engine: a quantized model's forward on u8 x s8 oneDNN matmuls, the blocks run
// row-chunked, one chunk of token rows per thread (see IntEngine::forward in int_engine.cpp).
#pragma once
#include <array>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "kernels/kernels.h"
#include "kernels/onednn/matmul.h"
#include "runtime/engine/engine.h"

namespace vqm {

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
struct IntBuffers {
  SessionBuffers::Aligned patches, h, q, k, v, merged, mlp, pooled, pooled_dist;
  // Per chunk, at chunk * stride: the scores of one segment (f32 [H, tq, T]), its probabilities
  // (bytes [H, tq, T]) and the attention output (proj's input levels, int8 [H, tq, dh]).
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
            chunks * tq * D};
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

// A quantized linear layer's primitive.
struct LinearPrim {
  std::string name;  // "blocks.3.mlp.fc1" (weight name without ".weight")
  dnnl::matmul::primitive_desc pd;
  kernels::onednn::BoundPrimitive bound;
  int64_t row0 = 0, rows = 0;  // the rows it computes, from its chunk's first (row_tiles)
};
// A chunk's rows in tiles of at most `max_rows`, as few as that allows and of near-equal size:
// (first row, rows) pairs.
std::vector<std::pair<int64_t, int64_t>> row_tiles(int64_t rows, int64_t max_rows);

// The primitives and grids for one batch size.
struct IntPlan {
  // One chunk's primitives in one block: its rows' linear layers (created for one thread, run
  // by the thread that owns the chunk) and Q·Kᵀ, A·V for each of its segments.
  struct ChunkBlock {
    // By Linear (qkv, proj, fc1, fc2): each over the chunk's rows in one tile, but fc1 in row
    // tiles whose f32 output fits the L2 cache (see IntEngine::build_block).
    std::array<std::vector<LinearPrim>, kBlockLinears> linear;
    std::vector<dnnl::matmul::primitive_desc> qk_pd, av_pd;
    std::vector<kernels::onednn::BoundPrimitive> qk, av;
  };
  struct Block {
    std::vector<ChunkBlock> chunks;
    kernels::QuantGrid qkv_in, attn, fc1_in, fc2_in;
    // QKV writes the levels of q, k and v; the head split clamps them to their grids and makes
    // q's u8 levels, k's and v's int8 operands (q - zero point).
    std::array<kernels::ByteClamp, 3> qkv_out;
    kernels::ByteClamp proj_in;  // A·V writes proj's input levels; the head merge clamps them
    kernels::TwinCodes attn_twin{0, 0, 0};  // shift 0: attn is a uniform grid
    // Chosen-level grids of the LayerNorm and GELU outputs (ActQuant::levels); empty: uniform.
    std::optional<kernels::CodeMap> qkv_levels, fc1_levels, fc2_levels;
    const float *norm1_w, *norm1_b, *norm2_w, *norm2_b;
  };
  int batch = 0;
  std::vector<RowChunk> chunks;
  bool whole_images = true;           // no image is split between chunks
  LinearPrim patch, head, head_dist;  // whole-batch primitives, run by all threads
  std::vector<Block> blocks;
  kernels::QuantGrid patch_in, head_in;
};

class IntEngine final : public Engine {
 public:
  // Throws vqm::Error(format) when a linear layer's weight is not stored as integers.
  explicit IntEngine(const EngineSetup &setup);
  // Bytes of activation buffers a session of this engine needs (SessionOptions' limit check).
  static uint64_t activation_bytes(const VitConfig &c, int64_t max_batch, int64_t threads);
  void forward(const float *nchw, int n, float *out, const TapFn *taps,
               OpProfile *profile) override;
  std::vector<std::string> kernel_report() const override;

 private:
  LinearPrim make_linear(const std::string &name, int64_t m, const ActQuant &in, bool has_bias,
                         kernels::onednn::Epilogue ep, size_t *scratch,
                         const std::vector<const ActQuant *> &s8_out = {});
  std::unique_ptr<IntPlan> build_plan(int b, const EngineSetup &setup, size_t *scratch);
  IntPlan::Block build_block(int l, const std::vector<RowChunk> &chunks, int64_t cache_bytes);
  void bind_plans();
  IntPlan &plan_for(int n);

  std::shared_ptr<const VitModel> model_;
  int max_batch_;
  dnnl::stream stream_;
  std::vector<std::unique_ptr<IntPlan>> plans_;  // by batch size, ascending
  std::unique_ptr<IntBuffers> ibuf_;
  std::unique_ptr<SessionBuffers> buf_;
  size_t chunk_scratch_ = 0;  // the largest scratchpad of a per-chunk primitive
};

}  // namespace vqm
