"""Robust video decoding (imageio-ffmpeg) and file-system helpers.

Decoding runs the ffmpeg binary shipped by `imageio-ffmpeg` in a subprocess
(tensorflow-io's ffmpeg ops need libavformat 58, which current Debian lacks).
Every failure is a :class:`DecodeError` carrying a short machine-readable
`reason` (``corrupt``, ``no_video_stream``, ``no_frames``, ``truncated``,
``decode_timeout``, ``read_error``) so callers can skip and count bad files.

Paths may be local or any `tf.io.gfile` URI (``gs://``, ``s3://``, ``ram://``...):
ffmpeg reads local files directly; other files are copied to a local
temporary file first.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterator

import numpy as np

VIDEO_EXTENSIONS = (".mp4", ".avi", ".mkv", ".mov", ".webm", ".gif", ".m4v", ".mpg", ".mpeg")
# Schemes that `tf.io.gfile` only knows once tensorflow-io is imported.
TFIO_SCHEMES = ("s3", "az", "hdfs", "viewfs", "oss", "http", "https", "har")
DEFAULT_TIMEOUT = 120.0
# Fewer decoded frames than this fraction of what the header promises = truncated.
TRUNCATED_FRACTION = 0.9

_SIZE = re.compile(r",\s*(\d{1,6})x(\d{1,6})[\s,\[]")
_FPS = re.compile(r"([0-9]+(?:\.[0-9]+)?)(k?) (fps|tbr)")
_DURATION = re.compile(r"Duration: (\d+):(\d\d):(\d\d(?:\.\d+)?)")


class DecodeError(Exception):
    """A video could not be used; `reason` is a short code, `detail` says why."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclasses.dataclass
class VideoInfo:
    """What the container header says about the first video stream."""

    width: int = 0          # of the coded frames, before rotation/resizing
    height: int = 0
    fps: float = 0.0        # average rate; 0 when unknown
    duration: float = 0.0   # seconds; 0 when unknown
    codec: str = ""
    pix_fmt: str = ""

    @property
    def expected_frames(self) -> int:
        """Frames the header promises (0 if unknown)."""
        return int(round(self.fps * self.duration)) if self.fps > 0 and self.duration > 0 else 0


# --------------------------------------------------------------------------- #
# File systems.

def scheme(path: str) -> str:
    """``gs`` for ``gs://b/x``; ``""`` for local paths."""
    m = re.match(r"^([a-zA-Z][a-zA-Z0-9+.-]*)://", path)
    return m[1].lower() if m else ""


def ensure_filesystem(path: str) -> None:
    """Imports tensorflow-io when `path` needs one of its file systems (s3://, az://...).

    Imported lazily: it is only needed for those schemes, and with s3:// it can
    abort the process at exit (run such jobs in their own process).
    """
    if scheme(path) in TFIO_SCHEMES:
        try:
            import tensorflow_io  # noqa: F401  (registers the file systems)
        except ImportError as e:
            raise ValueError(f"{path}: the {scheme(path)}:// scheme needs tensorflow-io "
                             f"(pip install tensorflow-io): {e}") from None


def is_local(path: str) -> bool:
    return scheme(path) in ("", "file")


def local_path(path: str) -> str:
    return path[len("file://"):] if path.startswith("file://") else path


@contextlib.contextmanager
def local_copy(path: str) -> Iterator[str]:
    """A local file path with the content of `path` (a temp copy for remote URIs)."""
    if is_local(path):
        yield local_path(path)
        return
    import tensorflow as tf

    ensure_filesystem(path)
    suffix = os.path.splitext(path)[1]
    fd, tmp = tempfile.mkstemp(prefix="tfvideogen-", suffix=suffix)
    try:
        with os.fdopen(fd, "wb") as out, tf.io.gfile.GFile(path, "rb") as src:
            shutil.copyfileobj(src, out, 1 << 20)
        yield tmp
    except (OSError, tf.errors.OpError) as e:
        raise DecodeError("read_error", f"cannot read {path}: {e}") from None
    finally:
        with contextlib.suppress(OSError):
            os.remove(tmp)


# --------------------------------------------------------------------------- #
# Decoding.

def ffmpeg_exe() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def parse_header(stderr: str) -> tuple[VideoInfo, tuple[int, int] | None]:
    """Parses ffmpeg's log: (input video stream info, output (w, h) or None)."""
    info = VideoInfo()
    inputs, outputs = stderr, ""
    if "Output #0" in stderr:
        inputs, outputs = stderr.split("Output #0", 1)
    streams = [ln for ln in inputs.splitlines() if "Stream #" in ln and " Video: " in ln]
    if not streams:
        raise DecodeError("no_video_stream", "no video stream in the file")
    line = streams[0]
    after = line.split(" Video: ", 1)[1]
    info.codec = after.split()[0].rstrip(",") if after.split() else ""
    parts = re.split(r",\s*(?![^()]*\))", after)
    info.pix_fmt = parts[1].split("(")[0].strip() if len(parts) > 1 else ""
    m = _SIZE.search(line + " ")
    if m:
        info.width, info.height = int(m[1]), int(m[2])
    rates = {unit: float(v) * (1000 if k else 1) for v, k, unit in _FPS.findall(line)}
    info.fps = rates.get("fps", rates.get("tbr", 0.0))
    m = _DURATION.search(inputs)
    if m:
        info.duration = int(m[1]) * 3600 + int(m[2]) * 60 + float(m[3])
    out_size = None
    out_streams = [ln for ln in outputs.splitlines() if "Stream #" in ln and " Video: " in ln]
    if out_streams:
        m = _SIZE.search(out_streams[0] + " ")
        if m:
            out_size = (int(m[1]), int(m[2]))
    return info, out_size


def _filters(size: int, crop: bool, fps: float, shape: tuple[int, int] | None) -> list[str]:
    chain = []
    if fps > 0:
        # Timestamp-based resampling: also right for variable frame rate sources.
        chain.append(f"fps={fps:g}")
    if shape:
        h, w = shape
        chain.append(f"scale={w}:{h}:force_original_aspect_ratio=increase:flags=area"
                     f",crop={w}:{h}")
    elif size > 0:
        if crop:
            # Cover size x size (short side -> size), then center crop.
            chain.append(f"scale={size}:{size}:force_original_aspect_ratio=increase"
                         f":flags=area,crop={size}:{size}")
        else:
            # Short side -> size, aspect kept (long side rounded to even).
            chain.append(f"scale='if(lt(iw,ih),{size},-2)':'if(lt(iw,ih),-2,{size})'"
                         f":flags=area")
    return chain


def decode(path: str, *, size: int = 0, crop: bool = True, fps: float = 0.0,
           max_frames: int = 0, timeout: float = DEFAULT_TIMEOUT,
           check_truncation: bool = True, shape: tuple[int, int] | None = None
           ) -> tuple[np.ndarray, VideoInfo]:
    """Decodes a video file to uint8 RGB frames [T, H, W, 3].

    Args:
      path: local path or `tf.io.gfile` URI.
      size: > 0 resizes the short side to `size`; with `crop` also center
        crops to `size` x `size`. 0 keeps the source size.
      shape: (height, width) to cover-resize and center crop to (overrides `size`).
      fps: > 0 resamples to this frame rate by timestamps (drops/duplicates
        frames); 0 keeps every decoded frame.
      max_frames: > 0 stops after this many output frames (faster for long files).
      timeout: seconds before ffmpeg is killed (reason ``decode_timeout``).
      check_truncation: when the whole file was read, raise ``truncated`` if
        fewer than 90% of the frames the header promises decoded.

    Grayscale, paletted and alpha sources come out as RGB (alpha is dropped).
    Raises DecodeError for anything unusable, never other exceptions for bad data.
    """
    with local_copy(path) as local:
        if not os.path.exists(local):
            raise DecodeError("missing_file", f"{path} does not exist")
        if os.path.getsize(local) == 0:
            raise DecodeError("corrupt", "empty file (0 bytes)")
        cmd = [ffmpeg_exe(), "-hide_banner", "-nostdin", "-threads", "1",
               "-i", "file:" + os.path.abspath(local), "-map", "0:v:0", "-an", "-sn"]
        chain = _filters(size, crop, fps, shape)
        if chain:
            cmd += ["-vf", ",".join(chain)]
        if max_frames > 0:
            cmd += ["-frames:v", str(int(max_frames))]
        cmd += ["-pix_fmt", "rgb24", "-f", "rawvideo", "-"]
        try:
            proc = subprocess.run(cmd, capture_output=True, timeout=timeout, check=False)
        except subprocess.TimeoutExpired:
            raise DecodeError("decode_timeout", f"ffmpeg took over {timeout:g}s") from None
        except OSError as e:
            raise DecodeError("read_error", f"cannot run ffmpeg: {e}") from None
    log = proc.stderr.decode("utf-8", "replace")
    try:
        info, out_size = parse_header(log)
    except DecodeError:
        if "Input #0" in log:  # the container opened: it just holds no video
            raise DecodeError("no_video_stream", "the file has no video stream") from None
        raise DecodeError("corrupt", _last_error(log) or "ffmpeg cannot open it") from None
    data = proc.stdout
    if out_size is None:
        if not data:
            reason = "no_frames" if info.width else "corrupt"
            raise DecodeError(reason, _last_error(log) or "no frames decoded")
        raise DecodeError("corrupt", "cannot tell the decoded frame size")
    w, h = out_size
    frame_bytes = w * h * 3
    count = len(data) // frame_bytes if frame_bytes else 0
    if count == 0:
        raise DecodeError("no_frames", _last_error(log) or "the video has no decodable frame")
    frames = np.frombuffer(data[:count * frame_bytes], np.uint8).reshape(count, h, w, 3)
    read_all = max_frames <= 0 or count < max_frames
    if check_truncation and read_all and fps <= 0:
        expected = info.expected_frames
        if expected >= 4 and count < TRUNCATED_FRACTION * expected:
            raise DecodeError("truncated", f"decoded {count} of the {expected} frames the "
                                           f"header promises ({_last_error(log) or 'no error'})")
    if proc.returncode != 0 and count == 0:
        raise DecodeError("corrupt", _last_error(log))
    return frames, info


def _last_error(log: str) -> str:
    """The most telling line of an ffmpeg log (for skip reasons)."""
    keys = ("error", "invalid", "moov atom", "corrupt", "truncat", "could not", "no such")
    lines = [ln.strip() for ln in log.splitlines() if ln.strip()]
    for line in reversed(lines):
        if any(k in line.lower() for k in keys):
            return line[:200]
    return lines[-1][:200] if lines else ""


# --------------------------------------------------------------------------- #
# Frame selection.

def clip_starts(num_frames: int, clip_frames: int, count: int, placement: str = "spread"
                ) -> list[int]:
    """Start indices of up to `count` non-overlapping clips (0 = as many as fit).

    ``spread`` spaces the clips evenly over the video; ``start`` packs them
    from the first frame on. Empty when the video is shorter than one clip.
    """
    if clip_frames <= 0:
        raise ValueError(f"clip_frames must be positive, got {clip_frames}")
    fit = num_frames // clip_frames
    if fit == 0:
        return []
    n = fit if count <= 0 else min(count, fit)
    if placement == "start":
        return [i * clip_frames for i in range(n)]
    if placement != "spread":
        raise ValueError(f"placement must be 'spread' or 'start', got {placement!r}")
    slack = num_frames - n * clip_frames
    # Gaps of equal size before, between and after the clips.
    return [int(round(slack * (i + 1) / (n + 1))) + i * clip_frames for i in range(n)]


def loop_to(frames: np.ndarray, length: int) -> np.ndarray:
    """Repeats a short clip [T, ...] from its start until it has `length` frames."""
    if len(frames) == 0:
        raise ValueError("cannot loop an empty clip")
    return frames[np.arange(length) % len(frames)]


# --------------------------------------------------------------------------- #
# Graph-side helpers (tf.data maps).

def fit_video(video, height: int, width: int):
    """uint8 [T, h, w, 3] -> uint8 [T, height, width, 3]: cover-resize, center crop.

    A no-op when the size already matches; antialiased when shrinking.
    """
    import tensorflow as tf

    shape = tf.shape(video)
    h, w = shape[1], shape[2]

    def resize():
        scale = tf.maximum(height / tf.cast(h, tf.float64), width / tf.cast(w, tf.float64))
        nh = tf.maximum(tf.cast(tf.math.ceil(tf.cast(h, tf.float64) * scale - 1e-6), tf.int32),
                        height)
        nw = tf.maximum(tf.cast(tf.math.ceil(tf.cast(w, tf.float64) * scale - 1e-6), tf.int32),
                        width)
        big = tf.image.resize(video, tf.stack([nh, nw]), method="bilinear", antialias=True)
        top, left = (nh - height) // 2, (nw - width) // 2
        crop = big[:, top:top + height, left:left + width]
        return tf.cast(tf.clip_by_value(tf.round(crop), 0.0, 255.0), tf.uint8)

    same = tf.logical_and(tf.equal(h, height), tf.equal(w, width))
    return tf.cond(same, lambda: tf.identity(video), resize)


def to_model_range(video, frames: int, height: int, width: int):
    """uint8 [T, H, W, 3] -> float32 in [-1, 1] with the static shape set."""
    import tensorflow as tf

    out = tf.cast(video, tf.float32) / 127.5 - 1.0
    out.set_shape([frames, height, width, 3])
    return out
