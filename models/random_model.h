// Random-weight ViT/DeiT of a given geometry, for benchmarks and tests that need a model of the
// exact DeiT-T/S/B shape without a checkpoint. Weights follow timm's init scales (trunc-normal
// std 0.02, LayerNorm 1/0), so activations have realistic ranges.
#pragma once
#include <cstdint>
#include <string>

#include "models/vit_config.h"
#include "runtime/io/format.h"

namespace vqm {

// "deit_tiny_patch16_224" | "deit_small_patch16_224" | "deit_base_patch16_224" (also the short
// names deit_tiny / deit_small / deit_base). Throws vqm::Error(invalid_argument) otherwise.
VitConfig arch_config(const std::string &arch);

VqmWriter make_random_vit(const VitConfig &cfg, uint32_t seed);

}  // namespace vqm
