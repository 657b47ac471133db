"""The paper's experiment: the SE ablation runner (runner.py), its Table II report (table2/),
the paired statistics both use (paired.py), and the block probe (block_probe.py)."""
