"""Shipping to the Hugging Face Hub: cards rendered from the templates shipped in this package (`cards`,
`templates/`) and pushes of datasets and models (`push`)."""
