"""Rewrite the parameter tables in docs/parameters.md from the nodes' declared parameters
(`make docs-tables`; `make readme-tables` is the same target under its old name).

test/test_package.py fails when a table is stale; this script is how to refresh them.
"""
import pathlib
import re
import sys

from s2m_ros.ros import fusion_node, s2m_node
from s2m_ros.ros.params import markdown_table

DOC = pathlib.Path(__file__).resolve().parent.parent / "docs" / "parameters.md"


def main():
    text = DOC.read_text()
    for module in (s2m_node, fusion_node):
        heading = "### %s\n" % module.NODE_NAME
        if heading not in text:
            sys.exit("no heading %r in %s" % (heading.strip(), DOC))
        start = text.index(heading)
        table = re.compile(r"\| parameter \| default \|.*?\n(?!\|)", re.S).search(text, start)
        if table is None:
            sys.exit("no parameter table under %r" % heading)
        text = text[:table.start()] + markdown_table(module.PARAMS) + "\n" + text[table.end():]
    DOC.write_text(text)
    print("rewrote the parameter tables in %s" % DOC)


if __name__ == "__main__":
    main()
