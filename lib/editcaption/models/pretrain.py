"""Tiny-world pre-training: teach the tiny Qwen3-VL to see before SFT teaches it to write instructions.

The paper starts from Qwen3-VL-Instruct, which already describes images. A randomly initialised tiny
Qwen3-VL does not, and learns the edit-instruction task from the text alone. This stage trains it, with
TRL's SFTTrainer, to DESCRIBE synthetic grid images: one image ("gray background; a red striped star at
the top left; ...") or two ("Image 1: ... Image 2: ... Differences: ..."), where the second image of a pair
is the first with one object moved, recoloured, added or removed, a new background, or a mirror/rotation of
the view, and the differences state that change as a fact. It never sees the instruction prompt or an
instruction, so "base < SFT" still holds.

The vision encoder stays at its random initialisation (only the mergers and the language model train):
trained from scratch, it collapses to the image's global colour and the object colours become unreadable
(`vision_probe`). Samples are drawn on the fly from (seed, index): the same seed gives the same batches
and losses.

`compare_rate` asks a share of the pairs for the differences alone ("What differs between Image 1 and
Image 2?" -> "The red star moves down, ..."), so the comparison has to be read off the vision tokens rather
than off the model's own two descriptions. The shipped base is two stages: 6000 steps without it (stage1/),
then 2000 steps continuing that checkpoint at compare_rate 0.5 (`init_from`). Measured (issue 5): SFT from
stage 1 swapped left and right in about half the stated moves on every seed; SFT from stage 2 at a learning
rate that keeps what the base learned (5e-4) named the direction right on both axes (see README).

    editcaption pretrain-tiny --preset demo --steps 6000 --seed 0 --out S1   # stage1/
    editcaption pretrain-tiny --preset demo --steps 2000 --seed 0 --out S2 --learning-rate 0.001 \
        --curriculum-ratio 0 --compare-rate 0.5 --init-from S1/final          # the shipped base = S2/final
"""
from __future__ import annotations

import json
import os
import random
import re
import subprocess
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

from editcaption.models.loading import load_model_and_processor
from editcaption.models.tiny import build_tiny_model
from editcaption.vocab import BACKGROUNDS, COLORS, SHAPES, TEXTURES
from editcaption.world import synthetic as syn
from editcaption.world import scenes

SINGLE_PROMPT = "Describe the image: background, then every object with its size, colour, texture, shape and place."
PAIR_PROMPT = ("Describe Image 1 and Image 2: background, then every object with its size, colour, texture, shape and place; "
               "then the differences.")
COMPARE_PROMPT = "What differs between Image 1 and Image 2?"
PAIR_CHANGES = ("move", "color", "add", "remove", "background", "mirror", "rotate")
RECIPE_FILE = "RECIPE.json"
ASSET_DIR = Path(__file__).resolve().parent.parent / "assets" / "tiny-world-base"
LOGGED_LOSSES = 20
PAIR_RATE = 0.8  # share of image-pair samples once the single-object curriculum is over (the shipped base's)
CURRICULUM_RATIO = 0.33  # share of the steps that see single one-object images only (the shipped base's)
COMPARE_RATE = 0.0  # share of the pairs asked for the differences alone, without describing the images first
# A recipe's first steps are replayed (tests; RECIPE.json's "replay") in a fresh process on one thread with the CPU
# kernels pinned to code paths every x86-64 machine runs alike: ATen's unvectorised kernels, MKL's COMPATIBLE
# branch (conditional numerical reproducibility), oneDNN off. With each machine's own kernels the continued stage's
# 3rd-5th losses moved by up to 1e-3 relative (measured on one CPU: oneDNN limited to AVX2 gave the 0.971806 another
# machine logged for the shipped 0.970869; ATen at AVX2 or MKL at COMPATIBLE moved them by 6e-4 each).
REPLAY_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "ATEN_CPU_CAPABILITY": "default", "MKL_CBWR": "COMPATIBLE"}
REPLAY_STEPS = 5


# ----------------------------------------------------------------------------------------------
# Descriptions


_ROW_WORDS = {2: ("top", "bottom"), 3: ("top", "", "bottom"), 4: ("top", "upper middle", "lower middle", "bottom")}
_COL_WORDS = {2: ("left", "right"), 3: ("left", "", "right"), 4: ("left", "center left", "center right", "right")}


def position_words(row: int, col: int, n: int) -> str:
    """Viewer's-perspective place of grid cell (row, col) on an n×n grid: "top left", "center", "bottom"..."""
    if n not in _ROW_WORDS:
        raise ValueError(f"position words exist for 2×2 to 4×4 grids (64–128 px with 32 px cells), not {n}×{n}")
    return " ".join(w for w in (_ROW_WORDS[n][row], _COL_WORDS[n][col]) if w) or "center"


def _viewed(obj: scenes.Obj, view: tuple, n: int) -> tuple[tuple[int, int], str]:
    """(cell, arrow direction) of an object after a mirror or rotation of the whole image."""
    (row, col), pointing = obj.pos, obj.pointing
    if not view:
        return (row, col), pointing
    op, direction = view
    if op == "mirror" and direction == "horizontal":
        return (row, n - 1 - col), {"left": "right", "right": "left"}.get(pointing, pointing)
    if op == "mirror":
        return (n - 1 - row, col), {"up": "down", "down": "up"}.get(pointing, pointing)
    if op == "rotate" and direction == "clockwise":
        return (col, n - 1 - row), {"up": "right", "right": "down", "down": "left", "left": "up"}.get(pointing, pointing)
    if op == "rotate":
        return (n - 1 - col, row), {"up": "left", "left": "down", "down": "right", "right": "up"}.get(pointing, pointing)
    raise ValueError(f"no description for the view {view!r}")


def scene_facts(scene: scenes.Scene, n: int) -> dict:
    """What an image shows, as the description states it: background and objects in reading order."""
    objects = []
    for obj in scene.objects:
        (row, col), pointing = _viewed(obj, scene.view, n)
        objects.append({"uid": obj.uid, "row": row, "col": col, "place": position_words(row, col, n), "color": obj.color,
                        "shape": obj.shape, "texture": obj.texture, "size": obj.size, "pointing": pointing,
                        "word": obj.word})
    objects.sort(key=lambda o: (o["row"], o["col"]))
    return {"background": scene.background, "objects": objects}


def _object_words(o: dict) -> str:
    """'small red striped star', 'blue arrow pointing left', 'black sign saying SALE'."""
    words = (["small"] if o["size"] == "small" else []) + [o["color"]]
    words += [o["texture"]] if o["texture"] != "solid" else []
    words.append(o["shape"])
    if o["shape"] == "arrow":
        words.append(f"pointing {o['pointing']}")
    if o["shape"] == "sign":
        words.append(f"saying {o['word']}")
    return " ".join(words)


def describe(facts: dict) -> str:
    """Background, then each object in reading order, place first:
    'gray background; top left: small red striped star; center: blue sign saying OPEN.'"""
    clauses = [f"{facts['background']} background"] + [f"{o['place']}: {_object_words(o)}" for o in facts["objects"]]
    return "; ".join(clauses) + "."


def move_direction(before: dict, after: dict) -> str:
    """Viewer's-perspective direction from one object fact to another: 'left', 'down', 'up and right'."""
    vertical = {1: "down", -1: "up"}.get((after["row"] > before["row"]) - (after["row"] < before["row"]), "")
    horizontal = {1: "right", -1: "left"}.get((after["col"] > before["col"]) - (after["col"] < before["col"]), "")
    return " and ".join(w for w in (vertical, horizontal) if w)


def describe_differences(before: dict, after: dict, view: tuple = ()) -> str:
    """What differs between two described images, as facts (not as an instruction): 'the red star moves down
    and right, from the top left to the right.', 'the whole view is mirrored horizontally.' Objects are
    matched by `uid`."""
    if view:
        op, direction = view
        return f"the whole view is {'mirrored ' + direction + 'ly' if op == 'mirror' else 'rotated ' + direction}."
    said = []
    if before["background"] != after["background"]:
        said.append(f"the background turns from {before['background']} to {after['background']}")
    first = {o["uid"]: o for o in before["objects"]}
    second = {o["uid"]: o for o in after["objects"]}
    for uid, o in first.items():
        if uid not in second:
            said.append(f"the {_object_words(o)} at the {o['place']} disappears")
        elif second[uid]["place"] != o["place"]:
            said.append(f"the {_object_words(o)} moves {move_direction(o, second[uid])}, "
                        f"from the {o['place']} to the {second[uid]['place']}")
        elif second[uid]["color"] != o["color"]:
            said.append(f"the {_object_words(o)} at the {o['place']} turns {second[uid]['color']}")
    said += [f"a {_object_words(o)} appears at the {o['place']}" for uid, o in second.items() if uid not in first]
    return "; ".join(said) + "."


_CHANGE_WORDS = {"moves": " moves ", "recolour": " turns ", "disappears": " disappears", "appears": " appears at ",
                 "background": " background turns ", "mirror": " mirrored ", "rotate": " rotated "}


def change_kinds(differences: str) -> tuple[str, ...]:
    """The kinds of change a differences sentence names, in a fixed order ('moves', 'recolour', ...)."""
    text = f" {differences.lower()} "
    objects_only = text.replace(" background turns ", " ")
    return tuple(kind for kind, words in _CHANGE_WORDS.items()
                 if words in (objects_only if kind == "recolour" else text))


def _pair_target(rng: random.Random, layout: scenes.GridLayout, scene: scenes.Scene) -> scenes.Scene | None:
    """The second image of a pair: the scene with one change (None when the change does not fit)."""
    target = scene.copy()
    change = rng.choice(PAIR_CHANGES)
    if change == "move":
        obj = rng.choice(target.objects)
        return target if layout.place(rng, target, obj) else None
    if change == "color":
        obj = rng.choice(target.objects)
        options = [c for c in COLORS if c != obj.color and (obj.shape, c) not in target.identities()]
        obj.color = rng.choice(options)
        return target
    if change == "add":
        if len(target.objects) >= layout.capacity:
            return None
        shape = rng.choice(SHAPES)
        color = rng.choice([c for c in COLORS if (shape, c) not in target.identities()])
        obj = scenes.Obj(target.next_uid(), shape, color, rng.choice(TEXTURES),
                      pointing=rng.choice(scenes.DIRECTIONS) if shape == "arrow" else "")
        if not layout.place(rng, target, obj):
            return None
        target.objects.append(obj)
        return target
    if change == "remove":
        if len(target.objects) < 2:
            return None
        target.objects.remove(rng.choice(target.objects))
        return target
    if change == "background":
        target.background = rng.choice([b for b in BACKGROUNDS if b != scene.background])
        return target
    directions = ("horizontal", "vertical") if change == "mirror" else ("clockwise", "counterclockwise")
    return replace(target, view=(change, rng.choice(directions)))


def make_sample(seed: int, index: int, layout: scenes.GridLayout, *, pair_rate: float = 0.4,
                max_objects: int | None = None, compare_rate: float = 0.0) -> dict:
    """Sample `index` of the stream: {images, prompt, completion} (TRL vision rows) plus its `facts`. A share
    `compare_rate` of the pairs asks for the differences alone (`COMPARE_PROMPT`) instead of both descriptions."""
    rng = random.Random(f"tiny-world-{seed}-{index}")
    top = min(max_objects or layout.capacity, layout.capacity)
    while True:
        scene = syn.random_scene(rng, layout, rng.randint(1, top), [], small=False)
        if rng.random() >= pair_rate:
            facts = [scene_facts(scene, layout.n)]
            images, prompt, text = [scenes.render(scene, layout)], SINGLE_PROMPT, describe(facts[0])
            break
        target = _pair_target(rng, layout, scene)
        if target is None:
            continue
        facts = [scene_facts(scene, layout.n), scene_facts(target, layout.n)]
        if facts[0] == facts[1]:
            continue  # e.g. a vertical mirror of one row: nothing to describe differently
        images = [scenes.render(scene, layout), scenes.render(target, layout)]
        differences = describe_differences(*facts, target.view)
        if compare_rate and rng.random() < compare_rate:
            prompt, text = COMPARE_PROMPT, differences[0].upper() + differences[1:]
        else:
            prompt = PAIR_PROMPT
            text = f"Image 1: {describe(facts[0])} Image 2: {describe(facts[1])} Differences: {differences}"
        break
    content = [{"type": "image"} for _ in images] + [{"type": "text", "text": prompt}]
    return {
        "images": images,
        "prompt": [{"role": "user", "content": content}],
        "completion": [{"role": "assistant", "content": [{"type": "text", "text": text}]}],
        "facts": facts,
    }


def sample_stream(seed: int, size: int, *, pair_rate: float = 0.4, curriculum_samples: int = 0, cell: int = 32,
                  compare_rate: float = 0.0):
    """A `datasets.IterableDataset` of training rows, in a fixed order; the first `curriculum_samples`
    rows hold single images of one object only (the rest the full mix)."""
    import datasets

    def rows(seed, size, pair_rate, curriculum_samples, cell, compare_rate):
        layout = scenes.make_layout("grid", size, cell)
        index = 0
        while True:
            easy = index < curriculum_samples
            row = make_sample(seed, index, layout, pair_rate=0.0 if easy else pair_rate,
                              max_objects=1 if easy else None, compare_rate=compare_rate)
            row.pop("facts")
            yield row
            index += 1

    features = datasets.Features({
        "images": datasets.List(datasets.Image()),
        "prompt": [{"role": datasets.Value("string"),
                    "content": [{"type": datasets.Value("string"), "text": datasets.Value("string")}]}],
        "completion": [{"role": datasets.Value("string"),
                        "content": [{"type": datasets.Value("string"), "text": datasets.Value("string")}]}],
    })
    kwargs = {"seed": seed, "size": size, "pair_rate": pair_rate, "curriculum_samples": curriculum_samples,
              "cell": cell, "compare_rate": compare_rate}
    return datasets.IterableDataset.from_generator(rows, gen_kwargs=kwargs, features=features)


def _strip_none(messages: list[dict]) -> list[dict]:
    """`datasets` fills absent struct fields with None (text: None on image parts); the chat template wants them absent."""
    return [{**m, "content": [{k: v for k, v in part.items() if v is not None} for part in m["content"]]}
            for m in messages]


# ----------------------------------------------------------------------------------------------
# Reading a description back and scoring it


_CLAUSE = re.compile(r"^([a-z ]+): (?:(small) )?(\w+) (?:(\w+) )?(\w+)(?: pointing \w+)?(?: saying \w+)?$")


def parse_description(text: str) -> dict:
    """Facts of one generated description (the inverse of `describe`; unreadable clauses are skipped)."""
    clauses = [c.strip() for c in text.strip().rstrip(".").split(";")]
    background = clauses[0].removesuffix(" background").strip() if clauses and clauses[0].endswith("background") else ""
    objects = []
    for clause in clauses[1:]:
        match = _CLAUSE.match(clause)
        if match:
            place, small, color, texture, shape = match.groups()
            objects.append({"color": color, "shape": shape, "texture": texture or "solid",
                            "size": "small" if small else "large", "place": place.strip()})
    return {"background": background, "objects": objects}


_PLACE_AXES = {position_words(r, c, n): (_ROW_WORDS[n][r] or "middle", _COL_WORDS[n][c] or "center")
               for n in _ROW_WORDS for r in range(n) for c in range(n)}


def place_axes(place: str) -> tuple[str, str]:
    """(row word, column word) of a place: "top left" -> ("top", "left"), "right" -> ("middle", "right");
    ("", "") for words that name no grid place, so an unreadable place never counts as the centre."""
    return _PLACE_AXES.get(place, ("", ""))


def score_description(truth: dict, text: str) -> dict[str, list[bool]]:
    """Exact match per fact: background; object count; per true object, whether its colour, shape, texture,
    size, place, and the place's row and column word are among the stated objects' (as multisets: each
    stated value matches once), and whether its colour and shape are stated at its place ("position",
    the strictest)."""
    from collections import Counter

    said = parse_description(text)
    out: dict[str, list[bool]] = {"background": [said["background"] == truth["background"]],
                                  "count": [len(said["objects"]) == len(truth["objects"])]}
    views = {key: (lambda o, key=key: o[key]) for key in ("color", "shape", "texture", "size", "place")}
    views["row"] = lambda o: place_axes(o["place"])[0]
    views["column"] = lambda o: place_axes(o["place"])[1]
    for key, view in views.items():
        left = Counter(view(o) for o in said["objects"])
        hits = []
        for o in truth["objects"]:
            hits.append(left[view(o)] > 0)
            left[view(o)] -= 1
        out[key] = hits
    stated = {(o["color"], o["shape"], o["place"]) for o in said["objects"]}
    out["position"] = [(o["color"], o["shape"], o["place"]) in stated for o in truth["objects"]]
    return out


def _generate(model, processor, conversations: list, images: list, *, max_new_tokens: int, batch_size: int) -> list[str]:
    import torch

    texts = []
    for start in range(0, len(conversations), batch_size):
        chunk = conversations[start : start + batch_size]
        prompts = processor.apply_chat_template(chunk, add_generation_prompt=True, tokenize=False)
        batch_images = [im for ims in images[start : start + batch_size] for im in ims]
        inputs = processor(text=prompts, images=batch_images, return_tensors="pt", padding=True, padding_side="left")
        with torch.no_grad():
            out = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
        texts += [t.strip() for t in processor.batch_decode(out[:, inputs["input_ids"].shape[1]:],
                                                             skip_special_tokens=True)]
    return texts


def evaluate_descriptions(model, processor, *, n: int = 200, seed: int = 10_000, size: int = 96,
                          batch_size: int = 32, max_new_tokens: int = 64, max_objects: int | None = None,
                          pairs: bool = False, compare: bool = False) -> dict[str, Any]:
    """Held-out description accuracy (exact match per fact) on n fresh samples of stream `seed` (with 1 to
    `max_objects` objects; default: up to the layout's capacity). Single images by default; with `pairs`,
    image pairs described as "Image 1: ... Image 2: ...", each image scored on its own (keys `image1 ...`,
    `image2 ...`; a reply without " Image 2: " leaves image 2 undescribed: all its facts wrong; `differences`
    is the exact match of the closing "Differences: ..." clause). With `compare`, pairs asked for the differences
    alone (`COMPARE_PROMPT`): keys `differences` (exact match) and `change_kind` (moves, turns a colour,
    appears, ... named right, see `change_kinds`)."""
    layout = scenes.make_layout("grid", size)
    pairs = pairs or compare
    samples = [make_sample(seed, i, layout, pair_rate=1.0 if pairs else 0.0, max_objects=max_objects,
                           compare_rate=1.0 if compare else 0.0) for i in range(n)]
    prompt = COMPARE_PROMPT if compare else PAIR_PROMPT if pairs else SINGLE_PROMPT
    conversations = [[{"role": "user", "content": [{"type": "image"} for _ in s["images"]] + [{"type": "text", "text": prompt}]}]
                     for s in samples]
    texts = _generate(model, processor, conversations, [s["images"] for s in samples],
                      max_new_tokens=2 * max_new_tokens if pairs and not compare else max_new_tokens,
                      batch_size=batch_size)
    references = [s["completion"][0]["content"][0]["text"] for s in samples]
    totals: dict[str, list[bool]] = {}
    for sample, text, truth in zip(samples, texts, references):
        if compare:
            totals.setdefault("differences", []).append(text.strip() == truth.strip())
            totals.setdefault("change_kind", []).append(change_kinds(text) == change_kinds(truth))
            continue
        if pairs:
            first, _, second = text.removeprefix("Image 1:").partition(" Image 2: ")
            second, _, differences = second.partition(" Differences: ")
            parts = {"image1 ": first, "image2 ": second if second else "no description"}
            totals.setdefault("differences", []).append(differences.strip() == truth.partition(" Differences: ")[2].strip())
        else:
            parts = {"": text}
        for (tag, part), facts in zip(parts.items(), sample["facts"]):
            for key, hits in score_description(facts, part.strip()).items():
                totals.setdefault(tag + key, []).extend(hits)
    accuracy = {key: sum(hits) / len(hits) for key, hits in totals.items()}
    return {"n": n, "size": size, "seed": seed, "max_objects": max_objects, "pairs": pairs, "compare": compare,
            "accuracy": accuracy,
            "examples": texts[:5], "references": references[:5]}


def vision_feature_spread(model, processor, *, size: int = 96) -> dict[str, float]:
    """How much the merged vision token under an object varies with its colour, relative to the token's norm,
    and how far a one-cell shift of the object moves the image's tokens (both 0 for a blind encoder)."""
    import numpy as np

    layout = scenes.make_layout("grid", size)
    c = layout.n // 2

    def image(color: str, pos: tuple[int, int]):
        return scenes.render(scenes.Scene("white", [scenes.Obj(0, "square", color, pos=pos)]), layout)

    by_color = _merged_tokens(model, processor, [image(color, (c, c)) for color in COLORS])[:, c * layout.n + c]
    color_spread = np.linalg.norm(by_color.std(0)) / np.linalg.norm(by_color, axis=1).mean()
    here, there = _merged_tokens(model, processor, [image("red", (c, c)), image("red", (c, c + 1))])
    return {"color_spread": float(color_spread),
            "position_shift": float(np.linalg.norm(here - there) / np.linalg.norm(here))}


def _merged_tokens(model, processor, images):
    """The merged vision tokens the language model receives: (images, tokens per image, hidden)."""
    import torch

    inputs = processor.image_processor(images=images, return_tensors="pt")
    with torch.no_grad():
        out = model.model.get_image_features(inputs["pixel_values"], inputs["image_grid_thw"])
    embeds = out.pooler_output if hasattr(out, "pooler_output") else out[0]
    embeds = torch.cat(list(embeds), dim=0) if isinstance(embeds, (list, tuple)) else embeds
    return embeds.reshape(len(images), -1, embeds.shape[-1]).float().numpy()


def vision_probe(model, processor, *, n: int = 500, size: int = 96, seed: int = 7, train_share: float = 0.8) -> dict:
    """Held-out accuracy of ridge-regression probes on the merged vision tokens of one-object images:
    the object's colour (10 classes) and cell (9 classes), read from all tokens, from their mean, or from
    the object's own token. `cell_from_object_token` asks whether a token's VALUE says where it is: with
    rotary positions only, the language model can read a place only from attention patterns."""
    import numpy as np

    layout = scenes.make_layout("grid", size)
    samples = [make_sample(seed, i, layout, pair_rate=0.0, max_objects=1) for i in range(n)]
    tokens = _merged_tokens(model, processor, [s["images"][0] for s in samples])
    objects = [s["facts"][0]["objects"][0] for s in samples]
    labels = {"color": np.array([list(COLORS).index(o["color"]) for o in objects]),
              "cell": np.array([o["row"] * layout.n + o["col"] for o in objects])}
    cut = int(train_share * n)

    def probe(x, y):
        x = (x - x[:cut].mean(0)) / (x[:cut].std(0) + 1e-6)
        onehot = np.eye(y.max() + 1)[y]
        w = np.linalg.solve(x[:cut].T @ x[:cut] + 10 * np.eye(x.shape[1]), x[:cut].T @ onehot[:cut])
        return float(((x[cut:] @ w).argmax(1) == y[cut:]).mean())

    under_object = tokens[np.arange(n), labels["cell"]]  # the one token that holds the object
    views = (("tokens", tokens.reshape(n, -1)), ("mean_token", tokens.mean(1)), ("object_token", under_object))
    return {f"{what}_from_{view}": probe(x, labels[what]) for what in labels for view, x in views}


# ----------------------------------------------------------------------------------------------
# Training


def freeze_vision_encoder(model) -> int:
    """Keep the vision encoder (patch and position embeddings, ViT blocks) at its random init; the mergers
    stay trainable. Returns the number of frozen parameters.

    Trained from scratch, the encoder collapses to the image's global colour: a linear probe reads the
    object's colour from the random encoder's tokens but not after training (see `vision_probe`)."""
    frozen = 0
    for name, param in model.named_parameters():
        if ".visual." in f".{name}" and "merger" not in name:
            param.requires_grad_(False)
            frozen += param.numel()
    return frozen


def _trainer_class():
    """SFTTrainer whose AdamW gives the trainable vision parameters `vision_lr_scale` × the learning rate."""
    import torch
    from trl import SFTTrainer

    class TinyWorldTrainer(SFTTrainer):
        vision_lr_scale = 1.0

        def create_optimizer(self, model=None):
            if self.optimizer is None:
                named = [(n, p) for n, p in self.model.named_parameters() if p.requires_grad]
                vision = [p for n, p in named if ".visual." in f".{n}"]
                text = [p for n, p in named if ".visual." not in f".{n}"]
                lr = self.args.learning_rate
                self.optimizer = torch.optim.AdamW(
                    [{"params": text, "lr": lr}, {"params": vision, "lr": lr * self.vision_lr_scale}],
                    lr=lr, weight_decay=self.args.weight_decay, betas=(self.args.adam_beta1, self.args.adam_beta2),
                    eps=self.args.adam_epsilon)
            return self.optimizer

    return TinyWorldTrainer


def _stop_after(steps: int):
    from transformers import TrainerCallback

    class StopAfter(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step >= steps:
                control.should_training_stop = True
            return control

    return StopAfter()


def _progress_bar(total: int):
    """A tqdm bar over the optimizer steps with the last logged loss, in place of one printed dict per step."""
    from tqdm.auto import tqdm
    from transformers import TrainerCallback

    class ProgressBar(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            self.bar = tqdm(total=total, desc="pretrain-tiny", unit="step")

        def on_step_end(self, args, state, control, **kwargs):
            self.bar.update(state.global_step - self.bar.n)

        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs and "loss" in logs:
                self.bar.set_postfix(loss=f"{logs['loss']:.4f}", refresh=False)

        def on_train_end(self, args, state, control, **kwargs):
            self.bar.close()

    return ProgressBar()


def pretrain_tiny(preset: str, steps: int, seed: int, out: str | Path, *, image_size: int = 96,
                  batch_size: int = 16, learning_rate: float = 2e-3, vision_lr_scale: float = 1.0,
                  warmup_ratio: float = 0.05, pair_rate: float = PAIR_RATE, curriculum_ratio: float = CURRICULUM_RATIO,
                  stop_after: int | None = None, init_from: str | Path | None = None,
                  freeze_encoder: bool = True, compare_rate: float = COMPARE_RATE) -> dict[str, Any]:
    """Build a tiny Qwen3-VL of `preset` (or start from `init_from`), train it `steps` steps on the description
    stream and save it to `out`; returns {losses, final_dir, train_runtime}. `stop_after` ends the run early
    under the same schedule (determinism checks); `freeze_encoder` keeps the vision encoder at its init."""
    import torch
    from transformers.trainer_callback import PrinterCallback
    from trl import SFTConfig

    for name, share in (("pair_rate", pair_rate), ("curriculum_ratio", curriculum_ratio), ("compare_rate", compare_rate)):
        if not 0.0 <= share <= 1.0:
            raise ValueError(f"pretrain-tiny: {name} is a share of samples or steps, between 0 and 1, not {share}")
    if init_from and not (Path(init_from) / "config.json").is_file():
        raise FileNotFoundError(f"pretrain-tiny: --init-from {init_from} is not a saved checkpoint (no config.json)")
    out = Path(out)
    init = Path(init_from) if init_from else build_tiny_model(preset, out / "init", seed=seed)
    torch.manual_seed(seed)
    model, processor = load_model_and_processor(init)
    model.train()
    if freeze_encoder:
        freeze_vision_encoder(model)
    dataset = sample_stream(seed, image_size, pair_rate=pair_rate, compare_rate=compare_rate,
                            curriculum_samples=int(curriculum_ratio * steps) * batch_size)
    args = SFTConfig(
        output_dir=str(out / "trainer"), max_steps=steps, per_device_train_batch_size=batch_size,
        learning_rate=learning_rate, lr_scheduler_type="cosine", warmup_steps=warmup_ratio, weight_decay=0.0,
        max_grad_norm=1.0, logging_steps=1, save_strategy="no", report_to="none", seed=seed, data_seed=seed,
        max_length=None, completion_only_loss=True, dataloader_num_workers=0, disable_tqdm=True,
        use_cpu=not torch.cuda.is_available(), dataset_kwargs={"skip_prepare_dataset": True},
    )
    trainer_class = _trainer_class()
    trainer_class.vision_lr_scale = vision_lr_scale
    trainer = trainer_class(model=model, args=args, train_dataset=dataset.map(
        lambda r: {"prompt": _strip_none(r["prompt"]), "completion": _strip_none(r["completion"])}),
        processing_class=processor, callbacks=[_progress_bar(steps)] + ([_stop_after(stop_after)] if stop_after else []))
    trainer.remove_callback(PrinterCallback)  # logging_steps=1 keeps every loss; the bar shows them, not 6000 lines
    result = trainer.train()
    losses = [round(h["loss"], 6) for h in trainer.state.log_history if "loss" in h]
    final_dir = out / "final"
    trainer.save_model(str(final_dir))
    (final_dir / "trainer_log.json").write_text(json.dumps(trainer.state.log_history) + "\n", encoding="utf-8")
    return {"losses": losses, "final_dir": str(final_dir), "train_runtime": result.metrics.get("train_runtime")}


def _versions() -> dict[str, str]:
    import platform

    import datasets
    import PIL
    import tokenizers
    import torch
    import transformers
    import trl

    return {"python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__,
            "trl": trl.__version__, "datasets": datasets.__version__, "tokenizers": tokenizers.__version__,
            "pillow": PIL.__version__}


def recipe_accuracy(final_dir: str | Path, *, n_eval: int = 200, image_size: int = 96) -> dict:
    """The held-out measurements a RECIPE.json records for a checkpoint: description accuracy on images with
    up to 9 objects, on one-object images, on image pairs (described, then their differences) and on the
    compare prompt; the vision-token spread and probes."""

    model, processor = load_model_and_processor(final_dir)
    pairs = {"max_objects": 2, "n": n_eval, "size": image_size}
    return {
        "heldout_description": evaluate_descriptions(model, processor, n=n_eval, size=image_size),
        "heldout_description_one_object": evaluate_descriptions(model, processor, n=n_eval, size=image_size,
                                                                max_objects=1),
        "heldout_pair_description": evaluate_descriptions(model, processor, pairs=True, **pairs),
        "heldout_pair_compare": evaluate_descriptions(model, processor, compare=True, **pairs),
        "vision_feature_spread": vision_feature_spread(model, processor, size=image_size),
        "vision_probe": vision_probe(model, processor, size=image_size),
    }


def _recipe_init(folder: Path, recipe: dict) -> Path | None:
    """Where a recipe's run started: its `init_from` (relative to the folder when it lies there), or None."""
    init = recipe.get("init_from")
    if not init:
        return None
    return folder / init if (folder / init).exists() else Path(init)


def replay_first_losses(folder: str | Path, *, steps: int = REPLAY_STEPS, **changes: Any) -> list[float]:
    """Re-run the first `steps` steps of the recipe in `folder`/RECIPE.json (with `changes` to its values, e.g.
    learning_rate=...) in a fresh process under REPLAY_ENV, and return the logged losses."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        request = {"folder": str(folder), "steps": steps, "changes": changes, "out": tmp}
        done = subprocess.run([sys.executable, "-m", "editcaption.models.pretrain", json.dumps(request)],
                              env={**os.environ, **REPLAY_ENV}, capture_output=True, text=True)
        if done.returncode:
            raise RuntimeError(f"replaying {folder} failed:\n{done.stderr[-3000:]}")
        return json.loads(done.stdout.strip().splitlines()[-1])


def _replay_here(folder: str, steps: int, changes: dict, out: str) -> list[float]:
    """The replay's own process (see `replay_first_losses`): oneDNN off, then the recipe's run, stopped early."""
    import torch

    torch.backends.mkldnn.enabled = False
    folder_path = Path(folder)
    recipe = {**json.loads((folder_path / RECIPE_FILE).read_text(encoding="utf-8")), **changes}
    run = pretrain_tiny(recipe["preset"], recipe["steps"], recipe["seed"], out, image_size=recipe["image_size"],
                        batch_size=recipe["batch_size"], learning_rate=recipe["learning_rate"],
                        vision_lr_scale=recipe["vision_lr_scale"], pair_rate=recipe["pair_rate"],
                        curriculum_ratio=recipe["curriculum_ratio"], compare_rate=recipe.get("compare_rate", 0.0),
                        init_from=_recipe_init(folder_path, recipe), stop_after=steps)
    return run["losses"]


def pretrain_tiny_main(preset: str, steps: int, seed: int, out: str | Path, *, image_size: int = 96,
                       batch_size: int = 16, learning_rate: float = 2e-3, vision_lr_scale: float = 1.0,
                       pair_rate: float = PAIR_RATE, curriculum_ratio: float = CURRICULUM_RATIO,
                       compare_rate: float = COMPARE_RATE, init_from: str | Path | None = None,
                       stop_after: int | None = None, n_eval: int = 200) -> Path:
    """The `editcaption pretrain-tiny` command: pre-train (from a fresh init, or continue `init_from`), evaluate
    on held-out single images and pairs, write out/final (the checkpoint) and out/RECIPE.json (command, seed,
    versions, first losses, accuracy)."""
    run = pretrain_tiny(preset, steps, seed, out, image_size=image_size, batch_size=batch_size,
                        learning_rate=learning_rate, vision_lr_scale=vision_lr_scale, pair_rate=pair_rate,
                        curriculum_ratio=curriculum_ratio, compare_rate=compare_rate, init_from=init_from,
                        stop_after=stop_after)
    command = (f"editcaption pretrain-tiny --preset {preset} --steps {steps} --seed {seed} --out {out} "
               f"--image-size {image_size} --batch-size {batch_size} --learning-rate {learning_rate} "
               f"--vision-lr-scale {vision_lr_scale} --pair-rate {pair_rate} --curriculum-ratio {curriculum_ratio} "
               f"--compare-rate {compare_rate}"
               + (f" --init-from {init_from}" if init_from else "")
               + (f" --stop-after {stop_after}" if stop_after else ""))
    recipe = {"command": command, "preset": preset, "steps": steps, "seed": seed, "image_size": image_size,
              "batch_size": batch_size, "learning_rate": learning_rate, "vision_lr_scale": vision_lr_scale,
              "pair_rate": pair_rate, "curriculum_ratio": curriculum_ratio, "compare_rate": compare_rate,
              "init_from": str(init_from) if init_from else None, "stop_after": stop_after,
              "freeze_vision_encoder": True, "versions": _versions(),
              "train_runtime_s": run["train_runtime"],
              "first_losses": run["losses"][:LOGGED_LOSSES], "final_loss": run["losses"][-1]}
    if n_eval:
        recipe.update(recipe_accuracy(run["final_dir"], n_eval=n_eval, image_size=image_size))
    (Path(out) / RECIPE_FILE).write_text(json.dumps(recipe, indent=2) + "\n", encoding="utf-8")
    if steps >= REPLAY_STEPS:  # the pinned-kernel losses a replay on any machine must give (the test's reference)
        recipe["replay"] = {"env": REPLAY_ENV, "onednn": False, "steps": REPLAY_STEPS,
                            "first_losses": replay_first_losses(out)}
        (Path(out) / RECIPE_FILE).write_text(json.dumps(recipe, indent=2) + "\n", encoding="utf-8")
    return Path(run["final_dir"])


if __name__ == "__main__":  # the replay process of `replay_first_losses`
    print(json.dumps(_replay_here(**json.loads(sys.argv[1]))))
