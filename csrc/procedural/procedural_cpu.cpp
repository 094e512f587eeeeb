// mirrors anofast/reference/procedural.py: binding of procedural_texture_cpu.
#include "procedural/procedural.h"

#include "common/buffer.h"
#include "common/parallel.h"
#include "common/registry.h"

namespace anofast {
namespace {

void procedural_texture_cpu(const carray<int64_t>& keys, const carray<int32_t>& iparams, const carray<float>& fparams,
                            carray<uint8_t>& out, int num_threads) {
  check_shape(keys, "keys", {-1});
  const int64_t batch = keys.shape(0);
  check_shape(iparams, "iparams", {batch, 4});
  check_shape(fparams, "fparams", {batch, procedural::kNumF});
  check_shape(out, "out", {batch, 3, -1, -1});
  const int64_t height = out.shape(2), width = out.shape(3);
  const int64_t* k = keys.data();
  const int32_t* ip = iparams.data();
  const float* fp = fparams.data();
  for (int64_t b = 0; b < batch; ++b) {
    if (ip[4 * b + 1] < 0 || ip[4 * b + 1] > procedural::kMaxOctaves) {
      throw py::value_error("iparams: octave count must be in [0, 6]");
    }
  }
  uint8_t* o = mut(out);
  py::gil_scoped_release release;
  constexpr int64_t kRows = 16;  // rows per task: the scratch is sized once per task
  const int64_t blocks = (height + kRows - 1) / kRows;
  parallel_for(batch * blocks, num_threads, [&](int64_t task) {
    const int64_t b = task / blocks, y0 = (task % blocks) * kRows;
    const int64_t y1 = y0 + kRows < height ? y0 + kRows : height;
    procedural::Scratch sc;
    procedural::reserve(sc, ip + 4 * b, fp + procedural::kNumF * b, width);
    for (int64_t y = y0; y < y1; ++y) {
      procedural::render_row(static_cast<uint32_t>(k[b]), ip + 4 * b, fp + procedural::kNumF * b, height, width, y,
                             o + b * 3 * height * width, sc);
    }
  });
}

void register_procedural(py::module_& m) {
  m.def("procedural_texture_cpu", &procedural_texture_cpu, py::arg("keys").noconvert(), py::arg("iparams").noconvert(),
        py::arg("fparams").noconvert(), py::arg("out").noconvert(), py::arg("num_threads"));
}
ANOFAST_REGISTER(register_procedural);

}  // namespace
}  // namespace anofast
