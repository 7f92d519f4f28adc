"""A random-weight stand-in for seed-tts-eval's speaker-verification checkpoint (`wavlm_large_finetune.pth`), in
its real format: `{"model": state_dict}` with UniSpeech's names, the WavLM under `feature_extract.model.` in
fairseq's names (as s3prl loads it) beside the ECAPA-TDNN head, plus a pre-training head the loader must ignore.
Tiny sizes; the loader reads every size from the shapes."""

from __future__ import annotations

import re
from pathlib import Path

_UNISPEECH_NAMES = [  # transformers' WavLMModel name -> fairseq / UniSpeech name (layer-norm feature extractor)
    (r"^feature_extractor\.conv_layers\.(\d+)\.conv\.", r"feature_extractor.conv_layers.\1.0."),
    (r"^feature_extractor\.conv_layers\.(\d+)\.layer_norm\.", r"feature_extractor.conv_layers.\1.2.1."),
    (r"^feature_projection\.layer_norm\.", "layer_norm."),
    (r"^feature_projection\.projection\.", "post_extract_proj."),
    (r"^masked_spec_embed$", "mask_emb"),
    (r"^encoder\.pos_conv_embed\.conv\.parametrizations\.weight\.original0$", "encoder.pos_conv.0.weight_g"),
    (r"^encoder\.pos_conv_embed\.conv\.parametrizations\.weight\.original1$", "encoder.pos_conv.0.weight_v"),
    (r"^encoder\.pos_conv_embed\.conv\.weight_g$", "encoder.pos_conv.0.weight_g"),
    (r"^encoder\.pos_conv_embed\.conv\.weight_v$", "encoder.pos_conv.0.weight_v"),
    (r"^encoder\.pos_conv_embed\.conv\.bias$", "encoder.pos_conv.0.bias"),
    (r"\.attention\.gru_rel_pos_linear\.", ".self_attn.grep_linear."),
    (r"\.attention\.gru_rel_pos_const$", ".self_attn.grep_a"),
    (r"\.attention\.rel_attn_embed\.", ".self_attn.relative_attention_bias."),
    (r"\.attention\.(k|q|v|out)_proj\.", r".self_attn.\1_proj."),
    (r"(encoder\.layers\.\d+)\.layer_norm\.", r"\1.self_attn_layer_norm."),
    (r"\.feed_forward\.intermediate_dense\.", ".fc1."),
    (r"\.feed_forward\.output_dense\.", ".fc2."),
]


def write_sv_checkpoint(path: str | Path, seed: int = 0) -> Path:
    """Writes the stand-in checkpoint to `path` (a .pth) and returns it (pass it as --sv_checkpoint)."""
    import torch
    from transformers import WavLMConfig, WavLMModel

    from ..evaluation.wavlm_ecapa import WAVLM_PREFIX, EcapaTdnn

    torch.manual_seed(seed)
    config = WavLMConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                         conv_dim=(16,) * 7, conv_bias=True, feat_extract_norm="layer", do_stable_layer_norm=True,
                         num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2)
    model = EcapaTdnn(WavLMModel(config), channels=16, last=24, embedding=8, bottleneck=4, attention=4)
    for module in model.modules():  # trained statistics, not the identity
        if isinstance(module, torch.nn.BatchNorm1d):
            module.running_mean.normal_(0, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    state = {}
    for name, value in model.state_dict().items():
        if name.startswith("wavlm."):
            name = name[len("wavlm."):]
            for pattern, replacement in _UNISPEECH_NAMES:
                name = re.sub(pattern, replacement, name)
            name = WAVLM_PREFIX + name
        state[name] = value
    state[WAVLM_PREFIX + "label_embs_concat"] = torch.zeros(4, 8)  # pre-training's, unused at inference
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": state, "epoch": 1}, path)
    return path
