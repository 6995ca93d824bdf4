// vqm-inspect M.vqm [--json]: what a .vqm holds. Format version, producer, model config,
// preprocessing, labels, quantization (bits per module, activation grids and the intervals they
// cover), the tensor table and the size by dtype. The file goes through the runtime's own readers
// (container, model config, preprocessing, quantization spec), so a corrupt file fails here with
// the same one-line message a load would give. The text and --json outputs print one report.
#include <cinttypes>
#include <cstdio>
#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>

#include "apps/cli.h"
#include "models/layer_table.h"
#include "models/quant_spec.h"
#include "models/vit_config.h"
#include "runtime/io/error.h"
#include "runtime/io/format.h"

namespace {

using nlohmann::json;

json tensor_table(const vqm::VqmFile &f) {
  json rows = json::array();
  for (const auto &t : f.tensors()) {
    json r = {{"name", t.name},
              {"dtype", vqm::dtype_name(t.dtype)},
              {"shape", t.shape},
              {"bytes", t.nbytes},
              {"offset", t.offset}};
    if (!t.scale.empty()) r["scale"] = t.scale;
    if (t.quant_axis >= 0) r["quant_axis"] = t.quant_axis;
    rows.push_back(r);
  }
  return rows;
}

json size_by_dtype(const vqm::VqmFile &f, uint64_t file_bytes) {
  std::map<std::string, std::pair<int64_t, uint64_t>> by;  // dtype -> tensors, bytes
  for (const auto &t : f.tensors()) {
    auto &e = by[vqm::dtype_name(t.dtype)];
    e.first += 1;
    e.second += t.nbytes;
  }
  json out = json::array();
  for (const auto &[dtype, e] : by)
    out.push_back({{"dtype", dtype},
                   {"tensors", e.first},
                   {"bytes", e.second},
                   {"fraction", file_bytes ? double(e.second) / double(file_bytes) : 0.0}});
  return out;
}

// The quantization section as stored, with "modules" and "activations" rewritten as lists in
// forward order, each activation with the interval [min, max] its grid represents, and each
// module with the storage dtype of its weights.
json quantization(const json &stored, const vqm::VitConfig &cfg, const vqm::VqmFile &f) {
  const vqm::ModelQuant q = vqm::quant_from_json(stored, cfg.depth, cfg.num_classes > 0);
  json out = stored;
  json acts = json::array(), modules = json::array();
  auto act = [&](const std::string &name, const vqm::ActQuant &a) {
    json j = {{"name", name},
              {"bits", a.bits},
              {"grid", !a.levels.empty()  ? "levels"
                       : a.twin_shift > 0 ? "two-range"
                                          : "uniform"},
              {"delta", a.delta},
              {"zero_point", a.zero_point},
              {"min", double(a.delta) * (a.lowest_code() - a.zero_point)},
              {"max", double(a.delta) * (a.highest_code() - a.zero_point)}};
    if (!a.levels.empty()) j["levels"] = a.levels;
    acts.push_back(j);
  };
  auto module = [&](const std::string &name, int bits, const std::string &weight) {
    const vqm::TensorInfo *w = f.find(weight);
    modules.push_back(
        {{"name", name}, {"bits", bits}, {"weight_dtype", w ? vqm::dtype_name(w->dtype) : "-"}});
  };
  // The patch embedding and the head quantize weights and inputs with the same ("edge") bits.
  act("patch_embed.input", q.patch_in);
  module("patch_embed", q.patch_in.bits, "patch_embed.proj.weight");
  for (int b = 0; b < cfg.depth; ++b) {
    const std::string pre = vqm::block_prefix(b);
    const vqm::BlockQuant &bq = q.blocks[static_cast<size_t>(b)];
    for (const auto &p : vqm::block_points()) act(pre + p.key, bq.*p.member);
    // A module's weight dtype is that of its first linear layer (all share its bits).
    for (const char *m : vqm::kBlockModules)
      for (const auto &l : vqm::block_linears())
        if (std::string(l.module) == m) {
          module(vqm::module_name(b, m), std::string(m) == "attn" ? bq.attn_bits : bq.mlp_bits,
                 vqm::layer_name(b, l.id) + ".weight");
          break;
        }
  }
  if (cfg.num_classes > 0) {
    act("head.input", q.head_in);
    module("head", q.head_in.bits, "head.weight");
  }
  out["activations"] = acts;
  out["modules"] = modules;
  return out;
}

json build_report(const std::string &path) {
  const vqm::VqmFile f = vqm::VqmFile::from_file(path);
  const uint64_t file_bytes = std::filesystem::file_size(path);
  const json &meta = f.meta();
  auto get = [&](const char *key) { return meta.contains(key) ? meta[key] : json(); };
  json r = {{"file", path},
            {"file_bytes", file_bytes},
            {"format_version", vqm::kVqmVersion},  // the reader accepts no other version
            {"producer", get("producer")},
            {"model", get("model")},
            {"preprocess", get("preprocess")},
            {"labels", get("labels")},
            {"quantization", get("quantization")}};
  // Without a model config the sections are shown as stored: the container alone is valid.
  if (meta.contains("model")) {
    try {
      const vqm::VitConfig cfg = vqm::VitConfig::from_json(meta["model"]);
      if (meta.contains("preprocess"))
        vqm::preprocess_from_json(meta["preprocess"], cfg.in_chans, cfg.image_size);
      if (meta.contains("quantization"))
        r["quantization"] = quantization(meta["quantization"], cfg, f);
    } catch (const vqm::Error &e) {
      vqm::fail(e.code(), f.source() + ": " + e.what());
    } catch (const json::exception &e) {
      vqm::fail(vqm::ErrorCode::format, f.source() + ": " + e.what());
    }
  }
  r["n_labels"] = r["labels"].is_array() ? r["labels"].size() : 0;
  r["tensors"] = tensor_table(f);
  r["size_by_dtype"] = size_by_dtype(f, file_bytes);
  uint64_t tensor_bytes = 0;
  for (const auto &t : f.tensors()) tensor_bytes += t.nbytes;
  r["tensor_bytes"] = tensor_bytes;
  r["other_bytes"] = file_bytes - tensor_bytes;  // header, JSON, alignment padding
  return r;
}

// One line for people: "k=v, k=v" for objects, strings unquoted, floats to 6 digits (they were
// f32 before they became JSON doubles).
std::string flat(const json &j) {
  if (j.is_string()) return j.get<std::string>();
  if (j.is_number_float()) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%g", j.get<double>());
    return buf;
  }
  std::string s;
  if (j.is_array()) {
    for (const auto &v : j) s += (s.empty() ? "" : ",") + flat(v);
    return "[" + s + "]";
  }
  if (!j.is_object()) return j.dump();
  for (const auto &[k, v] : j.items())
    s += (s.empty() ? "" : ", ") + k + "=" + (v.is_object() ? "{" + flat(v) + "}" : flat(v));
  return s;
}

std::string shape_of(const json &shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + shape[i].dump();
  return s + "]";
}

void print_text(const json &r) {
  const double mb = 1e6;
  std::printf("file          %s (%.2f MB)\n", r["file"].get<std::string>().c_str(),
              r["file_bytes"].get<double>() / mb);
  std::printf("format        .vqm version %d, %zu tensors\n", r["format_version"].get<int>(),
              r["tensors"].size());
  std::printf("producer      %s\n", r["producer"].is_null() ? "-" : flat(r["producer"]).c_str());
  std::printf("model         %s\n", r["model"].is_null() ? "-" : flat(r["model"]).c_str());
  std::printf("preprocess    %s\n",
              r["preprocess"].is_null() ? "-" : flat(r["preprocess"]).c_str());
  std::string labels;
  if (r["labels"].is_array()) {
    for (size_t i = 0; i < r["labels"].size() && i < 5; ++i)
      labels += (i ? ", " : ": ") + flat(r["labels"][i]);
    if (r["labels"].size() > 5) labels += ", ...";
  }
  std::printf("labels        %zu%s\n", r["n_labels"].get<size_t>(), labels.c_str());

  const json &q = r["quantization"];
  if (q.is_null()) {
    std::printf("quantization  none (floating point)\n");
  } else if (!q.contains("modules") || !q["modules"].is_array()) {
    std::printf("quantization  %s\n", flat(q).c_str());
  } else {
    json summary = q;
    for (const char *k : {"modules", "activations", "settings", "calibration"}) summary.erase(k);
    std::printf("quantization  %s\n", flat(summary).c_str());
    if (q.contains("calibration"))
      std::printf("  calibration %s\n", flat(q["calibration"]).c_str());
    if (q.contains("settings")) std::printf("  settings    %s\n", flat(q["settings"]).c_str());
    std::printf("\n  %-20s %4s  %s\n", "module", "bits", "weights");
    for (const auto &m : q["modules"])
      std::printf("  %-20s %4d  %s\n", m["name"].get<std::string>().c_str(), m["bits"].get<int>(),
                  m["weight_dtype"].get<std::string>().c_str());
    std::printf("\n  %-28s %4s %-9s %12s %4s %12s %12s\n", "activation", "bits", "grid", "delta",
                "zp", "min", "max");
    for (const auto &a : q["activations"])
      std::printf("  %-28s %4d %-9s %12.6g %4d %12.6g %12.6g\n",
                  a["name"].get<std::string>().c_str(), a["bits"].get<int>(),
                  a["grid"].get<std::string>().c_str(), a["delta"].get<double>(),
                  a["zero_point"].get<int>(), a["min"].get<double>(), a["max"].get<double>());
  }

  std::printf("\n  %-40s %-5s %-20s %12s\n", "tensor", "dtype", "shape", "bytes");
  for (const auto &t : r["tensors"])
    std::printf("  %-40s %-5s %-20s %12" PRIu64 "\n", t["name"].get<std::string>().c_str(),
                t["dtype"].get<std::string>().c_str(), shape_of(t["shape"]).c_str(),
                t["bytes"].get<uint64_t>());

  std::printf("\n  %-8s %8s %14s %7s\n", "dtype", "tensors", "bytes", "share");
  for (const auto &d : r["size_by_dtype"])
    std::printf("  %-8s %8d %14" PRIu64 " %6.1f%%\n", d["dtype"].get<std::string>().c_str(),
                d["tensors"].get<int>(), d["bytes"].get<uint64_t>(),
                100 * d["fraction"].get<double>());
  std::printf("  %-8s %8s %14" PRIu64 " %6.1f%%   (header, JSON, alignment)\n", "other", "",
              r["other_bytes"].get<uint64_t>(),
              100 * r["other_bytes"].get<double>() / r["file_bytes"].get<double>());
}

}  // namespace

int main(int argc, char **argv) {
  return vqm::cli::run_tool("vqm-inspect", [&] {
    vqm::cli::Args args("vqm-inspect", "M.vqm [--json]",
                        {{"--json", "", "print the report as one JSON document"}});
    args.parse(argc, argv);
    if (args.positional().size() != 1) throw vqm::cli::UsageError("expected one .vqm file");
    const json report = build_report(args.positional()[0]);
    if (args.has("--json"))
      std::printf("%s\n", report.dump(2).c_str());
    else
      print_text(report);
    return 0;
  });
}
