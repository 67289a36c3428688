"""Experiments that reproduce the paper's figures: ``degradation`` (Figure 6), ``responses`` (Figure 7)."""
