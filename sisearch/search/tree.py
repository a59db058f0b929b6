"""The search tree shared by every searcher, with a lossless JSON round trip."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any, Iterator


@dataclass
class Verdict:
    """What the task's checker says of a finished solution."""

    correct: bool
    answer: str | None = None
    parsed: bool = True


@dataclass
class Cost:
    """What a search spent; summed over every engine call made for one tree."""

    engine_calls: int = 0
    prompt_tokens: int = 0
    generated_tokens: int = 0

    def add(self, other: "Cost") -> None:
        self.engine_calls += other.engine_calls
        self.prompt_tokens += other.prompt_tokens
        self.generated_tokens += other.generated_tokens


@dataclass
class Node:
    """One step of a solution.

    `step` is this node's own text; `state` is the solution text from the start up to and including
    this step (the prompt is held by the tree). The root has empty step and state.
    """

    step: str = ""
    state: str = ""
    prior_logprob: float = 0.0  # summed log-prob of the step's tokens under the policy
    num_tokens: int = 0
    value: float = 0.0  # the node's own evaluation (outcome and/or rewarder score)
    visits: int = 0
    reward: float = 0.0  # step reward r = v - v_parent (MCTS-DPO) or the rewarder's score
    q: float = 0.0
    terminal: bool = False
    verdict: Verdict | None = None
    # the step's token ids as the engine sampled them (without a final EOS, like `step`); [] where the step
    # was not sampled (a searcher's inserted trigger) or the engine takes text only
    token_ids: list[int] = field(default_factory=list)
    children: list["Node"] = field(default_factory=list)
    metadata: dict[str, Any] = field(default_factory=dict)
    parent: "Node | None" = field(default=None, repr=False, compare=False)

    def add_child(self, child: "Node") -> "Node":
        child.parent = self
        self.children.append(child)
        return child

    @property
    def depth(self) -> int:
        d, node = 0, self
        while node.parent is not None:
            d, node = d + 1, node.parent
        return d

    def path(self) -> list["Node"]:
        """Nodes from the root's first child down to this node (the root itself excluded)."""
        nodes, node = [], self
        while node.parent is not None:
            nodes.append(node)
            node = node.parent
        return nodes[::-1]

    def steps(self) -> list[str]:
        return [n.step for n in self.path()]

    def state_ids(self) -> list[int] | None:
        """The token ids of `state` as they were sampled; None where a step's ids are unknown."""
        ids: list[int] = []
        for node in self.path():
            if node.step and not node.token_ids:
                return None
            ids += node.token_ids
        return ids

    def walk(self) -> Iterator["Node"]:
        yield self
        for child in self.children:
            yield from child.walk()

    def to_dict(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "state": self.state,
            "prior_logprob": self.prior_logprob,
            "num_tokens": self.num_tokens,
            "value": self.value,
            "visits": self.visits,
            "reward": self.reward,
            "q": self.q,
            "terminal": self.terminal,
            "verdict": None if self.verdict is None else asdict(self.verdict),
            "token_ids": self.token_ids,
            "metadata": self.metadata,
            "children": [c.to_dict() for c in self.children],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Node":
        verdict = data.get("verdict")
        node = cls(
            step=data["step"],
            state=data["state"],
            prior_logprob=data["prior_logprob"],
            num_tokens=data["num_tokens"],
            value=data["value"],
            visits=data["visits"],
            reward=data["reward"],
            q=data["q"],
            terminal=data["terminal"],
            verdict=None if verdict is None else Verdict(**verdict),
            token_ids=data.get("token_ids", []),
            metadata=data.get("metadata", {}),
        )
        for child in data.get("children", []):
            node.add_child(cls.from_dict(child))
        return node


@dataclass
class Tree:
    """A searched tree for one problem: the prompt, the root, the chosen answer and the cost."""

    problem_id: str
    prompt: str
    root: Node = field(default_factory=Node)
    prompt_ids: list[int] | None = None  # the prompt as the engine tokenized it (None: a text-only engine)
    answer: str | None = None  # the searcher's final answer, chosen by its answer rule
    chosen: Node | None = None  # the terminal node the answer came from, if any
    cost: Cost = field(default_factory=Cost)
    metadata: dict[str, Any] = field(default_factory=dict)

    def terminals(self) -> list[Node]:
        return [n for n in self.root.walk() if n.terminal]

    def context(self, node: Node) -> str | list[int]:
        """What the engine continues from at `node`: the sampled token ids when known, else the text.

        Re-tokenizing prompt + state could split differently from what was sampled (BPE merges across a
        step boundary), so a search continues from the ids, and training scores the same ids.
        """
        ids = node.state_ids() if self.prompt_ids is not None else None
        return self.prompt + node.state if ids is None else self.prompt_ids + ids

    def nodes(self) -> list[Node]:
        return list(self.root.walk())

    def _index_of(self, target: Node | None) -> int | None:
        if target is None:
            return None
        for i, node in enumerate(self.root.walk()):
            if node is target:
                return i
        raise ValueError("the chosen node is not in this tree")

    def to_dict(self) -> dict[str, Any]:
        return {
            "problem_id": self.problem_id,
            "prompt": self.prompt,
            "prompt_ids": self.prompt_ids,
            "answer": self.answer,
            "chosen_index": self._index_of(self.chosen),  # pre-order index, so the link survives JSON
            "cost": asdict(self.cost),
            "metadata": self.metadata,
            "root": self.root.to_dict(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Tree":
        tree = cls(
            problem_id=data["problem_id"],
            prompt=data["prompt"],
            prompt_ids=data.get("prompt_ids"),
            root=Node.from_dict(data["root"]),
            answer=data.get("answer"),
            cost=Cost(**data["cost"]),
            metadata=data.get("metadata", {}),
        )
        index = data.get("chosen_index")
        if index is not None:
            tree.chosen = tree.nodes()[index]
        return tree

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "Tree":
        return cls.from_dict(json.loads(text))
