#include <algorithm>
#include <cmath>
#include <set>

#include "kernels/onednn/matmul.h"
#include "kernels/onednn/matmul_int8.h"
#include "runtime/engine/vit.h"
#include "runtime/io/error.h"

namespace vqm {

namespace dn = kernels::onednn;
using dnnl::memory;

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

}  // namespace vqm
