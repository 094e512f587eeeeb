// mirrors anofast/reference/texture.py: bindings of texture_stage_cpu and texture_histogram_cpu.
#include "texture/texture.h"

#include <vector>

#include "common/buffer.h"
#include "common/parallel.h"
#include "common/registry.h"

namespace anofast {
namespace {

void texture_stage_cpu(const carray<uint8_t>& src, const carray<int32_t>& mode, const carray<float>& fparams,
                       const carray<uint8_t>& lut, const carray<int32_t>& box, const carray<float>& recip,
                       carray<uint8_t>& out, int num_threads) {
  check_shape(src, "src", {-1, 3, -1, -1});
  const int64_t batch = src.shape(0), height = src.shape(2), width = src.shape(3);
  check_shape(mode, "mode", {batch});
  check_shape(fparams, "fparams", {batch, 4});
  check_shape(lut, "lut", {batch, 3, 256});
  check_shape(box, "box", {batch, 4});
  check_shape(recip, "recip", {256});
  check_shape(out, "out", {batch, 3, height, width});
  if (out.data() == src.data()) throw py::value_error("out must not be the same buffer as src");
  const uint8_t* s = src.data();
  const int32_t* md = mode.data();
  const float* fp = fparams.data();
  const uint8_t* lt = lut.data();
  const int32_t* bx = box.data();
  const float* rec = recip.data();
  uint8_t* o = mut(out);
  for (int64_t b = 0; b < batch; ++b) {
    if (md[b] < 0 || md[b] >= texture::kNumModes) throw py::value_error("mode: unknown mode id");
    const int32_t* bb = bx + 4 * b;
    if (bb[0] < 0 || bb[1] < 0 || bb[2] > height || bb[3] > width) throw py::value_error("box: outside the image");
  }
  py::gil_scoped_release release;
  // One work item per active (sample, row): boxes differ per sample, so this balances the threads.
  std::vector<int64_t> rows;
  for (int64_t b = 0; b < batch; ++b) {
    const int32_t* bb = bx + 4 * b;
    if (bb[3] <= bb[1]) continue;
    for (int64_t y = bb[0]; y < bb[2]; ++y) rows.push_back(b * height + y);
  }
  const int64_t plane = 3 * height * width;
  parallel_for(static_cast<int64_t>(rows.size()), num_threads, [&](int64_t i) {
    const int64_t b = rows[i] / height, y = rows[i] % height;
    const int32_t* bb = bx + 4 * b;
    texture::stage_row(s + b * plane, o + b * plane, md[b], fp + 4 * b, lt + b * 768, rec, height, width, y, bb[1],
                       bb[3]);
  });
}

void texture_histogram_cpu(const carray<uint8_t>& images, const carray<int64_t>& index, carray<int32_t>& out,
                           int num_threads) {
  check_shape(images, "images", {-1, 3, -1, -1});
  const int64_t batch = images.shape(0), hw = images.shape(2) * images.shape(3);
  check_shape(index, "index", {-1});
  const int64_t n = index.shape(0);
  check_shape(out, "out", {n, 3, 256});
  const int64_t* idx = index.data();
  for (int64_t i = 0; i < n; ++i) {
    if (idx[i] < 0 || idx[i] >= batch) throw py::value_error("index: sample index out of range");
  }
  const uint8_t* s = images.data();
  int32_t* o = mut(out);
  py::gil_scoped_release release;
  parallel_for(n * 3, num_threads, [&](int64_t i) {
    const int64_t b = idx[i / 3], c = i % 3;
    texture::histogram(s + (b * 3 + c) * hw, hw, o + i * 256);
  });
}

void texture_hist_lut_cpu(const carray<int32_t>& hist, const carray<int32_t>& kind, const carray<float>& param,
                          carray<uint8_t>& out) {
  check_shape(hist, "hist", {-1, 3, 256});
  const int64_t n = hist.shape(0);
  check_shape(kind, "kind", {n});
  check_shape(param, "param", {n});
  check_shape(out, "out", {n, 3, 256});
  const int32_t* h = hist.data();
  const int32_t* k = kind.data();
  const float* p = param.data();
  uint8_t* o = mut(out);
  py::gil_scoped_release release;
  for (int64_t i = 0; i < n; ++i) texture::hist_lut(h + i * 768, k[i], p[i], o + i * 768);
}

void register_texture(py::module_& m) {
  m.def("texture_stage_cpu", &texture_stage_cpu, py::arg("src").noconvert(), py::arg("mode").noconvert(),
        py::arg("fparams").noconvert(), py::arg("lut").noconvert(), py::arg("box").noconvert(),
        py::arg("recip").noconvert(), py::arg("out").noconvert(), py::arg("num_threads"));
  m.def("texture_histogram_cpu", &texture_histogram_cpu, py::arg("images").noconvert(),
        py::arg("index").noconvert(), py::arg("out").noconvert(), py::arg("num_threads"));
  m.def("texture_hist_lut_cpu", &texture_hist_lut_cpu, py::arg("hist").noconvert(), py::arg("kind").noconvert(),
        py::arg("param").noconvert(), py::arg("out").noconvert());
}
ANOFAST_REGISTER(register_texture);

}  // namespace
}  // namespace anofast
