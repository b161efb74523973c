"""Models of the size teams deploy, made here with random seeded weights (nothing downloaded), each
exported with torch's default torch.onnx.export (the dynamo exporter) as a team would, with a
dataloader of random seeded data:

- resnet: a ResNet-18-shaped CNN (basic blocks [2, 2, 2, 2], 11.7 M parameters): `image` float32
  [batch, 3, 224, 224] -> `logits` float32 [batch, 1000]; dataloader_resnet.py.
- encoder: a small transformer encoder shaped like a small BERT: `input_ids` int64 [batch, sequence]
  and `attention_mask` int64 [batch, sequence] -> `hidden` float32 [batch, sequence, 128] and
  `pooled` float32 [batch, 128]; the sequence axis is dynamic (the validation batches have different
  lengths); dataloader_encoder.py.

Usage: python make_models.py OUT_DIR [--single-file]. --single-file keeps the weights inside
model.onnx (external_data=False); by default torch writes them beside it (model.onnx.data) as it
does for any real-size model. Writes OUT_DIR/{resnet,encoder}/model.onnx and the dataloaders.
torchvision is not needed: the blocks are written here.
"""

from __future__ import annotations

import argparse
import shutil
import warnings
from pathlib import Path

import torch
from torch import nn

HERE = Path(__file__).resolve().parent
VOCAB, HIDDEN, LAYERS, HEADS = 1000, 128, 2, 4


class BasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.down = (
            nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
            if stride != 1 or cin != cout
            else nn.Identity()
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        return torch.relu(self.bn2(self.conv2(out)) + self.down(x))


class ResNet18(nn.Module):
    """ResNet-18's layout (He et al. 2015, table 1): 7x7 stem, four stages of two basic blocks."""

    def __init__(self, classes: int = 1000) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, 64, 7, 2, 3, bias=False),
            nn.BatchNorm2d(64),
            nn.ReLU(),
            nn.MaxPool2d(3, 2, 1),
        )
        blocks, cin = [], 64
        for cout, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
            blocks += [BasicBlock(cin, cout, stride), BasicBlock(cout, cout, 1)]
            cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Linear(512, classes)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        x = self.blocks(self.stem(image))
        return self.head(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


class Encoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(VOCAB, HIDDEN)
        self.position = nn.Embedding(512, HIDDEN)
        layer = nn.TransformerEncoderLayer(HIDDEN, HEADS, 4 * HIDDEN, dropout=0.0, batch_first=True)
        self.layers = nn.ModuleList([layer] + [_copy(layer) for _ in range(LAYERS - 1)])

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        positions = torch.arange(input_ids.shape[1], device=input_ids.device).unsqueeze(0)
        x = self.embed(input_ids) + self.position(positions)
        mask = attention_mask.unsqueeze(-1).to(x.dtype)
        # Written out (no src_key_padding_mask): the fused path's nested tensors do not export.
        for layer in self.layers:
            attended, _ = layer.self_attn(x, x, x, need_weights=False)
            x = layer.norm1(x + attended * mask)
            x = layer.norm2(x + layer.linear2(torch.relu(layer.linear1(x))))
        pooled = (x * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        return x, pooled


def _copy(layer: nn.Module) -> nn.Module:
    import copy

    clone = copy.deepcopy(layer)
    for p in clone.parameters():
        nn.init.normal_(p, std=0.02)
    return clone


def export(
    model: nn.Module, args: tuple[torch.Tensor, ...], path: Path, names: dict, single: bool
) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model.eval(),
            args,
            str(path),
            input_names=names["inputs"],
            output_names=names["outputs"],
            dynamic_shapes=names["dynamic"],
            external_data=not single,
        )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("--single-file", action="store_true")
    opts = parser.parse_args()
    torch.manual_seed(0)
    torch.set_num_threads(1)
    batch = torch.export.Dim("batch", min=1, max=1024)
    sequence = torch.export.Dim("sequence", min=2, max=512)
    resnet = ResNet18()
    assert sum(p.numel() for p in resnet.parameters()) >= 10_000_000
    export(
        resnet,
        (torch.randn(2, 3, 224, 224),),
        opts.out / "resnet" / "model.onnx",
        {"inputs": ["image"], "outputs": ["logits"], "dynamic": {"image": {0: batch}}},
        opts.single_file,
    )
    ids = torch.randint(1, VOCAB, (2, 16))
    export(
        Encoder(),
        (ids, torch.ones_like(ids)),
        opts.out / "encoder" / "model.onnx",
        {
            "inputs": ["input_ids", "attention_mask"],
            "outputs": ["hidden", "pooled"],
            "dynamic": {
                "input_ids": {0: batch, 1: sequence},
                "attention_mask": {0: batch, 1: sequence},
            },
        },
        opts.single_file,
    )
    for name in ("resnet", "encoder"):
        shutil.copy(HERE / f"dataloader_{name}.py", opts.out / name / "dataloader.py")


if __name__ == "__main__":
    main()
