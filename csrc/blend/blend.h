// mirrors anofast/reference/blend.py (blend_reference) operation by operation.
// Torch-free core: one image row per call, N pixels at a time with GCC/clang vector types (N = 4 at the x86-64
// baseline, 8 in the AVX2 copy that blend_cpu.cpp picks at run time); same IEEE operations either way.
#pragma once
#include <cstdint>
#include <cstring>

namespace anofast::blend {

constexpr float kInv255 = 0.003921568859368563f;  // float32(1/255), the reference's INV255

template <int N>
struct Vec {
  typedef float f __attribute__((vector_size(4 * N)));
  typedef int32_t i __attribute__((vector_size(4 * N)));
};

// Pointers of one row: channel c of the image row is img[c * plane .. c * plane + W).
struct Row {
  float* out;
  float* mask;
  const float* img;
  const uint8_t* tex;
  const float* place;
  int64_t plane;  // H * W: the distance between channels
};

template <typename T, typename P>
inline __attribute__((always_inline)) T load(const P* p) {
  T v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

template <typename T, typename P>
inline __attribute__((always_inline)) void store(P* p, const T& v) {
  std::memcpy(p, &v, sizeof(v));
}

// The per-pixel formula, for scalars (tails) and vectors alike: returns the output value; `i` is the image
// value, `t_u8` the texture value converted to float, `placed` selects (as `?:` does for vectors).
template <typename F, typename M>
inline __attribute__((always_inline)) F blend_value(F i, F t_u8, float opacity, M placed) {
  const F t = t_u8 * kInv255;
  F o = i + (opacity * (t - i));
  o = o > 0.0f ? o : 0.0f;  // max(o, 0), then min(o, 1)
  o = o < 1.0f ? o : 1.0f;
  return placed ? o : i;
}

constexpr int64_t kChunk = 256;  // pixels per stack buffer of converted texture values

// Pixels [x0, x1) of one row: blended where placed (copied elsewhere). Adds the changed pixels to *count and
// returns nonzero if an image value is outside [0, 1] or NaN (the caller raises).
template <int C, int N>
inline __attribute__((always_inline)) int32_t blend_span(const Row& r, float opacity, int64_t x0, int64_t x1,
                                                          int32_t* count) {
  using F = typename Vec<N>::f;
  using I = typename Vec<N>::i;
  // uint8 -> float goes through a stack buffer: compilers scalarise a narrow-vector conversion, but vectorise
  // this plain loop well (and the buffer stays in L1).
  alignas(32) float tf[C][kChunk];
  I bad = {}, n = {};
  int32_t nn = 0, bb = 0;
  for (int64_t c0 = x0; c0 < x1; c0 += kChunk) {
    const int64_t c1 = c0 + kChunk < x1 ? c0 + kChunk : x1;
    for (int c = 0; c < C; ++c) {
      const uint8_t* tex = r.tex + c * r.plane + c0;
      for (int64_t k = 0; k < c1 - c0; ++k) tf[c][k] = static_cast<float>(tex[k]);
    }
    int64_t x = c0;
    for (; x + N <= c1; x += N) {
      const I placed = load<F>(r.place + x) > 0.5f;
      I changed = {};
      for (int c = 0; c < C; ++c) {
        const int64_t o = c * r.plane + x;
        const F i = load<F>(r.img + o);
        const F v = blend_value(i, load<F>(&tf[c][x - c0]), opacity, placed);
        store(r.out + o, v);
        changed |= v != i;
        bad |= ~((i >= 0.0f) & (i <= 1.0f));
      }
      store(r.mask + x, __builtin_convertvector(changed & 1, F));
      n -= changed;  // lanes are -1 where true
    }
    for (; x < c1; ++x) {
      const bool placed = r.place[x] > 0.5f;
      bool changed = false;
      for (int c = 0; c < C; ++c) {
        const int64_t o = c * r.plane + x;
        const float i = r.img[o];
        const float v = blend_value(i, tf[c][x - c0], opacity, placed);
        r.out[o] = v;
        changed |= v != i;
        bb |= !((i >= 0.0f) & (i <= 1.0f));
      }
      r.mask[x] = changed ? 1.0f : 0.0f;
      nn += changed;
    }
  }
  for (int k = 0; k < N; ++k) nn += n[k], bb |= bad[k];
  *count += nn;
  return bb;
}

// Pixels [x0, x1) copied unchanged with mask 0; returns nonzero if an image value is outside [0, 1] or NaN.
template <int C>
inline __attribute__((always_inline)) int32_t copy_span(const Row& r, int64_t x0, int64_t x1) {
  int32_t bad = 0;
  for (int c = 0; c < C; ++c) {
    const float* img = r.img + c * r.plane;
    float* out = r.out + c * r.plane;
    for (int64_t x = x0; x < x1; ++x) bad |= !((img[x] >= 0.0f) & (img[x] <= 1.0f));  // &: no branch
    if (x1 > x0) std::memcpy(out + x0, img + x0, sizeof(float) * static_cast<size_t>(x1 - x0));
  }
  if (x1 > x0) std::memset(r.mask + x0, 0, sizeof(float) * static_cast<size_t>(x1 - x0));
  return bad;
}

// One row: pixels in [x0, x1) are blended where placed, the rest copied. Returns the row's count of changed
// pixels, or -1 if an image value of the row lies outside [0, 1] (the caller raises).
template <int C, int N>
inline __attribute__((always_inline)) int32_t blend_row(const Row& r, float opacity, int64_t width, int64_t x0,
                                                         int64_t x1) {
  int32_t count = 0;
  int32_t bad = copy_span<C>(r, 0, x0);
  bad |= blend_span<C, N>(r, opacity, x0, x1, &count);
  bad |= copy_span<C>(r, x1 > x0 ? x1 : x0, width);
  return bad ? -1 : count;
}

}  // namespace anofast::blend
