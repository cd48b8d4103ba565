"""``python -m bench.analysis``: see bench/analysis/__init__.py."""

from bench.analysis.run import main

main()
