"""UD-POS from Universal Dependencies treebank files (CoNLL-U, read with `conllu`), with the
treebank selection and token handling of the official XTREME preprocessing, and the hub's
`google/xtreme` `udpos.<Language>` selection for comparison.

Official (google-research/xtreme at 838c13b):
- scripts/download_data.sh `download_treebank` (lines 61-98): XTREME's 33 languages from UD 2.5,
  the XTREME-R additions lt pl uk wo ro from UD 2.7; a file belongs to a language when the part
  of its name before the first `_` is the language's code (`el_gdt-ud-test.conllu` is Greek,
  `grc_proiel-...` is Ancient Greek and is not), every such treebank of the release is used.
- the same script converts each file with third_party/ud-conversion-tools/conllu_to_conll.py
  `--replace_subtokens_with_fused_forms`: a multiword token ("del" = "de" + "el") becomes one
  word, its surface form on the span's head (lib/conll.py `_keep_fused_form` and
  `_choose_spanhead_from_heuristics`: the subtoken nearest the root, ties broken by a
  per-language POS precedence), tagged with the head's UPOS; the other subtokens go. Empty
  nodes (ids like 8.1) are dropped (`parse_id` returns None for them).
- utils_preprocess.py `udpos_preprocess` (lines 190-262): a sentence whose forms are all or all
  but one `_` is dropped (treebanks distributed without text); spaces inside a word and U+200C
  are removed; every file of a split is concatenated in sorted file-name order.

Hub (huggingface/datasets datasets/xtreme/xtreme.py, last version): `udpos.<Language>` reads
every file of UD 2.5 whose path contains `_<Language>` (so `udpos.Greek` includes
UD_Ancient_Greek-PROIEL and -Perseus), skips lines whose form or UPOS is `_` (the multiword
token line: the subtokens "de" "el" stay, the surface "del" goes), and excludes Arabic NYUAD.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

XTREME_UD = "2.5"  # download_data.sh line 67
XTREME_R_UD = "2.7"  # line 71
XTREME_R_ADDITIONS = ("lt", "pl", "uk", "wo", "ro")  # line 70

# conllu_to_conll.py POSRANKPRECEDENCEDICT (lines 31-35); "de" is commented out there
_DEFAULT_PRECEDENCE = "VERB NOUN PROPN PRON ADJ NUM ADV INTJ AUX ADP DET PART CCONJ SCONJ X PUNCT"
POS_PRECEDENCE = {
    "default": tuple(_DEFAULT_PRECEDENCE.split()),
    "es": tuple(["VERB", "AUX", "PRON", "ADP", "DET"]),
    "fr": tuple(
        ["VERB", "AUX", "PRON", "NOUN", "ADJ", "ADV", "ADP", "DET", "PART", "SCONJ", "CONJ"]
    ),
    "it": tuple(["VERB", "AUX", "ADV", "PRON", "ADP", "DET", "INTJ"]),
}

_FILE = re.compile(r"^(?P<code>[a-z]+)_(?P<name>[a-z0-9]+)-ud-(?P<split>train|dev|test)\.conllu$")
SPLITS = {"train": "train", "dev": "dev", "validation": "dev", "test": "test"}


def ud_version(lang: str) -> str:
    """The UD release XTREME-R takes a language from: 2.7 for its additions, else 2.5."""
    return XTREME_R_UD if lang in XTREME_R_ADDITIONS else XTREME_UD


@dataclass(frozen=True)
class Sentence:
    words: tuple[str, ...]
    tags: tuple[str, ...]
    treebank: str  # the file's stem before "-ud-", e.g. "el_gdt"


def _files(roots: Iterable[str | Path]) -> list[Path]:
    """CoNLL-U files under each root: a release folder (ud-treebanks-v2.5), a treebank folder,
    a file, or a glob of any of these."""
    out: list[Path] = []
    for root in roots:
        path = Path(root)
        matches = [path]
        if not path.exists():
            pattern = str(path.relative_to(path.anchor)) if path.anchor else str(path)
            matches = sorted(Path(path.anchor or ".").glob(pattern))
        for match in matches:
            out += sorted(match.rglob("*.conllu")) if match.is_dir() else [match]
    return sorted(set(out), key=lambda p: p.name)


def official_files(roots: Iterable[str | Path], lang: str, split: str) -> list[Path]:
    """Files of `split` whose name starts with `<lang>_` (download_data.sh lines 82-86), in the
    sorted file-name order of utils_preprocess.py."""
    want = SPLITS[split]
    picked = []
    for path in _files(roots):
        match = _FILE.match(path.name)
        if match and match["code"] == lang and match["split"] == want:
            picked.append(path)
    return picked


def hub_files(roots: Iterable[str | Path], language: str, split: str) -> list[Path]:
    """Files the hub's `udpos.<language>` config reads: any path containing `_<language>` and
    the split name, Arabic NYUAD excluded (xtreme.py `_generate_examples`)."""
    want = SPLITS[split]
    return [
        p
        for p in _files(roots)
        if f"_{language}" in str(p) and want in p.name and "NYUAD" not in str(p)
    ]


def _ancestors(node: int, parents: dict[int, set[int]]) -> int:
    """How many nodes reach `node` (networkx `ancestors` over basic and enhanced heads, as
    lib/conll.py builds its graph)."""
    seen: set[int] = set()
    stack = list(parents.get(node, ()))
    while stack:
        up = stack.pop()
        if up in seen or up == node:
            continue
        seen.add(up)
        stack += parents.get(up, ())
    return len(seen)


def _span_head(span: list[dict], parents: dict[int, set[int]], lang: str) -> int:
    """conll.py `_choose_spanhead_from_heuristics`: the one subtoken nearest the root; among
    several, the first by the language's POS precedence. Where a tag is missing from the
    precedence list the official code raises; here the first such subtoken is kept."""
    depth = {tok["id"]: _ancestors(tok["id"], parents) for tok in span}
    top = min(depth.values())
    highest = [tok for tok in span if depth[tok["id"]] == top]
    if len(highest) == 1:
        return highest[0]["id"]
    order = POS_PRECEDENCE.get(lang, POS_PRECEDENCE["default"])
    ranked = [tok for tok in highest if tok["upos"] in order]
    if not ranked:
        return highest[0]["id"]
    return min(ranked, key=lambda tok: order.index(tok["upos"]))["id"]


def _official_words(tokens: list[dict], lang: str) -> list[tuple[str, str]]:
    """(form, UPOS) per word after `--replace_subtokens_with_fused_forms`."""
    words = {t["id"]: t for t in tokens if isinstance(t["id"], int)}
    parents: dict[int, set[int]] = {i: set() for i in words}
    for i, tok in words.items():
        if isinstance(tok["head"], int):
            parents[i].add(tok["head"])
        for _, head in tok.get("deps") or ():
            if isinstance(head, int):  # parse_deps keeps integer heads only
                parents[i].add(head)
    form = {i: t["form"] for i, t in words.items()}
    for fused in (t for t in tokens if isinstance(t["id"], tuple) and t["id"][1] == "-"):
        start, _, end = fused["id"]
        span = [words[i] for i in range(start, end + 1) if i in words]
        if not span:
            continue
        head = _span_head(span, parents, lang)
        form[head] = fused["form"]
        for tok in span:
            if tok["id"] != head:
                del form[tok["id"]]
    return [(form[i], words[i]["upos"]) for i in sorted(form)]


def _clean(word: str) -> str:
    """utils_preprocess.py `remove_empty_space` (line 221)."""
    return "".join(word.replace("\u200c", "").split(" "))


def _parse(path: Path) -> Iterator[list[dict]]:
    import conllu

    with path.open(encoding="utf-8") as f:
        yield from conllu.parse_incr(f)


def official_sentences(roots: Iterable[str | Path], lang: str, split: str) -> list[Sentence]:
    """A language's UD-POS split as the official preprocessing builds it."""
    out = []
    for path in official_files(roots, lang, split):
        treebank = path.name.split("-ud-")[0]
        for tokens in _parse(path):
            pairs = _official_words(list(tokens), lang)
            blanks = sum(form == "_" for form, _ in pairs)
            if blanks and blanks >= len(pairs) - 1:  # text withheld (utils_preprocess line 199)
                continue
            words = tuple(_clean(form) for form, _ in pairs)
            out.append(Sentence(words, tuple(tag for _, tag in pairs), treebank))
    return out


def hub_sentences(roots: Iterable[str | Path], language: str, split: str) -> list[Sentence]:
    """The same split as the hub's `udpos.<language>` config yields it (its mixing included)."""
    out = []
    for path in hub_files(roots, language, split):
        treebank = path.name.split("-ud-")[0]
        for tokens in _parse(path):
            pairs = [
                (t["form"], t["upos"])
                for t in tokens
                if t["form"] != "_" and t["upos"] not in (None, "_")
            ]
            if pairs:
                words, tags = zip(*pairs, strict=True)
                out.append(Sentence(tuple(words), tuple(tags), treebank))
    return out


HUB_ID = "google/xtreme"  # the hub copy whose udpos configs mix treebanks

# Hub configs that read treebanks of another language, from the UD 2.5 folder names the glob
# `*_<Language>*` matches beyond the language's own code (xtreme.py; counted in
# benchmarks/real_data_counts.py where the files were at hand).
HUB_MIXED = {
    "el": ("grc_proiel", "grc_perseus"),  # UD_Ancient_Greek-PROIEL, UD_Ancient_Greek-Perseus
    "zh": ("lzh_kyoto",),  # UD_Classical_Chinese-Kyoto
    "fr": ("fro_srcmf",),  # UD_Old_French-SRCMF
    "ru": ("orv_torot", "orv_rnc"),  # UD_Old_Russian-TOROT, UD_Old_Russian-RNC
    "de": ("gsw_uzh",),  # UD_Swiss_German-UZH
}


def hub_warning(lang: str) -> str | None:
    """The warning for a hub udpos config that mixes in other languages' treebanks."""
    extra = HUB_MIXED.get(lang)
    if not extra:
        return None
    return (
        f"google/xtreme udpos for {lang!r} concatenates other treebanks ({', '.join(extra)}) "
        f"with the language's own: its scores are not XTREME-R's. Point data.sources.udpos at "
        f"the UD {ud_version(lang)} release (path: conllu; docs/data.md)"
    )
