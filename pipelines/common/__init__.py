"""Code every part shares: params (config), process environment, MLflow tracking, paths, atomic files."""
