"""`hydra/sweeper=align_grid`: Hydra's basic sweeper over a union of grids (one grid per algorithm)."""
