#!/usr/bin/env python3
"""Make the expected output of test_tok_matches_hf from the reference implementation.

Input lines: paragraphs, list items, table cells and preformatted lines of the Debian
Administrator's Handbook (package debian-handbook, HTML for en-US and de-DE), taken at a fixed
stride so that every chapter contributes, plus a few hand-written lines that exercise rules
the handbook rarely hits (Unicode quotes and punctuation, no-break spaces, full-width forms).

Reference, as XLM preprocessed its data (issue 4): Hugging Face XLMTokenizer built from
../shared/xlm-ende converted to vocab.json/merges.txt, lowercasing OFF, the line's language
given to Moses (_tokenize(text, lang=...)), ids without the <s>/</s> wrapper. Its pipeline is
replace_unicode_punct -> sacremoses MosesPunctNormalizer(lang) -> remove_non_printing_char ->
MosesTokenizer(lang).tokenize(escape=False) -> BPE.

Each line also carries "detok", sacremoses MosesDetokenizer(lang) on the Moses tokens: what
tokenizer_decode should return (checked on lines without <unk>).

A second file, tok_fuzz_reference.jsonl.gz beside OUT, holds 4000 synthetic lines (random
strings over the characters the rules care about, fixed seed) through the same reference.

Usage: python3 make_tok_reference.py SHARED_DIR OUT.jsonl.gz   (writes OUT and prints stats)
"""
import gzip
import html.parser
import json
import os
import random
import sys
import tempfile

from sacremoses import MosesDetokenizer
from transformers import XLMTokenizer

HANDBOOK = "/usr/share/doc/debian-handbook/html"
PER_LANG = 1500
SPECIAL = ["<s>", "</s>", "<pad>", "<unk>"] + ["<special%d>" % i for i in range(10)]

EXTRA = {
    "en": [
        "He said \u201cHello\u201d \u2014 and left\u2026 It\u2019s 5\u00a0% of \u00ab this \u00bb.",
        "Mr. Smith paid $5,300.50 (approx.) for No. 5; see pp. 3-4, e.g. the U.S.A. model.",
        "Wait... what?! \"Quoted,\" she said. 'Single' quotes ``here'' and `there'.",
        "Full-width\uff1a\uff08test\uff09\uff01 \uff11\uff12\uff13\uff05 \u3010x\u3011 \u3008y\u3009",
        "Tabs\tand\u00a0no-break spaces\u00a0: here \u00a0; there\u00a0? yes\u00a0!",
        "Don't can't won't I'm you're we've they'll 90's rock'n'roll 'tis",
        "URLs like http://www.debian.org/doc/ and mail user@example.com stay (mostly).",
        "A sentence ending with a quote.' And 3.14159 ... .. .... done..",
        "\u2018Curly\u2019 single, \u201acomma\u2018 quotes and \u00b4acute\u00b4 marks.",
        "Soft\u00adhyphen, zero\u200bwidth and \u200e marks are removed.",
    ],
    "de": [
        "Er sagte: \u201eHallo\u201c \u2013 und ging\u2026 Das kostet 5\u00a0000\u00a0\u20ac.",
        "Die Stra\u00dfe hei\u00dft z.B. \u201eHauptstr.\u201c, Nr. 5, ca. 3 km (d.h. weit).",
        "\u00bbZitat\u00ab und \u00abnoch eins\u00bb, dazu \u201efertig.\u201c Ende...",
        "Gr\u00f6\u00dfe: 1\u00a0234 Byte; \u00dcberpr\u00fcfung \u00e4\u00f6\u00fc \u00c4\u00d6\u00dc.",
        "Er hat's gesagt, sie wollt' es nicht. Prof. Dr. M\u00fcller kam am 3. Mai.",
        "Das ist \"gut\"... oder \"schlecht\", nicht wahr?!",
    ],
}


FUZZ_ALPHABET = list("aAbZz09 .,;:!?'\"`()[]{}<>-@#$%&*/\\|_~^+=") + [
    "  ", "...", "..", "Mr", "No", "ca", "DOT", "MULTI", "'s", "n't", "http://x.org/a",
    "\u00a0", "\u201c", "\u201d", "\u201e", "\u2018", "\u2019", "\u201a", "\u00b4",
    "\u2026", "\u00ab", "\u00bb", "\u2013", "\u2014", "\uff0c", "\u3002", "\uff0e",
    "\uff11", "\u00e4", "\u00df", "\u00c9", "\u0416", "\u4e2d", "\u00ba", "n\u00ba", "cm",
    "C", "\t", "\r", "\u200b", "\u00ad", "\u2028", "\u3000", "\u0663", "\u00b2", "\u20ac",
    "\u00a9", "\U0001F600", "e\u0301", "\ufeff", "\u0085", "\x1f", "\u0915\u094d"]


def fuzz_lines(n, seed=1):
    rng = random.Random(seed)
    out = []
    while len(out) < n:
        text = "".join(rng.choice(FUZZ_ALPHABET) for _ in range(rng.randint(1, 25)))
        if not any(s in text for s in SPECIAL):
            out.append((rng.choice(["en", "de"]), text))
    return out


class TextGrabber(html.parser.HTMLParser):
    """Collects the text of <p>, <li>, <td>, <dt>, <dd>, <h1-4> and each line of <pre>."""

    BLOCKS = {"p", "li", "td", "dt", "dd", "h1", "h2", "h3", "h4", "pre"}

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack, self.parts, self.out = [], [], []

    def handle_starttag(self, tag, attrs):
        if tag in self.BLOCKS:
            self.flush()
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if tag in self.BLOCKS and tag in self.stack:
            self.flush()
            while self.stack and self.stack.pop() != tag:
                pass

    def handle_data(self, data):
        if self.stack:
            self.parts.append(data)

    def flush(self):
        text = "".join(self.parts)
        self.parts = []
        if not text.strip():
            return
        if self.stack and self.stack[-1] == "pre":
            self.out.extend(l for l in text.split("\n") if l.strip())
        else:
            self.out.append(" ".join(text.split()))


def handbook_lines(folder):
    lines = []
    for name in sorted(os.listdir(folder)):
        if name.endswith(".html"):
            g = TextGrabber()
            with open(os.path.join(folder, name), encoding="utf-8") as f:
                g.feed(f.read())
            g.flush()
            lines.extend(g.out)
    seen, unique = set(), []
    for l in lines:
        if l not in seen and not any(s in l for s in SPECIAL):
            seen.add(l)
            unique.append(l)
    stride = max(1, len(unique) // PER_LANG)
    return unique[::stride][:PER_LANG]


def hf_files(shared, tmp):
    """xlm-ende codes/vocab -> Hugging Face vocab.json/merges.txt (ids as XLM's dictionary)."""
    vocab = {w: i for i, w in enumerate(SPECIAL)}
    with open(os.path.join(shared, "xlm-ende", "vocab"), encoding="utf-8") as f:
        for line in f:
            w = line.split()[0]
            w = w[:-2] if w.endswith("@@") else w + "</w>"
            vocab[w] = len(vocab)
    with open(os.path.join(tmp, "vocab.json"), "w", encoding="utf-8") as f:
        json.dump(vocab, f, ensure_ascii=False)
    with open(os.path.join(shared, "xlm-ende", "codes"), encoding="utf-8") as f, \
            open(os.path.join(tmp, "merges.txt"), "w", encoding="utf-8") as g:
        for line in f:
            a, b, _ = line.split()
            g.write("%s %s\n" % (a, b))
    return os.path.join(tmp, "vocab.json"), os.path.join(tmp, "merges.txt")


def main():
    shared, out = sys.argv[1], sys.argv[2]
    with tempfile.TemporaryDirectory() as tmp:
        vj, mt = hf_files(shared, tmp)
        tok = XLMTokenizer(vj, mt, do_lowercase_and_remove_accent=False)
        n = 0
        with gzip.open(out, "wt", encoding="utf-8", compresslevel=9) as f:
            for lang, folder in (("en", "en-US"), ("de", "de-DE")):
                for text in EXTRA[lang] + handbook_lines(os.path.join(HANDBOOK, folder)):
                    # tokenize(text, lang=...) drops the language on its way to Moses (English rules
                    # always, issue 4): call _tokenize, which takes it.
                    ids = tok.convert_tokens_to_ids(tok._tokenize(text, lang=lang))
                    # what decoding should give back: sacremoses' detokenizer on the Moses tokens
                    words = tok.moses_tokenize(tok.moses_pipeline(text, lang=lang), lang=lang)
                    detok = MosesDetokenizer(lang).detokenize(words).strip()
                    f.write(json.dumps({"lang": lang, "text": text, "ids": ids, "detok": detok},
                                       ensure_ascii=False) + "\n")
                    n += 1
        print("%d lines -> %s (%d bytes)" % (n, out, os.path.getsize(out)))
        fuzz = os.path.join(os.path.dirname(out), "tok_fuzz_reference.jsonl.gz")
        with gzip.open(fuzz, "wt", encoding="utf-8", compresslevel=9) as f:
            for lang, text in fuzz_lines(4000):
                ids = tok.convert_tokens_to_ids(tok._tokenize(text, lang=lang))
                f.write(json.dumps({"lang": lang, "text": text, "ids": ids},
                                   ensure_ascii=False) + "\n")
        print("4000 synthetic lines -> %s (%d bytes)" % (fuzz, os.path.getsize(fuzz)))


if __name__ == "__main__":
    main()
