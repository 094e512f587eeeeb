// mirrors anofast/reference/cutpaste.py operation by operation (no FMA: setup.py passes -ffp-contract=off).
// Torch-free core: the contrast mean of one crop and one output row, N pixels at a time with GCC/clang vector
// types (N = 4 at the x86-64 baseline, 8 in the AVX2 copy that cutpaste_cpu.cpp picks at run time). Every
// per-pixel step is branch-free over a vector (compares give lane masks, `?:` selects), so both copies run the
// same IEEE operations in the same order as the reference and give the same bits.
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

#define ANOFAST_CP_INLINE inline __attribute__((always_inline))

template <int N>
struct Vec {
  typedef float f __attribute__((vector_size(4 * N)));
  typedef int32_t i __attribute__((vector_size(4 * N)));
  typedef uint32_t u __attribute__((vector_size(4 * N)));
};

template <typename T, typename P>
ANOFAST_CP_INLINE T load(const P* p) {
  T v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

template <typename T, typename P>
ANOFAST_CP_INLINE void store(P* p, const T& v) {
  std::memcpy(p, &v, sizeof(v));
}

template <typename I>
ANOFAST_CP_INLINE I iota() {
  I v = {};
  for (int k = 0; k < static_cast<int>(sizeof(I) / 4); ++k) v[k] = k;
  return v;
}

// true when every lane of the mask (-1 / 0 lanes) is set
template <typename I>
ANOFAST_CP_INLINE bool all_set(const I& m) {
  uint64_t w[sizeof(I) / 8];
  std::memcpy(w, &m, sizeof(I));
  uint64_t a = w[0];
  for (size_t k = 1; k < sizeof(I) / 8; ++k) a &= w[k];
  return a == ~uint64_t{0};
}

template <typename I>
ANOFAST_CP_INLINE int64_t lane_sum(const I& v) {
  int64_t s = 0;
  for (int k = 0; k < static_cast<int>(sizeof(I) / 4); ++k) s += v[k];
  return s;
}

template <typename F>
ANOFAST_CP_INLINE F clamp01(F t) {
  t = t > 0.0f ? t : 0.0f;
  return t < 1.0f ? t : 1.0f;
}

// Hue rotation by hue6/6 turns without division (the reference's hue_shift), on N lanes.
template <int N>
ANOFAST_CP_INLINE void hue_shift(typename Vec<N>::f& r, typename Vec<N>::f& g, typename Vec<N>::f& b, float hue6) {
  using F = typename Vec<N>::f;
  using I = typename Vec<N>::i;
  const F zero = {};
  const F mgb = g > b ? g : b, ngb = g < b ? g : b;
  const F maxc = r > mgb ? r : mgb, minc = r < ngb ? r : ngb;
  const F d = maxc - minc;
  const I is_r = maxc == r, is_g = ~is_r & (maxc == g);
  const F base = is_r ? zero : (is_g ? zero + 2.0f : zero + 4.0f);
  const F x = is_r ? g - b : (is_g ? b - r : r - g);
  F big = (d * base + x) + d * hue6;
  const F six = d * 6.0f;
  big = big < 0.0f ? big + six : big;
  big = big >= six ? big - six : big;
  // compares give -1 per true lane: the sector is minus their sum
  const I s = -((big >= d * 1.0f) + (big >= d * 2.0f) + (big >= d * 3.0f) + (big >= d * 4.0f) + (big >= d * 5.0f));
  F f = big - __builtin_convertvector(s, F) * d;
  f = f > 0.0f ? f : 0.0f;
  f = f < d ? f : d;
  const F v = maxc, p = minc, t = clamp01(minc + f), q = clamp01(maxc - f);
  const I s0 = s == 0, s1 = s == 1, s2 = s == 2, s3 = s == 3, s4 = s == 4, s5 = s == 5;
  r = (s0 | s5) ? v : (s1 ? q : ((s2 | s3) ? p : t));
  g = s0 ? t : ((s1 | s2) ? v : (s3 ? q : p));
  b = (s0 | s1) ? p : (s2 ? t : ((s3 | s4) ? v : q));
}

// The jitter ops a sample runs, in its order, with their factors (copied into each row's locals, so the
// compiler keeps them in registers: no store to the output can alias them). Saturation and hue leave grey images
// unchanged and a zero hue shift is skipped (as the reference does), so they are left out of the list.
struct Jitter {
  int n = 0;
  int id[4] = {0, 0, 0, 0};
  float bright = 1.0f, contrast = 1.0f, sat = 1.0f, one_minus_sat = 0.0f, hue6 = 0.0f;
  float contrast_add = 0.0f;  // (1 - contrast) * mean, once the mean is known
};

// all = every op of the sample; pre = the ops before contrast (the contrast mean's input).
inline void jitter_lists(const int32_t* q, const float* f, int channels, Jitter* all, Jitter* pre) {
  bool before = true;
  for (Jitter* j = all; j != nullptr; j = j == all ? pre : nullptr) {
    j->bright = f[kBright];
    j->contrast = f[kContrast];
    j->sat = f[kSat];
    j->one_minus_sat = f[kOneMinusSat];
    j->hue6 = f[kHue6];
  }
  for (int k = 0; k < 4; ++k) {
    const int op = q[kOrder + k];
    if (op == kOpContrast) before = false;
    if ((op == kOpSaturation || op == kOpHue) && channels == 1) continue;
    if (op == kOpHue && f[kHue6] == 0.0f) continue;
    all->id[all->n++] = op;
    if (before) pre->id[pre->n++] = op;
  }
}

// The ops of `j` on N pixels (px[c]: channel c).
template <int C, int N>
ANOFAST_CP_INLINE void jitter(typename Vec<N>::f (&px)[C], const Jitter& j) {
  using F = typename Vec<N>::f;
  for (int k = 0; k < j.n; ++k) {
    switch (j.id[k]) {
      case kOpBrightness:
        for (int c = 0; c < C; ++c) px[c] = clamp01(j.bright * px[c]);
        break;
      case kOpContrast:
        for (int c = 0; c < C; ++c) px[c] = clamp01(j.contrast * px[c] + j.contrast_add);
        break;
      case kOpSaturation:
        if constexpr (C == 3) {
          const F gr = (kGreyR * px[0] + kGreyG * px[1]) + kGreyB * px[2];
          for (int c = 0; c < 3; ++c) px[c] = clamp01(j.sat * px[c] + j.one_minus_sat * gr);
        }
        break;
      default:
        if constexpr (C == 3) hue_shift<N>(px[0], px[1], px[2], j.hue6);
        break;
    }
  }
}

template <int C, int N>
ANOFAST_CP_INLINE typename Vec<N>::f grey(const typename Vec<N>::f (&px)[C]) {
  if constexpr (C == 1) {
    return px[0];
  } else {
    return (kGreyR * px[0] + kGreyG * px[1]) + kGreyB * px[2];
  }
}

// Adds trunc(grey * 2^24) of the `keep` lanes to the uint32 lanes of *acc; every 64 vectors the lanes go into *total.
template <int C, int N>
ANOFAST_CP_INLINE void add_grey(const typename Vec<N>::f (&px)[C], const typename Vec<N>::i& keep,
                                typename Vec<N>::u* acc, int* pending, int64_t* total) {
  using I = typename Vec<N>::i;
  using U = typename Vec<N>::u;
  *acc += reinterpret_cast<U>(__builtin_convertvector(grey<C, N>(px) * kFixedScale, I) & keep);
  if (++*pending == 64) {
    for (int k = 0; k < N; ++k) *total += static_cast<int32_t>((*acc)[k]);
    *acc = U{};
    *pending = 0;
  }
}

// float32 mean grey of the crop after the jitter ops that precede contrast (`pre`); exact integer sum of
// trunc(grey * 2^24), so any order agrees. A valid grey value is at most ~1 + 2^-23, so trunc fits int32 and 64
// of them fit a uint32 lane. (An invalid image value may overflow; the op then raises and the sum is unused.)
template <int C, int N>
ANOFAST_CP_INLINE float contrast_mean(const float* img, int64_t H, int64_t W, const int32_t* q, const float* f,
                                      const Jitter& pre_in) {
  const Jitter pre = pre_in;
  using F = typename Vec<N>::f;
  using I = typename Vec<N>::i;
  using U = typename Vec<N>::u;
  const int64_t plane = H * W;
  const int cw = q[kCropW];
  int64_t total = 0;
  U acc = {};
  int pending = 0;
  const I all = iota<I>() >= 0;
  for (int64_t y = q[kSrcY]; y < q[kSrcY] + q[kCropH]; ++y) {
    const float* src = img + y * W + q[kSrcX];
    int x = 0;
    for (; x + N <= cw; x += N) {
      F px[C];
      for (int c = 0; c < C; ++c) px[c] = load<F>(src + c * plane + x);
      jitter<C, N>(px, pre);
      add_grey<C, N>(px, all, &acc, &pending, &total);
    }
    if (x < cw) {  // tail: padded with zeros, the padding lanes masked out of the sum
      F px[C];
      for (int c = 0; c < C; ++c) {
        alignas(32) float t[N] = {};
        std::memcpy(t, src + c * plane + x, sizeof(float) * static_cast<size_t>(cw - x));
        px[c] = load<F>(t);
      }
      jitter<C, N>(px, pre);
      add_grey<C, N>(px, iota<I>() < cw - x, &acc, &pending, &total);
    }
  }
  for (int k = 0; k < N; ++k) total += static_cast<int32_t>(acc[k]);
  return static_cast<float>(total) * f[kInvN];
}

// Pixels [x0, x1) of one row copied unchanged with mask 0 (channel c of the row at img + c * plane, written to
// out + c * out_plane); returns a nonzero lane mask if an image value is
// outside [0, 1] or NaN.
template <int C, int N>
ANOFAST_CP_INLINE typename Vec<N>::i copy_span(float* out, int64_t out_plane, float* mask, const float* img,
                                                int64_t plane, int64_t x0, int64_t x1) {
  using F = typename Vec<N>::f;
  using I = typename Vec<N>::i;
  I bad = {};
  if (x1 <= x0) return bad;
  for (int c = 0; c < C; ++c) {
    const float* src = img + c * plane;
    float* dst = out + c * out_plane;
    int64_t x = x0;
    for (; x + N <= x1; x += N) {
      const F v = load<F>(src + x);
      bad |= ~((v >= 0.0f) & (v <= 1.0f));
      store(dst + x, v);
    }
    for (; x < x1; ++x) {
      bad[0] |= !((src[x] >= 0.0f) & (src[x] <= 1.0f));
      dst[x] = src[x];
    }
  }
  std::memset(mask + x0, 0, sizeof(float) * static_cast<size_t>(x1 - x0));
  return bad;
}

// Constants of one row of the paste box.
struct BoxRow {
  int32_t x0, x1, dx;  // the box's columns inside the image [x0, x1); dx = DST_X
  int32_t width;       // W: the crop's row stride
  float off_u, ra, rd, rbv, rev, half_w, half_h, cw, ch;
  const float* crop[3];  // channel c of the crop's top-left pixel
};

// N pixels from column x of one row: channel c of the image pixels at img[c][0..N), written to out[c][0..N),
// mask to mask[0..N), foreground (or null) at fg[0..N). Lanes k < lo were done by an earlier call (overlap): they
// are written again (the same values) but not counted. Adds the changed-pixel lanes (-1 each) to *count and the
// out-of-range image lanes to *bad.
template <int C, int N>
ANOFAST_CP_INLINE void paste_vec(const BoxRow& br, const Jitter& ops,
                                 const float* const* img, float* const* out, float* mask, const float* fg,
                                 int32_t x, int32_t lo, typename Vec<N>::i* count, typename Vec<N>::i* bad) {
  using F = typename Vec<N>::f;
  using I = typename Vec<N>::i;
  const I lane = iota<I>();
  const I xi = x + lane;
  const I in_box = (xi >= br.x0) & (xi < br.x1);
  const F u = __builtin_convertvector(xi - br.dx, F) + br.off_u;
  const F sx = (br.ra * u + br.rbv) + br.half_w;
  const F sy = (br.rd * u + br.rev) + br.half_h;
  const I foot = (sx >= 0.0f) & (sx < br.cw) & (sy >= 0.0f) & (sy < br.ch);
  const I ix = __builtin_convertvector(foot ? sx : 0.0f, I), iy = __builtin_convertvector(foot ? sy : 0.0f, I);
  const I off = iy * br.width + ix;
  F px[C];
  if (all_set(foot & (off == off[0] + lane))) {  // a contiguous run of the crop (always so without rotation)
    for (int c = 0; c < C; ++c) px[c] = load<F>(br.crop[c] + off[0]);
  } else {
    alignas(32) int32_t o[N];
    store(o, off);
    for (int c = 0; c < C; ++c) {
      alignas(32) float t[N];
      for (int k = 0; k < N; ++k) t[k] = br.crop[c][o[k]];
      px[c] = load<F>(t);
    }
  }
  I inside = foot & in_box;
  if (fg != nullptr) inside &= load<F>(fg) > 0.5f;
  jitter<C, N>(px, ops);
  I changed = {};
  for (int c = 0; c < C; ++c) {
    const F iv = load<F>(img[c]);
    *bad |= ~((iv >= 0.0f) & (iv <= 1.0f));
    const F nv = inside ? px[c] : iv;
    store(out[c], nv);
    changed |= nv != iv;
  }
  store(mask, __builtin_convertvector(changed & 1, F));
  *count += changed & (lane >= lo);
}

// Row y of one sample (img: the sample's image): copy, value check, mask, and the paste over the box's columns.
// Channel c of the output row is written to out + c * out_plane, its mask to mrow. Returns the row's changed pixel
// count, or -1 if an image value of the row is outside [0, 1] or NaN.
template <int C, int N>
ANOFAST_CP_INLINE int32_t paste_row(float* out, int64_t out_plane, float* mrow, const float* img, const float* fg,
                                    int64_t H, int64_t W, int64_t y, const int32_t* q, const float* f,
                                    const Jitter& ops_in) {
  const Jitter ops = ops_in;
  using I = typename Vec<N>::i;
  const int64_t plane = H * W, row = y * W;
  const float* frow = fg == nullptr ? nullptr : fg + row;
  const int64_t dy = q[kDstY], dx = q[kDstX], bh = q[kBoxH], bw = q[kBoxW];
  const int64_t x0 = dx > 0 ? dx : 0, x1 = dx + bw < W ? dx + bw : W;
  if (!(bh > 0 && bw > 0 && y >= dy && y < dy + bh && x0 < x1)) {
    const I bad = copy_span<C, N>(out, out_plane, mrow, img + row, plane, 0, W);
    return all_set(bad == 0) ? 0 : -1;
  }
  BoxRow br;
  br.x0 = static_cast<int32_t>(x0);
  br.x1 = static_cast<int32_t>(x1);
  br.dx = static_cast<int32_t>(dx);
  br.width = static_cast<int32_t>(W);
  const float v = static_cast<float>(y - dy) + f[kOffV];
  br.off_u = f[kOffU];
  br.ra = f[kRotA];
  br.rd = f[kRotD];
  br.rbv = f[kRotB] * v;  // the reference's b * v and e * v, the same products
  br.rev = f[kRotE] * v;
  br.half_w = f[kHalfW];
  br.half_h = f[kHalfH];
  br.cw = static_cast<float>(q[kCropW]);
  br.ch = static_cast<float>(q[kCropH]);
  for (int c = 0; c < C; ++c) br.crop[c] = img + c * plane + q[kSrcY] * W + q[kSrcX];
  I count = {}, bad = {};
  if (W < N) {  // the whole row in one padded vector
    alignas(32) float ti[C][N] = {}, to[C][N], tm[N], tf[N] = {};
    const float* ip[C];
    float* op[C];
    for (int c = 0; c < C; ++c) {
      std::memcpy(ti[c], img + c * plane + row, sizeof(float) * static_cast<size_t>(W));
      ip[c] = ti[c];
      op[c] = to[c];
    }
    if (frow != nullptr) std::memcpy(tf, frow, sizeof(float) * static_cast<size_t>(W));
    paste_vec<C, N>(br, ops, ip, op, tm, frow == nullptr ? nullptr : tf, 0, 0, &count, &bad);
    for (int c = 0; c < C; ++c) std::memcpy(out + c * out_plane, to[c], sizeof(float) * static_cast<size_t>(W));
    std::memcpy(mrow, tm, sizeof(float) * static_cast<size_t>(W));
  } else {
    // the vector span [xs, xe) covers [x0, x1) and is at least N wide (lanes outside the box are copies)
    int64_t xs = x0, xe = x1;
    if (xe - xs < N) {
      xs = x0 < W - N ? x0 : W - N;
      xe = xs + N;
    }
    bad |= copy_span<C, N>(out, out_plane, mrow, img + row, plane, 0, xs);
    int64_t x = xs;
    for (;;) {
      int32_t lo = 0;
      if (x + N > xe) {  // the last N pixels, overlapping the done ones
        if (x >= xe) break;
        lo = static_cast<int32_t>(x - (xe - N));
        x = xe - N;
      }
      const float* ip[C];
      float* op[C];
      for (int c = 0; c < C; ++c) {
        ip[c] = img + c * plane + row + x;
        op[c] = out + c * out_plane + x;
      }
      paste_vec<C, N>(br, ops, ip, op, mrow + x, frow == nullptr ? nullptr : frow + x,
                      static_cast<int32_t>(x), lo, &count, &bad);
      x += N;
    }
    bad |= copy_span<C, N>(out, out_plane, mrow, img + row, plane, xe, W);
  }
  return all_set(bad == 0) ? static_cast<int32_t>(-lane_sum(count)) : -1;
}

}  // namespace anofast::cutpaste
