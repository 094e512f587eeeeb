"""SyntheticAnomalyDataset: per-item determinism, DataLoader workers, collation and epochs."""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader, Dataset

import anofast
from anofast.data import SyntheticAnomalyDataset, epoch_seed

N, H, W = 8, 24, 20


class Images(Dataset):
    """In-memory images; ``form`` picks the item type: "tensor", "tuple" or "dict" (with a foreground)."""

    def __init__(self, form: str = "tensor", dtype: torch.dtype = torch.uint8):
        g = torch.Generator().manual_seed(0)
        self.images = torch.randint(0, 256, (N, 3, H, W), dtype=torch.uint8, generator=g)
        if dtype != torch.uint8:
            self.images = self.images.to(dtype) * (1.0 / 255.0)
        self.fg = torch.zeros(N, 1, H, W)
        self.fg[:, :, 4:16, 5:15] = 1.0
        self.form = form

    def __len__(self) -> int:
        return N

    def __getitem__(self, i: int):
        if self.form == "tuple":
            return self.images[i], i
        if self.form == "dict":
            return {"img": self.images[i], "fg": self.fg[i], "name": f"{i}.png"}
        return self.images[i]


@pytest.fixture(scope="module")
def generator():
    return anofast.PerlinAnomaly.glass()  # p_anomaly=1: every item has an anomaly, so items differ by seed


def _items(ds: Dataset) -> list:
    return [ds[i] for i in range(len(ds))]


def _assert_same(a, b) -> None:
    assert torch.equal(a.image, b.image) and torch.equal(a.mask, b.mask) and torch.equal(a.label, b.label)
    assert a.params.keys() == b.params.keys()
    for k in a.params:
        assert torch.equal(a.params[k], b.params[k]), k


def test_item_equals_its_sample_in_a_batch(generator):
    base = Images()
    ds = SyntheticAnomalyDataset(base, generator, seed=7)
    batch = generator(base.images, seed=7)
    for i in (0, 5, N - 1):
        item = ds[i]
        assert item.image.shape == (3, H, W) and item.image.dtype == torch.float32
        assert item.mask.shape == (1, H, W) and item.label.dtype == torch.int64 and item.label.dim() == 0
        assert torch.equal(item.image, batch.image[i]) and torch.equal(item.mask, batch.mask[i])
        assert item.label == batch.label[i]
        assert all(torch.equal(v, batch.params[k][i]) for k, v in item.params.items())
    _assert_same(ds[-1], ds[N - 1])


def test_deterministic_and_seeded(generator):
    a = _items(SyntheticAnomalyDataset(Images(), generator, seed=3))
    b = _items(SyntheticAnomalyDataset(Images(), generator, seed=3))
    for x, y in zip(a, b):
        _assert_same(x, y)
    c = _items(SyntheticAnomalyDataset(Images(), generator, seed=4))
    assert sum(not torch.equal(x.mask, y.mask) for x, y in zip(a, c)) >= N // 2
    assert sum(x.label.item() for x in a) >= N // 2  # the anomalies are real, not all empty


@pytest.mark.parametrize("form", ["tensor", "tuple", "dict"])
def test_item_forms(generator, form):
    ds = SyntheticAnomalyDataset(Images(form, torch.float32), generator, seed=1, image_key="img")
    ref = SyntheticAnomalyDataset(Images("tensor", torch.float32), generator, seed=1)
    _assert_same(ds[2], ref[2])


def test_foreground(generator):
    base = Images("dict")
    ds = SyntheticAnomalyDataset(base, generator, seed=5, image_key="img", foreground_key="fg")
    for i in range(N):
        item = ds[i]
        assert bool((item.mask <= base.fg[i]).all())
        outside = base.fg[i].expand(3, -1, -1) == 0
        assert torch.equal(item.image[outside], base.images[i].float()[outside] * (1.0 / 255.0))


def test_bad_items(generator):
    with pytest.raises(KeyError, match="no key 'image'"):
        SyntheticAnomalyDataset(Images("dict"), generator)[0]
    with pytest.raises(TypeError, match=r"\(C, H, W\) tensor"):
        SyntheticAnomalyDataset([torch.zeros(1, 3, 4, 4)], generator)[0]
    with pytest.raises(TypeError, match="must be an image tensor"):
        SyntheticAnomalyDataset([3.0], generator)[0]
    with pytest.raises(KeyError, match="no foreground"):
        SyntheticAnomalyDataset(Images("tuple"), generator, foreground_key=5)[0]
    with pytest.raises(TypeError, match="seed must be an int"):
        SyntheticAnomalyDataset(Images(), generator, seed=1.5)
    with pytest.raises(TypeError, match="callable"):
        SyntheticAnomalyDataset(Images(), "draem")
    with pytest.raises(ValueError, match="epoch"):
        SyntheticAnomalyDataset(Images(), generator).set_epoch(-1)


def _collect(loader: DataLoader) -> list:
    return list(loader)


def test_dataloader_workers_and_default_collate(generator):
    ds = SyntheticAnomalyDataset(Images(), generator, seed=11)
    serial = _collect(DataLoader(ds, batch_size=4, num_workers=0))
    parallel = _collect(DataLoader(ds, batch_size=4, num_workers=2))
    assert len(serial) == len(parallel) == 2
    for a, b in zip(serial, parallel):
        assert isinstance(a, anofast.AnomalyBatch)  # the default collate keeps the NamedTuple
        assert a.image.shape == (4, 3, H, W) and a.mask.shape == (4, 1, H, W) and a.label.shape == (4,)
        assert all(v.shape[0] == 4 for v in a.params.values())
        _assert_same(a, b)
    # shuffled or not, in workers or not: an item's anomaly is a function of (seed, index) only
    g = torch.Generator().manual_seed(0)
    order = torch.randperm(N, generator=g).tolist()
    shuffled = _collect(DataLoader(ds, batch_size=5, sampler=order, num_workers=2))
    got = torch.cat([b.mask for b in shuffled])
    assert torch.equal(got, torch.cat([b.mask for b in serial])[order])


def test_set_epoch(generator):
    ds = SyntheticAnomalyDataset(Images(), generator, seed=2)
    e0 = _items(ds)
    ds.set_epoch(1)
    assert ds.epoch == 1
    e1 = _items(ds)
    assert sum(not torch.equal(a.mask, b.mask) for a, b in zip(e0, e1)) >= N // 2
    other = SyntheticAnomalyDataset(Images(), generator, seed=2)
    other.set_epoch(1)
    for a, b in zip(e1, _items(other)):
        _assert_same(a, b)
    ds.set_epoch(0)
    for a, b in zip(e0, _items(ds)):
        _assert_same(a, b)
    assert epoch_seed(2, 0) == 2 and len({epoch_seed(2, e) for e in range(50)}) == 50
    assert 0 <= epoch_seed(-5, 3) < 2**63


def test_set_epoch_reaches_persistent_workers(generator):
    ds = SyntheticAnomalyDataset(Images(), generator, seed=9)
    loader = DataLoader(ds, batch_size=3, num_workers=2, persistent_workers=True)
    epochs = []
    for epoch in range(2):
        ds.set_epoch(epoch)
        epochs.append(torch.cat([b.mask for b in loader]))
    ref = SyntheticAnomalyDataset(Images(), generator, seed=9)
    ref.set_epoch(1)
    assert torch.equal(epochs[1], torch.stack([ref[i].mask for i in range(N)]))
    assert not torch.equal(epochs[0], epochs[1])
