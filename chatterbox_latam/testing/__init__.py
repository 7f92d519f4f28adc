"""Stand-ins that let everything run offline and checks against the real weights: a tiny random-init checkpoint
in the real file layouts (`tiny_model`), a Spanish espeak-ng corpus (`espeak_corpus`), and `make check-real`
(`check_real`)."""
