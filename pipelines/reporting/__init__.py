"""Reporting: the table-spec registry, tables, statistics, claims, figures, MLflow paper runs and the HTML page."""
