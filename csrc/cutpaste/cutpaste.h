// mirrors anofast/reference/cutpaste.py operation by operation (no FMA: setup.py passes -ffp-contract=off).
// Torch-free core: the colour jitter of one pixel, the contrast mean of one crop, the paste of one image row.
#pragma once
#include <cstdint>
#include <cstring>

namespace anofast::cutpaste {

// int32 columns of `ints` and float32 columns of `floats` (anofast/reference/cutpaste.py)
enum : int { kSrcY = 0, kSrcX, kCropH, kCropW, kDstY, kDstX, kBoxH, kBoxW, kOrder, kInts = 12 };
enum : int { kRotA = 0, kRotB, kRotD, kRotE, kOffU, kOffV, kHalfW, kHalfH };
enum : int { kBright = 8, kContrast, kOneMinusContrast, kSat, kOneMinusSat, kHue6, kInvN, kFloats };
enum : int { kOpBrightness = 0, kOpContrast, kOpSaturation, kOpHue };

constexpr float kGreyR = 0.2989000082015991f, kGreyG = 0.5870000123977661f, kGreyB = 0.11400000005960464f;
constexpr float kFixedScale = 16777216.0f;  // 2^24

inline float clamp01(float t) {
  t = t > 0.0f ? t : 0.0f;
  return t < 1.0f ? t : 1.0f;
}

// Hue rotation by hue6/6 turns without division (the reference's hue_shift); branch-free, so loops vectorise.
inline void hue_shift(float& r, float& g, float& b, float hue6) {
  const float mgb = g > b ? g : b, ngb = g < b ? g : b;
  const float maxc = r > mgb ? r : mgb, minc = r < ngb ? r : ngb;
  const float d = maxc - minc;
  const bool is_r = maxc == r, is_g = !is_r && maxc == g;
  const float base = is_r ? 0.0f : (is_g ? 2.0f : 4.0f);
  const float x = is_r ? g - b : (is_g ? b - r : r - g);
  float big = (d * base + x) + d * hue6;
  const float six = d * 6.0f;
  big = big < 0.0f ? big + six : big;
  big = big >= six ? big - six : big;
  const int s = (big >= d * 1.0f) + (big >= d * 2.0f) + (big >= d * 3.0f) + (big >= d * 4.0f) + (big >= d * 5.0f);
  float f = big - static_cast<float>(s) * d;
  f = f > 0.0f ? f : 0.0f;
  f = f < d ? f : d;
  const float v = maxc, p = minc, t = clamp01(minc + f), q = clamp01(maxc - f);
  r = (s == 0 || s == 5) ? v : (s == 1 ? q : ((s == 2 || s == 3) ? p : t));
  g = s == 0 ? t : ((s == 1 || s == 2) ? v : (s == 3 ? q : p));
  b = (s == 0 || s == 1) ? p : (s == 2 ? t : ((s == 3 || s == 4) ? v : q));
}

// Pixels are processed in chunks of kChunk, one channel array each: the op loop is outside, the pixel loop
// inside (no per-pixel branch on the op id, and the compiler vectorises the pixel loops).
constexpr int kChunk = 64;

template <int C>
struct Chunk {
  alignas(32) float v[C][kChunk];
};

// One jitter op on a chunk; contrast_add = (1 - contrast) * mean.
template <int C>
inline void jitter_op(int op, Chunk<C>& px, const float* f, float contrast_add) {
  if (op == kOpBrightness) {
    const float fb = f[kBright];
    for (int c = 0; c < C; ++c)
      for (int k = 0; k < kChunk; ++k) px.v[c][k] = clamp01(fb * px.v[c][k]);
  } else if (op == kOpContrast) {
    const float fc = f[kContrast];
    for (int c = 0; c < C; ++c)
      for (int k = 0; k < kChunk; ++k) px.v[c][k] = clamp01(fc * px.v[c][k] + contrast_add);
  } else if constexpr (C == 3) {  // saturation and hue leave grey images unchanged
    if (op == kOpSaturation) {
      const float fs = f[kSat], oms = f[kOneMinusSat];
      for (int k = 0; k < kChunk; ++k) {
        const float gr = (kGreyR * px.v[0][k] + kGreyG * px.v[1][k]) + kGreyB * px.v[2][k];
        px.v[0][k] = clamp01(fs * px.v[0][k] + oms * gr);
        px.v[1][k] = clamp01(fs * px.v[1][k] + oms * gr);
        px.v[2][k] = clamp01(fs * px.v[2][k] + oms * gr);
      }
    } else if (f[kHue6] != 0.0f) {
      const float hue6 = f[kHue6];
      for (int k = 0; k < kChunk; ++k) hue_shift(px.v[0][k], px.v[1][k], px.v[2][k], hue6);
    }
  }
}

template <int C>
inline float grey_at(const Chunk<C>& px, int k) {
  if constexpr (C == 1) {
    return px.v[0][k];
  } else {
    return (kGreyR * px.v[0][k] + kGreyG * px.v[1][k]) + kGreyB * px.v[2][k];
  }
}

// float32 mean grey of the crop after the jitter ops that precede contrast; exact int64 sum, so any order agrees.
template <int C>
inline float contrast_mean(const float* img, int64_t H, int64_t W, const int32_t* q, const float* f) {
  const int64_t plane = H * W, cw = q[kCropW];
  int64_t total = 0;
  Chunk<C> px;
  for (int64_t y = q[kSrcY]; y < q[kSrcY] + q[kCropH]; ++y) {
    for (int64_t x0 = 0; x0 < cw; x0 += kChunk) {
      const int n = static_cast<int>(cw - x0 < kChunk ? cw - x0 : kChunk);
      for (int c = 0; c < C; ++c) {
        const float* src = img + c * plane + y * W + q[kSrcX] + x0;
        for (int k = 0; k < kChunk; ++k) px.v[c][k] = k < n ? src[k] : 0.0f;
      }
      for (int j = 0; j < 4 && q[kOrder + j] != kOpContrast; ++j) jitter_op<C>(q[kOrder + j], px, f, 0.0f);
      for (int k = 0; k < n; ++k) total += static_cast<int64_t>(grey_at<C>(px, k) * kFixedScale);
    }
  }
  return static_cast<float>(total) * f[kInvN];
}

// Row y of one sample: copy, value check, mask, then the paste over the box's columns. Returns the row's changed
// pixel count, or -1 if an image value of the row is outside [0, 1] or NaN.
template <int C>
inline int32_t paste_row(float* out, float* mask, const float* img, const float* fg, int64_t H, int64_t W, int64_t y,
                         const int32_t* q, const float* f, float contrast_add) {
  const int64_t plane = H * W;
  int32_t bad = 0;
  for (int c = 0; c < C; ++c) {
    const float* src = img + c * plane + y * W;
    for (int64_t x = 0; x < W; ++x) bad |= !((src[x] >= 0.0f) & (src[x] <= 1.0f));
    std::memcpy(out + c * plane + y * W, src, sizeof(float) * static_cast<size_t>(W));
  }
  float* mrow = mask + y * W;
  std::memset(mrow, 0, sizeof(float) * static_cast<size_t>(W));
  int32_t count = 0;
  const int64_t dy = q[kDstY], dx = q[kDstX], bh = q[kBoxH], bw = q[kBoxW];
  if (bh > 0 && bw > 0 && y >= dy && y < dy + bh) {
    const int64_t x0 = dx > 0 ? dx : 0, x1 = dx + bw < W ? dx + bw : W;
    const float v = static_cast<float>(y - dy) + f[kOffV];
    const float cw = static_cast<float>(q[kCropW]), ch = static_cast<float>(q[kCropH]);
    const float ra = f[kRotA], rb = f[kRotB], rd = f[kRotD], re = f[kRotE];
    const float rbv = rb * v, rev = re * v;  // the reference's b * v and e * v, the same products
    Chunk<C> px;
    alignas(32) int64_t src_off[kChunk];
    alignas(32) int32_t inside[kChunk];
    for (int64_t xc = x0; xc < x1; xc += kChunk) {
      const int n = static_cast<int>(x1 - xc < kChunk ? x1 - xc : kChunk);
      for (int k = 0; k < kChunk; ++k) {
        const float u = static_cast<float>(xc + k - dx) + f[kOffU];
        const float sx = (ra * u + rbv) + f[kHalfW];
        const float sy = (rd * u + rev) + f[kHalfH];
        const bool in = (k < n) & (sx >= 0.0f) & (sx < cw) & (sy >= 0.0f) & (sy < ch);
        inside[k] = in;
        src_off[k] = in ? static_cast<int64_t>(sy) * W + static_cast<int64_t>(sx) : 0;
      }
      if (fg != nullptr) {
        for (int k = 0; k < n; ++k) inside[k] &= fg[y * W + xc + k] > 0.5f;
      }
      const float* crop = img + q[kSrcY] * W + q[kSrcX];
      for (int c = 0; c < C; ++c)
        for (int k = 0; k < kChunk; ++k) px.v[c][k] = crop[c * plane + src_off[k]];
      for (int j = 0; j < 4; ++j) jitter_op<C>(q[kOrder + j], px, f, contrast_add);
      for (int k = 0; k < n; ++k) {
        if (!inside[k]) continue;
        bool changed = false;
        for (int c = 0; c < C; ++c) {
          const int64_t o = c * plane + y * W + xc + k;
          changed |= px.v[c][k] != img[o];
          out[o] = px.v[c][k];
        }
        mrow[xc + k] = changed ? 1.0f : 0.0f;
        count += changed;
      }
    }
  }
  return bad ? -1 : count;
}

}  // namespace anofast::cutpaste
