"""Evaluation benchmarks read in their published layouts (docs/method.md#evaluation).

Video benchmarks give ``VideoSequence``s: every frame of a video, and for each
annotated frame the mask file(s) that annotate it (several files = several
objects, merged into one foreground by ``load_ground_truth``, as in the paper).
Saliency benchmarks give ``SaliencyItem``s: an image and its mask.

Layouts (ROOT is what the user passes):
- davis2016: ROOT/JPEGImages/<res>/<seq>/00000.jpg, ROOT/Annotations/<res>/<seq>/00000.png,
  ROOT/ImageSets/<res>/<split>.txt (or ImageSets/2016/, as in DAVIS 2017); every frame annotated.
- segtrackv2: ROOT/JPEGImages/<seq>/*.png|jpg|bmp, ROOT/GroundTruth/<seq>/*.png|bmp, or
  GroundTruth/<seq>/<object>/ where a sequence has several objects; ImageSets/all.txt if present.
  Masks pair with frames by file stem, else by sorted order where the counts agree.
- fbms59: ROOT/{Trainingset,Testset}/<seq>/*.jpg, annotations every few frames in
  <seq>/GroundTruth/, paired with frames by the frame number in their names (the <seq>Def.dat
  description and the *PROB* maps are not read; see ``read_mask`` for the label colours).
- video: ROOT/frames/<seq>/*, ROOT/masks/<seq>/* (or masks/<seq>/<object>/*), matched by name.
- duts: ROOT/DUTS-TE-Image/*.jpg, ROOT/DUTS-TE-Mask/*.png (ROOT may also hold DUTS-TE/).
- saliency: an images folder and a masks folder matched by name (ECSSD, SOD, DUT-OMRON, HKU-IS).
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from ..data.sources import davis_resolution, davis_split
from ..data.video import IMAGE_SUFFIXES, DataError, Video, grey8, natural_key

logger = logging.getLogger(__name__)

FRAME_SUFFIXES = IMAGE_SUFFIXES + (".bmp",)
MASK_SUFFIXES = (".png", ".bmp", ".jpg", ".jpeg")
FBMS_MASK_SUFFIXES = (".pgm", ".ppm", ".png")
LOSSY_SUFFIXES = (".jpg", ".jpeg")
DAVIS_RESOLUTION = "480p"  # where there are several, DAVIS 2016 is scored at 480p
SALIENCY_THRESHOLD = 128  # mask > 128 of 255 is foreground, as in py_sod_metrics.prepare_data

IMAGES_FOLDER = re.compile(r"(.*[-_ ])?(images?|imgs?)", re.IGNORECASE)
MASKS_FOLDER = re.compile(r"(.*[-_ ])?(masks?|gts?|ground_?truth(_mask)?)", re.IGNORECASE)


class BenchmarkError(DataError):
    """A benchmark that cannot be found, is empty, or whose annotations match no frame."""


@dataclass(frozen=True)
class Benchmark:
    kind: str  # "video" or "saliency"
    description: str
    default_split: str | None = None


BENCHMARKS = {
    "davis2016": Benchmark(
        "video", "DAVIS 2016: JPEGImages/<res>/<seq>, Annotations/<res>/<seq>, ImageSets", "val"
    ),
    "segtrackv2": Benchmark(
        "video", "SegTrackv2: JPEGImages/<seq>, GroundTruth/<seq>[/<object>], objects merged", "all"
    ),
    "fbms59": Benchmark(
        "video", "FBMS-59: {Trainingset,Testset}/<seq>/*.jpg, sparse GroundTruth/*.pgm|ppm|png", "all"
    ),
    "video": Benchmark("video", "any videos: frames/<seq>/*, masks/<seq>/* matched by name"),
    "duts": Benchmark("saliency", "DUTS-TE: DUTS-TE-Image/*.jpg, DUTS-TE-Mask/*.png"),
    "saliency": Benchmark("saliency", "any images/ and masks/ folders matched by name (ECSSD, SOD, ...)"),
}


@dataclass
class VideoSequence(Video):
    """A benchmark video: ``frames`` are all its frame paths, ``annotations`` maps the index of
    each annotated frame to the mask file(s) annotating it (one per object)."""

    annotations: dict[int, list[Path]] = field(default_factory=dict)


@dataclass(frozen=True)
class SaliencyItem:
    name: str
    image: Path
    mask: Path


def load_video_benchmark(
    name: str, root: str | Path, split: str | None = None, resolution: str | None = None
) -> list[VideoSequence]:
    """The sequences of video benchmark ``name`` under ``root``, each with at least one annotation.

    ``split``: davis2016 an ImageSets list (default val); segtrackv2 an ImageSets list (default
    all.txt if present, else every sequence); fbms59 "train", "test" or "all" (default: both sets,
    the 59 videos of the paper). ``resolution``: davis2016 only (default: the only folder, or 480p).
    """
    _check_kind(name, "video")
    if resolution is not None and name != "davis2016":
        raise BenchmarkError(f"a resolution applies to davis2016 only, not to {name}")
    if split is not None and name == "video":
        raise BenchmarkError("the generic video benchmark has no splits")
    root = _existing_folder(root, name)
    if name == "davis2016":
        sequences = _davis(root, split, resolution)
    elif name == "segtrackv2":
        sequences = _segtrackv2(root, split)
    elif name == "fbms59":
        sequences = _fbms(root, split)
    else:
        sequences = _generic_video(root)
    if not sequences:
        raise BenchmarkError(f"no sequences found for {name} in {root}")
    return sequences


def load_saliency_benchmark(
    name: str,
    root: str | Path | None = None,
    images: str | Path | None = None,
    masks: str | Path | None = None,
) -> list[SaliencyItem]:
    """The items of saliency benchmark ``name``: images paired with masks by file stem.

    ``images`` and ``masks`` name the two folders explicitly (then ``root`` may be None);
    otherwise they are found under ``root`` (see the module docstring).
    """
    _check_kind(name, "saliency")
    if images is None or masks is None:
        root = _existing_folder(root, name)
        images, masks = _duts_folders(root) if name == "duts" else _saliency_folders(root)
    images, masks = _existing_folder(images, name), _existing_folder(masks, name)
    mask_by_stem = {path.stem: path for path in _list_images(masks, MASK_SUFFIXES)}
    items, missing = [], []
    for image in _list_images(images, FRAME_SUFFIXES):
        if image.stem in mask_by_stem:
            items.append(SaliencyItem(image.stem, image, mask_by_stem.pop(image.stem)))
        else:
            missing.append(image)
    if missing:
        raise BenchmarkError(f"{len(missing)} image(s) without a mask in {masks}, e.g. {missing[0]}")
    if mask_by_stem:
        logger.warning("%d mask(s) in %s have no image; ignored", len(mask_by_stem), masks)
    if not items:
        raise BenchmarkError(f"no images found in {images}")
    return items


def check_saliency_sizes(items: list) -> None:
    """BenchmarkError naming the first mask whose size is not its image's (read from the headers)."""
    for item in items:
        _check_same_size(item.image, item.mask)


def check_sequence_sizes(sequences: list) -> None:
    """BenchmarkError naming the first annotation whose size is not its frame's (read from the headers)."""
    for sequence in sequences:
        for index, masks in sequence.annotations.items():
            for mask in masks:
                _check_same_size(Path(sequence.frames[index]), mask)


def _check_same_size(image: Path, mask: Path) -> None:
    image_size, mask_size = _header_size(image), _header_size(mask)
    if image_size != mask_size:
        hint = " (transposed?)" if mask_size == image_size[::-1] else ""
        raise BenchmarkError(f"{mask}: the mask is {mask_size[0]} x {mask_size[1]} but its image {image} is "
                             f"{image_size[0]} x {image_size[1]}{hint}")


def _header_size(path: Path) -> tuple:
    try:
        with Image.open(path) as image:
            return image.size
    except (OSError, ValueError, SyntaxError) as err:
        raise BenchmarkError(f"cannot read {path}: {err}") from None


def load_ground_truth(sequence: VideoSequence, index: int) -> np.ndarray:
    """The merged foreground of annotated frame ``index``: bool (H, W), any object is foreground."""
    if index not in sequence.annotations:
        raise BenchmarkError(f"frame {index} of sequence '{sequence.name}' is not annotated")
    paths = sequence.annotations[index]
    merged = read_mask(paths[0])
    for path in paths[1:]:
        mask = read_mask(path)
        if mask.shape != merged.shape:
            raise BenchmarkError(f"{path}: mask of size {mask.shape} differs from {paths[0]} {merged.shape}")
        merged |= mask
    return merged


def load_saliency_mask(item: SaliencyItem) -> np.ndarray:
    """The ground truth of a saliency item: bool (H, W), grey level > 128 of 255 (the standard
    saliency toolbox's binarisation, as in py_sod_metrics)."""
    with _open_mask(item.mask) as image:
        try:
            return grey8(image) > SALIENCY_THRESHOLD
        except ValueError as err:
            raise BenchmarkError(f"{item.mask}: {err}") from None


def read_mask(path: str | Path) -> np.ndarray:
    """Foreground of one mask file, bool (H, W): every pixel that is not background.

    Background is value 0 (palette index 0 for palette PNGs, as in DAVIS; black in every channel
    for 3-channel masks such as SegTrackv2's), except:
    - FBMS-59 colour ground truth (.ppm): background is white (255, 255, 255), each object another
      colour; its greyscale ground truth (.pgm) has a black background, each object another grey.
      Sources: the FBMS readers of Yang et al., "Unsupervised moving object detection via
      contextual information separation" (CVPR 2019, github.com/antonilo/unsupervised_detection,
      data/fbms_data_utils.py: in .ppm files white is set to background, in .pgm files non-zero is
      foreground), whose protocol later zero-shot work follows; a second public FBMS reformatting
      script states "background is white" for .ppm and "background is black" for .pgm. Unlike
      Yang et al. we apply no per-sequence grey thresholds (0.1; 0.05 marple7, 0.4 marple2):
      every labelled region is foreground, the objects merged as in the paper.
    - lossy masks (.jpg): grey level >= 128, since compression noise is not an object.
    """
    path = Path(path)
    with _open_mask(path) as image:
        mode = image.mode
        array = np.asarray(image)  # palette images give their indices
    if mode in ("RGBA", "LA", "PA"):
        array = array[..., :-1]
    suffix = path.suffix.lower()
    if suffix == ".ppm":
        foreground = array < 255
    elif suffix in LOSSY_SUFFIXES:
        foreground = array >= 128
    else:
        foreground = array > 0
    return foreground.any(axis=2) if foreground.ndim == 3 else foreground


def _check_kind(name: str, kind: str) -> None:
    if name not in BENCHMARKS or BENCHMARKS[name].kind != kind:
        choices = ", ".join(key for key, benchmark in BENCHMARKS.items() if benchmark.kind == kind)
        raise BenchmarkError(f"unknown {kind} benchmark '{name}' (choices: {choices})")


def _open_mask(path: Path) -> Image.Image:
    try:
        image = Image.open(path)
        image.load()
    except (OSError, ValueError, SyntaxError) as err:
        raise BenchmarkError(f"cannot read mask {path}: {err}") from None
    return image


def _existing_folder(path, name: str) -> Path:
    if path is None:
        raise BenchmarkError(f"no folder given for benchmark {name}")
    path = Path(path).expanduser()
    if not path.is_dir():
        raise BenchmarkError(f"{name} folder not found: {path}")
    return path


def _list_images(folder: Path, suffixes: tuple) -> list:
    """Files with one of ``suffixes`` directly in ``folder``, natural order, hidden ones left out."""
    with os.scandir(folder) as entries:
        paths = [
            Path(e.path)
            for e in entries
            if not e.name.startswith(".") and e.is_file() and Path(e.name).suffix.lower() in suffixes
        ]
    return sorted(paths, key=natural_key)


def _subfolders(folder: Path) -> list:
    return sorted((p for p in folder.iterdir() if p.is_dir() and not p.name.startswith(".")), key=natural_key)


def _frames(folder: Path, suffixes: tuple = FRAME_SUFFIXES) -> list:
    if not folder.is_dir():
        raise BenchmarkError(f"frame folder not found: {folder}")
    frames = _list_images(folder, suffixes)
    if not frames:
        raise BenchmarkError(f"no frames ({', '.join(suffixes)}) in {folder}")
    return frames


def _annotated_sequence(name: str, frames: list, mask_folder: Path, by_order: bool = False) -> VideoSequence:
    """Frames paired with the masks of ``mask_folder``, or of each of its object sub-folders."""
    if not mask_folder.is_dir():
        raise BenchmarkError(f"annotation folder not found: {mask_folder}")
    objects = [folder for folder in _subfolders(mask_folder) if _list_images(folder, MASK_SUFFIXES)]
    annotations = {}
    for folder in objects or [mask_folder]:
        masks = _list_images(folder, MASK_SUFFIXES)
        if not masks:
            raise BenchmarkError(f"no masks ({', '.join(MASK_SUFFIXES)}) in {folder}")
        for index, mask in _match(frames, masks, by_order):
            annotations.setdefault(index, []).append(mask)
    return VideoSequence(name, frames, dict(sorted(annotations.items())))


def _match(frames: list, masks: list, by_order: bool) -> list:
    """(frame index, mask) pairs: by file stem; where stems differ and ``by_order``, by sorted
    order if there are as many masks as frames."""
    index_by_stem = {frame.stem: i for i, frame in enumerate(frames)}
    unmatched = [mask for mask in masks if mask.stem not in index_by_stem]
    if not unmatched:
        return [(index_by_stem[mask.stem], mask) for mask in masks]
    if by_order and len(masks) == len(frames):
        return list(enumerate(masks))
    counts = f"{len(masks)} masks for {len(frames)} frames"
    raise BenchmarkError(f"mask {unmatched[0]} matches no frame of {frames[0].parent} by name ({counts})")


def _davis(root: Path, split: str | None, resolution: str | None) -> list:
    images, annotations = root / "JPEGImages", root / "Annotations"
    resolution = resolution or davis_resolution(images, preferred=DAVIS_RESOLUTION)
    if resolution is None:
        raise BenchmarkError(f"{images} holds sequences, not resolution folders (480p, ...); "
                             "read it as --benchmark video or segtrackv2")
    split = split or BENCHMARKS["davis2016"].default_split
    list_path = _davis_list(root, resolution, split)
    sequences = []
    for name in davis_split(list_path):
        frames = _frames(images / resolution / name, IMAGE_SUFFIXES)
        sequences.append(_annotated_sequence(name, frames, annotations / resolution / name))
    return sequences


def _davis_list(root: Path, resolution: str, split: str) -> Path:
    candidates = [root / "ImageSets" / folder / f"{split}.txt" for folder in (resolution, "2016", "")]
    for path in candidates:
        if path.is_file():
            return path
    lists = root / "ImageSets"
    available = sorted({path.stem for path in lists.rglob("*.txt")}) if lists.is_dir() else []
    raise BenchmarkError(
        f"split list not found: {candidates[0]} (available splits: {', '.join(available) or 'none'})"
    )


def _segtrackv2(root: Path, split: str | None) -> list:
    images, ground_truth = root / "JPEGImages", root / "GroundTruth"
    if not images.is_dir():
        raise BenchmarkError(f"SegTrackv2 frame folder not found: {images}")
    names = _segtrack_names(root, split) or [folder.name for folder in _subfolders(images)]
    return [_annotated_sequence(n, _frames(images / n), ground_truth / n, by_order=True) for n in names]


def _segtrack_names(root: Path, split: str | None) -> list:
    """Sequence names of ImageSets/<split>.txt ("*bird_of_paradise" lines); [] where the default
    list is absent."""
    path = root / "ImageSets" / f"{split or BENCHMARKS['segtrackv2'].default_split}.txt"
    if not path.is_file():
        if split is None:
            return []
        raise BenchmarkError(f"split list not found: {path}")
    return [line.strip().strip("*/") for line in path.read_text().splitlines() if line.strip()]


def _fbms(root: Path, split: str | None) -> list:
    sets = {"train": ["Trainingset"], "test": ["Testset"], "all": ["Trainingset", "Testset"]}
    split = split or BENCHMARKS["fbms59"].default_split
    if split not in sets:
        raise BenchmarkError(f"unknown FBMS-59 split '{split}' (choices: {', '.join(sets)})")
    folders = [root / name for name in sets[split] if (root / name).is_dir()]
    if not folders and split == "all" and any((p / "GroundTruth").is_dir() for p in _subfolders(root)):
        folders = [root]  # ROOT is itself one set: <seq>/GroundTruth
    if not folders:
        raise BenchmarkError(f"FBMS-59 {' and '.join(sets[split])} not found in {root}")
    return [_fbms_sequence(folder) for parent in folders for folder in _subfolders(parent)]


def _fbms_sequence(folder: Path) -> VideoSequence:
    """Frames paired with the sparse annotations of GroundTruth/ by the frame number in their
    names (<seq>_0001.jpg <- <seq>_0001_gt.pgm); the *PROB* probability maps are left out."""
    frames = _frames(folder, IMAGE_SUFFIXES)
    index_by_number = {_frame_number(frame): i for i, frame in enumerate(frames)}
    if None in index_by_number or len(index_by_number) < len(frames):
        raise BenchmarkError(f"frame names in {folder} do not carry distinct frame numbers")
    ground_truth = folder / "GroundTruth"
    masks = _list_images(ground_truth, FBMS_MASK_SUFFIXES) if ground_truth.is_dir() else []
    masks = [mask for mask in masks if "PROB" not in mask.name]
    if not masks:
        raise BenchmarkError(f"no annotations ({', '.join(FBMS_MASK_SUFFIXES)}) in {ground_truth}")
    annotations = {}
    for mask in masks:
        number = _frame_number(mask)
        if number not in index_by_number:
            raise BenchmarkError(f"annotation {mask} matches no frame of {folder} by frame number")
        annotations.setdefault(index_by_number[number], []).append(mask)
    return VideoSequence(folder.name, frames, dict(sorted(annotations.items())))


def _frame_number(path: Path):
    """The last number in a file's stem, a trailing "_gt" left out: cars1_01_gt -> 1; None if none."""
    numbers = re.findall(r"\d+", re.sub(r"_gt$", "", path.stem, flags=re.IGNORECASE))
    return int(numbers[-1]) if numbers else None


def _generic_video(root: Path) -> list:
    frames, masks = root / "frames", root / "masks"
    if not frames.is_dir():
        raise BenchmarkError(f"frame folder not found: {frames} (expected frames/<seq>/ and masks/<seq>/)")
    return [_annotated_sequence(f.name, _frames(f), masks / f.name) for f in _subfolders(frames)]


def _duts_folders(root: Path) -> tuple:
    for folder in (root, root / "DUTS-TE"):
        images, masks = folder / "DUTS-TE-Image", folder / "DUTS-TE-Mask"
        if images.is_dir() and masks.is_dir():
            return images, masks
    raise BenchmarkError(f"DUTS-TE-Image and DUTS-TE-Mask not found in {root} or {root / 'DUTS-TE'}")


def _saliency_folders(root: Path) -> tuple:
    """ROOT/images and ROOT/masks, or the one folder named like each (Image(s), Imgs, GT, Mask(s), ...)."""
    if (root / "images").is_dir() and (root / "masks").is_dir():
        return root / "images", root / "masks"
    folders = _subfolders(root)
    images = [f for f in folders if IMAGES_FOLDER.fullmatch(f.name)]
    masks = [f for f in folders if MASKS_FOLDER.fullmatch(f.name)]
    if len(images) != 1 or len(masks) != 1:
        found = ", ".join(f.name for f in folders) or "no folders"
        raise BenchmarkError(
            f"cannot tell the images and masks folders apart in {root} ({found}); name them explicitly"
        )
    return images[0], masks[0]
