#!/usr/bin/env python3
"""Differential fuzz cases for the Swift Tokenizers library.

Writes random, adversarial texts and the ids the Rust `tokenizers` library gives for them, for
the committed fixture tokenizers and for variants of them that exercise options the fixtures do
not (added-token lstrip/rstrip/single_word/normalized, Metaspace split and prepend schemes,
Digits, Punctuation, Split behaviors, more normalizers). The output has the fixture format, so
the gated Swift test reads it:

    python3 -m venv .build/venv-tok && .build/venv-tok/bin/pip install tokenizers==0.23.3
    .build/venv-tok/bin/python Tests/Reference/fuzz_tokenizers.py --out /tmp/tokfuzz --cases 400 --unicode-classes
    TOKENIZERS_FUZZ_DIR=/tmp/tokfuzz swift test --filter FuzzParity

With --unicode-classes it also records how the Rust library classifies every code point
(unicode-classes.json), which the same test compares character by character.

Nothing here is committed as a fixture: the output lives outside the repository.
"""
import argparse
import copy
import json
import os
import random
import unicodedata

from tokenizers import Tokenizer

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "fixtures")
BASES = {
    "bert": "tiny-bert/tokenizer.json",
    "gpt2": "tiny-gpt2/tokenizer.json",
    "llama3": "tiny-llama/tokenizer.json",
    "sp": "tiny-llama2/tokenizer.json",
    "sp-legacy": "tokenizers/sp-bpe-legacy/tokenizer.json",
    "minilm": "minilm/tokenizer.json",
}

# Pieces chosen to hit every branch of the normalizers, scanners and models.
POOL = [
    "a", "b", "Z", "hello", "World", "THE", "x", "é", "e\u0301", "İ", "ß", "ẞ", "Σ", "ς", "ſ", "ﬁ", "Å", "Ω", "K",
    "0", "7", "123", "4567", "٣", "²", "½", "Ⅻ", "𝟙", "١٢٣٤",
    " ", "  ", "   ", "\t", "\n", "\r\n", "\r", "\n\n", " \n ", "\u00a0", "\u2028", "\u3000", "\u202f", "\u0085",
    "\u000b", "\u000c", "\u001c", "\u001f",
    "'", "'s", "'S", "'t", "'re", "'RE", "'ve", "'m", "'ll", "'LL", "'d", "'ſ", "'x",
    ".", ",", "!", "?", "...", "-", "--", "_", "__", "$", "+", "<", ">", "=", "^", "`", "|", "~", "@", "#", "%", "&", "*",
    "(", ")", "[", "]", "{", "}", "/", "\\", "\"", ":", ";", "«", "»", "—", "…", "¿", "¡", "·", "、", "。", "！",
    "我", "爱", "語", "𠀀", "각", "\u1100\u1161\u11a8", "カ", "ｶ", "ア", "ā", "ё", "й", "ع", "ب", "\u064e",
    "क्ष", "\u0941", "ก", "\u0e34", "\u0300", "\u0301\u0302", "\u20dd",
    "😀", "👨\u200d👩\u200d👧", "👍🏽", "🇺🇸", "❤\ufe0f", "1\ufe0f\u20e3", "🧬",
    "\u200b", "\u200c", "\u200d", "\ufeff", "\u00ad", "\ufffd", "\ue000", "\u0378", "\x00", "\x07", "\x1b", "\x7f",
    "▁", "▁▁", "Ġ", "<0x41>", "<s>", "</s>", "<unk>", "[CLS]", "[SEP]", "[MASK]", "[UNK]", "[PAD]", "[cls]",
    "<|endoftext|>", "<|begin_of_text|>", "<|eot_id|>", "<mask>", "<MASK>", "special",
]


# Every combining mark Python knows, for canonical reordering and composition across versions.
MARKS = [chr(c) for c in range(0x300, 0x110000)
         if not 0xD800 <= c <= 0xDFFF and unicodedata.category(chr(c)).startswith("M")]
BASES_FOR_MARKS = ["a", "e", "o", "A", "u", "n", "ᄀ", "가", "ا", "क", "ก", "α", " ", "1", "\u0378"]


def random_text(rng):
    kind = rng.random()
    if kind < 0.05:
        return ""
    if kind < 0.12:
        # Bases followed by runs of marks from any Unicode version.
        return "".join(rng.choice(BASES_FOR_MARKS) + "".join(rng.choice(MARKS) for _ in range(rng.randint(0, 4)))
                       for _ in range(rng.randint(1, 8)))
    if kind < 0.17:
        # A longer text: several sentences of pool pieces.
        return " ".join("".join(rng.choice(POOL) for _ in range(rng.randint(1, 30))) for _ in range(rng.randint(2, 8)))
    if kind < 0.10:
        # A long word, sometimes beyond WordPiece's 100-character limit.
        return rng.choice(["a", "ab", "xyz", "é", "我"]) * rng.randint(20, 140)
    if kind < 0.15:
        # Random code points anywhere in Unicode (no surrogates).
        return "".join(chr(rng.choice([rng.randint(0, 0x7F), rng.randint(0x80, 0x2FFF), rng.randint(0x3000, 0xD7FF),
                                       rng.randint(0xE000, 0xFFFF), rng.randint(0x10000, 0x2FFFF)]))
                       for _ in range(rng.randint(1, 30)))
    count = rng.randint(1, 24)
    return "".join(rng.choice(POOL) for _ in range(count))


def load(base):
    with open(os.path.join(FIXTURES, BASES[base]), encoding="utf-8") as f:
        return json.load(f)


def variants():
    """(name, tokenizer dict) pairs: the bases, then mutated copies."""
    out = [(name, load(name)) for name in BASES]

    def add(name, base, mutate):
        config = copy.deepcopy(load(base))
        mutate(config)
        out.append((name, config))

    def added(config, content, token_id, **flags):
        entry = {"id": token_id, "content": content, "single_word": False, "lstrip": False, "rstrip": False,
                 "normalized": False, "special": False}
        entry.update(flags)
        config["added_tokens"].append(entry)

    # Added-token flags on BERT (normalized tokens are matched after lowercasing).
    def bert_flags(c):
        added(c, "[MASK]", 4, lstrip=True, special=True)  # replaces the plain [MASK]
        c["added_tokens"] = [t for t in c["added_tokens"] if not (t["content"] == "[MASK]" and not t["lstrip"])]
        added(c, "Hello", 600, normalized=True, single_word=True)
        added(c, "ab", 601, rstrip=True, lstrip=True)
        added(c, "<mask>", 602, normalized=True, lstrip=True, rstrip=True)
        added(c, "我爱", 603, normalized=True)
    add("bert-added-flags", "bert", bert_flags)

    def gpt2_prefix(c):
        c["pre_tokenizer"]["add_prefix_space"] = True
        added(c, " world", 451, normalized=False)
        added(c, "ing", 452, single_word=True)
    add("gpt2-prefix-space", "gpt2", gpt2_prefix)

    def gpt2_split_then_bytes(c):
        c["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+"},
             "behavior": "Isolated", "invert": False},
            {"type": "Digits", "individual_digits": True},
            {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True, "use_regex": False}]}
        c["normalizer"] = {"type": "NFC"}
    add("gpt2-split-digits-nfc", "gpt2", gpt2_split_then_bytes)

    def llama3_lstrip(c):
        for t in c["added_tokens"]:
            t["lstrip"] = True
            t["rstrip"] = True
        c["model"]["ignore_merges"] = False
    add("llama3-strip-merges", "llama3", llama3_lstrip)

    def llama3_qwen(c):
        c["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = (
            "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+")
        c["normalizer"] = {"type": "NFKC"}
    add("llama3-single-digits-nfkc", "llama3", llama3_qwen)

    def sp_always_split(c):
        c["pre_tokenizer"] = {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "always", "split": True}
    add("sp-metaspace-always-split", "sp", sp_always_split)

    def sp_first_split(c):
        c["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
            {"type": "WhitespaceSplit"},
            {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first", "split": True}]}
        c["normalizer"] = {"type": "Sequence", "normalizers": [{"type": "Strip", "strip_left": True, "strip_right": True},
                                                               {"type": "NFKD"}, {"type": "StripAccents"}]}
    add("sp-whitespace-first-strip", "sp", sp_first_split)

    def sp_never(c):
        c["pre_tokenizer"] = {"type": "Metaspace", "replacement": "▁", "prepend_scheme": "never", "split": False}
        c["model"]["fuse_unk"] = False
        c["model"]["byte_fallback"] = False
        c["normalizer"] = {"type": "Replace", "pattern": {"String": "  "}, "content": "▁"}
    add("sp-never-unk", "sp", sp_never)

    def bert_pretokenizers(c):
        c["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
            {"type": "Whitespace"}, {"type": "Punctuation", "behavior": "MergedWithPrevious"},
            {"type": "Digits", "individual_digits": False}]}
        c["normalizer"] = {"type": "Sequence", "normalizers": [{"type": "NFD"}, {"type": "Lowercase"}, {"type": "StripAccents"}]}
    add("bert-whitespace-punct-digits", "bert", bert_pretokenizers)

    def bert_split_behaviors(c):
        c["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"String": " "}, "behavior": "MergedWithNext", "invert": False},
            {"type": "Split", "pattern": {"String": "-"}, "behavior": "Contiguous", "invert": False},
            {"type": "Split", "pattern": {"String": "."}, "behavior": "Removed", "invert": False},
            {"type": "CharDelimiterSplit", "delimiter": "x"}]}
        c["normalizer"] = {"type": "BertNormalizer", "clean_text": True, "handle_chinese_chars": False,
                           "strip_accents": False, "lowercase": False}
        c["post_processor"] = {"type": "BertProcessing", "sep": ["[SEP]", 3], "cls": ["[CLS]", 2]}
    add("bert-split-behaviors", "bert", bert_split_behaviors)

    def bert_invert(c):
        c["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [
            {"type": "WhitespaceSplit"},
            {"type": "Split", "pattern": {"String": "a"}, "behavior": "Removed", "invert": True}]}
        c["post_processor"] = {"type": "RobertaProcessing", "sep": ["[SEP]", 3], "cls": ["[CLS]", 2],
                               "trim_offsets": True, "add_prefix_space": True}
    add("bert-split-invert", "bert", bert_invert)

    return out


def ranges(code_points):
    out = []
    for c in code_points:
        if out and out[-1][1] == c - 1:
            out[-1][1] = c
        else:
            out.append([c, c])
    return out


def unicode_classes(path):
    """How the Rust library classifies every code point: the sets each normalizer and
    pre-tokenizer tests, and the single-character normalizations. The Swift library pins each
    Rust table's Unicode version (UnicodeTables); this is what those pins were measured from."""
    from tokenizers import AddedToken, Regex, models, normalizers, pre_tokenizers

    points = [c for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF]
    clean = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=False, strip_accents=False, lowercase=False)
    strip_mn = normalizers.BertNormalizer(clean_text=False, handle_chinese_chars=False, strip_accents=True,
                                          lowercase=False)
    strip_marks = normalizers.StripAccents()
    bert = pre_tokenizers.BertPreTokenizer()
    regex = {name: pre_tokenizers.Split(Regex(pattern), "removed")
             for name, pattern in (("regex_letter", r"\p{L}"), ("regex_number", r"\p{N}"), ("regex_space", r"\s"))}
    digits = pre_tokenizers.Digits(individual_digits=True)
    whitespace = pre_tokenizers.WhitespaceSplit()
    words = pre_tokenizers.Whitespace()
    single = Tokenizer(models.WordLevel({"[UNK]": 0, "<t>": 1}, unk_token="[UNK]"))
    single.add_tokens([AddedToken("<t>", single_word=True, normalized=False)])

    sets = {name: [] for name in ("bert_removed", "bert_mn", "marks", "bert_punctuation", "regex_letter",
                                  "regex_number", "regex_space", "numeric", "whitespace", "word", "single_word")}
    for c in points:
        ch = chr(c)
        if clean.normalize_str(ch) == "":
            sets["bert_removed"].append(c)
        if c >= 0x300 and strip_mn.normalize_str("a" + ch) == "a":
            sets["bert_mn"].append(c)
        if c >= 0x300 and strip_marks.normalize_str(ch) == "":
            sets["marks"].append(c)
        if len(bert.pre_tokenize_str("a" + ch + "a")) == 3:
            sets["bert_punctuation"].append(c)
        for name, split in regex.items():
            if not split.pre_tokenize_str(ch):
                sets[name].append(c)
        if len(digits.pre_tokenize_str("a" + ch + "a")) == 3:
            sets["numeric"].append(c)
        if not whitespace.pre_tokenize_str(ch):
            sets["whitespace"].append(c)
        if len(words.pre_tokenize_str("a" + ch + "a")) == 1:
            sets["word"].append(c)
    texts = [chr(c) + "<t>" for c in points]
    for c, encoding in zip(points, single.encode_batch(texts, add_special_tokens=False)):
        if 1 not in encoding.ids:
            sets["single_word"].append(c)

    mappings = {}
    for name, normalizer in (("NFD", normalizers.NFD()), ("NFKD", normalizers.NFKD()), ("NFC", normalizers.NFC()),
                             ("NFKC", normalizers.NFKC()), ("Lowercase", normalizers.Lowercase())):
        changed = {}
        for c in points:
            result = normalizer.normalize_str(chr(c))
            if result != chr(c):
                changed[str(c)] = [ord(x) for x in result]
        mappings[name] = changed
    with open(path, "w", encoding="utf-8") as f:
        json.dump({"sets": {name: ranges(values) for name, values in sets.items()}, "mappings": mappings}, f)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True)
    parser.add_argument("--cases", type=int, default=300)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--unicode-classes", action="store_true",
                        help="also write unicode-classes.json (every code point, about 30 s)")
    args = parser.parse_args()
    os.makedirs(args.out, exist_ok=True)
    if args.unicode_classes:
        unicode_classes(os.path.join(args.out, "unicode-classes.json"))
        print("unicode-classes.json written")
    for name, config in variants():
        rng = random.Random(f"{args.seed}-{name}")
        tokenizer_file = f"{name}.tokenizer.json"
        with open(os.path.join(args.out, tokenizer_file), "w", encoding="utf-8") as f:
            json.dump(config, f, ensure_ascii=False)
        tokenizer = Tokenizer.from_file(os.path.join(args.out, tokenizer_file))
        # transformers' tokenizer(text) ignores these sections (MiniLM has both).
        tokenizer.no_padding()
        tokenizer.no_truncation()
        cases = []
        for _ in range(args.cases):
            text = random_text(rng)
            try:
                with_special = tokenizer.encode(text, add_special_tokens=True)
                without = tokenizer.encode(text, add_special_tokens=False)
            except Exception as error:  # the Rust library refuses some inputs (e.g. missing unk)
                print(f"{name}: skipped {text!r}: {error}")
                continue
            cases.append({"text": text, "ids": with_special.ids, "ids_no_special": without.ids,
                          "tokens": with_special.tokens})
        with open(os.path.join(args.out, f"{name}.json"), "w", encoding="utf-8") as f:
            json.dump({"tokenizer": tokenizer_file, "cases": cases}, f, ensure_ascii=False)
        print(f"{name}: {len(cases)} cases")


if __name__ == "__main__":
    main()
