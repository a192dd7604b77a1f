"""What a reader of training data kept and what it skipped, with reasons: the record every reader returns beside its
dataset, printed by the training commands and kept in the run's record."""

from dataclasses import dataclass, field


@dataclass
class ReadReport:
    """What a reader kept and what it skipped, with reasons: printed by the training scripts."""

    frames: int = 0
    videos: int = 0
    ignored_unlabelled: int = 0  # frames not annotated: -1 (EXPR, AU), -5 (VA)
    missing_images: int = 0  # annotated frames without a frame image (no face detected by the dataset makers)
    dropped_by_stride: int = 0
    dropped_by_cap: int = 0
    dropped_labels: dict = field(default_factory=dict)  # dataset class name -> images dropped (no model label)
    duplicates: int = 0  # rows listing an image already listed, with the same labels (ABAW7's multi-task files)
    empty_classes: list = field(default_factory=list)  # class folders without an image: that class gets no examples
    class_counts: dict = field(default_factory=dict)

    def format(self) -> str:
        return (f"{self.frames} frames from {self.videos} videos kept; skipped {self.ignored_unlabelled} frames "
                f"not annotated, {self.missing_images} annotated frames without an image, {self.dropped_by_stride} "
                f"by frame stride, {self.dropped_by_cap} by the per-class cap"
                + (f", {self.duplicates} rows listing an image again" if self.duplicates else "")
                + (f", {sum(self.dropped_labels.values())} of classes the model has no label for "
                   f"{self.dropped_labels}" if self.dropped_labels else "")
                + (f", class folders without an image {self.empty_classes}" if self.empty_classes else "")
                + f"; per class: {self.class_counts}")
