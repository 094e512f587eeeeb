// Eight counter-RNG standard normals at once with AVX2, bit-identical to rng::normal(table, rng::bits(...)).
//
// GCC (generic tuning) does not emit gather instructions for the auto-vectorised table lookup in rng::normal: it
// loads the 16 table entries of 8 lanes one by one, and that lookup costs ~10x the hash. Here the table is first
// rearranged into (lo, hi - lo) pairs (the same float subtraction rng::normal does, so the same bits) and each
// lane fetches its pair with one 64-bit gather: 2 gathers per 8 normals instead of 16 scalar loads (~3x faster
// per normal on the machines we measured). Only for the AVX2 copies of the kernels (functions compiled with
// __attribute__((target("avx2")))); the baseline copies keep rng::normal.
#pragma once
#if !(defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)))
#error "normal_avx2.h: x86-64 with GCC or Clang only (include it under ANOFAST_X86_SIMD from common/simd.h)"
#endif
#include <immintrin.h>

#include <cstdint>
#include <vector>

#include "common/hash.h"

namespace anofast::rng {

// (lo, hi - lo) per interval of the quantile table: 2 << kNormalTableBits floats.
inline std::vector<float> normal_pairs(const float* table) {
  constexpr int n = 1 << kNormalTableBits;
  std::vector<float> pairs(2 * n);
  for (int i = 0; i < n; ++i) {
    pairs[2 * i] = table[i];
    pairs[2 * i + 1] = table[i + 1] - table[i];
  }
  return pairs;
}

__attribute__((target("avx2"))) inline __m256i hash32_x8(__m256i x) {
  x = _mm256_xor_si256(x, _mm256_srli_epi32(x, 16));
  x = _mm256_mullo_epi32(x, _mm256_set1_epi32(0x7feb352d));
  x = _mm256_xor_si256(x, _mm256_srli_epi32(x, 15));
  x = _mm256_mullo_epi32(x, _mm256_set1_epi32(static_cast<int>(0x846ca68bu)));
  return _mm256_xor_si256(x, _mm256_srli_epi32(x, 16));
}

// rng::normal(table, rng::bits(skey, c[k])) for the 8 counters of `c`; `pairs` from normal_pairs(table).
__attribute__((target("avx2"))) inline __m256 normal_x8_at(const float* pairs, uint32_t skey, __m256i c) {
  const __m256i key = _mm256_set1_epi32(static_cast<int>(skey));
  const __m256i b = hash32_x8(_mm256_add_epi32(hash32_x8(_mm256_xor_si256(c, key)), key));
  const __m256i i = _mm256_srli_epi32(b, 32 - kNormalTableBits);
  const __m256i low = _mm256_and_si256(b, _mm256_set1_epi32((1 << (32 - kNormalTableBits)) - 1));
  const __m256 f = _mm256_mul_ps(_mm256_cvtepi32_ps(low), _mm256_set1_ps(3.814697265625e-06f));  // 2^-18
  const auto* base = reinterpret_cast<const long long*>(pairs);
  // g0 = (lo0 d0 lo1 d1 | lo2 d2 lo3 d3), g1 the same for lanes 4..7
  const __m256 g0 = _mm256_castsi256_ps(_mm256_i32gather_epi64(base, _mm256_castsi256_si128(i), 8));
  const __m256 g1 = _mm256_castsi256_ps(_mm256_i32gather_epi64(base, _mm256_extracti128_si256(i, 1), 8));
  // shuffle: (lo0 lo1 lo4 lo5 | lo2 lo3 lo6 lo7); the 64-bit permute restores the lane order
  const __m256 lo = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(g0, g1, 0x88)), 0xD8));
  const __m256 d = _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(g0, g1, 0xDD)), 0xD8));
  return _mm256_add_ps(lo, _mm256_mul_ps(d, f));
}

// rng::normal(table, rng::bits(skey, counter0 + k)) for k = 0..7.
__attribute__((target("avx2"))) inline __m256 normal_x8(const float* pairs, uint32_t skey, uint32_t counter0) {
  return normal_x8_at(pairs, skey,
                      _mm256_add_epi32(_mm256_set1_epi32(static_cast<int>(counter0)),
                                       _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)));
}

}  // namespace anofast::rng
