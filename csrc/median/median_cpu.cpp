// mirrors anofast/reference/median.py: binding of masked_median_cpu (one image row per task).
// 8-wide vectors only cross always-inlined helpers, so GCC's note on their calling convention does not apply.
#pragma GCC diagnostic ignored "-Wpsabi"

#include "median/median.h"

#include <cstdint>
#include <string>
#include <vector>

#include "common/buffer.h"
#include "common/parallel.h"
#include "common/registry.h"
#include "common/simd.h"

namespace anofast {
namespace {

using simd::kWidth;

struct Args {
  float* out;
  const float* values;
  const float* mask;
  int64_t H, W;
};

using RowFn = void (*)(const Args&, const median::Plan&, int64_t);
using NetFn = void (*)(const float*, float*);

// The radius with a compile-time network (NSA's soft label); every other radius runs the run-time table.
constexpr int kFixedRadius = 5;

// The compile-time network gets a function of its own, compiled without GCC's FRE pass: FRE is quadratic in the
// ~2600 loads and stores of the unrolled network (over a minute of compile time for the two copies), and the code
// is as fast without it (SRA and the RTL passes keep the values in registers all the same; measured).
#if defined(__GNUC__) && !defined(__clang__)
#define ANOFAST_NETWORK_FN __attribute__((noinline, optimize("no-tree-fre")))
#else
#define ANOFAST_NETWORK_FN __attribute__((noinline))
#endif

ANOFAST_NETWORK_FN void fixed_base(const float* base, float* lanes) {
  median::store(lanes, median::select_fixed<kWidth, kFixedRadius>(base));
}

#ifdef ANOFAST_AVX2_COPY
ANOFAST_NETWORK_FN __attribute__((target("avx2"))) void fixed_avx2(const float* base, float* lanes) {
  median::store(lanes, median::select_fixed<8, kFixedRadius>(base));
}
#endif

// Row `row` (= b * H + y) with N lanes: with the compile-time network Net, or the run-time table (Net == nullptr);
// the window and the table's vectors are per-thread scratch, grown once.
template <int N, NetFn Net>
inline __attribute__((always_inline)) void row_impl(const Args& a, const median::Plan& p, int64_t row) {
  using F = typename median::Vec<N>::f;
  // One float vector holds the window and, 32-byte aligned after it, the n vectors of the table's network.
  thread_local std::vector<float> scratch;
  const size_t wn = static_cast<size_t>((2 * p.radius + 1) * p.stride);
  const size_t need = wn + (Net == nullptr ? static_cast<size_t>(p.n + 1) * N + 8 : 0);
  if (scratch.size() < need) scratch.resize(need);
  float* win = scratch.data();
  const uintptr_t at = reinterpret_cast<uintptr_t>(win + wn);
  F* buf = reinterpret_cast<F*>((at + 31) & ~static_cast<uintptr_t>(31));
  const int64_t b = row / a.H, y = row % a.H;
  float* orow = a.out + row * a.W;
  const float* mrow = a.mask + row * a.W;
  const float* img = a.values + b * a.H * a.W;
  if constexpr (Net != nullptr) {
    median::median_row<N>(orow, mrow, img, a.H, a.W, y, p, win, Net);
  } else {
    median::median_row<N>(orow, mrow, img, a.H, a.W, y, p, win, [&p, buf](const float* base, float* lanes) {
      median::store(lanes, median::select_table<N>(base, p, buf));
    });
  }
}

template <NetFn Net>
void row_base(const Args& a, const median::Plan& p, int64_t row) {
  row_impl<kWidth, Net>(a, p, row);
}

#ifdef ANOFAST_AVX2_COPY
template <NetFn Net>
__attribute__((target("avx2"))) void row_avx2(const Args& a, const median::Plan& p, int64_t row) {
  row_impl<8, Net>(a, p, row);
}
#endif

void masked_median_cpu(const carray<float>& values, const carray<float>& mask, int64_t radius, carray<float>& out,
                       int num_threads) {
  check_shape(values, "values", {-1, 1, -1, -1});
  const int64_t batch = values.shape(0), H = values.shape(2), W = values.shape(3);
  check_shape(mask, "mask", {batch, 1, H, W});
  check_shape(out, "out", {batch, 1, H, W});
  if (radius < 0 || radius > 64) throw py::value_error("radius must lie in [0, 64], got " + std::to_string(radius));
  const bool fixed = radius == kFixedRadius;
  RowFn fn = fixed ? row_base<fixed_base> : row_base<nullptr>;
  int lanes = kWidth;
#ifdef ANOFAST_AVX2_COPY
  if (simd::use_avx2()) fn = fixed ? row_avx2<fixed_avx2> : row_avx2<nullptr>, lanes = 8;
#endif
  const median::Plan plan(radius, lanes);
  const Args args{mut(out), values.data(), mask.data(), H, W};
  py::gil_scoped_release release;
  parallel_for(batch * H, num_threads, [&](int64_t row) { fn(args, plan, row); });
}

void register_median(py::module_& m) {
  m.def("masked_median_cpu", &masked_median_cpu, py::arg("values").noconvert(), py::arg("mask").noconvert(),
        py::arg("radius"), py::arg("out").noconvert(), py::arg("num_threads"));
}
ANOFAST_REGISTER(register_median);

}  // namespace
}  // namespace anofast
