// Batched Poisson blending: one patch per task, a fixed-schedule multigrid per channel.
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

struct Level {
  int64_t h = 0, w = 0;
  std::vector<float> x, b;             // unknown (level 0) or error (coarser), right-hand side
  std::vector<uint8_t> m, colour[2];   // domain, and domain cells of each colour (red = (i + j) even)
};

// Reused per thread: no allocation once the sizes have been seen.
struct Workspace {
  std::vector<Level> lv;
  std::vector<float> r, tmp, dest, sol, src, rect;
  std::vector<int32_t> cand, rowsum;
};

#ifdef ANOFAST_X86_SIMD
// The 8 lanes of a uint8 0/1 (or 0/nonzero) mask as an all-ones / all-zeros float blend mask.
__attribute__((target("avx2"))) inline __m256 domain8(const uint8_t* m) {
  uint64_t m8;
  std::memcpy(&m8, m, sizeof(m8));
  return _mm256_castsi256_ps(_mm256_cmpgt_epi32(_mm256_cvtepu8_epi32(_mm_cvtsi64_si128(static_cast<long long>(m8))),
                                                _mm256_setzero_si256()));
}
#endif

// One red-black Gauss-Seidel pass over the domain cells of colour c (red = (i + j) even), on the flat index range
// [k0, k1) of the level: every cell is computed into t from the unmodified values, then the colour-c domain cells
// are kept. Colour-c cells read only cells of the other colour, which the pass does not write, so this gives the
// reference's values; cells off the domain (the border rows and columns among them) never change.
inline void smooth_pass(Level& L, int c, int64_t k0, int64_t k1, float* t) {
  const int64_t w = L.w;
  float* x = L.x.data();
  const float* b = L.b.data();
  const uint8_t* sel = L.colour[c].data();
  for (int64_t k = k0; k < k1; ++k) t[k] = (b[k] + ((x[k - w] + x[k + w]) + (x[k - 1] + x[k + 1]))) * 0.25f;
  for (int64_t k = k0; k < k1; ++k) x[k] = sel[k] ? t[k] : x[k];
}

#ifdef ANOFAST_X86_SIMD
// smooth_pass, 8 cells at a time in one loop (the tail by smooth_pass). Each block is stored one iteration late:
// storing it at once would stall the next block's overlapping unaligned load of its left neighbour (store
// forwarding). Reading a neighbour before or after its update gives the same value for the kept cells (above).
__attribute__((target("avx2"))) inline void smooth_pass_avx2(Level& L, int c, int64_t k0, int64_t k1, float* t) {
  const int64_t w = L.w, end = k0 + (k1 - k0) / 8 * 8;
  float* x = L.x.data();
  const float* b = L.b.data();
  const uint8_t* sel = L.colour[c].data();
  const __m256 quarter = _mm256_set1_ps(0.25f);
  __m256 held = _mm256_setzero_ps();
  for (int64_t k = k0; k < end; k += 8) {
    const __m256 ud = _mm256_add_ps(_mm256_loadu_ps(x + k - w), _mm256_loadu_ps(x + k + w));
    const __m256 lr = _mm256_add_ps(_mm256_loadu_ps(x + k - 1), _mm256_loadu_ps(x + k + 1));
    const __m256 tv = _mm256_mul_ps(_mm256_add_ps(_mm256_loadu_ps(b + k), _mm256_add_ps(ud, lr)), quarter);
    const __m256 nv = _mm256_blendv_ps(_mm256_loadu_ps(x + k), tv, domain8(sel + k));
    if (k > k0) _mm256_storeu_ps(x + k - 8, held);
    held = nv;
  }
  if (end > k0) _mm256_storeu_ps(x + end - 8, held);
  smooth_pass(L, c, end, k1, t);
}
#endif

// `sweeps` red-black sweeps over the interior rows (flat range [w + 1, (h - 1) w - 1)); t: scratch of the level's
// size.
inline void smooth(Level& L, int sweeps, float* t) {
  if (L.h < 3 || L.w < 3) return;
  const int64_t k0 = L.w + 1, k1 = (L.h - 1) * L.w - 1;
#ifdef ANOFAST_X86_SIMD
  const bool avx2 = simd::use_avx2();
#else
  constexpr bool avx2 = false;
#endif
  for (int s = 0; s < sweeps; ++s) {
    for (int c = 0; c < 2; ++c) {
#ifdef ANOFAST_X86_SIMD
      if (avx2) smooth_pass_avx2(L, c, k0, k1, t);
#endif
      if (!avx2) smooth_pass(L, c, k0, k1, t);
    }
  }
}

// r = b + (sum of the 4 neighbours) - 4 x on the domain cells of the flat range [k0, k1), 0 on the others.
inline void residual_scalar(const Level& F, float* r, int64_t k0, int64_t k1) {
  const int64_t w = F.w;
  const float* x = F.x.data();
  const float* b = F.b.data();
  const uint8_t* m = F.m.data();
  for (int64_t k = k0; k < k1; ++k) {
    const float v = (b[k] + ((x[k - w] + x[k + w]) + (x[k - 1] + x[k + 1]))) - 4.0f * x[k];
    r[k] = m[k] ? v : 0.0f;
  }
}

// x += e[i / 2][j / 2] on the domain cells of rows [1, h - 1) from column j0 (piecewise-constant prolongation).
inline void prolong_scalar(Level& L, const Level& C, int64_t j0) {
  for (int64_t i = 1; i < L.h - 1; ++i) {
    float* x = L.x.data() + i * L.w;
    const uint8_t* m = L.m.data() + i * L.w;
    const float* e = C.x.data() + (i / 2) * C.w;
    for (int64_t j = j0; j < L.w - 1; ++j) x[j] = m[j] ? x[j] + e[j / 2] : x[j];
  }
}

#ifdef ANOFAST_X86_SIMD
// residual_scalar, 8 cells at a time (the tail by residual_scalar).
__attribute__((target("avx2"))) inline void residual_avx2(const Level& F, float* r, int64_t k0, int64_t k1) {
  const int64_t w = F.w, end = k0 + (k1 > k0 ? (k1 - k0) / 8 * 8 : 0);
  const float* x = F.x.data();
  const float* b = F.b.data();
  const uint8_t* m = F.m.data();
  const __m256 four = _mm256_set1_ps(4.0f);
  for (int64_t k = k0; k < end; k += 8) {
    const __m256 ud = _mm256_add_ps(_mm256_loadu_ps(x + k - w), _mm256_loadu_ps(x + k + w));
    const __m256 lr = _mm256_add_ps(_mm256_loadu_ps(x + k - 1), _mm256_loadu_ps(x + k + 1));
    const __m256 v = _mm256_sub_ps(_mm256_add_ps(_mm256_loadu_ps(b + k), _mm256_add_ps(ud, lr)),
                                   _mm256_mul_ps(four, _mm256_loadu_ps(x + k)));
    _mm256_storeu_ps(r + k, _mm256_and_ps(v, domain8(m + k)));
  }
  residual_scalar(F, r, end, k1);
}

// prolong_scalar with 8 columns at a time from column 0 (column 0 is off the domain: unchanged).
__attribute__((target("avx2"))) inline void prolong_avx2(Level& L, const Level& C) {
  const int64_t end = L.w >= 8 ? (L.w - 8) / 8 * 8 + 8 : 0;  // 8-wide blocks [j, j + 8) with j + 8 <= w
  const __m256i pairs = _mm256_setr_epi32(0, 0, 1, 1, 2, 2, 3, 3);
  for (int64_t i = 1; i < L.h - 1; ++i) {
    float* x = L.x.data() + i * L.w;
    const uint8_t* m = L.m.data() + i * L.w;
    const float* e = C.x.data() + (i / 2) * C.w;
    for (int64_t j = 0; j < end; j += 8) {
      const __m256 ev = _mm256_permutevar8x32_ps(_mm256_castps128_ps256(_mm_loadu_ps(e + j / 2)), pairs);
      const __m256 xv = _mm256_loadu_ps(x + j);
      _mm256_storeu_ps(x + j, _mm256_blendv_ps(xv, _mm256_add_ps(xv, ev), domain8(m + j)));
    }
  }
  prolong_scalar(L, C, end > 1 ? end : 1);
}
#endif

inline void residual(const Level& F, float* r, int64_t k0, int64_t k1) {
#ifdef ANOFAST_X86_SIMD
  if (simd::use_avx2()) return residual_avx2(F, r, k0, k1);
#endif
  residual_scalar(F, r, k0, k1);
}

inline void prolong(Level& L, const Level& C) {
#ifdef ANOFAST_X86_SIMD
  if (simd::use_avx2()) return prolong_avx2(L, C);
#endif
  prolong_scalar(L, C, 1);
}

// Residual of level `l` restricted into the right-hand side of level l + 1 (whose error is reset to 0).
ANOFAST_POISSON_CLONES inline void restrict_residual(Level& F, Level& C, std::vector<float>& r) {
  const int64_t h = F.h, w = F.w;
  // one flat loop over the interior rows (their first and last cells are off the domain, so they get 0)
  const int64_t k0 = h >= 3 ? w + 1 : h * w, k1 = h >= 3 ? (h - 1) * w - 1 : h * w;
  std::fill(r.begin(), r.begin() + k0, 0.0f);
  std::fill(r.begin() + k1, r.begin() + h * w, 0.0f);
  residual(F, r.data(), k0, k1);
  for (int64_t I = 0; I < C.h; ++I) {
    const int64_t i = 2 * I;
    const float* r0 = r.data() + i * w;
    const float* r1 = r0 + w;
    float* cb = C.b.data() + I * C.w;
    const int64_t full = i + 1 < h ? w / 2 : 0;  // columns J whose four children all exist
    for (int64_t J = 0; J < full; ++J) cb[J] = (r0[2 * J] + r0[2 * J + 1]) + (r1[2 * J] + r1[2 * J + 1]);
    for (int64_t J = full; J < C.w; ++J) {
      const int64_t j = 2 * J;
      const float a = r0[j];
      const float bb = j + 1 < w ? r0[j + 1] : 0.0f;
      const float c = i + 1 < h ? r1[j] : 0.0f;
      const float d = (i + 1 < h && j + 1 < w) ? r1[j + 1] : 0.0f;
      cb[J] = (a + bb) + (c + d);
    }
  }
  std::fill(C.x.begin(), C.x.end(), 0.0f);
}

ANOFAST_POISSON_CLONES inline void vcycle(Workspace& ws, size_t l) {
  Level& L = ws.lv[l];
  if (l + 1 == ws.lv.size()) {
    smooth(L, kCoarse, ws.tmp.data());
    return;
  }
  smooth(L, kPre, ws.tmp.data());
  Level& C = ws.lv[l + 1];
  restrict_residual(L, C, ws.r);
  vcycle(ws, l + 1);
  prolong(L, C);
  smooth(L, kPost, ws.tmp.data());
}

// Sets up the level hierarchy of one patch (sizes and domains).
// region: the destination-space domain at the patch's top-left corner, row stride wp (nullptr: everywhere).
ANOFAST_POISSON_CLONES inline void setup_levels(Workspace& ws, int nlev, int64_t h, int64_t w, const uint8_t* region, int64_t wp) {
  ws.lv.resize(nlev);
  for (int l = 0; l < nlev; ++l) {
    Level& L = ws.lv[l];
    L.h = l == 0 ? h : (ws.lv[l - 1].h + 1) / 2;
    L.w = l == 0 ? w : (ws.lv[l - 1].w + 1) / 2;
    const size_t n = static_cast<size_t>(L.h * L.w);
    L.x.resize(n);
    L.b.resize(n);
    L.m.assign(n, 0);
    for (int64_t i = 0; i < L.h; ++i) {
      for (int64_t j = 0; j < L.w; ++j) {
        uint8_t v;
        if (l == 0) {
          v = (region == nullptr || region[i * wp + j] != 0) && i >= 1 && i <= h - 2 && j >= 1 && j <= w - 2;
        } else {
          const Level& F = ws.lv[l - 1];
          const int64_t fi = 2 * i, fj = 2 * j;
          v = fi + 1 < F.h && fj + 1 < F.w && F.m[fi * F.w + fj] && F.m[fi * F.w + fj + 1] &&
              F.m[(fi + 1) * F.w + fj] && F.m[(fi + 1) * F.w + fj + 1];
        }
        L.m[i * L.w + j] = v;
      }
    }
    for (int c = 0; c < 2; ++c) {
      L.colour[c].resize(n);
      for (int64_t i = 0; i < L.h; ++i)
        for (int64_t j = 0; j < L.w; ++j) L.colour[c][i * L.w + j] = L.m[i * L.w + j] && ((i + j) & 1) == c;
    }
  }
  const size_t n0 = static_cast<size_t>(h * w);
  if (ws.r.size() < n0) ws.r.resize(n0);
  if (ws.tmp.size() < n0) ws.tmp.resize(n0);
  if (ws.cand.size() < n0) ws.cand.resize(n0);
}

inline float edge(float sp, float sq, float dp, float dq, bool mixed) {
  const float s = sp - sq, d = dp - dq;
  return (mixed && !(std::fabs(s) > std::fabs(d))) ? d : s;
}

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
inline void mark_changes(const float* out, const T* original, float* mask, float* diff, int64_t C, int64_t H,
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
                        int cycles) {
  const int64_t y0 = box[0], x0 = box[1], h = box[2], w = box[3];
  if (h <= 0 || w <= 0) return;
  setup_levels(ws, num_levels(h, w), h, w, region ? region + y0 * W + x0 : nullptr, W);
  const int64_t n = h * w;
  ws.dest.resize(C * n);
  ws.sol.resize(C * n);
  ws.src.resize(C * n);
  if (img.u8) {  // the rectangle converted once; resample then indexes it as its own (C, sh, sw) image
    rect_to_float(ws.rect, img.u8, C, hs, wsz, sbox[0], sbox[1], sbox[2], sbox[3]);
    resample(ws.src.data(), ws.rect.data(), C, sbox[2], sbox[3], 0, 0, sbox[2], sbox[3], scy, scx, h, w);
  } else {
    resample(ws.src.data(), img.f, C, hs, wsz, sbox[0], sbox[1], sbox[2], sbox[3], scy, scx, h, w);
  }
  const int64_t wp = w;
  for (int64_t c = 0; c < C; ++c)
    for (int64_t i = 0; i < h; ++i)
      std::memcpy(ws.dest.data() + c * n + i * w, out + (c * H + y0 + i) * W + x0, sizeof(float) * w);
  Level& L0 = ws.lv[0];
  for (int64_t c = 0; c < C; ++c) {
    const float* d = ws.dest.data() + c * n;
    const float* s = ws.src.data() + c * n;
    for (int64_t i = 0; i < h; ++i) {
      for (int64_t j = 0; j < w; ++j) {
        const int64_t k = i * w + j;
        if (L0.m[k]) {
          const float* sp = s + i * wp + j;
          const float* dp = d + k;
          const float up = edge(sp[0], sp[-wp], dp[0], dp[-w], mixed);
          const float dn = edge(sp[0], sp[wp], dp[0], dp[w], mixed);
          const float lf = edge(sp[0], sp[-1], dp[0], dp[-1], mixed);
          const float rt = edge(sp[0], sp[1], dp[0], dp[1], mixed);
          L0.b[k] = (up + dn) + (lf + rt);
          L0.x[k] = sp[0];
        } else {
          L0.b[k] = 0.0f;
          L0.x[k] = d[k];
        }
      }
    }
    for (int k = 0; k < cycles; ++k) vcycle(ws, 0);
    float* o = ws.sol.data() + c * n;
    for (int64_t k = 0; k < n; ++k) {
      float v = L0.x[k];
      v = v > 0.0f ? v : 0.0f;
      v = v < 1.0f ? v : 1.0f;
      o[k] = v;
    }
  }
  // candidates: sum_c |o - d| > tol_sum inside the domain; then the 5x5 majority vote.
  for (int64_t k = 0; k < n; ++k) {
    float t = std::fabs(ws.sol[k] - ws.dest[k]);
    for (int64_t c = 1; c < C; ++c) t = t + std::fabs(ws.sol[c * n + k] - ws.dest[c * n + k]);
    ws.cand[k] = L0.m[k] && t > tol_sum;
  }
  // 5x5 vote as two 5-tap integer sums (exact): rows into ws.rowsum (zero beyond the patch), then columns
  ws.rowsum.resize(n);
  for (int64_t i = 0; i < h; ++i) {
    const int32_t* cr = ws.cand.data() + i * w;
    int32_t* rr = ws.rowsum.data() + i * w;
    for (int64_t j = 0; j < w; ++j) {
      int32_t v = 0;
      if (j >= 2 && j + 2 < w) {
        v = (cr[j - 2] + cr[j - 1]) + (cr[j] + cr[j + 1]) + cr[j + 2];
      } else {
        for (int64_t dj = -2; dj <= 2; ++dj) v += (j + dj >= 0 && j + dj < w) ? cr[j + dj] : 0;
      }
      rr[j] = v;
    }
  }
  for (int64_t i = 1; i < h - 1; ++i) {
    const int64_t ia = std::max<int64_t>(i - 2, 0), ib = std::min<int64_t>(i + 2, h - 1);
    for (int64_t j = 1; j < w - 1; ++j) {
      if (!L0.m[i * w + j]) continue;
      int32_t votes = 0;
      for (int64_t r = ia; r <= ib; ++r) votes += ws.rowsum[r * w + j];
      if (votes >= kMajority) {
        for (int64_t c = 0; c < C; ++c) out[(c * H + y0 + i) * W + x0 + j] = ws.sol[c * n + i * w + j];
      }
    }
  }
  // mask (and diff) over the box, branch-free so that it vectorises
  if (original.u8) mark_changes(out, original.u8, mask, diff, C, H, W, y0, x0, h, w);
  else mark_changes(out, original.f, mask, diff, C, H, W, y0, x0, h, w);
}

}  // namespace anofast::poisson
