#include "kernels/onednn/matmul.h"

#include <omp.h>

#include <cstdlib>
#include <stdexcept>

namespace vqm::kernels::onednn {

using dnnl::memory;
using tag = memory::format_tag;
using dt = memory::data_type;

const dnnl::engine &cpu_engine() {
  static const dnnl::engine engine(dnnl::engine::kind::cpu, 0);
  return engine;
}

bool verbose() {
  static const bool value = [] {
    const char *env = std::getenv("VQM_VERBOSE");
    return env && *env && std::string(env) != "0";
  }();
  return value;
}

dnnl::post_ops make_post_ops(Epilogue epilogue) {
  dnnl::post_ops ops;
  if (epilogue == Epilogue::gelu_erf)
    ops.append_eltwise(1.f, dnnl::algorithm::eltwise_gelu_erf, 0.f, 0.f);
  if (epilogue == Epilogue::quick_gelu)
    ops.append_eltwise(1.f, dnnl::algorithm::eltwise_swish, 1.702f, 0.f);
  if (epilogue == Epilogue::accumulate) ops.append_sum(1.f);
  return ops;
}

namespace {
dnnl::primitive_attr make_attr(Epilogue epilogue) {
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  attr.set_post_ops(make_post_ops(epilogue));
  return attr;
}
}  // namespace

dnnl::matmul::primitive_desc linear_f32_pd(int64_t m, int64_t k, int64_t n, bool bias,
                                           Epilogue epilogue) {
  const memory::desc src({m, k}, dt::f32, tag::ab);
  const memory::desc wei({k, n}, dt::f32, tag::any);
  const memory::desc dst({m, n}, dt::f32, tag::ab);
  const memory::desc bia = bias ? memory::desc({1, n}, dt::f32, tag::ab) : memory::desc();
  const dnnl::matmul::desc desc(src, wei, bia, dst);
  return dnnl::matmul::primitive_desc(desc, make_attr(epilogue), cpu_engine());
}

dnnl::matmul::primitive_desc batched_f32_pd(int64_t batch, int64_t m, int64_t k, int64_t n,
                                            bool b_is_nk) {
  const memory::desc src({batch, m, k}, dt::f32, tag::abc);
  // [batch,N,K] storage seen as logical [batch,K,N] is the "acb" permutation.
  const memory::desc wei({batch, k, n}, dt::f32, b_is_nk ? tag::acb : tag::abc);
  const memory::desc dst({batch, m, n}, dt::f32, tag::abc);
  const dnnl::matmul::desc desc(src, wei, dst);
  return dnnl::matmul::primitive_desc(desc, make_attr(Epilogue::none), cpu_engine());
}

memory pack_linear_weights_f32(const float *w_nk, int64_t n, int64_t k, const memory::desc &want) {
  // PyTorch [N,K] row-major is logical [K,N] in "ba" order.
  const memory::desc plain({k, n}, dt::f32, tag::ba);
  memory src(plain, cpu_engine(), const_cast<float *>(w_nk));
  memory dst(want, cpu_engine());
  dnnl::stream s(cpu_engine());
  dnnl::reorder(src, dst).execute(s, src, dst);
  s.wait();
  return dst;
}

ScopedThreads::ScopedThreads(int n) : saved_(omp_get_max_threads()) {
  omp_set_num_threads(n);
}
ScopedThreads::~ScopedThreads() {
  omp_set_num_threads(saved_);
}

memory wrap(const memory::desc &md, const void *ptr) {
  return memory(md, cpu_engine(), const_cast<void *>(ptr));
}

BoundPrimitive bind_matmul(const dnnl::matmul::primitive_desc &pd, const void *src,
                           const memory &weights, void *dst, const memory &scratchpad,
                           const void *bias) {
  BoundPrimitive bp;
  bp.prim = dnnl::matmul(pd);
  bp.impl = pd.impl_info_str();
  bp.args = {{DNNL_ARG_SRC, wrap(pd.src_desc(), src)},
             {DNNL_ARG_WEIGHTS, weights},
             {DNNL_ARG_DST, wrap(pd.dst_desc(), dst)},
             {DNNL_ARG_SCRATCHPAD, scratchpad}};
  if (!pd.bias_desc().is_zero()) {
    if (!bias) throw std::invalid_argument("bind_matmul: the primitive has a bias, none is given");
    bp.args[DNNL_ARG_BIAS] = wrap(pd.bias_desc(), bias);
  }
  for (const auto &[arg, mem] : bp.args) bp.exec_args.push_back({arg, mem.get()});
  return bp;
}

}  // namespace vqm::kernels::onednn
