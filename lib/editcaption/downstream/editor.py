"""A small instruction-conditioned image editor: the CPU stand-in for Step1X-Edit in table 5.

Choice: a direct text-conditioned image-to-image network, not a tiny InstructPix2Pix. A diffusion
editor learns a denoiser and samples through many steps; at the size that trains on 2 CPU cores in a
minute it makes noisy images whose errors would swamp the difference between captioners. A regression
network maps (source, instruction) to the target in one deterministic forward pass, learns from a few
hundred triplets in a minute, and its outputs compare to the known targets pixel by pixel. What table 5
measures carries over: the editor learns the meaning of instruction words only from what the captioner
wrote, so a wrong colour or direction in the training captions teaches a wrong edit.

The network: a word-level text encoder (embedding + bidirectional GRU) whose summary vector modulates
every block of a small conv U-Net through FiLM (per-channel scale and shift). The U-Net starts with a
2x pixel-unshuffle (no full-resolution convolutions: most of the cost) and predicts a residual added
to the source, so an untrained editor starts at the identity edit. Loss: L1 with the pixels the edit
changes weighted up, plus optional SSIM.
"""
from __future__ import annotations

import hashlib
import io
import json
import math
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.nn import functional as F
from torchmetrics.functional.image import structural_similarity_index_measure

from editcaption import vocab as world
from editcaption.records import RecordError

PAD, UNK = "<pad>", "<unk>"
WEIGHTS_FILE, CONFIG_FILE = "editor.safetensors", "editor_config.json"
CHANGED_LEVEL = 24  # a pixel is changed by the edit when a channel differs by more than this (0-255)
_WORD = re.compile(r"[a-z]+|\d+")


@dataclass
class EditorConfig:
    """Architecture and training settings (saved beside the weights)."""

    channels: tuple = (32, 64, 96)  # U-Net widths at 1/2, 1/4 and 1/8 of the image side
    embed_dim: int = 48  # word embedding size
    text_dim: int = 64  # GRU hidden size per direction
    max_words: int = 48  # longer instructions are cut to their first words
    steps: int = 300  # optimizer steps
    batch_size: int = 16
    learning_rate: float = 2e-3
    weight_decay: float = 1e-4
    changed_weight: float = 4.0  # pixels the edit changes weigh 1 + this in the L1 (the rest is mostly copying)
    ssim_weight: float = 0.0  # loss = weighted L1 + ssim_weight * (1 - SSIM)
    seed: int = 0

    def __post_init__(self):
        if isinstance(self.channels, str):  # "32,64,96", as notebook 07's editor_channels gives them
            try:
                self.channels = tuple(int(c) for c in self.channels.split(",") if c.strip())
            except ValueError:
                raise ValueError(f"channels {self.channels!r}: expected three comma-separated integers") from None
        self.channels = tuple(int(c) for c in self.channels)
        if len(self.channels) != 3 or min(self.channels) < 4:
            raise ValueError(f"channels must be three widths >= 4, got {self.channels}")
        if self.steps < 1 or self.batch_size < 1 or self.max_words < 1:
            raise ValueError(f"steps, batch_size and max_words must be >= 1 (got {self.steps}, {self.batch_size}, "
                             f"{self.max_words})")


# ------------------------------------------------------------------------------------------ text

def words(text: str) -> list[str]:
    """Lower-case word tokens of an instruction (letters and digit runs)."""
    return _WORD.findall((text or "").lower())


def world_words() -> set[str]:
    """Every word of the synthetic world's vocabulary (objects, colours, directions, synonyms, ...)."""
    names = [*world.OBJECTS, *world.COLORS, *world.BACKGROUNDS, *world.TEXTURES, *world.STYLES, *world.SIGN_WORDS,
             *world.OPPOSITE, *(s for alts in world.SYNONYMS.values() for s in alts)]
    return {w for name in names for w in words(name)}


class Vocabulary:
    """Word -> index; index 0 pads, 1 stands for a word outside the vocabulary."""

    def __init__(self, tokens: Sequence[str]):
        self.tokens = [PAD, UNK] + [t for t in tokens if t not in (PAD, UNK)]
        self.index = {t: i for i, t in enumerate(self.tokens)}

    @classmethod
    def build(cls, instructions: Iterable[str]) -> "Vocabulary":
        """The training instructions' words plus the world's vocabulary, sorted (deterministic)."""
        seen = world_words()
        for text in instructions:
            seen.update(words(text))
        return cls(sorted(seen))

    def __len__(self) -> int:
        return len(self.tokens)

    def encode(self, texts: Sequence[str], max_words: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(ids [B, T], lengths [B]); an empty instruction becomes one <unk> so the GRU has a step."""
        rows = [[self.index.get(w, 1) for w in words(t)][:max_words] or [1] for t in texts]
        ids = torch.zeros(len(rows), max(len(r) for r in rows), dtype=torch.long)
        for i, r in enumerate(rows):
            ids[i, : len(r)] = torch.tensor(r)
        return ids, torch.tensor([len(r) for r in rows])


# ------------------------------------------------------------------------------------------ network

class TextEncoder(nn.Module):
    """Embedding + bidirectional GRU; the two final hidden states concatenated."""

    def __init__(self, n_words: int, embed_dim: int, text_dim: int):
        super().__init__()
        self.embed = nn.Embedding(n_words, embed_dim, padding_idx=0)
        self.gru = nn.GRU(embed_dim, text_dim, batch_first=True, bidirectional=True)

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        packed = nn.utils.rnn.pack_padded_sequence(self.embed(ids), lengths.cpu(), batch_first=True,
                                                   enforce_sorted=False)
        _, hidden = self.gru(packed)
        return torch.cat([hidden[0], hidden[1]], dim=1)


class FiLMBlock(nn.Module):
    """conv3x3 → GroupNorm → FiLM(text) → SiLU, twice; the text sets each channel's scale and shift."""

    def __init__(self, c_in: int, c_out: int, text_width: int):
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(c_in, c_out, 3, padding=1), nn.Conv2d(c_out, c_out, 3, padding=1)
        self.norm1, self.norm2 = nn.GroupNorm(min(8, c_out), c_out), nn.GroupNorm(min(8, c_out), c_out)
        self.film = nn.Linear(text_width, 4 * c_out)
        nn.init.zeros_(self.film.weight)
        nn.init.zeros_(self.film.bias)

    def forward(self, x: torch.Tensor, text: torch.Tensor) -> torch.Tensor:
        g1, b1, g2, b2 = self.film(text)[:, :, None, None].chunk(4, dim=1)
        x = F.silu(self.norm1(self.conv1(x)) * (1 + g1) + b1)
        return F.silu(self.norm2(self.conv2(x)) * (1 + g2) + b2)


class InstructionEditor(nn.Module):
    """(source [B,3,H,W] in 0..1, instruction ids) -> edited image [B,3,H,W]; H and W multiples of 8."""

    def __init__(self, n_words: int, config: EditorConfig):
        super().__init__()
        c1, c2, c3 = config.channels
        width = 2 * config.text_dim
        self.text = TextEncoder(n_words, config.embed_dim, config.text_dim)
        self.enc1 = FiLMBlock(12, c1, width)  # after the 2x pixel-unshuffle: 1/2 side, 12 channels
        self.enc2 = FiLMBlock(c1, c2, width)  # 1/4
        self.mid = FiLMBlock(c2, c3, width)  # 1/8
        self.dec2 = FiLMBlock(c3 + c2, c2, width)
        self.dec1 = FiLMBlock(c2 + c1, c1, width)
        self.out = nn.Conv2d(c1, 12, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def forward(self, source: torch.Tensor, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        if source.shape[-1] % 8 or source.shape[-2] % 8:
            raise ValueError(f"image sides must be multiples of 8, got {tuple(source.shape[-2:])}")
        text = self.text(ids, lengths)
        x = F.pixel_unshuffle(source * 2 - 1, 2)
        e1 = self.enc1(x, text)
        e2 = self.enc2(F.avg_pool2d(e1, 2), text)
        m = self.mid(F.avg_pool2d(e2, 2), text)
        d2 = self.dec2(torch.cat([F.interpolate(m, scale_factor=2.0, mode="nearest"), e2], dim=1), text)
        d1 = self.dec1(torch.cat([F.interpolate(d2, scale_factor=2.0, mode="nearest"), e1], dim=1), text)
        return source + F.pixel_shuffle(self.out(d1), 2)


# ------------------------------------------------------------------------------------------ images and data

def to_array(image: Any, *, row: Any = None, field: str = "image") -> np.ndarray:
    """An RGB uint8 array [H, W, 3] from a PIL image, an image path, `datasets`' {"bytes", "path"} or an array."""
    try:
        if isinstance(image, np.ndarray):
            array = image
        else:
            if isinstance(image, Mapping):
                image = io.BytesIO(image["bytes"]) if image.get("bytes") else image.get("path")
            if isinstance(image, (str, Path, io.BytesIO)):
                image = Image.open(image)
            if not isinstance(image, Image.Image):
                raise RecordError(f"expected an image, found {type(image).__name__}", row=row, field=field)
            array = np.asarray(image.convert("RGB"))
    except OSError as err:
        raise RecordError(f"cannot read the image: {err}", row=row, field=field) from err
    if array.ndim != 3 or array.shape[2] != 3 or array.dtype != np.uint8:
        raise RecordError(f"expected an RGB uint8 image, found shape {array.shape} {array.dtype}", row=row, field=field)
    return array


def _tensor(arrays: Sequence[np.ndarray]) -> torch.Tensor:
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float() / 255


@dataclass
class Triplets:
    """Training data in memory: uint8 sources and targets [N, H, W, 3] and the instructions."""

    ids: list
    sources: np.ndarray
    targets: np.ndarray
    instructions: list

    @classmethod
    def from_rows(cls, rows: Iterable[Mapping[str, Any]]) -> "Triplets":
        """From dicts {id, source_image, target_image, instruction}; all images of one size."""
        ids, sources, targets, texts = [], [], [], []
        for index, row in enumerate(rows):
            rid = row.get("id", index)
            for key in ("source_image", "target_image", "instruction"):
                if key not in row:
                    raise RecordError("missing field", row=rid, field=key)
            if not isinstance(row["instruction"], str):
                raise RecordError(f"expected str, found {type(row['instruction']).__name__}", row=rid,
                                  field="instruction")
            src = to_array(row["source_image"], row=rid, field="source_image")
            tgt = to_array(row["target_image"], row=rid, field="target_image")
            if sources and (src.shape != sources[0].shape or tgt.shape != sources[0].shape):
                raise RecordError(f"images of {src.shape[:2]} / {tgt.shape[:2]}, the first row's are "
                                  f"{sources[0].shape[:2]}", row=rid, field="source_image")
            ids.append(str(rid))
            sources.append(src)
            targets.append(tgt)
            texts.append(row["instruction"])
        if not ids:
            raise ValueError("no triplets to train on")
        return cls(ids, np.stack(sources), np.stack(targets), texts)

    def __len__(self) -> int:
        return len(self.ids)

    def fingerprint(self) -> str:
        digest = hashlib.sha1()
        for part in (json.dumps([self.ids, self.instructions]).encode(), self.sources.tobytes(), self.targets.tobytes()):
            digest.update(part)
        return digest.hexdigest()[:16]


# ------------------------------------------------------------------------------------------ SSIM loss

def ssim_map(a: torch.Tensor, b: torch.Tensor, *, size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Per-pixel SSIM of two batches [B, C, H, W] in 0..1 (torchmetrics; Gaussian window `size`, `sigma`,
    K1 0.01, K2 0.03), on the valid region: torchmetrics computes its map on a reflect-padded image and
    averages the padded border into its scalar; the border is cropped here, as in Wang et al. (2004) and
    scikit-image, so a window never reads pixels the image does not have. Differentiable (the editor's loss)."""
    _, full = structural_similarity_index_measure(a, b, gaussian_kernel=True, sigma=sigma, kernel_size=size,
                                                  data_range=1.0, return_full_image=True)
    border = (size - 1) // 2
    return full[..., border:-border, border:-border]


# ------------------------------------------------------------------------------------------ training

@dataclass
class TrainedEditor:
    """An editor with its vocabulary, settings and training record; `edit` applies it, `save`/`load` store it."""

    model: InstructionEditor
    vocab: Vocabulary
    config: EditorConfig
    history: list = field(default_factory=list)  # [step, loss] every logged step
    info: dict = field(default_factory=dict)  # seconds, n_triplets, data fingerprint, vocabulary coverage

    @torch.no_grad()
    def edit(self, sources: Sequence[Any], instructions: Sequence[str], *, batch_size: int = 32) -> list[np.ndarray]:
        """Edited images (RGB uint8 arrays), one per (source, instruction)."""
        if len(sources) != len(instructions):
            raise ValueError(f"{len(sources)} images for {len(instructions)} instructions")
        self.model.eval()
        out = []
        for start in range(0, len(sources), batch_size):
            chunk = [to_array(s, row=start + i, field="source_image") for i, s in enumerate(sources[start:start + batch_size])]
            ids, lengths = self.vocab.encode(instructions[start:start + batch_size], self.config.max_words)
            pred = self.model(_tensor(chunk), ids, lengths).clamp(0, 1)
            out += list((pred.permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8))
        return out

    def save(self, out_dir: str | Path) -> Path:
        """editor.safetensors (weights) + editor_config.json (settings, vocabulary, history, info)."""
        from safetensors.torch import save_file

        out_dir = Path(out_dir)
        out_dir.mkdir(parents=True, exist_ok=True)
        save_file({k: v.contiguous() for k, v in self.model.state_dict().items()}, str(out_dir / WEIGHTS_FILE))
        meta = {"config": asdict(self.config), "vocab": self.vocab.tokens, "history": self.history, "info": self.info}
        (out_dir / CONFIG_FILE).write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
        return out_dir

    @classmethod
    def load(cls, folder: str | Path) -> "TrainedEditor":
        from safetensors.torch import load_file

        folder = Path(folder)
        for name in (WEIGHTS_FILE, CONFIG_FILE):
            if not (folder / name).is_file():
                raise FileNotFoundError(f"{folder / name} not found: not a saved editor (train_editor writes it)")
        meta = json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8"))
        config = EditorConfig(**meta["config"])
        vocab = Vocabulary(meta["vocab"][2:])
        model = InstructionEditor(len(vocab), config)
        model.load_state_dict(load_file(str(folder / WEIGHTS_FILE)))
        return cls(model.eval(), vocab, config, meta["history"], meta["info"])


def train_editor(triplets: Triplets | Iterable[Mapping[str, Any]], config: EditorConfig | None = None, *,
                 out_dir: str | Path | None = None, progress: bool = True, log_every: int = 10,
                 desc: str = "editor") -> TrainedEditor:
    """Train an editor on (source, instruction) -> target; the same data and config give the same weights.

    With `out_dir`, the editor is saved there; a folder already holding an editor trained on the same
    data with the same config is loaded instead of retrained (printed)."""
    from tqdm.auto import tqdm

    config = config or EditorConfig()
    data = triplets if isinstance(triplets, Triplets) else Triplets.from_rows(triplets)
    fingerprint = data.fingerprint()
    if out_dir is not None and (Path(out_dir) / CONFIG_FILE).is_file():
        saved = json.loads((Path(out_dir) / CONFIG_FILE).read_text(encoding="utf-8"))
        if saved["info"].get("fingerprint") == fingerprint and saved["config"] == json.loads(json.dumps(asdict(config))):
            print(f"{desc}: reusing the editor in {out_dir} (same data and settings)")
            return TrainedEditor.load(out_dir)
    torch.manual_seed(config.seed)
    vocab = Vocabulary.build(data.instructions)
    model = InstructionEditor(len(vocab), config)
    ids, lengths = vocab.encode(data.instructions, config.max_words)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    warmup = max(1, config.steps // 20)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (
        1 + math.cos(math.pi * min(s, config.steps) / config.steps)))
    generator = torch.Generator().manual_seed(config.seed)
    order = torch.empty(0, dtype=torch.long)
    history, window = [], []
    start = time.perf_counter()
    model.train()
    bar = tqdm(range(config.steps), desc=desc, disable=not progress, mininterval=3.0)
    for step in bar:
        if len(order) < config.batch_size:  # a fresh permutation each epoch
            order = torch.cat([order, torch.randperm(len(data), generator=generator)])
        batch, order = order[: config.batch_size], order[config.batch_size:]
        index = batch.numpy()
        source, target = _tensor(data.sources[index]), _tensor(data.targets[index])
        width = int(lengths[batch].max())
        pred = model(source, ids[batch, :width], lengths[batch])
        weight = 1 + config.changed_weight * ((source - target).abs().amax(dim=1, keepdim=True) > CHANGED_LEVEL / 255)
        loss = (weight * (pred - target).abs()).sum() / (3 * weight.sum())
        if config.ssim_weight:
            loss = loss + config.ssim_weight * (1 - ssim_map(pred.clamp(0, 1), target).mean())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        window.append(loss.item())
        if (step + 1) % log_every == 0 or step + 1 == config.steps:
            history.append([step + 1, float(np.mean(window))])
            bar.set_postfix(loss=f"{history[-1][1]:.4f}")
            window = []
    bar.close()
    info = {"seconds": time.perf_counter() - start, "n_triplets": len(data), "fingerprint": fingerprint,
            "vocab_size": len(vocab), "parameters": sum(p.numel() for p in model.parameters()),
            "first_loss": history[0][1], "final_loss": history[-1][1], "threads": torch.get_num_threads()}
    trained = TrainedEditor(model.eval(), vocab, config, history, info)
    if out_dir is not None:
        trained.save(out_dir)
    return trained
