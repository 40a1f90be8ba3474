"""demo/demo.py and fastpan_d2.engine.predictor: images of any mode and size, folders, globs,
videos, bad paths; the predictor's preprocessing is the evaluation mapper's.

Models are the synthetic configs' with random weights (the demo draws whatever they output; the
sizes, frame counts and file sets asserted here do not depend on what that is)."""
import importlib.util
import logging
import os
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch
from PIL import Image

from fastpan_d2.engine import UserInputError, build_dataset_mapper, load_cfg
from fastpan_d2.engine.predictor import (
    CONFIDENCE_THRESHOLD_KEYS, PanopticPredictor, read_image, set_confidence_threshold, to_rgb8,
)

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DEMO_PY = os.path.join(REPO, "demo", "demo.py")
SYNTHETIC = os.path.join(REPO, "configs", "Synthetic-PanopticSegmentation")
NETWORKS = ("epsnet", "fpsnet", "lpsnet", "single_shot", "yoso", "panoptic_fpn")
MODEL_ZOO_PFPN = "COCO-PanopticSegmentation/panoptic_fpn_R_50_1x.yaml"


def synthetic(name):
    return os.path.join(SYNTHETIC, f"{name}.yaml")


@pytest.fixture(scope="module")
def demo_cli():
    spec = importlib.util.spec_from_file_location("fastpan_demo_cli", DEMO_PY)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def demo_log(demo_cli):
    """The demo logger's messages (detectron2's setup_logger does not propagate to caplog)."""
    records = []
    handler = logging.Handler()
    handler.emit = lambda record: records.append(record.getMessage())
    logger = logging.getLogger("fastpan_d2.demo")
    logger.addHandler(handler)
    yield records
    logger.removeHandler(handler)


def run_demo(demo_cli, *argv):
    torch.manual_seed(0)
    return demo_cli.main(list(argv))


def user_error(demo_cli, capsys, *argv):
    """Run the demo expecting exit code 2; returns the one stderr line."""
    with pytest.raises(SystemExit) as exc:
        run_demo(demo_cli, *argv)
    assert exc.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    return lines[0]


def random_rgb(h, w, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def write_video(path, frames, fps=10.0):
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h), True)
    assert writer.isOpened()
    for f in frames:
        writer.write(f)
    writer.release()


def read_video(path):
    cap = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        frames.append(f)
    fps = cap.get(cv2.CAP_PROP_FPS)
    cap.release()
    return frames, fps


# ------------------------------------------------------------------------------------ image reading
def test_to_rgb8_known_values():
    grey = np.array([[0, 128, 255]], np.uint8)
    assert to_rgb8(grey).tolist() == [[[0] * 3, [128] * 3, [255] * 3]]
    sixteen = np.array([[0, 257, 32896, 65535]], np.uint16)  # x / 257: 0, 1, 128, 255
    assert to_rgb8(sixteen)[0, :, 0].tolist() == [0, 1, 128, 255]
    assert to_rgb8(np.array([[70000, -5]], np.int32))[0, :, 0].tolist() == [255, 0]  # clipped
    assert to_rgb8(np.array([[0.0, 0.5, 1.0]], np.float32))[0, :, 1].tolist() == [0, 128, 255]
    assert to_rgb8(np.array([[0.0, 100.0, 300.0]], np.float32))[0, :, 1].tolist() == [0, 100, 255]
    # alpha: opaque keeps the colour, transparent is the white background, half is halfway
    rgba = np.array([[[200, 10, 0, 255], [200, 10, 0, 0], [200, 10, 0, 128]]], np.uint8)
    out = to_rgb8(rgba)
    assert out[0, 0].tolist() == [200, 10, 0]
    assert out[0, 1].tolist() == [255, 255, 255]
    assert out[0, 2].tolist() == [round(200 * 128 / 255 + 255 * 127 / 255), round(10 * 128 / 255 + 255 * 127 / 255),
                                   round(255 * 127 / 255)]
    grey_alpha = np.array([[[0, 255], [0, 0]]], np.uint8)
    assert to_rgb8(grey_alpha)[0].tolist() == [[0, 0, 0], [255, 255, 255]]
    assert to_rgb8(np.zeros((2, 3, 1), np.uint8)).shape == (2, 3, 3)


def test_read_image_modes(tmp_path):
    colour = np.zeros((5, 7, 3), np.uint8)
    colour[..., 0] = 200  # red in RGB
    Image.fromarray(colour).save(tmp_path / "rgb.png")
    Image.fromarray(colour[..., 0]).save(tmp_path / "grey.png")
    rgba = np.dstack([colour, np.full((5, 7), 255, np.uint8)])
    rgba[0, 0, 3] = 0
    Image.fromarray(rgba).save(tmp_path / "rgba.png")
    cv2.imwrite(str(tmp_path / "grey16.png"), np.full((5, 7), 65535, np.uint16))  # Pillow: mode I;16
    cv2.imwrite(str(tmp_path / "bgr16.png"), np.dstack([np.zeros((5, 7), np.uint16)] * 2 + [np.full((5, 7), 51400, np.uint16)]))
    palette = Image.fromarray(colour).convert("P")
    palette.info["transparency"] = 0
    palette.save(tmp_path / "palette.png", transparency=0)
    Image.fromarray(colour).convert("CMYK").save(tmp_path / "cmyk.jpg", quality=100)

    assert read_image(str(tmp_path / "rgb.png")).tolist() == colour.tolist()
    assert read_image(str(tmp_path / "rgb.png"), "BGR").tolist() == colour[..., ::-1].tolist()
    assert (read_image(str(tmp_path / "grey.png")) == 200).all()
    out = read_image(str(tmp_path / "rgba.png"))
    assert out[0, 0].tolist() == [255, 255, 255] and out[1, 1].tolist() == [200, 0, 0]
    assert (read_image(str(tmp_path / "grey16.png")) == 255).all()
    assert read_image(str(tmp_path / "bgr16.png"))[2, 3].tolist() == [200, 0, 0]  # 51400 / 257 = 200, red
    assert read_image(str(tmp_path / "palette.png")).shape == (5, 7, 3)
    cmyk = read_image(str(tmp_path / "cmyk.jpg")).astype(int)
    assert np.abs(cmyk - colour).max() <= 8  # JPEG
    for path in (tmp_path / "missing.png", tmp_path / "not_an_image.png"):
        if path.name.startswith("not"):
            path.write_text("hello")
        with pytest.raises(UserInputError, match=str(path)):
            read_image(str(path))


# ------------------------------------------------------------------------------------ predictor
@pytest.mark.parametrize("config, expected_hw", [
    (synthetic("single_shot"), (85, 128)),  # ResizeShortestEdge, MAX_SIZE_TEST 128
    (synthetic("panoptic_fpn"), (85, 128)),  # detectron2's DatasetMapper
    (synthetic("epsnet"), (128, 128)),  # FixedSize, aspect ratio not kept
    (os.path.join(REPO, "configs", "COCO-PanopticSegmentation", "epsnet_R_50_550.yaml"), (550, 550)),
    (MODEL_ZOO_PFPN, (800, 1200)),  # INPUT.FORMAT BGR
], ids=["single_shot", "panoptic_fpn", "epsnet", "epsnet_coco_550", "model_zoo_panoptic_fpn"])
def test_predictor_input_is_the_evaluation_mappers(tmp_path, config, expected_hw):
    """The predictor resizes and orders channels exactly as evaluation does (the config's test
    mapper reading the file), for both resize recipes and both channel orders."""
    from fastpan_d2.engine.predictor import resolve_config_file

    cfg = load_cfg(resolve_config_file(config), ["MODEL.WEIGHTS", "", "MODEL.DEVICE", "cpu"])
    path = str(tmp_path / "photo.png")
    Image.fromarray(random_rgb(200, 300)).save(path)
    predictor = PanopticPredictor(cfg)
    got = predictor.preprocess(read_image(path, "RGB"), "RGB")
    want = build_dataset_mapper(cfg, is_train=False)({"file_name": path, "height": 200, "width": 300})
    assert tuple(got["image"].shape[1:]) == expected_hw
    assert (got["height"], got["width"]) == (200, 300)
    assert torch.equal(got["image"].to(want["image"].dtype), want["image"])
    # BGR input (cv2.imread, video frames) gives the same tensor
    assert torch.equal(predictor.preprocess(read_image(path, "BGR"))["image"], got["image"])


def test_confidence_threshold_keys_exist_and_are_set():
    for meta_arch, keys in CONFIDENCE_THRESHOLD_KEYS.items():
        cfg = load_cfg(None, ["MODEL.META_ARCHITECTURE", meta_arch])
        assert set_confidence_threshold(cfg, 0.625) == keys
        for key in keys:
            node = cfg
            for part in key.split("."):
                node = getattr(node, part)
            assert node == 0.625, key
    with pytest.raises(UserInputError, match="GeneralizedRCNN"):
        set_confidence_threshold(load_cfg(None, ["MODEL.META_ARCHITECTURE", "GeneralizedRCNN"]), 0.5)
    with pytest.raises(UserInputError, match=r"\[0, 1\]"):
        set_confidence_threshold(load_cfg(synthetic("yoso")), 1.5)


def test_confidence_threshold_reaches_the_model():
    """YOSO (random weights): threshold 0 keeps queries as segments, 1 keeps none."""
    image = random_rgb(60, 80)
    counts = []
    for t in (0.0, 1.0):
        cfg = load_cfg(synthetic("yoso"))
        set_confidence_threshold(cfg, t)
        torch.manual_seed(0)
        counts.append(len(PanopticPredictor(cfg)(image)["panoptic_seg"][1]))
    assert counts[0] > 0 and counts[1] == 0


# ------------------------------------------------------------------------------------ demo: images
@pytest.mark.parametrize("net", NETWORKS)
def test_every_network_draws_a_png_at_the_input_size(demo_cli, demo_log, tmp_path, net):
    Image.fromarray(random_rgb(45, 77)).save(tmp_path / "odd.jpg")
    out = tmp_path / "drawn.png"
    run_demo(demo_cli, "--config-file", synthetic(net), "--input", str(tmp_path / "odd.jpg"), "--output", str(out))
    assert Image.open(out).size == (77, 45)
    assert any("odd.jpg: " in m and "inference" in m and "drawing" in m for m in demo_log)


def test_odd_sizes_and_modes_give_pngs_of_the_input_size(demo_cli, demo_log, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    Image.fromarray(random_rgb(37, 53)).save(folder / "rgb.jpg")
    Image.fromarray(random_rgb(101, 67)[..., 0]).save(folder / "grey.png")
    Image.fromarray(np.dstack([random_rgb(64, 45), np.full((64, 45), 128, np.uint8)])).save(folder / "rgba.png")
    cv2.imwrite(str(folder / "sixteen.png"), (np.arange(50 * 71).reshape(50, 71) * 18).astype(np.uint16))
    Image.fromarray(random_rgb(3, 200)).save(folder / "strip.bmp")
    (folder / "notes.txt").write_text("not an image, not picked up by a folder input")
    out = tmp_path / "out"
    run_demo(demo_cli, "--config-file", synthetic("single_shot"), "--input", str(folder), "--output", str(out))
    sizes = {p: Image.open(out / p).size for p in sorted(os.listdir(out))}
    assert sizes == {"grey.png": (67, 101), "rgb.png": (53, 37), "rgba.png": (45, 64),
                     "sixteen.png": (71, 50), "strip.png": (200, 3)}
    assert all(Image.open(out / p).mode == "RGB" for p in sizes)
    per_image = [m for m in demo_log if ": " in m and "inference" in m and "drawing" in m and "median" not in m]
    assert len(per_image) == 5
    assert any(m.startswith("5 images: inference median") for m in demo_log)


def test_globs_files_and_folders_give_one_output_each(demo_cli, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    for i in range(3):
        Image.fromarray(random_rgb(30 + i, 40, seed=i)).save(a / f"img{i}.png")
    Image.fromarray(random_rgb(20, 20)).save(a / "other.jpg")
    Image.fromarray(random_rgb(25, 35)).save(b / "single.jpg")
    out = tmp_path / "out"
    run_demo(demo_cli, "--config-file", synthetic("fpsnet"), "--input", str(a / "img*.png"), str(b),
             "--output", str(out) + "/")
    assert sorted(os.listdir(out)) == ["img0.png", "img1.png", "img2.png", "single.png"]
    assert [Image.open(out / f"img{i}.png").size for i in range(3)] == [(40, 30), (40, 31), (40, 32)]


# ------------------------------------------------------------------------------------ demo: video
def test_video_gives_a_video_of_the_same_frames_and_size(demo_cli, demo_log, tmp_path):
    frames = [random_rgb(52, 76, seed=i)[..., ::-1].copy() for i in range(7)]
    write_video(tmp_path / "clip.mp4", frames, fps=12.0)
    assert len(read_video(tmp_path / "clip.mp4")[0]) == 7
    out_dir = tmp_path / "out"
    run_demo(demo_cli, "--config-file", synthetic("lpsnet"), "--video-input", str(tmp_path / "clip.mp4"),
             "--output", str(out_dir))
    drawn, fps = read_video(out_dir / "clip.mp4")
    assert len(drawn) == 7 and drawn[0].shape == (52, 76, 3) and fps == pytest.approx(12.0)
    assert os.listdir(out_dir) == ["clip.mp4"]  # no partial file left
    assert any(m.startswith("7 frames: inference median") and "drawing median" in m for m in demo_log)
    # a named .avi file works too
    run_demo(demo_cli, "--config-file", synthetic("yoso"), "--video-input", str(tmp_path / "clip.mp4"),
             "--output", str(tmp_path / "named.avi"))
    drawn, _ = read_video(tmp_path / "named.avi")
    assert len(drawn) == 7 and drawn[0].shape == (52, 76, 3)


# ------------------------------------------------------------------------------------ demo: bad input
def test_bad_paths_are_one_error_and_nothing_is_lost(demo_cli, capsys, tmp_path):
    cfg = synthetic("single_shot")
    photo = tmp_path / "photo.png"
    Image.fromarray(random_rgb(20, 30)).save(photo)
    out = tmp_path / "out"
    out.mkdir()
    (out / "photo.png").write_bytes(b"an earlier result")
    a_file = tmp_path / "results.txt"
    a_file.write_text("keep me")
    empty = tmp_path / "empty"
    empty.mkdir()
    (tmp_path / "fake.mp4").write_text("not a video")
    (tmp_path / "fake.jpg").write_text("not an image")
    cases = [
        (["--input", str(tmp_path / "missing.jpg"), "--output", str(out)], "input image does not exist"),
        (["--input", str(tmp_path / "*.jpeg"), "--output", str(out)], "no file matches"),
        (["--input", str(empty), "--output", str(out)], "input folder has no image"),
        (["--input", str(tmp_path / "fake.jpg"), "--output", str(out)], "not an image"),
        (["--input", str(photo), str(photo), "--output", str(a_file)], "is a file"),
        (["--input", str(photo), "--output", str(a_file / "sub") + "/"], "is a file"),
        (["--input", str(photo), "--output", str(out / "x.txt")], "not an image file name"),
        (["--input", str(photo), "--output", str(photo)], "would overwrite the input"),
        (["--video-input", str(tmp_path / "missing.mp4"), "--output", str(out)], "input video does not exist"),
        (["--video-input", str(tmp_path / "fake.mp4"), "--output", str(out)], "cannot read"),
        (["--video-input", str(tmp_path / "fake.mp4"), "--output", str(a_file)], "not a video file name"),
        (["--webcam", "99", "--output", str(out)], "cannot read webcam99"),  # the webcam path up to capture
        (["--input", str(photo), "--output", str(out), "--opts", "MODEL.WEIGHTS", str(tmp_path / "no.pth")],
         "MODEL.WEIGHTS does not exist"),
        (["--input", str(photo), "--output", str(out), "--opts", "MODEL.NO_SUCH_KEY", "1"], "unknown config key"),
    ]
    for argv, message in cases:
        line = user_error(demo_cli, capsys, "--config-file", cfg, *argv)
        assert message in line, (argv, line)
    assert (out / "photo.png").read_bytes() == b"an earlier result"
    assert sorted(os.listdir(out)) == ["photo.png"]
    assert a_file.read_text() == "keep me"
    assert "error: config file does not exist" in user_error(
        demo_cli, capsys, "--config-file", str(tmp_path / "none.yaml"), "--input", str(photo), "--output", str(out))


def test_cli_exit_code_and_single_error_line(tmp_path):
    proc = subprocess.run(
        [sys.executable, DEMO_PY, "--config-file", synthetic("epsnet"), "--input", str(tmp_path / "nope.png"),
         "--output", str(tmp_path / "out")],
        cwd=REPO, capture_output=True, text=True, env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [f"error: input image does not exist: {tmp_path / 'nope.png'}"]
    assert not (tmp_path / "out").exists()
