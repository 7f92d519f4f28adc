"""The Hub card templates (Jinja): `model_card.md` (merged models and adapters) and `dataset_card.md`.

They live at the repository's top level and ship inside the package as `chatterbox_latam.hub_cards` (setup.py maps
this folder onto that name), so `chatterbox_latam.hub.cards` finds them in an editable install and in a wheel."""
