"""Tabular study: scikit-learn's breast-cancer data, a user MLP, Adam vs SGD (user targets only)."""
