"""The README and the manual in docs/ stay short, linked and true to the source tree.

- the README is at most ``README_MAX_LINES`` lines (the manual lives in docs/);
- every relative link (and image) in README.md and docs/*.md points to an existing file inside the
  repository, and every ``#anchor`` to a heading of that file (GitHub's slugs);
- every ``s2m_ros/...py`` path, other repository path (``test/...py``, ``config/...yaml``, ...) and
  ``s2m_ros.x.y`` module (or ``s2m_ros.x.y.Name``) named in them exists in the source tree;
- every ``make <target>`` they show is a target of the Makefile.

Pure text checks: no build, no ROS. The first tests run the checkers on planted cases.
"""
import ast
import pathlib
import re

REPO = pathlib.Path(__file__).resolve().parents[1]
README_MAX_LINES = 260
# Files of other projects that the docs name as the source of a definition (not paths of this repository).
EXTERNAL_PATHS = {"tools/inference.py"}  # S2M's evaluation script (docs/evaluation.md)

FENCE = re.compile(r"^\s*(```|~~~)")
INLINE_CODE = re.compile(r"(`+)(.+?)\1")
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^ {0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
MODULE = re.compile(r"(?<![\w.])s2m_ros(?:\.[A-Za-z_]\w*)+")
REPO_PATH = re.compile(r"(?<![\w./~<>-])((?:s2m_ros|test|tools|config|launch|msg|scripts|docs)/(?:[\w.-]+/)*"
                       r"[\w-][\w.-]*\.(?:py|yaml|xml|rviz|sh|msg|jpg|png|md))(?![\w-])")
MAKE = re.compile(r"(?:^|[ \t;&(])make[ \t]+([a-z][\w-]*)")


def doc_files(root=REPO):
    return [root / "README.md"] + sorted((root / "docs").glob("*.md"))


def code_of(text):
    """The fenced blocks' lines and the inline code spans of a markdown text, one per item."""
    code, fenced = [], False
    for line in text.splitlines():
        if FENCE.match(line):
            fenced = not fenced
        elif fenced:
            code.append(line)
        else:
            code += [m.group(2) for m in INLINE_CODE.finditer(line)]
    return code


def prose_without_code(text):
    """Text outside fenced blocks, with inline code spans dropped (links are looked for there)."""
    out, fenced = [], False
    for line in text.splitlines():
        if FENCE.match(line):
            fenced = not fenced
        elif not fenced:
            out.append(INLINE_CODE.sub("", line))
    return "\n".join(out)


def slug(heading):
    """GitHub's anchor of a heading: the rendered text, lowercased, punctuation except '-' and '_'
    dropped, spaces to '-'."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # links and images: their text
    text = re.sub(r"<[^>]+>", "", text)                            # inline HTML tags
    return re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")


def anchors(text):
    """Every heading's anchor, with GitHub's -1, -2 ... suffixes for repeated headings."""
    seen, out, fenced = {}, set(), False
    for line in text.splitlines():
        if FENCE.match(line):
            fenced = not fenced
            continue
        m = None if fenced else HEADING.match(line)
        if m:
            base = slug(m.group(2))
            n = seen.get(base, 0)
            seen[base] = n + 1
            out.add(base if n == 0 else "%s-%d" % (base, n))
    return out


def broken_links(files, root=REPO):
    """'file: target (why)' for every relative link that points nowhere."""
    root = root.resolve()
    bad = []
    for f in files:
        text = f.read_text()
        for target in LINK.findall(prose_without_code(text)):
            if re.match(r"[a-z][a-z0-9+.-]*:", target, re.I):  # http:, https:, mailto: ...
                continue
            path, _, anchor = target.partition("#")
            dest = (f.parent / path).resolve() if path else f.resolve()
            where = "%s: %s" % (f.relative_to(root), target)
            if root != dest and root not in dest.parents:
                bad.append(where + " (outside the repository)")
            elif not dest.exists():
                bad.append(where + " (no such file)")
            elif anchor and dest.suffix == ".md" and anchor not in anchors(dest.read_text()):
                bad.append(where + " (no heading with anchor #%s in %s)" % (anchor, dest.relative_to(root)))
            elif anchor and dest.suffix != ".md":
                bad.append(where + " (anchor into a file that is not markdown)")
    return bad


def defined_names(path):
    """Top-level names of a module (definitions, assignments, imports)."""
    names = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Assign):
            names |= {t.id for t in node.targets if isinstance(t, ast.Name)}
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names |= {(a.asname or a.name).split(".")[0] for a in node.names}
    return names


def module_problem(name, root=REPO):
    """None if ``name`` (s2m_ros.x.y or s2m_ros.x.y.Attr) exists in the source tree, else why not."""
    parts = name.split(".")
    if parts[:2] == ["s2m_ros", "msg"]:  # generated from msg/*.msg at build time
        msgs = {p.stem for p in (root / "msg").glob("*.msg")}
        return None if len(parts) == 2 or parts[2] in msgs else "no message %s in msg/" % parts[2]
    found, path = 0, None
    for i in range(len(parts), 0, -1):
        base = root.joinpath(*parts[:i])
        if base.with_suffix(".py").is_file():
            found, path = i, base.with_suffix(".py")
            break
        if (base / "__init__.py").is_file():
            found, path = i, base / "__init__.py"
            break
    if found <= 1:
        return "no module %s" % ".".join(parts[:2])
    if found < len(parts) and parts[found] not in defined_names(path):
        return "%s defines no %s" % (".".join(parts[:found]), parts[found])
    return None


def missing_sources(files, root=REPO):
    """'file: name (why)' for every module or repository path named that is not in the tree."""
    bad = []
    for f in files:
        text = f.read_text()
        for name in sorted(set(MODULE.findall(text))):
            why = module_problem(name, root)
            if why:
                bad.append("%s: %s (%s)" % (f.relative_to(root), name, why))
        for path in sorted(set(REPO_PATH.findall(text))):
            if path not in EXTERNAL_PATHS and not (root / path).exists():
                bad.append("%s: %s (no such file)" % (f.relative_to(root), path))
    return bad


def unknown_make_targets(files, root=REPO):
    makefile = (root / "Makefile").read_text()
    targets = set()
    for line in makefile.splitlines():
        m = re.match(r"^([\w][\w .-]*?)\s*:(?!=)", line)
        if m:
            targets |= set(m.group(1).split())
    bad = []
    for f in files:
        for target in sorted({t for span in code_of(f.read_text()) for t in MAKE.findall(span)}):
            if target not in targets:
                bad.append("%s: make %s (no such target in the Makefile)" % (f.relative_to(root), target))
    return bad


# -- the checkers on planted cases ------------------------------------------------------------------


def test_slug_follows_github():
    assert slug("The camera node at work") == "the-camera-node-at-work"
    assert slug("Bags: `s2m scenario`, `s2m replay`") == "bags-s2m-scenario-s2m-replay"
    assert slug("Results on ../shared/data (2026-11-21, this machine)") == \
        "results-on-shareddata-2026-11-21-this-machine"
    assert slug("Demo results (`make demo`, `surface+grabcut`)") == "demo-results-make-demo-surfacegrabcut"
    assert slug("fusion_node") == "fusion_node"
    assert slug("See [design](design.md)") == "see-design"
    assert anchors("# A\n## A\n```\n# not a heading\n```\n### B c\n") == {"a", "a-1", "b-c"}


def test_checkers_find_planted_faults(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "s2m_ros" / "room").mkdir(parents=True)
    (tmp_path / "s2m_ros" / "room" / "__init__.py").write_text("")
    (tmp_path / "s2m_ros" / "room" / "stage.py").write_text("class Stage:\n    pass\nLIMIT = 3\n")
    (tmp_path / "msg").mkdir()
    (tmp_path / "msg" / "OodMask.msg").write_text("")
    (tmp_path / "Makefile").write_text("all: test\ntest build: setup\n\tpytest\nX := 1\n")
    (tmp_path / "docs" / "page.md").write_text("# Page\n\n## Part two\n")
    (tmp_path / "docs" / "pic.jpg").write_bytes(b"")
    (tmp_path / "README.md").write_text(
        "# R\n\n[ok](docs/page.md#part-two) ![img](docs/pic.jpg) [web](https://example.org/x.md#y)\n"
        "[self](#r) [gone](docs/nothing.md) [bad anchor](docs/page.md#part-three) [out](../elsewhere.md)\n"
        "`[not a link](docs/nothing.md)`\n"
        "```\n[not a link either](docs/nothing.md)\nmake test\nmake nonsense\n```\n"
        "`s2m_ros.room.stage.Stage` `s2m_ros.room.stage.LIMIT` `s2m_ros.room` `s2m_ros.msg.OodMask` "
        "`s2m_ros/room/stage.py` `make build`\n"
        "`s2m_ros.room.gone` `s2m_ros.room.stage.Gone` `s2m_ros.core.stage` `s2m_ros/room/old.py` "
        "`s2m_ros.msg.Nothing` `test/test_nothing.py`, `<share>/s2m_ros/x.py`\n")
    files = doc_files(tmp_path)
    assert broken_links(files, tmp_path) == [
        "README.md: docs/nothing.md (no such file)",
        "README.md: docs/page.md#part-three (no heading with anchor #part-three in docs/page.md)",
        "README.md: ../elsewhere.md (outside the repository)",
    ]
    assert missing_sources(files, tmp_path) == [
        "README.md: s2m_ros.core.stage (no module s2m_ros.core)",
        "README.md: s2m_ros.msg.Nothing (no message Nothing in msg/)",
        "README.md: s2m_ros.room.gone (s2m_ros.room defines no gone)",
        "README.md: s2m_ros.room.stage.Gone (s2m_ros.room.stage defines no Gone)",
        "README.md: docs/nothing.md (no such file)",  # named in code: not a link, still a path
        "README.md: s2m_ros/room/old.py (no such file)",
        "README.md: test/test_nothing.py (no such file)",
    ]
    assert unknown_make_targets(files, tmp_path) == ["README.md: make nonsense (no such target in the Makefile)"]


# -- the real README and docs -----------------------------------------------------------------------


def test_readme_is_short():
    n = len((REPO / "README.md").read_text().splitlines())
    assert n <= README_MAX_LINES, "README.md has %d lines (at most %d): move details into docs/" % (n, README_MAX_LINES)


def test_every_relative_link_points_to_a_file_and_heading():
    bad = broken_links(doc_files())
    assert not bad, "broken links:\n" + "\n".join(bad)


def test_every_module_and_path_named_exists():
    bad = missing_sources(doc_files())
    assert not bad, "named in the docs but not in the source tree:\n" + "\n".join(bad)


def test_every_make_target_shown_exists():
    bad = unknown_make_targets(doc_files())
    assert not bad, "\n".join(bad)


def test_every_docs_page_is_linked_from_the_readme():
    readme = prose_without_code((REPO / "README.md").read_text())
    linked = {t.partition("#")[0] for t in LINK.findall(readme)}
    missing = sorted("docs/" + p.name for p in (REPO / "docs").glob("*.md") if "docs/" + p.name not in linked)
    assert not missing, "docs pages the README does not link: %s" % missing
