// Normals of an organized point cloud; mirrors anofast/reference/normals.py (shared with depth_inject).
#pragma once
#include <cmath>
#include <cstdint>

namespace anofast::normals {

struct Vec3 {
  float x, y, z;
};

inline bool valid(const Vec3& p) { return p.x != 0.0f || p.y != 0.0f || p.z != 0.0f; }

// Unit normal at c from its left/right/up/down neighbours (all valid), facing the origin; zeros if degenerate.
inline Vec3 normal_from(const Vec3& c, const Vec3& l, const Vec3& r, const Vec3& u, const Vec3& d) {
  const float tx0 = r.x - l.x, tx1 = r.y - l.y, tx2 = r.z - l.z;
  const float ty0 = d.x - u.x, ty1 = d.y - u.y, ty2 = d.z - u.z;
  float nx = tx1 * ty2 - tx2 * ty1;
  float ny = tx2 * ty0 - tx0 * ty2;
  float nz = tx0 * ty1 - tx1 * ty0;
  const float s = (nx * c.x + ny * c.y) + nz * c.z;
  if (s > 0.0f) {
    nx = -nx;
    ny = -ny;
    nz = -nz;
  }
  const float len = std::sqrt((nx * nx + ny * ny) + nz * nz);  // exactly rounded (IEEE sqrt)
  if (!(len > 0.0f)) return {0.0f, 0.0f, 0.0f};
  return {nx / len, ny / len, nz / len};
}

// Normal of pixel (y, x) of one planar (3, H, W) cloud; zeros on the border or next to an invalid point.
inline Vec3 normal_at(const float* p, int64_t H, int64_t W, int64_t y, int64_t x) {
  if (y <= 0 || x <= 0 || y >= H - 1 || x >= W - 1) return {0.0f, 0.0f, 0.0f};
  const int64_t hw = H * W;
  auto at = [&](int64_t yy, int64_t xx) {
    const int64_t i = yy * W + xx;
    return Vec3{p[i], p[hw + i], p[2 * hw + i]};
  };
  const Vec3 c = at(y, x), l = at(y, x - 1), r = at(y, x + 1), u = at(y - 1, x), d = at(y + 1, x);
  if (!(valid(c) && valid(l) && valid(r) && valid(u) && valid(d))) return {0.0f, 0.0f, 0.0f};
  return normal_from(c, l, r, u, d);
}

}  // namespace anofast::normals
