"""Video files -> sharded TFRecords for `train.py --dataset=tfrecord:<output>/*.tfrecord`.

    python prepare_data.py --input=/data/UCF-101 --class_folders --output_dir=/data/ucf64 \\
        --clip_frames=16 --size=64 --clips_per_video=2 --workers=2
    python prepare_data.py --input='/data/clips/*.mp4' --captions=/data/clips/captions.csv \\
        --output_dir=gs://bucket/clips64

Flags map onto `tfvideogen.data.prepare.PrepareConfig`. Rerun the same command
to resume an interrupted run (finished shards are kept). The summary, frame
statistics and every skipped file with its reason go to
`<output_dir>/dataset_info.json`.
"""

from __future__ import annotations

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags, logging  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("input", None, "Folder (recursive) or glob of video files; any gfile path.")
flags.DEFINE_string("output_dir", None, "Where shards and dataset_info.json go (local, gs://, "
                    "s3://, az://, hdfs://).")
flags.DEFINE_string("captions", "", "CSV (path,caption) or JSONL ({path, caption}) manifest; "
                    "paths relative to --input's folder.")
flags.DEFINE_bool("class_folders", False, "Caption = the parent folder's name "
                  "(ApplyEyeMakeup -> 'apply eye makeup').")
flags.DEFINE_integer("clip_frames", 16, "Frames per clip; 0 = each whole video is one example.")
flags.DEFINE_integer("frame_stride", 1, "Keep every n-th frame (after --fps).")
flags.DEFINE_float("fps", 0.0, "Resample to this frame rate first (0 = keep the source's).")
flags.DEFINE_integer("size", 64, "Resize the short side to this (then center crop); 0 = keep.")
flags.DEFINE_bool("center_crop", True, "Center crop to size x size after resizing.")
flags.DEFINE_integer("clips_per_video", 1, "Non-overlapping clips per video; 0 = all that fit.")
flags.DEFINE_enum("clip_placement", "spread", ["spread", "start"],
                  "Clips evenly over the video, or from its start (decodes less).")
flags.DEFINE_enum("short_videos", "skip", ["skip", "loop"],
                  "Videos shorter than a clip: skip them, or loop them to clip length.")
flags.DEFINE_integer("max_frames", 0, "Decode at most this many frames per video (0 = all).")
flags.DEFINE_enum("image_format", "jpeg", ["jpeg", "png"], "Frame encoding in the records.")
flags.DEFINE_integer("jpeg_quality", 90, "JPEG quality (1-100).")
flags.DEFINE_integer("videos_per_shard", 256, "Videos per TFRecord shard.")
flags.DEFINE_string("shard_prefix", "train", "Shard file name prefix.")
flags.DEFINE_list("extensions", [e.lstrip(".") for e in (
    ".mp4", ".avi", ".mkv", ".mov", ".webm", ".gif", ".m4v", ".mpg", ".mpeg")],
    "Video file extensions to pick up.")
flags.DEFINE_bool("dedupe_content", True, "Skip files with the same bytes as another.")
flags.DEFINE_integer("workers", 2, "Parallel decode threads (each runs its own ffmpeg).")
flags.DEFINE_float("timeout", 120.0, "Seconds before a video's decode is abandoned.")
flags.DEFINE_bool("progress", True, "Show a progress bar on stderr.")
flags.mark_flags_as_required(["input", "output_dir"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    from tfvideogen.data import decode
    from tfvideogen.data import prepare as prepare_lib

    cfg = prepare_lib.PrepareConfig(
        input=FLAGS.input, output_dir=FLAGS.output_dir, captions=FLAGS.captions,
        class_folders=FLAGS.class_folders, clip_frames=FLAGS.clip_frames,
        frame_stride=FLAGS.frame_stride, fps=FLAGS.fps, size=FLAGS.size,
        center_crop=FLAGS.center_crop, clips_per_video=FLAGS.clips_per_video,
        clip_placement=FLAGS.clip_placement, short_videos=FLAGS.short_videos,
        max_frames=FLAGS.max_frames, image_format=FLAGS.image_format,
        jpeg_quality=FLAGS.jpeg_quality, videos_per_shard=FLAGS.videos_per_shard,
        shard_prefix=FLAGS.shard_prefix, extensions=tuple(FLAGS.extensions),
        dedupe_content=FLAGS.dedupe_content, workers=FLAGS.workers, timeout=FLAGS.timeout,
        progress=FLAGS.progress)
    code = 0
    try:
        info = prepare_lib.prepare(cfg)
    except prepare_lib.PrepareError as e:
        raise app.UsageError(str(e)) from None
    except prepare_lib.NoUsableDataError as e:
        logging.error("%s", e)
        code = 1
    else:
        skipped = info["skipped"]
        reasons = ", ".join(f"{k} {v}" for k, v in skipped["by_reason"].items()) or "none"
        print(f"done: {info['num_examples']} clips from {info['num_videos']['used']} videos in "
              f"{len(info['shards'])} shard(s) under {cfg.output_dir}; skipped "
              f"{skipped['total']} ({reasons}); details in dataset_info.json. Train with "
              f"--dataset=tfrecord:{os.path.join(cfg.output_dir, '*.tfrecord')}")
    if any(decode.scheme(p) in decode.TFIO_SCHEMES for p in (cfg.input, cfg.output_dir)):
        # tensorflow-io's s3 file system can abort at interpreter exit: everything is
        # written and flushed by now, so leave without running the exit handlers.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    app.run(main)
