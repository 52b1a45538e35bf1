"""Classification metrics from a confusion matrix: top-1, top-5, per-class accuracy; ``quality`` is top-1, the
headline figure every task's meter reports."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch


def top1(logits: torch.Tensor, labels: torch.Tensor) -> float:
    """The fraction of rows whose largest logit is at the label."""
    return float((logits.argmax(1) == labels).float().mean())


@dataclass
class ClassificationMeter:
    num_classes: int
    confusion: torch.Tensor = field(init=False)
    top5_correct: int = 0
    loss_sum: float = 0.0
    count: int = 0

    def __post_init__(self):
        self.confusion = torch.zeros(self.num_classes, self.num_classes, dtype=torch.long)

    def update(self, logits: torch.Tensor, target: torch.Tensor, loss: float | None = None) -> None:
        pred = logits.argmax(1)
        self.confusion += torch.bincount(target * self.num_classes + pred,
                                         minlength=self.num_classes**2).view(self.num_classes, self.num_classes)
        k = min(5, logits.shape[1])
        self.top5_correct += int((logits.topk(k, 1).indices == target[:, None]).any(1).sum())
        self.count += len(target)
        if loss is not None:
            self.loss_sum += loss * len(target)

    def all_reduce(self) -> None:
        """Sum the counts over data-parallel processes."""
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            stats = torch.tensor([self.top5_correct, self.count, self.loss_sum], dtype=torch.float64)
            dist.all_reduce(self.confusion)
            dist.all_reduce(stats)
            self.top5_correct, self.count, self.loss_sum = int(stats[0]), int(stats[1]), float(stats[2])

    def summary(self, classes: list[str] | None = None) -> dict:
        total = max(self.count, 1)
        per_class = (self.confusion.diag().float() / self.confusion.sum(1).clamp(min=1).float()).tolist()
        names = classes or [str(i) for i in range(self.num_classes)]
        top1 = float(self.confusion.diag().sum()) / total * 100
        return {"quality": top1, "top1": top1, "top5": self.top5_correct / total * 100,
                "loss": self.loss_sum / total, "images": self.count,
                "per_class": {n: round(a * 100, 2) for n, a in zip(names, per_class)},
                "confusion": self.confusion.tolist()}
