// mirrors anofast/reference/texture.py: a chain of texture-augmentation stages per sample, per-channel histograms.
// Torch-free core over raw planar (3, H, W) uint8 buffers; every float expression keeps the reference's order.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

// Float selects (clamps, hue wrap, min / max) only become branch-free vector code (minps / maxps) when the
// compiler may evaluate both sides and need not keep NaN / signed-zero semantics. No value changes: every value
// here is finite (inputs are bytes, parameters are checked finite), the sign of a zero never reaches an output
// (every output goes through round_u8, and +-0 compare equal), and there is still no reassociation and no
// contraction (-ffp-contract=off stays in force), so results remain bit-identical to the reference.
#pragma GCC push_options
#pragma GCC optimize("no-trapping-math", "finite-math-only", "no-signed-zeros")

namespace anofast::texture {

// The row and stage functions are forced inline into chain_row / chain_sparse, so their AVX2 clones compile them for
// AVX2 too (a call out of a clone would run the baseline version).
#define ANOFAST_TEXTURE_INLINE inline __attribute__((always_inline))

// std::min / std::max semantics, defined inside the pragma region: the std templates were compiled with the
// command-line options and GCC will not inline them into functions with different ones.
template <typename T>
ANOFAST_TEXTURE_INLINE T min_(T a, T b) {
  return b < a ? b : a;
}
template <typename T>
ANOFAST_TEXTURE_INLINE T max_(T a, T b) {
  return a < b ? b : a;
}

enum Mode : int32_t {
  kIdentity = 0,
  kLut = 1,
  kBrightness = 2,
  kHueSat = 3,
  kSharpness = 4,
  kAffine = 5,
  kGrayscale = 6,
};
constexpr int32_t kNumModes = 7;

// double -> float, exactly as torch.tensor(0.299, dtype=float32) rounds it.
const float kWr = static_cast<float>(0.299);
const float kWg = static_cast<float>(0.587);
const float kWb = static_cast<float>(0.114);

// floor(x + 0.5) clamped to [0, 255]. Clamping to [0, 255.5] before truncating gives the same integer and keeps
// the loop vectorisable at baseline SSE2 (no floor instruction needed).
ANOFAST_TEXTURE_INLINE uint8_t round_u8(float x) {
  const float v = min_(max_(x + 0.5f, 0.0f), 255.5f);
  return static_cast<uint8_t>(static_cast<int32_t>(v));
}

ANOFAST_TEXTURE_INLINE float luma(float r, float g, float b) { return r * kWr + g * kWg + b * kWb; }

// Eight bytes per step through one 64-bit load and store: GCC's emulated byte gather (what it makes of the plain
// loop at baseline SSE2) runs at half this speed.
ANOFAST_TEXTURE_INLINE void lut_row(const uint8_t* __restrict s, uint8_t* __restrict o, const uint8_t* __restrict t,
                                    int64_t n) {
  int64_t x = 0;
  for (; x + 8 <= n; x += 8) {
    uint64_t v, r = 0;
    std::memcpy(&v, s + x, 8);
    for (int k = 0; k < 8; ++k) r |= static_cast<uint64_t>(t[(v >> (8 * k)) & 255]) << (8 * k);
    std::memcpy(o + x, &r, 8);
  }
  for (; x < n; ++x) o[x] = t[s[x]];
}

// Pointwise rows take one __restrict pointer per plane, each already offset to the first of the n pixels (so a
// chain can pass a row segment through small scratch buffers): restrict on parameters is what lets GCC vectorise
// the uint8 loops without alias checks (restrict-qualified locals copied from a struct are not enough).
using cu8 = const uint8_t* __restrict;
using mu8 = uint8_t* __restrict;

ANOFAST_TEXTURE_INLINE void brightness_row(cu8 sr, cu8 sg, cu8 sb, mu8 orr, mu8 og, mu8 ob, float mul1, float add,
                                           int64_t n) {
  for (int64_t x = 0; x < n; ++x) {
    const float fr = sr[x], fg = sg[x], fb = sb[x];
    const float delta = luma(fr, fg, fb) * mul1 + add;
    orr[x] = round_u8(fr + delta);
    og[x] = round_u8(fg + delta);
    ob[x] = round_u8(fb + delta);
  }
}

ANOFAST_TEXTURE_INLINE void grayscale_row(cu8 sr, cu8 sg, cu8 sb, mu8 orr, mu8 og, mu8 ob, int64_t n) {
  for (int64_t x = 0; x < n; ++x) {
    const uint8_t y = round_u8(luma(sr[x], sg[x], sb[x]));
    orr[x] = y;
    og[x] = y;
    ob[x] = y;
  }
}

// One channel of HSV -> RGB: v - v s clamp(min(k, 4 - k), 0, 1), k = (hue + n) mod 6 (n = 5, 3, 1 for R, G, B).
ANOFAST_TEXTURE_INLINE float hsv_channel(float hue, float n, float v, float vs) {
  float k = hue + n;
  k = k >= 6.0f ? k - 6.0f : k;
  return v - vs * min_(max_(min_(k, 4.0f - k), 0.0f), 1.0f);
}

// shift: hue shift in sextants in [0, 6); HSV saturation becomes clamp(S * smul + sadd, 0, 1).
ANOFAST_TEXTURE_INLINE void huesat_row(cu8 sr, cu8 sg, cu8 sb, mu8 orr, mu8 og, mu8 ob, const float* __restrict rec,
                                       float shift,
                       float smul, float sadd, int64_t n) {
  for (int64_t x = 0; x < n; ++x) {
    const int32_t ir = sr[x], ig = sg[x], ib = sb[x];
    const int32_t mx = max_(max_(ir, ig), ib);
    const int32_t d = mx - min_(min_(ir, ig), ib);
    const float rd = rec[d];
    // RGB -> HSV hue in sextants [-1, 5]; ties resolve in the order R, G, B.
    const float h_r = static_cast<float>(ig - ib) * rd;
    const float h_g = static_cast<float>(ib - ir) * rd + 2.0f;
    const float h_b = static_cast<float>(ir - ig) * rd + 4.0f;
    float hue = mx == ir ? h_r : (mx == ig ? h_g : h_b);
    hue = hue + shift;
    hue = hue >= 6.0f ? hue - 6.0f : hue;
    hue = hue < 0.0f ? hue + 6.0f : hue;
    const float sat = min_(max_(static_cast<float>(d) * rec[mx] * smul + sadd, 0.0f), 1.0f);
    const float v = static_cast<float>(mx);
    const float vs = v * sat;
    orr[x] = round_u8(hsv_channel(hue, 5.0f, v, vs));
    og[x] = round_u8(hsv_channel(hue, 3.0f, v, vs));
    ob[x] = round_u8(hsv_channel(hue, 1.0f, v, vs));
  }
}

// `up`, `s`, `dn` point at column x0 of rows y-1, y, y+1 (column x0 - 1 exists); `o` at the first output pixel.
ANOFAST_TEXTURE_INLINE void sharpness_interior(cu8 up, cu8 s, cu8 dn, mu8 o, float factor, int64_t n) {
  for (int64_t x = 0; x < n; ++x) {
    // 16-bit lanes: 2 * (3x3 sum) + 13 <= 6643.
    const uint16_t total = static_cast<uint16_t>(up[x - 1] + up[x] + up[x + 1] + s[x - 1] + 5 * s[x] + s[x + 1] +
                                                 dn[x - 1] + dn[x] + dn[x + 1]);
    const float deg = static_cast<float>(static_cast<uint16_t>(2 * total + 13) / 26);  // round(total / 13), half up
    o[x] = round_u8(deg + factor * (static_cast<float>(s[x]) - deg));
  }
}

// PIL ImageEnhance.Sharpness on n pixels of one row of one plane: `up`, `s`, `dn` point at the first pixel's column in
// rows y-1, y, y+1 (up and dn are read only off the image border); `left` / `right`: the segment starts at column 0 /
// ends at the last column. Image-border pixels keep src: deg = src, and round(src + f * 0) = src.
ANOFAST_TEXTURE_INLINE void sharpness_segment(const uint8_t* up, const uint8_t* s, const uint8_t* dn, uint8_t* o,
                                              int64_t n, bool left, bool right, bool border_row, float factor) {
  if (border_row) {
    std::memcpy(o, s, static_cast<size_t>(n));
    return;
  }
  int64_t a = 0, b = n;
  if (left) o[a++] = s[0];
  if (right && b > a) o[--b] = s[n - 1];
  if (b > a) sharpness_interior(up + a, s + a, dn + a, o + a, factor, b - a);
}

// Sharpness on the pixels [x0, x1) of row y of one plane (`s` points at column 0 of row y); `o` points at the output
// of pixel x0. With a table `pre` (256 bytes), the stencil reads pre[byte] instead of the byte: the bytes of the three
// rows are mapped into a stack window first, a piece of kWindow pixels at a time.
ANOFAST_TEXTURE_INLINE void sharpness_row(const uint8_t* s, uint8_t* o, int64_t height, int64_t width, int64_t y,
                                          float factor, int64_t x0, int64_t x1, const uint8_t* pre) {
  const bool border_row = y == 0 || y == height - 1;
  const uint8_t* up = border_row ? s : s - width;
  const uint8_t* dn = border_row ? s : s + width;
  if (!pre) {
    sharpness_segment(up + x0, s + x0, dn + x0, o, x1 - x0, x0 == 0, x1 == width, border_row, factor);
    return;
  }
  constexpr int64_t kWindow = 256;
  uint8_t win[3][kWindow + 2];
  const uint8_t* rows[3] = {up, s, dn};
  for (int64_t xa = x0; xa < x1; xa += kWindow) {
    const int64_t xb = min_(x1, xa + kWindow);
    const int64_t c0 = max_(xa - 1, int64_t{0}), c1 = min_(xb + 1, width);  // the columns the stencil reads
    for (int r = 0; r < 3; ++r) {
      for (int64_t x = c0; x < c1; ++x) win[r][x - c0] = pre[rows[r][x]];
    }
    const int64_t at = xa - c0;
    sharpness_segment(win[0] + at, win[1] + at, win[2] + at, o + (xa - x0), xb - xa, xa == 0, xb == width, border_row,
                      factor);
  }
}

// floor for |v| < 2^31 without a floor instruction (baseline SSE2 has none): truncate, step down if above.
ANOFAST_TEXTURE_INLINE int32_t floor_i32(float v) {
  const int32_t i = static_cast<int32_t>(v);
  return i - (v < static_cast<float>(i) ? 1 : 0);
}

// Source coordinates of n consecutive pixels of a row: integer parts (floor) and fractions.
ANOFAST_TEXTURE_INLINE void affine_coords(int32_t xs, int32_t n, float cx, float cy, float m0, float m2, float by,
                                          float bty,
                          int32_t* __restrict ixs, int32_t* __restrict iys, float* __restrict fxs,
                          float* __restrict fys) {
  for (int32_t j = 0; j < n; ++j) {
    const float dx = static_cast<float>(xs + j) - cx;  // int32 -> float: a packed conversion exists
    const float sx = (m0 * dx + by) + cx;
    const float sy = (m2 * dx + bty) + cy;
    const int32_t ix = floor_i32(sx), iy = floor_i32(sy);
    ixs[j] = ix;
    iys[j] = iy;
    fxs[j] = sx - static_cast<float>(ix);
    fys[j] = sy - static_cast<float>(iy);
  }
}

// Bilinear blend of one channel; taps[j] packs its four tap bytes (00, 01, 10, 11 from the low byte up), with 0 for
// a tap outside the image (the reference's zero fill).
ANOFAST_TEXTURE_INLINE void affine_blend(uint8_t* __restrict out, int32_t n, const uint32_t* __restrict taps,
                         const float* __restrict fxs, const float* __restrict fys) {
  for (int32_t j = 0; j < n; ++j) {
    const uint32_t t = taps[j];
    const float v00 = static_cast<float>(static_cast<int32_t>(t & 255u));
    const float v01 = static_cast<float>(static_cast<int32_t>((t >> 8) & 255u));
    const float v10 = static_cast<float>(static_cast<int32_t>((t >> 16) & 255u));
    const float v11 = static_cast<float>(static_cast<int32_t>(t >> 24));
    const float top = v00 + fxs[j] * (v01 - v00);
    const float bottom = v10 + fxs[j] * (v11 - v10);
    out[j] = round_u8(top + fys[j] * (bottom - top));
  }
}

ANOFAST_TEXTURE_INLINE uint32_t pack4(uint32_t a, uint32_t b, uint32_t c, uint32_t d) {
  return a | b << 8 | c << 16 | d << 24;
}

// Bilinear sample at M (p - c) + c with zero fill; `plane` points at the sample's (3, H, W) source. Pixels go in
// chunks: coordinates (vectorised), then per channel a byte gather packing the four taps of a pixel into one word,
// then the vectorised blend (the gather itself cannot be vectorised at baseline SSE2). The map is linear along the
// row, so a chunk whose first and last pixels have all four taps inside (outside) the image has that for every
// pixel: those chunks (most of them) skip the bounds checks. o[c] points at the output of pixel x0. With tables
// `pre` ((3, 256) bytes), every tap inside the image reads pre[c][byte] (taps outside stay 0).
ANOFAST_TEXTURE_INLINE void affine_row(const uint8_t* plane, uint8_t* const o[3], int64_t height, int64_t width,
                                       int64_t y, const float* m, int64_t x0, int64_t x1, const uint8_t* pre) {
  const int64_t hw = height * width;
  if (m[1] == 0.0f && m[2] == 0.0f && (m[0] == 1.0f || m[0] == -1.0f) && (m[3] == 1.0f || m[3] == -1.0f)) {
    // Mirrors (and the identity) map pixel centres onto pixel centres: every fraction is 0, so the bilinear blend
    // returns the source byte exactly. Copy it directly.
    const int64_t sy = m[3] > 0.0f ? y : height - 1 - y;
    for (int c = 0; c < 3; ++c) {
      const uint8_t* __restrict s = plane + c * hw + sy * width;
      uint8_t* __restrict out = o[c];
      if (m[0] > 0.0f) {
        if (pre) {
          lut_row(s + x0, out, pre + c * 256, x1 - x0);
        } else {
          std::memcpy(out, s + x0, static_cast<size_t>(x1 - x0));
        }
      } else {
        const uint8_t* t = pre ? pre + c * 256 : nullptr;
        for (int64_t x = x0; x < x1; ++x) out[x - x0] = t ? t[s[width - 1 - x]] : s[width - 1 - x];
      }
    }
    return;
  }
  constexpr int32_t kChunk = 16;  // small: a row crosses the image border in at most two (slower) chunks
  int32_t ixs[kChunk], iys[kChunk];
  float fxs[kChunk], fys[kChunk];
  uint32_t taps[3][kChunk];
  const float cx = static_cast<float>(width - 1) * 0.5f;
  const float cy = static_cast<float>(height - 1) * 0.5f;
  const float dy = static_cast<float>(y) - cy;
  const float m0 = m[0], m2 = m[2], by = m[1] * dy, bty = m[3] * dy;
  const int32_t w = static_cast<int32_t>(width), h = static_cast<int32_t>(height);
  for (int32_t xs = static_cast<int32_t>(x0); xs < x1; xs += kChunk) {
    const int32_t n = min_(kChunk, static_cast<int32_t>(x1) - xs);
    affine_coords(xs, n, cx, cy, m0, m2, by, bty, ixs, iys, fxs, fys);
    const int32_t ix_lo = min_(ixs[0], ixs[n - 1]), ix_hi = max_(ixs[0], ixs[n - 1]);
    const int32_t iy_lo = min_(iys[0], iys[n - 1]), iy_hi = max_(iys[0], iys[n - 1]);
    const bool interior = ix_lo >= 0 && ix_hi < w - 1 && iy_lo >= 0 && iy_hi < h - 1;
    const bool outside = ix_hi < -1 || ix_lo > w - 1 || iy_hi < -1 || iy_lo > h - 1;
    if (outside) {
      for (int32_t j = 0; j < n; ++j) taps[0][j] = taps[1][j] = taps[2][j] = 0;
    } else if (interior && !pre) {
      for (int32_t j = 0; j < n; ++j) {
        const uint8_t* q = plane + (iys[j] * w + ixs[j]);
        taps[0][j] = pack4(q[0], q[1], q[w], q[w + 1]);
        q += hw;
        taps[1][j] = pack4(q[0], q[1], q[w], q[w + 1]);
        q += hw;
        taps[2][j] = pack4(q[0], q[1], q[w], q[w + 1]);
      }
    } else if (interior) {
      for (int c = 0; c < 3; ++c) {
        const uint8_t* t = pre + c * 256;
        for (int32_t j = 0; j < n; ++j) {
          const uint8_t* q = plane + c * hw + (iys[j] * w + ixs[j]);
          taps[c][j] = pack4(t[q[0]], t[q[1]], t[q[w]], t[q[w + 1]]);
        }
      }
    } else {
      for (int c = 0; c < 3; ++c) {
        const uint8_t* p = plane + c * hw;
        uint8_t t[256];  // the channel's table, or the identity
        for (int v = 0; v < 256; ++v) t[v] = pre ? pre[c * 256 + v] : static_cast<uint8_t>(v);
        for (int32_t j = 0; j < n; ++j) {
          const int32_t ix = ixs[j], iy = iys[j];
          const bool x0in = ix >= 0 && ix < w, x1in = ix >= -1 && ix < w - 1;
          const bool y0in = iy >= 0 && iy < h, y1in = iy >= -1 && iy < h - 1;
          const uint8_t* r0 = p + static_cast<int64_t>(iy) * w;
          const uint8_t* r1 = r0 + w;
          taps[c][j] = pack4(y0in && x0in ? t[r0[ix]] : 0, y0in && x1in ? t[r0[ix + 1]] : 0,
                             y1in && x0in ? t[r1[ix]] : 0, y1in && x1in ? t[r1[ix + 1]] : 0);
        }
      }
    }
    for (int c = 0; c < 3; ++c) affine_blend(o[c] + (xs - x0), n, taps[c], fxs, fys);
  }
}

ANOFAST_TEXTURE_INLINE bool is_pointwise(int32_t mode) { return mode != kSharpness && mode != kAffine; }

// One stage on the pixels [x0, x1) of row y. Pointwise modes read `in` (three plane pointers at pixel x0);
// SHARPNESS and AFFINE read the sample's whole (3, H, W) source `plane` instead, through the (3, 256) tables `pre`
// when given (the tables before them in the chain). Writes o[c][0 .. x1 - x0).
ANOFAST_TEXTURE_INLINE void stage_segment(int32_t mode, const float* fp, const uint8_t* lut, const float* rec,
                                          const uint8_t* plane, const uint8_t* pre, int64_t height, int64_t width,
                                          int64_t y, int64_t x0, int64_t x1, const uint8_t* const in[3],
                                          uint8_t* const o[3]) {
  const int64_t n = x1 - x0;
  switch (mode) {
    case kLut:
      for (int c = 0; c < 3; ++c) lut_row(in[c], o[c], lut + c * 256, n);
      break;
    case kBrightness: brightness_row(in[0], in[1], in[2], o[0], o[1], o[2], fp[0], fp[1], n); break;
    case kHueSat: huesat_row(in[0], in[1], in[2], o[0], o[1], o[2], rec, fp[0], fp[1], fp[2], n); break;
    case kSharpness:
      for (int c = 0; c < 3; ++c) {
        sharpness_row(plane + (c * height + y) * width, o[c], height, width, y, fp[0], x0, x1,
                      pre ? pre + c * 256 : nullptr);
      }
      break;
    case kAffine: affine_row(plane, o, height, width, y, fp, x0, x1, pre); break;
    case kGrayscale: grayscale_row(in[0], in[1], in[2], o[0], o[1], o[2], n); break;
    default:
      for (int c = 0; c < 3; ++c) std::memcpy(o[c], in[c], static_cast<size_t>(n));
      break;
  }
}

// Where the compiler supports it, chain_row and chain_sparse are also built for AVX2 and picked at load time (glibc
// ifunc): the wheel stays baseline x86-64, and AVX2 machines run the pointwise loops about twice as fast. AVX2
// brings no FMA (a separate ISA flag) and -ffp-contract=off holds, so both versions compute the same bits.
#if defined(__GNUC__) && defined(__x86_64__) && defined(__linux__) && !defined(ANOFAST_NO_CLONES)
#define ANOFAST_TEXTURE_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define ANOFAST_TEXTURE_CLONES
#endif

constexpr int64_t kSegment = 256;  // pixels a chain carries through its stack scratch at a time

// A sample's chain on the pixels [x0, x1) of row y: the stages stages[0 .. n_stages) (indices into the sample's
// mode (K,), fp (K, 4), lut (K, 3, 256)) in order; the first reads `plane` (the sample's (3, H, W) source; through the
// tables `pre` if it is a stencil stage and `pre` is given), each later one (pointwise) reads the previous one's bytes
// from a stack buffer, the last writes `out` (the sample's (3, H, W) output). Every stage rounds to uint8 as a
// separate pass would, so the bytes are those of n_stages passes.
ANOFAST_TEXTURE_CLONES inline void chain_row(const uint8_t* plane, uint8_t* out, const uint8_t* pre,
                                             const int32_t* stages, int32_t n_stages, const int32_t* mode,
                                             const float* fp, const uint8_t* lut, const float* rec, int64_t height,
                                             int64_t width, int64_t y, int64_t x0, int64_t x1) {
  const int64_t hw = height * width;
  uint8_t scratch[2][3][kSegment];
  for (int64_t xa = x0; xa < x1; xa += kSegment) {
    const int64_t xb = min_(x1, xa + kSegment);
    const uint8_t* in[3];
    uint8_t* o[3];
    for (int c = 0; c < 3; ++c) in[c] = plane + c * hw + y * width + xa;
    for (int32_t i = 0; i < n_stages; ++i) {
      const int32_t k = stages[i];
      for (int c = 0; c < 3; ++c) o[c] = i == n_stages - 1 ? out + c * hw + y * width + xa : scratch[i & 1][c];
      stage_segment(mode[k], fp + 4 * k, lut + 768 * k, rec, plane, pre, height, width, y, xa, xb, in, o);
      for (int c = 0; c < 3; ++c) in[c] = o[c];
    }
  }
}

// Finds the maximal runs of pixels with w[x] > 0.5 in [x0, x1), left to right: writes their first and one-past-last
// columns, returns how many (at most (x1 - x0 + 1) / 2). Tests 64 pixels per word (SSE2 compares where available),
// so the empty stretches of a sparse mask cost little.
ANOFAST_TEXTURE_INLINE int32_t find_runs(const float* w, int64_t x0, int64_t x1, int64_t* starts, int64_t* ends) {
  int32_t count = 0;
  bool open = false;
  for (int64_t base = x0; base < x1; base += 64) {
    const int n = static_cast<int>(min_(int64_t{64}, x1 - base));
    const float* p = w + base;
    uint64_t m = 0;
    int k = 0;
#ifdef __SSE2__
    const __m128 half = _mm_set1_ps(0.5f);
    for (; k + 4 <= n; k += 4) {
      m |= static_cast<uint64_t>(_mm_movemask_ps(_mm_cmpgt_ps(_mm_loadu_ps(p + k), half))) << k;
    }
#endif
    for (; k < n; ++k) m |= static_cast<uint64_t>(p[k] > 0.5f) << k;
    int pos = 0;  // bits below pos are done
    while (pos < 64) {
      const uint64_t from = ~uint64_t{0} << pos;
      // The next bit that differs from the current state (bits >= n are 0: a run open at bit n ends at x1).
      const uint64_t next = (open ? ~m : m) & from;
      if (!next) break;
      pos = __builtin_ctzll(next);
      if (open) {
        ends[count++] = base + pos;
      } else {
        starts[count] = base + pos;
      }
      open = !open;
    }
  }
  if (open) ends[count++] = x1;
  return count;
}

// Pixels of one sample packed for the pointwise stages of a chain, and the runs they came from.
struct Pack {
  static constexpr int32_t kSize = 1024;
  uint8_t buf[2][3][kSize];
  int64_t run_y[kSize], run_x[kSize];
  int32_t run_n[kSize], run_at[kSize];
  int32_t n_runs = 0, used = 0;
};

// Runs stages[first .. n_stages) (pointwise) over the packed pixels, writes them back to their runs in `out` (the
// sample's (3, H, W)) and empties the pack.
ANOFAST_TEXTURE_INLINE void flush_pack(Pack& p, uint8_t* out, int32_t first, const int32_t* stages, int32_t n_stages,
                                       const int32_t* mode, const float* fp, const uint8_t* lut, const float* rec,
                                       int64_t height, int64_t width) {
  int cur = 0;
  for (int32_t i = first; i < n_stages; ++i, cur ^= 1) {
    const int32_t k = stages[i];
    const uint8_t* in[3] = {p.buf[cur][0], p.buf[cur][1], p.buf[cur][2]};
    uint8_t* o[3] = {p.buf[cur ^ 1][0], p.buf[cur ^ 1][1], p.buf[cur ^ 1][2]};
    stage_segment(mode[k], fp + 4 * k, lut + 768 * k, rec, nullptr, nullptr, height, width, 0, 0, p.used, in,
                  o);
  }
  const int64_t hw = height * width;
  for (int32_t r = 0; r < p.n_runs; ++r) {
    for (int c = 0; c < 3; ++c) {
      std::memcpy(out + c * hw + p.run_y[r] * width + p.run_x[r], p.buf[cur][c] + p.run_at[r],
                  static_cast<size_t>(p.run_n[r]));
    }
  }
  p.n_runs = p.used = 0;
}

// The sparse form of chain_row over rows [y0, y1) and columns [x0, x1) of one sample: only the pixels with
// where[y * width + x] > 0.5. Mask runs are short (a Perlin blob crosses a row in ~8 pixels), so instead of running
// the chain run by run (scalar loop tails, a call per stage per run) the pixels are packed into a buffer, the
// pointwise stages run over the whole buffer, and the results go back run by run. A first stage that reads
// neighbours runs per run, at the pixels' real positions (through `pre`, as in chain_row), straight into the buffer.
ANOFAST_TEXTURE_CLONES inline void chain_sparse(const uint8_t* plane, uint8_t* out, const uint8_t* pre,
                                                const float* where, const int32_t* stages, int32_t n_stages,
                                                const int32_t* mode, const float* fp, const uint8_t* lut,
                                                const float* rec, int64_t height, int64_t width, int64_t y0,
                                                int64_t y1, int64_t x0, int64_t x1) {
  constexpr int64_t kCols = 1024;  // columns scanned at a time
  Pack p;
  int64_t starts[kCols / 2], ends[kCols / 2];
  const int64_t hw = height * width;
  const int32_t head = stages[0];
  const bool stencil = !is_pointwise(mode[head]);
  for (int64_t y = y0; y < y1; ++y) {
    for (int64_t xc = x0; xc < x1; xc += kCols) {
      const int32_t found = find_runs(where + y * width, xc, min_(x1, xc + kCols), starts, ends);
      for (int32_t r = 0; r < found; ++r) {
        for (int64_t xa = starts[r]; xa < ends[r];) {
          if (p.used == Pack::kSize) flush_pack(p, out, stencil, stages, n_stages, mode, fp, lut, rec, height, width);
          const int32_t n = static_cast<int32_t>(min_(ends[r] - xa, static_cast<int64_t>(Pack::kSize - p.used)));
          uint8_t* o[3] = {p.buf[0][0] + p.used, p.buf[0][1] + p.used, p.buf[0][2] + p.used};
          if (stencil) {
            stage_segment(mode[head], fp + 4 * head, lut + 768 * head, rec, plane, pre, height, width, y, xa,
                          xa + n, nullptr, o);
          } else {
            for (int c = 0; c < 3; ++c) std::memcpy(o[c], plane + c * hw + y * width + xa, static_cast<size_t>(n));
          }
          p.run_y[p.n_runs] = y;
          p.run_x[p.n_runs] = xa;
          p.run_n[p.n_runs] = n;
          p.run_at[p.n_runs++] = p.used;
          p.used += n;
          xa += n;
        }
      }
    }
  }
  if (p.used) flush_pack(p, out, stencil, stages, n_stages, mode, fp, lut, rec, height, width);
}

// --- image-dependent tables (host-side work, done here so the CPU path has no per-call torch overhead) ---------

enum HistKind : int32_t { kHistNone = 0, kHistAutocontrast = 1, kHistEqualize = 2, kHistContrast = 3 };

inline void identity_lut(uint8_t* lut) {
  for (int v = 0; v < 256; ++v) lut[v] = static_cast<uint8_t>(v);
}

// PIL ImageOps.autocontrast(image, cutoff) for one channel, PIL's loops and arithmetic verbatim.
inline void autocontrast_lut(const int32_t* hist, int64_t cutoff, uint8_t* lut) {
  int64_t h[256];
  int64_t n = 0;
  for (int v = 0; v < 256; ++v) n += h[v] = hist[v];
  const int64_t cut = n * cutoff / 100;
  int64_t c = cut;
  for (int lo = 0; lo < 256 && c > 0; ++lo) {
    const int64_t take = min_(c, h[lo]);
    h[lo] -= take;
    c -= take;
  }
  c = cut;
  for (int hi = 255; hi >= 0 && c > 0; --hi) {
    const int64_t take = min_(c, h[hi]);
    h[hi] -= take;
    c -= take;
  }
  int lo = 0, hi = 255;
  while (lo < 256 && h[lo] == 0) ++lo;
  while (hi >= 0 && h[hi] == 0) --hi;
  if (hi <= lo) {
    identity_lut(lut);
    return;
  }
  const double scale = 255.0 / static_cast<double>(hi - lo);
  const double offset = -static_cast<double>(lo) * scale;
  for (int v = 0; v < 256; ++v) {
    const double x = static_cast<double>(v) * scale + offset;
    lut[v] = static_cast<uint8_t>(min_(max_(static_cast<int64_t>(x), int64_t{0}), int64_t{255}));  // int(): truncation
  }
}

// PIL ImageOps.equalize for one channel (integer arithmetic; PIL's point() clips the table at 255).
inline void equalize_lut(const int32_t* h, uint8_t* lut) {
  int64_t total = 0, last = 0, bins = 0;
  for (int v = 0; v < 256; ++v) {
    total += h[v];
    if (h[v] > 0) {
      last = h[v];
      ++bins;
    }
  }
  const int64_t step = (total - last) / 255;
  if (bins <= 1 || step == 0) {
    identity_lut(lut);
    return;
  }
  int64_t n = step / 2;
  for (int v = 0; v < 256; ++v) {
    lut[v] = static_cast<uint8_t>(min_(n / step, int64_t{255}));
    n += h[v];
  }
}

// Contrast around the grey mean m of the three channel histograms `h3` (torchvision adjust_contrast), in double.
inline void contrast_lut(const int32_t* h3, double factor, uint8_t* lut) {
  double means[3];
  for (int c = 0; c < 3; ++c) {
    int64_t count = 0, sum = 0;
    for (int v = 0; v < 256; ++v) {
      count += h3[c * 256 + v];
      sum += static_cast<int64_t>(v) * h3[c * 256 + v];
    }
    means[c] = static_cast<double>(sum) / static_cast<double>(max_(count, int64_t{1}));
  }
  const double m = means[0] * 0.299 + means[1] * 0.587 + means[2] * 0.114;
  for (int v = 0; v < 256; ++v) {
    const double x = std::floor(static_cast<double>(v) * factor + m * (1.0 - factor) + 0.5);
    lut[v] = static_cast<uint8_t>(min_(max_(x, 0.0), 255.0));
  }
  std::memcpy(lut + 256, lut, 256);
  std::memcpy(lut + 512, lut, 256);
}

// The (3, 256) table of one sample; `param` is the autocontrast cutoff (%) or the contrast factor.
inline void hist_lut(const int32_t* hist3, int32_t kind, float param, uint8_t* lut3) {
  switch (kind) {
    case kHistAutocontrast: {
      const int64_t cutoff = static_cast<int64_t>(std::floor(static_cast<double>(param) + 0.5));
      for (int c = 0; c < 3; ++c) autocontrast_lut(hist3 + c * 256, cutoff, lut3 + c * 256);
      break;
    }
    case kHistEqualize:
      for (int c = 0; c < 3; ++c) equalize_lut(hist3 + c * 256, lut3 + c * 256);
      break;
    case kHistContrast: contrast_lut(hist3, static_cast<double>(param), lut3); break;
    default:
      for (int c = 0; c < 3; ++c) identity_lut(lut3 + c * 256);
      break;
  }
}

// Histogram of n bytes into hist[256]; four interleaved sub-histograms avoid store-to-load stalls on runs.
inline void histogram(const uint8_t* s, int64_t n, int32_t* hist) {
  uint32_t h[4][256] = {};
  int64_t i = 0;
  for (; i + 4 <= n; i += 4) {
    ++h[0][s[i]];
    ++h[1][s[i + 1]];
    ++h[2][s[i + 2]];
    ++h[3][s[i + 3]];
  }
  for (; i < n; ++i) ++h[0][s[i]];
  for (int v = 0; v < 256; ++v) hist[v] = static_cast<int32_t>(h[0][v] + h[1][v] + h[2][v] + h[3][v]);
}

}  // namespace anofast::texture

#pragma GCC pop_options
