"""Figures: data frames and arrays in, matplotlib figures out; one style for all of them."""
