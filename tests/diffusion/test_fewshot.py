"""FewShotInpainter with a tiny model: training, resumable safetensors checkpoints, the generation contract."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("safetensors")

from anofast.diffusion import FewShotInpainter  # noqa: E402
from anofast.testing import make_batch  # noqa: E402

TINY = dict(channels=1, crop=16, base=8, mults=(1, 2), batch_size=2)


def _defects(n=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    images, masks = [], []
    for i in range(n):
        h, w = 24 + 3 * i, 30 - 2 * i
        im = make_batch(1, 1, h, w, seed=seed + i)[0]
        m = torch.zeros(1, h, w)
        y, x = int(torch.randint(4, h - 8, (1,), generator=g)), int(torch.randint(4, w - 8, (1,), generator=g))
        m[:, y : y + 5, x : x + 3] = 1
        im[m > 0] *= 0.2  # a dark defect
        images.append(im)
        masks.append(m)
    return images, masks


def _weights(model):
    return {k: v.clone() for k, v in model.net.state_dict().items()} | {
        f"ema.{k}": v.clone() for k, v in model.ema.state_dict().items()
    }


def test_fit_checkpoint_resume_equals_an_uninterrupted_run(tmp_path):
    torch.set_num_threads(1)
    images, masks = _defects()
    labels = ["hole", "scratch", "hole"]
    full = FewShotInpainter(["hole", "scratch"], seed=3, **TINY).fit(images, masks, labels, steps=4, progress=False)

    ckpt = tmp_path / "ckpt.safetensors"
    killed = FewShotInpainter(["hole", "scratch"], seed=3, **TINY)

    def kill(step, loss):
        if step == 3:
            raise KeyboardInterrupt  # killed after the checkpoint of step 2

    with pytest.raises(KeyboardInterrupt):
        killed.fit(images, masks, labels, steps=4, checkpoint=ckpt, checkpoint_every=2, callback=kill, progress=False)
    assert FewShotInpainter.load(ckpt).step == 2
    resumed = FewShotInpainter(["hole", "scratch"], seed=3, **TINY)
    resumed.fit(images, masks, labels, steps=4, checkpoint=ckpt, checkpoint_every=2, progress=False)
    assert resumed.step == 4
    a, b = _weights(full), _weights(resumed)
    assert all(torch.equal(a[k], b[k]) for k in a)
    loaded = FewShotInpainter.load(ckpt)
    assert loaded.step == 4 and loaded.class_names == ["hole", "scratch"]
    assert all(torch.equal(v, _weights(loaded)[k]) for k, v in b.items())


def test_generation_contract_and_determinism():
    images, masks = _defects()
    model = FewShotInpainter(["hole"], seed=0, **TINY).fit(images, masks, steps=2, progress=False)
    normal = make_batch(3, 1, 40, 36, seed=7)
    place = torch.zeros(3, 1, 40, 36)
    place[0, :, 5:12, 4:9] = 1
    place[1, :, 30:38, 25:35] = 1  # near the border: the window is shifted inside the image
    place[2, :, 18:20, 2:30] = 1  # wider than the crop: a larger window
    out = model(normal, place, seed=11, steps=3, sampler="fast")
    changed = (out.image != normal).any(1, keepdim=True)
    assert torch.equal(out.mask, changed.float()) and bool((out.mask <= place).all())
    outside = place.expand_as(normal) < 0.5
    assert torch.equal(out.image[outside], normal[outside])
    assert out.label.tolist() == [1, 1, 1] and out.params["defect_type"].tolist() == [0, 0, 0]
    assert torch.equal(model(normal, place, seed=11, steps=3, sampler="fast").image, out.image)
    one = model(normal[1:2], place[1:2], seed=torch.tensor([int(out.params["seed"][1])]), steps=3, sampler="fast")
    assert torch.equal(one.mask, out.mask[1:2])


def test_bad_input_raises():
    images, masks = _defects(1)
    model = FewShotInpainter(["hole"], **TINY)
    with pytest.raises(ValueError, match="channels"):
        model(torch.rand(1, 3, 32, 32), torch.ones(1, 1, 32, 32), seed=0)
    with pytest.raises(ValueError, match="masks must have shape"):
        model(torch.rand(1, 1, 32, 32), torch.ones(1, 1, 31, 32), seed=0)
    with pytest.raises(ValueError, match="unknown defect type"):
        model(torch.rand(1, 1, 32, 32), torch.ones(1, 1, 32, 32), seed=0, defect_type="crack")
    with pytest.raises(ValueError, match="all empty"):
        model.fit(images, [torch.zeros_like(masks[0])], steps=1, progress=False)
    with pytest.raises(ValueError, match="equally long"):
        model.fit(images, masks + masks, steps=1, progress=False)
    with pytest.raises(ValueError, match="not a readable safetensors"):
        FewShotInpainter.load(__file__)
    with pytest.raises(ValueError, match="does not exist"):
        FewShotInpainter.load("/nonexistent/ckpt.safetensors")
