// mirrors anofast/reference/procedural.py: seeded procedural textures from the counter RNG.
// Torch-free core. Each row caches the lattice values it needs (a vertically blended lattice row per octave, three
// rows of cell feature points): the same pure hash values the reference and the Triton kernel compute per pixel.
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

// As in texture/texture.h: lets float selects and min / max vectorise. Every value is finite and every output goes
// through round_u8, so no result changes; there is still no reassociation or contraction. hash.h is included inside
// the region so that its functions, compiled with the same options, inline here.
#pragma GCC push_options
#pragma GCC optimize("no-trapping-math", "finite-math-only", "no-signed-zeros")

#include "common/hash.h"

namespace anofast::procedural {

enum Kind : int32_t { kClouds = 0, kMarble = 1, kStripes = 2, kWoven = 3, kCells = 4, kGrain = 5 };
constexpr int32_t kMaxOctaves = 6;
constexpr int kSteps = 0, kAmps = 6, kAx = 12, kAy = 13, kWarp = 14, kContrast = 15, kShift = 16, kGrainAmp = 17,
              kCellStep = 18, kCellScale = 19, kC0 = 20, kC1 = 23, kC2 = 26, kNumF = 32;
constexpr uint32_t kPixelCounterBase = 1u << 27;
constexpr int32_t kJitterX = 6, kJitterY = 7;

inline float lattice(uint32_t key, int32_t i, int32_t j, int32_t slot) {
  const int32_t counter = (slot * 4096 + (j & 4095)) * 4096 + (i & 4095);
  return rng::uniform(key, static_cast<uint32_t>(counter));
}

// Exact floor for |v| < 2^31.
inline int32_t floor_i32(float v) {
  const int32_t i = static_cast<int32_t>(v);
  return i - (v < static_cast<float>(i) ? 1 : 0);
}

inline float frac(float z) { return z - static_cast<float>(floor_i32(z)); }
inline float absf(float v) { return v < 0.0f ? -v : v; }
inline float smooth(float t) { return t * t * (3.0f - 2.0f * t); }
inline float tri(float z) { return absf(2.0f * frac(z) - 1.0f); }
inline float thread(float w) { return 1.0f - absf(2.0f * frac(3.0f * w) - 1.0f); }
inline float minf(float a, float b) { return b < a ? b : a; }
inline float maxf(float a, float b) { return a < b ? b : a; }

inline uint8_t round_u8(float x) {
  const float v = minf(maxf(x + 0.5f, 0.0f), 255.5f);
  return static_cast<uint8_t>(static_cast<int32_t>(v));
}

// Scratch of one task: fBm row, blended lattice row, cell feature rows.
struct Scratch {
  std::vector<float> noise, lattice, jx, jy;
};

// Largest lattice index a row reads at `step` (x in [0, width)), plus the right neighbour.
inline int32_t lattice_span(int64_t width, float step) { return floor_i32(static_cast<float>(width - 1) * step) + 2; }

// One row y of one sample; `out` points at the sample's (3, H, W) planes.
inline void render_row(uint32_t key, const int32_t* ip, const float* fp, int64_t height, int64_t width, int64_t y,
                       uint8_t* out, Scratch& sc) {
  const int32_t kind = ip[0], octaves = ip[1];
  const bool spots = ip[2] != 0;
  const float Y = static_cast<float>(y);
  float* n = sc.noise.data();
  for (int64_t x = 0; x < width; ++x) n[x] = 0.0f;
  for (int32_t o = 0; o < octaves; ++o) {
    const float step = fp[kSteps + o], amp = fp[kAmps + o];
    const float v = Y * step;
    const int32_t j = floor_i32(v);
    const float sv = smooth(v - static_cast<float>(j));
    // The blend is vertical first, so one blended lattice row serves the whole image row.
    const int32_t span = lattice_span(width, step);
    float* col = sc.lattice.data();
    for (int32_t i = 0; i < span; ++i) {
      const float a = lattice(key, i, j, o), c = lattice(key, i, j + 1, o);
      col[i] = a + sv * (c - a);
    }
    for (int64_t x = 0; x < width; ++x) {
      const float u = static_cast<float>(x) * step;
      const int32_t i = floor_i32(u);
      const float su = smooth(u - static_cast<float>(i));
      n[x] = n[x] + amp * (col[i] + su * (col[i + 1] - col[i]));
    }
  }
  // Cell feature points of the three cell rows around this row: jx/jy[(dj + 1) * stride + (i + 1)].
  const float cstep = fp[kCellStep];
  int32_t cj = 0, stride = 0;
  if (kind == kCells) {
    cj = floor_i32(Y * cstep);
    stride = lattice_span(width, cstep) + 1;
    for (int32_t dj = -1; dj <= 1; ++dj) {
      for (int32_t i = -1; i < stride - 1; ++i) {
        sc.jx[(dj + 1) * stride + i + 1] = lattice(key, i, cj + dj, kJitterX);
        sc.jy[(dj + 1) * stride + i + 1] = lattice(key, i, cj + dj, kJitterY);
      }
    }
  }
  const float ax = fp[kAx], ay = fp[kAy], warp = fp[kWarp], contrast = fp[kContrast], shift = fp[kShift];
  const float grain = fp[kGrainAmp], cscale = fp[kCellScale];
  const int64_t hw = height * width;
  for (int64_t x = 0; x < width; ++x) {
    const float X = static_cast<float>(x);
    const float nx = n[x];
    float t;
    if (kind == kMarble || kind == kStripes) {
      const float tr = tri((X * ax + Y * ay) + warp * nx);
      t = kind == kMarble ? (tr * tr) * (tr * tr) : tr;
      t = t * 0.75f + nx * 0.25f;
    } else if (kind == kWoven) {
      const float z1 = (X * ax + Y * ay) + warp * nx;
      const float z2 = (Y * ax - X * ay) + warp * nx;
      const bool odd = ((floor_i32(z1) + floor_i32(z2)) & 1) == 1;
      t = (odd ? thread(frac(z1)) : thread(frac(z2))) * 0.75f + nx * 0.25f;
    } else if (kind == kCells) {
      const float px = X * cstep, py = Y * cstep;
      const int32_t ci = floor_i32(px);
      float best = 8.0f;
      for (int32_t dj = -1; dj <= 1; ++dj) {
        for (int32_t di = -1; di <= 1; ++di) {
          const int32_t k = (dj + 1) * stride + ci + di + 1;
          const float dx = px - (static_cast<float>(ci + di) + sc.jx[k]);
          const float dy = py - (static_cast<float>(cj + dj) + sc.jy[k]);
          best = minf(best, dx * dx + dy * dy);
        }
      }
      const float c = minf(best * cscale, 1.0f);
      t = (spots ? 1.0f - c : c) * 0.75f + nx * 0.25f;
    } else {
      t = nx;
    }
    t = minf(maxf((t - 0.5f) * contrast + shift, 0.0f), 1.0f);
    const float w = t * 2.0f;
    const uint32_t counter = kPixelCounterBase + static_cast<uint32_t>(y * width + x);
    const float g = (rng::uniform(key, counter) - 0.5f) * grain;
    for (int c = 0; c < 3; ++c) {
      const float c0 = fp[kC0 + c], c1 = fp[kC1 + c], c2 = fp[kC2 + c];
      const float col = w < 1.0f ? c0 + w * (c1 - c0) : c1 + (w - 1.0f) * (c2 - c1);
      out[c * hw + y * width + x] = round_u8(col + g);
    }
  }
}

// Sizes a task's scratch for one sample.
inline void reserve(Scratch& sc, const int32_t* ip, const float* fp, int64_t width) {
  int32_t span = 0;
  for (int32_t o = 0; o < ip[1]; ++o) {
    const int32_t s = lattice_span(width, fp[kSteps + o]);
    span = s > span ? s : span;
  }
  const size_t cells = ip[0] == kCells ? 3 * static_cast<size_t>(lattice_span(width, fp[kCellStep]) + 1) : 0;
  if (sc.noise.size() < static_cast<size_t>(width)) sc.noise.resize(width);
  if (sc.lattice.size() < static_cast<size_t>(span)) sc.lattice.resize(span);
  if (sc.jx.size() < cells) {
    sc.jx.resize(cells);
    sc.jy.resize(cells);
  }
}

}  // namespace anofast::procedural

#pragma GCC pop_options
