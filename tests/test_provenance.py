"""Provenance: the collection cites a part of the paper only where that part is verified.

The paper is Sahiner, Ergen, Ozturkler, Pauly, Mardani, Pilanci, *Unraveling Attention via Convex
Duality* (ICML 2022, arXiv:2205.08078).  Its full text was never available to this project; what of it
is verified (restated by the same authors) is listed in the project's provenance note and in the
table "from the paper / derived here / known elsewhere" of ``notebooks/README.md``: the abstract, the
multi-head self-attention primal, **Theorem 3.1** (linear attention = a nuclear-norm program),
**eq. (8)** (the gated-ReLU two-layer MLP program) and the experiments' setting.  The abstract, the
primal and the setting are cited in words ("the paper's abstract", "the paper's experiments"), never
by a section number, so the only numbered parts that may be cited are the two in :data:`ALLOWED`.

The test greps every notebook (markdown and code cells), ``notebooks/solutions/*.md``, ``README.md``,
``notebooks/README.md`` and the strings and comments of ``cvxattn_lib/**/*.py`` for citations of a
numbered part of a work -- "§N", "Section N", "Sec. N", "eq. (N)", "Equation N", "Theorem N.M",
"Thm N", "Lemma", "Proposition N", "Corollary N", "Figure N", "Table N", "Appendix X", ... -- and
checks each one by :func:`verdict`:

1. a citation of a part in :data:`ALLOWED` passes;
2. in a reference-list item (a list item under a "References" heading) the citation belongs to the
   work the item describes: it passes unless the item describes the paper;
3. a part of this collection ("Section 2 of notebook 01", "notebook 03's Table 1") passes;
4. elsewhere it passes only when it is *attached* to another work named just before it: the nearest
   preceding mention of a work (:data:`OTHER_WORKS`, or the paper: :data:`PAPER`) is another work,
   at most :data:`MAX_GAP` characters before the citation, with no sentence end and no unclosed
   parenthesis in between (so "Mishkin et al. 2022, Thm 2.2" passes and "Unlike Pilanci & Ergen
   2020, the attention program (§3.2)" does not).  A citation with no work named before it refers
   to the paper, and fails.

``test_rule_on_examples`` checks the rule itself on strings that must pass and strings that must fail.
"""

from __future__ import annotations

import io
import json
import re
import tokenize
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent

#: numbered parts of the paper that may be cited (kind, number): Theorem 3.1 and eq. (8)
ALLOWED = {("theorem", "3.1"), ("equation", "8")}

_NUM = r"\d+(?:\.\d+)*[a-z]?"
_SEP = r"\s*(?:[-–—]|to|and|,)\s*"
_RANGE = rf"{_NUM}(?:{_SEP}{_NUM})*"  # "3.2-3.3", "1 and 2"
_PRANGE = rf"\(?\s*{_NUM}\s*\)?(?:{_SEP}\(?\s*{_NUM}\s*\)?)*"  # "(8)", "(8) and (9)"
#: a citation of a numbered part of a work, by kind
CITATION = re.compile(
    rf"(?P<section>§§?\s*{_RANGE}|\b(?:[Ss]ections?|[Ss]ecs?\.|[Ss]ect\.)\s*{_RANGE})"
    rf"|(?P<equation>\b(?:[Ee]qs?\.|[Ee]quations?)\s*{_PRANGE})"
    rf"|(?P<theorem>\b(?:Theorems?|Thms?\.?)\s*{_RANGE})"
    rf"|(?P<lemma>\bLemmas?(?:\s*{_RANGE})?)"
    rf"|(?P<other>\b(?:Propositions?|Props?\.|Corollary|Corollaries|Cor\.|Definitions?|Defn?\.|"
    rf"Remarks?|Assumptions?|Claims?|Algorithms?|Alg\.)\s*{_RANGE})"
    rf"|(?P<figure>\b(?:[Ff]igures?|[Ff]igs?\.)\s*{_RANGE})"
    rf"|(?P<table>\b[Tt]ables?\s*{_RANGE})"
    rf"|(?P<appendix>\b(?:[Aa]ppendix|[Aa]ppendices|App\.\s*[A-Z])(?:\s+[A-Z](?:\.\d+)*\b)?)"
)

#: mentions of the paper itself (its "Sahiner et al." is the one not followed by ICLR / Burer-Monteiro)
PAPER = re.compile(
    r"Unraveling Attention|2205\.08078|\bthe paper\b|\bpaper's\b|"
    r"Sahiner\s+et\s+al\.?(?![^;\n]{0,40}(?:ICLR|Burer|Scaling))"
)
#: other works this collection cites (author names or venues), each with an optional "et al."
OTHER_WORKS = re.compile(
    r"(?:Pilanci\s*(?:&|and)\s*Ergen|Ergen\s*(?:&|and)\s*Pilanci|Mishkin|Recht|Fazel|Parrilo|"
    r"\bLi\s+et\s+al|Guibas|Tolstikhin|\bLiu\s+et\s+al|Boyd|Vandenberghe|\bBeck\b|Teboulle|\bNg\b|"
    r"Krizhevsky|Wightman|Diamond|Nesterov|Rockafellar|\bHe\s+et\s+al|Burer\s*(?:&|and)\s*Monteiro|"
    r"Sahiner\s+et\s+al\.?,?\s*\(?ICLR|Scaling\s+[Cc]onvex|\bICLR\b|\bICML\s+2020\b)"
    r"(?:\s+et\s+al\.?)?"
)
MAX_GAP = 40  # characters between the other work's name and the citation attached to it
_SENTENCE_END = re.compile(r"[.!?;]\s+[A-Z]")
_REFERENCES = re.compile(r"references|bibliography|further reading", re.I)


@dataclass(frozen=True)
class Unit:
    """A piece of text judged as one: a paragraph, a list item, a code line, a comment."""

    text: str
    where: str  # "file: cell N, line " or "file:", completed by the line number
    line: int  # the line the unit starts on
    reference_item: bool = False  # a list item under a "References" heading
    breaks: tuple = ()  # offsets in ``text`` where its next source lines start (wrapped lines joined)

    def line_of(self, offset: int) -> str:
        """Where the character at ``offset`` is: "file: cell N, line M" or "file:M"."""
        return f"{self.where}{self.line + sum(b <= offset for b in self.breaks)}"


def kind_and_numbers(match: re.Match) -> tuple[str, list[str]]:
    """``('theorem', ['3.1'])`` for "Thm. 3.1"; ``('equation', ['8', '9'])`` for "eqs. (8) and (9)"."""
    return match.lastgroup, re.findall(_NUM, match.group())


def allowed_part(match: re.Match) -> bool:
    """Every part the citation names is in :data:`ALLOWED`."""
    kind, numbers = kind_and_numbers(match)
    return bool(numbers) and all((kind, n) in ALLOWED for n in numbers)


def verdict(unit: Unit, match: re.Match) -> str | None:
    """``None`` if the citation ``match`` in ``unit`` is allowed, else the reason it is not."""
    if allowed_part(match):
        return None
    after, before_text = unit.text[match.end():], unit.text[:match.start()]
    if re.match(r"\s*(?:of|in)\s+(?:this\s+notebook|notebook\s+\d\d)", after) or \
            re.search(r"notebook\s+\d\d(?:'s)?\s*$", before_text):
        return None  # a part of this collection ("Section 2 of notebook 01")
    if unit.reference_item:
        if PAPER.search(unit.text):
            return "a numbered part of the paper, in its reference entry"
        return None
    before = unit.text[:match.start()]
    other = list(OTHER_WORKS.finditer(before))
    paper = list(PAPER.finditer(before))
    if not other:
        return ("it follows a mention of the paper" if paper else
                "no other work is named before it, so it cites the paper")
    last = other[-1]
    if paper and paper[-1].end() > last.end():
        return f"the paper is named after {last.group()!r}, nearer to it"
    gap = before[last.end():]
    if len(gap) > MAX_GAP:
        return f"{last.group()!r} is {len(gap)} characters before it (at most {MAX_GAP})"
    if _SENTENCE_END.search(gap) or gap.count("(") > gap.count(")"):
        return f"a sentence or parenthesis separates it from {last.group()!r}"
    if re.match(r"\s*(?:of|in)\s+(?:the\s+paper|Sahiner)", unit.text[match.end():]):
        return "it is said to be the paper's"
    return None


def findings(units) -> list[str]:
    """One line per citation that is not allowed."""
    out = []
    for unit in units:
        for match in CITATION.finditer(unit.text):
            reason = verdict(unit, match)
            if reason:
                context = re.sub(r"\s+", " ", unit.text)
                i = max(0, match.start() - 60)
                out.append(f"{unit.line_of(match.start())}: {match.group()!r} ({reason}) in "
                           f"...{context[i:match.end() + 40]}...")
    return out


# ----------------------------------------------------------------------------------------------
# Splitting files into units


def markdown_units(text: str, where: str, state: dict | None = None, offset: int = 0) -> list[Unit]:
    """Paragraphs and list items (wrapped lines joined), table rows and fenced code lines, each with
    the line it starts on (plus ``offset``).  ``state`` carries the current heading across cells."""
    state = {"heading": ""} if state is None else state
    units, current, start, item, fenced = [], [], 0, False, False

    def flush():
        nonlocal current, item
        if current:
            breaks = tuple(sum(len(t) + 1 for t in current[:k]) for k in range(1, len(current)))
            units.append(Unit(" ".join(current), where, start + offset, breaks=breaks,
                              reference_item=item and bool(_REFERENCES.search(state["heading"]))))
        current, item = [], False

    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if stripped.startswith("```"):
            flush()
            fenced = not fenced
            continue
        if fenced or stripped.startswith("|"):
            flush()
            units.append(Unit(line, where, number + offset))
            continue
        heading = re.match(r"#{1,6}\s+(.*)", stripped)
        if heading:
            flush()
            state["heading"] = heading.group(1)
            units.append(Unit(stripped, where, number + offset))
            continue
        if not stripped:
            flush()
            continue
        if re.match(r"(?:[-*+]|\d+\.)\s+", stripped):
            flush()
            item = True
        if not current:
            start = number
        current.append(stripped)
    flush()
    return units


def notebook_units(path: Path) -> list[Unit]:
    """Markdown cells as markdown; every line of a code cell as its own unit."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    rel, state, units = path.relative_to(REPO_ROOT), {"heading": ""}, []
    for i, cell in enumerate(nb["cells"]):
        source = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        if cell["cell_type"] == "markdown":
            units += markdown_units(source, f"{rel}: cell {i}, line ", state)
        else:
            units += [Unit(line, f"{rel}: cell {i}, line ", n)
                      for n, line in enumerate(source.splitlines(), 1)]
    return units


def python_units(path: Path) -> list[Unit]:
    """Comments, and the paragraphs of every string literal (docstrings included)."""
    rel, units = path.relative_to(REPO_ROOT), []
    for tok in tokenize.generate_tokens(io.StringIO(path.read_text(encoding="utf-8")).readline):
        if tok.type == tokenize.COMMENT:
            units.append(Unit(tok.string, f"{rel}:", tok.start[0]))
        elif tok.type == tokenize.STRING:
            units += markdown_units(tok.string, f"{rel}:", offset=tok.start[0] - 1)
    return units


def scanned_files() -> list[Path]:
    """Every file the rule applies to."""
    files = sorted((REPO_ROOT / "notebooks").glob("*.ipynb"))
    files += sorted((REPO_ROOT / "notebooks" / "solutions").glob("*.md"))
    files += [p for p in (REPO_ROOT / "README.md", REPO_ROOT / "notebooks" / "README.md") if p.exists()]
    files += sorted((REPO_ROOT / "cvxattn_lib").rglob("*.py"))
    return files


def units_of(path: Path) -> list[Unit]:
    if path.suffix == ".ipynb":
        return notebook_units(path)
    if path.suffix == ".py":
        return python_units(path)
    return markdown_units(path.read_text(encoding="utf-8"), f"{path.relative_to(REPO_ROOT)}:")


# ----------------------------------------------------------------------------------------------
# Tests

ALLOWED_EXAMPLES = [
    "Linear attention is a nuclear-norm program (the paper's Theorem 3.1).",
    "the gated-ReLU MLP program, the paper's eq. (8)",
    "(Sahiner et al. 2022, Thm. 3.1)",
    "The same program (Mishkin et al. 2022, Thm 2.2) is solved by R-FISTA.",
    "Mishkin, Sahiner & Pilanci, ICML 2022, Theorem 2.2",
    "the stationary bound (Sahiner et al., ICLR 2024, Theorem 3)",
    "## References\n\n- S. Boyd, L. Vandenberghe. *Convex Optimization.* Cambridge University Press,\n"
    "  2004 (duality, §5).",
    "Notebook 02 solves this; see the figure below.",
    "Thm 3.1 and Equation (8) of the paper",
    "as in Eq. 8 (the gated ReLU program)",
    "the derivation in Section 2 of notebook 01",
]
FORBIDDEN_EXAMPLES = [
    "gated ReLU attention (Sahiner et al., ICML 2022, §3.2)",
    "The paper's experiments (§5) use gMLP-S.",
    "see Section 4 for the Mixer program",
    "as in eq. (12)",
    "Unlike Pilanci & Ergen 2020, the attention program (§3.2) has one norm per gate.",
    "Mishkin et al. 2022 solve a related problem.  Our clustering read-out follows Theorem 4.1.",
    "Mishkin et al. 2022 and the paper (Lemma 2) agree.",
    "the token-clustering result, Figure 3",
    "## References\n\n- A. Sahiner, T. Ergen, B. Ozturkler et al. *Unraveling Attention via Convex\n"
    "  Duality.* ICML 2022 (§5: CIFAR-100).",
    "the proof in Appendix B",
    "(Sahiner et al. 2022, Sec. 3.3)",
    "the paper's Equation 7",
    "see Fig. 2",
    "as Table 1 reports",
    "by Thm 4",
    "Prop. 2 gives the dual",
    "Corollary 1 bounds the heads",
    "Theorems 3.1 and 3.2",
    "eqs. (8) and (9)",
    "Section 3.2-3.3",
]


@pytest.mark.parametrize("text", ALLOWED_EXAMPLES)
def test_rule_allows(text):
    units = markdown_units(text, "example:")
    assert any(CITATION.search(u.text) for u in units) or "figure below" in text
    assert findings(units) == []


@pytest.mark.parametrize("text", FORBIDDEN_EXAMPLES)
def test_rule_forbids(text):
    assert len(findings(markdown_units(text, "example:"))) == 1


def test_rule_on_examples():
    """One allowed and one forbidden string side by side: the rule can fail, and can pass."""
    ok = findings(markdown_units("(Mishkin et al. 2022, Thm 2.2)", "allowed:"))
    bad = findings(markdown_units("(Sahiner et al., ICML 2022, Thm 2.2)", "forbidden:"))
    assert ok == [] and len(bad) == 1 and bad[0].startswith("forbidden:1:")


def test_code_and_docstrings_are_scanned(tmp_path):
    module = REPO_ROOT / "cvxattn_lib" / "convex" / "attention.py"
    cited = [m.group() for u in python_units(module) for m in CITATION.finditer(u.text)]
    assert "Thm. 3.1" in cited  # the module docstring cites Theorem 3.1: the scanner sees docstrings


def test_every_kind_of_file_is_scanned():
    files = {p.relative_to(REPO_ROOT).as_posix() for p in scanned_files()}
    assert "README.md" in files and "notebooks/README.md" in files
    assert any(f.endswith(".ipynb") for f in files)
    assert any(f.startswith("notebooks/solutions/") for f in files)
    assert "cvxattn_lib/convex/attention.py" in files


@pytest.mark.parametrize("path", scanned_files(), ids=lambda p: p.relative_to(REPO_ROOT).as_posix())
def test_no_unverified_citation_of_the_paper(path):
    bad = findings(units_of(path))
    assert not bad, "cite only Theorem 3.1 and eq. (8) of the paper by number (see this test's " \
        "docstring); attach a citation of another work to its name:\n" + "\n".join(bad)
