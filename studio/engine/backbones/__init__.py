"""One registry of encoders: name -> builder, feature size and kind ("cnn" | "vit").

Every backbone wraps an unmodified torchvision (or timm) model and keeps all its parameters, so
that the exported weights load with `load_state_dict(strict=True)` into a fresh model of the same
name. The small-image stem of the ResNets (inputs under 64 px) keeps conv1's 7x7 weights and only
changes its stride to 1 and drops the max-pool: neither is a parameter, so keys and shapes stay.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch
from torch import nn

from studio.engine.errors import ConfigError
from studio.engine.settings import option

SMALL_IMAGE_LIMIT = 64


class Backbone(nn.Module):
    """An encoder: images (B, 3, H, W) -> features (B, feature_dim)."""

    def __init__(self, model: nn.Module, name: str, kind: str, feature_dim: int, image_size: int, arch: dict[str, Any]):
        super().__init__()
        self.model = model
        self.name = name
        self.kind = kind
        self.feature_dim = feature_dim
        self.image_size = image_size
        # What it takes to rebuild `model` from its library (for exports and model cards).
        self.arch = arch

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - overridden
        raise NotImplementedError


class ResNetBackbone(Backbone):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = self.model
        x = m.maxpool(m.relu(m.bn1(m.conv1(x))))
        x = m.layer4(m.layer3(m.layer2(m.layer1(x))))
        return torch.flatten(m.avgpool(x), 1)


class ViTBackbone(Backbone):
    """torchvision VisionTransformer; the feature is the class token after the encoder.

    Images of another size than the model's (DINO's local crops) go through the same layers with
    the position embedding resampled to their patch grid, as DINO's `interpolate_pos_encoding`.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = self.model
        if x.shape[-2] == m.image_size and x.shape[-1] == m.image_size:
            x = m._process_input(x)
            cls = m.class_token.expand(x.shape[0], -1, -1)
            x = m.encoder(torch.cat([cls, x], dim=1))
            return x[:, 0]
        tokens = m.conv_proj(x)
        grid = tokens.shape[-2:]
        tokens = tokens.flatten(2).transpose(1, 2)
        cls = m.class_token.expand(tokens.shape[0], -1, -1)
        tokens = torch.cat([cls, tokens], dim=1) + self.position_embedding(grid)
        enc = m.encoder
        return enc.ln(enc.layers(enc.dropout(tokens)))[:, 0]

    def position_embedding(self, grid) -> torch.Tensor:
        pos = self.model.encoder.pos_embedding
        side = self.model.image_size // self.model.patch_size
        if tuple(grid) == (side, side):
            return pos
        patches = pos[:, 1:].reshape(1, side, side, -1).permute(0, 3, 1, 2)
        patches = torch.nn.functional.interpolate(patches, size=tuple(grid), mode="bicubic", align_corners=False)
        return torch.cat([pos[:, :1], patches.flatten(2).transpose(1, 2)], dim=1)


class TorchvisionFeaturesBackbone(Backbone):
    """CNNs shaped `features -> avgpool -> classifier` (MobileNet, EfficientNet, ConvNeXt)."""

    def __init__(self, *args, pre_classifier: nn.Module | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.pre_classifier = pre_classifier if pre_classifier is not None else nn.Flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = self.model
        return self.pre_classifier(m.avgpool(m.features(x)))


class TimmBackbone(Backbone):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_head(self.model.forward_features(x), pre_logits=True)


@dataclass(frozen=True)
class BackboneSpec:
    name: str
    kind: str  # "cnn" | "vit"
    feature_dim: int
    description: str
    build: Callable[..., Backbone]
    options: dict[str, Any] = field(default_factory=dict)  # extra knobs and their defaults
    pretrained_weights: str | None = None  # torchvision weights enum name, where one exists
    # The options' descriptions (help, bounds; studio.engine.settings.option), as method configs
    # and TrainConfig describe their fields.
    option_class: type | None = None

    def option_fields(self):
        from studio.engine.settings import config_fields

        return config_fields(self.option_class) if self.option_class is not None else []

    def check_options(self, image_size: int, options: dict[str, Any] | None) -> dict[str, Any]:
        """The options typed and within their bounds (text from the command line becomes
        numbers); unknown names and out-of-bound values raise ConfigError."""
        from studio.engine.settings import parse_value

        infos = {i.name: i for i in self.option_fields()}
        typed: dict[str, Any] = {}
        for name, value in (options or {}).items():
            if name not in infos:
                known = ", ".join(infos) or "none"
                raise ConfigError(f"{self.name} has no option {name!r} (options: {known}).", setting="backbone_options")
            try:
                typed[name] = parse_value(infos[name], value)
            except ConfigError as exc:
                raise ConfigError(f"{self.name}: {exc}", setting="backbone_options") from None
        patch = typed.get("patch_size")
        if patch and image_size % patch:
            raise ConfigError(f"{self.name}: the image size {image_size} is not a multiple of the patch size {patch}.",
                              setting="backbone_options")
        return typed


def _torchvision_weights(model_name: str, pretrained: bool):
    if not pretrained:
        return None
    from torchvision.models import get_model_weights

    return get_model_weights(model_name).DEFAULT


def _load_torchvision(model_name: str, pretrained: bool, **kwargs) -> nn.Module:
    import torchvision.models as tvm

    weights = _torchvision_weights(model_name, pretrained)
    try:
        return tvm.get_model(model_name, weights=weights, **kwargs)
    except Exception as exc:
        if pretrained:
            raise ConfigError(
                f"could not load the ImageNet weights of {model_name} ({exc.__class__.__name__}: {exc}). "
                "They are downloaded once from the internet; connect, or put the file in torch's hub "
                "cache, or start from random weights instead."
            ) from exc
        raise


def _small_stem(image_size: int, small_stem: bool | None) -> bool:
    """Whether to lower the stem's stride: by default under 64 px; `small_stem` forces it on or off
    (off keeps torchvision's stride 32, four times less work at 28 px for coarser features)."""
    return image_size < SMALL_IMAGE_LIMIT if small_stem is None else bool(small_stem)


def _resnet(model_name: str, dim: int):
    def build(image_size: int, pretrained: bool = False, small_stem: bool | None = None, **_: Any) -> Backbone:
        model = _load_torchvision(model_name, pretrained)
        small = _small_stem(image_size, small_stem)
        if small:
            small_image_stem(model_name, model)
        arch = {"library": "torchvision", "builder": model_name, "kwargs": {}, "small_image_stem": small,
                "small_image_stem_code": small_image_stem_code(model_name) if small else ""}
        return ResNetBackbone(model, model_name, "cnn", dim, image_size, arch)

    return build


def small_image_stem(model_name: str, model: nn.Module) -> nn.Module:
    """Make a torchvision CNN keep detail in images under 64 px by lowering the stride of its
    first layers (as the CIFAR variants of the papers do). Strides and pooling are not parameters,
    so the state_dict keeps its keys and shapes; exports call this again to rebuild the model."""
    if model_name.startswith("resnet"):
        model.conv1.stride = (1, 1)
        model.maxpool = nn.Identity()
    elif model_name.startswith(("mobilenet", "efficientnet")):
        model.features[0][0].stride = (1, 1)  # the 3x3 stem conv: overall stride 32 -> 16
    elif model_name.startswith("convnext"):
        # The 4x4 patchify stem with stride 2 and padding 1 (overlapping) instead of stride 4:
        # overall 32 -> 16, so a 32 px image still reaches the last stage with a 2x2 map.
        model.features[0][0].stride = (2, 2)
        model.features[0][0].padding = (1, 1)
    return model


def small_image_stem_code(model_name: str) -> str:
    """The Python statement that rebuilds `small_image_stem` on a fresh torchvision `model` (for model cards)."""
    if model_name.startswith("resnet"):
        return "model.conv1.stride = (1, 1); model.maxpool = torch.nn.Identity()"
    if model_name.startswith(("mobilenet", "efficientnet")):
        return "model.features[0][0].stride = (1, 1)"
    if model_name.startswith("convnext"):
        return "model.features[0][0].stride = (2, 2); model.features[0][0].padding = (1, 1)"
    return ""


# torchvision builds MobileNetV3 with batch-norm momentum 0.01, tuned for its 600-epoch ImageNet
# recipe: after a 30-step run its running statistics are still 74 % their initial values, every
# image then maps to nearly the same vector in eval mode, and kNN falls below chance. The
# framework default (0.1) follows the data within a few dozen steps. Not a parameter: the
# state_dict and the exported weights are unchanged.
BATCHNORM_MOMENTUM = 0.1


def set_batchnorm_momentum(model: nn.Module, momentum: float) -> None:
    """Raise every batch norm's momentum to at least `momentum`."""
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.momentum is not None and m.momentum < momentum:
            m.momentum = momentum


def _features_cnn(model_name: str, dim: int):
    def build(image_size: int, pretrained: bool = False, small_stem: bool | None = None, **_: Any) -> Backbone:
        if model_name.startswith("convnext") and image_size < 16:
            raise ConfigError(f"{model_name} needs images of at least 16 px (its four stages halve the image); "
                              f"{image_size} px is too small. Pick a larger image size or a ResNet.")
        model = _load_torchvision(model_name, pretrained)
        small = _small_stem(image_size, small_stem)
        if small:
            small_image_stem(model_name, model)
        set_batchnorm_momentum(model, BATCHNORM_MOMENTUM)
        # ConvNeXt normalises the pooled features before its classifier: keep that LayerNorm.
        pre = nn.Sequential(model.classifier[0], nn.Flatten(1)) if model_name.startswith("convnext") else None
        arch = {"library": "torchvision", "builder": model_name, "kwargs": {}, "small_image_stem": small,
                "small_image_stem_code": small_image_stem_code(model_name) if small else ""}
        return TorchvisionFeaturesBackbone(model, model_name, "cnn", dim, image_size, arch, pre_classifier=pre)

    return build


VIT_SIZES = {
    "vit_tiny": dict(num_layers=12, num_heads=3, hidden_dim=192, mlp_dim=768),
    "vit_small": dict(num_layers=12, num_heads=6, hidden_dim=384, mlp_dim=1536),
    "vit_base": dict(num_layers=12, num_heads=12, hidden_dim=768, mlp_dim=3072),
}


def default_patch_size(image_size: int) -> int:
    """The largest of 16/8/4/2 px that still leaves a grid of at least 8x8 patches.

    224 px -> 16 (as in the ViT paper); 32 px -> 4 (64 tokens, enough for MAE's 75 % masking).
    """
    for p in (16, 8, 4, 2):
        if image_size % p == 0 and image_size // p >= 8:
            return p
    return 1


def _vit(size: str):
    def build(image_size: int, pretrained: bool = False, patch_size: int | None = None, num_layers: int | None = None, **_: Any) -> Backbone:
        from torchvision.models.vision_transformer import VisionTransformer

        patch = int(patch_size or default_patch_size(image_size))
        if image_size % patch:
            raise ConfigError(f"the image size {image_size} is not a multiple of the ViT patch size {patch}.")
        kwargs = dict(VIT_SIZES[size])
        if num_layers:
            kwargs["num_layers"] = int(num_layers)
        kwargs.update(image_size=image_size, patch_size=patch)
        if pretrained:
            if size != "vit_base" or image_size != 224 or patch != 16:
                raise ConfigError("ImageNet weights exist only for vit_base at 224 px with 16 px patches.")
            model = _load_torchvision("vit_b_16", True)
            arch = {"library": "torchvision", "builder": "vit_b_16", "kwargs": {}}
        else:
            model = VisionTransformer(**kwargs)
            arch = {"library": "torchvision", "builder": "VisionTransformer", "kwargs": kwargs}
        return ViTBackbone(model, size, "vit", kwargs["hidden_dim"], image_size, arch)

    return build


STEM_OPTION = {"small_stem": None}  # None: automatic (under 64 px)
VIT_OPTION = {"patch_size": None, "num_layers": None}


@dataclass
class CNNOptions:
    small_stem: bool | None = option(None, "a stride-1 3x3 stem without max-pool, for small images", label="small stem",
                                     none="on under 64 px")


@dataclass
class ViTOptions:
    patch_size: int | None = option(None, "side of the square patches; must divide the image size", min=1, max=64,
                                    label="patch size", unit="px", none="from the image size")
    num_layers: int | None = option(None, "transformer blocks of the encoder", min=1, max=48, label="number of layers",
                                    none="the model's 12")

BACKBONES: dict[str, BackboneSpec] = {
    "resnet18": BackboneSpec("resnet18", "cnn", 512, "ResNet-18 (11 M parameters); the everyday choice.", _resnet("resnet18", 512), options=STEM_OPTION, option_class=CNNOptions, pretrained_weights="IMAGENET1K_V1"),
    "resnet34": BackboneSpec("resnet34", "cnn", 512, "ResNet-34 (21 M parameters).", _resnet("resnet34", 512), options=STEM_OPTION, option_class=CNNOptions, pretrained_weights="IMAGENET1K_V1"),
    "resnet50": BackboneSpec("resnet50", "cnn", 2048, "ResNet-50 (25 M parameters); the papers' reference encoder.", _resnet("resnet50", 2048), options=STEM_OPTION, option_class=CNNOptions, pretrained_weights="IMAGENET1K_V2"),
    "convnext_tiny": BackboneSpec("convnext_tiny", "cnn", 768, "ConvNeXt-Tiny (28 M parameters); a modern CNN, strong with AdamW.", _features_cnn("convnext_tiny", 768), options=STEM_OPTION, option_class=CNNOptions, pretrained_weights="IMAGENET1K_V1"),
    "mobilenet_v3_small": BackboneSpec("mobilenet_v3_small", "cnn", 576, "MobileNetV3-Small (1.5 M parameters); for phones and quick tries.", _features_cnn("mobilenet_v3_small", 576), options=STEM_OPTION, option_class=CNNOptions, pretrained_weights="IMAGENET1K_V1"),
    "mobilenet_v3_large": BackboneSpec("mobilenet_v3_large", "cnn", 960, "MobileNetV3-Large (3 M parameters); fast on small devices.", _features_cnn("mobilenet_v3_large", 960), options=STEM_OPTION, option_class=CNNOptions, pretrained_weights="IMAGENET1K_V1"),
    "efficientnet_b0": BackboneSpec("efficientnet_b0", "cnn", 1280, "EfficientNet-B0 (4 M parameters); accurate for its size.", _features_cnn("efficientnet_b0", 1280), options=STEM_OPTION, option_class=CNNOptions, pretrained_weights="IMAGENET1K_V1"),
    "vit_tiny": BackboneSpec("vit_tiny", "vit", 192, "ViT-Tiny (5.5 M parameters), 3 heads of 64.", _vit("vit_tiny"), options=VIT_OPTION, option_class=ViTOptions),
    "vit_small": BackboneSpec("vit_small", "vit", 384, "ViT-Small (22 M parameters), 6 heads of 64.", _vit("vit_small"), options=VIT_OPTION, option_class=ViTOptions),
    "vit_base": BackboneSpec("vit_base", "vit", 768, "ViT-Base (86 M parameters), 12 heads of 64.", _vit("vit_base"), options=VIT_OPTION, option_class=ViTOptions, pretrained_weights="IMAGENET1K_V1"),
}


def backbone_spec(name: str) -> BackboneSpec:
    if name in BACKBONES:
        return BACKBONES[name]
    if name.startswith("timm:"):
        return _timm_spec(name)
    raise ConfigError(f"unknown backbone {name!r}; choose one of: {', '.join(BACKBONES)} (or timm:NAME with timm installed).")


def _timm_spec(name: str) -> BackboneSpec:
    try:
        import timm  # noqa: F401
    except ImportError as exc:
        raise ConfigError(f"{name} needs timm: pip install 'ssl-studio[timm]'.") from exc
    import timm

    model_name = name.split(":", 1)[1]
    if not timm.is_model(model_name):
        raise ConfigError(f"timm has no model named {model_name!r}.")

    def build(image_size: int, pretrained: bool = False, **_: Any) -> Backbone:
        kwargs: dict[str, Any] = {"num_classes": 0}
        try:
            model = timm.create_model(model_name, pretrained=pretrained, img_size=image_size, **kwargs)
            kwargs["img_size"] = image_size
        except TypeError:
            model = timm.create_model(model_name, pretrained=pretrained, **kwargs)
        kind = "vit" if hasattr(model, "patch_embed") else "cnn"
        arch = {"library": "timm", "builder": model_name, "kwargs": kwargs}
        return TimmBackbone(model, name, kind, int(model.num_features), image_size, arch)

    # The kind and feature size are only known once built: read them from a throw-away model.
    probe = timm.create_model(model_name, pretrained=False, num_classes=0)
    kind = "vit" if hasattr(probe, "patch_embed") else "cnn"
    return BackboneSpec(name, kind, int(probe.num_features), f"timm model {model_name}", build)


def build_backbone(name: str, image_size: int, pretrained: bool = False, **options: Any) -> Backbone:
    spec = backbone_spec(name)
    options = {k: v for k, v in options.items() if v is not None}
    return spec.build(image_size=image_size, pretrained=pretrained, **options)


def register_backbone(spec: BackboneSpec) -> None:
    BACKBONES[spec.name] = spec
