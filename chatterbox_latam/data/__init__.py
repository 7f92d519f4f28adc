"""From recordings to training batches: sources (`sources`), audio decoding and cleaning (`audio`), Spanish text
(`text`), S3 tokens and embeddings (`features`), the prepared dataset written (`prepare`) and read (`dataset`),
and the training batch (`collator`)."""
