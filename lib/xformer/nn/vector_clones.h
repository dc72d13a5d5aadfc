// XFORMER_VECTOR_CLONES: compile a hot CPU loop twice on x86-64, for AVX2 + FMA (x86-64-v3) and
// for the baseline, and let the loader pick the one the CPU runs (8-wide vectors where there
// are). The files using it are built with -fopenmp-simd and -fno-trapping-math (CMakeLists.txt).
#pragma once

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 11  // arch=x86-64-v3
#define XFORMER_VECTOR_CLONES __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define XFORMER_VECTOR_CLONES
#endif
