"""Linear heads stored portably: weights in ``NAME.npz``, a JSON model card in ``NAME.json``.

No pickles: a head trained with one scikit-learn version loads with any other (or none). A
head is either ``softmax`` (one label of ``classes``) or ``sigmoid`` (multi-label, one
threshold per class). ``bias`` holds per-class decision offsets tuned after training (for
macro-F1 on skewed classes); probabilities are reported without it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from seismo.errors import SeismoError

Array = npt.NDArray[np.float32]
Kind = Literal["softmax", "sigmoid"]


class ArtifactError(SeismoError):
    """A model artifact is missing, unreadable or of another schema."""


@dataclass
class LinearHead:
    classes: list[str]
    coef: Array  # (n_classes, n_features)
    intercept: Array  # (n_classes,)
    kind: Kind = "softmax"
    bias: Array | None = None  # (n_classes,) decision offsets (softmax: added to log-probs)
    thresholds: Array | None = None  # (n_classes,) for sigmoid heads
    card: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        k = len(self.classes)
        if self.coef.ndim != 2 or self.coef.shape[0] != k or self.intercept.shape != (k,):
            raise ArtifactError(f"head shapes do not match {k} classes")
        self.coef = np.ascontiguousarray(self.coef, dtype=np.float32)
        self.intercept = self.intercept.astype(np.float32)
        if self.bias is None:
            self.bias = np.zeros(k, dtype=np.float32)
        if self.thresholds is None:
            self.thresholds = np.full(k, 0.5, dtype=np.float32)

    @property
    def n_features(self) -> int:
        return int(self.coef.shape[1])

    def logits(self, x: Any) -> Array:
        """``x``: (n, n_features) dense array or scipy sparse matrix."""
        out = np.asarray(x @ self.coef.T, dtype=np.float32) + self.intercept
        return out

    def proba(self, x: Any) -> Array:
        z = self.logits(x)
        if self.kind == "sigmoid":
            p: Array = (1.0 / (1.0 + np.exp(-z))).astype(np.float32)
            return p
        z = z - z.max(axis=1, keepdims=True)
        e = np.exp(z)
        sm: Array = (e / e.sum(axis=1, keepdims=True)).astype(np.float32)
        return sm

    def decide(self, proba: Array) -> npt.NDArray[Any]:
        """Softmax: index of the chosen class per row. Sigmoid: boolean (n, k) matrix."""
        assert self.bias is not None and self.thresholds is not None
        if self.kind == "sigmoid":
            on: npt.NDArray[Any] = proba >= self.thresholds
            return on
        chosen: npt.NDArray[Any] = np.argmax(np.log(proba + 1e-9) + self.bias, axis=1)
        return chosen

    def save(self, stem: Path) -> None:
        """Write ``stem.npz`` and ``stem.json`` (the card, with classes and kind)."""
        assert self.bias is not None and self.thresholds is not None
        stem.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(
            stem.with_suffix(".npz"),
            coef=self.coef.astype(np.float32),
            intercept=self.intercept,
            bias=self.bias.astype(np.float32),
            thresholds=self.thresholds.astype(np.float32),
        )
        card = {**self.card, "classes": self.classes, "kind": self.kind}
        stem.with_suffix(".json").write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, stem: Path) -> LinearHead:
        try:
            card = json.loads(stem.with_suffix(".json").read_text(encoding="utf-8"))
            with np.load(stem.with_suffix(".npz")) as z:
                arrays = {k: z[k] for k in ("coef", "intercept", "bias", "thresholds")}
        except (OSError, ValueError, KeyError) as exc:
            raise ArtifactError(f"cannot load model artifact {stem}: {exc}") from exc
        return cls(
            classes=list(card["classes"]),
            kind=card["kind"],
            card=card,
            **arrays,
        )
