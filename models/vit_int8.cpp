// Integer execution of a quantized model: every linear layer and both attention products run as
// oneDNN u8 x s8 matmuls (brg:avx512_core_vnni) with the calibrated scales baked in; the element-
// wise steps between them quantize as they go (LayerNorm, GELU, softmax and the head permutations
// write u8/s8 directly). Equals the simulated path (vit.cpp) up to float rounding.
#include <cmath>
#include <iostream>

#include "kernels/kernels.h"
#include "kernels/onednn/matmul.h"
#include "kernels/onednn/matmul_int8.h"
#include "models/vit_internal.h"

namespace vqm {

namespace dn = kernels::onednn;
using dnnl::memory;

namespace {
kernels::QuantGrid grid_of(const ActQuant &a, bool store_signed) {
  return kernels::QuantGrid{a.delta, a.zero_point, a.qmax(), store_signed};
}
}  // namespace

void VitSession::build_int_plans(const std::vector<int> &sizes, size_t *scratch) {
  const VitConfig &c = model_->config();
  const ModelQuant &mq = *model_->quant();
  const int64_t T = c.tokens(), H = c.num_heads, dh = c.head_dim();
  // Output scale of a linear layer: delta of its input times each output channel's weight scale.
  auto linear = [&](const std::string &name, int64_t m, const ActQuant &in, dn::Epilogue ep) {
    const IntWeight *w = model_->int_weight(name + ".weight");
    if (!w)
      fail(ErrorCode::format,
           model_->file().source() + ": '" + name + ".weight' is not stored as integers");
    std::vector<float> scales(w->scale.size());
    for (size_t i = 0; i < scales.size(); ++i) scales[i] = in.delta * w->scale[i];
    IntPlan::Linear l;
    l.name = name;
    l.pd = dn::linear_u8s8_pd(m, w->k, w->n, scales, in.zero_point, true, ep);
    if (!ibuf_->biases.count(name))
      ibuf_->biases[name] =
          dn::prescale_linear_bias_u8s8(model_->weight(name + ".bias"), w->n, scales);
    *scratch = std::max(*scratch, l.pd.scratchpad_desc().get_size());
    return l;
  };
  ibuf_ = std::make_unique<IntBuffers>(c, options_.max_batch);
  for (int b : sizes) {
    auto plan = std::make_unique<IntPlan>();
    plan->batch = b;
    plan->patch_in = grid_of(mq.patch_in, false);
    plan->head_in = grid_of(mq.head_in, false);
    plan->patch = linear("patch_embed.proj", b * c.num_patches(), mq.patch_in, dn::Epilogue::none);
    plan->head = linear("head", b, mq.head_in, dn::Epilogue::none);
    if (c.distilled) plan->head_dist = linear("head_dist", b, mq.head_in, dn::Epilogue::none);
    for (int l = 0; l < c.depth; ++l) {
      const BlockQuant &bq = mq.blocks[l];
      const std::string pre = "blocks." + std::to_string(l) + ".";
      IntPlan::Block blk;
      blk.qkv = linear(pre + "attn.qkv", b * T, bq.qkv_in, dn::Epilogue::none);
      blk.proj = linear(pre + "attn.proj", b * T, bq.proj_in, dn::Epilogue::accumulate);
      blk.fc1 = linear(pre + "mlp.fc1", b * T, bq.fc1_in, dn::Epilogue::none);
      blk.fc2 = linear(pre + "mlp.fc2", b * T, bq.fc2_in, dn::Epilogue::accumulate);
      // K and V are stored as s8 (q - zp): the quantizer keeps (q - zp) within s8 for them.
      blk.qkv_in = grid_of(bq.qkv_in, false);
      blk.q = grid_of(bq.q, false);
      blk.k = grid_of(bq.k, true);
      blk.v = grid_of(bq.v, true);
      blk.attn = grid_of(bq.attn, false);
      blk.proj_in = grid_of(bq.proj_in, false);
      blk.fc1_in = grid_of(bq.fc1_in, false);
      blk.fc2_in = grid_of(bq.fc2_in, false);
      blk.qk_pd =
          dn::batched_u8s8_pd(b * H, T, dh, T, true, bq.q.delta * bq.k.delta, bq.q.zero_point);
      blk.av_pd = dn::batched_u8s8_pd(b * H, T, T, dh, false, bq.attn.delta * bq.v.delta,
                                      bq.attn.zero_point);
      *scratch = std::max({*scratch, blk.qk_pd.scratchpad_desc().get_size(),
                           blk.av_pd.scratchpad_desc().get_size()});
      blk.norm1_w = model_->weight(pre + "norm1.weight");
      blk.norm1_b = model_->weight(pre + "norm1.bias");
      blk.norm2_w = model_->weight(pre + "norm2.weight");
      blk.norm2_b = model_->weight(pre + "norm2.bias");
      plan->blocks.push_back(std::move(blk));
    }
    int_plans_.push_back(std::move(plan));
  }
}

void VitSession::bind_int_plans(const memory &scratch) {
  SessionBuffers &B = *buf_;
  IntBuffers &I = *ibuf_;
  auto bind = [&](IntPlan::Linear &l, const void *src, float *dst) {
    l.bound.prim = dnnl::matmul(l.pd);
    l.bound.impl = l.pd.impl_info_str();
    l.bound.args = {
        {DNNL_ARG_SRC, dn::wrap(l.pd.src_desc(), src)},
        {DNNL_ARG_WEIGHTS, model_->packed_weight_s8(l.name + ".weight", l.pd.weights_desc())},
        {DNNL_ARG_BIAS, dn::wrap(l.pd.bias_desc(), I.biases.at(l.name).data())},
        {DNNL_ARG_DST, dn::wrap(l.pd.dst_desc(), dst)},
        {DNNL_ARG_SCRATCHPAD, scratch}};
  };
  auto bind_batched = [&](const dnnl::matmul::primitive_desc &pd, dn::BoundPrimitive &bp,
                          const void *a, const void *b, float *dst) {
    bp.prim = dnnl::matmul(pd);
    bp.impl = pd.impl_info_str();
    bp.args = {{DNNL_ARG_SRC, dn::wrap(pd.src_desc(), a)},
               {DNNL_ARG_WEIGHTS, dn::wrap(pd.weights_desc(), b)},
               {DNNL_ARG_DST, dn::wrap(pd.dst_desc(), dst)},
               {DNNL_ARG_SCRATCHPAD, scratch}};
  };
  for (auto &plan : int_plans_) {
    bind(plan->patch, I.patches.ptr, B.patch_out.ptr);
    bind(plan->head, I.pooled.ptr, B.logits.ptr);
    if (model_->config().distilled) bind(plan->head_dist, I.pooled_dist.ptr, B.logits_dist.ptr);
    for (auto &blk : plan->blocks) {
      bind(blk.qkv, I.h.ptr, B.qkv.ptr);
      bind(blk.proj, I.merged.ptr, B.x.ptr);
      bind(blk.fc1, I.h.ptr, B.mlp.ptr);
      bind(blk.fc2, I.mlp.ptr, B.x.ptr);
      bind_batched(blk.qk_pd, blk.qk, I.q.ptr, I.k.ptr, B.scores.ptr);
      bind_batched(blk.av_pd, blk.av, I.attn.ptr, I.v.ptr, B.attn_out.ptr);
    }
  }
}

VitSession::IntPlan &VitSession::int_plan_for(int n) {
  for (auto it = int_plans_.rbegin(); it != int_plans_.rend(); ++it)
    if ((*it)->batch <= n) return **it;
  return *int_plans_.front();
}

void VitSession::forward_int(const float *nchw, int n, float *logits, const TapFn *taps) {
  const VitConfig &c = model_->config();
  IntPlan &plan = int_plan_for(n);
  SessionBuffers &B = *buf_;
  IntBuffers &I = *ibuf_;
  const int64_t T = c.tokens(), D = c.embed_dim, H = c.num_heads, dh = c.head_dim();
  const int64_t rows = n * T, head_rows = n * H * T;
  auto tap = [&](Tap t, int block, const float *data, int64_t r, int64_t cols) {
    if (taps) (*taps)(TapEvent{t, block, data, r, cols});
  };

  using Op = OpProfile::Op;
  OpClock clk(options_.profile ? &profile_ : nullptr);
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
  for (int l = 0; l < c.depth; ++l) {
    IntPlan::Block &blk = plan.blocks[l];
    kernels::layernorm_quant(B.x.ptr, I.h.ptr, rows, D, blk.norm1_w, blk.norm1_b, c.ln_eps,
                             blk.qkv_in);
    clk.lap(Op::layernorm);
    blk.qkv.bound.run(stream_);
    clk.lap(Op::gemm_linear);
    void *const heads[3] = {I.q.ptr, I.k.ptr, I.v.ptr};
    const kernels::QuantGrid grids[3] = {blk.q, blk.k, blk.v};
    kernels::split_heads_quant(B.qkv.ptr, heads, grids, n, T, 3, H, dh);
    clk.lap(Op::quantize_reorder);
    blk.qk.run(stream_);
    clk.lap(Op::gemm_attention);
    kernels::softmax_quant(B.scores.ptr, I.attn.ptr, head_rows, T, scale, blk.attn);
    clk.lap(Op::softmax);
    blk.av.run(stream_);
    clk.lap(Op::gemm_attention);
    kernels::merge_heads_quant(B.attn_out.ptr, I.merged.ptr, n, H, T, dh, blk.proj_in);
    clk.lap(Op::quantize_reorder);
    blk.proj.bound.run(stream_);  // x += attn · Wproj + b
    tap(Tap::attn_residual, l, B.x.ptr, rows, D);
    clk.lap(Op::gemm_linear);
    kernels::layernorm_quant(B.x.ptr, I.h.ptr, rows, D, blk.norm2_w, blk.norm2_b, c.ln_eps,
                             blk.fc1_in);
    clk.lap(Op::layernorm);
    blk.fc1.bound.run(stream_);
    clk.lap(Op::gemm_linear);
    kernels::gelu_quant(B.mlp.ptr, I.mlp.ptr, rows * c.mlp_hidden, blk.fc2_in);
    clk.lap(Op::gelu);
    blk.fc2.bound.run(stream_);  // x += mlp · W2 + b
    tap(Tap::block_out, l, B.x.ptr, rows, D);
    clk.lap(Op::gemm_linear);
  }

  pool_prefix_tokens(*model_, B, n);
  tap(Tap::prelogits, -1, B.pooled.ptr, n, D);
  clk.lap(Op::layernorm);
  kernels::quantize(B.pooled.ptr, I.pooled.ptr, n * D, plan.head_in);
  clk.lap(Op::quantize_reorder);
  plan.head.bound.run(stream_);
  clk.lap(Op::gemm_linear);
  if (c.distilled) {
    kernels::quantize(B.pooled_dist.ptr, I.pooled_dist.ptr, n * D, plan.head_in);
    clk.lap(Op::quantize_reorder);
    plan.head_dist.bound.run(stream_);
    clk.lap(Op::gemm_linear);
  }
  write_logits(*model_, B, n, logits);
  clk.lap(Op::other);
}

}  // namespace vqm

namespace vqm {

std::vector<std::string> VitSession::int_kernel_report() const {
  std::vector<std::string> out;
  for (const auto &p : int_plans_) {
    const std::string b = "batch " + std::to_string(p->batch) + " int8 ";
    out.push_back(b + "patch_embed: " + p->patch.bound.impl);
    out.push_back(b + "qkv: " + p->blocks[0].qkv.bound.impl);
    out.push_back(b + "q*k^T: " + p->blocks[0].qk.impl);
    out.push_back(b + "attn*v: " + p->blocks[0].av.impl);
    out.push_back(b + "proj: " + p->blocks[0].proj.bound.impl);
    out.push_back(b + "fc1: " + p->blocks[0].fc1.bound.impl);
    out.push_back(b + "fc2: " + p->blocks[0].fc2.bound.impl);
    out.push_back(b + "head: " + p->head.bound.impl);
  }
  return out;
}

}  // namespace vqm
