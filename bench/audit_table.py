#!/usr/bin/env python3
"""The report's "What adversarial training bought and cost" table as markdown, for
BENCHMARKS.md: parses section#audit of an advtrain HTML report (the report computes every
difference, interval and verdict; this only copies them). Standard library only.

Usage: bench/audit_table.py runs/audit/report.html [--severities]
(--severities also keeps each axis's detail line and the per-severity values)
"""
import html.parser
import sys


class AuditTable(html.parser.HTMLParser):
    def __init__(self, keep_small):
        super().__init__()
        self.keep_small = keep_small
        self.in_section = False
        self.in_table = False
        self.rows, self.row, self.cell = [], None, None
        self.small_depth = 0

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "section" and a.get("id") == "audit":
            self.in_section = True
        elif self.in_section and tag == "table" and "audit" in (a.get("class") or ""):
            self.in_table = True
        elif self.in_table and tag == "tr":
            self.row = []
        elif self.in_table and tag in ("td", "th"):
            self.cell = []
        elif self.cell is not None and tag == "br":
            self.cell.append(" ")
        elif self.cell is not None and tag == "span" and "small" in (a.get("class") or ""):
            self.small_depth += 1
        elif self.small_depth:
            self.small_depth += 1 if tag == "span" else 0

    def handle_endtag(self, tag):
        if tag == "span" and self.small_depth:
            self.small_depth -= 1
        elif tag in ("td", "th") and self.cell is not None:
            self.row.append(" ".join("".join(self.cell).split()))
            self.cell = None
        elif tag == "tr" and self.row is not None:
            self.rows.append(self.row)
            self.row = None
        elif tag == "table" and self.in_table:
            self.in_table = False
            self.in_section = False

    def handle_data(self, data):
        if self.cell is None:
            return
        first_column = not self.row
        if self.small_depth and first_column and not self.keep_small:
            return  # the axis's detail line
        if self.small_depth and data.startswith("severity") and not self.keep_small:
            return  # the five per-severity values
        self.cell.append(data)


def main():
    path = sys.argv[1]
    parser = AuditTable(keep_small="--severities" in sys.argv)
    with open(path, encoding="utf-8") as f:
        parser.feed(f.read())
    if not parser.rows:
        sys.exit(f"{path}: no audit table (section#audit) in this report")
    for i, row in enumerate(parser.rows):
        print("| " + " | ".join(c.replace("|", "\\|") for c in row) + " |")
        if i == 0:
            print("|" + "---|" * len(row))


if __name__ == "__main__":
    main()
