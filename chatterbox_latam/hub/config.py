"""What the Hub commands are asked: `push` (adapters, merged models, datasets with their cards) and `sync` (a
training run's checkpoints to and from the Hub)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class PushConfig:
    """What `chatterbox-latam push` asks for."""

    repo_id: str = field(metadata={"help": "Hub repo to push to (USER/NAME or ORG/NAME)."})
    what: str = field(metadata={"help": "What --path holds.", "choices": ["adapter", "merged", "dataset"]})
    path: str = field(metadata={"help": "Adapter folder, merged model folder or prepared dataset folder."})
    private: bool = field(default=False, metadata={"help": "Create the repo private."})
    results: str | None = field(default=None, metadata={"help": "The evaluation's results.json, for the card's "
                                                                "model-index."})
    base_model_id: str | None = field(default=None, metadata={
        "help": "Hub id of the base model for the card (default: the one the adapter names)."})
    dataset_id: str | None = field(default=None, metadata={"help": "Hub id of the training dataset for the card."})
    license: str = field(default="mit", metadata={"help": "Licence id for the card (upstream Chatterbox is MIT)."})


@dataclass
class SyncConfig:
    """What `chatterbox-latam sync push|watch|pull` asks for."""

    repo_id: str = field(metadata={"help": "Hub model repo holding last-checkpoint/ (USER/NAME)."})
    checkpoint_dir: str = field(metadata={"help": "The training run's checkpoint folder."})
    every: float = field(default=600, metadata={"help": "watch: seconds between syncs."})
    public: bool = field(default=False, metadata={"help": "Create the repo public (default: private)."})
