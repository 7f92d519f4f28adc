"""LoRA fine-tuning: the loss module (`model`), the `transformers.Trainer` subclass (`trainer`), its callbacks
(`callbacks`), checkpoint completeness, resume and Hub sync (`checkpoints`), and the job `training/run.py` runs
(`run`)."""
