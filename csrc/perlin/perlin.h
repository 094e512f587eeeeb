// mirrors anofast/reference/perlin.py (perlin_noise_reference, perlin_mask_reference) operation by operation.
// Torch-free core: raw pointers, one image row per call, so rows can be spread over threads.
//
// The pixel loop works on N pixels at a time with GCC/clang vector types: N = 4 (SSE2 at the x86-64 baseline,
// NEON) or N = 8 in the AVX2 copy that perlin_cpu.cpp picks at run time. Every lane does the reference's
// float32 operations in the reference's order (no FMA: -ffp-contract=off), so all copies agree bit for bit.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#define ANOFAST_ALWAYS_INLINE inline __attribute__((always_inline))

namespace anofast::perlin {

constexpr int64_t kG1 = 33;              // lattice nodes per axis
constexpr float kSqrt2 = 1.41421354f;    // float32(sqrt(2)), the reference's SQRT2
constexpr int64_t kChunk = 512;          // pixels per stack buffer in the mask path

// N-wide float / int32 vectors: N = 4 at the x86-64 baseline (SSE2) and on NEON, N = 8 for AVX2.
template <int N>
struct Vec {
  typedef float f __attribute__((vector_size(4 * N)));
  typedef int32_t i __attribute__((vector_size(4 * N)));
};
typedef Vec<4>::f v4f;

// One lattice of one sample, with its host-computed constants (reference: perlin_frame).
struct Lattice {
  const float* g;  // (G1, G1, 2) gradients (gx, gy) of node [j, i]
  int32_t ry, rx;
  float c, s, scale_x, scale_y;
};

// Image-size constants, identical for every row.
struct Frame {
  int64_t height, width;
  float cx, cy, xmax, ymax;  // (W-1)*0.5, (H-1)*0.5, W-1, H-1
};

template <typename V>
ANOFAST_ALWAYS_INLINE V fade(V t) {
  return ((t * t) * t) * ((t * ((t * 6.0f) - 15.0f)) + 10.0f);
}

template <typename V>
ANOFAST_ALWAYS_INLINE V splat(float x) {
  return x - V{};  // x - (+0) == x exactly, -0 included: a broadcast
}

ANOFAST_ALWAYS_INLINE v4f load4(const float* p) {
  v4f v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

// Gathers g[j, i..i+1] (or, with `row` = 2*G1, g[j+1, i..i+1]) of N pixels whose node offsets are `off`:
// 4 contiguous floats (gx0, gy0, gx1, gy1) per pixel, loaded whole and transposed into 4 N-wide vectors.
// With N = 8, pixel k shares a vector with pixel k + 4 and the 4x4 transposes stay within 128-bit halves.
template <int N>
ANOFAST_ALWAYS_INLINE void gather(const float* g, const typename Vec<N>::i& off, int64_t row, typename Vec<N>::f* x0,
                                  typename Vec<N>::f* y0, typename Vec<N>::f* x1, typename Vec<N>::f* y1) {
  using V = typename Vec<N>::f;
  V r[4];
  for (int k = 0; k < 4; ++k) {
    if constexpr (N == 4) {
      r[k] = load4(g + off[k] + row);
    } else {
      r[k] = __builtin_shufflevector(load4(g + off[k] + row), load4(g + off[k + 4] + row), 0, 1, 2, 3, 4, 5, 6, 7);
    }
  }
  if constexpr (N == 4) {
    const V t0 = __builtin_shufflevector(r[0], r[1], 0, 4, 1, 5);
    const V t1 = __builtin_shufflevector(r[0], r[1], 2, 6, 3, 7);
    const V t2 = __builtin_shufflevector(r[2], r[3], 0, 4, 1, 5);
    const V t3 = __builtin_shufflevector(r[2], r[3], 2, 6, 3, 7);
    *x0 = __builtin_shufflevector(t0, t2, 0, 1, 4, 5);
    *y0 = __builtin_shufflevector(t0, t2, 2, 3, 6, 7);
    *x1 = __builtin_shufflevector(t1, t3, 0, 1, 4, 5);
    *y1 = __builtin_shufflevector(t1, t3, 2, 3, 6, 7);
  } else {
    const V t0 = __builtin_shufflevector(r[0], r[1], 0, 8, 1, 9, 4, 12, 5, 13);
    const V t1 = __builtin_shufflevector(r[0], r[1], 2, 10, 3, 11, 6, 14, 7, 15);
    const V t2 = __builtin_shufflevector(r[2], r[3], 0, 8, 1, 9, 4, 12, 5, 13);
    const V t3 = __builtin_shufflevector(r[2], r[3], 2, 10, 3, 11, 6, 14, 7, 15);
    *x0 = __builtin_shufflevector(t0, t2, 0, 1, 8, 9, 4, 5, 12, 13);
    *y0 = __builtin_shufflevector(t0, t2, 2, 3, 10, 11, 6, 7, 14, 15);
    *x1 = __builtin_shufflevector(t1, t3, 0, 1, 8, 9, 4, 5, 12, 13);
    *y1 = __builtin_shufflevector(t1, t3, 2, 3, 10, 11, 6, 7, 14, 15);
  }
}

// Noise at columns x .. x+N-1 of a row whose constants of the reference's sx, sy are `cdy` = c*dy, `sdy` = s*dy.
// kTest = false skips the frame test (and the clamp that only matters outside) for blocks surely inside.
template <int N, bool kTest>
ANOFAST_ALWAYS_INLINE typename Vec<N>::f noise_block(const Lattice& L, const Frame& F, float cdy, float sdy,
                                                     int64_t x) {
  using V = typename Vec<N>::f;
  using I = typename Vec<N>::i;
  V iota;
  for (int k = 0; k < N; ++k) iota[k] = static_cast<float>(k);
  const V dx = (static_cast<float>(x) + iota) - F.cx;  // x + k is exact: W < 2**24
  const V sx = ((L.c * dx) + sdy) + F.cx;
  const V sy = (cdy - (L.s * dx)) + F.cy;
  const V u = sx * L.scale_x;
  const V v = sy * L.scale_y;
  // The lower clamp only matters outside the frame, where it keeps the gather in range.
  I i = __builtin_convertvector(u, I);
  I j = __builtin_convertvector(v, I);
  i = i < L.rx - 1 ? i : L.rx - 1;
  j = j < L.ry - 1 ? j : L.ry - 1;
  if constexpr (kTest) {
    i = i > 0 ? i : 0;
    j = j > 0 ? j : 0;
  }
  const V fu = u - __builtin_convertvector(i, V);
  const V fv = v - __builtin_convertvector(j, V);
  const I off = (j * static_cast<int32_t>(kG1) + i) * 2;
  V g00x, g00y, g01x, g01y, g10x, g10y, g11x, g11y;
  if (off[0] == off[N - 1]) {
    // One cell for the whole block (the common case: cells are 8+ pixels wide at 256 px): broadcast, no transpose.
    // i and j are each monotone in x (every step above is a monotone function of x) and off determines (i, j),
    // so equal end lanes mean equal lanes.
    const float* p = L.g + off[0];
    const float* q = p + 2 * kG1;
    g00x = splat<V>(p[0]), g00y = splat<V>(p[1]), g01x = splat<V>(p[2]), g01y = splat<V>(p[3]);
    g10x = splat<V>(q[0]), g10y = splat<V>(q[1]), g11x = splat<V>(q[2]), g11y = splat<V>(q[3]);
  } else {
    gather<N>(L.g, off, 0, &g00x, &g00y, &g01x, &g01y);
    gather<N>(L.g, off, 2 * kG1, &g10x, &g10y, &g11x, &g11y);
  }

  const V fu1 = fu - 1.0f;
  const V fv1 = fv - 1.0f;
  const V n00 = (g00x * fu) + (g00y * fv);
  const V n01 = (g01x * fu1) + (g01y * fv);
  const V n10 = (g10x * fu) + (g10y * fv1);
  const V n11 = (g11x * fu1) + (g11y * fv1);
  const V tu = fade(fu);
  const V top = n00 + (tu * (n01 - n00));
  const V bottom = n10 + (tu * (n11 - n10));
  const V noise = kSqrt2 * (top + (fade(fv) * (bottom - top)));
  if constexpr (!kTest) return noise;
  const I inside = (sx >= 0.0f) & (sx <= F.xmax) & (sy >= 0.0f) & (sy <= F.ymax);
  const V zero = {};
  return inside ? noise : zero;
}

// Columns [*x0, *x1) of row `y` whose sampling point lies within `margin` of the frame [0, W-1] x [0, H-1]
// in exact arithmetic (double here). With margin = +tol this is a superset of the pixels the exact float32 test
// accepts, with margin = -tol a subset: tol is far above the float32 rounding of sx, sy.
inline void columns_within(const Lattice& L, const Frame& F, int64_t y, double margin, int64_t* x0, int64_t* x1) {
  const double dy = static_cast<double>(y) - F.cy;
  double lo = -1.0, hi = static_cast<double>(F.width);
  // value(x) = a + k * (x - cx) must lie in [-margin, vmax + margin]
  auto clip = [&](double a, double k, double vmax) {
    if (k == 0.0) {
      if (a < -margin || a > vmax + margin) hi = lo - 1.0;
      return;
    }
    double e0 = F.cx + (-margin - a) / k, e1 = F.cx + (vmax + margin - a) / k;
    if (k < 0.0) std::swap(e0, e1);
    lo = std::max(lo, e0);
    hi = std::min(hi, e1);
  };
  clip(static_cast<double>(L.s) * dy + F.cx, L.c, F.xmax);
  clip(static_cast<double>(L.c) * dy + F.cy, -static_cast<double>(L.s), F.ymax);
  *x0 = std::max<int64_t>(0, static_cast<int64_t>(std::ceil(lo)));
  *x1 = std::max(*x0, std::min<int64_t>(F.width, static_cast<int64_t>(std::floor(hi)) + 1));
}

// Noise of row `y` at columns [x0, x0 + n) into dst[0 .. n), N pixels at a time: zeros where the row is surely
// outside the rotated frame, blocks without the per-pixel test where it is surely inside.
template <int N>
ANOFAST_ALWAYS_INLINE void noise_span(float* dst, const Lattice& lattice, const Frame& frame, int64_t y, int64_t x0,
                                      int64_t n) {
  const Lattice L = lattice;  // local copies: the stores to dst cannot alias them, so nothing is reloaded
  const Frame F = frame;
  const double tol = 1e-2 + 1e-5 * static_cast<double>(F.width + F.height);
  const int64_t x1 = x0 + n;
  int64_t a, b, ia, ib;
  columns_within(L, F, y, tol, &a, &b);
  columns_within(L, F, y, -tol, &ia, &ib);
  a = std::min(std::max(a, x0), x1);
  b = std::min(std::max(b, a), x1);
  ia = std::min(std::max(ia, a), b);
  ib = std::min(std::max(ib, ia), b);
  std::fill(dst, dst + (a - x0), 0.0f);
  std::fill(dst + (b - x0), dst + n, 0.0f);
  const float dy = static_cast<float>(y) - F.cy;
  const float cdy = L.c * dy, sdy = L.s * dy;
  int64_t x = a;
  for (; x < ia && x + N <= b; x += N) {  // left edge: blocks that start before ia are tested per pixel
    const auto r = noise_block<N, true>(L, F, cdy, sdy, x);
    std::memcpy(dst + (x - x0), &r, sizeof(r));
  }
  for (; x + N <= ib; x += N) {  // surely inside
    const auto r = noise_block<N, false>(L, F, cdy, sdy, x);
    std::memcpy(dst + (x - x0), &r, sizeof(r));
  }
  for (; x + N <= b; x += N) {  // right edge
    const auto r = noise_block<N, true>(L, F, cdy, sdy, x);
    std::memcpy(dst + (x - x0), &r, sizeof(r));
  }
  if (x < b) {
    const auto r = noise_block<N, true>(L, F, cdy, sdy, x);
    std::memcpy(dst + (x - x0), &r, sizeof(float) * static_cast<size_t>(b - x));
  }
}

// Mask row `y` of one sample: combine code `combine`, optional foreground row `fg` (nullptr = everywhere).
// Writes mask[0 .. W) in {0, 1} and ext = (first x, last x + 1), or (W, 0) for an empty row.
template <int N>
ANOFAST_ALWAYS_INLINE void mask_row(float* mask, int32_t* ext, const Lattice* lat, int32_t combine, float threshold,
                                    const float* fg, const Frame& F, int64_t y) {
  alignas(32) float n0[kChunk];
  alignas(32) float n1[kChunk];
  const int64_t W = F.width;
  for (int64_t x0 = 0; x0 < W; x0 += kChunk) {
    const int64_t n = std::min(kChunk, W - x0);
    float* m = mask + x0;
    if (fg != nullptr && std::none_of(fg + x0, fg + x0 + n, [](float f) { return f > 0.5f; })) {
      std::fill(m, m + n, 0.0f);  // no foreground here: no noise needed
      continue;
    }
    noise_span<N>(n0, lat[0], F, y, x0, n);
    if (combine == 0) {
      for (int64_t x = 0; x < n; ++x) m[x] = n0[x] > threshold ? 1.0f : 0.0f;
    } else {
      noise_span<N>(n1, lat[1], F, y, x0, n);
      if (combine == 1) {
        for (int64_t x = 0; x < n; ++x) m[x] = (n0[x] > threshold) | (n1[x] > threshold) ? 1.0f : 0.0f;
      } else {
        for (int64_t x = 0; x < n; ++x) m[x] = (n0[x] > threshold) & (n1[x] > threshold) ? 1.0f : 0.0f;
      }
    }
    if (fg != nullptr) {
      for (int64_t x = 0; x < n; ++x) m[x] = fg[x0 + x] > 0.5f ? m[x] : 0.0f;
    }
  }
  int32_t any = 0;  // a vectorised OR first: most rows are empty, and the scans below are scalar
  for (int64_t x = 0; x < W; ++x) any |= mask[x] != 0.0f;
  if (!any) {
    ext[0] = static_cast<int32_t>(W);
    ext[1] = 0;
    return;
  }
  int64_t first = 0, last = W;
  while (first < W && mask[first] == 0.0f) ++first;
  while (last > first && mask[last - 1] == 0.0f) --last;
  ext[0] = static_cast<int32_t>(first);
  ext[1] = static_cast<int32_t>(last);
}

}  // namespace anofast::perlin
