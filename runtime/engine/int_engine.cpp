// Integer execution of a quantized model: every linear layer and both attention products run as
// oneDNN u8 x s8 matmuls (brg:avx512_core_vnni) with the calibrated scales baked in; the element-
// wise steps between them quantize as they go (LayerNorm, GELU and softmax write u8 directly), and
// QKV and A·V write the levels of their consumers' grids themselves, so that the head split and
// merge only move bytes.
// Equals the simulated path (float_engine.cpp) up to float rounding. The blocks run row-chunked,
// one chunk of token rows per thread (RowChunk in int_engine.h, forward).
#include <omp.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <iostream>
#include <map>
#include <set>

#include "kernels/kernels.h"
#include "kernels/onednn/matmul.h"
#include "kernels/onednn/matmul_int8.h"
#include "runtime/engine/int_engine.h"

namespace vqm {

namespace dn = kernels::onednn;
using dnnl::memory;

namespace {
kernels::QuantGrid grid_of(const ActQuant &a) {
  // A two-range or chosen-level grid is quantized on its fine grid first (all 256 codes), then
  // coarsened or mapped to its levels.
  return kernels::QuantGrid{a.delta, a.zero_point, a.code_max(), false};
}
uint8_t *bytes(const SessionBuffers::Aligned &a) {
  return reinterpret_cast<uint8_t *>(a.ptr);
}
// A matmul that writes a grid's levels writes them as int8 b = nearbyint(y * quant_inverse(delta))
// + shift (S8Dst): the shift nearest 0 that keeps every level q in [0, qmax] within int8, i.e. 0
// below 8 bits and zero point - 128 at 8. Not the zero point itself as u8: oneDNN adds the shift
// in float before rounding, and a sum near 128 keeps 7 fewer bits below the point than y / delta
// near 0, which cost measurable agreement with the simulated path on 3 and 8-bit grids.
int32_t s8_shift(const ActQuant &a) {
  return std::min(std::max(0, a.zero_point - 128), 127 + a.zero_point - a.qmax());
}
// Recovers levels from such bytes: u8 q = b - shift + zero point in [0, qmax], or, for an int8
// consumer, q - zero point = b - shift, saturated to int8 (the quantizer keeps it within int8
// for K and V; a grid that breaks that saturates, as the quantizing kernels' signed store does).
kernels::ByteClamp level_clamp(const ActQuant &a, bool to_s8) {
  const int32_t shift = s8_shift(a);
  int32_t lo = shift - a.zero_point, hi = lo + a.qmax();  // b of q = 0 and q = qmax
  if (to_s8) lo = std::max(lo, shift - 128), hi = std::min(hi, shift + 127);
  return kernels::ByteClamp{static_cast<int8_t>(std::max(lo, -128)),
                            static_cast<int8_t>(std::min(hi, 127)),
                            static_cast<uint8_t>((to_s8 ? -shift : a.zero_point - shift) & 0xff)};
}
// A linear layer's bias in its output's units: values, or, when its equal sections of output
// channels write the int8 levels of the grids s8_out, levels plus each grid's shift (oneDNN 2.6
// takes one common destination zero point only, so the shifts ride in the bias).
std::vector<float> output_bias(const float *bias, int64_t n,
                               const std::vector<const ActQuant *> &s8_out) {
  std::vector<float> out(n, 0.f);
  if (bias) std::copy_n(bias, n, out.begin());
  const int64_t section = s8_out.empty() ? n : n / static_cast<int64_t>(s8_out.size());
  for (int64_t j = 0; j < n && !s8_out.empty(); ++j) {
    const ActQuant &g = *s8_out[j / section];
    out[j] = out[j] * kernels::quant_inverse(g.delta) + static_cast<float>(s8_shift(g));
  }
  return out;
}
}  // namespace

std::vector<RowChunk> split_rows(int64_t n, int64_t tokens, int64_t threads) {
  const int64_t rows = n * tokens, chunks = chunk_count(rows, threads);
  std::vector<RowChunk> out(chunks);
  for (int64_t c = 0; c < chunks; ++c) {
    RowChunk &ch = out[c];
    ch.row0 = rows * c / chunks;
    ch.rows = rows * (c + 1) / chunks - ch.row0;
    for (int64_t r = ch.row0; r < ch.row0 + ch.rows;) {
      const int64_t image = r / tokens, t0 = r % tokens;
      const int64_t tq = std::min(tokens - t0, ch.row0 + ch.rows - r);
      ch.segments.push_back({image, t0, tq, r});
      r += tq;
    }
  }
  return out;
}

std::vector<std::pair<int64_t, int64_t>> row_tiles(int64_t rows, int64_t max_rows) {
  const int64_t n = std::max<int64_t>(1, (rows + max_rows - 1) / std::max<int64_t>(1, max_rows));
  std::vector<std::pair<int64_t, int64_t>> out;
  for (int64_t i = 0; i < n; ++i) out.emplace_back(rows * i / n, rows * (i + 1) / n - rows * i / n);
  return out;
}

// Each batch size gets whole-batch primitives for the patch embedding and the head (run by all
// threads, outside the blocks) and, per block and chunk, primitives created for one thread that
// the chunk's owner runs inside the forward's parallel region (see forward).
IntEngine::IntEngine(const EngineSetup &setup)
    : model_(setup.model), max_batch_(setup.max_batch()), stream_(dn::cpu_engine()) {
  const VitConfig &c = model_->config();
  ibuf_ = std::make_unique<IntBuffers>(c, max_batch_, setup.threads);
  size_t scratch = 0;
  for (int b : setup.sizes) plans_.push_back(build_plan(b, setup, &scratch));
  IntBuffers &I = *ibuf_;
  I.chunk_scratch_stride = (chunk_scratch_ + 63) / 64 * 64;
  I.chunk_scratch.resize(I.chunk_scratch_stride * I.chunks);
  for (int64_t i = 0; i < I.chunks; ++i) I.streams.emplace_back(dn::cpu_engine());
  buf_ = std::make_unique<SessionBuffers>(c, max_batch_, scratch);
  bind_plans();
}

uint64_t IntEngine::activation_bytes(const VitConfig &c, int64_t max_batch, int64_t threads) {
  return SessionBuffers::bytes(c, max_batch) + IntBuffers::bytes(c, max_batch, threads);
}

// A linear layer's primitive (and its prescaled bias, once per layer) for m rows. Its output
// scale: delta of its input times each output channel's weight scale, and with s8_out (see
// output_bias) 1 / delta of the channel's grid.
LinearPrim IntEngine::make_linear(const std::string &name, int64_t m, const ActQuant &in,
                                  bool has_bias, dn::Epilogue ep, size_t *scratch,
                                  const std::vector<const ActQuant *> &s8_out) {
  const IntWeight *w = model_->int_weight(name + ".weight");
  if (!w)
    fail(ErrorCode::format,
         model_->file().source() + ": '" + name + ".weight' is not stored as integers");
  const bool s8 = !s8_out.empty();
  const size_t section = s8 ? static_cast<size_t>(w->n) / s8_out.size() : 0;
  // Per channel when the sections need scales of their own, even over per-tensor weight scales.
  std::vector<float> scales(s8 ? static_cast<size_t>(w->n) : w->scale.size());
  bool shifted = false;  // a shift needs a bias even where the layer has none
  for (size_t i = 0; i < scales.size(); ++i) {
    scales[i] = in.delta * w->scale[w->scale.size() == 1 ? 0 : i];
    if (!s8) continue;
    scales[i] *= kernels::quant_inverse(s8_out[i / section]->delta);
    shifted = shifted || s8_shift(*s8_out[i / section]) != 0;
  }
  LinearPrim l;
  l.name = name;
  l.pd = dn::linear_u8s8_pd(m, w->k, w->n, scales, in.zero_point, has_bias || shifted, ep,
                            dn::S8Dst{s8, 0});
  if ((has_bias || shifted) && !ibuf_->biases.count(name)) {
    const float *bias = has_bias ? model_->weight(name + ".bias") : nullptr;
    ibuf_->biases[name] =
        dn::prescale_linear_bias_u8s8(output_bias(bias, w->n, s8_out).data(), w->n, scales);
  }
  *scratch = std::max(*scratch, l.pd.scratchpad_desc().get_size());
  return l;
}

// The plan for batch size b; *scratch grows to its whole-batch primitives' scratchpad.
std::unique_ptr<IntPlan> IntEngine::build_plan(int b, const EngineSetup &setup, size_t *scratch) {
  const VitConfig &c = model_->config();
  const ModelQuant &mq = *model_->quant();
  auto plan = std::make_unique<IntPlan>();
  plan->batch = b;
  plan->chunks = split_rows(b, c.tokens(), setup.threads);
  for (const RowChunk &ch : plan->chunks)
    for (const RowChunk::Segment &seg : ch.segments)
      plan->whole_images = plan->whole_images && seg.tq == c.tokens();
  plan->patch_in = grid_of(mq.patch_in);
  plan->head_in = grid_of(mq.head_in);
  plan->patch = make_linear("patch_embed.proj", b * c.num_patches(), mq.patch_in, c.patch_bias,
                            dn::Epilogue::none, scratch);
  if (c.num_classes > 0)
    plan->head = make_linear("head", b, mq.head_in, c.head_bias, dn::Epilogue::none, scratch);
  if (c.distilled)
    plan->head_dist =
        make_linear("head_dist", b, mq.head_in, c.head_bias, dn::Epilogue::none, scratch);
  const dn::ScopedThreads one_thread(1);
  const int64_t cache =
      setup.tile_cache_bytes > 0 ? setup.tile_cache_bytes : kernels::l2_cache_bytes();
  for (int l = 0; l < c.depth; ++l) plan->blocks.push_back(build_block(l, plan->chunks, cache));
  return plan;
}

// Block l's grids and, for each chunk, its primitives created for one thread; cache_bytes: what
// fc1's f32 row tiles should fit.
IntPlan::Block IntEngine::build_block(int l, const std::vector<RowChunk> &chunks,
                                      int64_t cache_bytes) {
  const VitConfig &c = model_->config();
  const int64_t T = c.tokens(), H = c.num_heads, dh = c.head_dim();
  const BlockQuant &bq = model_->quant()->blocks[l];
  auto batched = [&](int64_t m, int64_t k, int64_t n, bool b_is_nk, float scale, int32_t zp,
                     dn::S8Dst dst) {
    auto pd = dn::batched_u8s8_pd(H, m, k, n, b_is_nk, scale, zp, dst);
    chunk_scratch_ = std::max(chunk_scratch_, pd.scratchpad_desc().get_size());
    return pd;
  };
  // A·V writes the levels of proj's input grid straight away (a common scale and shift).
  const float av_scale = bq.attn.delta * bq.v.delta * kernels::quant_inverse(bq.proj_in.delta);
  const dn::S8Dst av_dst{true, s8_shift(bq.proj_in)};
  // QKV writes the levels of q, k and v straight away, each section on its own grid.
  const std::vector<const ActQuant *> qkv_out = {&bq.q, &bq.k, &bq.v};
  // fc1's f32 output is read back at once by the activation kernel: in row tiles that fit the L2
  // cache it never leaves it. A DeiT-S batch-8 chunk (788 rows, 4.8 MB of it) spent 6.5-11.8 ms
  // per forward in GELU, 4.6-5.4 ms in tiles (docs/performance.md). No smaller than that: each
  // tile costs a primitive call and a shorter GEMM (batch 1's 99 rows in 64 + 35 lost
  // about 0.5 ms).
  const int64_t fc1_tile_rows = cache_bytes / (c.mlp_hidden * int64_t{4});
  IntPlan::Block blk;
  for (const RowChunk &ch : chunks) {
    IntPlan::ChunkBlock cb;
    for (const LinearSpec &ls : block_linears())
      for (const auto &[row0, rows] :
           row_tiles(ch.rows, ls.id == Linear::fc1 ? fc1_tile_rows : ch.rows)) {
        LinearPrim p =
            make_linear(layer_name(l, ls.id), rows, bq.*ls.input_grid, linear_has_bias(c, ls.id),
                        linear_epilogue(c, ls.id, false), &chunk_scratch_,
                        ls.id == Linear::qkv ? qkv_out : std::vector<const ActQuant *>{});
        p.row0 = row0;
        p.rows = rows;
        cb.linear[static_cast<int>(ls.id)].push_back(std::move(p));
      }
    for (const RowChunk::Segment &seg : ch.segments) {
      cb.qk_pd.push_back(
          batched(seg.tq, dh, T, true, bq.q.delta * bq.k.delta, bq.q.zero_point, dn::S8Dst{}));
      cb.av_pd.push_back(batched(seg.tq, T, dh, false, av_scale, bq.attn.zero_point, av_dst));
    }
    blk.chunks.push_back(std::move(cb));
  }
  blk.qkv_in = grid_of(bq.qkv_in);
  blk.qkv_out = {level_clamp(bq.q, false), level_clamp(bq.k, true), level_clamp(bq.v, true)};
  blk.attn = grid_of(bq.attn);
  if (bq.attn.twin_shift > 0) blk.attn_twin = twin_codes(bq.attn);
  blk.proj_in = level_clamp(bq.proj_in, false);
  blk.fc1_in = grid_of(bq.fc1_in);
  blk.fc2_in = grid_of(bq.fc2_in);
  blk.qkv_levels = code_map(bq.qkv_in);
  blk.fc1_levels = code_map(bq.fc1_in);
  blk.fc2_levels = code_map(bq.fc2_in);
  const std::string pre = block_prefix(l);
  blk.norm1_w = model_->weight(pre + "norm1.weight");
  blk.norm1_b = model_->weight(pre + "norm1.bias");
  blk.norm2_w = model_->weight(pre + "norm2.weight");
  blk.norm2_b = model_->weight(pre + "norm2.bias");
  return blk;
}

void IntEngine::bind_plans() {
  SessionBuffers &B = *buf_;
  IntBuffers &I = *ibuf_;
  const VitConfig &c = model_->config();
  const int64_t T = c.tokens(), D = c.embed_dim, F = c.mlp_hidden, H = c.num_heads;
  auto bind = [&](LinearPrim &l, const void *src, void *dst, const memory &scratch) {
    const auto bias = I.biases.find(l.name);
    l.bound = dn::bind_matmul(l.pd, src,
                              model_->packed_weight_s8(l.name + ".weight", l.pd.weights_desc()),
                              dst, scratch, bias == I.biases.end() ? nullptr : bias->second.data());
  };
  auto bind_batched = [&](const dnnl::matmul::primitive_desc &pd, const void *a, const void *b,
                          void *dst, const memory &scratch) {
    return dn::bind_matmul(pd, a, dn::wrap(pd.weights_desc(), b), dst, scratch);
  };
  const memory scratch = dn::wrap(memory::desc({static_cast<int64_t>(B.scratchpad.size())},
                                               memory::data_type::u8, memory::format_tag::a),
                                  B.scratchpad.data());
  std::vector<memory> chunk_scratch;
  for (int64_t i = 0; i < I.chunks; ++i)
    chunk_scratch.push_back(dn::wrap(memory::desc({static_cast<int64_t>(I.chunk_scratch_stride)},
                                                  memory::data_type::u8, memory::format_tag::a),
                                     I.chunk_scratch.data() + i * I.chunk_scratch_stride));
  const int64_t kv_size = int64_t{max_batch_} * T * D;  // one parity of K or V
  for (auto &plan : plans_) {
    bind(plan->patch, I.patches.ptr, B.patch_out.ptr, scratch);
    if (c.num_classes > 0) bind(plan->head, I.pooled.ptr, B.logits.ptr, scratch);
    if (c.distilled) bind(plan->head_dist, I.pooled_dist.ptr, B.logits_dist.ptr, scratch);
    // The primitives too, not only their descriptors: made into a primitive under 2 threads, a
    // descriptor created for 1 failed (std::bad_alloc in oneDNN's brgemm_kernel_create) when
    // sessions were created concurrently (Concurrency test); oneDNN's primitive cache keys on the
    // thread count at primitive creation.
    const dn::ScopedThreads one_thread(1);
    for (size_t l = 0; l < plan->blocks.size(); ++l) {
      const int64_t kv = static_cast<int64_t>(l % 2) * kv_size;
      for (size_t ci = 0; ci < plan->chunks.size(); ++ci) {
        const RowChunk &ch = plan->chunks[ci];
        IntPlan::ChunkBlock &cb = plan->blocks[l].chunks[ci];
        const memory &cs = chunk_scratch[ci];
        const int64_t r = ch.row0;
        // Where each linear layer reads (u8, in_cols bytes a row) and writes (qkv: int8 levels,
        // in the first quarter of its f32 buffer; f32 for the others, proj and fc2 accumulating
        // into x). A tile reads its own rows; fc1's tiles all write the chunk's first rows of
        // the f32 buffer, which the activation reads back before the next tile runs.
        const std::array<std::pair<const uint8_t *, void *>, kBlockLinears> io = {
            {{bytes(I.h) + r * D, bytes(B.qkv) + r * 3 * D},
             {bytes(I.merged) + r * D, B.x.ptr + r * D},
             {bytes(I.h) + r * D, B.mlp.ptr + r * F},
             {bytes(I.mlp) + r * F, B.x.ptr + r * D}}};
        const std::array<int64_t, kBlockLinears> in_cols = {D, D, D, F};
        for (int i = 0; i < kBlockLinears; ++i)
          for (LinearPrim &tile : cb.linear[i])
            bind(tile, io[i].first + tile.row0 * in_cols[i], io[i].second, cs);
        float *scores = I.scores.ptr + ci * H * I.tq_max * T;
        const uint8_t *attn = bytes(I.attn) + ci * H * I.tq_max * T;
        uint8_t *attn_out = bytes(I.attn_out) + ci * I.tq_max * D;
        for (size_t si = 0; si < ch.segments.size(); ++si) {
          const RowChunk::Segment &seg = ch.segments[si];
          // The segment's queries are a dense [H, tq, dh] block at its rows; its image's keys and
          // values are [H, T, dh] blocks of this block's parity.
          cb.qk.push_back(bind_batched(cb.qk_pd[si], bytes(I.q) + seg.row * D,
                                       bytes(I.k) + kv + seg.image * T * D, scores, cs));
          cb.av.push_back(
              bind_batched(cb.av_pd[si], attn, bytes(I.v) + kv + seg.image * T * D, attn_out, cs));
        }
      }
    }
  }
}

IntPlan &IntEngine::plan_for(int n) {
  for (auto it = plans_.rbegin(); it != plans_.rend(); ++it)
    if ((*it)->batch <= n) return **it;
  return *plans_.front();
}

// The blocks run inside one parallel region, each thread on its own chunk of rows from LayerNorm to
// the next block's LayerNorm: a chunk's data stays in its core's cache, and a block costs at most
// one barrier (between writing K, V and reading all of an image's) instead of the dozen fork-joins
// of running each operation on all threads in turn. Every result equals that of the operation run
// over all rows at once: the kernels are row-wise, and the GEMMs' integer accumulation is exact.
void IntEngine::forward(const float *nchw, int n, float *out, const TapFn *taps,
                        OpProfile *profile) {
  const VitConfig &c = model_->config();
  IntPlan &plan = plan_for(n);
  SessionBuffers &B = *buf_;
  IntBuffers &I = *ibuf_;
  const int64_t T = c.tokens(), D = c.embed_dim, H = c.num_heads, dh = c.head_dim();
  const int64_t F = c.mlp_hidden, rows = n * T;
  auto tap = [&](Tap t, int block, const float *data, int64_t r, int64_t cols) {
    if (taps) (*taps)(TapEvent{t, block, data, r, cols});
  };

  using Op = OpProfile::Op;
  OpClock clk(profile);
  kernels::patchify_f32(nchw, B.patches.ptr, n, c.in_chans, c.image_size, c.image_size,
                        c.patch_size);
  kernels::quantize(B.patches.ptr, I.patches.ptr, n * c.num_patches() * c.patch_dim(),
                    plan.patch_in);
  clk.lap(Op::quantize_reorder);
  plan.patch.bound.run(stream_);
  clk.lap(Op::gemm_linear);
  embed_tokens(*model_, B.patch_out.ptr, B.x.ptr, n);
  tap(Tap::embed, -1, B.x.ptr, rows, D);
  clk.lap(Op::other);

  const float scale = 1.0f / std::sqrt(static_cast<float>(dh));
  const int64_t kv_size = int64_t{max_batch_} * T * D;
  const int chunks = static_cast<int>(plan.chunks.size());
  // LayerNorm of chunk ci's rows of x into h (the input of the linear layer after it).
  auto norm = [&](int ci, const float *gamma, const float *beta, const kernels::QuantGrid &g,
                  const std::optional<kernels::CodeMap> &levels, auto &&lap) {
    const RowChunk &ch = plan.chunks[ci];
    uint8_t *const h = bytes(I.h) + ch.row0 * D;
    kernels::layernorm_quant(B.x.ptr + ch.row0 * D, h, ch.rows, D, gamma, beta, c.ln_eps, g);
    if (levels) kernels::map_codes(h, ch.rows * D, *levels);
    lap(Op::layernorm);
  };
  // A linear layer that runs over the chunk's rows in one tile.
  auto run_whole = [&](const IntPlan::ChunkBlock &cb, Linear id, int ci, auto &&lap) {
    cb.linear[static_cast<int>(id)].front().bound.run(I.streams[ci]);
    lap(Op::gemm_linear);
  };
  // LayerNorm 1, QKV and the head split of chunk ci's rows.
  auto attention_inputs = [&](const IntPlan::Block &blk, int l, int ci, auto &&lap) {
    const RowChunk &ch = plan.chunks[ci];
    norm(ci, blk.norm1_w, blk.norm1_b, blk.qkv_in, blk.qkv_levels, lap);
    run_whole(blk.chunks[ci], Linear::qkv, ci, lap);
    const int64_t kv = (l % 2) * kv_size;
    const auto *qkv = reinterpret_cast<const int8_t *>(B.qkv.ptr);
    for (const RowChunk::Segment &seg : ch.segments) {
      uint8_t *const heads[3] = {bytes(I.q) + seg.row * D,
                                 bytes(I.k) + kv + seg.image * T * D + seg.t0 * dh,
                                 bytes(I.v) + kv + seg.image * T * D + seg.t0 * dh};
      const int64_t dst_t[3] = {seg.tq, T, T};
      kernels::split_heads_s8(qkv + seg.row * 3 * D, heads, blk.qkv_out.data(), 1, seg.tq, 3, H, dh,
                              dst_t);
    }
    lap(Op::quantize_reorder);
  };
  // Attention of chunk ci's queries, then x += proj(attention).
  auto attention = [&](const IntPlan::Block &blk, int ci, auto &&lap) {
    const RowChunk &ch = plan.chunks[ci];
    const IntPlan::ChunkBlock &cb = blk.chunks[ci];
    float *scores = I.scores.ptr + ci * H * I.tq_max * T;
    uint8_t *attn = bytes(I.attn) + ci * H * I.tq_max * T;
    const auto *attn_out = reinterpret_cast<const int8_t *>(I.attn_out.ptr) + ci * I.tq_max * D;
    for (size_t si = 0; si < ch.segments.size(); ++si) {
      const RowChunk::Segment &seg = ch.segments[si];
      cb.qk[si].run(I.streams[ci]);
      lap(Op::gemm_attention);
      kernels::softmax_quant(scores, attn, H * seg.tq, T, scale, blk.attn);
      if (blk.attn_twin.shift > 0) kernels::coarsen_codes(attn, H * seg.tq * T, blk.attn_twin);
      lap(Op::softmax);
      cb.av[si].run(I.streams[ci]);
      lap(Op::gemm_attention);
      kernels::merge_heads_s8(attn_out, bytes(I.merged) + seg.row * D, 1, H, seg.tq, dh,
                              blk.proj_in);
      lap(Op::quantize_reorder);
    }
    run_whole(cb, Linear::proj, ci, lap);  // x += attn · Wproj + b
  };
  // x += fc2(act(fc1(LayerNorm 2(x)))) on chunk ci's rows (act: GELU or QuickGELU).
  auto mlp = [&](const IntPlan::Block &blk, int ci, auto &&lap) {
    const RowChunk &ch = plan.chunks[ci];
    const IntPlan::ChunkBlock &cb = blk.chunks[ci];
    norm(ci, blk.norm2_w, blk.norm2_b, blk.fc1_in, blk.fc1_levels, lap);
    const auto activation_quant =
        c.act == Activation::quick_gelu ? kernels::quick_gelu_quant : kernels::gelu_quant;
    for (const LinearPrim &fc1 : cb.linear[static_cast<int>(Linear::fc1)]) {
      fc1.bound.run(I.streams[ci]);
      lap(Op::gemm_linear);
      uint8_t *const act = bytes(I.mlp) + (ch.row0 + fc1.row0) * F;
      activation_quant(B.mlp.ptr + ch.row0 * F, act, fc1.rows * F, blk.fc2_in);
      if (blk.fc2_levels) kernels::map_codes(act, fc1.rows * F, *blk.fc2_levels);
      lap(Op::gelu);
    }
    run_whole(cb, Linear::fc2, ci, lap);  // x += mlp · W2 + b
  };

  // The element-wise kernels' own `omp parallel for` run on one thread in here (OpenMP's default
  // max-active-levels is 1), and so do the oneDNN primitives (created for one thread).
#pragma omp parallel num_threads(chunks)
  {
    const int tid = omp_get_thread_num(), team = omp_get_num_threads();
    // Thread 0 profiles its own chunks; its time at a barrier is the others' lag.
    auto lap = [&](Op op) {
      if (tid == 0) clk.lap(op);
    };
    // A tap sees whole tensors: all chunks must have reached the point first.
    auto tap_all = [&](Tap t, int l) {
      if (!taps) return;
#pragma omp barrier
      if (tid == 0) tap(t, l, B.x.ptr, rows, D);
#pragma omp barrier
    };
    for (int l = 0; l < c.depth; ++l) {
      const IntPlan::Block &blk = plan.blocks[l];
      for (int ci = tid; ci < chunks; ci += team) attention_inputs(blk, l, ci, lap);
      // Keys and values of an image split between chunks come from two threads. When every chunk
      // holds whole images (batch 8 on 2 threads), nothing is shared and the threads run all
      // blocks without meeting: a late thread in one block can catch up in the next.
      if (!plan.whole_images) {
#pragma omp barrier
        lap(Op::wait);
      }
      for (int ci = tid; ci < chunks; ci += team) attention(blk, ci, lap);
      tap_all(Tap::attn_residual, l);
      for (int ci = tid; ci < chunks; ci += team) mlp(blk, ci, lap);
      tap_all(Tap::block_out, l);
    }
  }
  clk.lap(Op::wait);  // the region's closing barrier

  pool_tokens(*model_, B, n);
  tap(Tap::prelogits, -1, B.pooled.ptr, n, D);
  clk.lap(Op::layernorm);
  if (c.num_classes > 0) {
    kernels::quantize(B.pooled.ptr, I.pooled.ptr, n * D, plan.head_in);
    clk.lap(Op::quantize_reorder);
    plan.head.bound.run(stream_);
    clk.lap(Op::gemm_linear);
  }
  if (c.distilled) {
    kernels::quantize(B.pooled_dist.ptr, I.pooled_dist.ptr, n * D, plan.head_in);
    clk.lap(Op::quantize_reorder);
    plan.head_dist.bound.run(stream_);
    clk.lap(Op::gemm_linear);
  }
  write_outputs(*model_, B, n, out);
  clk.lap(Op::other);
}

std::vector<std::string> IntEngine::kernel_report() const {
  // Every block and chunk has primitives of its own: list each kind's distinct implementations,
  // so that a fallback in any one of them shows.
  std::vector<std::string> out;
  for (const auto &p : plans_) {
    std::map<std::string, std::set<std::string>> impls;
    for (const auto &blk : p->blocks)
      for (const auto &cb : blk.chunks) {
        for (const LinearSpec &l : block_linears())
          for (const LinearPrim &tile : cb.linear[static_cast<int>(l.id)])
            impls[l.name].insert(tile.bound.impl);
        for (const auto &bp : cb.qk) impls["q*k^T"].insert(bp.impl);
        for (const auto &bp : cb.av) impls["attn*v"].insert(bp.impl);
      }
    const std::string b = "batch " + std::to_string(p->batch) + " int8 ";
    out.push_back(b + "patch_embed: " + p->patch.bound.impl);
    for (const auto &[op, set] : impls) {
      std::string names;
      for (const auto &name : set) names += (names.empty() ? "" : " | ") + name;
      out.push_back(b + op + ": " + names);
    }
    if (p->head.bound.prim) out.push_back(b + "head: " + p->head.bound.impl);
  }
  return out;
}

}  // namespace vqm
