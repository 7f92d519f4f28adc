"""Spanish normalisation: what the grapheme tokenizer must never see (digits, symbols) is spelled out."""

import pytest

from chatterbox_latam.data.text import normalize_spanish, text_for_model


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("Tengo 21 años y 1 perro.", "Tengo veintiún años y un perro."),
        ("La inflación subió un 4,5% en 2023.", "La inflación subió un cuatro coma cinco por ciento en dos mil veintitrés."),
        ("Nací el 15/03/1990.", "Nací el quince de marzo de mil novecientos noventa."),
        ("El 1 de mayo a las 10:30.", "El primero de mayo a las diez y treinta."),
        ("El Dr. Pérez y la Sra. Núñez, etc.", "El doctor Pérez y la señora Núñez, etcétera."),
        ("Llegó en 3er lugar, la 2ª vez.", "Llegó en tercer lugar, la segunda vez."),
        ("Corrió 5 km en 30 min.", "Corrió cinco kilómetros en treinta minutos."),
        ("Vivo en Av. Reforma No. 222.", "Vivo en avenida Reforma número doscientos veintidós."),
        ("Hay 1.500.000 habitantes.", "Hay un millón quinientos mil habitantes."),
        ("Cuesta US$ 20,50.", "Cuesta veinte dólares con cincuenta centavos."),
        ("¡Qué alegría, señor Muñoz! ¿Vienes?", "¡Qué alegría, señor Muñoz! ¿Vienes?"),
        ("El pingüino comió 0.5 kg.", "El pingüino comió cero punto cinco kilogramos."),
        ("Hace -5 grados.", "Hace menos cinco grados."),
    ],
)
def test_normalize_spanish(raw, expected):
    assert normalize_spanish(raw, accent="mx") == expected


@pytest.mark.parametrize("accent, words", [("mx", "pesos"), ("ar", "pesos"), ("pe", "soles")])
def test_dollar_sign_follows_the_accent(accent, words):
    assert normalize_spanish("Son $1.250.", accent=accent) == f"Son mil doscientos cincuenta {words}."


def test_soles_symbol_and_euro():
    assert normalize_spanish("Pagué S/ 50 y €10.") == "Pagué cincuenta soles y diez euros."


def test_text_for_model_applies_upstream_punctuation_cleanup():
    # upstream punc_norm: capitalises and turns ':' into ','; our normaliser already spelled out the time
    assert text_for_model("a las 9:15: llegamos") == "A las nueve y quince, llegamos."


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("Son $2.345.678,90 MXN.", "Son dos millones trescientos cuarenta y cinco mil seiscientos setenta y ocho pesos "
                                   "con noventa centavos."),
        ("Cuesta 500 USD o 20.000 COP.", "Cuesta quinientos dólares o veinte mil pesos."),
        ("Son $120 USD, no 120 ARS ni 120 CLP.", "Son ciento veinte dólares, no ciento veinte pesos ni ciento veinte "
                                                 "pesos."),
        ("Pagué 35,50 PEN.", "Pagué treinta y cinco soles con cincuenta céntimos."),
    ],
)
def test_iso_currency_codes_after_amounts_are_spoken(raw, expected):
    assert normalize_spanish(raw, accent="mx") == expected


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("Llama al 55 1234 5678.", "Llama al cincuenta y cinco, doce treinta y cuatro, cincuenta y seis setenta y ocho."),
        ("Mi número: +52 (55) 1234-5678.", "Mi número: más cincuenta y dos, cincuenta y cinco, doce treinta y cuatro, "
                                           "cincuenta y seis setenta y ocho."),
        ("Tel. 011 4567-8901", "teléfono cero once, cuarenta y cinco sesenta y siete, ochenta y nueve cero uno"),
        ("Escríbeme al whatsapp 5512345678.", "Escríbeme al whatsapp cincuenta y cinco doce treinta y cuatro "
                                              "cincuenta y seis setenta y ocho."),
        # not phone numbers: a date, a range of years, an amount
        ("El 15-03-2024 llegó.", "El quince de marzo de dos mil veinticuatro llegó."),
        ("Hay 1.500.000 habitantes.", "Hay un millón quinientos mil habitantes."),
    ],
)
def test_phone_numbers_are_read_as_digit_groups(raw, expected):
    assert normalize_spanish(raw, accent="mx") == expected


LONG = ("Cuando llegamos a la estación, el tren ya se había ido, así que esperamos una hora en el andén, tomamos un "
        "café con leche y unas medialunas, conversamos sobre el viaje que haríamos al día siguiente por la costa, y "
        "finalmente, cansados pero contentos, subimos al último tren de la noche que iba hacia el norte del país.")


def test_a_sentence_over_the_limit_is_cut_at_commas_and_nothing_is_lost():
    """318 characters in one sentence, 80 allowed: cut after commas (each piece ends with one but the last), every
    piece within the limit, and the pieces joined give the text back, whitespace aside."""
    from chatterbox_latam.data.text import split_sentences

    text = f"Hola.  {LONG}\n¿Vienes?"
    pieces = split_sentences(text, max_chars=80)
    assert pieces[0] == "Hola." and pieces[-1] == "¿Vienes?"  # the short sentences around it stay whole
    middle = pieces[1:-1]
    assert len(middle) >= 318 // 80 + 1 and all(len(p) <= 80 for p in middle)
    assert all(p.endswith(",") for p in middle[:-1]) and middle[-1].endswith("país.")
    assert " ".join(pieces) == " ".join(text.split())


def test_a_long_stretch_without_commas_is_cut_between_words():
    """No comma where a cut is needed (or only one in the first third of the limit: too short a piece): cut at
    the last space within the limit, never inside a word; a single word over the limit is cut at the limit. The
    default limit is the synthesis one (250)."""
    from chatterbox_latam.data.text import MAX_SENTENCE_CHARS, split_sentences

    words = LONG.replace(",", "")
    pieces = split_sentences(words, max_chars=60)
    assert all(len(p) <= 60 for p in pieces) and len(pieces) >= len(words) // 60 + 1
    assert [w for p in pieces for w in p.split()] == words.split()  # every word whole, in order
    assert all(len(p) > 40 for p in pieces[:-1])  # each cut at the last space within the limit: no short pieces
    early = "Sí, " + words
    first = split_sentences(early, max_chars=60)[0]
    assert first != "Sí," and len(first) > 50 and " ".join(split_sentences(early, 60)) == early
    word = "a" * 130
    assert split_sentences(word, max_chars=50) == ["a" * 50, "a" * 50, "a" * 30]
    pieces = split_sentences(" ".join([words] * 3))
    assert all(len(p) <= MAX_SENTENCE_CHARS for p in pieces) and " ".join(pieces) == " ".join([words] * 3)
