// oneDNN matmul primitives for linear layers and batched products. Plain shapes, no ViT names.
// Primitives are created once (session creation); weights are reordered once into the layout the
// primitive prefers (format_tag::any); scratchpads are caller-owned (scratchpad_mode::user) so a
// session can run without allocating and several sessions can run concurrently.
#pragma once
#include <cstdint>
#include <dnnl.hpp>
#include <string>
#include <unordered_map>
#include <vector>

namespace vqm::kernels::onednn {

// The process-wide CPU engine (oneDNN engines are thread-safe and cheap to share).
const dnnl::engine &cpu_engine();

enum class Epilogue {
  none,
  gelu_erf,    // y = gelu(x·W + b)
  quick_gelu,  // y = z * sigmoid(1.702 z), z = x·W + b (CLIP's QuickGELU: oneDNN's swish)
  accumulate,  // y += x·W + b (residual add fused as a sum post-op)
};

// The post-ops that implement `epilogue` (shared by the fp32 and int8 primitives).
dnnl::post_ops make_post_ops(Epilogue epilogue);

// y[M,N] = x[M,K] · Wᵀ + b, with W stored [N,K] row-major (PyTorch nn.Linear layout).
dnnl::matmul::primitive_desc linear_f32_pd(int64_t m, int64_t k, int64_t n, bool bias,
                                           Epilogue epilogue);

// c[b] = a[b] · B[b] for b < batch: a [batch,M,K] dense; when `b_is_nk`, B is stored
// [batch,N,K] (i.e. the product is a·Bᵀ, read through a transposed descriptor without a copy),
// otherwise [batch,K,N]; c [batch,M,N] dense.
dnnl::matmul::primitive_desc batched_f32_pd(int64_t batch, int64_t m, int64_t k, int64_t n,
                                            bool b_is_nk);

// Copies W [N,K] row-major into a new memory of layout `want` (a pd.weights_desc()).
dnnl::memory pack_linear_weights_f32(const float *w_nk, int64_t n, int64_t k,
                                     const dnnl::memory::desc &want);

// A primitive with its arguments bound once. run() passes them to the C API as the array built
// at binding: dnnl::primitive::execute(stream, map) builds a std::vector of them on every call,
// a heap allocation per primitive inside a forward that allocates nothing.
struct BoundPrimitive {
  dnnl::primitive prim;
  std::unordered_map<int, dnnl::memory> args;  // owns the memories exec_args points at
  std::vector<dnnl_exec_arg_t> exec_args;      // set by bind_matmul from args
  std::string impl;                            // impl_info_str(), e.g. "brg:avx512_core"
  void run(dnnl::stream &s) const {
    dnnl::error::wrap_c_api(
        dnnl_primitive_execute(prim.get(), s.get(), static_cast<int>(exec_args.size()),
                               exec_args.data()),
        "could not execute a primitive");
  }
};
// The matmul of `pd` bound to its operands: src, dst and (when pd has one) bias are wrapped
// with pd's descriptors; `weights` is a memory already in pd's layout (packed, or wrapped).
BoundPrimitive bind_matmul(const dnnl::matmul::primitive_desc &pd, const void *src,
                           const dnnl::memory &weights, void *dst, const dnnl::memory &scratchpad,
                           const void *bias = nullptr);

// While alive, the calling thread's OpenMP thread count (omp_get_max_threads(), the count of its
// next parallel regions and of oneDNN's) is `n`; the caller's own count is restored afterwards,
// so code that embeds vqm never sees its OpenMP state changed. Two uses:
// - creation: oneDNN plans a primitive's blocking and work split for omp_get_max_threads() at
//   creation (and keys its primitive cache on that count), but inside a parallel region it runs
//   every primitive on the calling thread alone (it never nests): a primitive that one thread of
//   a parallel region runs is created for n = 1, so that its plan is for the one thread it gets;
// - execution: a session runs with its own thread count. oneDNN's primitives and the kernels'
//   `omp parallel for` take it from here; a num_threads clause could not reach inside oneDNN.
class ScopedThreads {
 public:
  explicit ScopedThreads(int n);
  ~ScopedThreads();
  ScopedThreads(const ScopedThreads &) = delete;
  ScopedThreads &operator=(const ScopedThreads &) = delete;

 private:
  int saved_;
};

// Wraps a raw pointer as a memory of `md` (no copy, no ownership).
dnnl::memory wrap(const dnnl::memory::desc &md, const void *ptr);

// True when VQM_VERBOSE is set to a non-zero value: log chosen kernels to stderr.
bool verbose();

}  // namespace vqm::kernels::onednn
