"""Benchmarks (not tests): each prints its figures and ratios against the baseline it names."""
