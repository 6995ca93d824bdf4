// The C boundary: every entry point catches everything, so no C++ exception reaches a caller,
// and reports through a status plus a thread-local message.
#include <cstddef>
#include <cstring>
#include <exception>
#include <functional>
#include <memory>
#include <new>
#include <string>

#include "runtime/engine/vit.h"
#include "runtime/io/error.h"
#include "runtime/io/image.h"
#include "vqm/vqm.h"

struct vqm_model {
  std::shared_ptr<const vqm::VitModel> impl;
};
struct vqm_session {
  std::unique_ptr<vqm::VitSession> impl;
  std::vector<float> image;  // preprocessed input for run_image_file, sized at creation
};

namespace {

thread_local std::string g_last_error;

vqm_status set_error(vqm_status status, const std::string &message) {
  g_last_error = message;
  return status;
}

// Runs `fn`, mapping every exception to a status. Clears the last error on success.
template <typename Fn>
vqm_status guarded(Fn &&fn) {
  try {
    fn();
    g_last_error.clear();
    return VQM_OK;
  } catch (const vqm::Error &e) {
    return set_error(static_cast<vqm_status>(e.code()), e.what());
  } catch (const std::bad_alloc &) {
    return set_error(VQM_ERR_OUT_OF_MEMORY, "out of memory");
  } catch (const dnnl::error &e) {
    return set_error(VQM_ERR_INTERNAL, std::string("oneDNN: ") + e.what());
  } catch (const std::exception &e) {
    return set_error(VQM_ERR_INTERNAL, e.what());
  } catch (...) {
    return set_error(VQM_ERR_INTERNAL, "unknown exception");
  }
}

void check_params_size(size_t given, size_t ours, const char *what) {
  // Older callers may pass a smaller struct; we read only what they gave (see has_field). A size
  // of 0 means the struct was never initialised, which is a bug worth reporting.
  if (given == 0 || given > 4096)
    vqm::fail(vqm::ErrorCode::invalid_argument,
              std::string(what) + ".struct_size is " + std::to_string(given) + ", expected " +
                  std::to_string(ours) + " (use the default_params() function)");
}

// Whether a caller's params struct of `struct_size` bytes (an older, smaller version perhaps)
// holds the field at [offset, offset + size): fields past its end are not read, they keep their
// defaults.
bool has_field(size_t struct_size, size_t offset, size_t size) {
  return struct_size >= offset + size;
}
#define VQM_HAS_FIELD(params, type, field) \
  has_field((params)->struct_size, offsetof(type, field), sizeof((params)->field))

}  // namespace

extern "C" {

const char *vqm_version(void) {
  return VQM_VERSION_STRING;
}

const char *vqm_status_string(vqm_status status) {
  // C callers may pass any int. Loading an enum outside its range is undefined in C++ (UBSan's
  // -fsanitize=enum traps it), so the bytes are read as an int instead.
  int code;
  std::memcpy(&code, &status, sizeof code);
  static_assert(sizeof code == sizeof status, "vqm_status is int-sized");
  switch (code) {
    case VQM_OK:
      return "ok";
    case VQM_ERR_INVALID_ARGUMENT:
      return "invalid argument";
    case VQM_ERR_IO:
      return "i/o error";
    case VQM_ERR_FORMAT:
      return "invalid format";
    case VQM_ERR_UNSUPPORTED:
      return "unsupported";
    case VQM_ERR_OUT_OF_MEMORY:
      return "out of memory";
    case VQM_ERR_LIMIT:
      return "limit exceeded";
    case VQM_ERR_BUFFER_TOO_SMALL:
      return "buffer too small";
    case VQM_ERR_INTERNAL:
      return "internal error";
  }
  return "unknown status";
}

const char *vqm_last_error(void) {
  return g_last_error.c_str();
}

vqm_model_params vqm_model_default_params(void) {
  vqm_model_params p{};
  p.struct_size = sizeof p;
  return p;
}

vqm_session_params vqm_session_default_params(void) {
  vqm_session_params p{};
  p.struct_size = sizeof p;
  p.n_threads = 0;
  p.max_batch = 1;
  return p;
}

static vqm_status load_common(vqm_model **out, const vqm_model_params *params,
                              const std::function<vqm::VqmFile()> &open) {
  if (!out) return set_error(VQM_ERR_INVALID_ARGUMENT, "vqm_model_load: out is NULL");
  *out = nullptr;
  return guarded([&] {
    if (params) {
      check_params_size(params->struct_size, sizeof(vqm_model_params), "vqm_model_params");
      if (VQM_HAS_FIELD(params, vqm_model_params, reserved) && params->reserved != 0)
        vqm::fail(
            vqm::ErrorCode::invalid_argument,
            "vqm_model_params.reserved is " + std::to_string(params->reserved) + ", must be 0");
    }
    auto model = std::make_unique<vqm_model>();
    model->impl = vqm::VitModel::load(open());
    *out = model.release();
  });
}

vqm_status vqm_model_load(const char *path, const vqm_model_params *params, vqm_model **out) {
  if (out) *out = nullptr;  // on every error, as the header promises
  if (!path) return set_error(VQM_ERR_INVALID_ARGUMENT, "vqm_model_load: path is NULL");
  return load_common(out, params, [&] { return vqm::VqmFile::from_file(path); });
}

vqm_status vqm_model_load_from_memory(const void *data, size_t size, const vqm_model_params *params,
                                      vqm_model **out) {
  if (out) *out = nullptr;  // on every error, as the header promises
  if (!data && size)
    return set_error(VQM_ERR_INVALID_ARGUMENT, "vqm_model_load_from_memory: data is NULL");
  return load_common(out, params,
                     [&] { return vqm::VqmFile::from_memory(data ? data : "", size); });
}

void vqm_model_free(vqm_model *model) {
  delete model;
}

int32_t vqm_model_n_classes(const vqm_model *model) {
  return model ? model->impl->config().num_classes : 0;
}
int32_t vqm_model_n_outputs(const vqm_model *model) {
  return model ? model->impl->config().n_outputs() : 0;
}
int32_t vqm_model_input_channels(const vqm_model *model) {
  return model ? model->impl->config().in_chans : 0;
}
int32_t vqm_model_input_size(const vqm_model *model) {
  return model ? model->impl->config().image_size : 0;
}

const char *vqm_model_label(const vqm_model *model, int32_t i) {
  if (!model || i < 0 || i >= static_cast<int32_t>(model->impl->labels().size())) return nullptr;
  return model->impl->labels()[static_cast<size_t>(i)].c_str();
}

vqm_status vqm_session_create(const vqm_model *model, const vqm_session_params *params,
                              vqm_session **out) {
  if (!out) return set_error(VQM_ERR_INVALID_ARGUMENT, "vqm_session_create: out is NULL");
  *out = nullptr;
  if (!model) return set_error(VQM_ERR_INVALID_ARGUMENT, "vqm_session_create: model is NULL");
  return guarded([&] {
    vqm::SessionOptions opt;
    if (params) {
      check_params_size(params->struct_size, sizeof(vqm_session_params), "vqm_session_params");
      if (VQM_HAS_FIELD(params, vqm_session_params, n_threads)) opt.n_threads = params->n_threads;
      if (VQM_HAS_FIELD(params, vqm_session_params, max_batch)) opt.max_batch = params->max_batch;
    }
    auto s = std::make_unique<vqm_session>();
    s->impl = std::make_unique<vqm::VitSession>(model->impl, opt);
    s->image.resize(static_cast<size_t>(model->impl->config().input_size()));
    *out = s.release();
  });
}

void vqm_session_free(vqm_session *session) {
  delete session;
}

static void check_output(const vqm_session *s, int64_t n, size_t n_out) {
  const int64_t need = n * s->impl->model().config().n_outputs();
  if (static_cast<uint64_t>(need) > n_out)
    vqm::fail(vqm::ErrorCode::buffer_too_small, "output buffer holds " + std::to_string(n_out) +
                                                    " floats, " + std::to_string(need) + " needed");
}

vqm_status vqm_session_run(vqm_session *session, const float *nchw, int32_t n, float *logits,
                           size_t n_logits) {
  if (!session) return set_error(VQM_ERR_INVALID_ARGUMENT, "vqm_session_run: session is NULL");
  if (n < 0) return set_error(VQM_ERR_INVALID_ARGUMENT, "vqm_session_run: n is negative");
  if (n > 0 && (!nchw || !logits))
    return set_error(VQM_ERR_INVALID_ARGUMENT, "vqm_session_run: input or logits is NULL");
  return guarded([&] {
    check_output(session, n, n_logits);
    session->impl->run(nchw, n, logits);
  });
}

vqm_status vqm_session_run_image_file(vqm_session *session, const char *path, float *logits,
                                      size_t n_logits) {
  if (!session || !path || !logits)
    return set_error(VQM_ERR_INVALID_ARGUMENT, "vqm_session_run_image_file: NULL argument");
  return guarded([&] {
    check_output(session, 1, n_logits);
    const auto &model = session->impl->model();
    const vqm::Image img = vqm::decode_image_file(path, model.config().in_chans);
    vqm::preprocess_image(img, model.preprocess(), session->image.data());
    session->impl->run(session->image.data(), 1, logits);
  });
}

vqm_status vqm_model_preprocess_image_file(const vqm_model *model, const char *path, float *out,
                                           size_t n_out) {
  if (!model || !path || !out)
    return set_error(VQM_ERR_INVALID_ARGUMENT, "vqm_model_preprocess_image_file: NULL argument");
  return guarded([&] {
    const auto &c = model->impl->config();
    if (static_cast<uint64_t>(c.input_size()) > n_out)
      vqm::fail(vqm::ErrorCode::buffer_too_small, "input buffer holds " + std::to_string(n_out) +
                                                      " floats, " + std::to_string(c.input_size()) +
                                                      " needed");
    vqm::preprocess_image(vqm::decode_image_file(path, c.in_chans), model->impl->preprocess(), out);
  });
}

}  // extern "C"
