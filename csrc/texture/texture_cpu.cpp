// mirrors anofast/reference/texture.py: bindings of texture_stage_cpu, texture_histogram_cpu, texture_hist_lut_cpu.
#include "texture/texture.h"

#include <algorithm>
#include <optional>
#include <vector>

#include <pybind11/stl.h>

#include "common/buffer.h"
#include "common/parallel.h"
#include "common/registry.h"

namespace anofast {
namespace {

// src (N, 3, H, W); out (B, 3, H, W); sample b reads src[src_index[b]] (src[b] without an index). Each sample runs
// its chain of K stages (mode (B, K)) inside its box, and only where where[b] > 0.5 if sparse[b] (all samples when
// where is given without sparse).
void texture_stage_cpu(const carray<uint8_t>& src, const carray<int32_t>& mode, const carray<float>& fparams,
                       const carray<uint8_t>& lut, const carray<int32_t>& box,
                       const std::optional<carray<float>>& where, const std::optional<carray<bool>>& sparse,
                       const std::optional<carray<int64_t>>& src_index, const carray<float>& recip,
                       carray<uint8_t>& out, int num_threads) {
  check_shape(src, "src", {-1, 3, -1, -1});
  const int64_t n_src = src.shape(0), height = src.shape(2), width = src.shape(3);
  check_shape(mode, "mode", {-1, -1});
  const int64_t batch = mode.shape(0), count = mode.shape(1);
  check_shape(fparams, "fparams", {batch, count, 4});
  check_shape(lut, "lut", {batch, count, 3, 256});
  check_shape(box, "box", {batch, 4});
  check_shape(recip, "recip", {256});
  check_shape(out, "out", {batch, 3, height, width});
  if (out.data() == src.data()) throw py::value_error("out must not be the same buffer as src");
  if (count < 1) throw py::value_error("mode: at least one stage per sample");
  const float* wh = nullptr;
  if (where) {
    check_shape(*where, "where", {batch, 1, height, width});
    wh = where->data();
  }
  const bool* sp = nullptr;
  if (sparse) {
    check_shape(*sparse, "sparse", {batch});
    sp = sparse->data();
  }
  const int64_t* si = nullptr;
  if (src_index) {
    check_shape(*src_index, "src_index", {batch});
    si = src_index->data();
  } else if (n_src != batch) {
    throw py::value_error("src: without src_index it must have one image per sample");
  }
  const uint8_t* s = src.data();
  const int32_t* md = mode.data();
  const float* fp = fparams.data();
  const uint8_t* lt = lut.data();
  const int32_t* bx = box.data();
  const float* rec = recip.data();
  uint8_t* o = mut(out);
  // Per sample, the stages that do work. A chain may hold one stencil stage (SHARPNESS, AFFINE), with only tables
  // (LUT, IDENTITY) before it: those are composed into one (3, 256) table per sample that the stencil reads its bytes
  // through, and the chain starts at the stencil. Otherwise IDENTITY is a no-op (kept when it is the whole chain).
  std::vector<int32_t> stages(static_cast<size_t>(batch * count));
  std::vector<int32_t> n_stages(static_cast<size_t>(batch));
  std::vector<uint8_t> pre(static_cast<size_t>(batch * 768));
  std::vector<char> has_pre(static_cast<size_t>(batch));
  for (int64_t b = 0; b < batch; ++b) {
    const int32_t* mb = md + b * count;
    const int32_t* bb = bx + 4 * b;
    if (bb[0] < 0 || bb[1] < 0 || bb[2] > height || bb[3] > width) throw py::value_error("box: outside the image");
    if (si && (si[b] < 0 || si[b] >= n_src)) throw py::value_error("src_index: texture index out of range");
    int64_t stencil = -1;
    bool tables = true;  // every stage so far is LUT or IDENTITY
    for (int64_t k = 0; k < count; ++k) {
      if (mb[k] < 0 || mb[k] >= texture::kNumModes) throw py::value_error("mode: unknown mode id");
      if (!texture::is_pointwise(mb[k])) {
        if (!tables) throw py::value_error("mode: a sharpness or affine stage may follow only table stages");
        stencil = k;
      }
      tables = tables && (mb[k] == texture::kLut || mb[k] == texture::kIdentity);
    }
    uint8_t* t = pre.data() + b * 768;
    for (int v = 0; v < 768; ++v) t[v] = static_cast<uint8_t>(v & 255);
    for (int64_t k = 0; k < stencil; ++k) {
      if (mb[k] != texture::kLut) continue;
      has_pre[b] = 1;
      const uint8_t* lk = lt + (b * count + k) * 768;
      for (int c = 0; c < 3; ++c) {
        for (int v = 0; v < 256; ++v) t[c * 256 + v] = lk[c * 256 + t[c * 256 + v]];
      }
    }
    int32_t n = 0;
    for (int64_t k = std::max<int64_t>(stencil, 0); k < count; ++k) {
      if (k == stencil || mb[k] != texture::kIdentity) stages[b * count + n++] = static_cast<int32_t>(k);
    }
    if (n == 0) stages[b * count + n++] = 0;  // all IDENTITY: one copy
    n_stages[b] = n;
  }
  py::gil_scoped_release release;
  // Work items: blocks of kBlock rows of a sample's box, block-major (block 0 of every sample, then block 1, ...):
  // rows stream through memory inside a block (the sparse path's run-by-run accesses need that to stay cheap), and
  // each chunk of items mixes samples, whose boxes and chains differ in cost.
  constexpr int64_t kBlock = 16;
  std::vector<int64_t> items;
  for (int64_t y = 0; y < height; y += kBlock) {
    for (int64_t b = 0; b < batch; ++b) {
      const int32_t* bb = bx + 4 * b;
      if (bb[3] > bb[1] && y + kBlock > bb[0] && y < bb[2]) items.push_back(y / kBlock * batch + b);
    }
  }
  const int64_t plane = 3 * height * width;
  parallel_for(static_cast<int64_t>(items.size()), num_threads, [&](int64_t i) {
    const int64_t b = items[i] % batch, block = items[i] / batch;
    const int32_t* bb = bx + 4 * b;
    const int64_t y0 = std::max<int64_t>(bb[0], block * kBlock), y1 = std::min<int64_t>(bb[2], (block + 1) * kBlock);
    const uint8_t* sb = s + (si ? si[b] : b) * plane;
    uint8_t* ob = o + b * plane;
    const int32_t* st = stages.data() + b * count;
    const int32_t* mb = md + b * count;
    const float* fb = fp + b * count * 4;
    const uint8_t* lb = lt + b * count * 768;
    const uint8_t* tb = has_pre[b] ? pre.data() + b * 768 : nullptr;
    if (wh && (!sp || sp[b])) {
      texture::chain_sparse(sb, ob, tb, wh + b * height * width, st, n_stages[b], mb, fb, lb, rec, height, width, y0,
                            y1, bb[1], bb[3]);
    } else {
      for (int64_t y = y0; y < y1; ++y) {
        texture::chain_row(sb, ob, tb, st, n_stages[b], mb, fb, lb, rec, height, width, y, bb[1], bb[3]);
      }
    }
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
        py::arg("where").noconvert(), py::arg("sparse").noconvert(), py::arg("src_index").noconvert(),
        py::arg("recip").noconvert(), py::arg("out").noconvert(), py::arg("num_threads"));
  m.def("texture_histogram_cpu", &texture_histogram_cpu, py::arg("images").noconvert(),
        py::arg("index").noconvert(), py::arg("out").noconvert(), py::arg("num_threads"));
  m.def("texture_hist_lut_cpu", &texture_hist_lut_cpu, py::arg("hist").noconvert(), py::arg("kind").noconvert(),
        py::arg("param").noconvert(), py::arg("out").noconvert());
}
ANOFAST_REGISTER(register_texture);

}  // namespace
}  // namespace anofast
