#include "models/layer_table.h"

namespace vqm {

const std::array<LinearSpec, kBlockLinears> &block_linears() {
  static const std::array<LinearSpec, kBlockLinears> table = {{
      {Linear::qkv, "attn.qkv", "attn", Tap::qkv_in, &BlockQuant::qkv_in, true},
      {Linear::proj, "attn.proj", "attn", Tap::proj_in, &BlockQuant::proj_in, false},
      {Linear::fc1, "mlp.fc1", "mlp", Tap::fc1_in, &BlockQuant::fc1_in, true},
      {Linear::fc2, "mlp.fc2", "mlp", Tap::fc2_in, &BlockQuant::fc2_in, true},
  }};
  return table;
}

const LinearSpec &linear_spec(Linear id) {
  return block_linears()[static_cast<size_t>(id)];
}

int64_t linear_out(const VitConfig &c, Linear id) {
  switch (id) {
    case Linear::qkv:
      return int64_t{3} * c.embed_dim;
    case Linear::fc1:
      return c.mlp_hidden;
    default:
      return c.embed_dim;
  }
}

int64_t linear_in(const VitConfig &c, Linear id) {
  return id == Linear::fc2 ? c.mlp_hidden : c.embed_dim;
}

bool linear_has_bias(const VitConfig &c, Linear id) {
  return id != Linear::qkv || c.qkv_bias;
}

std::string block_prefix(int block) {
  return "blocks." + std::to_string(block) + ".";
}
std::string layer_name(int block, Linear id) {
  return block_prefix(block) + linear_spec(id).name;
}
std::string module_name(int block, const char *m) {
  return block_prefix(block) + m;
}
std::string qk_name(int block) {
  return block_prefix(block) + "attn.q@k";
}
std::string av_name(int block) {
  return block_prefix(block) + "attn.a@v";
}

}  // namespace vqm
