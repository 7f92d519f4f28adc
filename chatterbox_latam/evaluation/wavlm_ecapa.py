"""The speaker-verification model of the seed-tts-eval protocol: ECAPA-TDNN over a learned mix of WavLM-Large's
hidden states, fine-tuned on VoxCeleb (UniSpeech's `wavlm_large_finetune.pth`, the checkpoint seed-tts-eval links).

The checkpoint is a `{"model": state_dict}` file in UniSpeech's names: the WavLM under `feature_extract.model.`
(fairseq's names, as s3prl loads it) and the ECAPA-TDNN head beside it. Here WavLM is transformers' `WavLMModel`
(the checkpoint's names are translated to it) and the head is `EcapaTdnn`, whose parameters keep the checkpoint's
names. Every size (WavLM's width, depth, heads; the head's channels and embedding) is read from the checkpoint's
shapes, so a tiny random-weight file in the same format loads as the real one does. What the protocol computes:
the cosine of the two clips' embeddings, each clip at 16 kHz, whole.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..data.audio import resample
from .metrics import MetricModelUnavailable

SEED_TTS_EVAL_SV = "wavlm_large_finetune.pth"
SV_DOWNLOAD = ("seed-tts-eval's README links it (Google Drive file 1-aE1NfzpRCLxA4GUxX9ITI3F9LlbtEGP, from "
               "microsoft/UniSpeech's speaker-verification downstream)")
WAVLM_PREFIX = "feature_extract.model."
CONV_STRIDES = (5, 2, 2, 2, 2, 2, 2)
"""wav2vec 2.0's feature encoder strides (320 samples per frame at 16 kHz); WavLM keeps them."""


class ConvReluBn(nn.Module):
    """Conv1d, then ReLU, then batch norm (this order, as the checkpoint was trained)."""

    def __init__(self, cin: int, cout: int, kernel: int = 1, padding: int = 0, dilation: int = 1):
        super().__init__()
        self.conv = nn.Conv1d(cin, cout, kernel, padding=padding, dilation=dilation)
        self.bn = nn.BatchNorm1d(cout)

    def forward(self, x):
        return self.bn(F.relu(self.conv(x)))


class Res2Conv(nn.Module):
    """Res2Net's hierarchical convolution: the channels in `scale` groups, each group's conv fed the previous
    group's output plus its own input; the last group passes through."""

    def __init__(self, channels: int, kernel: int, padding: int, dilation: int, scale: int):
        super().__init__()
        self.width = channels // scale
        self.convs = nn.ModuleList(nn.Conv1d(self.width, self.width, kernel, padding=padding, dilation=dilation)
                                   for _ in range(scale - 1))
        self.bns = nn.ModuleList(nn.BatchNorm1d(self.width) for _ in range(scale - 1))

    def forward(self, x):
        groups = torch.split(x, self.width, dim=1)
        outputs, carried = [], None
        for group, conv, bn in zip(groups, self.convs, self.bns):
            carried = group if carried is None else carried + group
            carried = bn(F.relu(conv(carried)))
            outputs.append(carried)
        return torch.cat(outputs + [groups[-1]], dim=1)


class SqueezeExcite(nn.Module):
    def __init__(self, channels: int, bottleneck: int):
        super().__init__()
        self.linear1 = nn.Linear(channels, bottleneck)
        self.linear2 = nn.Linear(bottleneck, channels)

    def forward(self, x):
        gate = torch.sigmoid(self.linear2(F.relu(self.linear1(x.mean(dim=2)))))
        return x * gate.unsqueeze(2)


class SERes2Block(nn.Module):
    """1x1 conv, Res2 conv, 1x1 conv, squeeze-excitation, plus the input (the attribute names are the checkpoint's)."""

    def __init__(self, channels: int, dilation: int, scale: int, bottleneck: int):
        super().__init__()
        self.Conv1dReluBn1 = ConvReluBn(channels, channels)
        self.Res2Conv1dReluBn = Res2Conv(channels, 3, dilation, dilation, scale)
        self.Conv1dReluBn2 = ConvReluBn(channels, channels)
        self.SE_Connect = SqueezeExcite(channels, bottleneck)

    def forward(self, x):
        return x + self.SE_Connect(self.Conv1dReluBn2(self.Res2Conv1dReluBn(self.Conv1dReluBn1(x))))


class AttentiveStatsPool(nn.Module):
    """Attention-weighted mean and standard deviation over time."""

    def __init__(self, channels: int, attention: int):
        super().__init__()
        self.linear1 = nn.Conv1d(channels, attention, kernel_size=1)
        self.linear2 = nn.Conv1d(attention, channels, kernel_size=1)

    def forward(self, x):
        alpha = torch.softmax(self.linear2(torch.tanh(self.linear1(x))), dim=2)
        mean = (alpha * x).sum(dim=2)
        std = ((alpha * x * x).sum(dim=2) - mean * mean).clamp(min=1e-9).sqrt()
        return torch.cat([mean, std], dim=1)


class EcapaTdnn(nn.Module):
    """ECAPA-TDNN on WavLM: the softmax-weighted sum of every hidden state (`feature_weight`), instance-normalised,
    three dilated SE-Res2 blocks (dilations 2, 3, 4), their outputs concatenated, attentive statistics pooling,
    an embedding."""

    def __init__(self, wavlm, channels: int, last: int, embedding: int, bottleneck: int, attention: int,
                 scale: int = 8):
        super().__init__()
        self.wavlm = wavlm
        hidden, states = wavlm.config.hidden_size, wavlm.config.num_hidden_layers + 1
        self.feature_weight = nn.Parameter(torch.zeros(states))
        self.instance_norm = nn.InstanceNorm1d(hidden)
        self.layer1 = ConvReluBn(hidden, channels, kernel=5, padding=2)
        self.layer2 = SERes2Block(channels, 2, scale, bottleneck)
        self.layer3 = SERes2Block(channels, 3, scale, bottleneck)
        self.layer4 = SERes2Block(channels, 4, scale, bottleneck)
        self.conv = nn.Conv1d(channels * 3, last, kernel_size=1)
        self.pooling = AttentiveStatsPool(last, attention)
        self.bn = nn.BatchNorm1d(last * 2)
        self.linear = nn.Linear(last * 2, embedding)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        """(1, samples) at 16 kHz -> (1, embedding)."""
        wav = F.layer_norm(wav, wav.shape[-1:])  # WavLM-Large was pre-trained on normalised waveforms
        out = self.wavlm(wav, output_hidden_states=True)
        # s3prl's hidden states, which the head was trained on: each layer's input, then the final layer-normed
        # output (transformers' last hidden state is the un-normed output in some versions, the normed in others)
        states = torch.stack([*out.hidden_states[:-1], out.last_hidden_state])
        weights = torch.softmax(self.feature_weight, dim=0)[:, None, None, None]
        x = self.instance_norm((weights * states).sum(dim=0).transpose(1, 2) + 1e-6)
        out1 = self.layer1(x)
        out2 = self.layer2(out1)
        out3 = self.layer3(out2)
        out4 = self.layer4(out3)
        out = F.relu(self.conv(torch.cat([out2, out3, out4], dim=1)))
        return self.linear(self.bn(self.pooling(out)))


_WAVLM_NAMES = [  # fairseq / UniSpeech WavLM name -> transformers' WavLMModel name
    (r"^feature_extractor\.conv_layers\.(\d+)\.0\.", r"feature_extractor.conv_layers.\1.conv."),
    (r"^feature_extractor\.conv_layers\.(\d+)\.2(\.1)?\.", r"feature_extractor.conv_layers.\1.layer_norm."),
    (r"^layer_norm\.", "feature_projection.layer_norm."),
    (r"^post_extract_proj\.", "feature_projection.projection."),
    (r"^mask_emb$", "masked_spec_embed"),
    (r"^encoder\.pos_conv\.0\.weight_g$", "encoder.pos_conv_embed.conv.parametrizations.weight.original0"),
    (r"^encoder\.pos_conv\.0\.weight_v$", "encoder.pos_conv_embed.conv.parametrizations.weight.original1"),
    (r"^encoder\.pos_conv\.0\.bias$", "encoder.pos_conv_embed.conv.bias"),
    (r"\.self_attn\.grep_linear\.", ".attention.gru_rel_pos_linear."),
    (r"\.self_attn\.grep_a$", ".attention.gru_rel_pos_const"),
    (r"\.self_attn\.relative_attention_bias\.", ".attention.rel_attn_embed."),
    (r"\.self_attn\.(k|q|v|out)_proj\.", r".attention.\1_proj."),
    (r"\.self_attn_layer_norm\.", ".layer_norm."),
    (r"\.fc1\.", ".feed_forward.intermediate_dense."),
    (r"\.fc2\.", ".feed_forward.output_dense."),
]
_UNUSED = ("final_proj", "label_embs_concat", "quantizer", "project_q")  # pre-training heads


def wavlm_name(name: str) -> str:
    """A UniSpeech WavLM parameter name (after `feature_extract.model.`) as transformers names it."""
    for pattern, replacement in _WAVLM_NAMES:
        name = re.sub(pattern, replacement, name)
    return name


def _sizes(state: dict[str, torch.Tensor]):
    """WavLM's config and the head's sizes, from the checkpoint's shapes."""
    from transformers import WavLMConfig

    wavlm = {k[len(WAVLM_PREFIX):]: v for k, v in state.items() if k.startswith(WAVLM_PREFIX)}
    conv_weight = re.compile(r"feature_extractor\.conv_layers\.(\d+)\.0\.weight$")
    convs = sorted(int(m.group(1)) for k in wavlm if (m := conv_weight.match(k)))
    layers = sorted({int(m.group(1)) for k in wavlm if (m := re.match(r"encoder\.layers\.(\d+)\.", k))})
    if not convs or not layers or "post_extract_proj.weight" not in wavlm:
        raise ValueError("not a WavLM + ECAPA-TDNN checkpoint: no WavLM weights under 'feature_extract.model.'")
    conv_weights = [wavlm[f"feature_extractor.conv_layers.{i}.0.weight"] for i in convs]
    layer_norm_convs = any(re.match(r"feature_extractor\.conv_layers\.\d+\.2\.1\.", k) for k in wavlm)
    hidden, _ = wavlm["post_extract_proj.weight"].shape
    pos_conv = wavlm["encoder.pos_conv.0.weight_v"]
    config = WavLMConfig(
        hidden_size=hidden, num_hidden_layers=len(layers),
        num_attention_heads=wavlm["encoder.layers.0.self_attn.grep_a"].shape[1],
        intermediate_size=wavlm["encoder.layers.0.fc1.weight"].shape[0],
        conv_dim=tuple(w.shape[0] for w in conv_weights), conv_kernel=tuple(w.shape[2] for w in conv_weights),
        conv_stride=CONV_STRIDES[: len(convs)], num_feat_extract_layers=len(convs),
        conv_bias="feature_extractor.conv_layers.0.0.bias" in wavlm,
        feat_extract_norm="layer" if layer_norm_convs else "group", do_stable_layer_norm=layer_norm_convs,
        num_conv_pos_embeddings=pos_conv.shape[2], num_conv_pos_embedding_groups=hidden // pos_conv.shape[1],
        num_buckets=wavlm["encoder.layers.0.self_attn.relative_attention_bias.weight"].shape[0])
    head = {"channels": state["layer1.conv.weight"].shape[0], "last": state["conv.weight"].shape[0],
            "embedding": state["linear.weight"].shape[0],
            "bottleneck": state["layer2.SE_Connect.linear1.weight"].shape[0],
            "attention": state["pooling.linear1.weight"].shape[0],
            "scale": len([k for k in state if re.match(r"layer2\.Res2Conv1dReluBn\.convs\.\d+\.weight$", k)]) + 1}
    return config, head


def build_wavlm_ecapa(state: dict[str, torch.Tensor]) -> EcapaTdnn:
    """The model for a UniSpeech-format state dict, every weight loaded (a missing one is an error)."""
    from transformers import WavLMModel

    config, head = _sizes(state)
    model = EcapaTdnn(WavLMModel(config), **head)
    translated = {}
    for name, value in state.items():
        if name.startswith(WAVLM_PREFIX):
            if not any(part in name for part in _UNUSED):
                translated["wavlm." + wavlm_name(name[len(WAVLM_PREFIX):])] = value
        else:
            translated[name] = value
    missing, unexpected = model.load_state_dict(translated, strict=False)
    missing = [k for k in missing if not k.endswith("num_batches_tracked")]
    if missing or unexpected:
        raise ValueError(f"the checkpoint does not match WavLM + ECAPA-TDNN: missing {missing[:5]}, unexpected "
                         f"{unexpected[:5]}.")
    return model.eval()


def load_wavlm_ecapa(checkpoint: str | None, device: str = "cpu"
                     ) -> Callable[[Sequence[tuple[np.ndarray, np.ndarray]], int], list[float]]:
    """A scorer `(pairs, sample_rate) -> cosines` over seed-tts-eval's speaker-verification checkpoint (a local
    `wavlm_large_finetune.pth`). Loaded once."""
    if not checkpoint or not Path(checkpoint).is_file():
        raise MetricModelUnavailable(
            f"seed-tts-eval's speaker-verification checkpoint ({SEED_TTS_EVAL_SV}) is not at {checkpoint!r}: "
            f"{SV_DOWNLOAD}; download it and pass --sv_checkpoint PATH.")
    try:
        saved = torch.load(checkpoint, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - the published file pickles more than tensors; the user named this file
        saved = torch.load(checkpoint, map_location="cpu", weights_only=False)
    model = build_wavlm_ecapa(saved.get("model", saved)).to(device)

    @torch.inference_mode()
    def similarity(pairs: Sequence[tuple[np.ndarray, np.ndarray]], sample_rate: int) -> list[float]:
        def embed(wav):
            audio = torch.from_numpy(resample(np.asarray(wav, np.float32), sample_rate, 16_000))[None].to(device)
            return model(audio)

        return [float(F.cosine_similarity(embed(a), embed(b)).item()) for a, b in pairs]

    return similarity
