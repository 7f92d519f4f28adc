"""A random-weight accent classifier in the layout of CommonAccent's speechbrain models, for tests without the Hub:
`hyperparams.yaml` (wav2vec2 wrapper under its speechbrain 0.5 name, statistics pooling, a bias-free linear layer,
log-softmax, a label encoder, a `pretrainer` with the checkpoint paths), `custom_interface.py` with the
`CustomEncoderWav2vec2Classifier` interface (`classify_batch` returns log-probabilities, best score, index, label),
`wav2vec2.ckpt`, `model.ckpt`, `label_encoder.txt`, and a tiny wav2vec2 (transformers format) in `wav2vec2_hub/`.
Like a downloaded copy of the real one, its hyperparams name Hub repos; the loader points them at the folder.
The classes are CommonAccent's six Spanish ones as its data preparation writes them (upper case, no diacritics or
punctuation)."""

from __future__ import annotations

from pathlib import Path

COMMONACCENT_ES_LABELS = (
    "CHILENO CHILE CUYO",
    "CARIBE CUBA VENEZUELA PUERTO RICO REPUBLICA DOMINICANA PANAMA COLOMBIA CARIBENA MEXICO CARIBENO COSTA DEL "
    "GOLFO DE MEXICO",
    "RIOPLATENSE ARGENTINA URUGUAY ESTE DE BOLIVIA PARAGUAY",
    "ANDINOPACIFICO COLOMBIA PERU ECUADOR OESTE DE BOLIVIA Y VENEZUELA ANDINA",
    "MEXICO",
    "ESPANA SUR PENINSULAR (ANDALUCIA EXTREMADURA MURCIA)",
)

HIDDEN = 32

HYPERPARAMS = """\
pretrained_path: Example/accent-id-random-es
wav2vec2_hub: Example/wav2vec2-random
n_accents: {n_accents}

wav2vec2: !new:speechbrain.lobes.models.huggingface_wav2vec.HuggingFaceWav2Vec2
    source: !ref <wav2vec2_hub>
    output_norm: True
    freeze: True
    save_path: !ref <pretrained_path>/wav2vec2_checkpoint

avg_pool: !new:speechbrain.nnet.pooling.StatisticsPooling
    return_std: False

output_mlp: !new:speechbrain.nnet.linear.Linear
    input_size: {hidden}
    n_neurons: !ref <n_accents>
    bias: False

softmax: !new:speechbrain.nnet.activations.Softmax
    apply_log: True

label_encoder: !new:speechbrain.dataio.encoder.CategoricalEncoder

modules:
    wav2vec2: !ref <wav2vec2>
    output_mlp: !ref <output_mlp>
    avg_pool: !ref <avg_pool>

model: !new:torch.nn.ModuleList
    - [!ref <output_mlp>]

pretrainer: !new:speechbrain.utils.parameter_transfer.Pretrainer
    loadables:
        wav2vec2: !ref <wav2vec2>
        model: !ref <model>
        label_encoder: !ref <label_encoder>
    paths:
        wav2vec2: !ref <pretrained_path>/wav2vec2.ckpt
        model: !ref <pretrained_path>/model.ckpt
        label_encoder: !ref <pretrained_path>/label_encoder.txt
"""

INTERFACE = '''\
"""The interface a CommonAccent-style model folder ships: wav2vec2 features, pooled, a linear layer."""

import torch
from speechbrain.inference.interfaces import Pretrained


class CustomEncoderWav2vec2Classifier(Pretrained):
    def encode_batch(self, wavs, wav_lens=None):
        if wavs.dim() == 1:
            wavs = wavs[None]
        wav_lens = torch.ones(wavs.shape[0]) if wav_lens is None else wav_lens
        wavs, wav_lens = wavs.to(self.device).float(), wav_lens.to(self.device)
        pooled = self.mods.avg_pool(self.mods.wav2vec2(wavs), wav_lens)
        return pooled.reshape(pooled.shape[0], -1)

    def classify_batch(self, wavs, wav_lens=None):
        log_probabilities = self.hparams.softmax(self.mods.output_mlp(self.encode_batch(wavs, wav_lens)))
        score, index = log_probabilities.max(dim=-1)
        return log_probabilities, score, index, self.hparams.label_encoder.decode_torch(index)
'''


def write_accent_classifier(folder: str | Path, labels: tuple[str, ...] = COMMONACCENT_ES_LABELS,
                            seed: int = 0) -> Path:
    """Writes the random-weight classifier into `folder` and returns it (pass it as --accent_model)."""
    import torch
    from hyperpyyaml import load_hyperpyyaml
    from speechbrain.dataio.encoder import CategoricalEncoder
    from transformers import Wav2Vec2Config, Wav2Vec2FeatureExtractor, Wav2Vec2Model

    from ..evaluation.accent import install_speechbrain_05_names

    folder = Path(folder).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    config = Wav2Vec2Config(hidden_size=HIDDEN, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                            conv_dim=(16, 16), conv_stride=(5, 4), conv_kernel=(10, 8), num_feat_extract_layers=2,
                            num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2)
    Wav2Vec2Model(config).save_pretrained(folder / "wav2vec2_hub")
    Wav2Vec2FeatureExtractor(sampling_rate=16_000, do_normalize=True).save_pretrained(folder / "wav2vec2_hub")
    text = HYPERPARAMS.format(n_accents=len(labels), hidden=HIDDEN)
    (folder / "hyperparams.yaml").write_text(text, encoding="utf-8")
    (folder / "custom_interface.py").write_text(INTERFACE, encoding="utf-8")
    install_speechbrain_05_names()
    hparams = load_hyperpyyaml(text, {"wav2vec2_hub": (folder / "wav2vec2_hub").as_posix(),
                                      "pretrained_path": folder.as_posix()})
    torch.save(hparams["wav2vec2"].state_dict(), folder / "wav2vec2.ckpt")
    torch.save(hparams["model"].state_dict(), folder / "model.ckpt")
    encoder = CategoricalEncoder()
    encoder.update_from_iterable(labels)
    encoder.save(folder / "label_encoder.txt")
    return folder
