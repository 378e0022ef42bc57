"""Postal addresses and national ids by their shape: what spaCy's NER misses in an address
(house numbers, street names it takes for people, postcodes) and ids Presidio has no
recognizer for, or one that refuses test values.

Addresses are found in pieces, then joined: a street (a house number with capitalised words,
a street word before the name as in French, Italian, Spanish and Polish, or after it as in
German and Dutch), a postcode followed by a town, a US state with its ZIP, a military
address. Pieces (and the NER's places) separated only by commas, blanks and up to four
capitalised words (the town) become one address, so no part of it is left behind.
Ids: the UK National Insurance number (any letter pair, as test data uses ZZ), the French NIR
(mod-97 key), the US ITIN, the Dutch BSN (11-check), the Brazilian CPF (two check digits),
Spanish DNI/NIE (check letter). Not covered: addresses without a street word or house number
("the old mill near Lyon"), countries whose street words are not listed here.
"""

from __future__ import annotations

import re

_CAP = r"[A-ZÀ-ÝŁŚŻŹĆŃ][\w'\u2019.-]*"
_PARTICLE = (
    r"(?:de|del|della|dei|di|da|du|des|la|le|les|van|der|den|am|an|im|von|vorm|bei|"
    r"ob|unter|sur|sous|en|sul|al|y|el|los|las|op|aan|bij|i)\b"
)
_STREET_BEFORE = (
    r"rue|avenue|av\.|boulevard|bd\.?|chemin|place|allée|impasse|quai|route|cours|via|viale|"
    r"piazza|piazzale|corso|vicolo|largo|strada|contrada|borgo|incrocio|rotonda|stretto|"
    r"canale|calle|avenida|avda\.|plaza|paseo|camino|carrera|ronda|rambla|pasaje|glorieta|"
    r"cuesta|vía|vial|alameda|urbanización|acceso|callejón|cañada|carretera|travesía|pasadizo|"
    r"paseo|ramal|senda|subida|bajada|polígono|muelle|arroyo|barrio|"
    r"ul\.|al\.|pl\.|os\.|ulica|aleja|plac|osiedle|rynek|rua|praça|travessa|estrada"
)
_STREET_AFTER = (
    r"stra(?:ß|ss)e|str\.|weg|gasse|platz|allee|ring|damm|ufer|chaussee|straat|laan|plein|"
    r"gracht|kade|singel|dijk|steeg|hof|pad|markt|baan|dreef|kanaal|wal|lei|pfad|stieg|"
    r"berg|feld|tor|boulevard|plantsoen|erf|hoeve|veld"
)
_ENGLISH_TYPES = (
    r"Street|St\.?|Road|Rd\.?|Avenue|Ave\.?|Lane|Ln\.?|Drive|Dr\.?|Court|Ct\.?|Place|Pl\.?|"
    r"Boulevard|Blvd\.?|Way|Run|Square|Sq\.?|Terrace|Crescent|Close|Park|Parkway|Circle|"
    r"Trail|Highway|Hills?|Row|Walk|Grove|Gardens|Mews|Green|Heights|View|Ridge|Creek|Path|"
    r"Mountains?|Locks?|Mission|Ports?|Ferry|Lane|Stravenue|Squares?|Courts?|Drives?|"
    r"Plaza|Point|Port|Route|Village|Vista|Loop|Pass|Pike|Alley|Bypass|Causeway|Crossing|"
    r"Estates?|Expressway|Freeway|Junction|Knolls?|Landing|Meadows?|Mills?|Mounts?|Orchard|"
    r"Passage|Prairie|Ranch|Rapids?|Rest|Shoals?|Shores?|Springs?|Stations?|Streets?|Summit|"
    r"Throughway|Trace|Track|Turnpike|Underpass|Unions?|Valleys?|Viaducts?|Views?|Villages?|"
    r"Ville|Wells?|Lakes?|Islands?|Isles?|Harbors?|Fields?|Forks?|Forges?|Fords?|Falls?|"
    r"Brooks?|Branch|Bridge|Burgs?|Camp|Canyon|Cape|Centers?|Cliffs?|Club|Common|Corners?|"
    r"Coves?|Crest|Curve|Dale|Dam|Divide|Extensions?|Flats?|Forest|Fort|Glens?|Haven|Hollow|"
    r"Inlet|Keys?|Lights?|Lodge|Manor|Motorway|Neck|Oval|Overpass|Parks?|Pines?|Plains?|"
    r"Radial|Ramp|Shore|Skyway|Spur|Stravenue|Stream|Tunnel|Wall|Ways?|Wharf|Byway|Course|"
    r"Trafficway|Crossroads?|Gateways?|Loaf|Garden|Land|Mall|River|Rue|Via"
)
_HOUSE = r"\d{1,5}[A-Za-z]?(?:\s?[/-]\s?\d{1,5}[A-Za-z]?)?"
_STREET = re.compile(
    # 12 Maple Grove Court / 150 Richard Run (English: number first, street type last)
    rf"\b{_HOUSE}\s+(?:{_CAP}\s+){{0,3}}(?:{_ENGLISH_TYPES})s?\b\.?"
    rf"(?:\s*,?\s*(?:Apt\.?|Suite|Unit|Flat)\s*\d+\w?)?"
    # 44, rue de Prévost / Via Roma 3 / ul. Krasickiego 00 / Plaza de Belén Girona 97
    rf"|(?:\b\d{{1,5}}\s*,?\s+)?(?i:\b(?:{_STREET_BEFORE}))(?=\s)"
    rf"(?:\s+(?:{_PARTICLE}|{_CAP})){{1,5}}(?:\s*,?\s*{_HOUSE}\b)?"
    # C. de Leonardo Gil 251 (Spanish "calle", abbreviated: only with its house number)
    rf"|\bC\.\s+(?:(?:{_PARTICLE}|{_CAP})\s+){{1,5}}{_HOUSE}\b"
    # Oderwaldstr. 8533 / Kerkstraat 12 / Alte Poststraße 5 / van der Dussenweg 8 (a street
    # named after a person keeps the name's particles)
    rf"|\b(?:{_CAP}\s+)?(?:{_PARTICLE}\s+)*[A-ZÀ-Ý][\w'\u2019-]*?(?i:{_STREET_AFTER})\.?"
    rf"\s+{_HOUSE}\b"
    # Studio 2, Perkins Square (a flat before an English street without a house number)
    rf"|\b(?:Studio|Flat|Apartment|Apt\.?|Suite|Unit)\s+\d+\w?,?\s+(?:{_CAP}\s+){{1,3}}"
    rf"(?:{_ENGLISH_TYPES})s?\b"
    # US military mail
    r"|\b(?:PSC|Unit)\s+\d{4},?\s+Box\s+\d{4}|\bUS(?:NS|NV|S|CGC)\s+" + _CAP,
)
_POSTCODE_TOWN = re.compile(
    # 06812 Coburg / 6783 OR Hoevelaken / 84-555 Łódź / 2885 QM 's-Gravenmoer (a town must follow)
    rf"\b(?:\d{{5}}|\d{{4}}\s?[A-Z]{{2}}|\d{{2}}-\d{{3}})\s*,?\s+(?:'[st][\s-]?)?{_CAP}"
    rf"(?:[\s-]+(?:{_PARTICLE}|{_CAP}))*(?:\s*\([A-Z]{{2}}\))?"
    # SR08 7UX (UK postcode), AP 04307 / IL 62704 (US state + ZIP), [AFD]PO military
    r"|\b[A-Z]{1,2}\d[A-Z\d]?\s?\d[A-Z]{2}\b|\b(?:[AFD]PO\s+)?A[AEP]\s+\d{5}\b"
    r"|,\s*[A-Z]{2}\s+\d{5}(?:-\d{4})?\b"
)
_NUMBERED_WORDS = re.compile(rf"\b{_HOUSE}\s+(?:{_CAP}\s+){{0,2}}{_CAP}")
# What may separate two pieces of one address: commas, blanks, a town's words.
# (A floor or flat number, "Piano 3", may sit between the street and the postcode.)
_GAP = re.compile(rf"[\s,]*(?:(?:{_PARTICLE}|{_CAP}|\d{{1,5}}|\([A-Z]{{2}}\))[\s,]*){{0,4}}")
_MAX_GAP = 60
# After an address: floor and door ("Piso 3", "Piano 5"), then the town and a postcode after
# it ("Ávila, 46107") or the postcode alone.
_TRAILING_POSTCODE = re.compile(
    r"[\s,]*(?:(?:Piso|Puerta|Piano|Scala|Interno|Escalera|Apt\.?|Suite|Unit|Flat|Floor|Bus|"
    rf"Stock)\s+\w+[\s,]*|\d{{1,3}}[\s,]+)*(?:(?:{_CAP}[\s,]+){{1,3}}\d{{4,5}}\b|\d{{4,5}}\b)(?![.\d-])"
)


def address_spans(text: str, places: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """Address spans: street and postcode pieces, and the NER's `places`, joined when only a
    short gap of commas and town names separates them. A lone place stays a place (returned
    only when it joined a street or postcode piece)."""
    pieces = [(m.start(), m.end(), True) for m in _STREET.finditer(text)]
    pieces += [(m.start() + (m.group(0)[0] == ","), m.end(), True)
               for m in _POSTCODE_TOWN.finditer(text)]  # fmt: skip
    pieces += [(s, e, False) for s, e in places]
    # A house number and capitalised words ("275 Holly Mission"): a street only when it joins
    # a postcode or a town the NER knows (street types are too many to list).
    pieces += [(m.start(), m.end(), False) for m in _NUMBERED_WORDS.finditer(text)]
    pieces.sort()
    merged: list[list] = []
    for start, end, strong in pieces:
        if merged:
            last = merged[-1]
            gap = text[last[1] : start]
            if start <= last[1] or (len(gap) <= _MAX_GAP and _GAP.fullmatch(gap)):
                last[1] = max(last[1], end)
                last[2] = last[2] or strong
                continue
        merged.append([start, end, strong])
    spans = []
    for start, end, strong in merged:
        if strong:  # a postcode after the town ("Huelva, 16130") belongs to the address
            tail = _TRAILING_POSTCODE.match(text, end)
            spans.append((start, tail.end() if tail else end))
    return spans


# --- national ids ----------------------------------------------------------------------------


def _nir_ok(value: str) -> bool:
    digits = re.sub(r"\s", "", value).upper().replace("2A", "19").replace("2B", "18")
    if len(digits) != 15 or not digits.isdigit():
        return False
    return 97 - int(digits[:13]) % 97 == int(digits[13:])


def _bsn_ok(value: str) -> bool:
    d = [int(c) for c in value]
    return len(d) == 9 and (sum(x * (9 - i) for i, x in enumerate(d[:8])) - d[8]) % 11 == 0


def _cpf_ok(value: str) -> bool:
    d = [int(c) for c in re.sub(r"\D", "", value)]
    if len(d) != 11 or len(set(d)) == 1:
        return False
    for n in (9, 10):
        check = sum(x * (n + 1 - i) for i, x in enumerate(d[:n])) * 10 % 11 % 10
        if check != d[n]:
            return False
    return True


def _dni_ok(value: str) -> bool:
    value = value.replace("-", "").upper()
    number = value[:-1].replace("X", "0").replace("Y", "1").replace("Z", "2")
    return number.isdigit() and "TRWAGMYFPDXBNJZSQVHLCKE"[int(number) % 23] == value[-1]


def _any(_: str) -> bool:
    return True


def _never_issued_ssn(value: str) -> bool:
    area, group, serial = value.split("-")
    return area in ("000", "666") or area[0] == "9" or group == "00" or serial == "0000"


ID_PATTERNS: tuple[tuple[re.Pattern[str], object], ...] = (
    # The US SSN's shape in numbers the SSA never issues: ITINs (9xx), areas 000 and 666, group
    # 00, serial 0000. Test and placeholder values leak a real number's shape just the same,
    # and nothing else is written 3-2-4 (issued SSNs are found as SSN, in pii.py).
    (re.compile(r"(?<![\w-])\d{3}-\d{2}-\d{4}(?![\w-])"), _never_issued_ssn),
    # NINO: two letters, six digits, a letter (A-D when issued; test data uses others)
    (re.compile(r"\b[A-CEGHJ-PR-TW-Z]{2}\s?\d{2}\s?\d{2}\s?\d{2}\s?[A-Z]\b"), _any),
    (re.compile(r"\b[12]\s?\d{2}\s?\d{2}\s?(?:\d{2}|2[AB])\s?\d{3}\s?\d{3}\s?\d{2}\b"), _nir_ok),
    (re.compile(r"\b\d{3}\.\d{3}\.\d{3}-\d{2}\b|(?<![\w-])\d{11}(?![\w-])"), _cpf_ok),
    (re.compile(r"(?<![\w-])\d{9}(?![\w-])"), _bsn_ok),
    (re.compile(r"\b(?:\d{8}|[XYZ]-?\d{7})-?[A-Z]\b"), _dni_ok),
)


def id_spans(text: str) -> list[tuple[int, int]]:
    found = []
    for pattern, valid in ID_PATTERNS:
        for m in pattern.finditer(text):
            if valid(m.group(0)):
                found.append(m.span())
    return found
