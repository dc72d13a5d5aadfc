#!/usr/bin/env python3
"""Turn the Ding German-English dictionary into an English->German corpus.

Standard library only (runs with Debian's /usr/bin/python3).

Commands:

  ding_to_tsv.py corpus DICT OUT_DIR [--valid N] [--test N]
      Parse the Ding file DICT, select sentence and phrase pairs, and write
      OUT_DIR/{train,valid,test}.tsv (English<TAB>German, UTF-8).

  ding_to_tsv.py fixture SPLIT_DIR OUT_DIR [--train N] [--valid N] [--test N]
                         [--max-words N]
      Cut a small test fixture out of an existing SPLIT_DIR (the output of
      the corpus command): short sentence pairs (at most N words a side, no
      "/"), ordered by a hash of the source.  Writes
      OUT_DIR/{train,valid,test}.tsv and OUT_DIR/corrupt.tsv (five pairs,
      line 3 without its TAB, for error-reporting tests).

  ding_to_tsv.py stats TSV...
      Print pair/word counts of the given TSV files.

Format of the Ding file: one entry per line, "German :: English".  Each side
holds sub-entries separated by " | " (the n-th German sub-entry translates
the n-th English one), and each sub-entry holds synonyms separated by "; ".
Annotations are {...} (gender, word class, irregular forms), [...] (region,
register, subject), <...> (search keywords, alternative spellings), /.../
(abbreviations) and (...) (explanations, optional words).  Lines starting
with "#" are comments.
"""

import argparse
import hashlib
import os
import re
import sys
import unicodedata

# --------------------------------------------------------------------------
# Cleaning

_BRACKETS = re.compile(r"\{[^{}]*\}|\[[^\[\]]*\]|<[^<>]*>")
_PARENS = re.compile(r"\([^()]*\)")
# Abbreviations such as "/AI/" or "/d. J./": a slash-delimited token that
# stands on its own (whitespace or a separator on both sides).
_ABBREV = re.compile(r"(?:(?<=\s)|^)/[^/\s](?:[^/]*[^/\s])?/(?=\s|$|;|\|)")
_SPACE_BEFORE_PUNCT = re.compile(r"\s+([.,!?;:])")
_SPACES = re.compile(r"\s+")
_DOUBLE_STOP = re.compile(r"(?<!\.)([.!?])\.(?!\.)")
# Unbalanced annotation brackets, separators and control characters
# (TAB, and C1 codes such as U+0092 left over from Windows-1252 text).
_LEFTOVER = re.compile(r"[{}\[\]<>()|\x00-\x1f\x7f-\x9f]")
# Ding mixes "don't" and "don’t"; use the ASCII apostrophe inside words.
_APOSTROPHE = re.compile(r"(?<=\w)’(?=\w)")


def strip_annotations(side):
    """Remove {...}, [...], <...> and /abbr/ from one side of an entry.

    Done before splitting on ";" because braces may contain ";"
    (e.g. "{inset; inset}")."""
    prev = None
    while prev != side:
        prev = side
        side = _BRACKETS.sub(" ", side)
    return _ABBREV.sub(" ", side)


def clean_item(text):
    """Clean one synonym; returns "" if nothing usable is left."""
    if "\t" in text:
        return ""  # a TAB would break the TSV format; drop, don't repair
    prev = None
    while prev != text:
        prev = text
        text = _PARENS.sub(" ", text)
    text = unicodedata.normalize("NFC", text)
    text = _APOSTROPHE.sub("'", text)
    text = _SPACES.sub(" ", text).strip()
    text = _SPACE_BEFORE_PUNCT.sub(r"\1", text)
    # A removed annotation can leave a dangling separator or a doubled
    # full stop ("vereidigt / angelobt [Ös.]." -> "angelobt.."), which the
    # data also has on its own.
    text = _DOUBLE_STOP.sub(r"\1", text).strip(" ;,")
    if _LEFTOVER.search(text):
        return ""
    return text


def synonyms(sub_entry):
    """Split a sub-entry on ";" outside parentheses ("eine (Gehalts-;
    Lohn-)Erhöhung" is one synonym)."""
    if "(" not in sub_entry:
        return [s.strip() for s in sub_entry.split(";")]
    out, depth, cur = [], 0, []
    for ch in sub_entry:
        if ch == "(":
            depth += 1
        elif ch == ")" and depth:
            depth -= 1
        elif ch == ";" and depth == 0:
            out.append("".join(cur).strip())
            cur = []
            continue
        cur.append(ch)
    out.append("".join(cur).strip())
    return out


# --------------------------------------------------------------------------
# Selection

_OPEN = "\"'„‚“‘»«¿¡"
_CLOSE = "\"'“”‘’«»"
_END = ".!?"


def words(text):
    return text.split()


def has_ellipsis(text):
    """Ellipses mark fragments and placeholders in Ding ("Sie fühlte sich
    durch ... sehr geschmeichelt.")."""
    return "…" in text or "..." in text


def is_sentence(text):
    """A sentence starts with a capital letter, a digit or an opening
    quote, ends with . ! or ? (optionally followed by a closing quote),
    has at least two words and contains no ellipsis."""
    if len(words(text)) < 2 or has_ellipsis(text):
        return False
    first = text.lstrip(_OPEN)[:1]
    if not first or not (first.isupper() or first.isdigit()):
        return False
    body = text.rstrip(_CLOSE)
    return bool(body) and body[-1] in _END


def repair_final_punct(en, de):
    """Ding sometimes leaves out the full stop on one side ("The rain is
    over." :: "Der Regen hat aufgehört").  If one side is a sentence and the
    other would be one with the same final mark, add it; both sides must
    then have at least three words."""
    for a, b, swap in ((en, de, False), (de, en, True)):
        if is_sentence(a) and b and b[-1].isalnum() \
                and len(words(a)) >= 3 and len(words(b)) >= 3:
            fixed = b + a.rstrip(_CLOSE)[-1]
            if is_sentence(fixed):
                return (fixed, a) if swap else (a, fixed)
    return en, de


def is_phrase(text):
    """A phrase: two to eight words, no ! or ?, no ellipsis and no "/"
    (Ding writes alternatives as "a/the match/game")."""
    n = len(words(text))
    if n < 2 or n > 8 or has_ellipsis(text):
        return False
    return not any(c in text for c in "!?/")


def iter_entries(path):
    """Yield (english, german) sub-entry pairs of the Ding file, annotations
    of the {...}/[...]/<...>/abbr kind already removed, synonyms not yet
    split."""
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.rstrip("\n")
            if not line or line.startswith("#"):
                continue
            parts = line.split(" :: ")
            if len(parts) != 2:
                continue
            de_subs = strip_annotations(parts[0]).split("|")
            en_subs = strip_annotations(parts[1]).split("|")
            if len(de_subs) != len(en_subs):
                continue
            for de, en in zip(de_subs, en_subs):
                yield en, de


def extract_pairs(path):
    """Return (sentences, phrases): lists of (english, german) in file
    order.

    Synonyms are paired by position only when both sides list the same
    number of them; otherwise only the first synonym of each side is used
    (the first synonyms are the main translations of each other)."""
    sentences, phrases = [], []
    for en_sub, de_sub in iter_entries(path):
        en_syn, de_syn = synonyms(en_sub), synonyms(de_sub)
        if len(en_syn) == len(de_syn):
            candidates = list(zip(en_syn, de_syn))
        else:
            candidates = [(en_syn[0], de_syn[0])]
        for i, (en, de) in enumerate(candidates):
            en, de = clean_item(en), clean_item(de)
            if not en or not de:
                continue
            en, de = repair_final_punct(en, de)
            if is_sentence(en) and is_sentence(de):
                sentences.append((en, de))
            elif (i == 0 and is_phrase(en) and is_phrase(de)
                  and max(len(words(en)), len(words(de))) >= 3
                  and not is_sentence(en) and not is_sentence(de)):
                # Phrases: first synonyms only (later synonyms of a phrase
                # are often not aligned by position), at least three words
                # on one side (drops most two-word technical terms).
                phrases.append((en, de))
    return sentences, phrases


def dedupe(pairs, seen_src):
    """Keep the first pair for each English source not in seen_src."""
    out = []
    for en, de in pairs:
        if en in seen_src:
            continue
        seen_src.add(en)
        out.append((en, de))
    return out


def key(src):
    return hashlib.sha256(src.encode("utf-8")).hexdigest()


def write_tsv(path, pairs):
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8", newline="\n") as f:
        for en, de in pairs:
            f.write(en + "\t" + de + "\n")
    os.replace(tmp, path)


def read_tsv(path):
    pairs = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.rstrip("\n")
            cols = line.split("\t")
            if len(cols) != 2:
                sys.exit(f"{path}:{n}: expected 2 TAB-separated columns")
            pairs.append((cols[0], cols[1]))
    return pairs


# --------------------------------------------------------------------------
# Commands

def stats_line(name, pairs):
    n = len(pairs)
    sw = sum(len(words(en)) for en, _ in pairs)
    tw = sum(len(words(de)) for _, de in pairs)
    avg_s = sw / n if n else 0.0
    avg_t = tw / n if n else 0.0
    return f"{name:<8} {n:>8} {sw:>10} {tw:>10} {avg_s:>8.2f} {avg_t:>8.2f}"


def print_stats(named):
    print(f"{'split':<8} {'pairs':>8} {'src_words':>10} {'tgt_words':>10}"
          f" {'avg_src':>8} {'avg_tgt':>8}")
    for name, pairs in named:
        print(stats_line(name, pairs))


def cmd_corpus(args):
    sentences, phrases = extract_pairs(args.dict)
    seen = set()
    sentences = dedupe(sentences, seen)   # sentences win over phrases
    phrases = dedupe(phrases, seen)

    # valid/test: sentences without "/" alternatives (one clean reference
    # per source), chosen by the hash of the source so the split does not
    # depend on the order of the dictionary.
    ranked = sorted(sentences, key=lambda p: (key(p[0]), p))
    eligible = [p for p in ranked if "/" not in p[0] + p[1]]
    test = eligible[:args.test]
    valid = eligible[args.test:args.test + args.valid]
    held = set(test) | set(valid)
    held_tgt = {de for _, de in held}
    # Train: everything else, minus pairs whose German side is a reference
    # in valid/test (no leakage through synonymous English sources).
    train = [p for p in ranked + phrases
             if p not in held and p[1] not in held_tgt]
    train.sort(key=lambda p: (key(p[0]), p))
    n_sent_train = sum(1 for p in train if is_sentence(p[0]))

    os.makedirs(args.out_dir, exist_ok=True)
    for name, pairs in (("train", train), ("valid", valid), ("test", test)):
        write_tsv(os.path.join(args.out_dir, name + ".tsv"), pairs)

    print(f"selected {len(sentences)} sentence pairs and {len(phrases)}"
          f" phrase pairs (unique English side); train has {n_sent_train}"
          f" sentences and {len(train) - n_sent_train} phrases")


def short(pair, max_words):
    """Short, clean sentence pairs for the test fixture."""
    en, de = pair
    return (is_sentence(en) and is_sentence(de) and "/" not in en + de
            and len(words(en)) <= max_words and len(words(de)) <= max_words)


def cmd_fixture(args):
    out = {}
    for name, count in (("train", args.train), ("valid", args.valid),
                        ("test", args.test)):
        pairs = read_tsv(os.path.join(args.split_dir, name + ".tsv"))
        pairs = [p for p in pairs if short(p, args.max_words)]
        # A second hash (salted) so the fixture is not simply the head of
        # the split files.
        pairs.sort(key=lambda p: (key("fixture:" + p[0]), p))
        out[name] = pairs[:count]
    os.makedirs(args.out_dir, exist_ok=True)
    for name, pairs in out.items():
        write_tsv(os.path.join(args.out_dir, name + ".tsv"), pairs)
    # Deliberately broken file for error-reporting tests: line 3 has no TAB.
    good = out["valid"][:5]
    with open(os.path.join(args.out_dir, "corrupt.tsv"), "w",
              encoding="utf-8", newline="\n") as f:
        for i, (en, de) in enumerate(good):
            if i == 2:
                f.write(en + " " + de + "\n")
            else:
                f.write(en + "\t" + de + "\n")
    print_stats(list(out.items()))


def cmd_stats(args):
    named = []
    for path in args.files:
        name = os.path.basename(path)
        if name.endswith(".tsv"):
            name = name[:-4]
        named.append((name, read_tsv(path)))
    if len(named) > 1:
        named.append(("total", [p for _, pairs in named for p in pairs]))
    print_stats(named)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)

    c = sub.add_parser("corpus", help="build train/valid/test from Ding")
    c.add_argument("dict")
    c.add_argument("out_dir")
    c.add_argument("--valid", type=int, default=1000)
    c.add_argument("--test", type=int, default=1000)
    c.set_defaults(func=cmd_corpus)

    x = sub.add_parser("fixture", help="cut a small test fixture")
    x.add_argument("split_dir")
    x.add_argument("out_dir")
    x.add_argument("--train", type=int, default=600)
    x.add_argument("--valid", type=int, default=40)
    x.add_argument("--test", type=int, default=40)
    x.add_argument("--max-words", type=int, default=10)
    x.set_defaults(func=cmd_fixture)

    s = sub.add_parser("stats", help="print counts of TSV files")
    s.add_argument("files", nargs="+")
    s.set_defaults(func=cmd_stats)

    args = ap.parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()
