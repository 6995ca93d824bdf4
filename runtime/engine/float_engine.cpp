#include "runtime/engine/float_engine.h"

#include <algorithm>
#include <cmath>

#include "kernels/kernels.h"

namespace vqm {

namespace dn = kernels::onednn;
using dnnl::memory;

namespace {
size_t scratch_size(const dnnl::matmul::primitive_desc &pd) {
  return pd.scratchpad_desc().get_size();
}
}  // namespace

// Primitive descriptors of one batch size: made for all batch sizes first, to size the shared
// scratchpad before binding memories.
struct FloatEngine::Pds {
  dnnl::matmul::primitive_desc patch, qk, av, head;  // head: none without a classifier
  std::array<dnnl::matmul::primitive_desc, kBlockLinears> linear;
};

FloatEngine::FloatEngine(const EngineSetup &setup)
    : model_(setup.model), stream_(dn::cpu_engine()) {
  std::vector<Pds> pds;
  size_t scratch = 0;
  for (int b : setup.sizes) pds.push_back(make_pds(b, &scratch));
  buf_ = std::make_unique<SessionBuffers>(model_->config(), setup.max_batch(), scratch);
  const memory scratch_mem = dn::wrap(
      memory::desc({static_cast<int64_t>(scratch)}, memory::data_type::u8, memory::format_tag::a),
      buf_->scratchpad.data());
  for (size_t i = 0; i < pds.size(); ++i)
    plans_.push_back(bind_plan(setup.sizes[i], pds[i], scratch_mem));
}

uint64_t FloatEngine::activation_bytes(const VitConfig &c, int64_t max_batch) {
  return SessionBuffers::bytes(c, max_batch);
}

FloatEngine::Pds FloatEngine::make_pds(int b, size_t *scratch) const {
  const VitConfig &c = model_->config();
  const int64_t T = c.tokens(), D = c.embed_dim, H = c.num_heads, dh = c.head_dim();
  Pds p;
  p.patch =
      dn::linear_f32_pd(b * c.num_patches(), c.patch_dim(), D, c.patch_bias, dn::Epilogue::none);
  for (const LinearSpec &l : block_linears())
    p.linear[static_cast<int>(l.id)] =
        dn::linear_f32_pd(b * T, linear_in(c, l.id), linear_out(c, l.id), linear_has_bias(c, l.id),
                          linear_epilogue(c, l.id, true));
  p.qk = dn::batched_f32_pd(b * H, T, dh, T, /*b_is_nk=*/true);
  p.av = dn::batched_f32_pd(b * H, T, T, dh, /*b_is_nk=*/false);
  if (c.num_classes > 0)
    p.head = dn::linear_f32_pd(b, D, c.num_classes, c.head_bias, dn::Epilogue::none);
  for (const auto *pd : {&p.patch, &p.qk, &p.av, &p.head})
    if (*pd) *scratch = std::max(*scratch, scratch_size(*pd));
  for (const auto &pd : p.linear) *scratch = std::max(*scratch, scratch_size(pd));
  return p;
}

std::unique_ptr<FloatEngine::Plan> FloatEngine::bind_plan(int b, const Pds &p,
                                                          const memory &scratch) {
  const VitConfig &c = model_->config();
  const int64_t T = c.tokens(), H = c.num_heads, dh = c.head_dim();
  SessionBuffers &B = *buf_;
  // `layer` names the weight and bias tensors ("blocks.3.mlp.fc1" + ".weight" / ".bias").
  auto bind_linear = [&](const dnnl::matmul::primitive_desc &pd, const float *src,
                         const std::string &layer, float *dst) {
    const bool bias = !pd.bias_desc().is_zero();
    return dn::bind_matmul(pd, src, model_->packed_weight(layer + ".weight", pd.weights_desc()),
                           dst, scratch, bias ? model_->weight(layer + ".bias") : nullptr);
  };
  auto bind_batched = [&](const dnnl::matmul::primitive_desc &pd, const float *a, const float *w,
                          float *dst) {
    return dn::bind_matmul(pd, a, dn::wrap(pd.weights_desc(), w), dst, scratch);
  };
  auto plan = std::make_unique<Plan>();
  plan->batch = b;
  plan->patch = bind_linear(p.patch, B.patches.ptr, "patch_embed.proj", B.patch_out.ptr);
  // Q, K, V sit one after another in `heads` ([3, b, H, T, dh]); Kᵀ is read in place.
  const int64_t qkv_size = int64_t{b} * H * T * dh;
  plan->qk = bind_batched(p.qk, B.heads.ptr, B.heads.ptr + qkv_size, B.scores.ptr);
  plan->av = bind_batched(p.av, B.scores.ptr, B.heads.ptr + 2 * qkv_size, B.attn_out.ptr);
  if (c.num_classes > 0) plan->head = bind_linear(p.head, B.pooled.ptr, "head", B.logits.ptr);
  if (c.distilled)
    plan->head_dist = bind_linear(p.head, B.pooled_dist.ptr, "head_dist", B.logits_dist.ptr);
  // Where each linear layer reads and writes (proj and fc2 accumulate into the residual x).
  const std::array<std::pair<const float *, float *>, kBlockLinears> io = {
      {{B.h.ptr, B.qkv.ptr}, {B.merged.ptr, B.x.ptr}, {B.h.ptr, B.mlp.ptr}, {B.mlp.ptr, B.x.ptr}}};
  for (int l = 0; l < c.depth; ++l) {
    const std::string pre = block_prefix(l);
    Plan::Block blk;
    for (const LinearSpec &ls : block_linears()) {
      const int i = static_cast<int>(ls.id);
      blk.linear[i] = bind_linear(p.linear[i], io[i].first, layer_name(l, ls.id), io[i].second);
    }
    blk.norm1_w = model_->weight(pre + "norm1.weight");
    blk.norm1_b = model_->weight(pre + "norm1.bias");
    blk.norm2_w = model_->weight(pre + "norm2.weight");
    blk.norm2_b = model_->weight(pre + "norm2.bias");
    plan->blocks.push_back(std::move(blk));
  }
  return plan;
}

std::vector<std::string> FloatEngine::kernel_report() const {
  std::vector<std::string> out;
  for (const auto &p : plans_) {
    const std::string b = "batch " + std::to_string(p->batch) + " ";
    out.push_back(b + "patch_embed: " + p->patch.impl);
    for (const LinearSpec &l : block_linears())
      out.push_back(b + l.name + ": " + p->blocks[0].linear[static_cast<int>(l.id)].impl);
    out.push_back(b + "q*k^T: " + p->qk.impl);
    out.push_back(b + "attn*v: " + p->av.impl);
    if (p->head.prim) out.push_back(b + "head: " + p->head.impl);
  }
  return out;
}

FloatEngine::Plan &FloatEngine::plan_for(int n) {
  // Largest planned batch that fits; plans are sorted ascending and include 1.
  for (auto it = plans_.rbegin(); it != plans_.rend(); ++it)
    if ((*it)->batch <= n) return **it;
  return *plans_.front();
}

// One forward pass's observers: the taps, the profile's clock, and the simulated quantization.
struct FloatEngine::Pass {
  const TapFn *taps;
  const ModelQuant *mq;  // nullptr: an fp32 model
  OpClock clk;

  void tap(Tap t, int block, const float *data, int64_t rows, int64_t cols) const {
    if (taps) (*taps)(TapEvent{t, block, data, rows, cols});
  }
  // Simulated quantization: round activations onto their grid right before the product that
  // consumes them (weights were dequantized at load), so fp32 arithmetic reproduces the integer
  // engine up to float rounding.
  void quantize(const ActQuant *a, float *data, int64_t count) const {
    if (!a || !a->enabled) return;
    if (const auto m = code_map(*a))
      kernels::fake_quant_mapped_f32(data, count, a->delta, a->zero_point, *m);
    else if (a->twin_shift > 0)
      kernels::fake_quant_twin_f32(data, count, a->delta, twin_codes(*a));
    else
      kernels::fake_quant_f32(data, count, a->delta, a->zero_point, a->qmax());
  }
  const ActQuant *point(int l, ActQuant BlockQuant::*member) const {
    return mq ? &(mq->blocks[l].*member) : nullptr;
  }
};

void FloatEngine::forward(const float *nchw, int n, float *out, const TapFn *taps,
                          OpProfile *profile) {
  const VitConfig &c = model_->config();
  const Plan &plan = plan_for(n);
  SessionBuffers &B = *buf_;
  const int64_t T = c.tokens(), D = c.embed_dim, P = c.num_patches();
  const ModelQuant *mq = model_->quant();
  Pass pass{taps, mq, OpClock(profile)};
  using Op = OpProfile::Op;
  // Patch embedding: a stride-p conv is one matmul over flattened patches.
  kernels::patchify_f32(nchw, B.patches.ptr, n, c.in_chans, c.image_size, c.image_size,
                        c.patch_size);
  pass.quantize(mq ? &mq->patch_in : nullptr, B.patches.ptr, n * P * c.patch_dim());
  pass.tap(Tap::patch_in, -1, B.patches.ptr, n * P, c.patch_dim());
  pass.clk.lap(Op::quantize_reorder);
  plan.patch.run(stream_);
  pass.clk.lap(Op::gemm_linear);
  embed_tokens(*model_, B.patch_out.ptr, B.x.ptr, n);
  pass.tap(Tap::embed, -1, B.x.ptr, n * T, D);
  pass.clk.lap(Op::other);
  finish(plan, 0, n, pass, out);
}

void FloatEngine::forward_from(int first, const float *x, int n, float *out, const TapFn *taps,
                               OpProfile *profile) {
  const VitConfig &c = model_->config();
  Pass pass{taps, model_->quant(), OpClock(profile)};
  std::copy(x, x + int64_t{n} * c.tokens() * c.embed_dim, buf_->x.ptr);
  pass.clk.lap(OpProfile::Op::other);
  finish(plan_for(n), first, n, pass, out);
}

void FloatEngine::finish(const Plan &plan, int first, int n, Pass &pass, float *out) {
  using Op = OpProfile::Op;
  const VitConfig &c = model_->config();
  SessionBuffers &B = *buf_;
  const int64_t D = c.embed_dim;
  const ModelQuant *mq = pass.mq;
  for (int l = first; l < c.depth; ++l) block(plan, l, n, pass);

  pool_tokens(*model_, B, n);
  if (c.num_classes > 0) pass.quantize(mq ? &mq->head_in : nullptr, B.pooled.ptr, n * D);
  pass.tap(Tap::prelogits, -1, B.pooled.ptr, n, D);
  pass.clk.lap(Op::layernorm);
  if (c.num_classes > 0) plan.head.run(stream_);
  if (c.distilled) {
    pass.quantize(mq ? &mq->head_in : nullptr, B.pooled_dist.ptr, n * D);
    plan.head_dist.run(stream_);
  }
  pass.clk.lap(Op::gemm_linear);
  write_outputs(*model_, B, n, out);
  pass.clk.lap(Op::other);
}

// Block l over all n images: x += attention(LN1(x)); x += MLP(LN2(x)).
void FloatEngine::block(const Plan &plan, int l, int n, Pass &pass) {
  using Op = OpProfile::Op;
  const VitConfig &c = model_->config();
  SessionBuffers &B = *buf_;
  const Plan::Block &blk = plan.blocks[l];
  const int64_t T = c.tokens(), D = c.embed_dim, H = c.num_heads, dh = c.head_dim();
  const int64_t rows = n * T, head_rows = n * H * T, per_head = head_rows * dh;
  float *q = B.heads.ptr, *k = q + per_head, *v = k + per_head;
  kernels::layernorm_f32(B.x.ptr, B.h.ptr, rows, D, blk.norm1_w, blk.norm1_b, c.ln_eps);
  pass.quantize(pass.point(l, &BlockQuant::qkv_in), B.h.ptr, rows * D);
  pass.tap(Tap::qkv_in, l, B.h.ptr, rows, D);
  pass.clk.lap(Op::layernorm);
  blk.linear[static_cast<int>(Linear::qkv)].run(stream_);
  pass.clk.lap(Op::gemm_linear);
  kernels::split_heads_f32(B.qkv.ptr, B.heads.ptr, n, T, 3, H, dh);
  pass.quantize(pass.point(l, &BlockQuant::q), q, per_head);
  pass.quantize(pass.point(l, &BlockQuant::k), k, per_head);
  pass.quantize(pass.point(l, &BlockQuant::v), v, per_head);
  pass.tap(Tap::q, l, q, head_rows, dh);
  pass.tap(Tap::k, l, k, head_rows, dh);
  pass.tap(Tap::v, l, v, head_rows, dh);
  pass.clk.lap(Op::quantize_reorder);
  plan.qk.run(stream_);
  pass.clk.lap(Op::gemm_attention);
  kernels::softmax_f32(B.scores.ptr, head_rows, T, 1.0f / std::sqrt(static_cast<float>(dh)));
  pass.quantize(pass.point(l, &BlockQuant::attn), B.scores.ptr, head_rows * T);
  pass.tap(Tap::attn_probs, l, B.scores.ptr, head_rows, T);
  pass.clk.lap(Op::softmax);
  plan.av.run(stream_);
  pass.clk.lap(Op::gemm_attention);
  kernels::merge_heads_f32(B.attn_out.ptr, B.merged.ptr, n, H, T, dh);
  pass.quantize(pass.point(l, &BlockQuant::proj_in), B.merged.ptr, rows * D);
  pass.tap(Tap::proj_in, l, B.merged.ptr, rows, D);
  pass.clk.lap(Op::quantize_reorder);
  blk.linear[static_cast<int>(Linear::proj)].run(stream_);  // x += attn · Wproj + b
  pass.tap(Tap::attn_residual, l, B.x.ptr, rows, D);
  pass.clk.lap(Op::gemm_linear);
  kernels::layernorm_f32(B.x.ptr, B.h.ptr, rows, D, blk.norm2_w, blk.norm2_b, c.ln_eps);
  pass.quantize(pass.point(l, &BlockQuant::fc1_in), B.h.ptr, rows * D);
  pass.tap(Tap::fc1_in, l, B.h.ptr, rows, D);
  pass.clk.lap(Op::layernorm);
  // The activation is fused into fc1: its time is charged to the GEMM.
  blk.linear[static_cast<int>(Linear::fc1)].run(stream_);
  pass.quantize(pass.point(l, &BlockQuant::fc2_in), B.mlp.ptr, rows * c.mlp_hidden);
  pass.tap(Tap::fc2_in, l, B.mlp.ptr, rows, c.mlp_hidden);
  pass.clk.lap(Op::gemm_linear);
  blk.linear[static_cast<int>(Linear::fc2)].run(stream_);  // x += mlp · W2 + b
  pass.tap(Tap::block_out, l, B.x.ptr, rows, D);
  pass.clk.lap(Op::gemm_linear);
}

}  // namespace vqm
