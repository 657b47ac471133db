"""The paper's experiment: the SE ablation runner (ablation.py) and its Table II report (table2.py)."""
