"""Runnable studies comparing pairs of learning algorithms (one folder per study)."""
