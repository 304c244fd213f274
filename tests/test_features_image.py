"""Image features (Eq. 4-5) on images the test draws, with a tiny random ViT."""
from __future__ import annotations

import io

import pytest
import torch
from PIL import Image

from mscrs_core.features import ImageEncoder, list_item_images, load_image


@pytest.fixture(scope="module")
def tiny_vit(tmp_path_factory):
    from transformers import ViTConfig, ViTImageProcessor, ViTModel

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny_vit")
    ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)
    ViTModel(ViTConfig(image_size=32, patch_size=8, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                       intermediate_size=32)).save_pretrained(folder)
    return folder


def _img(color, size=(40, 30)) -> Image.Image:
    im = Image.new("RGB", size, color)
    im.putpixel((3, 4), (0, 0, 0))  # not a flat colour: the patches differ
    return im


def _jpeg_bytes(color) -> bytes:
    buf = io.BytesIO()
    _img(color, (64, 64)).save(buf, format="JPEG")
    return buf.getvalue()


@pytest.fixture
def image_root(tmp_path):
    root = tmp_path / "images"
    (root / "1").mkdir(parents=True)
    _img((255, 0, 0)).save(root / "1" / "2.jpg")
    _img((0, 255, 0)).save(root / "1" / "10.png")
    _img((0, 0, 255)).save(root / "1" / "1.jpg")
    (root / "2").mkdir()
    _img((200, 200, 0)).save(root / "2" / "0.png")
    (root / "2" / "1.jpg").write_bytes(b"this is not a jpeg")
    (root / "2" / "notes.txt").write_text("ignored")
    (root / "3").mkdir()  # empty
    (root / "4").mkdir()
    (root / "4" / "1.jpg").write_bytes(_jpeg_bytes((9, 9, 9))[:300])  # truncated
    return root


def _pooled(enc: ImageEncoder, images) -> torch.Tensor:
    with torch.no_grad():
        out = enc.model(**enc.processor(images=images, return_tensors="pt"))
    return out.pooler_output


def test_listing_order_and_problems(image_root):
    listing, problems = list_item_images(image_root, ["1", "3", "9"])
    assert [p.name for p in listing["1"]] == ["1.jpg", "2.jpg", "10.png"]  # numeric, not lexicographic
    assert listing["3"] == [] and listing["9"] == []
    assert [(p.item, p.file) for p in problems] == [("3", None), ("9", None)]
    assert "no folder" in problems[1].reason
    listing, _ = list_item_images(image_root)
    assert list(listing) == ["1", "2", "3", "4"]
    with pytest.raises(FileNotFoundError, match="image root"):
        list_item_images(image_root / "nope")


def test_load_image_rejects_corrupt_and_truncated(image_root):
    assert load_image(image_root / "1" / "1.jpg").mode == "RGB"
    with pytest.raises(ValueError, match="2/1.jpg: unreadable image"):
        load_image(image_root / "2" / "1.jpg")
    with pytest.raises(ValueError, match="unreadable image"):
        load_image(image_root / "4" / "1.jpg")


def test_item_feature_is_mean_of_its_images(tiny_vit, image_root):
    enc = ImageEncoder(tiny_vit, batch_size=2)
    res = enc.encode_folder(image_root, item_keys=["1", "2", "3", "4", "5"])
    assert res.keys == ["1", "2", "3", "4", "5"]
    assert res.features.shape == (5, 16)
    assert res.has_image.tolist() == [True, True, False, False, False]
    assert res.num_images.tolist() == [3, 1, 0, 0, 0]
    # Eq. (4)-(5) by hand: the pooled output of each image, averaged
    imgs1 = [load_image(image_root / "1" / n) for n in ("1.jpg", "2.jpg", "10.png")]
    z = _pooled(enc, imgs1)
    torch.testing.assert_close(res.features[0], (z[0] + z[1] + z[2]) / 3, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(res.features[1], _pooled(enc, [load_image(image_root / "2" / "0.png")])[0],
                               atol=1e-5, rtol=1e-5)
    assert torch.count_nonzero(res.features[2:]) == 0
    probs = {(p.item, None if p.file is None else p.file.rsplit("/", 1)[-1]) for p in res.problems}
    assert probs == {("2", "1.jpg"), ("3", None), ("4", "1.jpg"), ("4", None), ("5", None)}
    assert res.summary() == "2/5 items with images, 4 images encoded, 5 problems"


def test_pooling_choices(tiny_vit, image_root):
    im = [load_image(image_root / "1" / "1.jpg")]
    auto = ImageEncoder(tiny_vit).encode_images(im)
    cls = ImageEncoder(tiny_vit, pooling="cls").encode_images(im)
    mean = ImageEncoder(tiny_vit, pooling="mean").encode_images(im)
    enc = ImageEncoder(tiny_vit)
    with torch.no_grad():
        out = enc.model(**enc.processor(images=im, return_tensors="pt"))
    torch.testing.assert_close(auto, out.pooler_output)
    torch.testing.assert_close(cls, out.last_hidden_state[:, 0])
    torch.testing.assert_close(mean, out.last_hidden_state.mean(1))
    assert enc.dim == 16
    with pytest.raises(ValueError, match="pooling"):
        ImageEncoder(tiny_vit, pooling="max")


def test_no_readable_image_anywhere(tiny_vit, tmp_path):
    (tmp_path / "a").mkdir()
    res = ImageEncoder(tiny_vit).encode_folder(tmp_path)
    assert res.keys == ["a"] and res.features.shape == (1, 16) and not res.has_image.any()
