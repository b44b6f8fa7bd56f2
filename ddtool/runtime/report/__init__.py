"""The evaluation report: its rows computed (accuracies, baselines, DD-Ranking scores), then formatted."""
