"""Spanish text normalisation for the grapheme tokenizer.

Chatterbox reads graphemes, so "25%" must reach it as "veinticinco por ciento". `normalize_spanish` spells out
numbers, dates, times, percentages, currency amounts, ordinals and common abbreviations with `num2words`
(lang="es"), and keeps what Spanish spelling needs: accents, ñ, ü and the opening marks ¿ ¡. It is the same
function at preparation and at synthesis time, so the model always sees text the same way.
"""

from __future__ import annotations

import re
import unicodedata

from num2words import num2words

from ..constants import ACCENT_CURRENCY

MONTHS = [
    "enero", "febrero", "marzo", "abril", "mayo", "junio",
    "julio", "agosto", "septiembre", "octubre", "noviembre", "diciembre",
]

# Abbreviation -> expansion. Matched case-sensitively, as whole words.
ABBREVIATIONS = {
    "Sr.": "señor", "Sra.": "señora", "Srta.": "señorita", "Sres.": "señores",
    "Dr.": "doctor", "Dra.": "doctora", "Dres.": "doctores",
    "Lic.": "licenciado", "Lcda.": "licenciada", "Ing.": "ingeniero", "Arq.": "arquitecto",
    "Prof.": "profesor", "Profa.": "profesora", "Mtro.": "maestro", "Mtra.": "maestra",
    "Ud.": "usted", "Uds.": "ustedes", "Vd.": "usted", "Vds.": "ustedes",
    "Av.": "avenida", "Avda.": "avenida", "Cía.": "compañía", "Dpto.": "departamento",
    "etc.": "etcétera", "aprox.": "aproximadamente", "pág.": "página", "págs.": "páginas",
    "núm.": "número", "tel.": "teléfono", "Tel.": "teléfono", "Cel.": "celular", "cel.": "celular",
    "p. ej.": "por ejemplo", "EE. UU.": "Estados Unidos",
    "EE.UU.": "Estados Unidos", "S.A.": "sociedad anónima", "a. m.": "de la mañana", "p. m.": "de la tarde",
    "a.m.": "de la mañana", "p.m.": "de la tarde",
}
# Units after a number.
UNITS = {
    "km/h": "kilómetros por hora", "km": "kilómetros", "kg": "kilogramos", "cm": "centímetros",
    "mm": "milímetros", "m": "metros", "g": "gramos", "l": "litros", "ml": "mililitros",
    "°C": "grados centígrados", "°": "grados", "h": "horas", "min": "minutos", "s": "segundos",
}
SYMBOLS = {"&": " y ", "+": " más ", "=": " igual a ", "@": " arroba ", "#": " número ", "×": " por "}
ORDINAL_SUFFIXES = {
    "º": "o", "°": "o", "ª": "a", ".º": "o", ".ª": "a",
    "er": "er", "ero": "o", "ro": "o", "do": "o", "to": "o", "vo": "o", "no": "o", "mo": "o",
    "era": "a", "ra": "a", "da": "a", "ta": "a", "va": "a", "na": "a", "ma": "a",
}

# Phone numbers: an optional +country code, an optional (area code), then digit groups split by spaces or hyphens.
_PHONE = re.compile(r"(?<![\w+])(\+\d{1,3}[ -]?)?(\((\d{1,4})\)[ -]?)?(\d{2,4}(?:[ -]\d{2,4}){0,4}|\d{7,13})(?![\w])")
# Words after which a run of digits is a phone number even without separators ("llama al 5512345678").
_PHONE_CONTEXT = re.compile(r"(?:tel[eé]fono|tel|celular|cel|m[oó]vil|whatsapp|fax|ll[aá]m\w*(?: al)?|marc\w*(?: al)?)"
                            r"[\s:.]*$", re.IGNORECASE)
_NUMBER = r"\d{1,3}(?:[.,]\d{3})+|\d+"  # 1.500.000 / 1,500 / 1500 (grouped thousands or plain digits)
_AMOUNT = rf"(?:{_NUMBER})(?:[.,]\d{{1,2}}(?!\d))?"


def _integer(text: str) -> int:
    return int(re.sub(r"[.,]", "", text))


def _cardinal(value: int) -> str:
    return ("menos " if value < 0 else "") + num2words(abs(value), lang="es")


def _decimal(integer_part: str, separator: str, fraction: str) -> str:
    """'3', ',', '05' -> 'tres coma cero cinco': the separator is read as written (coma or punto)."""
    leading_zeros = len(fraction) - len(fraction.lstrip("0"))
    rest = fraction.lstrip("0")
    words = " ".join(["cero"] * leading_zeros + ([_cardinal(int(rest))] if rest else []))
    return f"{_cardinal(_integer(integer_part))} {'coma' if separator == ',' else 'punto'} {words}"


def _split_amount(amount: str) -> tuple[int, int | None]:
    """'1.500,50' -> (1500, 50); '12.5' -> (12, 50); '1,500' -> (1500, None)."""
    match = re.fullmatch(rf"({_NUMBER})(?:([.,])(\d{{1,2}}))?", amount)
    whole, cents = match.group(1), match.group(3)
    if cents is None:
        return _integer(whole), None
    return _integer(whole), int(cents.ljust(2, "0"))


def _currency_words(amount: str, code: str) -> str:
    whole, cents = _split_amount(amount)
    value = whole + (cents or 0) / 100
    words = num2words(value, lang="es", to="currency", currency=code)
    if not cents:
        words = re.sub(r" con cero \w+$", "", words)
    return words


def _digit_group(digits: str) -> str:
    """One group of a phone number, read in pairs as Latin-American speakers read phones: '1234' -> 'doce treinta
    y cuatro'; an odd group starts with one digit, and a pair starting with 0 is read 'cero ...'."""
    head, rest = (digits[:1], digits[1:]) if len(digits) % 2 else ("", digits)
    parts = [_cardinal(int(head))] if head else []
    for i in range(0, len(rest), 2):
        pair = rest[i: i + 2]
        parts.append(("cero " if pair[0] == "0" else "") + _cardinal(int(pair)))
    return " ".join(parts)


def _phone(match: re.Match, before: str) -> str | None:
    """A phone number as digit groups separated by commas (short pauses), or None when the digits are not one."""
    country, area, groups = match.group(1), match.group(3), match.group(4)
    parts = re.split(r"[ -]", groups)
    digits = "".join(parts)
    total = len(digits) + len(area or "") + len((country or "").strip(" -+"))
    hyphenated = "-" in groups and len(parts) >= 3
    spaced = len(parts) >= 3 and len(digits) >= 8
    if not (country or area) and re.fullmatch(r"\d{1,2}-\d{1,2}-(?:\d{2}|\d{4})", groups):
        return None  # a date (15-03-2024)
    if total < 7 or not (country or area or hyphenated or spaced or _PHONE_CONTEXT.search(before)):
        return None
    words = []
    if country:
        words.append("más " + _cardinal(int(country.strip(" -+"))))
    if area:
        words.append(_digit_group(area))
    words += [_digit_group(part) for part in parts]
    return ", ".join(words)


def _apocope(words: str) -> str:
    """'uno' before a noun is 'un' ('veintiuno' -> 'veintiún'): un libro, veintiún años."""
    if words.endswith("veintiuno"):
        return words[: -len("veintiuno")] + "veintiún"
    if words.endswith("uno"):
        return words[:-1]
    return words


def normalize_spanish(text: str, accent: str | None = None, currency: str | None = None) -> str:
    """Spells out a Spanish sentence for the tokenizer.

    `accent` (mx, ar, co, cl, pe) picks what "$" means; `currency` (an ISO code num2words knows) overrides it.

    >>> normalize_spanish("El Dr. Pérez pagó $1.500 el 15/03/2024, un 25% más.", accent="mx")
    'El doctor Pérez pagó mil quinientos pesos el quince de marzo de dos mil veinticuatro, un veinticinco por ciento más.'
    """
    code = currency or ACCENT_CURRENCY.get((accent or "").lower(), "MXN")
    text = unicodedata.normalize("NFC", text)
    text = text.replace("\u00a0", " ").replace("“", '"').replace("”", '"').replace("‘", "'").replace("’", "'")
    text = re.sub(r"\s+", " ", text).strip()

    for abbreviation in sorted(ABBREVIATIONS, key=len, reverse=True):
        expansion = ABBREVIATIONS[abbreviation]
        pattern = rf"(?<![\w.]){re.escape(abbreviation)}"
        # An abbreviation that ends the sentence keeps its full stop.
        text = re.sub(pattern + r"(?=\s*$)", expansion + ".", text)
        text = re.sub(pattern + r"(?!\w)", expansion, text)
    text = re.sub(r"\b(?:N\.?º|Nº|No\.)\s*(?=\d)", "número ", text)
    # Phone numbers before dates, times and amounts read their digits ("55 1234-5678" is no date or sum).
    text = _PHONE.sub(lambda m: _phone(m, m.string[max(0, m.start() - 24): m.start()]) or m.group(0), text)

    # Dates: 15/03/2024, 1-5-99 -> "quince de marzo de dos mil veinticuatro".
    def date(match: re.Match) -> str:
        day, month, year = int(match.group(1)), int(match.group(2)), match.group(3)
        if not (1 <= day <= 31 and 1 <= month <= 12):
            return match.group(0)
        words = f"{'primero' if day == 1 else _cardinal(day)} de {MONTHS[month - 1]}"
        if year:
            full_year = int(year) + (2000 if len(year) == 2 and int(year) < 50 else 1900 if len(year) == 2 else 0)
            words += f" de {_cardinal(full_year)}"
        return words

    text = re.sub(r"\b(\d{1,2})[/-](\d{1,2})(?:[/-](\d{4}|\d{2}))?\b", date, text)
    # "1 de mayo" -> "primero de mayo".
    text = re.sub(rf"\b1 de (?={'|'.join(MONTHS)})", "primero de ", text, flags=re.IGNORECASE)

    # Times: 10:30 -> "diez y treinta"; 7:05 -> "siete y cinco"; 12:00 -> "doce".
    def clock(match: re.Match) -> str:
        hours, minutes = int(match.group(1)), int(match.group(2))
        if hours > 24 or minutes > 59:
            return match.group(0)
        return _cardinal(hours) + (f" y {_cardinal(minutes)}" if minutes else "")

    text = re.sub(r"\b(\d{1,2}):(\d{2})\b", clock, text)

    # Currency: US$ 20, USD 20, $1.500,50, 1.500 $, €10, S/ 50, 20 dólares stays as it is (only the number changes).
    symbols = {"US$": "USD", "USD": "USD", "U$S": "USD", "€": "EUR", "EUR": "EUR", "S/": "PEN", "S/.": "PEN",
               "MXN": "MXN", "ARS": "ARS", "COP": "COP", "CLP": "CLP", "PEN": "PEN", "$": code}
    symbol_pattern = "|".join(re.escape(s) for s in sorted(symbols, key=len, reverse=True))
    codes = "|".join(code for code in symbols if code.isalpha())
    # "$2.345,90 MXN": a code after the amount says which currency the symbol means, and is read once.
    text = re.sub(
        rf"(?<!\w)({symbol_pattern})\s?({_AMOUNT})(?:\s?({codes})(?!\w))?",
        lambda m: _currency_words(m.group(2), symbols[m.group(3) or m.group(1)]), text,
    )
    text = re.sub(
        rf"\b({_AMOUNT})\s?({symbol_pattern})(?!\w)", lambda m: _currency_words(m.group(1), symbols[m.group(2)]), text
    )

    # Percentages: 25%, 3,5 % -> "tres coma cinco por ciento".
    text = re.sub(
        r"(\d+)(?:([.,])(\d+))?\s?%",
        lambda m: (_decimal(m.group(1), m.group(2), m.group(3)) if m.group(3) else _cardinal(int(m.group(1))))
        + " por ciento",
        text,
    )

    # Ordinals: 1º, 2.ª, 3er, 10mo -> primero, segunda, tercer, décimo.
    suffixes = "|".join(re.escape(s) for s in sorted(ORDINAL_SUFFIXES, key=len, reverse=True))

    def ordinal(match: re.Match) -> str:
        value, suffix = int(match.group(1)), match.group(2)
        words = num2words(value, lang="es", to="ordinal")
        ending = ORDINAL_SUFFIXES[suffix]
        if ending == "er":
            return re.sub(r"o$", "", words)  # primer, tercer
        return re.sub(r"o$", ending, words) if ending == "a" else words

    text = re.sub(rf"\b(\d{{1,3}})({suffixes})(?!\w)", ordinal, text)

    # Units after a number: 5 km -> cinco kilómetros.
    units = "|".join(re.escape(u) for u in sorted(UNITS, key=len, reverse=True))
    text = re.sub(rf"(\d)\s?({units})(?![\w/])", lambda m: f"{m.group(1)} {UNITS[m.group(2)]}", text)

    # Decimal numbers (not thousands groups): 3,14 / 0.5 -> tres coma catorce / cero punto cinco.
    text = re.sub(r"(?<![\d.,])(\d+)([.,])(\d{1,2}|\d{4,})(?![\d])", lambda m: _decimal(*m.groups()), text)

    # Remaining integers, with "un"/"veintiún" before a word; a minus sign directly before a number is read.
    def cardinal(match: re.Match) -> str:
        sign, digits, following = match.group(1), match.group(2), match.group(3)
        value = _integer(digits) * (-1 if sign else 1)
        words = _cardinal(value)
        if following and following.lower() not in {"de", "y", "o", "a", "por", "en", "del", "al"}:
            words = _apocope(words)
        return words + (f" {following}" if following else "")

    text = re.sub(rf"(?:(?<=\s)|^)(-)?({_NUMBER})\b(?:\s([^\W\d_]+))?", cardinal, text)
    text = re.sub(rf"({_NUMBER})", lambda m: _cardinal(_integer(m.group(1))), text)

    for symbol, words in SYMBOLS.items():
        text = text.replace(symbol, words)
    text = re.sub(r"\s+([,.;:!?])", r"\1", text)
    return re.sub(r"\s+", " ", text).strip()


def text_for_model(text: str, accent: str | None = None, normalize: bool = True) -> str:
    """What T3 reads: the Spanish normalisation, then upstream's own punctuation clean-up (`punc_norm`), the same
    at preparation, training and synthesis."""
    from chatterbox.mtl_tts import punc_norm

    return punc_norm(normalize_spanish(text, accent=accent) if normalize else text)


def sentence_key(text: str) -> str:
    """A sentence as splits compare it: lower case, words only (punctuation and spacing dropped, accents kept), so
    "¿Dónde está?" and "dónde está" are one sentence, and a sentence several speakers read stays in one split."""
    return " ".join(re.sub(r"[^\w\s]|_", " ", unicodedata.normalize("NFC", text).lower()).split())


def encode_text(tokenizer, text: str, language_id: str = "es") -> list[int]:
    """T3 text-token ids: the multilingual tokenizer takes the language tag, the English one has none."""
    from chatterbox.models.tokenizers import MTLTokenizer

    if isinstance(tokenizer, MTLTokenizer):
        return tokenizer.encode(text, language_id=language_id)
    return tokenizer.encode(text)


def unknown_graphemes(text: str, tokenizer, language_id: str = "es") -> list[str]:
    """Characters of `text` that the grapheme tokenizer maps to [UNK] (empty when the text is fully readable)."""
    unk = tokenizer.tokenizer.token_to_id("[UNK]")
    if unk not in encode_text(tokenizer, text, language_id):
        return []
    return sorted({ch for ch in set(text) if ch != " " and unk in encode_text(tokenizer, ch, language_id)})


MAX_SENTENCE_CHARS = 250
_SENTENCE_END = re.compile(r"(?<=[.!?…;])[\"'»”)\]]*\s+")


def split_sentences(text: str, max_chars: int = MAX_SENTENCE_CHARS) -> list[str]:
    """Sentences of `text`, for synthesis one at a time: split after . ! ? … ; (abbreviations such as "Dr." or
    "Sra." stay with their sentence), then any piece longer than `max_chars` at commas, then at spaces.

    >>> split_sentences("Hola. ¿Cómo estás? El Dr. Pérez llegó.")
    ['Hola.', '¿Cómo estás?', 'El Dr. Pérez llegó.']
    """
    text = " ".join((text or "").split())
    pieces: list[str] = []
    for part in _SENTENCE_END.split(text):
        last = pieces[-1].split()[-1] if pieces else ""
        if pieces and part and (last in ABBREVIATIONS or re.fullmatch(r"\w\.", last) or
                                any(pieces[-1].endswith(" " + a) for a in ABBREVIATIONS if " " in a)):
            pieces[-1] += " " + part  # "Dr.", "p. ej.", initials: no sentence ends there
        elif part:
            pieces.append(part)
    sentences: list[str] = []
    for piece in pieces:
        while len(piece) > max_chars:
            cut = piece.rfind(", ", 0, max_chars)
            cut = cut + 1 if cut > max_chars // 3 else piece.rfind(" ", 0, max_chars)
            cut = cut if cut > 0 else max_chars
            sentences.append(piece[:cut].strip())
            piece = piece[cut:].strip()
        if piece:
            sentences.append(piece)
    return sentences

