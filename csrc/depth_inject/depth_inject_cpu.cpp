// mirrors anofast/reference/depth_inject.py: binding of depth_inject_cpu (one image row per task).
#include <algorithm>
#include <cmath>
#include <optional>
#include <vector>

#include <pybind11/stl.h>

#include "common/buffer.h"
#include "common/parallel.h"
#include "common/registry.h"
#include "normals/normals.h"

namespace anofast {
namespace {

using normals::Vec3;

// Columns of the per-sample params table (anofast/reference/depth_inject.py).
enum Param { kLX, kLY, kLZ, kAmbient, kEpsGeo, kEpsRgb3, kCavity, kInvAmp, kColR, kColG, kColB, kHole, kNParams };
constexpr float kMinCos = 0.2f;
constexpr float kSMin = 0.3f;
constexpr float kSMax = 3.0f;

inline float clampf(float v, float lo, float hi) {
  v = v > lo ? v : lo;
  return v < hi ? v : hi;
}

// The displaced point of one pixel (along its viewing ray) and whether it moved.
inline Vec3 displace(const Vec3& p, const Vec3& n, float h, float eps, bool hole, bool& moved) {
  const bool ok = normals::valid(p);
  const float len = std::sqrt((p.x * p.x + p.y * p.y) + p.z * p.z);
  const float d = -((n.x * p.x + n.y * p.y) + n.z * p.z);
  const float floor = len * kMinCos;
  const float den = d > floor ? d : floor;
  const float f = (ok && den > 0.0f) ? 1.0f - h / den : 1.0f;
  const Vec3 cand{p.x * f, p.y * f, p.z * f};
  moved = ok && std::fabs(cand.z - p.z) > eps;
  if (!moved) return p;
  return hole ? Vec3{0.0f, 0.0f, 0.0f} : cand;
}

struct Sample {
  const float *rgb, *xyz, *nrm, *h, *alpha, *prm;
  float *o_rgb, *o_xyz, *o_nrm, *m_geo, *m_rgb;
};

// Displaced cloud of rows [y0, y1) into buf (planar, rows y0.. of a (3, y1-y0, W) block) and their moved flags.
void displace_rows(const Sample& s, int64_t H, int64_t W, int64_t y0, int64_t y1, float* buf, uint8_t* mv) {
  const int64_t hw = H * W, bw = (y1 - y0) * W;
  const float eps = s.prm[kEpsGeo];
  const bool hole = s.prm[kHole] != 0.0f;
  for (int64_t i = y0 * W, j = 0; i < y1 * W; ++i, ++j) {
    const Vec3 p{s.xyz[i], s.xyz[hw + i], s.xyz[2 * hw + i]};
    const Vec3 n{s.nrm[i], s.nrm[hw + i], s.nrm[2 * hw + i]};
    bool moved;
    const Vec3 q = displace(p, n, s.h[i], eps, hole, moved);
    buf[j] = q.x;
    buf[bw + j] = q.y;
    buf[2 * bw + j] = q.z;
    mv[j] = moved;
  }
}

void inject_row(const Sample& s, int64_t H, int64_t W, int64_t y, std::vector<float>& buf, std::vector<uint8_t>& mv) {
  const int64_t hw = H * W, row = y * W;
  const int64_t y0 = y > 0 ? y - 1 : 0, y1 = y + 1 < H ? y + 2 : H;
  bool quiet = true;  // nothing moves within one row and no colour: a plain copy, bit for bit what the math gives
  for (int64_t i = y0 * W; i < y1 * W && quiet; ++i) quiet = s.h[i] == 0.0f;
  for (int64_t x = 0; x < W && quiet && s.alpha != nullptr; ++x) quiet = s.alpha[row + x] == 0.0f;
  if (quiet) {
    for (int c = 0; c < 3; ++c) {
      std::copy_n(s.rgb + c * hw + row, W, s.o_rgb + c * hw + row);
      std::copy_n(s.xyz + c * hw + row, W, s.o_xyz + c * hw + row);
      std::copy_n(s.nrm + c * hw + row, W, s.o_nrm + c * hw + row);
    }
    std::fill_n(s.m_geo + row, W, 0.0f);
    std::fill_n(s.m_rgb + row, W, 0.0f);
    return;
  }
  const int64_t rows = y1 - y0, bw = rows * W;
  buf.resize(static_cast<size_t>(3 * bw));
  mv.resize(static_cast<size_t>(bw));
  displace_rows(s, H, W, y0, y1, buf.data(), mv.data());
  const int64_t yc = y - y0;  // this row inside the block
  auto at = [&](int64_t yy, int64_t xx) {
    const int64_t j = (yy - y0) * W + xx;
    return Vec3{buf[j], buf[bw + j], buf[2 * bw + j]};
  };
  const float* prm = s.prm;
  const float col[3] = {prm[kColR], prm[kColG], prm[kColB]};
  for (int64_t x = 0; x < W; ++x) {
    const int64_t i = row + x, j = yc * W + x;
    const Vec3 p = at(y, x);
    bool near = mv[j] != 0;
    if (x > 0) near = near || mv[j - 1];
    if (x + 1 < W) near = near || mv[j + 1];
    if (y > 0) near = near || mv[j - W];
    if (y + 1 < H) near = near || mv[j + W];
    const Vec3 n_in{s.nrm[i], s.nrm[hw + i], s.nrm[2 * hw + i]};
    Vec3 n = n_in;
    if (near) {
      n = Vec3{0.0f, 0.0f, 0.0f};
      if (y > 0 && x > 0 && y + 1 < H && x + 1 < W) {
        const Vec3 l = at(y, x - 1), r = at(y, x + 1), u = at(y - 1, x), d = at(y + 1, x);
        if (normals::valid(p) && normals::valid(l) && normals::valid(r) && normals::valid(u) && normals::valid(d)) {
          n = normals::normal_from(p, l, r, u, d);
        }
      }
    }
    s.o_xyz[i] = p.x;
    s.o_xyz[hw + i] = p.y;
    s.o_xyz[2 * hw + i] = p.z;
    s.o_nrm[i] = n.x;
    s.o_nrm[hw + i] = n.y;
    s.o_nrm[2 * hw + i] = n.z;
    s.m_geo[i] = mv[j] ? 1.0f : 0.0f;

    auto shade = [&](const Vec3& v) {
      const float dot = (v.x * prm[kLX] + v.y * prm[kLY]) + v.z * prm[kLZ];
      return prm[kAmbient] + (dot > 0.0f ? dot : 0.0f);
    };
    const float ratio = clampf(shade(n) / shade(n_in), kSMin, kSMax);
    const bool ok = normals::valid(Vec3{s.xyz[i], s.xyz[hw + i], s.xyz[2 * hw + i]});
    const float t = ok ? clampf(-(s.h[i] * prm[kInvAmp]), 0.0f, 1.0f) : 0.0f;
    const float g = ratio * (1.0f - prm[kCavity] * t);
    const float a = (ok && s.alpha != nullptr) ? s.alpha[i] : 0.0f;
    float v[3], diff[3];
    for (int c = 0; c < 3; ++c) {
      const float in = s.rgb[c * hw + i];
      float o = in * g;
      if (s.alpha != nullptr) o = o + a * (col[c] - o);
      v[c] = clampf(o, 0.0f, 1.0f);
      diff[c] = std::fabs(v[c] - in);
    }
    const bool changed = ((diff[0] + diff[1]) + diff[2]) > prm[kEpsRgb3];
    for (int c = 0; c < 3; ++c) s.o_rgb[c * hw + i] = changed ? v[c] : s.rgb[c * hw + i];
    s.m_rgb[i] = changed ? 1.0f : 0.0f;
  }
}

void depth_inject_cpu(const carray<float>& rgb, const carray<float>& xyz, const carray<float>& nrm,
                      const carray<float>& height, const std::optional<carray<float>>& alpha,
                      const carray<float>& params, carray<float>& out_rgb, carray<float>& out_xyz,
                      carray<float>& out_nrm, carray<float>& mask_geo, carray<float>& mask_rgb, int num_threads) {
  check_shape(rgb, "rgb", {-1, 3, -1, -1});
  const int64_t batch = rgb.shape(0), H = rgb.shape(2), W = rgb.shape(3);
  check_shape(xyz, "xyz", {batch, 3, H, W});
  check_shape(nrm, "normals", {batch, 3, H, W});
  check_shape(height, "height", {batch, 1, H, W});
  if (alpha) check_shape(*alpha, "alpha", {batch, 1, H, W});
  check_shape(params, "params", {batch, kNParams});
  check_shape(out_rgb, "out_rgb", {batch, 3, H, W});
  check_shape(out_xyz, "out_xyz", {batch, 3, H, W});
  check_shape(out_nrm, "out_normals", {batch, 3, H, W});
  check_shape(mask_geo, "mask_geo", {batch, 1, H, W});
  check_shape(mask_rgb, "mask_rgb", {batch, 1, H, W});
  const int64_t hw = H * W;
  const float *pr = rgb.data(), *px = xyz.data(), *pn = nrm.data(), *ph = height.data(), *pp = params.data();
  const float* pa = alpha ? alpha->data() : nullptr;
  float *orgb = mut(out_rgb), *oxyz = mut(out_xyz), *onrm = mut(out_nrm), *mg = mut(mask_geo), *mr = mut(mask_rgb);
  py::gil_scoped_release release;
  parallel_for(batch * H, num_threads, [&](int64_t row) {
    const int64_t b = row / H, y = row % H;
    const Sample s{pr + b * 3 * hw,  px + b * 3 * hw, pn + b * 3 * hw, ph + b * hw,  pa ? pa + b * hw : nullptr,
                   pp + b * kNParams, orgb + b * 3 * hw, oxyz + b * 3 * hw, onrm + b * 3 * hw, mg + b * hw,
                   mr + b * hw};
    thread_local std::vector<float> buf;
    thread_local std::vector<uint8_t> mv;
    inject_row(s, H, W, y, buf, mv);
  });
}

void register_depth_inject(py::module_& m) {
  m.def("depth_inject_cpu", &depth_inject_cpu, py::arg("rgb").noconvert(), py::arg("xyz").noconvert(),
        py::arg("normals").noconvert(), py::arg("height").noconvert(), py::arg("alpha").noconvert(),
        py::arg("params").noconvert(), py::arg("out_rgb").noconvert(), py::arg("out_xyz").noconvert(),
        py::arg("out_normals").noconvert(), py::arg("mask_geo").noconvert(), py::arg("mask_rgb").noconvert(),
        py::arg("num_threads"));
}
ANOFAST_REGISTER(register_depth_inject);

}  // namespace
}  // namespace anofast
