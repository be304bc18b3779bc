"""One description of a run's synthetic world: notebook 01 writes it as `world.json` in its stage folder, and
notebooks 03 and 07 read it instead of declaring the same parameters again, so their fresh pairs and their
simulated teacher are those of the world the SFT set came from. Each notebook keeps its own `seed`."""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Mapping

from editcaption import paths

WORLD_FILE = "world.json"
WRITER = "01_dataset_construction"


@dataclass(frozen=True)
class World:
    """The settings every synthetic pair of a run is drawn with, and the simulated teacher's error rates."""

    image_size: int  # image side in px (a multiple of 32 in the grid layout)
    layout: str  # grid (one object per 32 px cell) | free
    edit_types: str  # comma-separated edit types; "" = all 16
    max_objects: int  # most objects in a source scene; 0 = the layout's limit
    teacher_rates: Mapping[str, float]  # the simulated teacher's P of each error mode (data.teacher.MODES)

    @property
    def pair_options(self) -> dict[str, Any]:
        """The keyword arguments the pair generators take: image_size, layout, edit_types, max_objects."""
        return {"image_size": self.image_size, "layout": self.layout, "edit_types": self.edit_types,
                "max_objects": self.max_objects}

    def as_dict(self) -> dict[str, Any]:
        """The fields as plain JSON values (what `world.json` holds)."""
        return asdict(self) | {"teacher_rates": dict(self.teacher_rates)}

    def save(self, folder: str | Path) -> Path:
        """Write `world.json` into `folder` and return its path."""
        path = Path(folder) / WORLD_FILE
        path.write_text(json.dumps(self.as_dict(), indent=1) + "\n", encoding="utf-8")
        return path

    @classmethod
    def load(cls, path: str | Path) -> "World":
        """Read a `world.json`; a missing or unknown field raises naming the file and the field."""
        path = Path(path)
        data = json.loads(path.read_text(encoding="utf-8"))
        names = {f.name for f in fields(cls)}
        unknown, missing = sorted(set(data) - names), sorted(names - set(data))
        if unknown or missing:
            raise ValueError(f"{path}: unknown fields {unknown}, missing fields {missing} (a World has {sorted(names)})")
        return cls(**data)

    @classmethod
    def of_run(cls, world_path: str, run_name: str, output_root: str | Path = "outputs") -> "World":
        """`world_path` when set, else the `world.json` notebook 01 wrote for this run."""
        return cls.load(paths.upstream(world_path, run_name, WRITER, WORLD_FILE, output_root))
