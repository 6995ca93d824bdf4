// VQM_MULTIVERSION: compile a hot loop for AVX-512, AVX2 and baseline x86-64 and pick the clone
// at load time (GCC/Clang function multiversioning). The project's baseline target has only SSE2,
// where the double-precision reductions of a search run 2 lanes wide.
#pragma once

// Not under ThreadSanitizer: the clone resolver runs as an ifunc during relocation, before the
// TSan runtime is initialised, and its instrumentation crashes there (every binary segfaulted
// at load in the TSan build).
#if defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define VQM_NO_MULTIVERSION
#endif
#endif
#if defined(__SANITIZE_THREAD__)
#define VQM_NO_MULTIVERSION
#endif

#if defined(__x86_64__) && defined(__has_attribute) && !defined(VQM_NO_MULTIVERSION)
#if __has_attribute(target_clones)
#define VQM_MULTIVERSION \
  __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#endif
#endif
#ifndef VQM_MULTIVERSION
#define VQM_MULTIVERSION
#endif
