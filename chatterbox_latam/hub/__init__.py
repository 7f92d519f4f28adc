"""Shipping to the Hugging Face Hub: cards rendered from the templates shipped with the package (`cards`,
the repository's `hub_cards/`) and pushes of datasets and models (`push`)."""
