"""Result records → leaderboard: comparable groups (:mod:`~ctbench.leaderboard.ranking`), three writers
(:mod:`~ctbench.leaderboard.writers`), and the folder with plots and figures (:mod:`~ctbench.leaderboard.build`).
Column directions, units and ranking come from the Metric contract (:mod:`~ctbench.leaderboard.columns`).
"""

from ctbench.leaderboard.build import build
from ctbench.leaderboard.ranking import Group, Row, collect, group_key, row_label
from ctbench.leaderboard.writers import to_csv, to_html, to_markdown

__all__ = ["Group", "Row", "build", "collect", "group_key", "row_label", "to_csv", "to_html", "to_markdown"]
