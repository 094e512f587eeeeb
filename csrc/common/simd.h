// Vector width of the row loops and the run-time AVX2 pick, shared by every kernel that has two copies.
//
// On x86-64 a row loop can exist twice: 4-wide (SSE2, the baseline every x86-64 CPU has) and 8-wide in a
// function compiled with __attribute__((target("avx2"))), picked once at run time by use_avx2(). The wheel
// stays portable and the results are identical (same IEEE operations, no FMA). Elsewhere, or in an -mavx2 /
// ANOFAST_NATIVE build, there is one copy of the native width (ANOFAST_AVX2_COPY is then undefined).
#pragma once
#include <cstdlib>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && !defined(__AVX2__)
#define ANOFAST_AVX2_COPY 1
#endif
// x86-64 with GCC / Clang: AVX2 intrinsics may be used in target("avx2") functions behind use_avx2().
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define ANOFAST_X86_SIMD 1
#endif

namespace anofast::simd {

#if defined(__AVX2__)
constexpr int kWidth = 8;
#else
constexpr int kWidth = 4;
#endif

#ifdef ANOFAST_X86_SIMD
// ANOFAST_NO_AVX2=1 forces the baseline copy (tests use it to check both copies on an AVX2 machine).
inline bool use_avx2() {
  static const bool yes = __builtin_cpu_supports("avx2");
  const char* off = std::getenv("ANOFAST_NO_AVX2");
  return yes && !(off != nullptr && off[0] == '1');
}
#endif

}  // namespace anofast::simd
