#!/usr/bin/env python3
"""Build the "next sentence" multiple-choice task from the demo model's held-out text.

usage: python3 experiments/task/make_task.py [SHARED_DATA_DIR]

SHARED_DATA_DIR defaults to ../shared/data beside the repository root (the repository root is two
levels above this script). Reads text/sotu/sotu_1790-2021.txt and text/moby-dick/moby_dick.txt
there and writes next-sentence-calib.jsonl and next-sentence-heldout.jsonl beside this script.

Only the held-out part of each text is used: the last 5% of the file, cut at the first line break
after the 95% mark, exactly as assets/demo was split (experiments/demo_model/train.py). Documents
are delimited as in training: one State of the Union address per blank-line-separated paragraph,
one Moby Dick chapter per "CHAPTER N." heading.

Each source's held-out text is cut in two at the document (SOTU) or paragraph (Moby Dick)
boundary nearest its middle: items of the calibration file come from the first half only, items
of the held-out file from the second half only (context, gold and distractors alike), and no
sentence text occurs in both files.

An item: context = 2 or 3 consecutive sentences of one document (at most 400 characters), gold =
the sentence that follows, 3 distractors of the same half, each within 30% of the gold's length in
characters: 2 sentences of the other source and 1 of another document of the same source (with
distractors of the same source only, the demo model scores at chance). Sentences are 40 to 220
characters.
Gold positions are a seeded random permutation with each of 0..3 equally often.
Python 3 standard library only; the output depends on nothing but the input files.
"""

import json
import os
import random
import re
import sys
from collections import Counter, defaultdict

SEED = 20261203
HELDOUT_FRACTION = 0.05  # as in experiments/demo_model/train.py
N_ITEMS = 300  # per file
MIN_MOBY_SHARE = 0.25  # at least this share of Moby Dick items per file, if the text allows
SENT_MIN, SENT_MAX = 40, 220  # characters, for every sentence of an item
CONTEXT_MAX = 400  # characters
LEN_TOL = 0.30  # distractor length within +-30% of the gold's

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))
DEFAULT_DATA = os.path.join(os.path.dirname(REPO), "shared", "data")

# ----------------------------------------------------------------------------- text


def heldout_part(path):
    with open(path, encoding="utf-8") as f:
        text = f.read()
    cut = text.index("\n", int(len(text) * (1 - HELDOUT_FRACTION)))
    return text[cut:].strip("\n")


def norm_ws(s):
    return re.sub(r"\s+", " ", s).strip()


# stage directions in the transcribed addresses (2010-2021): removed
MARKER = re.compile(r"\s*[\(\[](?:applause|laughter|laughs)\.?[\)\]]", re.I)


def clean_sotu(text):
    """The addresses of 2020-2021 (and a few earlier words) use typographic quotes and dashes where
    the others use ASCII; mapped to ASCII so that the typography of a choice tells nothing about
    its address. Stage directions are removed, and a space is restored where a paragraph break
    was lost in the source ("forms.Each")."""
    text = MARKER.sub("", text)
    text = text.replace("\u2014\u2014", "\u2014")  # "President—(applause)—no" -> "President——no"
    for a, b in (("\u2019", "'"), ("\u2018", "'"), ("\u201c", '"'), ("\u201d", '"'),
                 ("\u2014", "--"), ("\u2013", "-"), ("\u2011", "-")):
        text = text.replace(a, b)
    text = re.sub(r'(?<=[a-z0-9][.!?])(?=[A-Z])', " ", text)
    text = re.sub(r'(?<=[a-z0-9][.!?]")(?=[A-Z])', " ", text)
    return norm_ws(text)


ABBREV = {
    "Mr", "Mrs", "Ms", "Messrs", "Dr", "St", "Jr", "Sr", "Mt", "Ft", "No", "Nos", "Gen", "Sen",
    "Rep", "Gov", "Capt", "Col", "Lt", "Maj", "Sgt", "Adm", "Rev", "Hon", "Prof", "vs", "Co",
    "Inc", "Corp", "Bros", "Jan", "Feb", "Mar", "Apr", "Aug", "Sept", "Sep", "Oct", "Nov", "Dec",
}
# a sentence ends at . ! ? (and closing quotes/brackets) followed by a space and a capital
# letter or an opening quote/bracket
BOUNDARY = re.compile(r"[.!?]+[\"'\u201d\u2019)\]]*\s+(?=[\"'\u201c\u2018(\[]?[A-Z])")


def split_sentences(par):
    """Sentences of one paragraph (whitespace already normalised)."""
    out, start = [], 0
    for m in BOUNDARY.finditer(par):
        punct_end = m.start() + 1
        if par[m.start()] == ".":
            tok = par[start:punct_end].rsplit(" ", 1)[-1].lstrip("\"'(\u201c\u2018[")
            word = tok[:-1]
            # Mr. St. ...; initials and dotted abbreviations: J. U.S. D.C. e.g.
            if word in ABBREV or re.fullmatch(r"(?:[A-Za-z]\.)*[A-Za-z]", word):
                continue
        out.append(par[start:m.end()].strip())
        start = m.end()
    if par[start:].strip():
        out.append(par[start:].strip())
    return out


def sotu_docs(data_dir):
    text = heldout_part(os.path.join(data_dir, "text", "sotu", "sotu_1790-2021.txt"))
    docs = [d.strip() for d in text.split("\n\n") if d.strip()]  # one address per paragraph
    # The file holds the addresses in chronological order and ends with 2021; the held-out part
    # is the 14 addresses 2008-2021, one per year (assets/demo/MODEL_CARD.md).
    assert len(docs) == 14, f"expected the 14 addresses 2008-2021 in the held-out part, got {len(docs)}"
    out = []
    for i, d in enumerate(docs):
        year = 2021 - (len(docs) - 1 - i)
        # each address is one line: a single paragraph
        out.append((f"sotu-{year}", [clean_sotu(d)]))
    return out


def moby_docs(data_dir):
    text = heldout_part(os.path.join(data_dir, "text", "moby-dick", "moby_dick.txt"))
    chapters = [d.strip("\n") for d in re.split(r"\n(?=CHAPTER \d+\.)", text) if d.strip()]
    out = []
    for ch in chapters:
        m = re.match(r"CHAPTER (\d+)\.[^\n]*\n", ch)
        if m:
            num, ch = int(m.group(1)), ch[m.end():]
        else:  # the held-out part starts inside the chapter before the first heading in it
            nxt = re.search(r"CHAPTER (\d+)\.", text)
            num = int(nxt.group(1)) - 1
        pars = [norm_ws(p) for p in re.split(r"\n\s*\n", ch) if p.strip()]
        out.append((f"moby-dick-ch{num}", pars))
    return out


def halves(docs):
    """Cut a source's documents in two at the paragraph boundary nearest the middle of its text.
    Returns two lists of (name, [paragraphs]); a document cut in two appears in both."""
    flat = [(name, p) for name, pars in docs for p in pars]
    total = sum(len(p) for _, p in flat)
    best, acc, best_d = 0, 0, None
    for i, (_, p) in enumerate(flat):
        acc += len(p)
        d = abs(acc - total / 2)
        if best_d is None or d < best_d:
            best, best_d = i + 1, d
    out = []
    for part in (flat[:best], flat[best:]):
        grouped, order = defaultdict(list), []
        for name, p in part:
            if name not in grouped:
                order.append(name)
            grouped[name].append(p)
        out.append([(name, grouped[name]) for name in order])
    return out


# ----------------------------------------------------------------------------- items


def ok_len(s):
    """40 to 220 characters, ending as a sentence ends (not a paragraph ending in a dash)."""
    return SENT_MIN <= len(s) <= SENT_MAX and re.search(r"[.!?][\"'\u201d\u2019)\]]*$", s) is not None


def candidates(docs, banned):
    """Every possible item of one half, one per gold sentence: {source: document name, sent_ids:
    indices of the context sentences and, last, of the gold, sents: the document's sentences}."""
    out = []
    for name, pars in docs:
        sents = [s for p in pars for s in split_sentences(p)]
        for g in range(2, len(sents)):
            for n in (3, 2):  # the longest context that fits
                if g - n < 0:
                    continue
                ctx = sents[g - n:g]
                window = ctx + [sents[g]]
                if not all(ok_len(s) and s not in banned for s in window):
                    continue
                if len(" ".join(ctx)) > CONTEXT_MAX:
                    continue
                out.append(dict(source=name, sent_ids=list(range(g - n, g + 1)), sents=sents))
                break
    return out


def select(cands, quota, rng):
    """quota items, preferring items that share no sentence with another chosen item (then, if
    the text is short, items whose context overlaps another's; each sentence is still the gold
    of at most one item, as there is one candidate per gold sentence); a seeded random choice
    among them. Returned in document order."""
    order = list(range(len(cands)))
    rng.shuffle(order)
    used, chosen = defaultdict(set), set()
    for overlap_ok in (False, True):
        for i in order:
            if len(chosen) >= quota:
                break
            c = cands[i]
            ids = set(c["sent_ids"])
            if i in chosen or (not overlap_ok and used[c["source"]] & ids):
                continue
            chosen.add(i)
            used[c["source"]] |= ids
    return [cands[i] for i in sorted(chosen)]


def make_items(chosen, pool, other, rng):
    """pool: {doc name: [sentences usable as distractors]} of the item's source; other: the same of the
    other source. Distractors: 2 from the other source and 1 from another document of the same source,
    each within LEN_TOL of the gold's length. A next sentence drawn only from other documents of the same
    source is beyond a model of the demo's size (it scores at chance, 25%); a distractor from the other
    text is one it can often tell apart, the same-source one keeps the item from being a style test."""
    uses = Counter()
    items = []
    for c in chosen:
        sents = c["sents"]
        ctx = " ".join(sents[i] for i in c["sent_ids"][:-1])
        gold = sents[c["sent_ids"][-1]]
        lo, hi = len(gold) * (1 - LEN_TOL), len(gold) * (1 + LEN_TOL)
        same = sorted({s for name, ss in pool.items() if name != c["source"] for s in ss
                       if lo <= len(s) <= hi and s != gold})
        far = sorted({s for ss in other.values() for s in ss if lo <= len(s) <= hi})
        if len(same) < 1 or len(far) < 2:
            continue
        # least used first, ties broken at random: spreads the distractors over the pool
        pick = lambda ss, n: sorted(ss, key=lambda s: (uses[s], rng.random()))[:n]
        distractors = pick(far, 2) + pick(same, 1)
        for s in distractors:
            uses[s] += 1
        rng.shuffle(distractors)
        items.append(dict(context=ctx, gold_text=gold, distractors=distractors, source=c["source"]))
    return items


def place_gold(items, rng):
    """Gold positions: a seeded random permutation of 0, 1, 2, 3, 0, 1, ... so that each position
    holds the gold equally often (to within one item)."""
    pos = [i % 4 for i in range(len(items))]
    rng.shuffle(pos)
    out = []
    for it, g in zip(items, pos):
        d = it["distractors"]
        choices = d[:g] + [it["gold_text"]] + d[g:]
        out.append(dict(context=it["context"], choices=[" " + s for s in choices], gold=g,
                        source=it["source"]))
    return out


def main():
    data_dir = sys.argv[1] if len(sys.argv) > 1 else DEFAULT_DATA
    rng = random.Random(SEED)
    sources = {"sotu": halves(sotu_docs(data_dir)), "moby": halves(moby_docs(data_dir))}

    # sentence texts of each half; a text found in both halves (boilerplate such as "God bless
    # America") is never used, nor is one found in two documents of a half
    texts = [Counter(), Counter()]
    for src in sources.values():
        for h in (0, 1):
            for name, pars in src[h]:
                for s in {s for p in pars for s in split_sentences(p)}:
                    texts[h][s] += 1
    banned = {s for s in texts[0] if s in texts[1]}
    banned |= {s for h in (0, 1) for s, n in texts[h].items() if n > 1}

    cands = {(k, h): candidates(src[h], banned) for k, src in sources.items() for h in (0, 1)}
    pools = {}
    for k, src in sources.items():
        for h in (0, 1):
            pools[(k, h)] = {name: [s for p in pars for s in split_sentences(p)
                                    if ok_len(s) and s not in banned] for name, pars in src[h]}

    summary = []
    for h, fname in ((0, "next-sentence-calib.jsonl"), (1, "next-sentence-heldout.jsonl")):
        n_moby_avail = len(cands[("moby", h)])
        n_sotu_avail = len(cands[("sotu", h)])
        prop = round(N_ITEMS * n_moby_avail / (n_moby_avail + n_sotu_avail))
        n_moby = min(n_moby_avail, max(prop, int(N_ITEMS * MIN_MOBY_SHARE)))
        n_sotu = min(n_sotu_avail, N_ITEMS - n_moby)
        items = []
        for k, q in (("sotu", n_sotu), ("moby", n_moby)):
            chosen = select(cands[(k, h)], q, rng)
            items += make_items(chosen, pools[(k, h)], pools[("moby" if k == "sotu" else "sotu", h)], rng)
        rng.shuffle(items)  # mixed order: any leading subset is a fair sample of the file
        items = place_gold(items, rng)
        with open(os.path.join(HERE, fname), "w", encoding="utf-8") as f:
            for it in items:
                f.write(json.dumps(it, ensure_ascii=False) + "\n")
        by_src = Counter("moby-dick" if it["source"].startswith("moby") else "sotu" for it in items)
        summary.append(f"{fname}: {len(items)} items (sotu {by_src['sotu']} of {n_sotu_avail} possible, "
                       f"moby-dick {by_src['moby-dick']} of {n_moby_avail} possible), gold positions "
                       f"{[sum(1 for it in items if it['gold'] == g) for g in range(4)]}")
    print("\n".join(summary))


if __name__ == "__main__":
    main()
