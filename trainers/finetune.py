"""One fine-tune as a trial runs it: the task, its settings and what its model starts from,
resolved once (sweep.trial builds it from the config), then run on data into a state folder;
and the folders a trained model is handed on in (an intermediate's encoder, a stage's model)."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from trainers.settings import TrainConfig
from trainers.tasks import Task, TaskData

if TYPE_CHECKING:
    from trainers.loop import Outcome


@dataclass(frozen=True)
class FineTune:
    """`train_and_evaluate`'s settings for one task of a trial.

    The model starts from `encoder`'s weights, or random ones (`random_init`: the scratch
    control), or `init_model` (an earlier stage's model). `blank_inputs` trains the
    V-information null model; `train=False` only evaluates (a target whose training is a stage
    shared with other targets). `cpu` is false where the trial has a GPU."""

    task: Task
    encoder: Path
    config: TrainConfig
    max_length: int
    cpu: bool = True
    max_malformed: float = 0.01  # share of a split that may be malformed (trainers.quality)
    random_init: bool = False
    init_model: Any = None
    blank_inputs: bool = False
    train: bool = True

    def run(
        self,
        data: TaskData,
        *,
        seed: int,
        state_dir: Path | None = None,
        on_save: Callable[[Path, bool], None] | None = None,
    ) -> Outcome:
        """Train on `data` with `seed`, resuming from `state_dir` when it holds a save;
        `on_save` hears each whole save (the uploader's hook on object stores)."""
        from trainers.loop import train_and_evaluate  # torch: imported when a trial trains

        return train_and_evaluate(
            self.task,
            data,
            self.encoder,
            self.config,
            seed=seed,
            max_length=self.max_length,
            state_dir=state_dir,
            random_init=self.random_init,
            cpu=self.cpu,
            progress_bar=False,  # inside Tune: its status table and the epoch lines show progress
            max_malformed=self.max_malformed,
            init_model=self.init_model,
            blank_inputs=self.blank_inputs,
            train=self.train,
            on_save=on_save,
        )


def load_stage_model(folder: Path) -> Any:
    """A stage's whole model, head included (its class is in the saved config)."""
    import transformers

    config = transformers.AutoConfig.from_pretrained(folder)
    cls = getattr(transformers, (config.architectures or ["XLMRobertaModel"])[0])
    return cls.from_pretrained(folder)


def write_stage_model(outcome: Outcome, tokenizer_dir: Path, out: Path) -> None:
    """A stage into `out`: its whole model, the tokenizer of `tokenizer_dir` and its English
    dev score, steps and training size (its evaluate-only targets report that size)."""
    from trainers.encoder import load_tokenizer

    outcome.model.save_pretrained(out, safe_serialization=True)
    load_tokenizer(tokenizer_dir).save_pretrained(out / "tokenizer")
    (out / "metrics.json").write_text(
        json.dumps({"dev": outcome.dev, "steps": outcome.steps, "n_train": outcome.n_train})
    )


def write_encoder(outcome: Outcome, tokenizer_dir: Path, out: Path) -> None:
    """An intermediate into `out`: the fine-tuned encoder without its head (its targets build
    their own), the tokenizer of `tokenizer_dir`, its English dev score and steps."""
    from trainers.encoder import load_tokenizer, save_encoder
    from trainers.heads import encoder_of

    save_encoder(encoder_of(outcome.model), load_tokenizer(tokenizer_dir), out)
    (out / "metrics.json").write_text(json.dumps({"dev": outcome.dev, "steps": outcome.steps}))
