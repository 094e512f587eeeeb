// Batched Poisson blending: one sample's patch rounds per task, a fixed-schedule multigrid per patch and channel.
// Mirrors anofast/reference/poisson.py operation by operation (no FMA: -ffp-contract=off).
#pragma once
#include <cmath>
#include <cstdint>
#include <algorithm>
#include <cstring>
#include <type_traits>
#include <vector>

#include "common/simd.h"
#ifdef ANOFAST_X86_SIMD
#include <immintrin.h>
#endif

namespace anofast::poisson {

constexpr int kPre = 2, kPost = 2, kCoarse = 16, kMajority = 13;

// Level count of an h x w patch, as anofast.reference.poisson.levels.
inline int num_levels(int64_t hp, int64_t wp) {
  int n = 1;
  while (hp >= 6 && wp >= 6) {
    hp = (hp + 1) / 2;
    wp = (wp + 1) / 2;
    ++n;
  }
  return n;
}

// x86-64: an AVX2 clone picked at load time (8-wide loops); IEEE adds and multiplies without FMA give the same bits.
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(__AVX2__)
#define ANOFAST_POISSON_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define ANOFAST_POISSON_CLONES
#endif
// Helpers inlined into blend_patch, so that they are vectorised in its AVX2 clone too.
#if defined(__GNUC__)
#define ANOFAST_POISSON_INLINE inline __attribute__((always_inline))
#else
#define ANOFAST_POISSON_INLINE inline
#endif

// The solver stores the red and the black cells of a level (red: (i + j) even) in two arrays ("split" layout), so
// that a half-sweep of the red-black smoother computes only the cells it updates. Cell (i, j) lies in colour
// (i + j) & 1, row i, position j >> 1, and a colour row holds hw = (w + 1) / 2 positions. A colour-c cell at
// position q of row i (column j = 2q + p, p = (i + c) & 1) finds its up and down neighbours at position q of rows
// i -+ 1 and its left and right ones at positions q - 1 + p and q + p of row i, all in the other colour.
// A row has V positions (hw rounded up to 16: the restriction's blocks) between a zero pad on each side (stride
// s = V + 2); the other loops stop at hw rounded up to 8, so the residual past it stays 0. There are h + 1 rows: the
// last, zero, stands in for the missing row 2I + 1 of an odd-height level in the restriction. Padding and
// nonexistent cells are off the domain, so nothing updates them. Every update computes the reference's expression
// from the same operands, so the values are the reference's bit for bit.
struct Level {
  int64_t h = 0, w = 0, hw = 0, s = 0;
  std::vector<float> x[2], b[2], r[2];  // unknown (level 0) or error (coarser), right-hand side, residual
  std::vector<uint8_t> m[2];            // domain flags (0 on padding)
  std::vector<uint8_t> nat;             // the domain in the natural h x w layout
  int64_t at(int64_t i, int64_t j) const { return i * s + 1 + (j >> 1); }
  int64_t rows_end() const { return (hw + 7) / 8 * 8; }  // positions per row the 8-wide loops process
};

// Reused per thread: no allocation once the sizes have been seen.
struct Workspace {
  std::vector<Level> lv;
  std::vector<float> erow, nat, dest, sol, src, rect;
  std::vector<int32_t> cand, rowsum;
};

// A natural h x w array into a level's split arrays and back: in row i, even columns are colour i & 1 and odd
// columns the other colour, column j at position j / 2 (loops over positions, so that they vectorise).
template <typename T>
ANOFAST_POISSON_INLINE void to_split(const Level& L, const T* v, std::vector<T>* dst) {
  for (int64_t i = 0; i < L.h; ++i) {
    const T* row = v + i * L.w;
    T* even = dst[i & 1].data() + i * L.s + 1;
    T* odd = dst[(i + 1) & 1].data() + i * L.s + 1;
    for (int64_t q = 0; q < L.w / 2; ++q) {
      even[q] = row[2 * q];
      odd[q] = row[2 * q + 1];
    }
    if (L.w & 1) even[L.w / 2] = row[L.w - 1];
  }
}
ANOFAST_POISSON_INLINE void merge_row(const Level& L, int64_t i, const std::vector<float>* src, float* row) {
  const float* even = src[i & 1].data() + i * L.s + 1;
  const float* odd = src[(i + 1) & 1].data() + i * L.s + 1;
  for (int64_t q = 0; q < L.w / 2; ++q) {
    row[2 * q] = even[q];
    row[2 * q + 1] = odd[q];
  }
  if (L.w & 1) row[L.w - 1] = even[L.w / 2];
}
ANOFAST_POISSON_INLINE void from_split(const Level& L, const std::vector<float>* src, float* v) {
  for (int64_t i = 0; i < L.h; ++i) merge_row(L, i, src, v + i * L.w);
}

// b + (the sum of the 4 neighbours) of the colour cell at split index k of a row with parity p, the neighbours
// read from the other colour o: the reference's expression, shared by the smoother and the residual.
inline float neighbour_sum(const float* o, const float* b, int64_t k, int64_t s, int64_t p) {
  return b[k] + ((o[k - s] + o[k + s]) + (o[k - 1 + p] + o[k + p]));
}

inline void smooth_colour(Level& L, int c) {
  const int64_t s = L.s;
  float* x = L.x[c].data();
  const float* o = L.x[1 - c].data();
  const float* b = L.b[c].data();
  const uint8_t* m = L.m[c].data();
  for (int64_t i = 1; i < L.h - 1; ++i) {
    const int64_t k0 = i * s + 1, p = (i + c) & 1;
    for (int64_t k = k0; k < k0 + L.hw; ++k) {
      const float t = neighbour_sum(o, b, k, s, p) * 0.25f;
      x[k] = m[k] ? t : x[k];
    }
  }
}

// r = b + (sum of the 4 neighbours) - 4 x on the domain cells of colour c, 0 on the others (rows 0, h - 1 and h
// are never written: they stay 0).
inline void residual_colour(Level& L, int c) {
  const int64_t s = L.s;
  const float* x = L.x[c].data();
  const float* o = L.x[1 - c].data();
  const float* b = L.b[c].data();
  const uint8_t* m = L.m[c].data();
  float* r = L.r[c].data();
  for (int64_t i = 1; i < L.h - 1; ++i) {
    const int64_t k0 = i * s + 1, p = (i + c) & 1;
    for (int64_t k = k0; k < k0 + L.hw; ++k) {
      const float v = neighbour_sum(o, b, k, s, p) - 4.0f * x[k];
      r[k] = m[k] ? v : 0.0f;
    }
  }
}

// Coarse cell (I, J) gets (r[2I][2J] + r[2I][2J + 1]) + (r[2I + 1][2J] + r[2I + 1][2J + 1]): in the split layout
// the four children sit at position J of rows 2I and 2I + 1, red, black, black, red (missing children read 0).
inline void restrict_rows(const Level& F, Level& C) {
  for (int64_t I = 0; I < C.h; ++I) {
    const int64_t k = 2 * I * F.s + 1;
    for (int64_t J = 0; J < C.w; ++J) {
      const float v = (F.r[0][k + J] + F.r[1][k + J]) + (F.r[1][k + F.s + J] + F.r[0][k + F.s + J]);
      C.b[(I + J) & 1][C.at(I, J)] = v;
    }
  }
}


// x += e[i / 2][j / 2] on the domain cells (piecewise-constant prolongation): a fine colour cell at position q has
// j / 2 = q.
inline void prolong_scalar(Level& L, const Level& C, std::vector<float>& erow) {
  erow.resize(L.rows_end());
  for (int64_t i = 1; i < L.h - 1; ++i) {
    if (i == 1 || (i & 1) == 0) merge_row(C, i / 2, C.x, erow.data());  // coarse row i / 2 of the error
    for (int c = 0; c < 2; ++c) {
      float* x = L.x[c].data() + i * L.s + 1;
      const uint8_t* m = L.m[c].data() + i * L.s + 1;
      for (int64_t q = 0; q < L.hw; ++q) x[q] = m[q] ? x[q] + erow[q] : x[q];
    }
  }
}

#ifdef ANOFAST_X86_SIMD
// The 8 lanes of a uint8 0/1 (or 0/nonzero) mask as an all-ones / all-zeros float blend mask.
__attribute__((target("avx2"))) inline __m256 domain8(const uint8_t* m) {
  uint64_t m8;
  std::memcpy(&m8, m, sizeof(m8));
  return _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_cvtepu8_epi32(_mm_cvtsi64_si128(static_cast<long long>(m8))),
                                                _mm256_setzero_si256()));
}

__attribute__((target("avx2"))) inline __m256 sum8(const float* o, const float* b, int64_t k, int64_t s, int64_t p) {
  const __m256 ud = _mm256_add_ps(_mm256_loadu_ps(o + k - s), _mm256_loadu_ps(o + k + s));
  const __m256 lr = _mm256_add_ps(_mm256_loadu_ps(o + k - 1 + p), _mm256_loadu_ps(o + k + p));
  return _mm256_add_ps(_mm256_loadu_ps(b + k), _mm256_add_ps(ud, lr));
}

// smooth_colour over all V positions of a row, 8 at a time (padding is off the domain).
__attribute__((target("avx2"))) inline void smooth_colour_avx2(Level& L, int c) {
  const int64_t s = L.s, V = L.rows_end();
  float* x = L.x[c].data();
  const float* o = L.x[1 - c].data();
  const float* b = L.b[c].data();
  const uint8_t* m = L.m[c].data();
  const __m256 quarter = _mm256_set1_ps(0.25f);
  for (int64_t i = 1; i < L.h - 1; ++i) {
    const int64_t k0 = i * s + 1, p = (i + c) & 1;
    for (int64_t k = k0; k < k0 + V; k += 8) {
      const __m256 t = _mm256_mul_ps(sum8(o, b, k, s, p), quarter);
      _mm256_storeu_ps(x + k, _mm256_blendv_ps(_mm256_loadu_ps(x + k), t, domain8(m + k)));
    }
  }
}

__attribute__((target("avx2"))) inline void residual_colour_avx2(Level& L, int c) {
  const int64_t s = L.s, V = L.rows_end();
  const float* x = L.x[c].data();
  const float* o = L.x[1 - c].data();
  const float* b = L.b[c].data();
  const uint8_t* m = L.m[c].data();
  float* r = L.r[c].data();
  const __m256 four = _mm256_set1_ps(4.0f);
  for (int64_t i = 1; i < L.h - 1; ++i) {
    const int64_t k0 = i * s + 1, p = (i + c) & 1;
    for (int64_t k = k0; k < k0 + V; k += 8) {
      const __m256 v = _mm256_sub_ps(sum8(o, b, k, s, p), _mm256_mul_ps(four, _mm256_loadu_ps(x + k)));
      _mm256_storeu_ps(r + k, _mm256_and_ps(v, domain8(m + k)));
    }
  }
}

// restrict_rows for 16 coarse columns at a time: their even and odd columns go to the two colours.
__attribute__((target("avx2"))) inline void restrict_rows_avx2(const Level& F, Level& C) {
  for (int64_t I = 0; I < C.h; ++I) {
    const float* r0 = F.r[0].data() + 2 * I * F.s + 1;
    const float* r1 = F.r[1].data() + 2 * I * F.s + 1;
    float* even = C.b[I & 1].data() + I * C.s + 1;  // column J = 2q + 0 has colour I & 1
    float* odd = C.b[(I + 1) & 1].data() + I * C.s + 1;
    for (int64_t J = 0; J < C.w; J += 16) {
      __m256 v[2];
      for (int h = 0; h < 2; ++h) {
        const int64_t k = J + 8 * h;
        v[h] = _mm256_add_ps(_mm256_add_ps(_mm256_loadu_ps(r0 + k), _mm256_loadu_ps(r1 + k)),
                             _mm256_add_ps(_mm256_loadu_ps(r1 + F.s + k), _mm256_loadu_ps(r0 + F.s + k)));
      }
      const __m256 e = _mm256_shuffle_ps(v[0], v[1], _MM_SHUFFLE(2, 0, 2, 0));
      const __m256 o = _mm256_shuffle_ps(v[0], v[1], _MM_SHUFFLE(3, 1, 3, 1));
      _mm256_storeu_ps(even + J / 2, _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(e), 0xD8)));
      _mm256_storeu_ps(odd + J / 2, _mm256_castpd_ps(_mm256_permute4x64_pd(_mm256_castps_pd(o), 0xD8)));
    }
  }
}

// merge_row of the coarse error for 16 columns at a time: column 2q of coarse row I is position q of colour I & 1,
// column 2q + 1 of the other colour. Columns past C.w read padding; the fine cells they meet are off the domain.
__attribute__((target("avx2"))) inline void merge_coarse_row_avx2(const Level& C, int64_t I, float* e, int64_t len) {
  const float* ev = C.x[I & 1].data() + I * C.s + 1;
  const float* od = C.x[(I + 1) & 1].data() + I * C.s + 1;
  for (int64_t J = 0; J < len; J += 16) {
    const __m256 a = _mm256_loadu_ps(ev + J / 2), b = _mm256_loadu_ps(od + J / 2);
    const __m256 lo = _mm256_unpacklo_ps(a, b), hi = _mm256_unpackhi_ps(a, b);
    _mm256_storeu_ps(e + J, _mm256_permute2f128_ps(lo, hi, 0x20));
    _mm256_storeu_ps(e + J + 8, _mm256_permute2f128_ps(lo, hi, 0x31));
  }
}

__attribute__((target("avx2"))) inline void prolong_avx2(Level& L, const Level& C, std::vector<float>& erow) {
  const int64_t V = L.rows_end();
  erow.resize(V + 16);  // merge_coarse_row_avx2 writes whole blocks of 16
  for (int64_t i = 1; i < L.h - 1; ++i) {
    if (i == 1 || (i & 1) == 0) merge_coarse_row_avx2(C, i / 2, erow.data(), V);
    for (int c = 0; c < 2; ++c) {
      float* x = L.x[c].data() + i * L.s + 1;
      const uint8_t* m = L.m[c].data() + i * L.s + 1;
      for (int64_t q = 0; q < V; q += 8) {
        const __m256 xv = _mm256_loadu_ps(x + q);
        _mm256_storeu_ps(x + q, _mm256_blendv_ps(xv, _mm256_add_ps(xv, _mm256_loadu_ps(erow.data() + q)),
                                                 domain8(m + q)));
      }
    }
  }
}
#endif

#ifndef ANOFAST_X86_SIMD
// One copy of each loop where there is no AVX2 one (avx2 is then always false).
inline void smooth_colour_avx2(Level& L, int c) { smooth_colour(L, c); }
inline void residual_colour_avx2(Level& L, int c) { residual_colour(L, c); }
inline void restrict_rows_avx2(const Level& F, Level& C) { restrict_rows(F, C); }
inline void prolong_avx2(Level& L, const Level& C, std::vector<float>& erow) { prolong_scalar(L, C, erow); }
#endif

// `sweeps` red-black sweeps (red, then black) over the interior rows.
inline void smooth(Level& L, int sweeps, bool avx2) {
  if (L.h < 3 || L.w < 3) return;
  for (int k = 0; k < sweeps; ++k)
    for (int c = 0; c < 2; ++c) avx2 ? smooth_colour_avx2(L, c) : smooth_colour(L, c);
}

// Residual of level F restricted into the right-hand side of level C (whose error is reset to 0).
inline void restrict_residual(Level& F, Level& C, bool avx2) {
  for (int c = 0; c < 2; ++c) avx2 ? residual_colour_avx2(F, c) : residual_colour(F, c);
  avx2 ? restrict_rows_avx2(F, C) : restrict_rows(F, C);
  std::fill(C.x[0].begin(), C.x[0].end(), 0.0f);
  std::fill(C.x[1].begin(), C.x[1].end(), 0.0f);
}

inline void prolong(Level& L, const Level& C, std::vector<float>& erow, bool avx2) {
  avx2 ? prolong_avx2(L, C, erow) : prolong_scalar(L, C, erow);
}

inline void vcycle(Workspace& ws, size_t l, bool avx2) {
  Level& L = ws.lv[l];
  if (l + 1 == ws.lv.size()) {
    smooth(L, kCoarse, avx2);
    return;
  }
  smooth(L, kPre, avx2);
  Level& C = ws.lv[l + 1];
  restrict_residual(L, C, avx2);
  vcycle(ws, l + 1, avx2);
  prolong(L, C, ws.erow, avx2);
  smooth(L, kPost, avx2);
}

// Sets up the level hierarchy of one patch (sizes and domains; every split array zeroed).
// region: the destination-space domain at the patch's top-left corner, row stride wp (nullptr: everywhere).
inline void setup_levels(Workspace& ws, int nlev, int64_t h, int64_t w, const uint8_t* region, int64_t wp) {
  ws.lv.resize(nlev);
  for (int l = 0; l < nlev; ++l) {
    Level& L = ws.lv[l];
    L.h = l == 0 ? h : (ws.lv[l - 1].h + 1) / 2;
    L.w = l == 0 ? w : (ws.lv[l - 1].w + 1) / 2;
    L.hw = (L.w + 1) / 2;
    L.s = (L.hw + 15) / 16 * 16 + 2;
    L.nat.resize(static_cast<size_t>(L.h * L.w));
    for (int64_t i = 0; i < L.h; ++i) {
      uint8_t* row = L.nat.data() + i * L.w;
      if (l == 0) {  // the interior, inside the region
        if (i == 0 || i == h - 1) {
          std::fill(row, row + w, uint8_t{0});
          continue;
        }
        const uint8_t* reg = region ? region + i * wp : nullptr;
        for (int64_t j = 0; j < w; ++j) row[j] = reg ? uint8_t{reg[j] != 0} : uint8_t{1};
        row[0] = row[w - 1] = 0;
      } else {  // a coarse cell is on the domain where its four children are
        const Level& F = ws.lv[l - 1];
        const uint8_t* f0 = F.nat.data() + 2 * i * F.w;
        const uint8_t* f1 = f0 + F.w;
        const int64_t pairs = 2 * i + 1 < F.h ? F.w / 2 : 0;  // columns whose four children exist
        for (int64_t j = 0; j < pairs; ++j)
          row[j] = uint8_t{f0[2 * j] != 0} & uint8_t{f0[2 * j + 1] != 0} & uint8_t{f1[2 * j] != 0} &
                   uint8_t{f1[2 * j + 1] != 0};
        std::fill(row + pairs, row + L.w, uint8_t{0});
      }
    }
    const size_t n = static_cast<size_t>((L.h + 1) * L.s);
    for (int c = 0; c < 2; ++c) {
      L.x[c].assign(n, 0.0f);
      L.b[c].assign(n, 0.0f);
      L.r[c].assign(n, 0.0f);
      L.m[c].assign(n, 0);
    }
    to_split(L, L.nat.data(), L.m);
  }
}

ANOFAST_POISSON_INLINE float edge(float sp, float sq, float dp, float dq, bool mixed) {
  const float s = sp - sq, d = dp - dq;
  return (mixed && !(std::fabs(s) > std::fabs(d))) ? d : s;
}

// The right-hand side b (the guidance field's divergence) and the initial x (the source on the domain, the
// destination d elsewhere) of the natural-layout cells [k0, k1), each inside rows 1 .. h - 2 (all neighbours exist).
inline void init_rows(const float* d, const float* s, const uint8_t* dom, float* b, float* x, int64_t k0, int64_t k1,
                      int64_t w, bool mixed) {
  for (int64_t k = k0; k < k1; ++k) {
    const float up = edge(s[k], s[k - w], d[k], d[k - w], mixed);
    const float dn = edge(s[k], s[k + w], d[k], d[k + w], mixed);
    const float lf = edge(s[k], s[k - 1], d[k], d[k - 1], mixed);
    const float rt = edge(s[k], s[k + 1], d[k], d[k + 1], mixed);
    const float bv = (up + dn) + (lf + rt);
    b[k] = dom[k] ? bv : 0.0f;
    x[k] = dom[k] ? s[k] : d[k];
  }
}

#ifdef ANOFAST_X86_SIMD
// edge() of 8 cells against their neighbours at q: the source's difference, or in mixed mode the destination's
// where its magnitude is not smaller.
__attribute__((target("avx2"))) inline __m256 edge8(const float* s, const float* d, __m256 s0, __m256 d0, int64_t q,
                                                    bool mixed) {
  const __m256 ev = _mm256_sub_ps(s0, _mm256_loadu_ps(s + q));
  if (!mixed) return ev;
  const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  const __m256 dv = _mm256_sub_ps(d0, _mm256_loadu_ps(d + q));
  return _mm256_blendv_ps(dv, ev, _mm256_cmp_ps(_mm256_and_ps(ev, abs_mask), _mm256_and_ps(dv, abs_mask), _CMP_GT_OQ));
}

// init_rows, 8 cells at a time (the tail by init_rows).
__attribute__((target("avx2"))) inline void init_rows_avx2(const float* d, const float* s, const uint8_t* dom, float* b,
                                                            float* x, int64_t k0, int64_t k1, int64_t w, bool mixed) {
  const int64_t end = k0 + (k1 - k0) / 8 * 8;
  for (int64_t k = k0; k < end; k += 8) {
    const __m256 s0 = _mm256_loadu_ps(s + k), d0 = _mm256_loadu_ps(d + k);
    const __m256 bv = _mm256_add_ps(_mm256_add_ps(edge8(s, d, s0, d0, k - w, mixed), edge8(s, d, s0, d0, k + w, mixed)),
                                    _mm256_add_ps(edge8(s, d, s0, d0, k - 1, mixed), edge8(s, d, s0, d0, k + 1, mixed)));
    const __m256 m = domain8(dom + k);
    _mm256_storeu_ps(b + k, _mm256_and_ps(bv, m));
    _mm256_storeu_ps(x + k, _mm256_blendv_ps(d0, s0, m));
  }
  init_rows(d, s, dom, b, x, end, k1, w, mixed);
}
#else
inline void init_rows_avx2(const float* d, const float* s, const uint8_t* dom, float* b, float* x, int64_t k0,
                           int64_t k1, int64_t w, bool mixed) {
  init_rows(d, s, dom, b, x, k0, k1, w, mixed);
}
#endif

// Bilinear resampling of the source rectangle (sy, sx, sh, sw) of a (C, hs, ws) image to h x w (reference: resample).
// The column coordinates are computed once per patch (the same float operations as per pixel, so the same bits).
ANOFAST_POISSON_CLONES inline void resample(float* dst, const float* img, int64_t C, int64_t hs, int64_t wsz,
                                            int64_t sy, int64_t sx, int64_t sh, int64_t sw, float scy, float scx,
                                            int64_t h, int64_t w) {
  thread_local std::vector<int64_t> col0, col1;
  thread_local std::vector<float> colw;
  col0.resize(w);
  col1.resize(w);
  colw.resize(w);
  const int64_t left = sw - 1 > 0 ? sw - 1 : 0;
  for (int64_t j = 0; j < w; ++j) {
    float fx = (static_cast<float>(j) + 0.5f) * scx - 0.5f;
    fx = fx > 0.0f ? fx : 0.0f;
    const int64_t ix = std::min<int64_t>(static_cast<int64_t>(fx), left);
    colw[j] = fx - static_cast<float>(ix);
    const int64_t ix1 = std::min<int64_t>(ix + 1, left);
    col0[j] = std::min<int64_t>(std::max<int64_t>(sx + ix, 0), wsz - 1);
    col1[j] = std::min<int64_t>(std::max<int64_t>(sx + ix1, 0), wsz - 1);
  }
  const int64_t top = sh - 1 > 0 ? sh - 1 : 0;
  for (int64_t i = 0; i < h; ++i) {
    float fy = (static_cast<float>(i) + 0.5f) * scy - 0.5f;
    fy = fy > 0.0f ? fy : 0.0f;
    const int64_t iy = std::min<int64_t>(static_cast<int64_t>(fy), top);
    const float wy = fy - static_cast<float>(iy);
    const int64_t iy1 = std::min<int64_t>(iy + 1, top);
    const int64_t r0 = std::min<int64_t>(std::max<int64_t>(sy + iy, 0), hs - 1);
    const int64_t r1 = std::min<int64_t>(std::max<int64_t>(sy + iy1, 0), hs - 1);
    for (int64_t c = 0; c < C; ++c) {
      const float* q0 = img + (c * hs + r0) * wsz;
      const float* q1 = img + (c * hs + r1) * wsz;
      float* d = dst + (c * h + i) * w;
      for (int64_t j = 0; j < w; ++j) {
        const float p00 = q0[col0[j]], p01 = q0[col1[j]], p10 = q1[col0[j]], p11 = q1[col1[j]];
        const float t = p00 + (p01 - p00) * colw[j];
        const float bt = p10 + (p11 - p10) * colw[j];
        d[j] = t + (bt - t) * wy;
      }
    }
  }
}

// uint8 images read as float32 v * (1/255): the bits of the Python wrapper's (and check_images') conversion.
constexpr float kInv255 = 1.0f / 255.0f;

// An image that is float32 or uint8 (exactly one pointer set).
struct Image {
  const float* f = nullptr;
  const uint8_t* u8 = nullptr;
  Image at(int64_t offset) const { return {f ? f + offset : nullptr, u8 ? u8 + offset : nullptr}; }
};

// n uint8 values as float32 v * (1/255) (check_images' conversion).
ANOFAST_POISSON_CLONES inline void to_unit_float(float* dst, const uint8_t* src, int64_t n) {
  for (int64_t k = 0; k < n; ++k) dst[k] = static_cast<float>(src[k]) * kInv255;
}

// The source rectangle (sy, sx, sh, sw) of a uint8 (C, hs, ws) image as float32 (C, sh, sw) in buf.
inline void rect_to_float(std::vector<float>& buf, const uint8_t* img, int64_t C, int64_t hs, int64_t wsz, int64_t sy,
                          int64_t sx, int64_t sh, int64_t sw) {
  buf.resize(C * sh * sw);
  for (int64_t c = 0; c < C; ++c)
    for (int64_t i = 0; i < sh; ++i) {
      const uint8_t* q = img + (c * hs + sy + i) * wsz + sx;
      float* d = buf.data() + (c * sh + i) * sw;
      for (int64_t j = 0; j < sw; ++j) d[j] = static_cast<float>(q[j]) * kInv255;
    }
}

// mask (and diff) over the box rows: any_c(out != original) and sum_c |out - original| in channel order.
template <typename T>
ANOFAST_POISSON_INLINE void mark_changes(const float* out, const T* original, float* mask, float* diff, int64_t C, int64_t H,
                         int64_t W, int64_t y0, int64_t x0, int64_t h, int64_t w) {
  auto load = [](T v) -> float {
    if constexpr (std::is_same_v<T, uint8_t>) return static_cast<float>(v) * kInv255;
    else return v;
  };
  for (int64_t i = 0; i < h; ++i) {
    const int64_t p0 = (y0 + i) * W + x0;
    float* mrow = mask + p0;
    for (int64_t j = 0; j < w; ++j) mrow[j] = out[p0 + j] != load(original[p0 + j]) ? 1.0f : 0.0f;
    for (int64_t c = 1; c < C; ++c) {
      const float* oc = out + c * H * W + p0;
      const T* gc = original + c * H * W + p0;
      for (int64_t j = 0; j < w; ++j) mrow[j] = oc[j] != load(gc[j]) ? 1.0f : mrow[j];
    }
    if (!diff) continue;
    float* drow = diff + p0;
    for (int64_t j = 0; j < w; ++j) drow[j] = std::fabs(out[p0 + j] - load(original[p0 + j]));
    for (int64_t c = 1; c < C; ++c) {
      const float* oc = out + c * H * W + p0;
      const T* gc = original + c * H * W + p0;
      for (int64_t j = 0; j < w; ++j) drow[j] = drow[j] + std::fabs(oc[j] - load(gc[j]));
    }
  }
}

// Blends one patch of one sample. out/original: (C, H, W); mask, diff, region: (H, W); img: the source image
// (C, hs, ws). diff may be null.
ANOFAST_POISSON_CLONES inline void blend_patch(Workspace& ws, float* out, Image original, float* mask, float* diff,
                        const uint8_t* region, Image img, int64_t C, int64_t H, int64_t W, int64_t hs, int64_t wsz,
                        const int32_t* sbox, float scy, float scx, const int32_t* box, bool mixed, float tol_sum,
                        int cycles, bool avx2) {
  const int64_t y0 = box[0], x0 = box[1], h = box[2], w = box[3];
  if (h <= 0 || w <= 0) return;
  setup_levels(ws, num_levels(h, w), h, w, region ? region + y0 * W + x0 : nullptr, W);
  const int64_t n = h * w;
  ws.dest.resize(C * n);
  ws.sol.resize(C * n);
  ws.src.resize(C * n);
  ws.nat.resize(2 * n);
  if (img.u8) {  // the rectangle converted once; resample then indexes it as its own (C, sh, sw) image
    rect_to_float(ws.rect, img.u8, C, hs, wsz, sbox[0], sbox[1], sbox[2], sbox[3]);
    resample(ws.src.data(), ws.rect.data(), C, sbox[2], sbox[3], 0, 0, sbox[2], sbox[3], scy, scx, h, w);
  } else {
    resample(ws.src.data(), img.f, C, hs, wsz, sbox[0], sbox[1], sbox[2], sbox[3], scy, scx, h, w);
  }
  for (int64_t c = 0; c < C; ++c)
    for (int64_t i = 0; i < h; ++i)
      std::memcpy(ws.dest.data() + c * n + i * w, out + (c * H + y0 + i) * W + x0, sizeof(float) * w);
  Level& L0 = ws.lv[0];
  const uint8_t* dom = L0.nat.data();
  float* nb = ws.nat.data();  // natural-layout b, then x
  float* nx = nb + n;
  for (int64_t c = 0; c < C; ++c) {
    const float* d = ws.dest.data() + c * n;
    const float* s = ws.src.data() + c * n;
    // b and the initial x (the source on the domain, the destination elsewhere); rows 0 and h - 1 and the first
    // and last columns are off the domain, so one flat loop over the interior rows reads in bounds
    std::fill(nb, nb + n, 0.0f);
    std::memcpy(nx, d, sizeof(float) * n);
    if (h >= 3) {
      avx2 ? init_rows_avx2(d, s, dom, nb, nx, w, (h - 1) * w, w, mixed)
           : init_rows(d, s, dom, nb, nx, w, (h - 1) * w, w, mixed);
    }
    to_split(L0, nb, L0.b);
    to_split(L0, nx, L0.x);
    for (int k = 0; k < cycles; ++k) vcycle(ws, 0, avx2);
    from_split(L0, L0.x, nx);
    float* o = ws.sol.data() + c * n;
    for (int64_t k = 0; k < n; ++k) {
      float v = nx[k];
      v = v > 0.0f ? v : 0.0f;
      v = v < 1.0f ? v : 1.0f;
      o[k] = v;
    }
  }
  // candidates: sum_c |o - d| > tol_sum inside the domain, into rows padded by two zeros on each side
  float* t = nb;
  for (int64_t k = 0; k < n; ++k) t[k] = std::fabs(ws.sol[k] - ws.dest[k]);
  for (int64_t c = 1; c < C; ++c)
    for (int64_t k = 0; k < n; ++k) t[k] = t[k] + std::fabs(ws.sol[c * n + k] - ws.dest[c * n + k]);
  const int64_t wc = w + 4;
  ws.cand.assign(h * wc, 0);
  for (int64_t i = 0; i < h; ++i) {
    int32_t* cr = ws.cand.data() + i * wc + 2;
    for (int64_t j = 0; j < w; ++j) cr[j] = int32_t{dom[i * w + j] != 0} & int32_t{t[i * w + j] > tol_sum};
  }
  // the 5x5 majority vote as two 5-tap integer sums (exact): along the rows, then down the columns
  ws.rowsum.resize(n + w);
  for (int64_t i = 0; i < h; ++i) {
    const int32_t* cr = ws.cand.data() + i * wc;
    int32_t* rr = ws.rowsum.data() + i * w;
    for (int64_t j = 0; j < w; ++j) rr[j] = (cr[j] + cr[j + 1]) + (cr[j + 2] + cr[j + 3]) + cr[j + 4];
  }
  int32_t* votes = ws.rowsum.data() + n;
  for (int64_t i = 1; i < h - 1; ++i) {
    const int64_t ia = std::max<int64_t>(i - 2, 0), ib = std::min<int64_t>(i + 2, h - 1);
    std::memcpy(votes, ws.rowsum.data() + ia * w, sizeof(int32_t) * w);
    for (int64_t r = ia + 1; r <= ib; ++r)
      for (int64_t j = 0; j < w; ++j) votes[j] += ws.rowsum[r * w + j];
    const uint8_t* dr = dom + i * w;
    for (int64_t c = 0; c < C; ++c) {
      float* orow = out + (c * H + y0 + i) * W + x0;
      const float* srow = ws.sol.data() + c * n + i * w;
      for (int64_t j = 0; j < w; ++j) orow[j] = dr[j] && votes[j] >= kMajority ? srow[j] : orow[j];
    }
  }
  // mask (and diff) over the box, branch-free so that it vectorises
  if (original.u8) mark_changes(out, original.u8, mask, diff, C, H, W, y0, x0, h, w);
  else mark_changes(out, original.f, mask, diff, C, H, W, y0, x0, h, w);
}

}  // namespace anofast::poisson
