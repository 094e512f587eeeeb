// mirrors anofast/reference/normals.py: binding of normals_cpu (one image row per task).
#include "normals/normals.h"

#include "common/buffer.h"
#include "common/parallel.h"
#include "common/registry.h"

namespace anofast {
namespace {

void normals_cpu(const carray<float>& xyz, carray<float>& out, int num_threads) {
  check_shape(xyz, "xyz", {-1, 3, -1, -1});
  const int64_t batch = xyz.shape(0), H = xyz.shape(2), W = xyz.shape(3);
  check_shape(out, "out", {batch, 3, H, W});
  const float* p = xyz.data();
  float* o = mut(out);
  py::gil_scoped_release release;
  const int64_t hw = H * W;
  parallel_for(batch * H, num_threads, [&](int64_t row) {
    const int64_t b = row / H, y = row % H;
    const float* pb = p + b * 3 * hw;
    float* ob = o + b * 3 * hw + y * W;
    for (int64_t x = 0; x < W; ++x) {
      const normals::Vec3 n = normals::normal_at(pb, H, W, y, x);
      ob[x] = n.x;
      ob[hw + x] = n.y;
      ob[2 * hw + x] = n.z;
    }
  });
}

void register_normals(py::module_& m) {
  m.def("normals_cpu", &normals_cpu, py::arg("xyz").noconvert(), py::arg("out").noconvert(),
        py::arg("num_threads"));
}
ANOFAST_REGISTER(register_normals);

}  // namespace
}  // namespace anofast
