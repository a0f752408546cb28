"""Image classification: pixels in, one class out, on a convolutional backbone (EfficientNet-Lite0).

Shares targets, loss, predictions and metrics with text classification; what differs is the input: images
are read by data/images.py, resized and normalised with the backbone's own statistics (the model
directory's `preprocessor.json`, saved again with the trained model), and the training split carries the
configured augmentation. Without augmentation the frozen blocks' output of an image never changes, so the
activation cache serves `head` and `partial` as it does text (its entries keyed by the pixel tensor); with
augmentation the run turns it off and says why.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Optional

from tunelab.config.schema import DataConfig, HeadConfig, ModelConfig, RunConfig
from tunelab.data.records import Record
from tunelab.errors import ConfigError, ModelError
from tunelab.tasks.classification import ClassificationTask

if TYPE_CHECKING:  # images and models are torch: imported by the methods that use them (tasks/base.py says why)
    from tunelab.data.encoding import EncodedSplit
    from tunelab.models.task_model import TaskModel

__all__ = ["ImageClassificationTask"]


class ImageClassificationTask(ClassificationTask):
    name = "image_classification"
    supports_cache: ClassVar[bool] = True
    takes_label_smoothing = False  # as before images came: smoothing is offered for text classification
    takes_images = True

    def read(self, path: str | Path, config: DataConfig, *, require_labels: bool = True) -> list[Record]:
        from tunelab.data.images import read_images

        return read_images(path, require_labels=require_labels)

    def load_preprocessor(self, model_dir: Path, config: RunConfig) -> Any:
        from tunelab.models.vision import ImagePreprocessor, is_vision_dir

        if not is_vision_dir(model_dir) and not (Path(model_dir) / "preprocessor.json").is_file():  # adapter dirs: the latter
            raise ConfigError(f"model: {model_dir} is not an image model; task image_classification needs one "
                              "(model: efficientnet-lite0)")
        made = ImagePreprocessor.from_dir(model_dir, config.data.image_size)
        made.augment = config.data.augment  # type: ignore[attr-defined]
        return made

    def encode(self, records: list[Record], tokenizer: Any, max_length: int, label_names: list[str], *,
               with_targets: bool = True, train: bool = False) -> EncodedSplit:
        """`tokenizer` is the ImagePreprocessor; `max_length` does not apply to images."""
        from tunelab.data.encoding import EncodedSplit
        from tunelab.data.images import images_to_tensor, make_augment

        pixels = images_to_tensor(records, tokenizer.image_size, tokenizer.mean, tokenizer.std)
        aug = getattr(tokenizer, "augment", None)
        augment = make_augment(aug.crop_scale, aug.hflip, aug.rotation) if train and aug is not None and aug.enabled else None
        return EncodedSplit(input_ids=[[] for _ in records], records=records, features={"pixel_values": pixels},
                            targets=self.targets(records, label_names) if with_targets and records else None,
                            augment=augment)

    def build_model(self, model_cfg: ModelConfig, head_cfg: HeadConfig, label_names: list[str],
                    model_dir: Optional[Path] = None) -> TaskModel:
        """Backbone features `(B, 1280)` + a linear (`native` or `linear`) or MLP head; no pooling needed."""
        from tunelab.models.heads import PoolingHead
        from tunelab.models.loading import resolve_model_dir
        from tunelab.models.task_model import TaskModel
        from tunelab.models.vision import EfficientNetBackbone, ImagePreprocessor, is_vision_dir

        model_dir = model_dir or resolve_model_dir(model_cfg.name)
        if not is_vision_dir(model_dir):
            raise ModelError(f"model: {model_dir} is not an image model; task image_classification needs one "
                             "(model: efficientnet-lite0)")
        size = ImagePreprocessor.from_dir(model_dir).image_size
        network = EfficientNetBackbone.from_dir(model_dir, image_size=size, pretrained=model_cfg.pretrained)
        head = PoolingHead(network.config["hidden_size"], self.num_outputs(label_names),
                           kind="mlp" if head_cfg.type == "mlp" else "linear", pooling="none",
                           dropout=head_cfg.dropout, mlp_hidden=head_cfg.hidden_size)
        return TaskModel(network, head)
