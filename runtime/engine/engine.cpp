// The forward steps both engines share: the token embedding, the pooling and the outputs; and
// the profile's names.
#include <algorithm>
#include <cstring>

#include "kernels/kernels.h"
#include "runtime/engine/engine.h"

namespace vqm {

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

void embed_tokens(const VitModel &model, const float *patch_out, float *x, int64_t n) {
  const VitConfig &c = model.config();
  const int64_t T = c.tokens(), D = c.embed_dim, P = c.num_patches(),
                prefix = c.num_prefix_tokens();
  // The prefix rows in order (class, distillation, registers) and where each token's position
  // embedding starts: without prefix rows in pos_embed, prefix tokens get none. Looked up here,
  // not gathered into a container: a forward allocates nothing.
  const float *const cls = c.class_token ? model.weight("cls_token") : nullptr;
  const float *const dist = c.distilled ? model.weight("dist_token") : nullptr;
  const float *const reg = c.reg_tokens > 0 ? model.weight("reg_token") : nullptr;
  auto prefix_row = [&](int64_t t) {
    if (cls && t-- == 0) return cls;
    if (dist && t-- == 0) return dist;
    return reg + t * D;
  };
  const float *pos = model.weight("pos_embed");
  const int64_t pos_skip = c.pos_embed_prefix ? 0 : prefix;  // tokens without a pos_embed row
#pragma omp parallel for collapse(2) schedule(static)
  for (int64_t b = 0; b < n; ++b)
    for (int64_t t = 0; t < T; ++t) {
      const float *src = t < prefix ? prefix_row(t) : patch_out + (b * P + t - prefix) * D;
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
