#!/usr/bin/env python
"""Run a panoptic model on your photos, a video or a webcam and draw its output (detectron2's demo).

    python demo/demo.py --config-file CONFIG --input photo.jpg 'more/*.png' folder/ --output out/ \\
        [--confidence-threshold 0.5] [--opts MODEL.WEIGHTS model_final.pth KEY VALUE ...]
    python demo/demo.py --config-file CONFIG --video-input clip.mp4 --output clip_panoptic.mp4 --opts ...
    python demo/demo.py --config-file CONFIG --webcam [INDEX] [--output webcam.mp4] --opts ...

CONFIG is a config file, or a detectron2 model-zoo name (COCO-PanopticSegmentation/panoptic_fpn_R_50_1x.yaml).
Every fastpan_d2 network and detectron2's Panoptic FPN work. Images are resized as the config's
test time does (``INPUT.AUGMENTATION``), drawn with detectron2's Visualizer (videos: VideoVisualizer,
which keeps an instance's colour from frame to frame) and written at the input's size: one PNG per
image (``--output`` a folder, or a file name for a single image) or one video. Without ``--output``
the result is shown in an OpenCV window (ESC quits), which needs an OpenCV with a GUI.

``--confidence-threshold`` sets the network's own test-time score threshold(s) (see
``fastpan_d2.engine.predictor.CONFIDENCE_THRESHOLD_KEYS``); without it the config's values stay.

The log has one line per image with the inference time (resize, model, post-processing) and,
separately, the drawing time; videos show both in the progress bar and end with a summary.
A bad path or config ends the run with one ``error:`` line and exit code 2, before anything is
written; outputs are written to a temporary name and renamed, so none is ever left half-written.
"""
import argparse
import glob
import logging
import os
import statistics
import sys
import time

import numpy as np
import torch
import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import fastpan_d2  # noqa: E402,F401
from fastpan_d2.engine import UserInputError, exit_on_user_error, load_cfg  # noqa: E402
from fastpan_d2.engine.predictor import (  # noqa: E402
    PanopticPredictor, image_is_readable, read_image, resolve_config_file, set_confidence_threshold,
)

logger = logging.getLogger("fastpan_d2.demo")

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".ppm", ".pgm", ".pbm")
VIDEO_FOURCC = {".mp4": "mp4v", ".m4v": "mp4v", ".mov": "mp4v", ".mkv": "mp4v", ".avi": "MJPG"}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config-file", required=True, metavar="FILE", help="config file or model-zoo config name")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--input", nargs="+", metavar="PATH", help="images, folders of images or glob patterns")
    source.add_argument("--video-input", metavar="FILE", help="a video file")
    source.add_argument("--webcam", nargs="?", type=int, const=0, metavar="INDEX", help="camera index (default 0)")
    p.add_argument("--output", metavar="PATH", help="file or folder for the drawings; none: show in a window")
    p.add_argument("--confidence-threshold", type=float, default=None,
                   help="score threshold for thing segments (default: the config's)")
    p.add_argument("--opts", default=[], nargs=argparse.REMAINDER, help="config overrides: KEY VALUE ...")
    return p.parse_args(argv)


# ------------------------------------------------------------------------------------ paths
def expand_inputs(items):
    """Files, folders (their images, sorted) and glob patterns -> image paths, in order given."""
    paths = []
    for item in items:
        item = os.path.expanduser(item)
        if os.path.isdir(item):
            found = sorted(os.path.join(item, f) for f in os.listdir(item) if f.lower().endswith(IMAGE_EXTENSIONS))
            if not found:
                raise UserInputError(f"input folder has no image ({', '.join(IMAGE_EXTENSIONS)}): {item}")
        elif glob.has_magic(item):
            found = sorted(f for f in glob.glob(item) if os.path.isfile(f))
            if not found:
                raise UserInputError(f"no file matches the input pattern: {item}")
        elif os.path.isfile(item):
            found = [item]
        else:
            raise UserInputError(f"input image does not exist: {item}")
        for path in found:
            if not image_is_readable(path):
                raise UserInputError(f"input is not an image Pillow or OpenCV can read: {path}")
        paths.extend(found)
    return paths


def _is_folder_target(output):
    return os.path.isdir(output) or output.endswith(("/", os.sep)) or not os.path.splitext(output)[1]


def _check_folder(folder, what):
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise UserInputError(f"--output {folder} is a file, but it must be a folder for {what}")
    parent = folder
    while parent and not os.path.exists(parent):
        parent = os.path.dirname(parent.rstrip(os.sep))
    if parent and not os.path.isdir(parent):
        raise UserInputError(f"--output {folder}: {parent} is a file, not a folder")


def _check_not_an_input(out, inputs):
    real = {os.path.realpath(p): p for p in inputs}
    if os.path.realpath(out) in real:
        raise UserInputError(f"output {out} would overwrite the input {real[os.path.realpath(out)]}")


def plan_image_outputs(inputs, output):
    """One output path per input image. A folder (existing, ending in '/', without an extension,
    or asked for more than one image) gets ``<folder>/<input name>.png``; a single image may name
    its output file (.png, .jpg, ...). None: no files (shown in a window)."""
    if output is None:
        return [None] * len(inputs)
    output = os.path.expanduser(output)
    if len(inputs) > 1 or _is_folder_target(output):
        _check_folder(output, f"the drawings of {len(inputs)} image(s)")
        outs = [os.path.join(output, os.path.splitext(os.path.basename(p))[0] + ".png") for p in inputs]
        seen = {}
        for path, out in zip(inputs, outs):
            if out in seen:
                raise UserInputError(f"inputs {seen[out]} and {path} would both be written to {out}; "
                                     "give them distinct names or run them separately")
            seen[out] = path
    else:
        if not output.lower().endswith(IMAGE_EXTENSIONS):
            raise UserInputError(f"--output {output}: not an image file name ({', '.join(IMAGE_EXTENSIONS)}) "
                                 "and not a folder")
        _check_folder(os.path.dirname(output) or ".", "the drawing")
        outs = [output]
    for out in outs:
        _check_not_an_input(out, inputs)
    return outs


def plan_video_output(output, source_name, inputs=()):
    """The output video path: ``--output`` itself (.mp4, .avi, .mkv, ...) or ``<folder>/<name>.mp4``."""
    if output is None:
        return None
    output = os.path.expanduser(output)
    if _is_folder_target(output):
        _check_folder(output, "the video")
        output = os.path.join(output, os.path.splitext(os.path.basename(source_name))[0] + ".mp4")
    elif os.path.splitext(output)[1].lower() not in VIDEO_FOURCC:
        raise UserInputError(f"--output {output}: not a video file name ({', '.join(VIDEO_FOURCC)}) and not a folder")
    else:
        _check_folder(os.path.dirname(output) or ".", "the video")
    _check_not_an_input(output, inputs)
    return output


def _partial_name(path):
    """A temporary name next to ``path`` with the same extension (OpenCV picks the container by it)."""
    folder, name = os.path.split(path)
    return os.path.join(folder, f".{os.getpid()}.partial.{name}")


def check_window_support():
    import cv2

    gui = [line.split(":", 1)[1].strip() for line in cv2.getBuildInformation().splitlines() if line.strip().startswith("GUI:")]
    if gui and gui[0].upper() == "NONE":
        raise UserInputError("no --output given and this OpenCV cannot open a window (GUI: NONE, e.g. "
                             "opencv-python-headless): give --output FILE or FOLDER")


# ------------------------------------------------------------------------------------ drawing
class Demo:
    """The predictor and its drawing, timed separately."""

    def __init__(self, cfg):
        from detectron2.utils.visualizer import ColorMode

        self.predictor = PanopticPredictor(cfg)
        self.metadata = self.predictor.metadata
        self.instance_mode = ColorMode.IMAGE  # as detectron2's demo
        self.cuda = torch.device(cfg.MODEL.DEVICE).type == "cuda"

    def _clock(self):
        if self.cuda:
            torch.cuda.synchronize()
        return time.perf_counter()

    def predict(self, image, image_format):
        """-> (panoptic id map on the CPU, segments_info, seconds)."""
        start = self._clock()
        predictions = self.predictor(image, image_format)
        if "panoptic_seg" not in predictions:
            raise UserInputError(f"{self.predictor.cfg.MODEL.META_ARCHITECTURE} returns no panoptic_seg "
                                 f"(only {', '.join(predictions)}); the demo draws panoptic output")
        panoptic_seg, segments_info = predictions["panoptic_seg"]
        panoptic_seg = panoptic_seg.to("cpu")
        return panoptic_seg, segments_info, self._clock() - start

    def draw_image(self, image_rgb, panoptic_seg, segments_info):
        from detectron2.utils.visualizer import Visualizer

        start = time.perf_counter()
        vis = Visualizer(image_rgb, self.metadata, instance_mode=self.instance_mode)
        drawn = vis.draw_panoptic_seg(panoptic_seg, segments_info).get_image()
        return drawn, time.perf_counter() - start


def describe(segments_info):
    if segments_info is None:  # ids are category ids (detectron2's convention for this case)
        return "a panoptic map without segments_info"
    things = sum(bool(s.get("isthing")) for s in segments_info)
    return f"{len(segments_info)} segments ({things} things, {len(segments_info) - things} stuff)"


def summarize(what, infer_s, draw_s, wall_s=None):
    line = (f"{len(infer_s)} {what}: inference median {1e3 * statistics.median(infer_s):.1f} ms "
            f"({1 / statistics.median(infer_s):.1f} FPS), drawing median {1e3 * statistics.median(draw_s):.1f} ms")
    if wall_s is not None:
        line += f", end to end {len(infer_s) / wall_s:.1f} FPS (reading, inference, drawing, writing)"
    logger.info(line + "; the first includes the warm-up")


def save_image(array_rgb, path):
    from PIL import Image

    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    partial = _partial_name(path)
    try:
        Image.fromarray(array_rgb).save(partial)  # format from the extension
        os.replace(partial, path)
    finally:
        if os.path.exists(partial):
            os.remove(partial)


def show(window, array_bgr):
    """Show a frame; True if the user pressed ESC."""
    import cv2

    cv2.imshow(window, array_bgr)
    return cv2.waitKey(1) == 27


# ------------------------------------------------------------------------------------ runs
def run_images(demo, inputs, outputs):
    infer_s, draw_s = [], []
    for path, out in tqdm.tqdm(list(zip(inputs, outputs)), desc="images", unit="image"):
        image = read_image(path, "RGB")
        seg, info, t_infer = demo.predict(image, "RGB")
        drawn, t_draw = demo.draw_image(image, seg, info)
        infer_s.append(t_infer)
        draw_s.append(t_draw)
        logger.info("%s: %s, inference %.1f ms, drawing %.1f ms", path, describe(info), 1e3 * t_infer, 1e3 * t_draw)
        if out is not None:
            save_image(drawn, out)
        elif show("fastpan_d2", drawn[:, :, ::-1]):
            break
    summarize("images", infer_s, draw_s)
    return outputs


def open_capture(source, name):
    """An opened ``cv2.VideoCapture`` and its first frame, or a ``UserInputError`` naming ``name``."""
    import cv2

    capture = cv2.VideoCapture(source)
    ok, frame = capture.read() if capture.isOpened() else (False, None)
    if not ok:
        capture.release()
        raise UserInputError(f"cannot read {name}: not a video OpenCV can decode, or no frame")
    return capture, frame


def run_frames(demo, capture, first_frame, name, output):
    """Video and webcam alike: BGR frames -> VideoVisualizer -> a video file or a window."""
    import cv2
    from detectron2.utils.video_visualizer import VideoVisualizer

    fps = capture.get(cv2.CAP_PROP_FPS)
    if not fps or not np.isfinite(fps) or fps <= 0:
        fps = 30.0
    total = int(capture.get(cv2.CAP_PROP_FRAME_COUNT)) or None
    height, width = first_frame.shape[:2]
    visualizer = VideoVisualizer(demo.metadata, demo.instance_mode)
    writer = partial = None
    if output is not None:
        os.makedirs(os.path.dirname(output) or ".", exist_ok=True)
        partial = _partial_name(output)
        fourcc = VIDEO_FOURCC[os.path.splitext(output)[1].lower()]
        writer = cv2.VideoWriter(partial, cv2.VideoWriter_fourcc(*fourcc), fps, (width, height), True)
        if not writer.isOpened():
            raise UserInputError(f"OpenCV cannot write a video to {output} (codec {fourcc})")
    infer_s, draw_s, done = [], [], False
    start = time.perf_counter()
    frame = first_frame
    try:
        with tqdm.tqdm(total=total if total and total > 0 else None, desc=name, unit="frame") as bar:
            while frame is not None:
                seg, info, t_infer = demo.predict(frame, "BGR")
                t0 = time.perf_counter()
                drawn = visualizer.draw_panoptic_seg_predictions(frame[:, :, ::-1], seg, info).get_image()
                drawn_bgr = np.ascontiguousarray(drawn[:, :, ::-1])
                draw_s.append(time.perf_counter() - t0)
                infer_s.append(t_infer)
                bar.set_postfix(inference_ms=f"{1e3 * t_infer:.0f}", drawing_ms=f"{1e3 * draw_s[-1]:.0f}")
                bar.update()
                if writer is not None:
                    writer.write(drawn_bgr)
                elif show(name, drawn_bgr):
                    break
                ok, frame = capture.read()
                frame = frame if ok else None
        done = True
    except KeyboardInterrupt:  # webcam: Ctrl-C ends the recording; keep what was recorded
        logger.info("interrupted after %d frames", len(infer_s))
        done = True
    finally:
        capture.release()
        if writer is not None:
            writer.release()
            if done:
                os.replace(partial, output)
            elif os.path.exists(partial):
                os.remove(partial)
    summarize("frames", infer_s, draw_s, wall_s=time.perf_counter() - start)
    if output is not None:
        logger.info("wrote %s (%d frames, %dx%d, %.1f fps)", output, len(infer_s), width, height, fps)
    return output


def build_cfg(args):
    cfg = load_cfg(resolve_config_file(args.config_file), args.opts)
    if args.confidence_threshold is not None:
        keys = set_confidence_threshold(cfg, args.confidence_threshold)
        logger.info("--confidence-threshold %s sets %s", args.confidence_threshold, ", ".join(keys))
    if torch.device(cfg.MODEL.DEVICE).type == "cuda" and not torch.cuda.is_available():
        logger.warning("MODEL.DEVICE is %s but CUDA is not available: running on the CPU", cfg.MODEL.DEVICE)
        cfg.MODEL.DEVICE = "cpu"
    cfg.freeze()
    return cfg


def run(args):
    from detectron2.utils.logger import setup_logger

    setup_logger(name="fastpan_d2", abbrev_name="fastpan")
    setup_logger(name="detectron2", abbrev_name="d2")
    # Everything the user named is checked before the model is built and anything is written.
    if args.input:
        inputs = expand_inputs(args.input)
        outputs = plan_image_outputs(inputs, args.output)
    elif args.video_input:
        if not os.path.isfile(args.video_input):
            raise UserInputError(f"input video does not exist: {args.video_input}")
        output = plan_video_output(args.output, args.video_input, [args.video_input])
    else:
        output = plan_video_output(args.output, f"webcam{args.webcam}")
    if args.output is None:
        check_window_support()
    cfg = build_cfg(args)
    if args.input:
        with logging_redirect_tqdm([logging.getLogger("fastpan_d2")]):  # log lines above the bar
            return run_images(Demo(cfg), inputs, outputs)
    # Video and webcam share everything but the source.
    name = args.video_input or f"webcam{args.webcam}"
    capture, first_frame = open_capture(args.video_input or args.webcam, name)
    try:
        demo = Demo(cfg)
    except BaseException:
        capture.release()
        raise
    with logging_redirect_tqdm([logging.getLogger("fastpan_d2")]):
        return run_frames(demo, capture, first_frame, name, output)


def main(argv=None):
    return exit_on_user_error(run, parse_args(argv))


if __name__ == "__main__":
    main()
