// The session: checks its options and the memory the model will need, picks the engine (integer
// for a quantized model unless simulated, else fp32) and splits requests into planned batches.
#include <omp.h>

#include <cstdlib>
#include <iostream>
#include <optional>

#include "kernels/onednn/matmul.h"
#include "runtime/engine/float_engine.h"
#include "runtime/engine/int_engine.h"
#include "runtime/engine/vit.h"
#include "runtime/io/error.h"

namespace vqm {

namespace dn = kernels::onednn;

VitSession::VitSession(std::shared_ptr<const VitModel> model, const SessionOptions &options)
    : model_(std::move(model)), options_(options) {
  if (options_.max_batch < 1 || options_.max_batch > 4096)
    fail(ErrorCode::invalid_argument,
         "max_batch must be in [1, 4096], got " + std::to_string(options_.max_batch));
  if (options_.n_threads < 0 || options_.n_threads > 1024)
    fail(ErrorCode::invalid_argument,
         "n_threads must be in [0, 1024], got " + std::to_string(options_.n_threads));
  const VitConfig &c = model_->config();
  EngineSetup setup;
  setup.model = model_;
  for (int b = 1; b < options_.max_batch; b *= 2) setup.sizes.push_back(b);
  setup.sizes.push_back(options_.max_batch);
  // The integer forward splits each batch's rows into one chunk per thread (int_engine.cpp).
  setup.threads = options_.n_threads > 0 ? options_.n_threads : omp_get_max_threads();
  const char *env = std::getenv("VQM_EXECUTION");
  const bool simulate = options_.simulate || (env && std::string(env) == "simulated");
  const bool integer = model_->quant() && !simulate;
  // A model file's geometry decides these sizes (a few KB of weights can declare 512x512 patches,
  // whose attention scores alone would need hundreds of GB), so they are checked first.
  const uint64_t need = integer ? IntEngine::activation_bytes(c, options_.max_batch, setup.threads)
                                : FloatEngine::activation_bytes(c, options_.max_batch);
  const uint64_t limit = default_limits().max_session_bytes;
  if (need > limit)
    fail(ErrorCode::limit, "a session of this model with max_batch " +
                               std::to_string(options_.max_batch) + " needs " +
                               std::to_string(need) +
                               " bytes of activations, over the limit max_session_bytes (" +
                               std::to_string(limit) + ")");
  // Primitives are planned (and their scratchpads sized) for the thread count they run with.
  std::optional<dn::ScopedThreads> creation_threads;
  if (options_.n_threads > 0) creation_threads.emplace(options_.n_threads);
  if (integer)
    engine_ = std::make_unique<IntEngine>(setup);
  else
    engine_ = std::make_unique<FloatEngine>(setup);
  sizes_ = setup.sizes;
  if (dn::verbose())
    for (const auto &line : kernel_report()) std::cerr << "vqm: " << line << "\n";
}

VitSession::~VitSession() = default;

std::vector<std::string> VitSession::kernel_report() const {
  return engine_->kernel_report();
}

template <class Forward>
void VitSession::split(const float *in, int64_t in_size, int64_t n, float *out, Forward &&forward) {
  if (n < 0) fail(ErrorCode::invalid_argument, "negative image count " + std::to_string(n));
  if (n > 0 && (!in || !out)) fail(ErrorCode::invalid_argument, "NULL input or output buffer");
  // The session's thread count for this run only: the caller's OpenMP state is left as it was.
  std::optional<dn::ScopedThreads> threads;
  if (options_.n_threads > 0) threads.emplace(options_.n_threads);
  const int64_t out_size = model_->config().n_outputs();
  int64_t done = 0;
  while (done < n) {
    // The largest planned batch size that fits what is left (the sizes include 1).
    const int64_t left = std::min<int64_t>(n - done, options_.max_batch);
    int chunk = 1;
    for (int s : sizes_)
      if (s <= left) chunk = s;
    forward(in + done * in_size, chunk, out + done * out_size);
    done += chunk;
  }
}

void VitSession::run(const float *nchw, int64_t n, float *out, const TapFn *taps) {
  OpProfile *profile = options_.profile ? &profile_ : nullptr;
  split(nchw, model_->config().input_size(), n, out, [&](const float *in, int chunk, float *o) {
    engine_->forward(in, chunk, o, taps, profile);
  });
}

void VitSession::run_from(int first, const float *x, int64_t n, float *out, const TapFn *taps) {
  const VitConfig &c = model_->config();
  if (first < 0 || first > c.depth)
    fail(ErrorCode::invalid_argument, "run_from: block " + std::to_string(first) +
                                          " is not in [0, " + std::to_string(c.depth) + "]");
  OpProfile *profile = options_.profile ? &profile_ : nullptr;
  split(x, c.tokens() * c.embed_dim, n, out, [&](const float *in, int chunk, float *o) {
    engine_->forward_from(first, in, chunk, o, taps, profile);
  });
}

}  // namespace vqm
