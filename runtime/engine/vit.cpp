#include "runtime/engine/vit.h"

#include <omp.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <iostream>
#include <set>

#include "kernels/kernels.h"
#include "kernels/onednn/matmul.h"
#include "kernels/onednn/matmul_int8.h"
#include "runtime/engine/vit_internal.h"
#include "runtime/io/error.h"

namespace vqm {

namespace dn = kernels::onednn;
using dnnl::memory;

// ---------------------------------------------------------------------------------------------
// Model

std::shared_ptr<const VitModel> VitModel::load(VqmFile file) {
  return load_mutable(std::move(file));
}

namespace {
// The weights that may be stored as integers: the patch embedding, every linear layer of the
// layer table, the heads.
bool is_linear_weight(const std::string &name) {
  if (name == "patch_embed.proj.weight" || name == "head.weight" || name == "head_dist.weight")
    return true;
  if (name.rfind("blocks.", 0) != 0) return false;
  for (const LinearSpec &l : block_linears()) {
    const std::string suffix = std::string(".") + l.name + ".weight";
    if (name.size() > suffix.size() &&
        name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0)
      return true;
  }
  return false;
}

// The integer form of an i8/qB tensor with a per-row (or single) f32 scale, validated; the
// values stay packed in the file until a session or the simulation asks for them.
IntWeight int_weight_of(const VqmFile &f, const TensorInfo &t) {
  const std::string &src = f.source();
  if (t.scale.empty())
    fail(ErrorCode::format, src + ": quantized tensor '" + t.name + "' has no scale tensor");
  const TensorInfo &s = f.get(t.scale);
  const int64_t rows = t.shape.empty() ? 1 : t.shape[0];
  if (s.dtype != DType::f32 || (s.numel() != rows && s.numel() != 1))
    fail(ErrorCode::format, src + ": scale of '" + t.name + "' must be f32 with " +
                                std::to_string(rows) + " or 1 values, found " +
                                dtype_name(s.dtype) + " " + shape_str(s.shape));
  if (s.numel() == rows && rows > 1 && t.quant_axis != 0)
    fail(ErrorCode::format, src + ": per-channel scale of '" + t.name + "' needs quant_axis 0");
  IntWeight iw;
  iw.tensor = &t;
  iw.n = rows;
  iw.k = t.numel() / rows;
  const float *scale = reinterpret_cast<const float *>(s.data);
  iw.scale.resize(static_cast<size_t>(rows));
  for (int64_t r = 0; r < rows; ++r) {
    const float sc = scale[s.numel() == 1 ? 0 : r];
    if (!(std::isfinite(sc) && sc > 0))
      fail(ErrorCode::format,
           src + ": scale of '" + t.name + "' holds a non-positive or non-finite value");
    iw.scale[r] = sc;
  }
  return iw;
}
}  // namespace

std::shared_ptr<VitModel> VitModel::load_mutable(VqmFile file) {
  auto m = std::shared_ptr<VitModel>(new VitModel());
  m->file_ = std::move(file);
  const auto &meta = m->file_.meta();
  const std::string &src = m->file_.source();
  try {
    if (!meta.contains("model")) fail(ErrorCode::format, "no 'model' section");
    m->config_ = VitConfig::from_json(meta["model"]);
    if (!meta.contains("preprocess")) fail(ErrorCode::format, "no 'preprocess' section");
    m->preprocess_ =
        preprocess_from_json(meta["preprocess"], m->config_.in_chans, m->config_.image_size);
    if (meta.contains("labels")) {
      const auto &labels = meta["labels"];
      if (!labels.is_array() || labels.size() != static_cast<size_t>(m->config_.num_classes))
        fail(ErrorCode::format, "'labels' must be an array of num_classes (" +
                                    std::to_string(m->config_.num_classes) + ") strings");
      for (const auto &l : labels) {
        if (!l.is_string()) fail(ErrorCode::format, "'labels' holds a non-string");
        m->labels_.push_back(l.get<std::string>());
      }
    } else {
      for (int i = 0; i < m->config_.num_classes; ++i)
        m->labels_.push_back("class " + std::to_string(i));
    }
    if (meta.contains("quantization"))
      m->quant_ =
          quant_from_json(meta["quantization"], m->config_.depth, m->config_.num_classes > 0);
  } catch (const Error &e) {
    fail(e.code(), src + ": " + e.what());
  } catch (const nlohmann::json::exception &e) {
    fail(ErrorCode::format, src + ": " + e.what());
  }

  const auto expected = expected_tensors(m->config_);
  std::set<std::string> names;
  for (const auto &e : expected) {
    names.insert(e.name);
    const TensorInfo &t = m->file_.get(e.name);
    if (t.shape != e.shape)
      fail(ErrorCode::format, src + ": tensor '" + e.name + "': expected shape " +
                                  shape_str(e.shape) + ", found " + shape_str(t.shape));
    if (t.dtype == DType::f32) {
      m->weights_.emplace_back(e.name, reinterpret_cast<const float *>(t.data));
    } else if (t.dtype == DType::f16 || t.dtype == DType::bf16) {
      m->weights_.emplace_back(e.name, (m->converted_[e.name] = to_f32(t)).data());
    } else if (int_dtype_bits(t.dtype) > 0 && is_linear_weight(e.name)) {
      m->int_weights_[e.name] = int_weight_of(m->file_, t);
      names.insert(t.scale);
    } else {
      fail(ErrorCode::unsupported, src + ": tensor '" + e.name + "' has dtype " +
                                       dtype_name(t.dtype) +
                                       "; this build runs f32/f16/bf16 weights");
    }
  }
  for (const auto &t : m->file_.tensors())
    if (!names.count(t.name))
      fail(ErrorCode::format, src + ": unexpected tensor '" + t.name + "' for this model geometry");
  std::sort(m->weights_.begin(), m->weights_.end());
  return m;
}

const IntWeight *VitModel::int_weight(const std::string &name) const {
  auto it = int_weights_.find(name);
  return it == int_weights_.end() ? nullptr : &it->second;
}

memory VitModel::packed_weight_s8(const std::string &name, const memory::desc &layout) const {
  const IntWeight *iw = int_weight(name);
  if (!iw) fail(ErrorCode::internal, "no integer weight '" + name + "'");
  std::lock_guard<std::mutex> lock(pack_mutex_);
  for (const auto &[n, mem] : packed_)
    if (n == name && mem.get_desc() == layout) return mem;
  // Unpacked only for the reorder: the s8 copy lives in this scope, the packed one in the model.
  memory mem = dn::pack_linear_weights_s8(iw->unpack().data(), iw->n, iw->k, layout);
  packed_.emplace_back(name, mem);
  return mem;
}

void VitModel::set_weight(const std::string &name, std::vector<float> values) {
  auto it = std::lower_bound(weights_.begin(), weights_.end(),
                             std::make_pair(name, (const float *)nullptr));
  if (it == weights_.end() || it->first != name)
    fail(ErrorCode::internal, "no weight '" + name + "'");
  const TensorInfo &t = file_.get(name);
  if (static_cast<int64_t>(values.size()) != t.numel())
    fail(ErrorCode::internal, "set_weight '" + name + "': " + std::to_string(values.size()) +
                                  " values for " + shape_str(t.shape));
  std::vector<float> &owned = converted_[name];
  owned = std::move(values);
  it->second = owned.data();
  std::lock_guard<std::mutex> lock(pack_mutex_);
  packed_.erase(std::remove_if(packed_.begin(), packed_.end(),
                               [&](const auto &p) { return p.first == name; }),
                packed_.end());
}

std::vector<int8_t> IntWeight::unpack() const {
  std::vector<int8_t> q(static_cast<size_t>(n * k));
  unpack_int_rows(tensor->data, tensor->dtype, n, k, q.data());
  return q;
}

const float *VitModel::weight(const std::string &name) const {
  if (const IntWeight *iw = int_weight(name)) {
    // Simulated execution: the integers become exactly q * scale in fp32.
    std::lock_guard<std::mutex> lock(pack_mutex_);
    std::vector<float> &out = dequantized_[name];
    if (out.empty()) {
      const std::vector<int8_t> q = iw->unpack();
      out.resize(q.size());
      for (size_t i = 0; i < q.size(); ++i) out[i] = q[i] * iw->scale[i / iw->k];
    }
    return out.data();
  }
  auto it = std::lower_bound(weights_.begin(), weights_.end(),
                             std::make_pair(name, (const float *)nullptr));
  if (it == weights_.end() || it->first != name)
    fail(ErrorCode::internal, "no weight '" + name + "'");
  return it->second;
}

memory VitModel::packed_weight(const std::string &name, const memory::desc &layout) const {
  const float *w = weight(name);  // before the lock: weight() may take it to dequantize
  std::lock_guard<std::mutex> lock(pack_mutex_);
  for (const auto &[n, mem] : packed_)
    if (n == name && mem.get_desc() == layout) return mem;
  const TensorInfo &t = file_.get(name);
  // Conv weights [D, C, p, p] are linear weights [D, C*p*p] (see patchify_f32).
  memory mem = dn::pack_linear_weights_f32(w, t.shape[0], t.numel() / t.shape[0], layout);
  packed_.emplace_back(name, mem);
  return mem;
}

// ---------------------------------------------------------------------------------------------
// Session

const char *OpProfile::name(int op) {
  static const char *const kNames[count] = {"GEMM (linear layers)",
                                            "GEMM (attention Q*K^T, A*V)",
                                            "softmax",
                                            "LayerNorm",
                                            "GELU",
                                            "quantize / reorder",
                                            "wait for other threads",
                                            "other (embedding, logits)"};
  return op >= 0 && op < count ? kNames[op] : "?";
}

double OpProfile::total() const {
  double t = 0;
  for (double s : seconds) t += s;
  return t;
}

// The primitives for one batch size, with arguments bound to the session buffers.
struct VitSession::Plan {
  int batch = 0;
  dn::BoundPrimitive patch, qk, av, head, head_dist;
  struct Block {
    std::array<dn::BoundPrimitive, kBlockLinears> linear;  // by Linear: qkv, proj, fc1, fc2
    const float *norm1_w, *norm1_b, *norm2_w, *norm2_b;    // looked up once, not per run
  };
  std::vector<Block> blocks;
};

namespace {
size_t scratch_size(const dnnl::matmul::primitive_desc &pd) {
  return pd.scratchpad_desc().get_size();
}
}  // namespace

VitSession::VitSession(std::shared_ptr<const VitModel> model, const SessionOptions &options)
    : model_(std::move(model)), options_(options), stream_(dn::cpu_engine()) {
  if (options_.max_batch < 1 || options_.max_batch > 4096)
    fail(ErrorCode::invalid_argument,
         "max_batch must be in [1, 4096], got " + std::to_string(options_.max_batch));
  if (options_.n_threads < 0 || options_.n_threads > 1024)
    fail(ErrorCode::invalid_argument,
         "n_threads must be in [0, 1024], got " + std::to_string(options_.n_threads));
  const VitConfig &c = model_->config();
  const int64_t T = c.tokens(), D = c.embed_dim, H = c.num_heads, dh = c.head_dim();

  for (int b = 1; b < options_.max_batch; b *= 2) sizes_.push_back(b);
  sizes_.push_back(options_.max_batch);
  const char *env = std::getenv("VQM_EXECUTION");
  const bool simulate = options_.simulate || (env && std::string(env) == "simulated");
  const bool int_mode = model_->quant() && !simulate;
  // The integer forward splits each batch's rows into one chunk per thread (vit_int8.cpp).
  const int64_t threads = options_.n_threads > 0 ? options_.n_threads : omp_get_max_threads();
  // A model file's geometry decides these sizes (a few KB of weights can declare 512x512 patches,
  // whose attention scores alone would need hundreds of GB), so they are checked first.
  const uint64_t need = SessionBuffers::bytes(c, options_.max_batch) +
                        (int_mode ? IntBuffers::bytes(c, options_.max_batch, threads) : 0);
  const uint64_t limit = default_limits().max_session_bytes;
  if (need > limit)
    fail(ErrorCode::limit, "a session of this model with max_batch " +
                               std::to_string(options_.max_batch) + " needs " +
                               std::to_string(need) +
                               " bytes of activations, over the limit max_session_bytes (" +
                               std::to_string(limit) + ")");

  // First pass: primitive descriptors, to size the shared scratchpad before binding memories.
  struct Pds {
    dnnl::matmul::primitive_desc patch, qk, av, head;  // head: none without a classifier
    std::array<dnnl::matmul::primitive_desc, kBlockLinears> linear;
  };
  std::vector<Pds> pds;
  size_t scratch = 0;
  // fp32 primitives are planned (and their scratchpad sized) for the thread count they run with.
  std::optional<dn::ScopedThreads> creation_threads;
  if (options_.n_threads > 0) creation_threads.emplace(options_.n_threads);
  if (int_mode) build_int_plans(sizes_, threads, &scratch);
  for (int b : int_mode ? std::vector<int>{} : sizes_) {
    Pds p;
    p.patch =
        dn::linear_f32_pd(b * c.num_patches(), c.patch_dim(), D, c.patch_bias, dn::Epilogue::none);
    for (const LinearSpec &l : block_linears())
      p.linear[static_cast<int>(l.id)] =
          dn::linear_f32_pd(b * T, linear_in(c, l.id), linear_out(c, l.id),
                            linear_has_bias(c, l.id), linear_epilogue(c, l.id, true));
    p.qk = dn::batched_f32_pd(b * H, T, dh, T, /*b_is_nk=*/true);
    p.av = dn::batched_f32_pd(b * H, T, T, dh, /*b_is_nk=*/false);
    if (c.num_classes > 0)
      p.head = dn::linear_f32_pd(b, D, c.num_classes, c.head_bias, dn::Epilogue::none);
    for (const auto *pd : {&p.patch, &p.qk, &p.av, &p.head})
      if (*pd) scratch = std::max(scratch, scratch_size(*pd));
    for (const auto &pd : p.linear) scratch = std::max(scratch, scratch_size(pd));
    pds.push_back(p);
  }
  buf_ = std::make_unique<SessionBuffers>(c, options_.max_batch, scratch);
  SessionBuffers &B = *buf_;
  const memory scratch_mem = dn::wrap(
      memory::desc({static_cast<int64_t>(scratch)}, memory::data_type::u8, memory::format_tag::a),
      B.scratchpad.data());

  // `layer` names the weight and bias tensors ("blocks.3.mlp.fc1" + ".weight" / ".bias"); the
  // bias is bound when the primitive has one.
  auto bind_linear = [&](const dnnl::matmul::primitive_desc &pd, const float *src,
                         const std::string &layer, float *dst) {
    dn::BoundPrimitive bp;
    bp.prim = dnnl::matmul(pd);
    bp.impl = pd.impl_info_str();
    bp.args = {{DNNL_ARG_SRC, dn::wrap(pd.src_desc(), src)},
               {DNNL_ARG_WEIGHTS, model_->packed_weight(layer + ".weight", pd.weights_desc())},
               {DNNL_ARG_DST, dn::wrap(pd.dst_desc(), dst)},
               {DNNL_ARG_SCRATCHPAD, scratch_mem}};
    if (!pd.bias_desc().is_zero())
      bp.args[DNNL_ARG_BIAS] = dn::wrap(pd.bias_desc(), model_->weight(layer + ".bias"));
    return bp;
  };
  auto bind_batched = [&](const dnnl::matmul::primitive_desc &pd, const float *a, const float *b,
                          float *dst) {
    dn::BoundPrimitive bp;
    bp.prim = dnnl::matmul(pd);
    bp.impl = pd.impl_info_str();
    bp.args = {{DNNL_ARG_SRC, dn::wrap(pd.src_desc(), a)},
               {DNNL_ARG_WEIGHTS, dn::wrap(pd.weights_desc(), b)},
               {DNNL_ARG_DST, dn::wrap(pd.dst_desc(), dst)},
               {DNNL_ARG_SCRATCHPAD, scratch_mem}};
    return bp;
  };

  if (int_mode) bind_int_plans(scratch_mem);
  for (size_t i = 0; i < pds.size(); ++i) {
    const int b = sizes_[i];
    const Pds &p = pds[i];
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
        {{B.h.ptr, B.qkv.ptr},
         {B.merged.ptr, B.x.ptr},
         {B.h.ptr, B.mlp.ptr},
         {B.mlp.ptr, B.x.ptr}}};
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
    plans_.push_back(std::move(plan));
  }
  if (dn::verbose())
    for (const auto &line : kernel_report()) std::cerr << "vqm: " << line << "\n";
}

VitSession::~VitSession() = default;

std::vector<std::string> VitSession::kernel_report() const {
  std::vector<std::string> out = int_kernel_report();
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

int VitSession::chunk_for(int n) const {
  for (auto it = sizes_.rbegin(); it != sizes_.rend(); ++it)
    if (*it <= n) return *it;
  return 1;
}

VitSession::Plan &VitSession::plan_for(int n) {
  // Largest planned batch that fits; plans are sorted ascending and include 1.
  for (auto it = plans_.rbegin(); it != plans_.rend(); ++it)
    if ((*it)->batch <= n) return **it;
  return *plans_.front();
}

void VitSession::run(const float *nchw, int64_t n, float *logits, const TapFn *taps) {
  if (n < 0) fail(ErrorCode::invalid_argument, "negative image count " + std::to_string(n));
  if (n > 0 && (!nchw || !logits)) fail(ErrorCode::invalid_argument, "NULL input or output buffer");
  // The session's thread count for this run only: the caller's OpenMP state is left as it was.
  std::optional<dn::ScopedThreads> threads;
  if (options_.n_threads > 0) threads.emplace(options_.n_threads);
  const VitConfig &c = model_->config();
  int64_t done = 0;
  while (done < n) {
    const int chunk = chunk_for(static_cast<int>(std::min<int64_t>(n - done, options_.max_batch)));
    forward(nchw + done * c.input_size(), chunk, logits + done * c.n_outputs(), taps);
    done += chunk;
  }
}

void VitSession::forward(const float *nchw, int n, float *logits, const TapFn *taps) {
  if (!int_plans_.empty()) return forward_int(nchw, n, logits, taps);
  const VitConfig &c = model_->config();
  Plan &plan = plan_for(n);
  SessionBuffers &B = *buf_;
  const int64_t T = c.tokens(), D = c.embed_dim, H = c.num_heads, dh = c.head_dim();
  const int64_t P = c.num_patches();
  auto tap = [&](Tap t, int block, const float *data, int64_t rows, int64_t cols) {
    if (taps) (*taps)(TapEvent{t, block, data, rows, cols});
  };
  // Simulated quantization: round activations onto their grid right before the product that
  // consumes them (weights were dequantized at load), so fp32 arithmetic reproduces the integer
  // engine up to float rounding.
  const ModelQuant *mq = model_->quant();
  auto quantize = [&](const ActQuant *a, float *data, int64_t count) {
    if (a && a->enabled) kernels::fake_quant_f32(data, count, a->delta, a->zero_point, a->qmax());
  };
  auto point = [&](int l, ActQuant BlockQuant::*member) -> const ActQuant * {
    return mq ? &(mq->blocks[l].*member) : nullptr;
  };

  using Op = OpProfile::Op;
  OpClock clk(options_.profile ? &profile_ : nullptr);
  // Patch embedding: a stride-p conv is one matmul over flattened patches.
  kernels::patchify_f32(nchw, B.patches.ptr, n, c.in_chans, c.image_size, c.image_size,
                        c.patch_size);
  quantize(mq ? &mq->patch_in : nullptr, B.patches.ptr, n * P * c.patch_dim());
  tap(Tap::patch_in, -1, B.patches.ptr, n * P, c.patch_dim());
  clk.lap(Op::quantize_reorder);
  plan.patch.run(stream_);
  clk.lap(Op::gemm_linear);
  embed_tokens(*model_, B.patch_out.ptr, B.x.ptr, n);
  tap(Tap::embed, -1, B.x.ptr, n * T, D);
  clk.lap(Op::other);

  const float scale = 1.0f / std::sqrt(static_cast<float>(dh));
  for (int l = 0; l < c.depth; ++l) {
    const Plan::Block &blk = plan.blocks[l];
    const int64_t rows = n * T, head_rows = n * H * T, per_head = head_rows * dh;
    float *q = B.heads.ptr, *k = q + per_head, *v = k + per_head;
    kernels::layernorm_f32(B.x.ptr, B.h.ptr, rows, D, blk.norm1_w, blk.norm1_b, c.ln_eps);
    quantize(point(l, &BlockQuant::qkv_in), B.h.ptr, rows * D);
    tap(Tap::qkv_in, l, B.h.ptr, rows, D);
    clk.lap(Op::layernorm);
    blk.linear[static_cast<int>(Linear::qkv)].run(stream_);
    clk.lap(Op::gemm_linear);
    kernels::split_heads_f32(B.qkv.ptr, B.heads.ptr, n, T, 3, H, dh);
    quantize(point(l, &BlockQuant::q), q, per_head);
    quantize(point(l, &BlockQuant::k), k, per_head);
    quantize(point(l, &BlockQuant::v), v, per_head);
    tap(Tap::q, l, q, head_rows, dh);
    tap(Tap::k, l, k, head_rows, dh);
    tap(Tap::v, l, v, head_rows, dh);
    clk.lap(Op::quantize_reorder);
    plan.qk.run(stream_);
    clk.lap(Op::gemm_attention);
    kernels::softmax_f32(B.scores.ptr, head_rows, T, scale);
    quantize(point(l, &BlockQuant::attn), B.scores.ptr, head_rows * T);
    tap(Tap::attn_probs, l, B.scores.ptr, head_rows, T);
    clk.lap(Op::softmax);
    plan.av.run(stream_);
    clk.lap(Op::gemm_attention);
    kernels::merge_heads_f32(B.attn_out.ptr, B.merged.ptr, n, H, T, dh);
    quantize(point(l, &BlockQuant::proj_in), B.merged.ptr, rows * D);
    tap(Tap::proj_in, l, B.merged.ptr, rows, D);
    clk.lap(Op::quantize_reorder);
    blk.linear[static_cast<int>(Linear::proj)].run(stream_);  // x += attn · Wproj + b
    tap(Tap::attn_residual, l, B.x.ptr, rows, D);
    clk.lap(Op::gemm_linear);
    kernels::layernorm_f32(B.x.ptr, B.h.ptr, rows, D, blk.norm2_w, blk.norm2_b, c.ln_eps);
    quantize(point(l, &BlockQuant::fc1_in), B.h.ptr, rows * D);
    tap(Tap::fc1_in, l, B.h.ptr, rows, D);
    clk.lap(Op::layernorm);
    blk.linear[static_cast<int>(Linear::fc1)].run(
        stream_);  // activation fused: charged to the GEMM
    quantize(point(l, &BlockQuant::fc2_in), B.mlp.ptr, rows * c.mlp_hidden);
    tap(Tap::fc2_in, l, B.mlp.ptr, rows, c.mlp_hidden);
    clk.lap(Op::gemm_linear);
    blk.linear[static_cast<int>(Linear::fc2)].run(stream_);  // x += mlp · W2 + b
    tap(Tap::block_out, l, B.x.ptr, n * T, D);
    clk.lap(Op::gemm_linear);
  }

  pool_tokens(*model_, B, n);
  if (c.num_classes > 0) quantize(mq ? &mq->head_in : nullptr, B.pooled.ptr, n * D);
  tap(Tap::prelogits, -1, B.pooled.ptr, n, D);
  clk.lap(Op::layernorm);
  if (c.num_classes > 0) plan.head.run(stream_);
  if (c.distilled) {
    quantize(mq ? &mq->head_in : nullptr, B.pooled_dist.ptr, n * D);
    plan.head_dist.run(stream_);
  }
  clk.lap(Op::gemm_linear);
  write_outputs(*model_, B, n, logits);
  clk.lap(Op::other);
}

void embed_tokens(const VitModel &model, const float *patch_out, float *x, int64_t n) {
  const VitConfig &c = model.config();
  const int64_t T = c.tokens(), D = c.embed_dim, P = c.num_patches(),
                prefix = c.num_prefix_tokens();
  // The prefix rows in order (class, distillation, registers) and where each token's position
  // embedding starts: without prefix rows in pos_embed, prefix tokens get none.
  std::vector<const float *> prefix_rows;
  if (c.class_token) prefix_rows.push_back(model.weight("cls_token"));
  if (c.distilled) prefix_rows.push_back(model.weight("dist_token"));
  for (int r = 0; r < c.reg_tokens; ++r) prefix_rows.push_back(model.weight("reg_token") + r * D);
  const float *pos = model.weight("pos_embed");
  const int64_t pos_skip = c.pos_embed_prefix ? 0 : prefix;  // tokens without a pos_embed row
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t b = 0; b < n; ++b)
    for (int64_t t = 0; t < T; ++t) {
      const float *src = t < prefix ? prefix_rows[t] : patch_out + (b * P + t - prefix) * D;
      float *dst = x + (b * T + t) * D;
      if (t < pos_skip) {
        std::memcpy(dst, src, D * sizeof(float));
      } else {
        const float *pe = pos + (t - pos_skip) * D;
        for (int64_t k = 0; k < D; ++k) dst[k] = src[k] + pe[k];
      }
    }
  if (c.norm_pre)
    kernels::layernorm_f32(x, x, n * T, D, model.weight("norm_pre.weight"),
                           model.weight("norm_pre.bias"), c.ln_eps);
}

void pool_tokens(const VitModel &model, SessionBuffers &B, int64_t n) {
  const VitConfig &c = model.config();
  const int64_t T = c.tokens(), D = c.embed_dim, prefix = c.num_prefix_tokens();
  const std::string norm = c.fc_norm ? "fc_norm" : "norm";
  const float *w = model.weight(norm + ".weight"), *bias = model.weight(norm + ".bias");
  if (c.pool == Pool::token) {
    // The final norm only on the rows the heads read: LayerNorm is per row, so this equals
    // timm's norm over all tokens followed by selection (and fc_norm after selection).
    for (int64_t b = 0; b < n; ++b) {
      std::memcpy(B.pooled.ptr + b * D, B.x.ptr + b * T * D, D * sizeof(float));
      if (c.distilled)
        std::memcpy(B.pooled_dist.ptr + b * D, B.x.ptr + (b * T + 1) * D, D * sizeof(float));
    }
    kernels::layernorm_f32(B.pooled.ptr, B.pooled.ptr, n, D, w, bias, c.ln_eps);
    if (c.distilled)
      kernels::layernorm_f32(B.pooled_dist.ptr, B.pooled_dist.ptr, n, D, w, bias, c.ln_eps);
    return;
  }
  // Average of the patch tokens: after the final norm of every token (timm's "norm"), or
  // followed by fc_norm. h is free scratch here (the blocks are done).
  const float *rows = B.x.ptr;
  if (!c.fc_norm) {
    kernels::layernorm_f32(B.x.ptr, B.h.ptr, n * T, D, w, bias, c.ln_eps);
    rows = B.h.ptr;
  }
  for (int64_t b = 0; b < n; ++b) {
    float *out = B.pooled.ptr + b * D;
    std::fill(out, out + D, 0.f);
    for (int64_t t = prefix; t < T; ++t)
      for (int64_t k = 0; k < D; ++k) out[k] += rows[(b * T + t) * D + k];
    const float inv = 1.f / static_cast<float>(T - prefix);
    for (int64_t k = 0; k < D; ++k) out[k] *= inv;
  }
  if (c.fc_norm) kernels::layernorm_f32(B.pooled.ptr, B.pooled.ptr, n, D, w, bias, c.ln_eps);
}

void write_outputs(const VitModel &model, const SessionBuffers &B, int64_t n, float *out) {
  const VitConfig &c = model.config();
  const int64_t count = n * c.n_outputs();
  if (c.num_classes == 0) {
    std::memcpy(out, B.pooled.ptr, count * sizeof(float));  // the embedding
  } else if (c.distilled) {
    for (int64_t i = 0; i < count; ++i) out[i] = 0.5f * (B.logits.ptr[i] + B.logits_dist.ptr[i]);
  } else {
    std::memcpy(out, B.logits.ptr, count * sizeof(float));
  }
}

}  // namespace vqm
