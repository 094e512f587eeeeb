// mirrors anofast/reference/median.py (masked_median_reference): the disk median at mask pixels.
// Torch-free core: N horizontally adjacent pixels at a time (one per vector lane; N = 4 at the x86-64 baseline,
// 8 in the AVX2 copy that median_cpu.cpp picks at run time), from a zero-padded window of the image rows.
//
// Selection of the median of the n = 2k + 1 disk values, with min and max only (a < b ? a : b):
//   1. sort the first k + 1 values (A) and the other k (B) with Batcher's odd-even merge sort networks;
//   2. median = min(A[k], min_i max(A[i], B[k - 1 - i])) for i < k: of any k + 1 values made of a prefix of A and
//      a prefix of B the largest is at least the median, and the split holding the k + 1 smallest attains it.
// Its result is one of the disk values, so every copy (and every other correct algorithm) returns the same bits.
// Values are canonicalised as they enter the window (v + 0.0f turns -0.0 into +0.0), so equal values have equal
// bits and min/max never lose a value of a tie.
//
// Radius 5 (NSA's soft label; n = 81: 622 compare-exchanges + 80 min/max per vector) has its disk and network as
// compile-time constants, in depth-first order with each value loaded just before its first use, so the compiler
// keeps most values in registers (~300 spills instead of ~1000) and runs near the min/max throughput: ~240 ns per
// 8 pixels on the 2-core AMD EPYC here, 3x faster than the same network run from a table (whose compare-exchanges
// go through memory, ~750 ns). Every other radius runs the table, built once per call.
#pragma once
#include <array>
#include <cstdint>
#include <cstring>
#include <utility>
#include <vector>

#define ANOFAST_MEDIAN_INLINE inline __attribute__((always_inline))

namespace anofast::median {

template <int N>
struct Vec {
  typedef float f __attribute__((vector_size(4 * N)));
};

template <typename T>
ANOFAST_MEDIAN_INLINE T load(const float* p) {
  T v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

template <typename T>
ANOFAST_MEDIAN_INLINE void store(float* p, const T& v) {
  std::memcpy(p, &v, sizeof(v));
}

template <typename F>
ANOFAST_MEDIAN_INLINE F vmin(F a, F b) {
  return a < b ? a : b;  // minps
}

template <typename F>
ANOFAST_MEDIAN_INLINE F vmax(F a, F b) {
  return a > b ? a : b;  // maxps
}

template <typename F>
ANOFAST_MEDIAN_INLINE void compare_exchange(F& a, F& b) {
  const F lo = vmin(a, b);
  b = vmax(a, b);
  a = lo;
}

constexpr int pow2_at_least(int s) {
  int p2 = 1;
  while (p2 < s) p2 <<= 1;
  return p2;
}

// Batcher's odd-even merge sort of p2 (a power of two) inputs at offset `at`, depth first (each half sorted
// before the merge, so a small block stays in registers): calls emit(i, j), i < j, min to i and max to j, for
// its compare-exchange pairs, except those touching an input >= at + s: inputs from s on are taken as +inf, which
// no pair moves, so the network sorts the first s inputs.
template <typename Emit>
constexpr void odd_even_merge(int lo, int n, int r, int end, Emit& emit) {
  const int m = 2 * r;
  if (m < n) {
    odd_even_merge(lo, n, m, end, emit);
    odd_even_merge(lo + r, n, m, end, emit);
    for (int i = lo + r; i + r < lo + n; i += m) {
      if (i + r < end) emit(i, i + r);
    }
  } else if (lo + r < end) {
    emit(lo, lo + r);
  }
}

template <typename Emit>
constexpr void odd_even_sort(int lo, int n, int end, Emit& emit) {
  if (n > 1 && lo < end) {
    odd_even_sort(lo, n / 2, end, emit);
    odd_even_sort(lo + n / 2, n / 2, end, emit);
    odd_even_merge(lo, n, 1, end, emit);
  }
}

// The same network stage by stage (iterative form): calls emit(i, j) for stage (p, kk) of the sort of s inputs at
// offset `at` with p2 = pow2_at_least(s). The pairs of one stage are independent of each other.
template <typename Emit>
constexpr void odd_even_stage(int s, int at, int p2, int p, int kk, Emit& emit) {
  for (int j = kk % p; j + kk < p2; j += 2 * kk) {
    for (int i = 0; i < kk && i + j + kk < p2; ++i) {
      if ((i + j) / (2 * p) == (i + j + kk) / (2 * p) && i + j + kk < s) emit(at + i + j, at + i + j + kk);
    }
  }
}

// One step of the selection: load disk value i into v[i] (j < 0), or compare-exchange v[i] and v[j].
struct Op {
  int i, j;
};

// The steps of the median of n = 2k + 1 values: sort v[0, k + 1) (A), then v[k + 1, n) (B), each value loaded
// just before its first compare-exchange (fewer values live at once); values no pair touches are loaded last.
// loaded: n flags, all false.
template <typename Emit>
constexpr void median_ops(int n, bool* loaded, Emit&& emit) {
  const int k = (n - 1) / 2;
  auto pair = [&](int i, int j) {
    if (!loaded[i]) loaded[i] = true, emit(Op{i, -1});
    if (!loaded[j]) loaded[j] = true, emit(Op{j, -1});
    emit(Op{i, j});
  };
  if (n >= 3) {
    odd_even_sort(0, pow2_at_least(k + 1), k + 1, pair);
    auto shifted = [&](int i, int j) { pair(i + k + 1, j + k + 1); };  // B: the same network, shifted
    odd_even_sort(0, pow2_at_least(k), k, shifted);
  }
  for (int i = 0; i < n; ++i) {
    if (!loaded[i]) emit(Op{i, -1});
  }
}

// Calls emit(dy, dx) for the disk dy*dy + dx*dx <= r*r, row-major.
template <typename Emit>
constexpr void disk(int r, Emit&& emit) {
  for (int dy = -r; dy <= r; ++dy) {
    for (int dx = -r; dx <= r; ++dx) {
      if (dy * dy + dx * dx <= r * r) emit(dy, dx);
    }
  }
}

// Pixel columns per window: a row's mask pixels are processed in tiles of up to kTile columns (plus the lanes
// of the last vector), each from a window of 2r + 1 rows of stride(r, N) floats, zero outside the image.
constexpr int64_t kTile = 128;
constexpr int64_t stride(int64_t r, int lanes) { return kTile + lanes + 2 * r; }

// Run-time plan: the disk offsets into the window and the selection steps, built once per call.
struct Plan {
  int64_t radius = 0;
  int64_t stride = 0;        // floats per window row
  int n = 0;                 // disk size (odd), n = 2k + 1
  std::vector<int64_t> off;  // (dy + r) * stride + (dx + r), n entries
  std::vector<Op> pairs;     // the compare-exchange pairs (all values are loaded first)

  Plan(int64_t r, int lanes) : radius(r), stride(median::stride(r, lanes)) {
    disk(static_cast<int>(r), [this](int dy, int dx) { off.push_back((dy + radius) * stride + (dx + radius)); });
    n = static_cast<int>(off.size());
    // Stage order, each stage of A followed by the same stage of B: adjacent pairs rarely depend on each other,
    // so their round trips through memory overlap (depth-first order is 1.4x slower here).
    const int k = (n - 1) / 2, p2a = pow2_at_least(k + 1), p2b = pow2_at_least(k);
    auto emit = [this](int i, int j) { pairs.push_back(Op{i, j}); };
    for (int q = 1; n >= 3 && q < p2a; q <<= 1) {
      for (int kk = q; kk >= 1; kk >>= 1) {
        odd_even_stage(k + 1, 0, p2a, q, kk, emit);
        if (q < p2b) odd_even_stage(k, k + 1, p2b, q, kk, emit);
      }
    }
  }
};

// Compile-time plan of radius R for N lanes: the window offsets and the steps as constants.
template <int R, int N>
struct Fixed {
  static constexpr int count_disk() {
    int c = 0;
    disk(R, [&c](int, int) { ++c; });
    return c;
  }
  static constexpr int n = count_disk();
  static constexpr int k = (n - 1) / 2;
  static constexpr int count_ops() {
    bool loaded[n] = {};
    int c = 0;
    median_ops(n, loaded, [&c](Op) { ++c; });
    return c;
  }
  static constexpr int steps = count_ops();
  static constexpr std::array<int64_t, n> make_off() {
    std::array<int64_t, n> d{};
    int c = 0;
    disk(R, [&](int dy, int dx) { d[c++] = (dy + R) * stride(R, N) + (dx + R); });
    return d;
  }
  static constexpr std::array<Op, steps> make_ops() {
    std::array<Op, steps> p{};
    bool loaded[n] = {};
    int c = 0;
    median_ops(n, loaded, [&](Op o) { p[c++] = o; });
    return p;
  }
  static constexpr std::array<int64_t, n> off = make_off();
  static constexpr std::array<Op, steps> ops = make_ops();
};

// Step 2 on sorted A = v[0, k + 1) and B = v[k + 1, 2k + 1): min(A[k], min_i max(A[i], B[k - 1 - i])), with four
// independent chains of min.
template <typename F>
ANOFAST_MEDIAN_INLINE F split_median(const F* v, int k) {
  F m[4] = {v[k], v[k], v[k], v[k]};
  for (int i = 0; i < k; ++i) m[i & 3] = vmin(m[i & 3], vmax(v[i], v[2 * k - i]));
  return vmin(vmin(m[0], m[1]), vmin(m[2], m[3]));
}

// The same for a compile-time k, unrolled: the maxima, then a tree of minima.
template <typename F, int K, size_t... I>
ANOFAST_MEDIAN_INLINE F split_median_fixed(const F* v, std::index_sequence<I...>) {
  F t[K + 1] = {vmax(v[I], v[2 * K - I])..., v[K]};
#pragma GCC unroll 16
  for (int w = K + 1; w > 1; w = (w + 1) / 2) {
#pragma GCC unroll 64
    for (int i = 0; i < w / 2; ++i) t[i] = vmin(t[i], t[i + (w + 1) / 2]);
  }
  return t[0];
}

template <typename F, typename P, size_t I>
ANOFAST_MEDIAN_INLINE void step_fixed(F* v, const float* base) {
  constexpr Op o = P::ops[I];
  if constexpr (o.j < 0) {
    v[o.i] = load<F>(base + P::off[o.i]);
  } else {
    compare_exchange(v[o.i], v[o.j]);
  }
}

template <typename F, typename P, size_t... I>
ANOFAST_MEDIAN_INLINE void run_fixed(F* v, const float* base, std::index_sequence<I...>) {
  (step_fixed<F, P, I>(v, base), ...);
}

// The medians of the disks of N adjacent pixels with the compile-time plan of radius R; base points at the window
// column of lane 0's disk origin (its top-left corner), in a window of stride(R, N).
template <int N, int R>
ANOFAST_MEDIAN_INLINE typename Vec<N>::f select_fixed(const float* base) {
  using F = typename Vec<N>::f;
  using P = Fixed<R, N>;
  F v[P::n];
  run_fixed<F, P>(v, base, std::make_index_sequence<P::steps>());
  if constexpr (P::n == 1) {
    return v[0];
  } else {
    return split_median_fixed<F, P::k>(v, std::make_index_sequence<P::k>());
  }
}

// The same with the run-time plan p; buf holds p.n vectors.
template <int N>
ANOFAST_MEDIAN_INLINE typename Vec<N>::f select_table(const float* base, const Plan& p, typename Vec<N>::f* buf) {
  using F = typename Vec<N>::f;
  const int64_t* off = p.off.data();
  for (int i = 0; i < p.n; ++i) buf[i] = load<F>(base + off[i]);
  const Op* pairs = p.pairs.data();
  const int64_t count = static_cast<int64_t>(p.pairs.size());
  for (int64_t c = 0; c < count; ++c) compare_exchange(buf[pairs[c].i], buf[pairs[c].j]);
  return p.n == 1 ? buf[0] : split_median(buf, (p.n - 1) / 2);
}

// Whether any of the 8 mask values at m is > 0.5 (one vector compare; GCC lowers it to two in the baseline copy).
ANOFAST_MEDIAN_INLINE bool any8(const float* m) {
  typedef int32_t I8 __attribute__((vector_size(32)));
  const I8 on = load<typename Vec<8>::f>(m) > 0.5f;
  uint64_t w[4];
  std::memcpy(w, &on, sizeof(w));
  return (w[0] | w[1] | w[2] | w[3]) != 0;
}

// The first x in [x, end) with m[x] > 0.5, or end.
ANOFAST_MEDIAN_INLINE int64_t next_on(const float* m, int64_t x, int64_t end) {
  for (; x + 8 <= end && !any8(m + x); x += 8) {
  }
  while (x < end && !(m[x] > 0.5f)) ++x;
  return x;
}

// The first and last x with m[x] > 0.5 in a row of W, or (W, -1): one forward pass, 8 columns at a time (a
// forward stream the hardware prefetches; the row is then in cache for the tiles).
ANOFAST_MEDIAN_INLINE void mask_span(const float* m, int64_t W, int64_t* first, int64_t* last) {
  int64_t f = -1, l = -1, x = 0;
  for (; x + 8 <= W; x += 8) {
    if (any8(m + x)) {
      f = f < 0 ? x : f;
      l = x;
    }
  }
  for (; x < W; ++x) {
    if (m[x] > 0.5f) {
      f = f < 0 ? x : f;
      l = x;
    }
  }
  if (f < 0) {
    *first = W, *last = -1;
    return;
  }
  *first = next_on(m, f, W);
  int64_t e = l + 8 < W ? l + 8 : W;
  while (!(m[e - 1] > 0.5f)) --e;
  *last = e - 1;
}

// One output row: zeros, and the disk median at the mask pixels. win is scratch of (2r + 1) * p.stride floats;
// img is the sample's plane; select(base, lanes) writes the N medians of the disks at base (select_fixed or
// select_table) to lanes.
template <int N, typename Select>
ANOFAST_MEDIAN_INLINE void median_row(float* orow, const float* mrow, const float* img, int64_t H, int64_t W,
                                      int64_t y, const Plan& p, float* win, Select&& select) {
  std::memset(orow, 0, sizeof(float) * static_cast<size_t>(W));
  int64_t first, last;
  mask_span(mrow, W, &first, &last);
  const int64_t r = p.radius;
  alignas(32) float lanes[N];
  while (true) {
    first = next_on(mrow, first, last + 1);
    if (first > last) return;
    // A tile: vectors starting in pixel columns [first, end), end <= first + kTile. Its window holds the image
    // columns [first - r, end + N + r) of rows y - r .. y + r, zero outside the image.
    const int64_t end = first + kTile < last + 1 ? first + kTile : last + 1;
    const int64_t c0 = first - r, cols = end - first + N + 2 * r;
    const int64_t in0 = c0 < 0 ? 0 : c0;                // first image column inside
    const int64_t in1 = c0 + cols > W ? W : c0 + cols;  // end of the image columns inside
    for (int64_t dy = -r; dy <= r; ++dy) {
      float* w = win + (dy + r) * p.stride;
      const int64_t yy = y + dy;
      if (yy < 0 || yy >= H) {
        std::memset(w, 0, sizeof(float) * static_cast<size_t>(cols));
        continue;
      }
      const float* src = img + yy * W;
      for (int64_t c = 0; c < in0 - c0; ++c) w[c] = 0.0f;
      float* wi = w + (in0 - c0);
      for (int64_t x = in0; x < in1; ++x) wi[x - in0] = src[x] + 0.0f;  // -0.0 -> +0.0
      for (int64_t c = in1 - c0; c < cols; ++c) w[c] = 0.0f;
    }
    int64_t x = first;
    while ((x = next_on(mrow, x, end)) < end) {
      select(win + (x - first), lanes);
      const int64_t stop = x + N < W ? x + N : W;
      for (int64_t xx = x; xx < stop; ++xx) {
        if (mrow[xx] > 0.5f) orow[xx] = lanes[xx - x];
      }
      x = stop;
    }
    first = x;  // the next tile starts at the first mask pixel not yet done
  }
}

}  // namespace anofast::median

#undef ANOFAST_MEDIAN_INLINE
