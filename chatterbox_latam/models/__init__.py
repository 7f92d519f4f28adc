"""Checkpoints and what is done to their weights: one loader for every Chatterbox checkpoint (`checkpoint`,
`loading`), LoRA adapters (`lora`), merging them into standalone models (`merge`), and the fixed probe inputs a
merge and the precision guard compare outputs on (`probes`). Depends only on constants, utils and config."""
