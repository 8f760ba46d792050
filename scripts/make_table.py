#!/usr/bin/env python
"""Collect metric JSONs into the paper's Table 1 / Table 4 layouts (Markdown and CSV).

    python scripts/make_table.py --layout table1 results/*/sweep_test.json --choice best --out tables/table1

See `python -m evaluation.tables --help` and docs/evaluation.md.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from evaluation.common import cli  # noqa: E402
from evaluation.tables import main  # noqa: E402

if __name__ == '__main__':
    sys.exit(cli(main))
