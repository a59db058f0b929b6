"""`composite`: a weighted sum of other rewarders, each built through the registry from its own config.

`components` lists sub-rewarder configs, each a rewarder config (its `name` and any keys to override) plus a
`weight`: `[{name: orm, weight: 1.0}, {name: self_judge, weight: 0.5, per_step: true}]`. Each component scores
the whole batch in one call; the composite reads the gold answer if any component does.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sisearch import registry
from sisearch.rewards.base import Rewarder, ScoreItem
from sisearch.rewards.scoring import weighted_sum
from sisearch.tasks.base import Task


def default_components() -> list[dict[str, Any]]:
    return [{"name": "orm", "weight": 1.0}, {"name": "self_judge", "weight": 0.5}]


@dataclass
class CompositeConfig:
    name: str = "composite"
    # the summed rewarders: each a rewarder config (its name and any keys to override) plus its `weight`
    components: list[dict[str, Any]] = field(default_factory=default_components)

    def __post_init__(self) -> None:
        if not self.components:
            raise ValueError("components is empty; list at least one {name, weight}")
        for i, component in enumerate(self.components):
            if "weight" not in component:
                raise ValueError(f"component {i} ({component.get('name')}) has no 'weight'")
            if component.get("name") == "composite":
                raise ValueError("a component cannot itself be 'composite'")


@registry.register("rewarder", "composite", schema=CompositeConfig)
class CompositeRewarder(Rewarder):
    def __init__(self, cfg: CompositeConfig, task: Task, engine=None, **deps):
        self.cfg = cfg
        self.parts: list[tuple[str, float, Rewarder]] = []
        for i, component in enumerate(cfg.components):
            component = dict(component)
            weight = float(component.pop("weight"))
            rewarder = registry.build("rewarder", component, task=task, engine=engine, **deps)
            self.parts.append((f"{i}:{component['name']}", weight, rewarder))
        self.uses_gold = any(r.uses_gold for _, _, r in self.parts)

    def score(self, items: list[ScoreItem]) -> list[float]:
        if not items:
            return []
        scores = {key: rewarder.score(items) for key, _, rewarder in self.parts}
        return weighted_sum(scores, {key: weight for key, weight, _ in self.parts})
