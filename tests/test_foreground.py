"""anofast.foreground.estimate: colour (border distance, Otsu), geometry (plane fit), clean-up, errors."""

from __future__ import annotations

import pytest
import torch

import anofast
from anofast import foreground
from anofast.data import list_images, read_image, read_mask


def _disk_scene(batch: int = 2, size: int = 48, bright_bg: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """A disk (with a hole in it) plus a small separate blob, on a plain noisy background."""
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    disk = ((yy - 22) ** 2 + (xx - 24) ** 2) < 13**2
    hole = ((yy - 22) ** 2 + (xx - 24) ** 2) < 3**2
    blob = ((yy - 40) ** 2 + (xx - 40) ** 2) < 2**2
    obj = (disk & ~hole) | blob
    g = torch.Generator().manual_seed(1)
    bg, fg = (0.85, 0.25) if bright_bg else (0.1, 0.7)
    img = torch.where(obj, fg, bg) + 0.03 * torch.rand(batch, 3, size, size, generator=g)
    return img.clamp(0, 1), disk.view(1, 1, size, size).expand(batch, -1, -1, -1)


@pytest.mark.parametrize("method", ["border", "otsu", "auto"])
@pytest.mark.parametrize("bright_bg", [False, True])
def test_disk_is_found_with_hole_filled_and_blob_dropped(method, bright_bg):
    images, disk = _disk_scene(bright_bg=bright_bg)
    fg = foreground.estimate(images, method, border=3, smooth=3)
    assert fg.shape == disk.shape and fg.dtype == torch.float32
    assert set(fg.unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(fg.bool(), disk), (fg.bool() ^ disk).sum()


def test_uint8_and_grey_inputs():
    images, disk = _disk_scene()
    fg8 = foreground.estimate((images * 255).round().to(torch.uint8), border=3, smooth=3)
    grey = foreground.estimate(images.mean(1, keepdim=True), border=3, smooth=3)
    assert torch.equal(fg8.bool(), disk) and torch.equal(grey.bool(), disk)


def test_batch_and_thread_invariance():
    images, _ = _disk_scene(batch=3)
    images[1] = images[1].flip(-1)
    full = foreground.estimate(images)
    for i in range(3):
        assert torch.equal(foreground.estimate(images[i : i + 1]), full[i : i + 1])
    torch.set_num_threads(1)
    assert torch.equal(foreground.estimate(images), full)


def test_empty_estimate_falls_back_to_the_whole_image():
    flat = torch.full((2, 3, 24, 24), 0.5)
    with pytest.warns(UserWarning, match="empty foreground"):
        fg = foreground.estimate(flat)
    assert bool((fg == 1).all())
    assert bool((foreground.estimate(flat, empty="keep") == 0).all())


def _tilted_plane(b: int, h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
    yy, xx = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    z = 100.0 + 0.3 * yy - 0.2 * xx
    box = (yy >= 10) & (yy < 20) & (xx >= 8) & (xx < 30)
    depth = (z - 5.0 * box).expand(b, 1, h, w).clone()
    g = torch.Generator().manual_seed(0)
    depth += 0.05 * torch.rand(depth.shape, generator=g)
    depth[:, :, 0, 0] = 0.0  # an invalid point
    return depth, box.expand(b, 1, h, w)


def test_plane_fit_on_a_depth_map():
    depth, box = _tilted_plane(2, 32, 40)
    fg = foreground.estimate(None, depth=depth, plane_distance=1.0, border=3, smooth=1)
    assert torch.equal(fg.bool(), box)
    # a few outliers on the border (clutter) do not move the RANSAC plane
    depth[:, :, 1, 5:9] -= 30.0
    fg = foreground.estimate(None, depth=depth, plane_distance=1.0, border=3, smooth=1)
    assert torch.equal(fg.bool(), box)


def test_plane_fit_on_an_organized_point_cloud():
    b, h, w = 2, 30, 36
    yy, xx = torch.meshgrid(torch.linspace(-0.05, 0.05, h), torch.linspace(-0.06, 0.06, w), indexing="ij")
    z = 0.5 + 0.1 * xx
    bump = (yy.abs() < 0.02) & (xx.abs() < 0.02)
    xyz = torch.stack((xx, yy, z - 0.01 * bump)).expand(b, -1, -1, -1).clone()
    fg = foreground.estimate(torch.rand(b, 3, h, w), depth=xyz, border=3, smooth=1)
    assert torch.equal(fg.bool(), bump.expand(b, 1, h, w))


def test_generator_respects_the_estimate():
    images, _ = _disk_scene(batch=4)
    fg = foreground.estimate(images, border=3, smooth=3)
    out = anofast.PerlinAnomaly.draem(p_anomaly=1.0)(images, seed=3, foreground=fg)
    assert bool((out.mask <= fg).all())
    assert out.label.sum() > 0


def test_hazelnut_estimate_covers_the_object_not_the_border(shared_data):
    root = shared_data / "mvtec_hazelnut_mini"
    if not root.is_dir():
        pytest.skip(f"{root} is absent")
    files = [f for f in list_images(root / "test", recursive=True) if f.parent.name != "good"]
    images = torch.stack([read_image(f) for f in files])
    gt = torch.stack([read_mask(root / "ground_truth" / f.parent.name / f"{f.stem}_mask.png") for f in files]) > 0
    fg = foreground.estimate(images).bool()
    band = torch.ones(fg.shape[-2:], dtype=torch.bool)
    band[8:-8, 8:-8] = False
    assert fg[..., band].float().mean() < 0.01  # the border is background
    coverage = fg.flatten(1).float().mean(1)
    assert bool(((coverage > 0.1) & (coverage < 0.6)).all()), coverage
    # the real defects lie on the object (dark cracks and cuts that open onto the rim look like background in
    # places, so not every defect pixel is covered)
    inside = (gt & fg).flatten(1).sum(1) / gt.flatten(1).sum(1)
    assert inside.mean() > 0.9 and inside.min() > 0.6, inside


def test_leather_is_a_texture_and_gets_no_meaningful_object(shared_data):
    """Documented limitation: on textures the estimate is not an object (the caller should not use it)."""
    root = shared_data / "mvtec_leather_mini_256" / "train" / "good"
    if not root.is_dir():
        pytest.skip(f"{root} is absent")
    images = torch.stack([read_image(f) for f in list_images(root)])
    with pytest.warns(UserWarning):
        fg = foreground.estimate(images, method="border")
    assert fg.mean() > 0.9  # nothing stands out from the border colour: falls back to the whole image


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (dict(images=torch.rand(1, 3, 16, 16), method="kmeans"), ValueError, "method"),
        (dict(images=None), ValueError, "images"),
        (dict(images=torch.rand(3, 16, 16)), ValueError, "images"),
        (dict(images=torch.full((1, 3, 16, 16), float("nan"))), ValueError, "NaN"),
        (dict(images=torch.rand(1, 3, 16, 16), border=8), ValueError, "border"),
        (dict(images=torch.rand(1, 3, 16, 16), smooth=4), ValueError, "smooth"),
        (dict(images=torch.rand(1, 3, 16, 16), empty="nothing"), ValueError, "empty"),
        (dict(images=torch.rand(1, 3, 16, 16), depth=torch.rand(1, 1, 8, 8)), ValueError, "depth"),
        (dict(images=None, depth=torch.rand(1, 2, 16, 16)), ValueError, "depth"),
        (dict(images=None, depth=torch.ones(1, 1, 16, 16, dtype=torch.int32)), TypeError, "depth"),
        (dict(images=None, depth=torch.rand(1, 1, 16, 16), plane_distance=-1.0), ValueError, "plane_distance"),
        (dict(images="image.png"), TypeError, "images"),
    ],
)
def test_bad_input(kwargs, error, match):
    images = kwargs.pop("images")
    with pytest.raises(error, match=match):
        foreground.estimate(images, **kwargs)


def test_uint8_images_match_their_float_conversion():
    """uint8 images take a histogram median; it must give what the float images' selection gives."""
    images, _ = _disk_scene(batch=3, size=40)
    u8 = torch.cat([(images * 255).round().to(torch.uint8), torch.randint(0, 256, (2, 3, 40, 40), dtype=torch.uint8)])
    as_float = u8.to(torch.float32).mul_(1.0 / 255.0)  # as check_images converts
    for method in ("border", "otsu", "auto"):
        for kw in ({}, dict(smooth=1, holes=False, largest_component=False)):
            assert torch.equal(foreground.estimate(u8, method, empty="keep", **kw),
                               foreground.estimate(as_float, method, empty="keep", **kw)), (method, kw)


@pytest.mark.parametrize("q", [0.0, 0.3, 0.5, 0.95, 1.0])
def test_quantile_helper_matches_torch_quantile(q):
    g = torch.Generator().manual_seed(0)
    for b, n in ((1, 1), (3, 2), (5, 97), (9, 1000), (33, 9840)):
        v = torch.rand(b, n, generator=g) ** 3
        v[:, : n // 3] = v[:, :1]  # ties
        assert torch.equal(foreground._quantile(v, q, torch.sqrt), torch.quantile(v.sqrt(), q, dim=1)), (b, n)


def test_sqrt_threshold_is_exact():
    g = torch.Generator().manual_seed(0)
    t = torch.cat([torch.tensor([0.0, 1e-30, 0.05, 1.0, 2.0]), torch.rand(10000, generator=g) * 2])
    thr = foreground._sqrt_threshold(t)
    assert bool((thr.sqrt() <= t).all())
    assert bool((torch.nextafter(thr, torch.tensor(torch.inf)).sqrt() > t).all())


def _reference_components(mask: torch.Tensor) -> torch.Tensor:
    """Plain label propagation (one 3x3 step per pass), the definition components() must match."""
    b, _, h, w = mask.shape
    inside = mask.double()
    lab = torch.arange(1, h * w + 1, dtype=torch.float64).view(1, 1, h, w) * inside
    while True:
        nxt = torch.nn.functional.max_pool2d(lab, 3, stride=1, padding=1) * inside
        if torch.equal(nxt, lab):
            return lab.view(b, h * w).long() - 1
        lab = nxt


def test_components_match_plain_propagation():
    g = torch.Generator().manual_seed(0)
    blobs = torch.nn.functional.interpolate(torch.rand(4, 1, 9, 11, generator=g), size=(37, 45), mode="bilinear")
    spiral = torch.zeros(1, 1, 37, 45, dtype=torch.bool)
    for k in range(0, 18, 4):
        spiral[0, 0, k, k : 45 - k] = spiral[0, 0, k : 37 - k, 44 - k] = spiral[0, 0, 36 - k, k + 2 : 45 - k] = True
        spiral[0, 0, k + 2 : 37 - k, k + 2] = True
    for mask in (blobs < 0.5, blobs < 0.3, torch.rand(3, 1, 37, 45, generator=g) < 0.55, spiral,
                 torch.zeros(2, 1, 5, 6, dtype=torch.bool), torch.ones(1, 1, 1, 7, dtype=torch.bool)):
        assert torch.equal(foreground.components(mask), _reference_components(mask))


def test_clean_up_is_per_sample_on_a_coarse_grid():
    """fill_holes / largest_component work on the samples that need it only: each sample as if alone."""
    yy, xx = torch.meshgrid(torch.arange(150), torch.arange(170), indexing="ij")
    r2 = (yy - 75) ** 2 + (xx - 80) ** 2
    ring = (r2 < 60**2) & ~(r2 < 30**2)  # a hole of many cells
    blobs = ring | (((yy - 10) ** 2 + (xx - 10) ** 2) < 6**2)  # and a second piece
    disk = r2 < 40**2
    masks = torch.stack([ring, disk, blobs, disk.flip(-1)]).unsqueeze(1)
    for fn in (foreground.fill_holes, foreground.largest_component):
        out = fn(masks)
        assert torch.equal(out, torch.cat([fn(masks[i : i + 1]) for i in range(len(masks))]))
    assert bool((foreground.fill_holes(masks)[0] & ~ring).any())  # the ring's hole is (partly) filled
    assert torch.equal(foreground.largest_component(masks)[2], ring.unsqueeze(0))


def test_otsu_threshold_with_valid_is_that_of_the_valid_values():
    g = torch.Generator().manual_seed(0)
    values = torch.rand(11, 500, generator=g) ** 2
    valid = torch.rand(11, 500, generator=g) < 0.6
    t = foreground.otsu_threshold(values, valid)
    for i in range(11):
        assert torch.equal(t[i : i + 1], foreground.otsu_threshold(values[i][valid[i]].view(1, -1)))


def test_negative_zeros_change_nothing():
    """The float median is selected on int32 bit patterns, where -0.0 sorts below +0.0: no effect on the mask."""
    images, _ = _disk_scene(batch=2)
    images = torch.where(images < 0.12, torch.zeros_like(images), images)
    coin = torch.rand(images.shape, generator=torch.Generator().manual_seed(0)) < 0.5
    signed = torch.where((images == 0) & coin, torch.tensor(-0.0), images)
    assert bool((signed == 0).any() & torch.signbit(signed).any())
    for method in ("border", "auto"):
        assert torch.equal(foreground.estimate(signed, method, border=3, smooth=1),
                           foreground.estimate(images, method, border=3, smooth=1))


def test_fill_holes_fills_small_and_large_holes_on_large_images():
    """256² masks analyse connectivity on 4-pixel cells: holes of any size inside the object are filled, while a
    notch open to the outside and the background stay as they are."""
    yy, xx = torch.meshgrid(torch.arange(256.0), torch.arange(256.0), indexing="ij")
    disk = (yy - 128) ** 2 + (xx - 128) ** 2 <= 100**2
    small = (yy - 100) ** 2 + (xx - 100) ** 2 <= 9**2
    large = (yy - 150) ** 2 + (xx - 150) ** 2 <= 20**2
    notch = (yy - 128).abs() <= 6
    notch &= xx >= 200  # a slot from the disk's right edge to the outside
    mask = (disk & ~small & ~large & ~notch).view(1, 1, 256, 256)
    filled = foreground.fill_holes(mask)
    assert torch.equal(filled, (disk & ~notch).view(1, 1, 256, 256)), int((filled ^ (disk & ~notch)).sum())
