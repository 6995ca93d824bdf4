// VQM_MULTIVERSION: compile a hot loop for AVX-512, AVX2 and baseline x86-64 and pick the clone
// at load time (GCC/Clang function multiversioning). The project's baseline target has only SSE2,
// where the double-precision reductions of a search run 2 lanes wide.
#pragma once

#if defined(__x86_64__) && defined(__has_attribute)
#if __has_attribute(target_clones)
#define VQM_MULTIVERSION \
  __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#endif
#endif
#ifndef VQM_MULTIVERSION
#define VQM_MULTIVERSION
#endif
